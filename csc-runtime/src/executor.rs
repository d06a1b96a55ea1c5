//! The executor: the only place with I/O around a generated machine. It turns pair
//! reports from the driver into group events (a sequence across all copy sets is one
//! consistency group), feeds them and schedules to the pure `step`, and runs the
//! commands it returns, in order.

use crate::actions::{self, Occurrence};
use crate::drivers::qemu::qmp::Notice;
use crate::drivers::qemu::Qemu;
use crate::drivers::{Driver, DriverError, PairEvent, PairReport};
use crate::log::Log;
use crate::machine::{Command, Solution};
use crate::plan::{Pair, Plan};
use crate::session::Schedule;
use crate::vocab::{BaseCopy, Command as Verb, Event, Keyword};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
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
}

/// Why a session could not start.
#[derive(Debug)]
pub enum SetupError {
    Plan(String),
    Storage(DriverError),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Plan(e) => write!(f, "{e}"),
            SetupError::Storage(e) => write!(f, "{e}"),
        }
    }
}

pub struct Options {
    pub log: Log,
    /// How often to log the progress of long copies (`None`: never).
    pub progress_every: Option<Duration>,
}

/// Where one sequence's group stands in its current run.
#[derive(Default)]
struct Group {
    pairs: BTreeMap<usize, PairEvent>,
    emitted: BTreeSet<Event>,
}

impl Group {
    /// The group event a pair report completes, if any: the first error, or the
    /// moment every pair has got there.
    fn report(&mut self, copysets: usize, copyset: usize, event: PairEvent) -> Option<Event> {
        self.pairs.insert(copyset, event.clone());
        let all = |f: &dyn Fn(&PairEvent) -> bool| {
            self.pairs.len() == copysets && self.pairs.values().all(f)
        };
        let ended = |e: &PairEvent| matches!(e, PairEvent::Stopped | PairEvent::Error(_));
        let group = match event {
            PairEvent::Error(_) => Some(Event::OnError),
            PairEvent::Started => (self.pairs.len() == copysets).then_some(Event::OnStart),
            PairEvent::Duplex => all(&|e| *e == PairEvent::Duplex).then_some(Event::OnDuplex),
            PairEvent::Complete => all(&|e| *e == PairEvent::Complete).then_some(Event::OnComplete),
            PairEvent::Suspended => {
                all(&|e| *e == PairEvent::Suspended || ended(e)).then_some(Event::OnSuspend)
            }
            PairEvent::Stopped => all(&ended).then_some(Event::OnStop),
        }?;
        self.emitted.insert(group).then_some(group)
    }
}

/// Seconds from now to the next time `schedule` is due (daily times are UTC).
fn due_in(schedule: Schedule) -> Duration {
    match schedule {
        Schedule::Every { seconds } => Duration::from_secs(seconds),
        Schedule::Daily { hour, minute } => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let at = u64::from(hour) * 3600 + u64::from(minute) * 60;
            let today = now % 86_400;
            Duration::from_secs(if at > today {
                at - today
            } else {
                86_400 - today + at
            })
        }
    }
}

struct Executor<S: Solution> {
    plan: Plan,
    driver: Qemu,
    log: Log,
    state: S::State,
    groups: BTreeMap<u32, Group>,
    /// Pair reports waiting to be turned into group events, in arrival order.
    reports: VecDeque<PairReport>,
    status: Arc<Mutex<Status>>,
    /// Frozen sequences whose writers are held, and when the hold time ends.
    holds: BTreeMap<u32, Instant>,
}

/// How a session that started ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Stopped on request with its storage reachable.
    Clean,
    /// Stopped on request after every storage it used was lost.
    StoragesLost,
}

/// Runs a session until `stop` is set: starts what the machine's `start()` says, then
/// reacts to the storage and the schedules. Returns an error only when the session
/// could not start; the storage is then as it was.
pub fn run<S: Solution>(
    plan: Plan,
    options: Options,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
) -> Result<Ended, SetupError> {
    plan.validate().map_err(SetupError::Plan)?;
    if plan.copysets.is_empty() {
        return Err(SetupError::Plan(
            "the session has no copy sets: give COPYSET elements in the document or [[copyset]] in a run-time file".into(),
        ));
    }
    let (tx, rx) = mpsc::channel();
    // Kept so that losing every storage leaves the loop waiting, not ended.
    let _keep = tx.clone();
    let driver = Qemu::connect(&plan, tx).map_err(SetupError::Storage)?;
    let sites: BTreeSet<String> = plan
        .copysets
        .iter()
        .flat_map(|c| c.volumes.iter().map(|v| v.storage.clone()))
        .collect();
    let mut lost: BTreeSet<String> = BTreeSet::new();
    let mut ex = Executor::<S> {
        plan,
        driver,
        log: options.log,
        state: S::State::default(),
        groups: BTreeMap::new(),
        reports: VecDeque::new(),
        status,
        holds: BTreeMap::new(),
    };
    let all_pairs: Vec<Pair> = ex
        .plan
        .sequences
        .iter()
        .flat_map(|s| ex.plan.pairs(s.number))
        .collect();
    ex.driver
        .preflight(&all_pairs)
        .map_err(SetupError::Storage)?;
    ex.log
        .record("session", json!({ "state": "starting" }), "session starts");
    // The machine says what starting the session starts; if that cannot start, the
    // session does not run at all.
    for command in S::start() {
        if let Command::Copy {
            sequence,
            command: Verb::Start,
        } = command.into()
        {
            if let Err(e) = ex.start(sequence) {
                ex.driver.shutdown();
                return Err(SetupError::Storage(e));
            }
        }
    }
    ex.publish();
    let mut timers: BTreeMap<u32, (Instant, Schedule)> = ex
        .plan
        .sequences
        .iter()
        .filter_map(|s| {
            Some((
                s.number,
                (Instant::now() + due_in(s.schedule?), s.schedule?),
            ))
        })
        .collect();
    let mut next_progress = options.progress_every.map(|every| Instant::now() + every);
    while !stop.load(Ordering::Relaxed) {
        ex.drain_reports();
        // Wake for the next notice, or when a hold ends (released on time, not on the
        // next poll), or at the latest after 100 ms for the stop flag and schedules.
        let wake = ex
            .holds
            .values()
            .map(|at| at.saturating_duration_since(Instant::now()))
            .fold(Duration::from_millis(100), Duration::min);
        match rx.recv_timeout(wake) {
            Ok((site, notice)) => {
                let gone = matches!(notice, Notice::Disconnected | Notice::Hung);
                let reports = ex.driver.interpret(&site, notice);
                ex.reports.extend(reports);
                if gone && !ex.driver.reaches(&site) && lost.insert(site.clone()) && lost == sites {
                    ex.log.record(
                        "session",
                        json!({ "state": "storages-lost", "storages": lost }),
                        "every storage of the session is lost: nothing is copied; waiting for them or for a stop",
                    );
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        ex.release_expired_holds(now);
        let due: Vec<(u32, Schedule)> = timers
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(n, (_, schedule))| (*n, *schedule))
            .collect();
        for (number, schedule) in due {
            timers.insert(number, (now + due_in(schedule), schedule));
            ex.log.record(
                "schedule",
                json!({ "sequence": number }),
                &format!("schedule: start sequence {number}"),
            );
            ex.command(
                Command::Copy {
                    sequence: number,
                    command: Verb::Start,
                },
                None,
            );
        }
        if let (Some(at), Some(every)) = (next_progress, options.progress_every) {
            if at <= now {
                ex.log_progress();
                next_progress = Some(now + every);
            }
        }
    }
    ex.log.record(
        "session",
        json!({ "state": "stopping" }),
        "session stops: ending its copies and removing what it added to the storage",
    );
    ex.driver.shutdown();
    ex.log
        .record("session", json!({ "state": "stopped" }), "session stopped");
    Ok(if !sites.is_empty() && lost == sites {
        Ended::StoragesLost
    } else {
        Ended::Clean
    })
}

impl<S: Solution> Executor<S> {
    fn publish(&self) {
        let mut status = self.status.lock().expect("status");
        for seq in &self.plan.sequences {
            status
                .states
                .insert(seq.number, S::sequence_state(&self.state, seq.number));
        }
    }

    fn copy_of(&self, sequence: u32) -> BaseCopy {
        self.plan
            .sequence(sequence)
            .expect("the machine names only its sequences")
            .copy
    }

    /// Starts a sequence's group afresh.
    fn start(&mut self, sequence: u32) -> Result<(), DriverError> {
        self.groups.insert(sequence, Group::default());
        let pairs = self.plan.pairs(sequence);
        let reports = self.driver.start(&pairs, self.copy_of(sequence))?;
        self.reports.extend(reports);
        Ok(())
    }

    /// Turns queued pair reports into group events and feeds each to the machine.
    fn drain_reports(&mut self) {
        while let Some(report) = self.reports.pop_front() {
            let copysets = self.plan.copysets.len();
            let detail = match &report.event {
                PairEvent::Error(e) => e.clone(),
                other => format!("{other:?}"),
            };
            let set = self
                .plan
                .copysets
                .get(report.copyset)
                .map(|c| c.name.clone());
            self.log.record(
                "pair",
                json!({ "sequence": report.sequence, "copyset": set, "pair_event": format!("{:?}", report.event) }),
                &format!("sequence {} copy set {}: {detail}", report.sequence, set.as_deref().unwrap_or("?")),
            );
            let group = self.groups.entry(report.sequence).or_default();
            if let Some(event) = group.report(copysets, report.copyset, report.event) {
                self.feed(
                    report.sequence,
                    event,
                    Occurrence::new(&self.plan.name, report.sequence, event, set, detail),
                );
            }
        }
    }

    /// One group event through the machine, then its commands in order.
    fn feed(&mut self, sequence: u32, event: Event, occurrence: Occurrence) {
        self.status
            .lock()
            .expect("status")
            .events
            .push((sequence, event));
        let Some(typed) = S::event(sequence, event) else {
            return;
        };
        let before = S::sequence_state(&self.state, sequence);
        let (next, commands) = S::step(self.state, typed);
        self.state = next;
        let after = S::sequence_state(&self.state, sequence);
        self.log.record(
            "event",
            json!({ "sequence": sequence, "event": event.as_str(), "from": before, "to": after }),
            &format!("sequence {sequence} {event}: {before} -> {after}"),
        );
        self.publish();
        for command in commands {
            self.command(command.into(), Some(&occurrence));
        }
    }

    fn command(&mut self, command: Command, cause: Option<&Occurrence>) {
        let cause = cause.cloned();
        match command {
            Command::Copy {
                sequence,
                command: verb,
            } => {
                let pairs = self.plan.pairs(sequence);
                let copy = self.copy_of(sequence);
                let result = match verb {
                    Verb::Start => self.start(sequence),
                    Verb::Stop => self.driver.stop(&pairs),
                    Verb::Freeze => self.driver.freeze(&pairs).map(|r| {
                        self.holds
                            .insert(sequence, Instant::now() + self.plan.timing.hold);
                        self.reports.extend(r)
                    }),
                    Verb::Thaw => {
                        self.holds.remove(&sequence);
                        self.driver.thaw(&pairs)
                    }
                    Verb::Suspend => self
                        .driver
                        .suspend(&pairs, copy)
                        .map(|r| self.reports.extend(r)),
                    Verb::Resume => {
                        self.groups.insert(sequence, Group::default());
                        self.driver
                            .resume(&pairs, copy)
                            .map(|r| self.reports.extend(r))
                    }
                };
                let ok = result.is_ok();
                self.status
                    .lock()
                    .expect("status")
                    .commands
                    .push((sequence, verb, ok));
                let text = match &result {
                    Ok(()) => format!("{verb} sequence {sequence}"),
                    Err(e) => format!("{verb} sequence {sequence} failed: {e}"),
                };
                self.log.record(
                    "command",
                    json!({ "sequence": sequence, "command": verb.as_str(), "ok": ok }),
                    &text,
                );
                // A start that fails is the group's error: the document says what to do.
                if let (Err(e), Verb::Start) = (result, verb) {
                    for pair in &pairs {
                        self.reports.push_back(PairReport {
                            sequence,
                            copyset: pair.copyset,
                            event: PairEvent::Error(e.to_string()),
                        });
                    }
                }
            }
            Command::Notify {
                contact,
                sequence,
                event,
            } => {
                let what = self.occurrence(cause, sequence, event);
                match self.plan.contacts.iter().find(|c| c.name == contact).cloned() {
                    Some(contact) => {
                        let log = self.log.clone();
                        std::thread::spawn(move || actions::notify(&contact, &what, &log));
                    }
                    None => self.log.record(
                        "notify",
                        json!({ "contact": contact, "ok": false }),
                        &format!("notify {contact}: no such contact in this session; the event is only logged"),
                    ),
                }
            }
            Command::Run {
                program,
                timeout_secs,
                sequence,
                event,
            } => {
                let what = self.occurrence(cause, sequence, event);
                let log = self.log.clone();
                std::thread::spawn(move || {
                    actions::run(program, Duration::from_secs(timeout_secs), &what, &log)
                });
            }
        }
    }

    /// What an action is about: the event that caused it, or (for a command issued
    /// outside an event) the sequence and event it names.
    fn occurrence(&self, cause: Option<Occurrence>, sequence: u32, event: Event) -> Occurrence {
        cause.unwrap_or_else(|| {
            Occurrence::new(&self.plan.name, sequence, event, None, String::new())
        })
    }

    /// A freeze the document does not thaw releases its writers after the hold time.
    fn release_expired_holds(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .holds
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(n, _)| *n)
            .collect();
        for sequence in expired {
            self.holds.remove(&sequence);
            let result = self.driver.thaw(&self.plan.pairs(sequence));
            let ok = result.is_ok();
            let text = match result {
                Ok(()) => format!(
                    "sequence {sequence}: hold time ({} ms) over, writers released",
                    self.plan.timing.hold.as_millis()
                ),
                Err(e) => format!("sequence {sequence}: releasing the writers failed: {e}"),
            };
            self.log
                .record("release", json!({ "sequence": sequence, "ok": ok }), &text);
        }
    }

    fn log_progress(&mut self) {
        for p in self.driver.progress() {
            if p.total == 0 || p.done >= p.total {
                continue;
            }
            let set = self
                .plan
                .copysets
                .get(p.copyset)
                .map_or("?", |c| c.name.as_str());
            let percent = p.done * 100 / p.total;
            self.log.record(
                "progress",
                json!({ "sequence": p.sequence, "copyset": set, "done": p.done, "total": p.total }),
                &format!(
                    "sequence {} copy set {set}: {percent}% ({} of {} MiB)",
                    p.sequence,
                    p.done >> 20,
                    p.total >> 20
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_event_needs_every_pair_and_an_error_needs_one() {
        let mut g = Group::default();
        assert_eq!(g.report(2, 0, PairEvent::Started), None);
        assert_eq!(g.report(2, 1, PairEvent::Started), Some(Event::OnStart));
        assert_eq!(g.report(2, 0, PairEvent::Duplex), None);
        assert_eq!(g.report(2, 1, PairEvent::Duplex), Some(Event::OnDuplex));
        assert_eq!(g.report(2, 1, PairEvent::Duplex), None, "once per run");
        assert_eq!(
            g.report(2, 0, PairEvent::Error("x".into())),
            Some(Event::OnError)
        );
        assert_eq!(
            g.report(2, 1, PairEvent::Error("y".into())),
            None,
            "the first error only"
        );
        assert_eq!(g.report(2, 1, PairEvent::Stopped), Some(Event::OnStop));
    }

    #[test]
    fn suspension_counts_pairs_that_ended() {
        let mut g = Group::default();
        assert_eq!(
            g.report(2, 0, PairEvent::Error("dead".into())),
            Some(Event::OnError)
        );
        assert_eq!(g.report(2, 1, PairEvent::Suspended), Some(Event::OnSuspend));
    }

    #[test]
    fn daily_schedules_come_within_a_day() {
        let d = due_in(Schedule::Daily { hour: 0, minute: 0 });
        assert!(d > Duration::ZERO && d <= Duration::from_secs(86_400));
        assert_eq!(
            due_in(Schedule::Every { seconds: 10_800 }),
            Duration::from_secs(10_800)
        );
    }
}
