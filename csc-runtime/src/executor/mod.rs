//! The executor: the thin loop with the I/O around the session's pure [`Core`]. It
//! receives the storages' notices, has the driver turn them into pair reports, gives
//! those and the clock to the core, and carries out the core's orders in order:
//! commands through the driver (any [`Driver`]), actions on their own threads, logs
//! and the shared status. The run in named steps is `run.rs`; actions and journal
//! records `recorded.rs`. Beside the loop: operators' commands (`operator.rs`),
//! `verify` (`verifying.rs`), taking over from a killed run (`takeover.rs`), the
//! metrics page's figures (`figures.rs`).

mod figures;
mod operator;
mod recorded;
mod run;
mod takeover;
mod verifying;

use operator::Waiting;
use recorded::Action;
pub use run::{run, run_with, Notices};
pub use takeover::directions;

use crate::actions::Occurrence;
use crate::control::Request;
use crate::core::record::{Record, StorageCommand};
use crate::core::{Cause, Core, Order};
use crate::drivers::{Driver, DriverError, PairEvent, PairReport};
use crate::journal::Store;
use crate::log::timestamp;
use crate::machine::{Command, SequenceState, Solution};
use crate::plan::{Pair, Plan, PlanFault};
use crate::progress::ProgressView;
use crate::vocab::{Command as Verb, Event, Keyword};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    pub journal: Box<dyn Store>,
    /// How many runs the journal held before this one.
    pub runs: usize,
    /// The records of the last run, from its start, when it ended without stopping
    /// (killed): this run takes over from it.
    pub take_over: Option<Vec<Record>>,
    /// The sequences reversed, and recovered, by earlier runs ([`directions`]).
    pub directions: (BTreeSet<u32>, BTreeSet<u32>),
    /// With `run --ha`: this manager's id (it leads: the metrics page says so).
    pub manager: Option<String>,
}

/// How a session that started ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Stopped on request with its storage reachable.
    Clean,
    /// Stopped on request after every storage it used was lost.
    StoragesLost,
}

struct Executor<S: Solution, D: Driver> {
    plan: Plan,
    driver: D,
    core: Core<S>,
    /// Pair reports waiting for the core, in arrival order.
    reports: VecDeque<PairReport>,
    status: Arc<Mutex<Status>>,
    /// Shared with the threads of actions, which record their end.
    journal: Option<Arc<Mutex<Box<dyn Store>>>>,
    /// This run's number in the journal, and its actions so far (their ids).
    run: usize,
    /// With `run --ha`: this manager's id.
    manager: Option<String>,
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

impl<S: Solution, D: Driver> Executor<S, D> {
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
