//! The jobs that copy: mirrors (continuous) and backups (point in time) started for a
//! group, one `transaction` per site where the storage can start them at one instant,
//! and their ends (cancel, await the end of a job told to end).

use super::commands::{
    Action, BlockDirtyBitmapAdd, BlockJobCancel, BlockJobPause, BlockJobResume, BlockdevBackup,
    BlockdevMirror, CopyMode, Perf, Sync, Transaction, TransactionProperties,
};
use super::commands::{Command, QueryBlockJobs};
use super::resync::Record;
use super::{key, refused, report, Condition, Intent, Job, Kind, Qemu};
use crate::drivers::{DriverError, PairEvent, PairReport, Progress};
use crate::plan::Pair;
use crate::vocab::{ContinuousMode, PointInTimeMode};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A mirror whose nodes are in place, not started yet.
struct Prepared {
    pair: Pair,
    record: Option<Record>,
    /// The node the mirror writes to (its hold filter).
    target: String,
    /// Its NBD client node, when the target is on another site.
    remote: Option<String>,
}

impl Qemu {
    /// Starts a group of mirrors in two phases: first every node they need (exports,
    /// NBD clients, hold filters), then the mirrors. Every graph change in QEMU drains
    /// the I/O of every running job (its graph lock), so nodes added while earlier
    /// mirrors copy wait for them: one pair after the other, a start of N pairs took
    /// O(N²) (BENCHMARKS.md).
    pub(super) fn start_mirrors(
        &mut self,
        pairs: &[Pair],
        mode: ContinuousMode,
    ) -> Result<Vec<PairReport>, DriverError> {
        self.forget_listings();
        let mut reports = Vec::new();
        let mut prepared: Vec<Prepared> = Vec::new();
        for pair in pairs {
            let id = self.names.job(pair);
            if self.jobs.get(&id).is_some_and(|j| j.frozen) {
                self.await_end(&id);
            }
            if self.jobs.contains_key(&id) {
                continue;
            }
            // A pair split before copies only what changed since; without a record of
            // that, in full, and the report says why.
            let record = match self.take_record(pair) {
                Some(Ok(record)) => Some(record),
                Some(Err(why)) => {
                    reports.push(report(pair, PairEvent::Note(format!("full copy: {why}"))));
                    None
                }
                None => None,
            };
            self.forget_records_of_target(pair);
            let nodes = self.target_node(pair).and_then(|(target, remote)| {
                match self.hold_filter(pair, &target) {
                    Ok(node) => Ok((node, remote)),
                    Err(e) => {
                        self.release(pair, true, remote);
                        Err(e)
                    }
                }
            });
            match nodes {
                Ok((target, remote)) => prepared.push(Prepared {
                    pair: pair.clone(),
                    record,
                    target,
                    remote,
                }),
                Err(e) => {
                    // Nothing of this group has started: what was added goes.
                    if let Some(record) = record {
                        self.records.insert(key(pair), Ok(record));
                    }
                    self.unprepare(prepared);
                    return Err(e);
                }
            }
        }
        let mut started: Vec<Pair> = Vec::new();
        let mut prepared = prepared.into_iter();
        while let Some(next) = prepared.next() {
            let pair = next.pair.clone();
            let id = self.names.job(&pair);
            let top = self.names.top(&pair);
            let mirror = BlockdevMirror {
                job_id: &id,
                filter_node_name: &top,
                device: &pair.source.name,
                target: &next.target,
                // What changed since a split is copied beside it (resync.rs).
                sync: if next.record.is_some() {
                    Sync::None
                } else {
                    Sync::Full
                },
                on_target_error: "stop",
                on_source_error: "stop",
                copy_mode: match mode {
                    ContinuousMode::Synchronous => CopyMode::WriteBlocking,
                    ContinuousMode::Asynchronous => CopyMode::Background,
                },
                // 4 KiB granularity: a 4 KiB write copies 4 KiB, not 64, and a
                // failed target's resync copies 4 KiB per write it missed
                // (docs/qemu-recipes.md).
                granularity: 4096,
            };
            let ran = self.qmp(&pair.source.storage).and_then(|q| {
                q.run(&mirror)
                    .map_err(|e| refused(&pair.source.storage, &pair.source, e))
            });
            if let Err(mut e) = ran {
                self.unprepare(std::iter::once(next).chain(prepared).collect());
                // Nothing of this group stays started; what had started has written
                // part of its target, and the refusal says so.
                for pair in &started {
                    self.cancel(pair, false);
                }
                e.partly_written = started.iter().map(|p| p.target.to_string()).collect();
                return Err(e);
            }
            self.jobs.insert(
                id.clone(),
                Job {
                    pair: pair.clone(),
                    kind: Kind::Mirror,
                    synchronous: mode == ContinuousMode::Synchronous,
                    intent: Intent::Run,
                    condition: Condition::Running,
                    frozen: false,
                    remote_node: next.remote,
                    resync: None,
                    bypassed: false,
                },
            );
            started.push(pair.clone());
            if let Some(record) = next.record {
                match self.start_resync(&pair, &record) {
                    Ok(resync) => self.jobs.get_mut(&id).expect("inserted").resync = Some(resync),
                    Err(e) => {
                        // The mirror runs, but its target lacks what changed: an
                        // error, and the record kept for the next restart.
                        self.records.insert(key(&pair), Ok(record));
                        self.jobs.get_mut(&id).expect("inserted").condition = Condition::Failed;
                        reports.push(report(
                            &pair,
                            PairEvent::Error(format!(
                                "cannot copy what changed since the split: {e}"
                            )),
                        ));
                    }
                }
            }
        }
        let mut out: Vec<PairReport> = started
            .iter()
            .map(|p| report(p, PairEvent::Started))
            .collect();
        out.extend(reports);
        Ok(out)
    }

    /// Removes the nodes added for mirrors that did not start, and keeps their records.
    fn unprepare(&mut self, prepared: Vec<Prepared>) {
        for p in prepared {
            self.release(&p.pair, true, p.remote);
            if let Some(record) = p.record {
                self.records.insert(key(&p.pair), Ok(record));
            }
        }
    }

    pub(super) fn start_backups(
        &mut self,
        pairs: &[Pair],
        mode: PointInTimeMode,
    ) -> Result<Vec<PairReport>, DriverError> {
        let mut by_site: BTreeMap<String, Vec<(Pair, String, Option<String>)>> = BTreeMap::new();
        let mut prepared: Vec<(Pair, Option<String>)> = Vec::new();
        let idle: Vec<&Pair> = pairs
            .iter()
            .filter(|p| !self.jobs.contains_key(&self.names.job(p)))
            .collect();
        for pair in idle {
            match self.target_node(pair) {
                Ok((target, remote)) => {
                    prepared.push((pair.clone(), remote.clone()));
                    by_site
                        .entry(pair.source.storage.clone())
                        .or_default()
                        .push((pair.clone(), target, remote));
                }
                Err(e) => {
                    for (p, remote) in prepared {
                        self.release(&p, false, remote);
                    }
                    return Err(e);
                }
            }
        }
        let mut reports = Vec::new();
        let mut done_sites: Vec<String> = Vec::new();
        for (site, group) in &by_site {
            let bitmap = self.names.incremental_bitmap(group[0].0.sequence);
            let ids: Vec<String> = group.iter().map(|(p, ..)| self.names.job(p)).collect();
            let mut actions = Vec::new();
            let mut new_bitmaps = Vec::new();
            for ((pair, target, _), id) in group.iter().zip(&ids) {
                let mut backup = BlockdevBackup {
                    job_id: id,
                    device: &pair.source.name,
                    target,
                    sync: Sync::Full,
                    bitmap: None,
                    bitmap_mode: None,
                    auto_dismiss: None,
                    // copy_file_range between files: as fast as qemu-img convert (docs/qemu-recipes.md).
                    x_perf: Some(Perf {
                        use_copy_range: true,
                    }),
                };
                match mode {
                    PointInTimeMode::Copy => {}
                    PointInTimeMode::NoCopy => backup.sync = Sync::None,
                    PointInTimeMode::Incremental
                        if self.has_bitmap(site, &pair.source.name, &bitmap) =>
                    {
                        backup.sync = Sync::Incremental;
                        backup.bitmap = Some(&bitmap);
                    }
                    PointInTimeMode::Incremental => {
                        // The first copy is full; the bitmap, added at the same instant,
                        // records what the next one must copy.
                        actions.push(Action::BlockDirtyBitmapAdd(BlockDirtyBitmapAdd {
                            node: &pair.source.name,
                            name: &bitmap,
                            granularity: None,
                        }));
                        new_bitmaps.push((site.clone(), pair.source.name.clone(), bitmap.clone()));
                    }
                }
                actions.push(Action::BlockdevBackup(backup));
            }
            let transaction = Transaction {
                actions,
                properties: TransactionProperties {
                    completion_mode: "individual",
                },
            };
            let result = self.qmp(site).and_then(|q| {
                q.run(&transaction)
                    .map_err(|e| refused(site, &group[0].0.source, e))
            });
            if let Err(e) = result {
                // Earlier sites' groups already run: stop them; undo every preparation.
                for (p, remote) in &prepared {
                    if done_sites.contains(&p.source.storage) {
                        self.cancel(p, true);
                    } else {
                        self.release(p, false, remote.clone());
                    }
                }
                return Err(e);
            }
            done_sites.push(site.clone());
            self.bitmaps.extend(new_bitmaps);
            for (pair, _, remote) in group {
                self.jobs.insert(
                    self.names.job(pair),
                    Job {
                        pair: pair.clone(),
                        kind: Kind::Backup,
                        synchronous: false,
                        intent: Intent::Run,
                        condition: Condition::Running,
                        frozen: false,
                        remote_node: remote.clone(),
                        resync: None,
                        bypassed: false,
                    },
                );
                reports.push(report(pair, PairEvent::Started));
                if mode == PointInTimeMode::NoCopy {
                    // The instant copy exists once the job runs; it lasts until stopped.
                    reports.push(report(pair, PairEvent::Complete));
                }
            }
        }
        Ok(reports)
    }

    /// Waits (up to 10 s) until a job that was told to end has gone from its daemon,
    /// and finishes it now, so its pair can start again under the same job id; the end
    /// event it already sent is then not taken for the new job's.
    pub(super) fn await_end(&mut self, id: &str) {
        let Some(site) = self.jobs.get(id).map(|j| j.pair.source.storage.clone()) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let listed = self
                .qmp(&site)
                .ok()
                .and_then(|q| q.ask(&QueryBlockJobs).ok());
            match listed {
                Some(jobs) if jobs.iter().any(|j| j.device == id) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => break,
            }
        }
        self.finish(id, None);
        self.ended.insert(id.to_string());
    }

    /// Asks a pair's job to end (`force`: at once, without a final synchronisation).
    pub(super) fn cancel(&mut self, pair: &Pair, force: bool) {
        let id = self.names.job(pair);
        if let Some(job) = self.jobs.get_mut(&id) {
            if job.intent == Intent::Run {
                job.intent = Intent::Stop;
            }
            if let Some(qmp) = self.sites.get(&pair.source.storage) {
                let _ = qmp.run(&BlockJobCancel { device: &id, force });
            }
        }
    }

    /// Ends every given job (`end_in_turn`, per site); every job is told to end even
    /// when one refuses, and the first refusal is returned.
    pub(super) fn cancel_all(&mut self, pairs: &[Pair], intent: Intent) -> Result<(), DriverError> {
        let mut by_site: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
        for pair in pairs {
            let id = self.names.job(pair);
            if let Some(job) = self.jobs.get_mut(&id) {
                job.intent = intent;
                // End at once (no last synchronisation) a failed or paused mirror, which
                // cannot synchronise, and a backup. A mirror in step ends gracefully: a
                // synchronous or frozen one has nothing left to copy, a background one
                // drains first so its target catches up. (A forced cancel of a
                // write-blocking mirror under writes has crashed qemu-storage-daemon
                // 10.0.2 with heap corruption: docs/qemu-recipes.md.)
                let force = job.condition != Condition::Running || job.kind == Kind::Backup;
                let site = by_site.entry(pair.source.storage.clone()).or_default();
                if job.resync.is_some() {
                    site.push((self.names.resync_job(pair), true));
                }
                site.push((id, force));
            }
        }
        let mut first_error = None;
        for (site, jobs) in by_site {
            let Ok(qmp) = self.qmp(&site) else { continue };
            if let Err(e) = end_in_turn(qmp, &jobs) {
                first_error.get_or_insert(DriverError::on(&site, &e.0, e.1));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// How long jobs are ended one after the other before the rest are let go at once.
const IN_TURN: Duration = Duration::from_secs(10);

/// Ends `jobs` (id, forced) of one daemon. Every job's end is a graph change that
/// drains every job of the daemon: ended all at once, N jobs drain N² times
/// (BENCHMARKS.md, "Sessions of many pairs"). So every job is paused first (no graph
/// change), then each is resumed and cancelled in turn and its end awaited, while the
/// others stay paused. One that does not end in time (a mirror in step whose target
/// stopped answering cannot synchronise) ends the waiting: the rest are cancelled and
/// let go at once. Every job is resumed and cancelled; the first refusal is returned.
fn end_in_turn(
    qmp: &super::qmp::Qmp,
    jobs: &[(String, bool)],
) -> Result<(), (String, super::qmp::QmpError)> {
    let ends = qmp.job_ends();
    let pauses: Vec<BlockJobPause> = jobs
        .iter()
        .map(|(id, _)| BlockJobPause { device: id })
        .collect();
    // A job paused by an error, or already concluded, refuses: nothing to do.
    let _ = qmp.run_all(&pauses);
    let deadline = Instant::now() + IN_TURN;
    let mut in_turn = true;
    let mut first_error = None;
    for (id, force) in jobs {
        // QEMU refuses to cancel a paused job unless forced: resumed, then cancelled
        // (pipelined, so they are dispatched back to back).
        let mut replies = qmp.execute_all(vec![
            BlockJobResume { device: id }.wire(),
            BlockJobCancel {
                device: id,
                force: *force,
            }
            .wire(),
        ]);
        if let Err(e) = replies.remove(1) {
            first_error.get_or_insert((id.clone(), e));
            continue;
        }
        while in_turn {
            match ends.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(ended) if &ended == id => break,
                Ok(_) => {}
                Err(_) => in_turn = false,
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

impl Qemu {
    /// How far each job of the session has come, as its daemon says.
    pub(super) fn jobs_progress(&self) -> Vec<Progress> {
        let mut out = Vec::new();
        for qmp in self.sites.values() {
            // A daemon late with its heartbeat is not asked (a command of ours waiting
            // on it would keep its heartbeat from saying it is hung), and none is
            // waited for longer than a heartbeat may be: progress is for show.
            if qmp.last_heartbeat().elapsed() > self.timing.heartbeat * 2 {
                continue;
            }
            let asked = qmp.ask_within(&QueryBlockJobs, self.timing.hung_after);
            let Ok(jobs) = asked else {
                continue;
            };
            for job in jobs {
                let Some((sequence, copyset)) = self.names.pair_of_job(&job.device) else {
                    continue;
                };
                let (done, total) = (job.offset, job.len);
                // A background mirror's lag is what it has yet to copy; qemu does not
                // say since when.
                let background = self
                    .jobs
                    .get(&job.device)
                    .is_some_and(|j| j.kind == Kind::Mirror && !j.synchronous);
                out.push(Progress {
                    sequence,
                    copyset,
                    done,
                    total,
                    in_step: job.ready,
                    lag: background.then(|| crate::drivers::Lag {
                        seconds: f64::NAN,
                        bytes: total.saturating_sub(done),
                    }),
                });
            }
        }
        out
    }
}
