//! A run of the session in named steps: the plan checked, the executor built, then
//! `begin`, `serve` (the loop) and `end`.

use super::{Ended, Executor, Options, SetupError, Status};
use crate::control::Request;
use crate::core::record::Record;
use crate::core::Core;
use crate::drivers::{Driver, Storages};
use crate::log::timestamp;
use crate::machine::Solution;
use crate::metrics;
use crate::plan::{Plan, PlanFault};
use crate::progress::ProgressView;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, for `daily` schedules.
fn wall() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Runs a session on its storages (qemu-storage-daemons, btrfs pools) until `stop` is set. Returns an error only
/// when the session could not start; the storage is then as it was.
pub fn run<S: Solution>(
    plan: Plan,
    options: Options,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
) -> Result<Ended, SetupError> {
    check(&plan)?;
    let (tx, rx) = mpsc::channel();
    let taking_over = options
        .journal
        .as_ref()
        .is_some_and(|j| j.take_over.is_some());
    let driver = Storages::connect(&plan, tx.clone(), taking_over).map_err(SetupError::Storage)?;
    run_with::<S, Storages>(plan, driver, (tx, rx), options, stop, status)
}

/// What a plan must have before any storage is touched.
fn check(plan: &Plan) -> Result<(), SetupError> {
    plan.validate()?;
    if plan.copysets.is_empty() {
        return Err(SetupError::Plan(PlanFault {
            copyset: None,
            message: "the session has no copy sets: give COPYSET elements in the document or [[copyset]] in a run-time file".into(),
        }));
    }
    Ok(())
}

/// A driver's notice channel, both ends: (storage id, notice).
pub type Notices<N> = (Sender<(String, N)>, Receiver<(String, N)>);

/// Runs a session with any driver, whose notices arrive on `notices` (the sender is
/// kept, so that losing every storage leaves the loop waiting, not ended), in three
/// steps: `begin` (preflight, the run's record, the machine's `start()` or a take-over),
/// `serve` (the storage's notices, operators and the clock until `stop` is set) and
/// `end` (the copies ended, the run's clean end recorded).
pub fn run_with<S: Solution, D: Driver>(
    plan: Plan,
    driver: D,
    notices: Notices<D::Notice>,
    options: Options,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
) -> Result<Ended, SetupError> {
    check(&plan)?;
    let (_keep, rx) = notices;
    let sites: BTreeSet<String> = plan
        .storages_used()
        .into_iter()
        .map(str::to_string)
        .collect();
    let Options {
        bars,
        progress_every,
        journal,
        control,
        metrics,
    } = options;
    let (journal, run, take_over, (reversed, recovered), manager) = match journal {
        Some(j) => (
            Some(Arc::new(Mutex::new(j.journal))),
            j.runs + 1,
            j.take_over,
            j.directions,
            j.manager,
        ),
        None => (None, 1, None, Default::default(), None),
    };
    let mut ex = Executor::<S, D> {
        core: Core::new(&plan, Instant::now(), wall()),
        plan,
        driver,
        progress: ProgressView::new(bars),
        reports: VecDeque::new(),
        status,
        journal,
        run,
        manager,
        actions: 0,
        waiting: Vec::new(),
        verifying: Vec::new(),
        verified: BTreeMap::new(),
        reversed,
        recovered,
        freezes: BTreeMap::new(),
    };
    ex.begin(take_over)?;
    let outside = Outside {
        notices: rx,
        control,
        metrics,
        progress_every,
        stop,
    };
    let lost = ex.serve(&outside, &sites);
    Ok(ex.end(lost, &sites))
}

/// What the loop listens to and writes to besides the executor's own state.
struct Outside<N> {
    notices: Receiver<(String, N)>,
    control: Option<Receiver<Request>>,
    metrics: Option<crate::metrics::Page>,
    progress_every: Option<Duration>,
    stop: Arc<AtomicBool>,
}

/// When the loop next does each of its periodic jobs.
struct Due {
    progress: Option<Instant>,
    metrics: Instant,
    audit: Instant,
    ping: Instant,
    verify: Option<Instant>,
}

/// How often the driver looks for what its storage does not notify (a writer attached
/// below a mirror): the longest a pair can be called Duplex while a writer bypasses it.
const AUDIT_EVERY: Duration = Duration::from_secs(1);

impl<S: Solution, D: Driver> Executor<S, D> {
    /// Checks the storage (unless it takes over: its copies already run), records the
    /// run, and starts the session or takes over from a killed run.
    fn begin(&mut self, take_over: Option<Vec<Record>>) -> Result<(), SetupError> {
        let all_pairs: Vec<_> = (self.plan.sequences.iter())
            .flat_map(|s| self.pairs(s.number))
            .collect();
        if take_over.is_none() {
            self.driver
                .preflight(&all_pairs)
                .map_err(SetupError::Storage)?;
        }
        tracing::info!(kind = "session", state = "starting", "session starts");
        // Recorded before the storage is touched: a run killed while it starts is
        // taken over like any other.
        self.journal(Record::Run {
            pid: std::process::id(),
            time: timestamp(),
            solution: S::HASH.to_string(),
        });
        let unfinished = match take_over {
            Some(previous) => Some(self.take_over(&previous, &all_pairs)?),
            None => {
                if let Err(e) = self.start_session() {
                    // Nothing stays started: this run ended as cleanly as a stopped one.
                    self.journal(Record::Stopped { time: timestamp() });
                    return Err(e);
                }
                None
            }
        };
        self.publish();
        if let Some(unfinished) = unfinished {
            self.finish(unfinished);
        }
        crate::systemd::notify(&format!("READY=1\nSTATUS=session {} runs", self.plan.name));
        Ok(())
    }

    /// The loop, until `stop` is set: notices, operators, the core's clock and the
    /// periodic jobs. Returns the storages lost at its end.
    fn serve(
        &mut self,
        outside: &Outside<D::Notice>,
        sites: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        let mut lost: BTreeSet<String> = BTreeSet::new();
        let now = Instant::now();
        let mut due = Due {
            progress: outside
                .progress_every
                .map(|every| now + self.progress_interval(every)),
            metrics: now,
            audit: now + AUDIT_EVERY,
            ping: now,
            verify: self.plan.timing.verify_every.map(|every| now + every),
        };
        let watchdog = crate::systemd::watchdog_every();
        while !outside.stop.load(Ordering::Relaxed) {
            self.drain_reports();
            // Wake for the next notice, or when the core has something due (a hold
            // ends on time, not on the next poll), or after 100 ms for the stop flag.
            let now = Instant::now();
            let wake = (self.core.next_deadline())
                .map(|at| at.saturating_duration_since(now))
                .map_or(Duration::from_millis(100), |d| {
                    d.min(Duration::from_millis(100))
                });
            match outside.notices.recv_timeout(wake) {
                Ok((site, notice)) => self.noticed(&site, notice, &mut lost, sites),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let Some(control) = &outside.control {
                while let Ok(request) = control.try_recv() {
                    self.operator(request);
                }
            }
            self.answer_waiting(None, None);
            self.verify_ended();
            let now = Instant::now();
            for order in self.core.tick(now, wall()) {
                self.carry_out(order);
            }
            self.periodic(&mut due, outside, watchdog, now);
        }
        lost
    }

    /// A storage's notice: its pair reports queued for the core, and whether every
    /// storage of the session is lost now.
    fn noticed(
        &mut self,
        site: &str,
        notice: D::Notice,
        lost: &mut BTreeSet<String>,
        sites: &BTreeSet<String>,
    ) {
        let reports = self.driver.interpret(site, notice);
        self.reports.extend(reports);
        // Storages that came back (an operator's resume reaches them again).
        lost.retain(|s| !self.driver.reaches(s));
        if !self.driver.reaches(site) && lost.insert(site.to_string()) && lost == sites {
            tracing::error!(
                kind = "session",
                state = "storages-lost",
                storages = ?lost,
                "every storage of the session is lost: nothing is copied; waiting for them or for a stop"
            );
        }
    }

    /// The jobs the loop does on a clock: scheduled verifies, the watchdog, the
    /// driver's audit, the metrics page, progress.
    fn periodic(
        &mut self,
        due: &mut Due,
        outside: &Outside<D::Notice>,
        watchdog: Option<Duration>,
        now: Instant,
    ) {
        if let (Some(at), Some(every)) = (due.verify, self.plan.timing.verify_every) {
            if at <= now {
                self.verify_on_schedule();
                due.verify = Some(now + every);
            }
        }
        if let Some(every) = watchdog.filter(|_| due.ping <= now) {
            crate::systemd::notify("WATCHDOG=1");
            due.ping = now + every;
        }
        if due.audit <= now {
            let reports = self.driver.audit();
            self.reports.extend(reports);
            due.audit = now + AUDIT_EVERY;
        }
        if let Some(page) = outside.metrics.as_ref().filter(|_| due.metrics <= now) {
            *page.lock().expect("metrics") = metrics::render(&self.figures());
            due.metrics = now + Duration::from_secs(1);
        }
        if let (Some(at), Some(every)) = (due.progress, outside.progress_every) {
            if at <= now {
                let plan = &self.plan;
                self.progress.show(self.driver.progress(), |c| {
                    plan.copyset_name(c).unwrap_or("?")
                });
                // From when it is done: a slow one must not run back to back.
                due.progress = Some(Instant::now() + self.progress_interval(every));
            }
        }
    }

    /// Bars move every second; log lines come every `every`.
    fn progress_interval(&self, every: Duration) -> Duration {
        if self.progress.has_bars() {
            Duration::from_secs(1)
        } else {
            every
        }
    }

    /// Ends the copies, removes what the session added, records the clean end.
    fn end(mut self, mut lost: BTreeSet<String>, sites: &BTreeSet<String>) -> Ended {
        crate::systemd::notify("STOPPING=1\nSTATUS=stopping: ending its copies");
        tracing::info!(
            kind = "session",
            state = "stopping",
            "session stops: ending its copies and removing what it added to the storage"
        );
        // Lost at the end, not once: storages that came back were copied again.
        lost.retain(|s| !self.driver.reaches(s));
        let all_lost = !sites.is_empty() && lost == *sites;
        self.driver.shutdown();
        self.journal(Record::Stopped { time: timestamp() });
        tracing::info!(kind = "session", state = "stopped", "session stopped");
        if all_lost {
            Ended::StoragesLost
        } else {
            Ended::Clean
        }
    }
}
