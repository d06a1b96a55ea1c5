//! The session's pure core with real generated machines and scripted input: group
//! events, the orders they give, schedules, hold time; and the executor loop around
//! it with a fake driver (logic only: no storage is involved, no copy is claimed).

use csc_runtime::core::{Core, Order};
use csc_runtime::drivers::{Driver, DriverError, PairEvent, PairReport, Progress};
use csc_runtime::executor::{self, Options, SetupError, Status};
use csc_runtime::log::LogFormat;
use csc_runtime::machine::{Command, Solution};
use csc_runtime::plan::{Pair, Plan};
use csc_runtime::vocab::{BaseCopy, Command as Verb, Event};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

type Switch = cssc_solutions::mirror_freeze_switch::Chain;

fn pair(sequence: u32, copyset: usize, event: PairEvent) -> PairReport {
    PairReport {
        sequence,
        copyset,
        event,
    }
}

fn commands(orders: &[Order]) -> Vec<Command> {
    orders
        .iter()
        .filter_map(|o| match o {
            Order::Run { command, .. } => Some(*command),
            _ => None,
        })
        .collect()
}

#[test]
fn group_events_drive_the_machine_and_its_actions_in_document_order() {
    let plan = Plan::from_session(&Switch::SESSION);
    let t0 = Instant::now();
    let mut core = Core::<Switch>::new(&plan, t0, 0);
    assert_eq!(
        commands(&core.start()),
        vec![Command::Copy {
            sequence: 1,
            command: Verb::Start
        }]
    );
    core.issue(1, Verb::Start, t0);
    assert!(core.report(pair(1, 0, PairEvent::Started)).is_empty());
    let started = core.report(pair(1, 1, PairEvent::Started));
    assert!(matches!(
        started[..],
        [Order::Transition {
            event: Event::OnStart,
            to: csc_runtime::machine::SequenceState::Copying,
            ..
        }]
    ));
    assert!(core.report(pair(1, 0, PairEvent::Duplex)).is_empty());
    core.report(pair(1, 1, PairEvent::Duplex));
    assert_eq!(
        core.sequence_state(1),
        csc_runtime::machine::SequenceState::Duplex
    );
    // The first failing pair is the group's error: freeze, notify, run, in order.
    let error = core.report(pair(1, 1, PairEvent::Error("EIO".into())));
    let Order::Run { cause, .. } = &error[1] else {
        panic!("{error:?}")
    };
    let cause = cause.as_ref().expect("a cause");
    assert_eq!(
        (cause.event, cause.copyset.as_deref(), cause.detail.as_str()),
        (Event::OnError, Some("journal"), "EIO")
    );
    let verbs: Vec<String> = commands(&error).iter().map(|c| c.to_string()).collect();
    assert_eq!(
        verbs,
        [
            "freeze sequence 1",
            "notify \"oncall\" of 1:onError",
            "run \"/usr/local/sbin/site-switch\" about 1:onError (timeout 300s)"
        ]
    );
    assert!(
        core.report(pair(1, 0, PairEvent::Error("EIO".into())))
            .is_empty(),
        "one error per run"
    );
}

#[test]
fn a_freeze_the_document_does_not_thaw_is_released_when_the_hold_time_ends() {
    let mut plan = Plan::from_session(&Switch::SESSION);
    plan.timing.hold = Duration::from_secs(2);
    let t0 = Instant::now();
    let mut core = Core::<Switch>::new(&plan, t0, 0);
    assert_eq!(core.next_deadline(), None);
    core.issue(1, Verb::Freeze, t0);
    assert_eq!(core.next_deadline(), Some(t0 + Duration::from_secs(2)));
    assert!(core.tick(t0 + Duration::from_millis(1999), 0).is_empty());
    assert_eq!(
        core.tick(t0 + Duration::from_secs(2), 0),
        vec![Order::Release { sequence: 1 }]
    );
    assert!(core.tick(t0 + Duration::from_secs(3), 0).is_empty(), "once");
    core.issue(1, Verb::Freeze, t0);
    core.issue(1, Verb::Thaw, t0 + Duration::from_millis(5));
    assert!(
        core.tick(t0 + Duration::from_secs(9), 0).is_empty(),
        "a thaw ends the hold"
    );
}

#[test]
fn schedules_fire_every_period_and_daily_at_their_time_in_the_session_zone_across_midnight() {
    type Every3h = cssc_solutions::incremental_every_3h::Chain;
    let plan = Plan::from_session(&Every3h::SESSION);
    let scheduled = plan
        .sequences
        .iter()
        .find(|s| s.schedule.is_some())
        .expect("a schedule")
        .number;
    let t0 = Instant::now();
    let mut core = Core::<Every3h>::new(&plan, t0, 0);
    let three_hours = Duration::from_secs(3 * 3600);
    assert_eq!(core.next_deadline(), Some(t0 + three_hours));
    assert!(core.tick(t0 + three_hours / 2, 0).is_empty());
    let start = Command::Copy {
        sequence: scheduled,
        command: Verb::Start,
    };
    assert_eq!(commands(&core.tick(t0 + three_hours, 0)), vec![start]);
    assert_eq!(core.next_deadline(), Some(t0 + 2 * three_hours));

    type Practice = cssc_solutions::mirror_with_practice_copy::Chain;
    let mut plan = Plan::from_session(&Practice::SESSION);
    plan.time_zone = csc_runtime::plan::TimeZone::UTC;
    // 05:59:00 UTC: `daily 06:00` is a minute away, then a day.
    let wall = 86_400 * 20_000 + 5 * 3600 + 59 * 60;
    let mut core = Core::<Practice>::new(&plan, t0, wall);
    let minute = Duration::from_secs(60);
    assert_eq!(core.next_deadline(), Some(t0 + minute));
    let fired = core.tick(t0 + minute, wall + 60);
    assert_eq!(
        commands(&fired),
        vec![Command::Copy {
            sequence: 2,
            command: Verb::Start
        }]
    );
    assert_eq!(
        core.next_deadline(),
        Some(t0 + minute + Duration::from_secs(86_400))
    );
    // Just before midnight: 06:00 is 6 h 0 min 30 s away.
    let late = 86_400 * 20_000 + 23 * 3600 + 59 * 60 + 30;
    let core = Core::<Practice>::new(&plan, t0, late);
    assert_eq!(
        core.next_deadline(),
        Some(t0 + Duration::from_secs(6 * 3600 + 30))
    );
    // The same session in a run-time file's zone: at 23:59:30 UTC it is 08:59:30 in
    // Tokyo (UTC+9); the next 06:00 there is 21:00 UTC, 21 h 0 min 30 s away.
    plan.apply_run_file("h.toml", "[timing]\ntime_zone = \"Asia/Tokyo\"\n")
        .expect("a zone of the system's database");
    let core = Core::<Practice>::new(&plan, t0, late);
    assert_eq!(
        core.next_deadline(),
        Some(t0 + Duration::from_secs(21 * 3600 + 30))
    );
    let unknown = plan
        .apply_run_file("h.toml", "[timing]\ntime_zone = \"Europe/Pariss\"\n")
        .unwrap_err();
    assert!(
        unknown
            .message
            .contains("is not a zone of the system's time zone database"),
        "{unknown}"
    );
    assert_eq!(unknown.at.map(|at| (at.line, at.column)), Some((2, 13)));
}

#[test]
fn a_new_start_is_a_new_run_of_the_group() {
    let plan = Plan::from_session(&Switch::SESSION);
    let t0 = Instant::now();
    let mut core = Core::<Switch>::new(&plan, t0, 0);
    core.issue(1, Verb::Start, t0);
    core.report(pair(1, 0, PairEvent::Started));
    core.report(pair(1, 1, PairEvent::Started));
    assert!(!core
        .report(pair(1, 0, PairEvent::Error("x".into())))
        .is_empty());
    core.issue(1, Verb::Start, t0);
    core.report(pair(1, 0, PairEvent::Started));
    let again = core.report(pair(1, 1, PairEvent::Started));
    assert!(
        matches!(
            again[..],
            [Order::Transition {
                event: Event::OnStart,
                ..
            }]
        ),
        "{again:?}"
    );
}

/// A driver for the executor's logic: [`refusing_second`] refuses the second pair of a
/// group (having rolled back the first, as the qemu driver does); [`half_done`]
/// starts, and its one copy (sequence 1, copy set 0) is 32 of 64 MiB on the first two
/// asks, then done.
#[derive(Default)]
struct Fake {
    refuse_second: bool,
    progress_asked: usize,
    shut_down: Arc<AtomicBool>,
}

fn refusing_second() -> Fake {
    Fake {
        refuse_second: true,
        ..Fake::default()
    }
}

fn half_done() -> Fake {
    Fake::default()
}

impl Driver for Fake {
    type Notice = ();

    fn preflight(&mut self, _: &[Pair]) -> Result<(), DriverError> {
        Ok(())
    }
    fn start(&mut self, pairs: &[Pair], _: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        if self.refuse_second {
            return Err(DriverError::on(
                &pairs[1].source.storage,
                &pairs[1].source.name,
                "busy",
            ));
        }
        Ok(pairs
            .iter()
            .map(|p| pair(p.sequence, p.copyset, PairEvent::Started))
            .collect())
    }
    fn stop(&mut self, _: &[Pair]) -> Result<(), DriverError> {
        Ok(())
    }
    fn suspend(&mut self, _: &[Pair], _: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        Ok(Vec::new())
    }
    fn resume(&mut self, _: &[Pair], _: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        Ok(Vec::new())
    }
    fn freeze(&mut self, _: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        Ok(Vec::new())
    }
    fn thaw(&mut self, _: &[Pair]) -> Result<(), DriverError> {
        Ok(())
    }
    fn interpret(&mut self, _: &str, _: ()) -> Vec<PairReport> {
        Vec::new()
    }
    fn progress(&mut self) -> Vec<Progress> {
        self.progress_asked += 1;
        if self.refuse_second || self.progress_asked > 2 {
            return Vec::new();
        }
        vec![Progress {
            sequence: 1,
            copyset: 0,
            done: 32 << 20,
            total: 64 << 20,
            in_step: false,
            lag: None,
        }]
    }
    fn reaches(&self, _: &str) -> bool {
        true
    }
    fn adopt(&mut self, _: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        Ok(Vec::new())
    }
    fn shutdown(&mut self) {
        self.shut_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn a_session_whose_first_start_fails_half_way_does_not_run_and_says_which_volume() {
    let plan = Plan::from_session(&Switch::SESSION);
    let driver = refusing_second();
    let shut_down = Arc::clone(&driver.shut_down);
    let options = Options {
        bars: None,
        progress_every: None,
        journal: None,
        control: None,
        metrics: None,
    };
    let status = Arc::new(Mutex::new(Status::default()));
    let result = executor::run_with::<Switch, Fake>(
        plan,
        driver,
        mpsc::channel(),
        options,
        Arc::new(AtomicBool::new(false)),
        Arc::clone(&status),
    );
    match result {
        Err(SetupError::Storage(e)) => {
            assert_eq!(e.to_string(), "storage siteA, volume journal: busy")
        }
        other => panic!("{other:?}"),
    }
    assert!(shut_down.load(std::sync::atomic::Ordering::Relaxed));
    assert!(status.lock().expect("status").events.is_empty());
}

#[test]
fn a_run_taking_over_restores_the_machine_the_events_and_the_holds_from_the_journal() {
    use csc_runtime::core::record::{Record, StorageCommand};
    use csc_runtime::machine::SequenceState;
    use csc_runtime::vocab::Event;
    let plan = Plan::from_session(&Switch::SESSION);
    let t0 = Instant::now();
    let transition = |event: Event, to: SequenceState| Record::Transition {
        sequence: 1,
        event,
        from: SequenceState::Idle,
        to,
        time: String::new(),
    };
    let issue = |command: Verb| Record::Issue {
        sequence: 1,
        command: StorageCommand::Copy(command),
    };
    let done = |command: Verb| Record::Done {
        sequence: 1,
        command: StorageCommand::Copy(command),
        ok: true,
        detail: String::new(),
    };
    let records = vec![
        Record::Run {
            pid: 1,
            time: String::new(),
            solution: String::new(),
        },
        issue(Verb::Start),
        done(Verb::Start),
        transition(Event::OnStart, SequenceState::Copying),
        transition(Event::OnDuplex, SequenceState::Duplex),
        transition(Event::OnError, SequenceState::Failed),
        issue(Verb::Freeze),
        Record::ActionStart {
            id: "1.1".into(),
            action: "notify oncall".into(),
            sequence: 1,
            event: Event::OnError,
            contact: Some("oncall".into()),
            program: None,
            timeout_secs: 0,
        },
    ];
    let mut core = Core::<Switch>::new(&plan, t0, 0);
    let unfinished = core.restore(&records, t0);
    assert_eq!(
        core.sequence_state(1),
        csc_runtime::machine::SequenceState::Failed
    );
    assert_eq!(unfinished.commands, [(1, Verb::Freeze)]);
    assert_eq!(unfinished.actions, records[7..]);
    // onError also runs the site-switch program, which the killed run never started.
    assert!(
        matches!(
            unfinished.owed_actions.as_slice(),
            [csc_runtime::machine::Command::Run { sequence: 1, .. }]
        ),
        "{:?}",
        unfinished.owed_actions
    );
    // The events the killed run emitted are not emitted again...
    core.report(pair(1, 0, PairEvent::Duplex));
    assert!(core.report(pair(1, 1, PairEvent::Duplex)).is_empty());
    assert!(core
        .report(pair(1, 0, PairEvent::Error("again".into())))
        .is_empty());
    // ...and its freeze, never thawed, is released at once.
    assert_eq!(core.tick(t0, 0), vec![Order::Release { sequence: 1 }]);
    // A freeze that returned and a thaw: nothing to finish, nothing held.
    let mut core = Core::<Switch>::new(&plan, t0, 0);
    let records = [
        issue(Verb::Start),
        done(Verb::Start),
        issue(Verb::Freeze),
        done(Verb::Freeze),
        issue(Verb::Thaw),
    ];
    let unfinished = core.restore(&records, t0);
    assert_eq!(unfinished.commands, [(1, Verb::Thaw)]);
    assert!(core.tick(t0 + Duration::from_secs(60), 0).is_empty());
    // A freeze a killed run left unfinished, issued again by the run that took over
    // and returned: finished (it is not issued a third time by the next take-over).
    let mut core = Core::<Switch>::new(&plan, t0, 0);
    let run = Record::Run {
        pid: 2,
        time: String::new(),
        solution: String::new(),
    };
    let records = [
        issue(Verb::Start),
        issue(Verb::Freeze),
        run,
        issue(Verb::Freeze),
        done(Verb::Freeze),
    ];
    assert_eq!(core.restore(&records, t0).commands, [(1, Verb::Start)]);
    // A run killed before it issued the session's start owes it.
    let mut core = Core::<Switch>::new(&plan, t0, 0);
    assert_eq!(core.restore(&[], t0).commands, [(1, Verb::Start)]);
    // An operator's recover left unfinished is not issued again by a take-over (the
    // operator asks again); its direction is read from its `Done` alone.
    let mut core = Core::<Switch>::new(&plan, t0, 0);
    let recover = Record::Issue {
        sequence: 1,
        command: StorageCommand::Recover,
    };
    let records = [issue(Verb::Start), done(Verb::Start), recover];
    assert!(core.restore(&records, t0).commands.is_empty());
}

/// A terminal that keeps what is drawn on it.
#[derive(Debug, Default, Clone)]
struct Screen(Arc<Mutex<String>>);

impl indicatif::TermLike for Screen {
    fn width(&self) -> u16 {
        120
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        let mut screen = self.0.lock().unwrap();
        screen.push_str(s);
        screen.push('\n');
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().push_str(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_long_copy_gets_a_progress_bar_on_a_terminal_and_the_log_is_written_through_it() {
    let screen = Screen::default();
    let bars = indicatif::MultiProgress::with_draw_target(
        indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone())),
    );
    let options = Options {
        bars: Some(bars.clone()),
        progress_every: Some(Duration::from_secs(5)),
        journal: None,
        control: None,
        metrics: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (s, status) = (Arc::clone(&stop), Arc::new(Mutex::new(Status::default())));
    // The log of the executor's thread goes through the bars, as `run` sets it.
    let log = csc_runtime::log::subscriber(LogFormat::Human, tracing::Level::INFO, Some(bars));
    let run = std::thread::spawn(move || {
        tracing::subscriber::with_default(log, || {
            executor::run_with::<Switch, Fake>(
                Plan::from_session(&Switch::SESSION),
                half_done(),
                mpsc::channel(),
                options,
                s,
                status,
            )
        })
    });
    // The bars move every second: the copy is seen at 1 s and 2 s, gone at 3 s.
    std::thread::sleep(Duration::from_millis(4500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    run.join().unwrap().expect("ran");
    let drawn = screen.0.lock().unwrap().clone();
    assert!(
        drawn.contains("sequence 1 copy set db [") && drawn.contains("32.00 MiB/64.00 MiB"),
        "{drawn}"
    );
    // Log records were printed above the bars, through them.
    assert!(drawn.contains(" INFO session starts"), "{drawn}");
}
