//! The executor: the thin loop with the I/O around the session's pure [`Core`]. It
//! receives the storages' notices, has the driver turn them into pair reports, gives
//! those and the clock to the core, and carries out the core's orders in order:
//! commands through the driver (any [`Driver`]), actions on their own threads, logs
//! and the shared status. Beside the loop: operators' commands (`operator.rs`), taking
//! over from a killed run (`takeover.rs`), the metrics page's figures (`figures.rs`).

mod figures;
mod operator;
mod takeover;
mod verifying;

use operator::Waiting;
pub use takeover::directions;

use crate::actions::{self, Occurrence};
use crate::control::Request;
use crate::core::record::{Record, StorageCommand};
use crate::core::{Cause, Core, Order};
use crate::drivers::{Driver, DriverError, PairEvent, PairReport, Storages};
use crate::journal::Journal;
use crate::log::timestamp;
use crate::machine::{Command, SequenceState, Solution};
use crate::metrics;
use crate::plan::{Pair, Plan, PlanFault};
use crate::progress::ProgressView;
use crate::vocab::{Command as Verb, Event, Keyword};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the session looks like now, shared with whoever watches it (status, demo).
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Each sequence's state.
    pub states: BTreeMap<u32, SequenceState>,
    /// Every group event so far, in order: (sequence, event).
    pub events: Vec<(u32, Event)>,
    /// Every copy command run so far: (sequence, command, ok).
    pub commands: Vec<(u32, Verb, bool)>,
    /// Ended actions by (kind, ok): how many, and the seconds they took in all.
    pub actions: BTreeMap<(&'static str, bool), (u64, f64)>,
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The plan is not one a session can run (a run-time file's fault, with where).
    #[error(transparent)]
    Plan(#[from] PlanFault),
    /// A storage refused (the driver's refusal is the source).
    #[error(transparent)]
    Storage(#[from] DriverError),
}

pub struct Options {
    /// The terminal's progress bars (`None`: progress as log lines).
    pub bars: Option<indicatif::MultiProgress>,
    /// How often to log the progress of long copies (`None`: never).
    pub progress_every: Option<Duration>,
    /// Where the run records what it does (`run` always has one; tests may not).
    pub journal: Option<Journaled>,
    /// Operators' commands (`run` listens in its state directory).
    pub control: Option<Receiver<Request>>,
    /// Where the metrics page is rendered, once a second (`run --metrics`).
    pub metrics: Option<crate::metrics::Page>,
}

/// The journal of a run, and what earlier runs left in it.
pub struct Journaled {
    pub journal: Journal,
    /// How many runs the journal held before this one.
    pub runs: usize,
    /// The records of the last run, from its start, when it ended without stopping
    /// (killed): this run takes over from it.
    pub take_over: Option<Vec<Record>>,
    /// The sequences reversed, and recovered, by earlier runs ([`directions`]).
    pub directions: (BTreeSet<u32>, BTreeSet<u32>),
}

/// How a session that started ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Stopped on request with its storage reachable.
    Clean,
    /// Stopped on request after every storage it used was lost.
    StoragesLost,
}

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
/// kept, so that losing every storage leaves the loop waiting, not ended): preflight,
/// what the machine's `start()` says, then the storage's notices and the clock until
/// `stop` is set.
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
    let (journal, run, take_over, (reversed, recovered)) = match options.journal {
        Some(j) => (
            Some(Arc::new(Mutex::new(j.journal))),
            j.runs + 1,
            j.take_over,
            j.directions,
        ),
        None => (None, 1, None, Default::default()),
    };
    let mut ex = Executor::<S, D> {
        core: Core::new(&plan, Instant::now(), wall()),
        plan,
        driver,
        progress: ProgressView::new(options.bars),
        reports: VecDeque::new(),
        status,
        journal,
        run,
        actions: 0,
        waiting: Vec::new(),
        verifying: Vec::new(),
        verified: BTreeMap::new(),
        reversed,
        recovered,
        freezes: BTreeMap::new(),
    };
    let all_pairs: Vec<_> = ex
        .plan
        .sequences
        .iter()
        .flat_map(|s| ex.pairs(s.number))
        .collect();
    // A run taking over checks nothing before: its copies already run.
    if take_over.is_none() {
        ex.driver
            .preflight(&all_pairs)
            .map_err(SetupError::Storage)?;
    }
    tracing::info!(kind = "session", state = "starting", "session starts");
    // Recorded before the storage is touched: a run killed while it starts is taken
    // over like any other.
    ex.journal(Record::Run {
        pid: std::process::id(),
        time: timestamp(),
        solution: S::HASH.to_string(),
    });
    let unfinished = match take_over {
        Some(previous) => Some(ex.take_over(&previous, &all_pairs)?),
        None => {
            if let Err(e) = ex.start_session() {
                // Nothing stays started: this run ended as cleanly as a stopped one.
                ex.journal(Record::Stopped { time: timestamp() });
                return Err(e);
            }
            None
        }
    };
    ex.publish();
    if let Some(unfinished) = unfinished {
        ex.finish(unfinished);
    }
    crate::systemd::notify(&format!("READY=1\nSTATUS=session {} runs", ex.plan.name));
    let mut lost: BTreeSet<String> = BTreeSet::new();
    // Bars move every second; log lines come every `progress_every`.
    let bars = ex.progress.has_bars();
    let bar_or_line = |every| if bars { Duration::from_secs(1) } else { every };
    let mut next_progress = options
        .progress_every
        .map(|every| Instant::now() + bar_or_line(every));
    let mut next_metrics = Instant::now();
    let mut next_audit = Instant::now() + AUDIT_EVERY;
    let watchdog = crate::systemd::watchdog_every();
    let mut next_ping = Instant::now();
    let mut next_verify = ex
        .plan
        .timing
        .verify_every
        .map(|every| Instant::now() + every);
    while !stop.load(Ordering::Relaxed) {
        ex.drain_reports();
        // Wake for the next notice, or when the core has something due (a hold ends
        // on time, not on the next poll), or after 100 ms for the stop flag.
        let now = Instant::now();
        let wake = ex
            .core
            .next_deadline()
            .map(|at| at.saturating_duration_since(now))
            .map_or(Duration::from_millis(100), |d| {
                d.min(Duration::from_millis(100))
            });
        match rx.recv_timeout(wake) {
            Ok((site, notice)) => {
                let reports = ex.driver.interpret(&site, notice);
                ex.reports.extend(reports);
                // Storages that came back (an operator's resume reaches them again).
                lost.retain(|s| !ex.driver.reaches(s));
                if !ex.driver.reaches(&site) && lost.insert(site.clone()) && lost == sites {
                    tracing::error!(
                        kind = "session",
                        state = "storages-lost",
                        storages = ?lost,
                        "every storage of the session is lost: nothing is copied; waiting for them or for a stop"
                    );
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(control) = &options.control {
            while let Ok(request) = control.try_recv() {
                ex.operator(request);
            }
        }
        ex.answer_waiting(None, None);
        ex.verify_ended();
        let now = Instant::now();
        for order in ex.core.tick(now, wall()) {
            ex.carry_out(order);
        }
        if let (Some(at), Some(every)) = (next_verify, ex.plan.timing.verify_every) {
            if at <= now {
                ex.verify_on_schedule();
                next_verify = Some(now + every);
            }
        }
        if let Some(every) = watchdog.filter(|_| next_ping <= now) {
            crate::systemd::notify("WATCHDOG=1");
            next_ping = now + every;
        }
        if next_audit <= now {
            let reports = ex.driver.audit();
            ex.reports.extend(reports);
            next_audit = now + AUDIT_EVERY;
        }
        if let Some(page) = options.metrics.as_ref().filter(|_| next_metrics <= now) {
            *page.lock().expect("metrics") = metrics::render(&ex.figures());
            next_metrics = now + Duration::from_secs(1);
        }
        if let (Some(at), Some(every)) = (next_progress, options.progress_every) {
            if at <= now {
                let plan = &ex.plan;
                ex.progress.show(ex.driver.progress(), |c| {
                    plan.copyset_name(c).unwrap_or("?")
                });
                // From when it is done: a slow one must not run back to back.
                next_progress = Some(Instant::now() + bar_or_line(every));
            }
        }
    }
    crate::systemd::notify("STOPPING=1\nSTATUS=stopping: ending its copies");
    tracing::info!(
        kind = "session",
        state = "stopping",
        "session stops: ending its copies and removing what it added to the storage"
    );
    // Lost at the end, not once: storages that came back were copied again.
    lost.retain(|s| !ex.driver.reaches(s));
    let all_lost = !sites.is_empty() && lost == sites;
    ex.driver.shutdown();
    ex.journal(Record::Stopped { time: timestamp() });
    tracing::info!(kind = "session", state = "stopped", "session stopped");
    Ok(if all_lost {
        Ended::StoragesLost
    } else {
        Ended::Clean
    })
}

/// How often the driver looks for what its storage does not notify (a writer attached
/// below a mirror): the longest a pair can be called Duplex while a writer bypasses it.
const AUDIT_EVERY: Duration = Duration::from_secs(1);

struct Executor<S: Solution, D: Driver> {
    plan: Plan,
    driver: D,
    core: Core<S>,
    /// Pair reports waiting for the core, in arrival order.
    reports: VecDeque<PairReport>,
    status: Arc<Mutex<Status>>,
    /// Shared with the threads of actions, which record their end.
    journal: Option<Arc<Mutex<Journal>>>,
    /// This run's number in the journal, and its actions so far (their ids).
    run: usize,
    actions: usize,
    waiting: Vec<Waiting>,
    /// Verifies under way, and what verify found per sequence this run.
    verifying: Vec<verifying::Verifying>,
    verified: BTreeMap<u32, verifying::VerifyTotals>,
    /// Sequences that copy from their targets back to their sources (`reverse`).
    reversed: BTreeSet<u32>,
    /// Sequences whose targets are production now (`recover`), not yet reversed.
    recovered: BTreeSet<u32>,
    /// Each sequence's freezes this run, for the metrics page.
    freezes: BTreeMap<u32, Freezes>,
    /// Long copies' progress, for people.
    progress: ProgressView,
}

/// A sequence's freezes: how many, and how long its writers were held (from the
/// freeze command to the thaw or the end of the hold time, as the executor sees them).
#[derive(Clone, Debug, Default)]
struct Freezes {
    count: u64,
    held_since: Option<Instant>,
    last: Option<Duration>,
    total: Duration,
}

impl Freezes {
    fn released(&mut self, now: Instant) {
        if let Some(since) = self.held_since.take() {
            let held = now.saturating_duration_since(since);
            self.last = Some(held);
            self.total += held;
        }
    }
}

/// An action of the document: notify a contact, or run a program (with its timeout).
#[derive(Clone, Debug)]
enum Action {
    Notify(String),
    Run(String, u64),
}

impl Action {
    /// Its kind, as the metrics page counts it.
    fn kind(&self) -> &'static str {
        match self {
            Action::Notify(_) => "notify",
            Action::Run(..) => "run",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Notify(contact) => write!(f, "notify {contact}"),
            Action::Run(program, _) => write!(f, "run {program}"),
        }
    }
}

/// Appends a record; a journal that cannot be written is logged loudly, and the
/// session goes on (its copies matter more than its record of them).
fn append(journal: &Option<Arc<Mutex<Journal>>>, record: Record) {
    if let Some(journal) = journal {
        if let Err(e) = journal.lock().expect("journal").append(&record) {
            tracing::error!(
                kind = "journal",
                ok = false,
                "cannot write the journal: {e}; a restart will not know this step"
            );
        }
    }
}

impl<S: Solution, D: Driver> Executor<S, D> {
    fn journal(&self, record: Record) {
        append(&self.journal, record);
    }

    /// Starts an action on its own thread: a new one (recorded as started, with a new
    /// id) or, with `id`, one a killed run started and did not see end. Its end is
    /// recorded by its thread.
    fn act(&mut self, id: Option<String>, what: Occurrence, action: Action) {
        let contact = match &action {
            Action::Notify(name) => match self.plan.contacts.iter().find(|c| c.name == *name) {
                Some(contact) => Some(contact.clone()),
                None => {
                    tracing::warn!(
                        kind = "notify",
                        contact = name.as_str(),
                        ok = false,
                        "notify {name}: no such contact in this session; the event is only logged"
                    );
                    return;
                }
            },
            Action::Run(..) => None,
        };
        let id = id.unwrap_or_else(|| {
            self.actions += 1;
            let id = format!("{}.{}", self.run, self.actions);
            let (program, timeout_secs) = match &action {
                Action::Run(program, timeout) => (Some(program.clone()), *timeout),
                Action::Notify(_) => (None, 0),
            };
            self.journal(Record::ActionStart {
                id: id.clone(),
                action: action.to_string(),
                sequence: what.sequence,
                event: what.event,
                contact: contact.as_ref().map(|c| c.name.clone()),
                program,
                timeout_secs,
            });
            id
        });
        let what = what.for_action(id);
        let (journal, status) = (self.journal.clone(), self.status.clone());
        // The action's records are the session's too.
        let span = tracing::Span::current();
        std::thread::spawn(move || {
            let _session = span.entered();
            let started = Instant::now();
            let ok = match (&action, contact) {
                (Action::Run(program, timeout), _) => {
                    actions::run(program, Duration::from_secs(*timeout), &what)
                }
                (Action::Notify(_), Some(contact)) => actions::notify(&contact, &what),
                (Action::Notify(_), None) => false,
            };
            let mut status = status.lock().expect("status");
            let tally = status.actions.entry((action.kind(), ok)).or_default();
            tally.0 += 1;
            tally.1 += started.elapsed().as_secs_f64();
            drop(status);
            append(&journal, Record::ActionEnd { id: what.id, ok });
        });
    }

    /// Runs a storage command between its two journal records: issued, and returned.
    fn journaled(
        &mut self,
        sequence: u32,
        command: StorageCommand,
        run: impl FnOnce(&mut Self) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        self.journal(Record::Issue { sequence, command });
        let result = run(self);
        self.journal(Record::Done {
            sequence,
            command,
            ok: result.is_ok(),
            detail: result
                .as_ref()
                .err()
                .map_or(String::new(), |e| e.to_string()),
        });
        result
    }

    /// What the machine's `start()` says; if that cannot start, the session does not
    /// run at all (and what started is removed).
    fn start_session(&mut self) -> Result<(), SetupError> {
        for order in self.core.start() {
            if let Order::Run {
                command:
                    Command::Copy {
                        sequence,
                        command: Verb::Start,
                    },
                ..
            } = order
            {
                if let Err(e) = self.copy(sequence, Verb::Start) {
                    self.driver.shutdown();
                    return Err(SetupError::Storage(e));
                }
            }
        }
        Ok(())
    }

    fn publish(&self) {
        let mut status = self.status.lock().expect("status");
        for seq in &self.plan.sequences {
            status
                .states
                .insert(seq.number, self.core.sequence_state(seq.number));
        }
    }

    /// Starts a sequence's group.
    fn start(&mut self, sequence: u32) -> Result<(), DriverError> {
        let pairs = self.pairs(sequence);
        let copy = self.plan.sequence(sequence).expect("a sequence").copy;
        let reports = self.driver.start(&pairs, copy)?;
        self.reports.extend(reports);
        Ok(())
    }

    /// Gives queued pair reports to the core and carries out what it orders.
    fn drain_reports(&mut self) {
        while let Some(report) = self.reports.pop_front() {
            let set = self.plan.copyset_name(report.copyset).unwrap_or("?");
            let detail = report.event.detail();
            if let PairEvent::Note(note) = &report.event {
                for w in self
                    .waiting
                    .iter_mut()
                    .filter(|w| w.sequence == report.sequence)
                {
                    w.notes.push(format!("copy set {set}: {note}"));
                }
            }
            let (sequence, pair_event) = (report.sequence, report.event.name());
            if let PairEvent::Error(_) = report.event {
                tracing::warn!(
                    kind = "pair",
                    sequence,
                    copyset = set,
                    pair_event,
                    "sequence {sequence} copy set {set}: {detail}"
                );
            } else {
                tracing::info!(
                    kind = "pair",
                    sequence,
                    copyset = set,
                    pair_event,
                    "sequence {sequence} copy set {set}: {detail}"
                );
            }
            for order in self.core.report(report) {
                self.carry_out(order);
            }
        }
    }

    fn carry_out(&mut self, order: Order) {
        match order {
            Order::Transition {
                sequence,
                event,
                from,
                to,
            } => {
                self.status
                    .lock()
                    .expect("status")
                    .events
                    .push((sequence, event));
                tracing::info!(
                    kind = "event",
                    sequence,
                    event = event.as_str(),
                    from = from.as_str(),
                    to = to.as_str(),
                    "sequence {sequence} {event}: {from} -> {to}"
                );
                crate::systemd::notify(&format!("STATUS=sequence {sequence} {to} (after {event})"));
                self.journal(Record::Transition {
                    sequence,
                    event,
                    from,
                    to,
                    time: timestamp(),
                });
                self.publish();
                self.answer_waiting(Some(sequence), Some(to));
            }
            Order::Run { command, cause } => self.command(command, cause),
            Order::Release { sequence } => {
                let result = self.driver.thaw(&self.pairs(sequence));
                let ok = result.is_ok();
                if ok {
                    self.freezes
                        .entry(sequence)
                        .or_default()
                        .released(Instant::now());
                }
                match result {
                    Ok(()) => tracing::info!(
                        kind = "release",
                        sequence,
                        ok,
                        "sequence {sequence}: hold time ({} ms) over, writers released",
                        self.plan.timing.hold.as_millis()
                    ),
                    Err(e) => tracing::error!(
                        kind = "release",
                        sequence,
                        ok,
                        "sequence {sequence}: releasing the writers failed: {e}"
                    ),
                }
            }
        }
    }

    fn command(&mut self, command: Command, cause: Option<Cause>) {
        match command {
            Command::Copy {
                sequence,
                command: verb,
            } => {
                if cause.is_none() && verb == Verb::Start {
                    tracing::info!(
                        kind = "schedule",
                        sequence,
                        "schedule: start sequence {sequence}"
                    );
                }
                let _ = self.copy(sequence, verb);
            }
            Command::Notify {
                contact,
                sequence,
                event,
            } => {
                let what = self.occurrence(cause, sequence, event);
                self.act(None, what, Action::Notify(contact.to_string()));
            }
            Command::Run {
                program,
                timeout_secs,
                sequence,
                event,
            } => {
                let what = self.occurrence(cause, sequence, event);
                let action = Action::Run(program.to_string(), timeout_secs);
                self.act(None, what, action);
            }
        }
    }

    /// Whether `sequence` is recovered, so that it must not start (it would copy its
    /// old sources over production); says so.
    fn recovered_not_started(&self, sequence: u32) -> bool {
        let recovered = self.recovered.contains(&sequence);
        if recovered {
            tracing::info!(
                kind = "session",
                sequence,
                state = "recovered",
                "sequence {sequence} is recovered (production runs on its targets): not started; `reverse {sequence}` mirrors them back"
            );
        }
        recovered
    }

    /// Tells every pair of a sequence to do `verb`, between its journal records; a
    /// start that fails is the group's error (the document says what to do).
    fn copy(&mut self, sequence: u32, verb: Verb) -> Result<(), DriverError> {
        if verb == Verb::Start && self.recovered_not_started(sequence) {
            return Ok(());
        }
        self.core.issue(sequence, verb, Instant::now());
        let pairs = self.pairs(sequence);
        let copy = self.plan.sequence(sequence).expect("a sequence").copy;
        let issued = Instant::now();
        let result = self.journaled(sequence, StorageCommand::Copy(verb), |ex| match verb {
            Verb::Start => ex.start(sequence),
            Verb::Stop => ex.driver.stop(&pairs),
            Verb::Freeze => ex.driver.freeze(&pairs).map(|r| ex.reports.extend(r)),
            Verb::Thaw => ex.driver.thaw(&pairs),
            Verb::Suspend => ex
                .driver
                .suspend(&pairs, copy)
                .map(|r| ex.reports.extend(r)),
            Verb::Resume => ex.driver.resume(&pairs, copy).map(|r| ex.reports.extend(r)),
        });
        let ok = result.is_ok();
        match verb {
            Verb::Freeze if ok => {
                let freezes = self.freezes.entry(sequence).or_default();
                freezes.count += 1;
                freezes.held_since = Some(issued);
            }
            Verb::Thaw if ok => self
                .freezes
                .entry(sequence)
                .or_default()
                .released(Instant::now()),
            _ => {}
        }
        self.status
            .lock()
            .expect("status")
            .commands
            .push((sequence, verb, ok));
        let command = verb.as_str();
        match &result {
            Ok(()) => tracing::info!(
                kind = "command",
                sequence,
                command,
                ok,
                "{verb} sequence {sequence}"
            ),
            Err(e) => tracing::warn!(
                kind = "command",
                sequence,
                command,
                ok,
                "{verb} sequence {sequence} failed: {e}"
            ),
        }
        if let (Err(e), Verb::Start) = (&result, verb) {
            for pair in &pairs {
                self.reports.push_back(PairReport {
                    sequence,
                    copyset: pair.copyset,
                    event: PairEvent::Error(e.to_string()),
                });
            }
        }
        result
    }

    /// The pairs of a sequence in the direction it copies now (reversed after a
    /// failback).
    fn pairs(&self, sequence: u32) -> Vec<Pair> {
        let mut pairs = self.plan.pairs(sequence);
        if self.reversed.contains(&sequence) {
            for pair in &mut pairs {
                std::mem::swap(&mut pair.source, &mut pair.target);
            }
        }
        pairs
    }

    /// What an action is about: the event that caused it, or (for a command issued
    /// outside an event) the sequence and event it names.
    fn occurrence(&self, cause: Option<Cause>, sequence: u32, event: Event) -> Occurrence {
        match cause {
            Some(c) => Occurrence::new(&self.plan.name, c.sequence, c.event, c.copyset, c.detail),
            None => Occurrence::new(&self.plan.name, sequence, event, None, String::new()),
        }
    }
}
