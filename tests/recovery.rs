//! Resynchronisation on real qemu-storage-daemons: a continuous pair that was split
//! (suspend, freeze) or lost its target gets back in duplex by copying what changed on
//! its source, and only that (bytes asserted); a record that is lost is said, and the
//! pair copied in full. Every test ends with the target compared byte for byte.

mod support;

use csc_runtime::drivers::qemu::Qemu;
use csc_runtime::drivers::{Driver, PairEvent, PairReport};
use csc_runtime::lab::Lab;
use csc_runtime::plan::Plan;
use csc_runtime::vocab::{BaseCopy, ContinuousMode};
use std::time::Duration;
use support::writer::Writer;
use support::*;

const SYNC: BaseCopy = BaseCopy::Continuous(ContinuousMode::Synchronous);
const K64: u64 = 65536;

fn mirrored(
    mode: BaseCopy,
) -> (
    Lab,
    Plan,
    Qemu,
    std::sync::mpsc::Receiver<(String, csc_runtime::drivers::qemu::qmp::Notice)>,
) {
    let (lab, plan) = lab(
        &[("a", &[("src", 64)]), ("b", &[("dst", 64)])],
        &[&[("a", "src"), ("b", "dst")]],
        mode,
    );
    let (mut d, rx) = driver(&plan);
    d.start(&plan.pairs(1), mode).expect("start");
    await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
    (lab, plan, d, rx)
}

fn notes(reports: &[PairReport]) -> Vec<String> {
    reports
        .iter()
        .filter_map(|r| match &r.event {
            PairEvent::Note(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pair_suspended_under_writes_resumes_copying_only_what_changed() {
    let (lab, plan, mut d, rx) = mirrored(SYNC);
    // An application writes 4 KiB blocks one after another, on one connection, across
    // the suspend.
    let writer = Writer::start(&lab, &[("a", "src")], 64 * MIB / 4096);
    writer.wait_for_progress(200);
    let asked = writer.acknowledged() as u64;
    let suspended = d.suspend(&plan.pairs(1), SYNC).expect("suspend");
    assert!(suspended.iter().any(|r| r.event == PairEvent::Suspended));
    let at_split = writer.acknowledged() as u64;
    writer.wait_for_progress(200);
    let (acks, ended, _) = writer.stop();
    ended.expect("the application never saw an error");
    let after = acks.len() as u64 - at_split;
    assert!(
        !same(&lab, ("a", "src"), ("b", "dst")),
        "a suspended pair copies nothing"
    );
    let mut reports = d.resume(&plan.pairs(1), SYNC).expect("resume");
    reports.extend(await_reports(&mut d, &rx, &PairEvent::Duplex, 1));
    assert!(same(&lab, ("a", "src"), ("b", "dst")), "back in step");
    let bytes = d.bytes_resynced(1, 0).expect("a resync ran");
    // The 64 KiB clusters of the blocks written from the suspend's call on (the
    // split is in there, and the write in flight at it may count too), never the
    // whole volume.
    let first = (asked.saturating_sub(1) * 4096) / K64;
    let last = (acks.len() as u64 * 4096) / K64;
    assert!(
        bytes >= after.saturating_sub(1) * 4096 && bytes <= (last - first + 1) * K64,
        "copied {bytes} bytes for {after} blocks of 4 KiB written after the split"
    );
    println!("resync after a suspend under writes: {bytes} bytes for {after} blocks of 4 KiB");
    assert!(
        notes(&reports)
            .iter()
            .any(|n| n.contains(&format!("{bytes} bytes copied"))),
        "{reports:?}"
    );

    // Quiet now: exactly the blocks written while suspended are copied.
    d.suspend(&plan.pairs(1), SYNC).expect("suspend again");
    let offsets: Vec<u64> = (0..10).map(|k| (300 + 3 * k) * K64).collect();
    lab.write("a", "src", 0x5a, &offsets).expect("writes");
    d.resume(&plan.pairs(1), SYNC).expect("resume again");
    await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
    assert_eq!(d.bytes_resynced(1, 0), Some(10 * K64), "only what changed");
    assert!(same(&lab, ("a", "src"), ("b", "dst")));
    // Synchronous again: a write is on the target once acknowledged.
    lab.write("a", "src", 0x5b, &[7 * K64, 500 * K64])
        .expect("writes after the resume");
    assert!(
        same(&lab, ("a", "src"), ("b", "dst")),
        "synchronous after the resume"
    );
    d.shutdown();
    assert_nothing_left(&lab, &["a", "b"]);
}

#[test]
fn a_target_that_comes_back_gets_only_what_it_missed() {
    let (mut lab, plan, mut d, rx) = mirrored(SYNC);
    lab.kill("b");
    // The first write waits out the failed-target hold, then the source goes on alone.
    let missed: Vec<u64> = (0..8).map(|k| (100 + 5 * k) * K64).collect();
    lab.write("a", "src", 0x71, &missed)
        .expect("writes while the target is down");
    let mut failed = Vec::new();
    while let Ok((site, notice)) = rx.recv_timeout(Duration::from_millis(500)) {
        failed.extend(d.interpret(&site, notice));
    }
    assert!(
        failed
            .iter()
            .any(|r| matches!(r.event, PairEvent::Error(_))),
        "{failed:?}"
    );
    // As the document's onError would: freeze (nothing to cut: the target is gone).
    d.freeze(&plan.pairs(1)).expect("freeze");
    d.thaw(&plan.pairs(1)).expect("thaw");
    lab.restart("b").expect("the target site is back");
    assert!(!same(&lab, ("a", "src"), ("b", "dst")));

    let reports = d.resume(&plan.pairs(1), SYNC).expect("resume");
    assert!(
        reports.iter().any(|r| r.event == PairEvent::Duplex),
        "{reports:?}"
    );
    assert!(same(&lab, ("a", "src"), ("b", "dst")), "back in step");
    let changed = missed.len() as u64 * K64;
    let bytes = d.bytes_resynced(1, 0).expect("resynced");
    println!("resync after a target outage: {bytes} bytes for {changed} changed");
    assert!(
        bytes >= changed && bytes * 10 <= changed * 12,
        "copied {bytes} bytes for {changed} changed"
    );
    d.shutdown();
    assert_nothing_left(&lab, &["a", "b"]);
}

#[test]
fn a_lost_record_is_said_and_the_pair_copied_in_full() {
    let (mut lab, plan, mut d, rx) = mirrored(SYNC);
    d.suspend(&plan.pairs(1), SYNC).expect("suspend");
    lab.write("a", "src", 0x33, &[K64]).expect("write");
    // The source daemon restarts: its in-memory record is gone.
    lab.kill("a");
    while let Ok((site, notice)) = rx.recv_timeout(Duration::from_millis(300)) {
        d.interpret(&site, notice);
    }
    lab.restart("a").expect("the source site is back");
    let mut reports = d.resume(&plan.pairs(1), SYNC).expect("resume");
    let said = notes(&reports);
    assert!(
        said.iter()
            .any(|n| n.starts_with("full copy: the record of what changed on src on a is lost")),
        "{said:?}"
    );
    reports.extend(await_reports(&mut d, &rx, &PairEvent::Duplex, 1));
    assert_eq!(d.bytes_resynced(1, 0), None, "no partial copy");
    assert!(
        same(&lab, ("a", "src"), ("b", "dst")),
        "the full copy is complete"
    );
    d.shutdown();
}

// A client that attaches to a source volume after its mirror started: its writes are
// the volume's, and a pair is never in duplex without them (issue 19, first defect).

#[test]
fn a_writer_attached_after_the_target_failed_is_resynchronised() {
    let (mut lab, plan, mut d, rx) = mirrored(SYNC);
    // The target site fails while nothing is written.
    lab.kill("b");
    let mut failed = Vec::new();
    while let Ok((site, notice)) = rx.recv_timeout(Duration::from_millis(500)) {
        failed.extend(d.interpret(&site, notice));
    }
    d.freeze(&plan.pairs(1)).expect("freeze");
    d.thaw(&plan.pairs(1)).expect("thaw");
    // The application moves: it opens a new export of the source and rewrites 40
    // random chunks through it.
    let export = attach_late(&lab, "a", "src", 1);
    let chunks = random_chunks(19, 40, 64 * MIB);
    lab.write_to("a", &export, 0x19, &chunks, K64)
        .expect("writes through the late export");
    lab.restart("b").expect("the target site is back");
    let mut reports = d.resume(&plan.pairs(1), SYNC).expect("resume");
    if !reports.iter().any(|r| r.event == PairEvent::Duplex) {
        reports.extend(await_reports(&mut d, &rx, &PairEvent::Duplex, 1));
    }
    assert!(
        same(&lab, ("a", "src"), ("b", "dst")),
        "duplex, so the target is the source: {reports:?}"
    );
    let bytes = d.bytes_resynced(1, 0).expect("resynced");
    assert!(
        (40 * K64..=41 * K64).contains(&bytes),
        "copied {bytes} bytes for 40 chunks: {reports:?}"
    );
    // The restarted mirror took the writer over.
    lab.write_to("a", &export, 0x1a, &random_chunks(20, 10, 64 * MIB), K64)
        .expect("more writes through the late export");
    assert!(same(&lab, ("a", "src"), ("b", "dst")), "mirrored");
    d.shutdown();
    assert_nothing_left(&lab, &["a", "b"]);
}

#[test]
fn a_writer_attached_in_duplex_is_an_error_until_its_mirror_restarts() {
    let (lab, plan, mut d, rx) = mirrored(SYNC);
    let export = attach_late(&lab, "a", "src", 2);
    lab.write_to("a", &export, 0x29, &random_chunks(29, 20, 64 * MIB), 4096)
        .expect("writes through the late export");
    // What the executor's audit finds: the pair is no longer in step.
    let found = d.audit();
    assert!(
        matches!(&found[..], [r] if matches!(&r.event, PairEvent::Error(e) if e.contains(&export))),
        "{found:?}"
    );
    assert!(d.audit().is_empty(), "said once");
    // No record started before the writer: the restart copies in full, and says why.
    let mut reports = d.resume(&plan.pairs(1), SYNC).expect("resume");
    reports.extend(await_reports(&mut d, &rx, &PairEvent::Duplex, 1));
    assert!(
        notes(&reports)
            .iter()
            .any(|n| n.starts_with("full copy: a writer bypassed the mirror of src on a")),
        "{reports:?}"
    );
    assert!(same(&lab, ("a", "src"), ("b", "dst")));
    // The new mirror took the writer over: its writes are synchronous now.
    lab.write_to("a", &export, 0x2a, &random_chunks(30, 20, 64 * MIB), 4096)
        .expect("more writes through the late export");
    assert!(same(&lab, ("a", "src"), ("b", "dst")), "mirrored");
    assert!(d.audit().is_empty());
    d.shutdown();
    assert_nothing_left(&lab, &["a", "b"]);
}

#[test]
fn a_writer_attached_while_split_is_resynchronised() {
    let (lab, plan, mut d, rx) = mirrored(SYNC);
    d.suspend(&plan.pairs(1), SYNC).expect("suspend");
    let export = attach_late(&lab, "a", "src", 3);
    let chunks = random_chunks(39, 12, 64 * MIB);
    lab.write_to("a", &export, 0x39, &chunks, K64)
        .expect("writes through the late export");
    d.resume(&plan.pairs(1), SYNC).expect("resume");
    await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
    assert!(same(&lab, ("a", "src"), ("b", "dst")));
    assert_eq!(d.bytes_resynced(1, 0), Some(12 * K64), "only what changed");
    d.shutdown();
}

#[test]
fn a_target_killed_under_writes_comes_back_in_duplex_and_stays() {
    // Issue 19, second defect: the application writes random 4 KiB blocks through its
    // own export, attached before the session started, across the target's outage and
    // its return.
    let (mut lab, plan, mut d, rx) = mirrored(SYNC);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = {
        let (stop, uri) = (stop.clone(), lab.nbd_uri("a", "app-src"));
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round += 1;
                let mut args = vec!["-f".to_string(), "raw".into(), uri.clone()];
                for off in random_chunks(round, 40, 64 * MIB) {
                    // 4 KiB inside each chunk, at a place that varies with the round.
                    let at = off + (round % 16) * 4096;
                    args.extend(["-c".into(), format!("write -P {} {at} 4096", round % 250)]);
                }
                let out = std::process::Command::new("qemu-io").args(&args).output();
                match out {
                    Ok(o)
                        if o.status.success()
                            && !String::from_utf8_lossy(&o.stdout).contains("error") => {}
                    other => return Err(format!("round {round}: {other:?}")),
                }
            }
            Ok(round)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    lab.kill("b");
    // (A failed write-blocking mirror sends an error event per application write:
    // notices for a while, not until they stop.)
    let failed = notices_for(&mut d, &rx, Duration::from_millis(1500));
    assert!(failed
        .iter()
        .any(|r| matches!(r.event, PairEvent::Error(_))));
    d.freeze(&plan.pairs(1)).expect("freeze");
    d.thaw(&plan.pairs(1)).expect("thaw");
    std::thread::sleep(Duration::from_millis(500));
    lab.restart("b").expect("the target site is back");
    let mut reports = d.resume(&plan.pairs(1), SYNC).expect("resume");
    if !reports.iter().any(|r| r.event == PairEvent::Duplex) {
        reports.extend(await_reports(&mut d, &rx, &PairEvent::Duplex, 1));
    }
    let mut after = notices_for(&mut d, &rx, Duration::from_millis(1500));
    after.extend(d.audit());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = app
        .join()
        .expect("app")
        .expect("the application never saw an error");
    assert!(
        after.is_empty(),
        "back in duplex, and stays: {after:?} after {reports:?}"
    );
    assert!(same(&lab, ("a", "src"), ("b", "dst")), "{reports:?}");
    println!("{rounds} rounds of 40 random 4 KiB writes; {reports:?}");
    d.shutdown();
    assert_nothing_left(&lab, &["a", "b"]);
}

/// What the driver makes of the notices of the next `window`.
fn notices_for(
    d: &mut Qemu,
    rx: &std::sync::mpsc::Receiver<(String, csc_runtime::drivers::qemu::qmp::Notice)>,
    window: Duration,
) -> Vec<PairReport> {
    let end = std::time::Instant::now() + window;
    let mut reports = Vec::new();
    while let Ok((site, notice)) =
        rx.recv_timeout(end.saturating_duration_since(std::time::Instant::now()))
    {
        reports.extend(d.interpret(&site, notice));
    }
    reports
}
