//! Consistency groups under load, on real qemu-storage-daemons: an application does
//! dependent writes over four volumes of site A, mirrored to two target sites (B and
//! C); a freeze, a killed target site, a hung target site, a lost source site and an
//! asynchronous group each leave the targets holding a prefix of the writes (nothing
//! present whose predecessor is missing), with every write acknowledged before the
//! failure present for synchronous pairs, and the application going on afterwards.

mod support;

use csc_runtime::drivers::qemu::Qemu;
use csc_runtime::drivers::{Driver, PairEvent};
use csc_runtime::lab::Lab;
use csc_runtime::machine::SequenceState;
use csc_runtime::machine::Solution;
use csc_runtime::plan::{CopySet, Plan, Storage};
use csc_runtime::vocab::{BaseCopy, Command as Verb, ContinuousMode};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::writer::{held, Writer};
use support::*;

const SLOTS: u64 = 8192; // 32 MiB volumes of 4 KiB slots
const SOURCES: [(&str, &str); 4] = [
    ("siteA", "s0"),
    ("siteA", "s1"),
    ("siteA", "s2"),
    ("siteA", "s3"),
];
const TARGETS: [(&str, &str); 4] = [
    ("siteB", "t0"),
    ("siteB", "t1"),
    ("siteC", "t2"),
    ("siteC", "t3"),
];

/// Site A's four volumes, each mirrored to site B or C.
fn group_lab(copy: BaseCopy) -> (Lab, Plan) {
    let copysets: Vec<[(&str, &str); 2]> = SOURCES
        .iter()
        .zip(TARGETS.iter())
        .map(|(s, t)| [*s, *t])
        .collect();
    let copysets: Vec<&[(&str, &str)]> = copysets.iter().map(|c| &c[..]).collect();
    lab(
        &[
            ("siteA", &[("s0", 32), ("s1", 32), ("s2", 32), ("s3", 32)]),
            ("siteB", &[("t0", 32), ("t1", 32)]),
            ("siteC", &[("t2", 32), ("t3", 32)]),
        ],
        &copysets,
        copy,
    )
}

/// The lab's plan under a compiled solution's document (its sequences and actions).
fn under<S: Solution>(lab: &Lab, plan: &Plan) -> Plan {
    let mut document = Plan::from_session(&S::SESSION);
    document.storages = plan
        .storages
        .keys()
        .map(|id| {
            let storage = Storage {
                id: id.clone(),
                driver: csc_runtime::vocab::DriverKind::Qemu,
                endpoint: csc_runtime::address::Address::Unix(String::new()),
                data: None,
            };
            (id.clone(), storage)
        })
        .collect();
    document.copysets = plan
        .copysets
        .iter()
        .map(|c| CopySet {
            name: c.name.clone(),
            volumes: c.volumes.clone(),
        })
        .collect();
    lab.wire(&mut document);
    document
}

fn assert_prefix(lab: &Lab, what: &str) -> u64 {
    let found = held(lab, &TARGETS, SLOTS);
    assert!(
        found.past_gap.is_empty(),
        "{what}: the targets hold {} writes whose predecessor {} is missing: {:?}",
        found.past_gap.len(),
        found.prefix,
        &found.past_gap[..found.past_gap.len().min(10)]
    );
    found.prefix
}

/// The group lab driven directly, in duplex, with the application writing.
fn driven_under_load(mode: BaseCopy, warm_up: usize) -> (Lab, Plan, Qemu, Writer) {
    let (lab, plan) = group_lab(mode);
    let (mut d, rx) = driver(&plan);
    d.start(&plan.pairs(1), mode).expect("start");
    await_reports(&mut d, &rx, &PairEvent::Duplex, 4);
    let writer = Writer::start(&lab, &SOURCES, SLOTS);
    writer.wait_for_progress(warm_up);
    (lab, plan, d, writer)
}

/// Stops the application (which must never have seen an error) and checks its
/// targets: a prefix holding every write acknowledged before `instant`. Returns the
/// acknowledgements and the prefix.
fn consistent_since(
    lab: &Lab,
    writer: Writer,
    instant: Instant,
    what: &str,
) -> (Vec<Instant>, u64) {
    let (acks, ended, _) = writer.stop();
    ended.expect("the application never saw an error");
    let prefix = assert_prefix(lab, what);
    let before = acks.partition_point(|t| *t < instant);
    assert!(
        prefix as usize >= before,
        "{what}: {before} writes were acknowledged before {instant:?}, the targets hold {prefix}"
    );
    (acks, prefix)
}

#[test]
fn an_explicit_freeze_under_dependent_writes_holds_cuts_and_releases() {
    let mode = BaseCopy::Continuous(ContinuousMode::Synchronous);
    let (lab, plan, mut d, writer) = driven_under_load(mode, 500);

    let reports = d.freeze(&plan.pairs(1)).expect("freeze");
    assert_eq!(
        reports
            .iter()
            .filter(|r| r.event == PairEvent::Suspended)
            .count(),
        4
    );
    let held_at = d.held_at(1).expect("held");
    // While held, the application waits: nothing is acknowledged.
    let during = writer.acknowledged();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        writer.acknowledged() <= during + 1,
        "writes were acknowledged during the hold: {during} -> {}",
        writer.acknowledged()
    );
    let released = Instant::now();
    d.thaw(&plan.pairs(1)).expect("thaw");
    writer.wait_for_progress(500);
    let (acks, prefix) = consistent_since(&lab, writer, held_at, "freeze (RPO 0 at the hold)");
    let before = acks.partition_point(|t| *t < held_at);
    assert!(
        (prefix as usize) < acks.len(),
        "the writes after the release are not mirrored"
    );
    let resumed = acks[acks.partition_point(|t| *t <= released)];
    println!(
        "freeze: {before} writes before the hold, prefix {prefix}, first write after the thaw {:?} after it",
        resumed.duration_since(released)
    );
    d.shutdown();
    for site in ["siteA", "siteB", "siteC"] {
        assert!(
            leftovers(&lab, site).is_empty(),
            "{site}: {:?}",
            leftovers(&lab, site)
        );
    }
}

#[test]
fn an_asynchronous_group_is_frozen_at_a_consistent_instant() {
    let mode = BaseCopy::Continuous(ContinuousMode::Asynchronous);
    let (lab, plan, mut d, writer) = driven_under_load(mode, 2000);
    let asked = Instant::now();
    d.freeze(&plan.pairs(1)).expect("freeze");
    d.thaw(&plan.pairs(1)).expect("thaw");
    writer.wait_for_progress(500);
    consistent_since(
        &lab,
        writer,
        asked,
        "asynchronous freeze (every write before it was asked)",
    );
    d.shutdown();
}

/// Runs mirror-freeze-switch (onError: freeze, notify, run) over the group lab.
fn session(lab: &Lab, plan: &Plan) -> Session {
    type S = cssc_solutions::mirror_freeze_switch::Chain;
    let plan = under::<S>(lab, plan);
    let session = spawn::<S>(plan);
    wait_until(&session.1, "duplex", |s| {
        s.states.get(&1) == Some(&SequenceState::Duplex)
    });
    session
}

/// The session in duplex, with the application writing.
fn session_under_load(lab: &Lab, plan: &Plan) -> (Session, Writer) {
    let s = session(lab, plan);
    let writer = Writer::start(lab, &SOURCES, SLOTS);
    writer.wait_for_progress(500);
    (s, writer)
}

fn froze(session: &Session) {
    wait_until(&session.1, "the freeze", |s| {
        s.commands.iter().any(|c| c.1 == Verb::Freeze && c.2)
    });
}

fn end(session: Session) {
    session.0.store(true, Ordering::Relaxed);
    session
        .2
        .join()
        .expect("executor")
        .expect("the session ran");
}

#[test]
fn a_target_site_killed_under_load_leaves_consistent_targets_and_the_application_going() {
    let (lab, plan) = group_lab(BaseCopy::Continuous(ContinuousMode::Synchronous));
    let (s, writer) = session_under_load(&lab, &plan);
    let mut lab = lab;
    let killed = Instant::now();
    lab.kill("siteB");
    froze(&s);
    // The document does not thaw: the hold time releases the writers.
    writer.wait_for_progress(500);
    let (acks, prefix) = consistent_since(&lab, writer, killed, "target killed (RPO 0)");
    let before = acks.partition_point(|t| *t < killed);
    let stall = acks
        .windows(2)
        .filter(|w| w[1] > killed)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .expect("writes after the kill");
    println!("target killed: prefix {prefix} of {}, {before} acknowledged before the kill, longest stall {stall:?}", acks.len());
    end(s);
}

#[test]
fn a_hung_target_site_is_noticed_frozen_and_the_application_goes_on() {
    let (lab, plan) = group_lab(BaseCopy::Continuous(ContinuousMode::Synchronous));
    let (s, writer) = session_under_load(&lab, &plan);
    let stopped = Instant::now();
    lab.signal("siteB", "STOP").expect("SIGSTOP");
    froze(&s);
    let noticed = stopped.elapsed();
    writer.wait_for_progress(500);
    let (acks, prefix) = consistent_since(&lab, writer, stopped, "target hung (RPO 0)");
    lab.signal("siteB", "CONT").expect("SIGCONT");
    assert!(
        noticed < Duration::from_secs(5),
        "the hang was noticed and frozen after {noticed:?}"
    );
    println!(
        "target hung: frozen {noticed:?} after SIGSTOP, prefix {prefix} of {}",
        acks.len()
    );
    end(s);
}

#[test]
fn a_source_site_lost_under_load_leaves_every_acknowledged_write_on_the_targets() {
    let (lab, plan) = group_lab(BaseCopy::Continuous(ContinuousMode::Synchronous));
    let (s, writer) = session_under_load(&lab, &plan);
    let mut lab = lab;
    lab.kill("siteA");
    froze(&s);
    let (acks, ended, _) = writer.stop();
    assert!(ended.is_err(), "the application lost its volumes");
    let prefix = assert_prefix(&lab, "source lost");
    assert!(
        prefix as usize >= acks.len(),
        "every acknowledged write ({}) is on the targets ({prefix})",
        acks.len()
    );
    end(s);
}
