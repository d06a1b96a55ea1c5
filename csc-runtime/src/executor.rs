//! The executor: the thin loop with the I/O around the session's pure [`Core`]. It
//! receives the storages' notices, has the driver turn them into pair reports, gives
//! those and the clock to the core, and carries out the core's orders in order:
//! commands through the driver (any [`Driver`]), actions on their own threads, logs
//! and the shared status.

use crate::actions::{self, Occurrence};
use crate::control::{self, Answer, Ask, Operation, Request};
use crate::core::{Cause, Core, Order, Unfinished};
use crate::drivers::{Driver, DriverError, PairEvent, PairReport, Storages};
use crate::journal::{Journal, Record};
use crate::log::timestamp;
use crate::machine::{Command, Solution};
use crate::metrics;
use crate::plan::{Pair, Plan};
use crate::progress::ProgressView;
use crate::vocab::{BaseCopy, Command as Verb, Event, Keyword};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the session looks like now, shared with whoever watches it (status, demo).
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Each sequence's state, by name.
    pub states: BTreeMap<u32, &'static str>,
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
    #[error("{0}")]
    Plan(String),
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
    plan.validate().map_err(SetupError::Plan)?;
    if plan.copysets.is_empty() {
        return Err(SetupError::Plan(
            "the session has no copy sets: give COPYSET elements in the document or [[copyset]] in a run-time file".into(),
        ));
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
        let now = Instant::now();
        for order in ex.core.tick(now, wall()) {
            ex.carry_out(order);
        }
        if let Some(page) = options.metrics.as_ref().filter(|_| next_metrics <= now) {
            *page.lock().expect("metrics") = metrics::render(&ex.figures());
            next_metrics = now + Duration::from_secs(1);
        }
        if let (Some(at), Some(every)) = (next_progress, options.progress_every) {
            if at <= now {
                let plan = &ex.plan;
                ex.progress.show(ex.driver.progress(), |c| {
                    plan.copysets.get(c).map_or("?", |c| c.name.as_str())
                });
                next_progress = Some(now + bar_or_line(every));
            }
        }
    }
    crate::systemd::notify("STOPPING=1\nSTATUS=stopping: ending its copies");
    tracing::info!(
        kind = "session",
        state = "stopping",
        "session stops: ending its copies and removing what it added to the storage"
    );
    ex.driver.shutdown();
    ex.journal(Record::Stopped { time: timestamp() });
    tracing::info!(kind = "session", state = "stopped", "session stopped");
    Ok(if !sites.is_empty() && lost == sites {
        Ended::StoragesLost
    } else {
        Ended::Clean
    })
}

/// Adds `sequence` to `set`, or removes it if it was there.
fn toggle(set: &mut BTreeSet<u32>, sequence: u32) {
    if !set.remove(&sequence) {
        set.insert(sequence);
    }
}

/// The sequences reversed and recovered by the runs of a journal (`reverse` and
/// `recover` that returned ok), so a later run copies in the same direction and never
/// starts a recovered sequence over its production volumes.
pub fn directions(records: &[Record]) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let (mut reversed, mut recovered) = (BTreeSet::new(), BTreeSet::new());
    for record in records {
        if let Record::Done {
            sequence,
            command,
            ok: true,
            ..
        } = record
        {
            match command.as_str() {
                "recover" => {
                    recovered.insert(*sequence);
                }
                "reverse" => {
                    recovered.remove(sequence);
                    toggle(&mut reversed, *sequence);
                }
                _ => {}
            }
        }
    }
    (reversed, recovered)
}

/// An operator waiting for the answer to a command.
struct Waiting {
    sequence: u32,
    /// The state the command leads to.
    until: &'static str,
    answer: Sender<Answer>,
    /// What the sequence's pairs said meanwhile.
    notes: Vec<String>,
    deadline: Instant,
}

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
                event: what.event.as_str().to_string(),
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
        command: &str,
        run: impl FnOnce(&mut Self) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        let command = command.to_string();
        self.journal(Record::Issue {
            sequence,
            command: command.clone(),
        });
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

    /// Takes over from a killed run: the machine as its journal left it, its copies
    /// adopted where they run. A continuous pair whose copy is gone (its daemon
    /// restarted) is reported failed, so the document decides; a point-in-time copy
    /// that was running and is gone is started again.
    fn take_over(&mut self, previous: &[Record], pairs: &[Pair]) -> Result<Unfinished, SetupError> {
        let mut unfinished = self.core.restore(previous, Instant::now());
        let adopted = self.driver.adopt(pairs).map_err(SetupError::Storage)?;
        let copies = adopted
            .iter()
            .filter(|r| r.event == PairEvent::Started)
            .count();
        tracing::info!(
            kind = "session",
            state = "taking-over",
            adopted = copies,
            "taking over from the killed run: {copies} of its copies adopted, {} commands and {} actions to finish",
            unfinished.commands.len(),
            unfinished.actions.len()
        );
        for sequence in &self.plan.sequences {
            let running = matches!(
                self.core.sequence_state(sequence.number),
                "Copying" | "Duplex"
            );
            if !running {
                continue;
            }
            let missing: Vec<&Pair> = pairs
                .iter()
                .filter(|p| p.sequence == sequence.number)
                .filter(|p| {
                    !adopted
                        .iter()
                        .any(|r| r.sequence == p.sequence && r.copyset == p.copyset)
                })
                .collect();
            if missing.is_empty() {
                continue;
            }
            match sequence.copy {
                BaseCopy::Continuous(_) => self.reports.extend(missing.iter().map(|p| {
                    PairReport {
                        sequence: p.sequence,
                        copyset: p.copyset,
                        event: PairEvent::Error(
                            "its copy is gone: its daemon restarted while no session watched it"
                                .into(),
                        ),
                    }
                })),
                BaseCopy::PointInTime(_) => {
                    if !unfinished
                        .commands
                        .contains(&(sequence.number, Verb::Start))
                    {
                        unfinished.commands.push((sequence.number, Verb::Start));
                    }
                }
            }
        }
        self.reports.extend(adopted);
        Ok(unfinished)
    }

    /// Finishes what a killed run left unfinished: its commands issued again (the
    /// driver skips what is already done), its actions run again under their ids.
    fn finish(&mut self, unfinished: Unfinished) {
        for (sequence, verb) in unfinished.commands {
            tracing::info!(
                kind = "session",
                sequence,
                command = verb.as_str(),
                "finishing what the killed run began: {verb} sequence {sequence}"
            );
            self.command(
                Command::Copy {
                    sequence,
                    command: verb,
                },
                None,
            );
        }
        for action in unfinished.owed_actions {
            tracing::info!(
                kind = "session",
                action = %action,
                "finishing what the killed run began: {action}"
            );
            self.command(action, None);
        }
        for record in unfinished.actions {
            let Record::ActionStart {
                id,
                sequence,
                event,
                contact,
                program,
                timeout_secs,
                ..
            } = record
            else {
                continue;
            };
            let event = Event::parse(&event).unwrap_or(Event::OnError);
            let what = self.occurrence(None, sequence, event);
            let action = match (contact, program) {
                (Some(contact), _) => Action::Notify(contact),
                (None, Some(program)) => Action::Run(program, timeout_secs),
                (None, None) => continue,
            };
            self.act(Some(id), what, action);
        }
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
            let set = self.copyset_name(report.copyset).map(str::to_string);
            let detail = report.event.detail();
            if let PairEvent::Note(note) = &report.event {
                for w in self
                    .waiting
                    .iter_mut()
                    .filter(|w| w.sequence == report.sequence)
                {
                    w.notes.push(format!(
                        "copy set {}: {note}",
                        set.as_deref().unwrap_or("?")
                    ));
                }
            }
            let set = set.as_deref().unwrap_or("?");
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
                    from,
                    to,
                    "sequence {sequence} {event}: {from} -> {to}"
                );
                crate::systemd::notify(&format!("STATUS=sequence {sequence} {to} (after {event})"));
                self.journal(Record::Transition {
                    sequence,
                    event: event.as_str().to_string(),
                    from: from.to_string(),
                    to: to.to_string(),
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
        let result = self.journaled(sequence, verb.as_str(), |ex| match verb {
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

    /// An operator's command (`BIN resume SEQ`, …): refused with the reason when the
    /// sequence cannot take it now, else carried out; answered when the sequence gets
    /// where the command leads (or fails), with what its pairs said on the way.
    fn operator(&mut self, request: Request) {
        let (operation, sequence, answer) = match request.ask {
            Ask::Operate(operation, sequence) => (operation, sequence, request.answer),
            Ask::Status => {
                let message = self.live().join("\n");
                let _ = request.answer.send(Answer { ok: true, message });
                return;
            }
        };
        let refuse = |message: String| {
            let _ = answer.send(Answer { ok: false, message });
        };
        let Some(copy) = self.plan.sequence(sequence).map(|s| s.copy) else {
            return refuse(format!(
                "there is no sequence {sequence}; this session has 1..{}",
                self.plan.sequences.len()
            ));
        };
        if !matches!(copy, BaseCopy::Continuous(_)) {
            return refuse(format!(
                "sequence {sequence} is {}: only a continuous sequence can be told to {operation}",
                copy.copy_type()
            ));
        }
        let state = self.core.sequence_state(sequence);
        let recovered = self.recovered.contains(&sequence);
        let refusal = match operation {
            _ if recovered && operation != Operation::Reverse => Some(format!(
                "sequence {sequence} is recovered: production runs on its targets; `reverse {sequence}` mirrors them back"
            )),
            Operation::Suspend if !matches!(state, "Copying" | "Duplex") => Some(format!(
                "sequence {sequence} is {state}: suspend is for a sequence that is Copying or Duplex"
            )),
            Operation::Resume if !matches!(state, "Suspended" | "Failed") => Some(format!(
                "sequence {sequence} is {state}: resume is for a sequence that is Suspended or Failed"
            )),
            Operation::Recover { freeze: false } if matches!(state, "Copying" | "Duplex") => {
                Some(format!(
                    "sequence {sequence} is {state}: its pairs still mirror, so the application may still write to its sources; `recover {sequence} --freeze` splits them at one consistent instant first"
                ))
            }
            Operation::Recover { .. } if !matches!(state, "Copying" | "Duplex" | "Suspended" | "Failed") => Some(format!(
                "sequence {sequence} is {state}: there is nothing to recover"
            )),
            Operation::Reverse if !recovered => Some(format!(
                "sequence {sequence} was not recovered: `recover {sequence}` first"
            )),
            _ => None,
        };
        if let Some(why) = refusal {
            return refuse(why);
        }
        tracing::info!(
            kind = "operator",
            sequence,
            command = %operation,
            "operator: {operation} sequence {sequence}"
        );
        let wait = |ex: &mut Self, until: &'static str, answer: Sender<Answer>| {
            ex.waiting.push(Waiting {
                sequence,
                until,
                answer,
                notes: Vec::new(),
                deadline: Instant::now() + control::ANSWER_WITHIN - Duration::from_secs(5),
            })
        };
        match operation {
            Operation::Suspend | Operation::Resume => {
                let (verb, until) = match operation {
                    Operation::Suspend => (Verb::Suspend, "Suspended"),
                    _ => (Verb::Resume, "Duplex"),
                };
                match self.copy(sequence, verb) {
                    Err(e) => refuse(format!("{verb} sequence {sequence} failed: {e}")),
                    Ok(()) => wait(self, until, answer),
                }
            }
            Operation::Recover { .. } => {
                if matches!(state, "Copying" | "Duplex") {
                    // Split at one consistent instant, the writers released at once.
                    let split = self
                        .copy(sequence, Verb::Freeze)
                        .and_then(|()| self.copy(sequence, Verb::Thaw));
                    if let Err(e) = split {
                        return refuse(format!("the freeze before the recover failed: {e}"));
                    }
                }
                let pairs = self.pairs(sequence);
                let mut said = Vec::new();
                let result = self.journaled(sequence, "recover", |ex| {
                    said = ex.driver.recover(&pairs)?;
                    Ok(())
                });
                match result {
                    Err(e) => refuse(format!("recover sequence {sequence} failed: {e}")),
                    Ok(()) => {
                        self.recovered.insert(sequence);
                        for line in &said {
                            tracing::info!(
                                kind = "operator",
                                sequence,
                                recovered = line.as_str(),
                                "{line}"
                            );
                        }
                        let mut message = format!("sequence {sequence}: recovered");
                        for line in said {
                            message.push_str(&format!("\n{line}"));
                        }
                        let _ = answer.send(Answer { ok: true, message });
                    }
                }
            }
            Operation::Reverse => {
                self.core.issue(sequence, Verb::Resume, Instant::now());
                toggle(&mut self.reversed, sequence);
                let pairs = self.pairs(sequence);
                let result = self.journaled(sequence, "reverse", |ex| {
                    ex.driver
                        .reverse(&pairs, copy)
                        .map(|r| ex.reports.extend(r))
                });
                match result {
                    Err(e) => {
                        toggle(&mut self.reversed, sequence);
                        refuse(format!("reverse sequence {sequence} failed: {e}"))
                    }
                    Ok(()) => {
                        self.recovered.remove(&sequence);
                        wait(self, "Duplex", answer)
                    }
                }
            }
        }
    }

    /// The session as its storage and its own state say now: each sequence's state
    /// and direction, and each copy job the daemons report with how far it is.
    fn live(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        for sequence in &self.plan.sequences {
            let n = sequence.number;
            let mut line = format!("sequence {n}: {}", self.core.sequence_state(n));
            if self.recovered.contains(&n) {
                line.push_str(", recovered (production on its targets)");
            }
            if self.reversed.contains(&n) {
                line.push_str(", reversed (copying from its targets to its sources)");
            }
            lines.push(line);
        }
        for p in self.driver.progress() {
            let set = self.copyset_name(p.copyset).unwrap_or("?");
            let how = if p.in_step {
                format!("in step, {} bytes copied so far", p.done)
            } else {
                format!(
                    "copying, {} of {} bytes ({}%)",
                    p.done,
                    p.total,
                    p.done * 100 / p.total.max(1)
                )
            };
            lines.push(format!(
                "sequence {} copy set {set}: its copy runs, {how}",
                p.sequence
            ));
        }
        lines
    }

    /// What the metrics page shows, as of now.
    fn figures(&mut self) -> metrics::Figures {
        let now = Instant::now();
        let status = self.status.lock().expect("status").clone();
        let sequences = self
            .plan
            .sequences
            .iter()
            .map(|sequence| {
                let n = sequence.number;
                let reported = self.core.pair_states(n);
                let mut events = BTreeMap::new();
                for (_, event) in status.events.iter().filter(|(q, _)| *q == n) {
                    *events.entry(event.as_str()).or_default() += 1;
                }
                let mut commands = BTreeMap::new();
                for (_, verb, ok) in status.commands.iter().filter(|(q, ..)| *q == n) {
                    *commands.entry((verb.as_str(), *ok)).or_default() += 1;
                }
                metrics::SequenceFigures {
                    number: n,
                    state: self.core.sequence_state(n),
                    reversed: self.reversed.contains(&n),
                    pairs: (self.plan.copysets.iter().enumerate())
                        .map(|(i, c)| (c.name.clone(), reported.get(&i).copied()))
                        .collect(),
                    events,
                    commands,
                    freezes: self.freezes.get(&n).map(|f| metrics::FreezeFigures {
                        count: f.count,
                        last: f.last.map_or(0.0, |d| d.as_secs_f64()),
                        total: f.total.as_secs_f64(),
                        current: f
                            .held_since
                            .map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64()),
                    }),
                }
            })
            .collect();
        let ages: BTreeMap<String, Duration> = self.driver.heartbeat_ages().into_iter().collect();
        let storages = (self.plan.storages_used().into_iter())
            .map(|name| metrics::StorageFigures {
                name: name.to_string(),
                reachable: self.driver.reaches(name),
                heartbeat_age: ages.get(name).map(Duration::as_secs_f64),
            })
            .collect();
        let copies = (self.driver.progress().into_iter())
            .map(|p| metrics::CopyFigures {
                sequence: p.sequence,
                copyset: self.copyset_name(p.copyset).unwrap_or_default().to_string(),
                done: p.done,
                total: p.total,
                in_step: p.in_step,
                lag: p.lag.map(|l| (l.seconds, l.bytes)),
            })
            .collect();
        metrics::Figures {
            session: self.plan.name.clone(),
            sequences,
            storages,
            copies,
            actions_started: self.actions,
            actions_ended: status.actions,
        }
    }

    /// The name of the copy set a pair report or a copy's progress names.
    fn copyset_name(&self, index: usize) -> Option<&str> {
        self.plan.copysets.get(index).map(|c| c.name.as_str())
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

    /// Answers the operators waiting on `sequence`, now `state` (or all whose wait is
    /// over, with `state` None).
    fn answer_waiting(&mut self, sequence: Option<u32>, state: Option<&str>) {
        let now = Instant::now();
        let (done, waiting): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| match (sequence, state) {
                (Some(seq), Some(state)) => {
                    w.sequence == seq && (state == w.until || state == "Failed")
                }
                _ => w.deadline <= now,
            });
        self.waiting = waiting;
        for w in done {
            let state = state.unwrap_or("not there yet");
            let ok = state == w.until;
            let mut message = format!("sequence {}: {state}", w.sequence);
            for note in &w.notes {
                message.push_str(&format!("\n{note}"));
            }
            let _ = w.answer.send(Answer { ok, message });
        }
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
