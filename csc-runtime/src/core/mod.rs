//! The session's pure core (quinn-proto style): pair reports and the clock go in,
//! orders come out. It turns pair reports into group events (a sequence across every
//! copy set is one consistency group), runs them through the generated `step`, fires
//! schedules and ends the holds of freezes the document does not thaw. It does no I/O
//! and reads no clock: the executor passes `now` (monotonic, for deadlines) and `wall`
//! (seconds since the Unix epoch, for `daily` schedules, which are UTC).

pub mod record;

use self::record::{Record, StorageCommand};
use crate::machine::{Command, SequenceState, Solution};
use crate::plan::Plan;
use crate::session::Schedule;
use crate::vocab::{Command as Verb, Event};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What happened to one pair (one copy set's hop of one sequence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairEvent {
    Started,
    /// A continuous pair is in full duplex.
    Duplex,
    /// A point-in-time copy is complete (for NoCopy: the instant copy exists).
    Complete,
    Suspended,
    Stopped,
    Error(String),
    /// Something to say about the pair that changes no state: how a restart copies
    /// (only what changed, or in full and why), what a resync copied.
    Note(String),
}

impl PairEvent {
    /// Its name, without the message an error or a note carries.
    pub fn name(&self) -> &'static str {
        match self {
            PairEvent::Started => "Started",
            PairEvent::Duplex => "Duplex",
            PairEvent::Complete => "Complete",
            PairEvent::Suspended => "Suspended",
            PairEvent::Stopped => "Stopped",
            PairEvent::Error(_) => "Error",
            PairEvent::Note(_) => "Note",
        }
    }

    /// What to say of it: an error's message, else its name.
    pub fn detail(&self) -> String {
        match self {
            PairEvent::Error(e) | PairEvent::Note(e) => e.clone(),
            other => other.name().to_string(),
        }
    }
}

/// A pair report: which pair (sequence, copy set index) and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairReport {
    pub sequence: u32,
    pub copyset: usize,
    pub event: PairEvent,
}

/// The group event a command answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub sequence: u32,
    pub event: Event,
    /// The copy set whose pair report completed the event.
    pub copyset: Option<String>,
    pub detail: String,
}

/// What the core asks of the executor, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Order {
    /// A group event happened; `from` and `to` are the sequence's states around it
    /// (equal when the sequence's type has no such event).
    Transition {
        sequence: u32,
        event: Event,
        from: SequenceState,
        to: SequenceState,
    },
    /// Run a command: the answer to `cause`, or (none) a start or a schedule.
    Run {
        command: Command,
        cause: Option<Cause>,
    },
    /// A freeze's hold time is over: release the writers of `sequence`.
    Release { sequence: u32 },
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
        if let PairEvent::Note(_) = event {
            return None;
        }
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
            PairEvent::Note(_) => None,
        }?;
        self.emitted.insert(group).then_some(group)
    }
}

/// Removes the first command `matches` finds.
fn cross_off(owed: &mut Vec<Command>, matches: impl Fn(&Command) -> bool) {
    if let Some(i) = owed.iter().position(matches) {
        owed.remove(i);
    }
}

/// How long from `wall` (seconds since the Unix epoch) until `schedule` is due;
/// `daily HH:MM` is read in `zone`. A time a daylight-saving change skips is taken as
/// the same span after the change (02:30 in a gap from 02:00 to 03:00 is 03:30); a
/// time it repeats, at its first occurrence.
pub fn due_in(schedule: Schedule, wall: u64, zone: &TimeZone) -> Duration {
    match schedule {
        Schedule::Every { seconds } => Duration::from_secs(seconds),
        Schedule::Daily { hour, minute } => {
            let wall = i64::try_from(wall).unwrap_or(i64::MAX);
            let next = |days: i64| -> Option<i64> {
                let now = Timestamp::from_second(wall)
                    .ok()?
                    .to_zoned_datetime(zone.clone());
                let mut day = now.date();
                for _ in 0..days {
                    day = day.tomorrow().ok()?;
                }
                let at = day
                    .at(i8::try_from(hour).ok()?, i8::try_from(minute).ok()?, 0, 0)
                    .to_zoned_datetime(zone.clone())
                    .ok()?;
                Some(at.timestamp().as_second())
            };
            // Today's time if it is still ahead, else tomorrow's (a day is 23 to
            // 25 hours across a change); a day past the supported range never comes.
            let due = [0, 1]
                .into_iter()
                .filter_map(next)
                .find(|at| *at > wall)
                .unwrap_or(wall + 86_400);
            Duration::from_secs(u64::try_from(due - wall).unwrap_or(86_400))
        }
    }
}

/// What a killed run left unfinished: commands it issued that never returned or never
/// got to issue, the `ActionStart` records of actions it did not see end, and the
/// actions its machine ordered that it never got to start.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unfinished {
    pub commands: Vec<(u32, Verb)>,
    pub actions: Vec<Record>,
    pub owed_actions: Vec<Command>,
}

pub struct Core<S: Solution> {
    state: S::State,
    copysets: Vec<String>,
    groups: BTreeMap<u32, Group>,
    /// Sequences with a schedule: when each is next due.
    schedules: BTreeMap<u32, (Instant, Schedule)>,
    /// Frozen sequences whose writers are held: when the hold time ends.
    holds: BTreeMap<u32, Instant>,
    hold: Duration,
    /// The zone `daily` schedules are read in.
    zone: TimeZone,
}

impl<S: Solution> Core<S> {
    pub fn new(plan: &Plan, now: Instant, wall: u64) -> Core<S> {
        Core {
            state: S::State::default(),
            copysets: plan.copysets.iter().map(|c| c.name.clone()).collect(),
            groups: BTreeMap::new(),
            schedules: plan
                .sequences
                .iter()
                .filter_map(|s| {
                    let schedule = s.schedule?;
                    Some((
                        s.number,
                        (now + due_in(schedule, wall, &plan.time_zone), schedule),
                    ))
                })
                .collect(),
            holds: BTreeMap::new(),
            hold: plan.timing.hold,
            zone: plan.time_zone.clone(),
        }
    }

    /// Takes over from a killed run, given its journal records from its `Run` on: its
    /// group events go through the machine again (their commands are returned only
    /// where the journal shows the killed run never issued or started them), its
    /// starts open new runs of their groups, and a freeze it did not thaw ends its hold
    /// now (the writers are released at the next tick).
    pub fn restore(&mut self, records: &[Record], now: Instant) -> Unfinished {
        let mut unfinished = Unfinished::default();
        // What the session start and each group event ordered, crossed off as the
        // journal shows it issued or started: a run killed between a transition and
        // its commands owes them.
        let mut owed: Vec<Command> = S::start().into_iter().map(Into::into).collect();
        for record in records {
            match record {
                Record::Issue {
                    sequence,
                    command: StorageCommand::Copy(verb),
                } => {
                    let (sequence, verb) = (*sequence, *verb);
                    cross_off(&mut owed, |c| {
                        *c == Command::Copy {
                            sequence,
                            command: verb,
                        }
                    });
                    self.issue(sequence, verb, now);
                    if verb == Verb::Freeze {
                        self.holds.insert(sequence, now);
                    }
                    // A run taking over issues again what a killed run left
                    // unfinished: one command, finished by the one `Done`.
                    if !unfinished.commands.contains(&(sequence, verb)) {
                        unfinished.commands.push((sequence, verb));
                    }
                }
                Record::Done {
                    sequence,
                    command: StorageCommand::Copy(verb),
                    ..
                } => {
                    let done = |c: &(u32, Verb)| *c == (*sequence, *verb);
                    if let Some(i) = unfinished.commands.iter().position(done) {
                        unfinished.commands.remove(i);
                    }
                }
                Record::Transition {
                    sequence, event, ..
                } => {
                    self.groups
                        .entry(*sequence)
                        .or_default()
                        .emitted
                        .insert(*event);
                    if let Some(typed) = S::event(*sequence, *event) {
                        let (next, commands) = S::step(self.state, typed);
                        self.state = next;
                        owed.extend(commands.into_iter().map(Into::into));
                    }
                }
                Record::ActionStart {
                    sequence,
                    event,
                    contact,
                    program,
                    ..
                } => {
                    cross_off(&mut owed, |c| match c {
                        Command::Notify {
                            contact: to,
                            sequence: s,
                            event: e,
                        } => contact.as_deref() == Some(*to) && s == sequence && e == event,
                        Command::Run {
                            program: p,
                            sequence: s,
                            event: e,
                            ..
                        } => program.as_deref() == Some(*p) && s == sequence && e == event,
                        Command::Copy { .. } => false,
                    });
                    unfinished.actions.push(record.clone())
                }
                Record::ActionEnd { id, .. } => unfinished.actions.retain(
                    |a| !matches!(a, Record::ActionStart { id: started, .. } if started == id),
                ),
                // An operator's recover or reverse is not replayed: the directions
                // its `Done` records left are read by the executor (takeover.rs).
                Record::Issue { .. }
                | Record::Done { .. }
                | Record::Run { .. }
                | Record::Stopped { .. } => {}
            }
        }
        for command in owed {
            match command {
                Command::Copy { sequence, command } => {
                    if !unfinished.commands.contains(&(sequence, command)) {
                        unfinished.commands.push((sequence, command));
                    }
                }
                action => unfinished.owed_actions.push(action),
            }
        }
        unfinished
    }

    /// What starting the session does, as the machine says.
    pub fn start(&self) -> Vec<Order> {
        S::start()
            .into_iter()
            .map(|c| Order::Run {
                command: c.into(),
                cause: None,
            })
            .collect()
    }

    /// The state of one sequence (Idle for a number the session does not have).
    pub fn sequence_state(&self, sequence: u32) -> SequenceState {
        S::sequence_state(&self.state, sequence).unwrap_or_default()
    }

    /// What each pair of `sequence` last reported in its group's current run, by
    /// copy set index (a pair that said nothing yet is absent).
    pub fn pair_states(&self, sequence: u32) -> BTreeMap<usize, &'static str> {
        self.groups.get(&sequence).map_or_else(BTreeMap::new, |g| {
            g.pairs.iter().map(|(c, e)| (*c, e.name())).collect()
        })
    }

    /// A command is about to run: a start or resume begins a new run of the group, a
    /// freeze holds its writers until `now` + the hold time, a thaw ends the hold.
    pub fn issue(&mut self, sequence: u32, verb: Verb, now: Instant) {
        match verb {
            Verb::Start | Verb::Resume => {
                self.groups.insert(sequence, Group::default());
            }
            Verb::Freeze => {
                self.holds.insert(sequence, now + self.hold);
            }
            Verb::Thaw => {
                self.holds.remove(&sequence);
            }
            Verb::Stop | Verb::Suspend => {}
        }
    }

    /// One pair report; the group event it completes, if any, goes through the machine.
    pub fn report(&mut self, report: PairReport) -> Vec<Order> {
        let copyset = self.copysets.get(report.copyset).cloned();
        let detail = report.event.detail();
        let sequence = report.sequence;
        let group = self.groups.entry(sequence).or_default();
        let Some(event) = group.report(self.copysets.len(), report.copyset, report.event) else {
            return Vec::new();
        };
        let from = self.sequence_state(sequence);
        let Some(typed) = S::event(sequence, event) else {
            let to = from;
            return vec![Order::Transition {
                sequence,
                event,
                from,
                to,
            }];
        };
        let (next, commands) = S::step(self.state, typed);
        self.state = next;
        let cause = Cause {
            sequence,
            event,
            copyset,
            detail,
        };
        let mut orders = vec![Order::Transition {
            sequence,
            event,
            from,
            to: self.sequence_state(sequence),
        }];
        orders.extend(commands.into_iter().map(|c| Order::Run {
            command: c.into(),
            cause: Some(cause.clone()),
        }));
        orders
    }

    /// What is due at `now`: schedules that fire (each starts its sequence) and holds
    /// that end.
    pub fn tick(&mut self, now: Instant, wall: u64) -> Vec<Order> {
        let mut orders = Vec::new();
        for (sequence, (at, schedule)) in self.schedules.iter_mut() {
            if *at <= now {
                *at = now + due_in(*schedule, wall, &self.zone);
                orders.push(Order::Run {
                    command: Command::Copy {
                        sequence: *sequence,
                        command: Verb::Start,
                    },
                    cause: None,
                });
            }
        }
        let ended: Vec<u32> = self
            .holds
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(s, _)| *s)
            .collect();
        for sequence in ended {
            self.holds.remove(&sequence);
            orders.push(Order::Release { sequence });
        }
        orders
    }

    /// The next moment `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.schedules
            .values()
            .map(|(at, _)| *at)
            .chain(self.holds.values().copied())
            .min()
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
    fn suspension_and_stop_count_pairs_that_ended() {
        let mut g = Group::default();
        assert_eq!(
            g.report(2, 0, PairEvent::Error("dead".into())),
            Some(Event::OnError)
        );
        assert_eq!(g.report(2, 1, PairEvent::Suspended), Some(Event::OnSuspend));
        let mut g = Group::default();
        assert_eq!(g.report(2, 0, PairEvent::Complete), None);
        assert_eq!(
            g.report(2, 1, PairEvent::Duplex),
            None,
            "complete needs every pair complete"
        );
        assert_eq!(g.report(2, 1, PairEvent::Complete), Some(Event::OnComplete));
    }

    #[test]
    fn daily_schedules_are_due_at_their_time_across_midnight_and_daylight_saving() {
        let utc = TimeZone::UTC;
        let day = 86_400 * 20_000;
        let daily = |hour, minute| Schedule::Daily { hour, minute };
        // 23:59:30 UTC: midnight is 30 s away, 00:30 is 30 min 30 s away.
        let late = day + 23 * 3600 + 59 * 60 + 30;
        assert_eq!(due_in(daily(0, 0), late, &utc), Duration::from_secs(30));
        assert_eq!(
            due_in(daily(0, 30), late, &utc),
            Duration::from_secs(30 * 60 + 30)
        );
        // 02:00 exactly: today's 02:00 has passed, the next is a day away.
        assert_eq!(
            due_in(daily(2, 0), day + 2 * 3600, &utc),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            due_in(Schedule::Every { seconds: 10_800 }, late, &utc),
            Duration::from_secs(10_800)
        );
        let paris = TimeZone::get("Europe/Paris").expect("tzdata (Europe/Paris)");
        let at = |text: &str| {
            u64::try_from(text.parse::<Timestamp>().expect("a time").as_second())
                .expect("after 1970")
        };
        // (daily at, from, due in hours and minutes, why)
        let cases = [
            (
                (6, 0),
                "2026-11-29T00:00:00Z",
                (5, 0),
                "winter, UTC+1: 06:00 is 05:00 UTC",
            ),
            (
                (6, 0),
                "2026-03-28T23:00:00Z",
                (5, 0),
                "spring forward (02:00 -> 03:00): 5 h from 00:00, not 6",
            ),
            (
                (2, 30),
                "2026-03-28T23:00:00Z",
                (2, 30),
                "02:30 does not exist that night: taken as 03:30",
            ),
            (
                (6, 0),
                "2026-10-24T22:00:00Z",
                (7, 0),
                "fall back (03:00 -> 02:00): 7 h from 00:00",
            ),
            (
                (2, 30),
                "2026-10-24T22:00:00Z",
                (2, 30),
                "02:30 happens twice: the first",
            ),
            (
                (6, 0),
                "2026-03-28T05:00:00Z",
                (23, 0),
                "06:00 to 06:00 across spring forward",
            ),
            (
                (6, 0),
                "2026-10-25T05:00:00Z",
                (24, 0),
                "06:00 to 06:00 after the change",
            ),
            (
                (6, 0),
                "2026-10-24T04:00:00Z",
                (25, 0),
                "06:00 to 06:00 across fall back",
            ),
        ];
        for ((hour, minute), from, (h, m), why) in cases {
            assert_eq!(
                due_in(daily(hour, minute), at(from), &paris),
                Duration::from_secs(h * 3600 + m * 60),
                "{why}"
            );
        }
    }
}
