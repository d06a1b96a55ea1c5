//! The btrfs driver: pools are mounted btrfs file systems (local, or over ssh),
//! volumes are subvolumes, copies are read-only snapshots and `btrfs send | btrfs
//! receive` (docs/btrfs.md).
//!
//! - Point-In-Time NoCopy: a snapshot in the source's pool, published at the target.
//! - Point-In-Time Copy: a full send of a new snapshot into the target's pool.
//! - Point-In-Time Incremental: `send -p` from the newest snapshot both pools hold.
//! - Continuous Asynchronous: incremental rounds, one per interval, on a worker
//!   thread per pair; the pair is in duplex when a round finds nothing to send or
//!   sends its changes within the interval.
//!
//! Every copy runs on a worker thread that reports through the notice channel; the
//! driver's own calls only snapshot (NoCopy), start and end workers.

pub mod cleanup;
mod names;
mod pool;
mod replicate;
mod stream;

use super::{key, report, Driver, DriverError, Lag, PairEvent, PairReport, Progress};
use crate::plan::{Pair, Plan};
use crate::vocab::{BaseCopy, DriverKind, PointInTimeMode};
use names::Names;
use pool::Pool;
use replicate::{Job, Round, Send};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// What a worker says of its pair.
pub type Notice = PairReport;

/// Where a continuous pair stands, shared with its worker.
#[derive(Debug, Default)]
struct Standing {
    /// The target holds the source as of this instant.
    in_sync_at: Option<SystemTime>,
    /// The size of the last stream that changed the target.
    last_bytes: u64,
    in_step: bool,
}

struct Worker {
    job: Job,
    continuous: bool,
    standing: Arc<Mutex<Standing>>,
    thread: Option<JoinHandle<()>>,
}

pub struct Btrfs {
    names: Arc<Names>,
    pools: BTreeMap<String, Pool>,
    notices: Sender<(String, Notice)>,
    /// By pair: (sequence, copy set).
    workers: BTreeMap<(u32, usize), Worker>,
    /// Pools whose last operation failed.
    failing: Arc<Mutex<BTreeSet<String>>>,
    /// How often a continuous copy sends.
    interval: Duration,
    /// How many snapshots each sequence's pairs keep in the target's pool (KEEP).
    keep: BTreeMap<u32, usize>,
    /// Pools whose `.cssc` directory this run made sure of (preflight changes nothing,
    /// so the first copy does it).
    prepared: BTreeSet<String>,
}

impl Btrfs {
    /// The pools of the plan's btrfs storages. Nothing is run until `preflight`.
    pub fn connect(plan: &Plan, notices: Sender<(String, Notice)>) -> Result<Btrfs, DriverError> {
        let mut pools = BTreeMap::new();
        for id in plan.storages_of(DriverKind::Btrfs) {
            pools.insert(id.to_string(), Pool::new(id, &plan.storages[id].endpoint)?);
        }
        Ok(Btrfs {
            names: Arc::new(Names::of_session(&plan.name)),
            pools,
            notices,
            workers: BTreeMap::new(),
            failing: Arc::default(),
            interval: plan.timing.replicate_every,
            prepared: BTreeSet::new(),
            keep: plan
                .sequences
                .iter()
                .map(|s| (s.number, s.keep as usize))
                .collect(),
        })
    }

    fn pool(&self, id: &str) -> Result<&Pool, DriverError> {
        self.pools
            .get(id)
            .ok_or_else(|| DriverError::at(id, "is not a btrfs storage of this session"))
    }

    /// Makes the `.cssc` directory of the pools of `pair`, once a run.
    fn prepare(&mut self, pair: &Pair) -> Result<(), DriverError> {
        for id in [&pair.source.storage, &pair.target.storage] {
            if !self.prepared.contains(id) {
                self.pool(id)?.mkdir(names::DIR)?;
                self.prepared.insert(id.clone());
            }
        }
        Ok(())
    }

    /// Starts one pair's copy; its reports go to `reports`.
    fn start_one(
        &mut self,
        pair: &Pair,
        copy: BaseCopy,
        reports: &mut Vec<PairReport>,
    ) -> Result<(), DriverError> {
        self.prepare(pair)?;
        match copy {
            BaseCopy::PointInTime(PointInTimeMode::NoCopy) => {
                let job = self.job(pair)?;
                job.round(Send::Snapshot).and_then(|r| job.prune(&r))?;
                reports.push(report(pair, PairEvent::Started));
                reports.push(report(pair, PairEvent::Complete));
            }
            BaseCopy::PointInTime(mode) => {
                let send = match mode {
                    PointInTimeMode::Incremental => Send::Incremental,
                    _ => Send::Full,
                };
                self.end(pair);
                self.spawn(pair, send, false)?;
                reports.push(report(pair, PairEvent::Started));
            }
            BaseCopy::Continuous(_) if self.workers.contains_key(&key(pair)) => {}
            BaseCopy::Continuous(_) => {
                self.spawn(pair, Send::Incremental, true)?;
                reports.push(report(pair, PairEvent::Started));
            }
        }
        Ok(())
    }

    fn job(&self, pair: &Pair) -> Result<Job, DriverError> {
        Ok(Job {
            pair: pair.clone(),
            from: self.pool(&pair.source.storage)?.clone(),
            to: self.pool(&pair.target.storage)?.clone(),
            names: Arc::clone(&self.names),
            cancel: Arc::default(),
            sent: Arc::default(),
            keep: self.keep.get(&pair.sequence).copied().unwrap_or(1),
        })
    }

    /// Starts a worker for `pair`: one round (`continuous` false) or rounds until
    /// cancelled.
    fn spawn(&mut self, pair: &Pair, send: Send, continuous: bool) -> Result<(), DriverError> {
        let job = self.job(pair)?;
        if continuous {
            job.from
                .run(&["touch", &job.from.path(&self.names.running(pair))])?;
        }
        let standing: Arc<Mutex<Standing>> = Arc::default();
        let (worker_job, shared) = (job.clone(), Arc::clone(&standing));
        let (notices, failing, interval) = (
            self.notices.clone(),
            Arc::clone(&self.failing),
            self.interval,
        );
        let thread = std::thread::Builder::new()
            .name(format!("btrfs-s{}-c{}", pair.sequence, pair.copyset))
            .spawn(move || {
                let say = |event: PairEvent| {
                    let site = worker_job.pair.source.storage.clone();
                    let _ = notices.send((site, report(&worker_job.pair, event)));
                };
                loop {
                    let began = Instant::now();
                    let result = worker_job.round(send);
                    if worker_job.cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    mark(&failing, &worker_job, result.is_ok());
                    match result {
                        Err(e) => return say(PairEvent::Error(e.to_string())),
                        Ok(round) if !continuous => {
                            say(PairEvent::Note(round.describe()));
                            say(PairEvent::Complete);
                            return prune(&worker_job, &round, &say);
                        }
                        Ok(round) => {
                            let caught_up = round.changes == 0 || began.elapsed() <= interval;
                            let first = stand(&shared, &round, caught_up);
                            if first {
                                say(PairEvent::Duplex);
                            }
                            prune(&worker_job, &round, &say);
                        }
                    }
                    let next = began + interval;
                    while Instant::now() < next {
                        if worker_job.cancel.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(20).min(next - Instant::now()));
                    }
                }
            })
            .map_err(|e| DriverError::at(&pair.source.storage, e))?;
        self.workers.insert(
            key(pair),
            Worker {
                job,
                continuous,
                standing,
                thread: Some(thread),
            },
        );
        Ok(())
    }

    /// Ends a pair's worker (a running send is killed and what it left removed) and
    /// its marker; whether it had one.
    fn end(&mut self, pair: &Pair) -> bool {
        let Some(mut worker) = self.workers.remove(&key(pair)) else {
            return false;
        };
        worker.job.cancel.store(true, Ordering::Relaxed);
        if let Some(thread) = worker.thread.take() {
            let _ = thread.join();
        }
        let _ = worker.job.clean();
        if worker.continuous {
            let marker = worker.job.from.path(&self.names.running(pair));
            let _ = worker.job.from.run(&["rm", "-f", &marker]);
        }
        true
    }

    /// A worker that ended on its own (complete, failed) is forgotten, so the pair
    /// can start again.
    fn reap(&mut self) {
        self.workers
            .retain(|_, w| w.thread.as_ref().is_some_and(|t| !t.is_finished()));
    }
}

/// Deletes the snapshots a round made stale; a failure is said, not an error of the
/// copy (the next round's pruning deletes them).
fn prune(job: &Job, round: &Round, say: &impl Fn(PairEvent)) {
    if let Err(e) = job.prune(round) {
        say(PairEvent::Note(format!("old snapshots stay: {e}")));
    }
}

/// Records whether the pools of a job answered.
fn mark(failing: &Mutex<BTreeSet<String>>, job: &Job, ok: bool) {
    let mut failing = failing.lock().expect("failing");
    for id in [&job.from.id, &job.to.id] {
        if ok {
            failing.remove(id);
        } else {
            failing.insert(id.clone());
        }
    }
}

/// Records a continuous round; true the first time the pair caught up.
fn stand(standing: &Mutex<Standing>, round: &Round, caught_up: bool) -> bool {
    let mut s = standing.lock().expect("standing");
    s.in_sync_at = round.at;
    if round.changes > 0 {
        s.last_bytes = round.bytes;
    }
    let first = caught_up && !s.in_step;
    s.in_step |= caught_up;
    first
}

impl Driver for Btrfs {
    type Notice = Notice;

    /// Reads only: `check-config` runs it too.
    fn preflight(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        // A source that another hop of the session makes (a snapshot, then a copy of
        // that snapshot: the patent's FIG. 1) exists once that hop has run; until
        // then it is not asked for, and its own start says so if it is still missing.
        let made: std::collections::BTreeSet<&crate::plan::Volume> =
            pairs.iter().map(|p| &p.target).collect();
        for pair in pairs {
            let job = self.job(pair)?;
            if !made.contains(&pair.source) || job.from.exists(&pair.source.name)? {
                job.from.show(&pair.source.name)?;
            }
            if job.to.exists(&pair.target.name)? {
                job.owned_target()?;
            } else if let Some((parent, _)) = pair.target.name.rsplit_once('/') {
                if !job.to.exists(parent)? {
                    return Err(DriverError::on(
                        &pair.target.storage,
                        &pair.target.name,
                        format!("its directory {parent} does not exist in the pool"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        self.reap();
        let mut reports = Vec::new();
        let mut started = Vec::new();
        for pair in pairs {
            if let Err(e) = self.start_one(pair, copy, &mut reports) {
                // Nothing stays started.
                for p in &started {
                    self.end(p);
                }
                return Err(e);
            }
            started.push(pair.clone());
        }
        Ok(reports)
    }

    fn stop(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        for pair in pairs {
            if self.end(pair) {
                let _ = self.notices.send((
                    pair.source.storage.clone(),
                    report(pair, PairEvent::Stopped),
                ));
            }
        }
        Ok(())
    }

    fn suspend(&mut self, pairs: &[Pair], _copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        Ok(pairs
            .iter()
            .filter(|p| self.end(p))
            .map(|p| report(p, PairEvent::Suspended))
            .collect())
    }

    fn resume(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        self.reap();
        let idle: Vec<Pair> = pairs
            .iter()
            .filter(|p| !self.workers.contains_key(&key(p)))
            .cloned()
            .collect();
        self.start(&idle, copy)
    }

    fn freeze(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        Err(super::refuse_direction(
            pairs,
            "freeze a group: snapshots of several subvolumes are not one instant",
        ))
    }

    fn thaw(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        Err(super::refuse_direction(
            pairs,
            "thaw: it never holds writers",
        ))
    }

    fn interpret(&mut self, _site: &str, notice: Notice) -> Vec<PairReport> {
        vec![notice]
    }

    fn progress(&mut self) -> Vec<Progress> {
        self.workers
            .iter()
            .map(|(&(sequence, copyset), w)| {
                let s = w.standing.lock().expect("standing");
                Progress {
                    sequence,
                    copyset,
                    done: w.job.sent.load(Ordering::Relaxed),
                    // A send stream's size is known when it ends.
                    total: 0,
                    in_step: s.in_step,
                    lag: w.continuous.then(|| Lag {
                        seconds: s
                            .in_sync_at
                            .and_then(|t| t.elapsed().ok())
                            .map_or(f64::NAN, |d| d.as_secs_f64()),
                        bytes: s.last_bytes,
                    }),
                }
            })
            .collect()
    }

    fn reaches(&self, site: &str) -> bool {
        !self.failing.lock().expect("failing").contains(site)
    }

    fn adopt(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        let mut reports = Vec::new();
        for pair in pairs {
            let job = self.job(pair)?;
            job.clean()?;
            if job.from.exists(&self.names.running(pair))? {
                self.spawn(pair, Send::Incremental, true)?;
                reports.push(report(pair, PairEvent::Started));
            }
        }
        Ok(reports)
    }

    fn shutdown(&mut self) {
        let pairs: Vec<Pair> = self.workers.values().map(|w| w.job.pair.clone()).collect();
        for pair in pairs {
            self.end(&pair);
        }
    }
}
