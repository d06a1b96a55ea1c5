//! The runtime against real qemu-storage-daemons (Debian's qemu-utils): every copy
//! type and mode with the bytes compared, point-in-time semantics under concurrent
//! writes, the CPPC chain end to end, a target site failure, every action type, and
//! bad run-time input refused with the storage left as it was.

#[path = "../csc-compiler/tests/goldens/fixtures/actions.rs"]
#[allow(dead_code)]
#[rustfmt::skip]
mod actions_fixture;

mod support;

use csc_runtime::drivers::{Driver, PairEvent};
use csc_runtime::lab::Lab;
use csc_runtime::machine::SequenceState;
use csc_runtime::machine::Solution;
use csc_runtime::plan::Plan;
use csc_runtime::vocab::{BaseCopy, Command as Verb, ContinuousMode, Event, PointInTimeMode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::host::*;
use support::*;

#[test]
fn point_in_time_copy_is_the_source_as_of_its_start_under_concurrent_writes() {
    let (lab, plan) = lab(
        &[("a", &[("src", 256), ("dst", 256)])],
        &[&[("a", "src"), ("a", "dst")]],
        BaseCopy::PointInTime(PointInTimeMode::Copy),
    );
    let expected = lab.dir.join("expected.img");
    std::fs::copy(lab.image("a", "src"), &expected).expect("snapshot the source");
    let (mut d, rx) = driver(&plan);
    d.preflight(&plan.pairs(1)).expect("preflight");
    d.start(&plan.pairs(1), BaseCopy::PointInTime(PointInTimeMode::Copy))
        .expect("start");
    // Overwrite 64 regions across the volume, the first while the copy surely runs.
    let offsets: Vec<u64> = (0..64).map(|k| k * 4 * MIB).collect();
    support::writer::write_pattern(&lab, "a", "src", 0xee, &offsets[..1]);
    let running = d.progress();
    assert!(
        running.iter().any(|p| p.done < p.total),
        "the first write was acknowledged while the copy still ran: {running:?}"
    );
    support::writer::write_pattern(&lab, "a", "src", 0xee, &offsets[1..]);
    await_reports(&mut d, &rx, &PairEvent::Complete, 1);
    assert!(
        lab.same(lab.image("a", "dst"), &expected).expect("compare"),
        "the copy is the source as of its start"
    );
    assert!(
        !same(&lab, ("a", "src"), ("a", "dst")),
        "the source moved on after the start"
    );
    d.shutdown();
    assert_nothing_left(&lab, &["a"]);
}

#[test]
fn incremental_copies_refresh_the_target() {
    let mode = BaseCopy::PointInTime(PointInTimeMode::Incremental);
    let (lab, plan) = lab(
        &[("a", &[("src", 32), ("dst", 32)]), ("b", &[("far", 32)])],
        &[&[("a", "src"), ("b", "far")]],
        mode,
    );
    let (mut d, rx) = driver(&plan);
    d.start(&plan.pairs(1), mode).expect("first, full copy");
    await_reports(&mut d, &rx, &PairEvent::Complete, 1);
    assert!(same(&lab, ("a", "src"), ("b", "far")));
    lab.write("a", "src", 0x11, &[0, 5 * MIB, 17 * MIB])
        .expect("writes");
    assert!(!same(&lab, ("a", "src"), ("b", "far")));
    d.start(&plan.pairs(1), mode).expect("incremental copy");
    await_reports(&mut d, &rx, &PairEvent::Complete, 1);
    assert!(
        same(&lab, ("a", "src"), ("b", "far")),
        "the refresh brought the changes"
    );
    // Three 64 KiB writes, at the bitmap's 64 KiB granularity: 192 KiB of 32 MiB.
    assert_eq!(d.bytes_copied(1, 0), Some(3 * 65536), "only what changed");
    d.shutdown();
    assert!(leftovers(&lab, "a").is_empty() && leftovers(&lab, "b").is_empty());
}

/// Volume src on site a copied to dst on site b, 64 MiB each.
fn mirror_lab(mode: BaseCopy) -> (Lab, Plan) {
    lab(
        &[("a", &[("src", 64)]), ("b", &[("dst", 64)])],
        &[&[("a", "src"), ("b", "dst")]],
        mode,
    )
}

#[test]
fn synchronous_mirror_has_every_acknowledged_write() {
    let mode = BaseCopy::Continuous(ContinuousMode::Synchronous);
    let (lab, plan) = mirror_lab(mode);
    let (mut d, rx) = driver(&plan);
    d.start(&plan.pairs(1), mode).expect("start");
    await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
    assert!(
        same(&lab, ("a", "src"), ("b", "dst")),
        "duplex: the initial copy is complete"
    );
    for round in 0..5u8 {
        let offsets: Vec<u64> = (0..16).map(|k| (k * 3 + u64::from(round)) * MIB).collect();
        lab.write("a", "src", 0x30 + round, &offsets)
            .expect("writes");
        // No waiting: a synchronous write is acknowledged once the target has it.
        assert!(same(&lab, ("a", "src"), ("b", "dst")), "round {round}");
    }
    d.stop(&plan.pairs(1)).expect("stop");
    await_reports(&mut d, &rx, &PairEvent::Stopped, 1);
    assert!(
        leftovers(&lab, "a").is_empty() && leftovers(&lab, "b").is_empty(),
        "stop removes the NBD node and export"
    );
    d.shutdown();
}

#[test]
fn asynchronous_mirror_converges_and_resume_copies_only_what_changed() {
    let mode = BaseCopy::Continuous(ContinuousMode::Asynchronous);
    let (lab, plan) = mirror_lab(mode);
    let (mut d, rx) = driver(&plan);
    d.start(&plan.pairs(1), mode).expect("start");
    await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
    let converge = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !same(&lab, ("a", "src"), ("b", "dst")) {
            assert!(
                Instant::now() < deadline,
                "{what}: the target did not converge"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    lab.write(
        "a",
        "src",
        0x44,
        &(0..32).map(|k| k * MIB).collect::<Vec<_>>(),
    )
    .expect("writes");
    converge("running");
    let suspended = d.suspend(&plan.pairs(1), mode).expect("suspend");
    assert_eq!(suspended[0].event, PairEvent::Suspended);
    lab.write("a", "src", 0x45, &[MIB, 9 * MIB])
        .expect("writes while suspended");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !same(&lab, ("a", "src"), ("b", "dst")),
        "a suspended pair copies nothing"
    );
    let offset = |d: &mut csc_runtime::drivers::qemu::Qemu| d.progress()[0].done;
    let before = offset(&mut d);
    d.resume(&plan.pairs(1), mode).expect("resume");
    converge("resumed");
    // Two 64 KiB writes while suspended, at the mirror's 4 KiB granularity.
    let copied = offset(&mut d) - before;
    assert_eq!(copied, 2 * 65536, "resume copies only what changed");
    d.shutdown();
    assert!(leftovers(&lab, "a").is_empty() && leftovers(&lab, "b").is_empty());
}

#[test]
fn target_site_failure_freezes_and_notifies_within_two_seconds() {
    type S = cssc_solutions::mirror_freeze_switch::Chain;
    let (lab, mut plan) = {
        let (lab, _) = lab(
            &[
                ("siteA", &[("db", 16), ("journal", 16)]),
                ("siteB", &[("db-r", 16), ("journal-r", 16)]),
            ],
            &[
                &[("siteA", "db"), ("siteB", "db-r")],
                &[("siteA", "journal"), ("siteB", "journal-r")],
            ],
            BaseCopy::Continuous(ContinuousMode::Synchronous),
        );
        let mut plan = Plan::from_session(&S::SESSION);
        lab.wire(&mut plan);
        (lab, plan)
    };
    let (port, hooks) = webhook();
    plan.contacts[0].webhook = Some(format!("http://127.0.0.1:{port}/oncall"));
    let (stop, status, handle) = spawn::<S>(plan);
    wait_until(&status, "duplex", |s| {
        s.states.get(&1) == Some(&SequenceState::Duplex)
    });
    let offsets: Vec<u64> = (0..16).map(|k| k * 512 * 1024).collect();
    lab.write("siteA", "db", 0x61, &offsets)
        .expect("writes acknowledged before the failure");

    let mut lab = lab;
    let killed = Instant::now();
    lab.kill("siteB");
    // The failure shows at the next write (reconnect-delay 0): the application goes on.
    lab.write("siteA", "db", 0x62, &[8 * MIB])
        .expect("the source stays writable");
    wait_until(&status, "the freeze", |s| {
        s.commands.iter().any(|c| c.1 == Verb::Freeze)
    });
    let froze = killed.elapsed();
    let deadline = Instant::now() + Duration::from_secs(5);
    while hooks.lock().expect("hooks").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // onError's notification (onSuspend's follows the freeze: either may come first).
    while !hooks
        .lock()
        .expect("hooks")
        .iter()
        .any(|h| h.1.contains("onError"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (arrived, body) = hooks
        .lock()
        .expect("hooks")
        .iter()
        .find(|h| h.1.contains("onError"))
        .cloned()
        .expect("the on-call contact was notified of the error");
    let notified = arrived.duration_since(killed);
    assert!(froze < Duration::from_secs(2), "freeze after {froze:?}");
    assert!(
        notified < Duration::from_secs(2),
        "notified after {notified:?}"
    );
    let hook: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(
        (
            hook["session"].as_str(),
            hook["sequence"].as_u64(),
            hook["event"].as_str()
        ),
        (Some("mirror-freeze-switch"), Some(1), Some("onError"))
    );
    assert!(status
        .lock()
        .expect("status")
        .events
        .contains(&(1, Event::OnError)));
    lab.write("siteA", "db", 0x63, &[9 * MIB])
        .expect("still writable after the freeze");
    for off in &offsets {
        assert_eq!(
            read_at(lab.image("siteB", "db-r"), *off, 65536),
            vec![0x61; 65536],
            "acknowledged write at {off} is on the target"
        );
    }
    // The write made after the kill was acknowledged from the source alone.
    assert_eq!(
        read_at(lab.image("siteA", "db"), 8 * MIB, 65536),
        vec![0x62; 65536]
    );
    assert_ne!(
        read_at(lab.image("siteB", "db-r"), 8 * MIB, 65536),
        vec![0x62; 65536],
        "the dead target cannot have the write made after its death"
    );
    println!("freeze {froze:?} and webhook {notified:?} after the target site died");
    stop.store(true, Ordering::Relaxed);
    handle
        .join()
        .expect("executor thread")
        .expect("session ran");
    assert_nothing_left(&lab, &["siteA"]);
}

#[test]
fn every_action_type_runs_on_its_event() {
    type S = actions_fixture::Chain;
    let dir = Path::new("/tmp/cssc-actions-test");
    std::fs::create_dir_all(dir).expect("dir");
    for (script, out) in [("notify.sh", "notify.env"), ("run.sh", "run.env")] {
        let path = dir.join(script);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nenv | grep ^CSSC_ | sort > {}\n",
                dir.join(out).display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let _ = std::fs::remove_file(dir.join(out));
    }
    let (lab, _) = lab(
        &[("lab", &[("src", 8), ("dst", 8)])],
        &[&[("lab", "src"), ("lab", "dst")]],
        BaseCopy::PointInTime(PointInTimeMode::Copy),
    );
    let mut plan = Plan::from_session(&S::SESSION);
    lab.wire(&mut plan);
    let (port, hooks) = webhook();
    plan.contacts[0].webhook = Some(format!("http://127.0.0.1:{port}/hook"));
    let (stop, status, handle) = spawn::<S>(plan);
    wait_until(&status, "the copy", |s| {
        s.states.get(&1) == Some(&SequenceState::Complete)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(dir.join("notify.env").exists()
        && dir.join("run.env").exists()
        && !hooks.lock().expect("hooks").is_empty())
    {
        assert!(Instant::now() < deadline, "actions did not all run");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    for out in ["notify.env", "run.env"] {
        let env = std::fs::read_to_string(dir.join(out)).expect("recorded");
        assert!(
            env.contains("CSSC_EVENT=onComplete\n")
                && env.contains("CSSC_SESSION=actions\n")
                && env.contains("CSSC_SEQUENCE=1\n"),
            "{out}: {env}"
        );
    }
    let body: Value = serde_json::from_str(&hooks.lock().expect("hooks")[0].1).expect("JSON");
    assert_eq!(body["event"], "onComplete");
    assert!(same(&lab, ("lab", "src"), ("lab", "dst")));
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("thread").expect("ran");
}

#[test]
fn the_cppc_chain_survives_a_site_failure_end_to_end() {
    let options = csc_runtime::demo::DemoOptions {
        volume_mib: 16,
        keep: false,
        bars: None,
    };
    let verdicts = csc_runtime::demo::run::<cssc_solutions::cppc::Chain>(options).expect("demo");
    assert_eq!(verdicts.len(), 6, "{verdicts:#?}");
    assert!(verdicts.iter().all(|v| v.contains(" == ")));
}

/// Runs a session that must refuse to start; returns its message. Checks that the
/// storage is as it was: no cssc job, node or export, and every image unchanged.
fn refused(lab: &Lab, plan: Plan) -> String {
    let before: BTreeMap<_, _> = lab
        .images
        .iter()
        .map(|(k, p)| (k.clone(), std::fs::read(p).expect("image")))
        .collect();
    let (_, _, handle) = spawn::<cssc_solutions::mirror_freeze_switch::Chain>(plan);
    let err = handle
        .join()
        .expect("thread")
        .expect_err("the session must not start");
    for site in lab.sites.keys() {
        assert!(
            leftovers(lab, site).is_empty(),
            "{site}: {:?}",
            leftovers(lab, site)
        );
    }
    for (k, bytes) in before {
        assert!(
            std::fs::read(&lab.images[&k]).expect("image") == bytes,
            "{k:?} changed"
        );
    }
    err.to_string()
}

#[test]
fn bad_run_time_input_is_refused_naming_site_and_volume() {
    let (lab, mut plan) = two_site_lab(16);
    plan.storages.get_mut("siteB").expect("siteB").endpoint =
        csc_runtime::address::Address::Unix("/nonexistent/siteB.qmp".into());
    let err = refused(&lab, plan);
    assert!(
        err.contains("storage siteB") && err.contains("/nonexistent/siteB.qmp"),
        "{err}"
    );

    let (lab, mut plan) = two_site_lab(16);
    plan.copysets[1].volumes[1].name = "jornal-r".into();
    let err = refused(&lab, plan);
    assert!(
        err.contains("storage siteB, volume jornal-r: no block node") && err.contains("journal-r"),
        "{err}"
    );

    let (lab, plan) = two_site_lab(8);
    let err = refused(&lab, plan);
    assert!(
        err.contains("storage siteB, volume db-r") && err.contains("less than its source"),
        "{err}"
    );

    let (lab, plan) = two_site_lab(16);
    // Someone else's job on db (a monitor serves one client: close this one after).
    qmp(&lab, "siteA")
        .execute("blockdev-mirror", json!({ "job-id": "someone-else", "device": "db", "target": "journal", "sync": "none" }))
        .expect("another job");
    let err = refused(&lab, plan);
    assert!(err.starts_with("storage siteA, volume db: "), "{err}");
    let jobs = qmp(&lab, "siteA")
        .execute("query-block-jobs", Value::Null)
        .expect("jobs");
    assert_eq!(
        jobs.as_array().map(Vec::len),
        Some(1),
        "only the other job runs: {jobs}"
    );
}

#[test]
fn run_exits_non_zero_on_a_bad_run_time_file() {
    let dir = std::env::temp_dir().join(format!("cssc-runfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("host.toml");
    std::fs::write(&file, "[storage.siteA]\nendpoint = \"unix:/nonexistent/a.qmp\"\n[storage.siteB]\nendpoint = \"unix:/nonexistent/b.qmp\"\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cssc-solutions"))
        .args(["mirror-freeze-switch", "run", "--state-dir"])
        .arg(&dir)
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot start: storage siteA") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    // An unreachable storage is a kind of refusal, with its own hint.
    assert!(
        stderr.contains("is the storage's daemon running, and is its endpoint right?"),
        "{stderr}"
    );
    std::fs::write(&file, "[storage.siteA]\nendpoint = \"ftp://x\"\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cssc-solutions"))
        .args(["mirror-freeze-switch", "run", "--state-dir"])
        .arg(&dir)
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage siteA: endpoint"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn no_copy_is_an_instant_point_in_time_read_through_a_fleecing_target() {
    let mode = BaseCopy::PointInTime(PointInTimeMode::NoCopy);
    let (lab, mut plan) = lab(
        &[("a", &[("src", 32)])],
        &[&[("a", "src"), ("a", "src")]],
        mode,
    );
    let expected = lab.dir.join("expected.img");
    std::fs::copy(lab.image("a", "src"), &expected).expect("the source before the copy");
    // The target: a qcow2 fleecing node whose backing is the source (docs/qemu-recipes.md), and a
    // read-only export to read the point in time through.
    let fleece = lab.dir.join("fl.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&fleece)
        .arg((32 * MIB).to_string())
        .status()
        .expect("qemu-img");
    assert!(made.success());
    let admin = qmp(&lab, "a");
    admin
        .execute("blockdev-add", json!({ "driver": "qcow2", "node-name": "fl", "file": { "driver": "file", "filename": fleece.display().to_string() }, "backing": "src" }))
        .expect("fleecing node");
    drop(admin);
    plan.copysets[0].volumes[1].name = "fl".into();
    let (mut d, rx) = driver(&plan);
    d.preflight(&plan.pairs(1)).expect("preflight");
    let reports = d.start(&plan.pairs(1), mode).expect("start");
    assert!(
        reports.iter().any(|r| r.event == PairEvent::Complete),
        "instant: complete at once"
    );
    lab.write(
        "a",
        "src",
        0x77,
        &(0..24).map(|k| k * MIB).collect::<Vec<_>>(),
    )
    .expect("writes after the copy");
    let admin = qmp(&lab, "a");
    admin
        .execute("block-export-add", json!({ "type": "nbd", "id": "read-fl", "node-name": "fl", "name": "read-fl", "writable": false }))
        .expect("read-only export");
    let uri = lab.nbd_uri("a", "read-fl");
    let compare = std::process::Command::new("qemu-img")
        .args(["compare", "-U", "-q", "-f", "raw", "-F", "raw"])
        .arg(&expected)
        .arg(&uri)
        .status()
        .expect("qemu-img compare");
    assert_eq!(
        compare.code(),
        Some(0),
        "the point in time still reads as the source before the writes"
    );
    assert!(
        !lab.same(lab.image("a", "src"), &expected).expect("compare"),
        "the source moved on"
    );
    admin
        .execute("block-export-del", json!({ "id": "read-fl" }))
        .expect("export del");
    drop(admin);
    d.stop(&plan.pairs(1)).expect("stop");
    await_reports(&mut d, &rx, &PairEvent::Stopped, 1);
    d.shutdown();
    drop(d);
    assert_nothing_left(&lab, &["a"]);
}

#[test]
fn a_session_that_loses_every_storage_waits_and_says_so() {
    let (lab, plan) = two_site_lab(16);
    let (stop, status, handle) = spawn::<cssc_solutions::mirror_freeze_switch::Chain>(plan);
    wait_until(&status, "duplex", |s| {
        s.states.get(&1) == Some(&SequenceState::Duplex)
    });
    let mut lab = lab;
    lab.kill("siteA");
    lab.kill("siteB");
    wait_until(&status, "the error", |s| {
        s.events.contains(&(1, Event::OnError))
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !handle.is_finished(),
        "the session waits for its storage or a stop"
    );
    stop.store(true, Ordering::Relaxed);
    let ended = handle.join().expect("thread").expect("it had started");
    assert_eq!(ended, csc_runtime::executor::Ended::StoragesLost);
}

#[test]
fn a_killed_run_is_taken_over_by_the_next_without_recopying_and_still_watched() {
    let mut host = Host::new();
    let mut first = host.command("run", "state").spawn().expect("run");
    mirrors_ready(&host.lab, 2);
    // The mirrors are ready in their daemon a moment before the run journals its
    // onDuplex (seen failing under load when asked at once).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shown = host.status("state");
    while !shown.contains("1         Duplex") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        shown = host.status("state");
    }
    assert!(
        shown.contains(&format!("running (pid {}", first.id()))
            && shown.contains("1         Duplex"),
        "{shown}"
    );
    let before = host.jobs();
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let shown = host.status("state");
    assert!(
        shown.contains("ended without stopping") && shown.contains("1         Duplex"),
        "the journal tells what the killed run was doing: {shown}"
    );
    // The same command again: it takes over the mirrors that kept running.
    let mut second = host.run_until_up("state", "the second run");
    let after = host.jobs();
    assert_eq!(
        after.iter().map(|j| &j.0).collect::<Vec<_>>(),
        before.iter().map(|j| &j.0).collect::<Vec<_>>(),
        "the same jobs, adopted"
    );
    for ((id, was), (_, is)) in before.iter().zip(&after) {
        assert!(
            is >= was && *was > 0,
            "{id} was not restarted: offset {was} -> {is}"
        );
    }
    assert!(host.status("state").contains("1         Duplex"));
    // It watches them: a target failure is noticed and the document's freeze runs.
    host.kill_and_await("siteB", "state", "onError: Duplex -> Failed");
    assert_eq!(terminate(&mut second, "the second run"), 0);
    assert_nothing_left(&host.lab, &["siteA"]);
    assert!(host.status("state").contains("stopped; 2 run(s)"));
}

#[test]
fn a_run_killed_while_its_freeze_holds_writers_is_taken_over_and_they_are_released() {
    let mut host = Host::three_sites();
    let mut first = host.command("run", "state").spawn().expect("run");
    mirrors_ready(&host.lab, 2);
    // Site B dies: the freeze holds the pair to site C (its writers wait), for 2 s.
    host.kill_and_await("siteB", "state", "onSuspend");
    // Killed within the hold time: nobody releases the held writers now.
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    // The application writes (as a process, so that a failure here cannot hang the test).
    let mut writer = std::process::Command::new("qemu-io")
        .args(["-f", "raw", &host.lab.nbd_uri("siteA", "app-s1")])
        .args(["-c", "write -P 113 1M 64k", "-c", "write -P 113 2M 64k"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("qemu-io");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        writer.try_wait().expect("wait").is_none(),
        "the application's writes are held"
    );
    // Site B is still down: the run takes over all the same.
    let mut second = host.command("run", "state").spawn().expect("run");
    assert_eq!(
        exits_within(&mut writer, 15, "the held writes"),
        0,
        "the writes were released and acknowledged"
    );
    assert_eq!(
        read_at(host.lab.image("siteA", "s1"), MIB, 65536),
        vec![0x71; 65536]
    );
    assert_ne!(
        read_at(host.lab.image("siteC", "t1"), MIB, 65536),
        vec![113; 65536],
        "the frozen target stays as it was at the freeze"
    );
    assert_eq!(terminate(&mut second, "the second run"), 0);
    for site in ["siteA", "siteC"] {
        assert!(
            leftovers(&host.lab, site).is_empty(),
            "{site}: {:?}",
            leftovers(&host.lab, site)
        );
    }
}

/// A run SIGKILLed in duplex, then its target site lost and restarted (its exports
/// gone): `cleanup` serves the targets again so that the source's NBD clients reconnect
/// and go at once (deleting one whose export is gone waits its reconnect delay, per
/// node: 1,000 pairs took 1,000 s), then removes those exports too, and leaves nothing.
#[test]
fn cleanup_after_the_target_site_restarted_serves_its_targets_again_and_leaves_nothing() {
    let mut host = Host::new();
    let mut first = host.run_in_duplex("first");
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    host.lab.kill("siteB");
    host.lab.restart("siteB").expect("site B again");
    assert!(
        leftovers(&host.lab, "siteB").is_empty(),
        "a restarted daemon has none"
    );
    let out = host.command("cleanup", "").output().expect("cleanup");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("storage siteA: removed job") && report.contains("node cssc-"),
        "{report}"
    );
    assert!(
        report.contains("storage siteB: removed export"),
        "the targets were served again: {report}"
    );
    assert!(leftovers(&host.lab, "siteA").is_empty());
    assert!(leftovers(&host.lab, "siteB").is_empty());
    let mut again = host.run_in_duplex("again");
    host.assert_copies_equal();
    assert_eq!(terminate(&mut again, "the next run"), 0);
}

#[test]
fn a_run_killed_without_its_journal_is_cleaned_up_without_touching_others() {
    let host = Host::new();
    // Another session's node on the same daemon: cleanup must leave it.
    qmp(&host.lab, "siteA")
        .execute(
            "blockdev-add",
            json!({ "driver": "null-co", "node-name": "cssc-other", "size": 1048576 }),
        )
        .expect("a foreign node");
    let mut first = host.command("run", "first").spawn().expect("run");
    mirrors_ready(&host.lab, 2);
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    // Without that journal, a new run cannot take over and refuses, saying what to do.
    let again = host.command("run", "other");
    let log = again.log.clone();
    let mut again = again.spawn().expect("run");
    assert_eq!(exits_within(&mut again, 20, "the second run"), 3);
    let stderr = std::fs::read_to_string(log).expect("read");
    assert!(stderr.contains("cleanup"), "{stderr}");
    let out = host.command("cleanup", "").output().expect("cleanup");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("storage siteA: removed job")
            && report.contains("storage siteB: removed export"),
        "{report}"
    );
    assert_eq!(leftovers(&host.lab, "siteA"), ["cssc-other"]);
    assert!(leftovers(&host.lab, "siteB").is_empty());
    // And the session runs again, and stops cleanly.
    let mut third = host.command("run", "other").spawn().expect("run");
    mirrors_ready(&host.lab, 2);
    assert_eq!(terminate(&mut third, "the third run"), 0);
    assert_eq!(leftovers(&host.lab, "siteA"), ["cssc-other"]);
    assert!(leftovers(&host.lab, "siteB").is_empty());
}

#[test]
fn a_dropped_monitor_connection_is_picked_up_again_not_taken_for_a_failure() {
    let (lab, mut plan) = two_site_lab(16);
    let port = lab.sites["siteA"].qmp_port;
    plan.storages.get_mut("siteA").expect("siteA").endpoint = csc_runtime::address::Address::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let (stop, status, handle) = spawn::<cssc_solutions::mirror_freeze_switch::Chain>(plan);
    wait_until(&status, "duplex", |s| {
        s.states.get(&1) == Some(&SequenceState::Duplex)
    });
    // Destroy the session's connection to site A's monitor; the daemon lives on.
    let destroyed = std::process::Command::new("ss")
        .args(["-K", "dst", "127.0.0.1", "dport", "=", &format!(":{port}")])
        .output()
        .expect("ss");
    assert!(
        destroyed.status.success()
            && String::from_utf8_lossy(&destroyed.stdout).contains(&port.to_string()),
        "the connection was destroyed: {}",
        String::from_utf8_lossy(&destroyed.stdout)
    );
    std::thread::sleep(Duration::from_millis(500));
    {
        let s = status.lock().expect("status");
        assert!(
            !s.events.contains(&(1, Event::OnError)),
            "taken for a failure: {s:?}"
        );
        assert_eq!(s.states.get(&1), Some(&SequenceState::Duplex));
    }
    // The new connection works: a real failure is still noticed and frozen through it.
    let mut lab = lab;
    lab.kill("siteB");
    wait_until(&status, "the freeze", |s| {
        s.commands.iter().any(|c| c.1 == Verb::Freeze && c.2)
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("thread").expect("ran");
    assert_nothing_left(&lab, &["siteA"]);
}

#[test]
fn a_run_killed_at_many_moments_is_taken_over_each_time_and_loses_nothing() {
    let host = Host::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64; // xorshift: the moments vary, the test repeats
    let mut jobs_seen: Option<Vec<String>> = None;
    let mut run = host.command("run", "state").spawn().expect("run");
    for kill in 0..12 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Anywhere from the run's own start (every third kill lands in its first 60 ms)
        // through the mirrors' initial copy to well into duplex.
        let moment = if kill % 3 == 0 { rng % 60 } else { rng % 400 };
        std::thread::sleep(Duration::from_millis(moment));
        host.lab
            .write("siteA", "db", 0x20 + kill as u8, &[(kill as u64) * MIB])
            .expect("the application writes through every kill");
        run.kill().expect("SIGKILL");
        run.wait().expect("reaped");
        run = host.run_until_up("state", &format!("restart {kill}"));
        let ids: Vec<String> = host.jobs().into_iter().map(|j| j.0).collect();
        if ids.len() == 2 {
            // Once both mirrors run, every later run adopts the same two: none recopied.
            let first = jobs_seen.get_or_insert_with(|| ids.clone());
            assert_eq!(&ids, first, "restart {kill}");
        }
    }
    mirrors_ready(&host.lab, 2);
    assert!(
        host.status("state").contains("1         Duplex"),
        "{}",
        host.status("state")
    );
    for (source, target) in [("db", "db-r"), ("journal", "journal-r")] {
        assert!(
            same(&host.lab, ("siteA", source), ("siteB", target)),
            "{source} == {target} byte for byte after 12 kills"
        );
    }
    assert_eq!(terminate(&mut run, "the last run"), 0);
    assert!(leftovers(&host.lab, "siteA").is_empty() && leftovers(&host.lab, "siteB").is_empty());
    assert!(
        host.status("state").contains("stopped; 13 run(s)"),
        "{}",
        host.status("state")
    );
}

/// The bytes an operator command's answer says copy set `set` copied: the first number
/// of its line that says `what`.
fn bytes_said(answer: &str, set: &str, what: &str) -> u64 {
    answer
        .lines()
        .find(|l| l.starts_with(&format!("copy set {set}: ")) && l.contains(what))
        .and_then(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
        .unwrap_or_else(|| panic!("copy set {set} did not say `{what}` in: {answer}"))
}

fn resynced(answer: &str, set: &str) -> u64 {
    bytes_said(answer, set, "resynchronised: ")
}

#[test]
fn an_operator_suspends_and_resumes_a_running_session_copying_only_what_changed() {
    let mut host = Host::new();
    let mut run = host.run_in_duplex("state");
    let (code, out, err) = host.operator("suspend", 1, "state");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sequence 1: Suspended"), "{out}");
    let offsets = [0, 4 * MIB, 8 * MIB, 12 * MIB];
    host.lab
        .write("siteA", "db", 0x21, &offsets)
        .expect("writes while suspended");
    assert!(!same(&host.lab, ("siteA", "db"), ("siteB", "db-r")));

    let (code, out, err) = host.operator("resume", 1, "state");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("sequence 1: Duplex"), "{out}");
    assert_eq!(resynced(&out, "db"), 4 * 65536, "only what changed: {out}");
    assert_eq!(resynced(&out, "journal"), 0, "nothing changed: {out}");
    let shown = host.status("state");
    assert!(
        shown.contains("now, as the running session sees its storage:")
            && shown.contains("sequence 1 copy set db: its copy runs, in step"),
        "status shows the live storage: {shown}"
    );
    host.assert_copies_equal();

    let (code, _, err) = host.operator("resume", 1, "state");
    assert_eq!(code, Some(1), "refused");
    assert!(
        err.contains("sequence 1 is Duplex: resume is for a sequence that is Suspended or Failed"),
        "{err}"
    );

    // The target site dies (the document freezes), the application goes on, the site
    // comes back: a resume copies what the target missed.
    host.kill_and_await("siteB", "state", "onError: Duplex -> Failed");
    host.lab
        .write("siteA", "db", 0x22, &[2 * MIB, 6 * MIB])
        .expect("writes during the outage");
    host.lab.restart("siteB").expect("site B is back");
    let (code, out, err) = host.operator("resume", 1, "state");
    assert_eq!(code, Some(0), "{err}");
    let bytes = resynced(&out, "db");
    assert!(
        (2 * 65536..=2 * 65536 * 12 / 10).contains(&bytes),
        "the outage's changes, not the volume: {out}"
    );
    host.assert_copies_equal();
    println!("operator resume after a suspend: 262144 bytes; after a target outage: {bytes} bytes");
    assert_eq!(terminate(&mut run, "the run"), 0);
    assert_nothing_left(&host.lab, &["siteA", "siteB"]);
    let (code, _, err) = host.operator("resume", 1, "state");
    assert_eq!(code, Some(2), "no run answers: {err}");
}

/// The production export a recover's answer names for `volume`.
fn production_export(answer: &str, volume: &str) -> String {
    let line = answer
        .lines()
        .find(|l| l.starts_with(&format!("{volume} on ")))
        .unwrap_or_else(|| panic!("{volume} is not production in: {answer}"));
    line.split("NBD export ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an export name")
        .to_string()
}

#[test]
fn failover_and_failback_copy_only_what_changed_and_switch_back() {
    let host = Host::new();
    let mut run = host.run_in_duplex("state");
    let (code, _, err) = host.operator("recover", 1, "state");
    assert_eq!(code, Some(1), "a mirroring sequence needs --freeze");
    assert!(err.contains("`recover 1 --freeze` splits them"), "{err}");

    // Failover: production moves to site B.
    let t = Instant::now();
    let (code, out, err) = host.operator("recover --freeze", 1, "state");
    let recover_ms = t.elapsed().as_millis();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("sequence 1: recovered"), "{out}");
    let on_b = production_export(&out, "db-r");
    assert_eq!(
        host.operator("resume", 1, "state").0,
        Some(1),
        "a recovered sequence is not resumed over its production"
    );
    // Production writes on B; a stale writer on A writes too (lost, by design).
    host.lab
        .write_to("siteB", &on_b, 0x41, &[MIB, 3 * MIB, 5 * MIB], 65536)
        .expect("production writes on B");
    host.lab
        .write("siteA", "db", 0x42, &[7 * MIB, 9 * MIB])
        .expect("stale writes on A");

    // Failback: B mirrors to A, copying B's three blocks and overwriting A's two.
    let t = Instant::now();
    let (code, out, err) = host.operator("reverse", 1, "state");
    let reverse_ms = t.elapsed().as_millis();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("sequence 1: Duplex"), "{out}");
    assert_eq!(resynced(&out, "db"), 3 * 65536, "{out}");
    assert_eq!(bytes_said(&out, "db", "overwritten"), 2 * 65536, "{out}");
    assert_eq!(resynced(&out, "journal"), 0, "{out}");
    host.assert_copies_equal();
    host.lab
        .write_to("siteB", &on_b, 0x43, &[11 * MIB], 65536)
        .expect("production write on B");
    assert!(
        same(&host.lab, ("siteA", "db"), ("siteB", "db-r")),
        "B is mirrored synchronously to A"
    );
    let shown = host.status("state");
    assert!(
        shown.contains("sequence 1: Duplex, reversed (copying from its targets to its sources)"),
        "{shown}"
    );

    // Switch back, the same two commands.
    let t = Instant::now();
    let (code, out, err) = host.operator("recover --freeze", 1, "state");
    let back_ms = t.elapsed().as_millis();
    assert_eq!(code, Some(0), "{err}");
    let on_a = production_export(&out, "db");
    host.lab
        .write_to("siteA", &on_a, 0x44, &[13 * MIB], 65536)
        .expect("production writes on A again");
    let t = Instant::now();
    let (code, out, err) = host.operator("reverse", 1, "state");
    let forward_ms = t.elapsed().as_millis();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(resynced(&out, "db"), 65536, "{out}");
    assert_eq!(bytes_said(&out, "db", "overwritten"), 0, "{out}");
    host.lab
        .write("siteA", "db", 0x45, &[15 * MIB])
        .expect("writes on A");
    assert!(
        same(&host.lab, ("siteA", "db"), ("siteB", "db-r")),
        "A mirrored to B again"
    );
    assert!(same(
        &host.lab,
        ("siteA", "journal"),
        ("siteB", "journal-r")
    ));
    println!(
        "operator commands (ms, each until it answered): recover --freeze {recover_ms}, reverse {reverse_ms}, recover --freeze (switch back) {back_ms}, reverse {forward_ms}"
    );
    assert_eq!(terminate(&mut run, "the run"), 0);
    // Production's export stays for its applications; nothing else is left.
    let mut left = leftovers(&host.lab, "siteA");
    left.sort();
    assert_eq!(
        left,
        vec![on_a.clone(), on_a.replace("prod-db", "prod-journal")]
    );
    assert!(
        leftovers(&host.lab, "siteB").is_empty(),
        "{:?}",
        leftovers(&host.lab, "siteB")
    );
}

#[test]
fn after_the_source_site_is_lost_production_moves_and_comes_back_with_a_full_copy_said() {
    let mut host = Host::new();
    let mut run = host.command("run", "state").spawn().expect("run");
    mirrors_ready(&host.lab, 2);
    let acknowledged = [2 * MIB, 4 * MIB];
    host.lab
        .write("siteA", "db", 0x51, &acknowledged)
        .expect("writes before the disaster");
    host.kill_and_await("siteA", "state", "onError");
    // Every acknowledged write is on site B, which takes production.
    for offset in acknowledged {
        assert_eq!(
            read_at(host.lab.image("siteB", "db-r"), offset, 65536),
            vec![0x51; 65536]
        );
    }
    let (code, out, err) = host.operator("recover", 1, "state");
    assert_eq!(code, Some(0), "{err}");
    let on_b = production_export(&out, "db-r");
    host.lab
        .write_to("siteB", &on_b, 0x52, &[6 * MIB], 65536)
        .expect("production writes on B");
    // Site A comes back: what it held at the crash is not known, so it is copied whole.
    host.lab.restart("siteA").expect("site A is back");
    let (code, out, err) = host.operator("reverse", 1, "state");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(
            "copy set db: full copy: what changed on db on siteA after the split is not known"
        ),
        "{out}"
    );
    host.assert_copies_equal();
    assert_eq!(terminate(&mut run, "the run"), 0);
}

#[test]
fn a_run_killed_while_its_sequence_is_suspended_is_taken_over_and_resumes_only_what_changed() {
    let host = Host::new();
    let mut first = host.run_in_duplex("state");
    let (code, _, err) = host.operator("suspend", 1, "state");
    assert_eq!(code, Some(0), "{err}");
    host.lab
        .write("siteA", "db", 0x24, &[MIB, 5 * MIB])
        .expect("writes while suspended");
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    host.lab
        .write("siteA", "db", 0x25, &[9 * MIB])
        .expect("writes while no run watches");
    // The next run takes the records over with the rest.
    let mut second = host.run_until_up("state", "the second run");
    let (code, out, err) = host.operator("resume", 1, "state");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(resynced(&out, "db"), 3 * 65536, "only what changed: {out}");
    assert!(same(&host.lab, ("siteA", "db"), ("siteB", "db-r")));
    assert_eq!(terminate(&mut second, "the second run"), 0);
    assert_nothing_left(&host.lab, &["siteA", "siteB"]);
}

/// Everything of cssc's in both daemons of a two-site lab, sorted.
fn all_left(lab: &Lab) -> Vec<String> {
    let mut left: Vec<String> = ["siteA", "siteB"]
        .iter()
        .flat_map(|site| leftovers(lab, site))
        .collect();
    left.sort();
    left
}

#[test]
fn two_sessions_share_the_daemons_and_one_ending_leaves_the_other_untouched() {
    let (lab, _) = lab(
        &[
            ("siteA", &[("db", 16), ("journal", 16), ("erp", 16)]),
            (
                "siteB",
                &[
                    ("db-r", 16),
                    ("journal-r", 16),
                    ("erp-mirror", 16),
                    ("erp-practice", 16),
                ],
            ),
        ],
        &[
            &[("siteA", "db"), ("siteB", "db-r")],
            &[("siteA", "erp"), ("siteB", "erp-mirror")],
        ],
        BaseCopy::Continuous(ContinuousMode::Synchronous),
    );
    let host = Host::on(lab, "");
    let mut first = host.command("run", "state").spawn().expect("run");
    mirrors_ready(&host.lab, 2);
    let first_only = all_left(&host.lab);
    // A second solution on the same daemons, through their other (TCP) monitors.
    let file = host.lab.dir.join("erp.toml");
    let storage = |id: &str, site: &str| {
        let daemon = &host.lab.sites[site];
        format!(
            "[storage.{id}]\nendpoint = \"tcp:127.0.0.1:{}\"\ndata = \"tcp:127.0.0.1:{}\"\n",
            daemon.qmp_port, daemon.nbd_port
        )
    };
    std::fs::write(&file, storage("prod", "siteA") + &storage("dr", "siteB")).expect("run file");
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_cssc-solutions"))
        .args(["mirror-with-practice-copy", "run", "--config"])
        .arg(&file)
        .arg("--state-dir")
        .arg(host.lab.dir.join("erp-state"))
        .stderr(std::fs::File::create(host.lab.dir.join("erp.log")).expect("log"))
        .spawn()
        .expect("second run");
    mirrors_ready(&host.lab, 3);
    assert_eq!(terminate(&mut second, "the second session"), 0);
    assert_eq!(
        all_left(&host.lab),
        first_only,
        "the second session removed all of its own and nothing of the first's"
    );
    host.lab
        .write("siteA", "db", 0x26, &[MIB, 2 * MIB])
        .expect("writes");
    assert!(
        same(&host.lab, ("siteA", "db"), ("siteB", "db-r")),
        "the first session still mirrors synchronously"
    );
    assert!(same(&host.lab, ("siteA", "erp"), ("siteB", "erp-mirror")));
    assert_eq!(terminate(&mut first, "the first session"), 0);
    assert_nothing_left(&host.lab, &["siteA", "siteB"]);
}

#[test]
fn a_run_killed_within_1_5_s_of_a_target_failure_is_taken_over_and_every_notification_keeps_its_id()
{
    let (port, hooks) = webhook();
    let (lab, _) = two_site_lab(16);
    let contact = format!("[contact.oncall]\nwebhook = \"http://127.0.0.1:{port}/oncall\"\n");
    let mut host = Host::on(lab, &contact);
    let mut run = host.run_in_duplex("state");
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let kills = 8;
    for kill in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        host.lab
            .write("siteA", "db", 0x60 + kill as u8, &[(kill as u64) * MIB])
            .expect("a write acknowledged before the failure");
        // Site B dies; the run is killed while it notices, freezes, holds, notifies
        // and runs the site-switch program (0 to 1.5 s after).
        host.lab.kill("siteB");
        std::thread::sleep(Duration::from_millis(rng % 1500));
        run.kill().expect("SIGKILL");
        run.wait().expect("reaped");
        run = host.run_until_up("state", &format!("restart {kill}"));
        // The reaction is carried through by the run that took over.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !host.status("state").contains("1         Suspended") {
            assert!(Instant::now() < deadline, "{}", host.status("state"));
            std::thread::sleep(Duration::from_millis(50));
        }
        host.lab.restart("siteB").expect("site B is back");
        let (code, out, err) = host.operator("resume", 1, "state");
        assert_eq!(code, Some(0), "restart {kill}: {out}{err}");
        host.assert_copies_equal();
    }
    assert_eq!(terminate(&mut run, "the last run"), 0);
    assert_nothing_left(&host.lab, &["siteA", "siteB"]);
    // Every notification the journal started reached the receiver under its id; a
    // repeat (an action whose end a killed run did not record) has the same id.
    let (records, _) =
        csc_runtime::journal::read(&csc_runtime::journal::path_in(&host.lab.dir.join("state")))
            .expect("journal");
    let started: std::collections::BTreeSet<String> = records
        .iter()
        .filter_map(|r| match r {
            csc_runtime::core::record::Record::ActionStart {
                id,
                contact: Some(_),
                ..
            } => Some(id.clone()),
            _ => None,
        })
        .collect();
    let delivered: Vec<String> = hooks
        .lock()
        .expect("hooks")
        .iter()
        .map(|(_, body)| {
            let hook: Value = serde_json::from_str(body).expect("JSON body");
            hook["id"].as_str().expect("an id").to_string()
        })
        .collect();
    let unique: std::collections::BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(
        unique, started,
        "every notification started was delivered under its id"
    );
    assert!(
        delivered.len() - unique.len() <= kills,
        "repeats only for notifications a kill interrupted: {delivered:?}"
    );
    assert!(
        !host.status("state").contains("not seen to end"),
        "{}",
        host.status("state")
    );
    println!(
        "{} notifications, {} deliveries over {kills} kills during freezes and actions",
        unique.len(),
        delivered.len()
    );
}

#[test]
fn a_chain_killed_at_each_copy_s_issue_start_and_end_is_taken_over_and_completes() {
    // pit-continuous-pit: A -> B point-in-time (site a), B -> C mirror (to site b),
    // C -> D point-in-time (site b); each step starts the next. 1 GiB volumes, so
    // that the copies take long enough to be killed in.
    let (lab, _) = lab(
        &[
            ("a", &[("A", 256), ("B", 256)]),
            ("b", &[("C", 256), ("D", 256)]),
        ],
        &[&[("a", "A"), ("a", "B")]],
        BaseCopy::PointInTime(PointInTimeMode::Copy),
    );
    let mut host = Host::on(
        lab,
        "[[copyset]]\nname = \"x\"\nvolumes = [\"a:A\", \"a:B\", \"b:C\", \"b:D\"]\n",
    );
    host.solution = "pit-continuous-pit";
    use csc_runtime::core::record::{Record, StorageCommand};
    use csc_runtime::journal;
    use csc_runtime::vocab::{Command as Verb, Event};
    let path = journal::path_in(&host.lab.dir.join("state"));
    // The moments, by what the journal says: a copy command issued, each copy
    // started (its start returned; a fast copy may be complete by the kill), the
    // mirror in duplex, the last copy complete.
    let start = StorageCommand::Copy(Verb::Start);
    let issued = |seq: u32| move |r: &Record| matches!(r, Record::Issue { sequence, command } if *sequence == seq && *command == start);
    let started = |seq: u32| move |r: &Record| matches!(r, Record::Done { sequence, command, .. } if *sequence == seq && *command == start);
    let reached = |seq: u32, what: Event| move |r: &Record| matches!(r, Record::Transition { sequence, event, .. } if *sequence == seq && *event == what);
    type Moment = (&'static str, Box<dyn Fn(&Record) -> bool>);
    let moments: Vec<Moment> = vec![
        ("point-in-time copy 1 issued", Box::new(issued(1))),
        ("point-in-time copy 1 started", Box::new(started(1))),
        ("mirror issued", Box::new(issued(2))),
        ("mirror started", Box::new(started(2))),
        ("mirror in duplex", Box::new(reached(2, Event::OnDuplex))),
        ("point-in-time copy 3 started", Box::new(started(3))),
        (
            "point-in-time copy 3 complete",
            Box::new(reached(3, Event::OnComplete)),
        ),
    ];
    let mut run = host.command("run", "state").spawn().expect("run");
    for (kill, (moment, seen)) in moments.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !journal::read(&path).is_ok_and(|(records, _)| records.iter().any(seen)) {
            assert!(Instant::now() < deadline, "never reached: {moment}");
            std::thread::sleep(Duration::from_millis(1));
        }
        run.kill().expect("SIGKILL");
        run.wait().expect("reaped");
        // Where the chain was when the run died (for the log of the test).
        let at: Vec<String> = host
            .status("state")
            .lines()
            .filter(|l| l.starts_with(['1', '2', '3']) && l.len() < 30)
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        println!("kill {kill} at {moment}: {}", at.join(", "));
        if std::env::var_os("CSSC_TEST_LOGS").is_some() {
            for entry in std::fs::read_dir(&host.lab.dir).expect("lab dir").flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("run-") {
                    println!(
                        "--- {name}\n{}",
                        std::fs::read_to_string(entry.path()).unwrap_or_default()
                    );
                }
            }
        }
        run = host.run_until_up("state", &format!("restart {kill}"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host.status("state").contains("3         Complete") {
        assert!(Instant::now() < deadline, "{}", host.status("state"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let shown = host.status("state");
    assert!(
        shown.contains("1         Complete") && shown.contains("2         Duplex"),
        "{shown}"
    );
    for (a, b) in [
        (("a", "A"), ("a", "B")),
        (("a", "B"), ("b", "C")),
        (("b", "C"), ("b", "D")),
    ] {
        assert!(same(&host.lab, a, b), "{a:?} == {b:?} after 7 kills");
    }
    assert_eq!(terminate(&mut run, "the last run"), 0);
    assert_nothing_left(&host.lab, &["a", "b"]);
}

#[test]
fn check_config_reaches_every_storage_changes_nothing_and_names_what_is_wrong() {
    let mut host = Host::new();
    let check = |file: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cssc-solutions"))
            .args(["mirror-freeze-switch", "check-config", "--config"])
            .arg(file)
            .output()
            .expect("check-config");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = check(&host.file);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("storage siteA: reached")
            && out.contains("storage siteB: reached")
            && out.contains("2 pair(s): every volume exists"),
        "{out}"
    );
    assert_nothing_left(&host.lab, &["siteA", "siteB"]);

    let base = std::fs::read_to_string(&host.file).expect("run file");
    let variant = |name: &str, more: &str| {
        let file = host.lab.dir.join(name);
        std::fs::write(&file, format!("{base}{more}")).expect("variant");
        file
    };
    let typo = variant(
        "typo.toml",
        "[[copyset]]\nname = \"db\"\nvolumes = [\"siteA:db\", \"siteB:db-rr\"]\n",
    );
    let (code, _, err) = check(&typo);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("storage siteB, volume db-rr: no block node"),
        "{err}"
    );
    let twice = variant(
        "twice.toml",
        "[[copyset]]\nname = \"db\"\nvolumes = [\"siteA:db\", \"siteB:db-r\"]\n[[copyset]]\nname = \"again\"\nvolumes = [\"siteA:journal\", \"siteB:db-r\"]\n",
    );
    let (code, _, err) = check(&twice);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("volume db-r on siteB is already in copy set db"),
        "{err}"
    );
    host.lab.kill("siteB");
    let (code, _, err) = check(&host.file);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("storage siteB: cannot reach its QMP endpoint"),
        "{err}"
    );
}

#[test]
fn a_killed_run_is_not_taken_over_by_a_binary_of_another_document() {
    let host = Host::new();
    let mut first = host.run_in_duplex("state");
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let before = host.jobs();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cssc-solutions"))
        .args(["mirror-with-practice-copy", "run", "--state-dir"])
        .arg(host.lab.dir.join("state"))
        .output()
        .expect("another solution's run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("was compiled from another document"), "{err}");
    assert_eq!(host.jobs(), before, "the copies run on untouched");
    // The right binary takes over.
    let mut second = host.run_until_up("state", "the same solution again");
    assert_eq!(terminate(&mut second, "the second run"), 0);
    assert_nothing_left(&host.lab, &["siteA", "siteB"]);
}

#[test]
fn a_running_session_serves_its_state_as_prometheus_metrics_and_logs_json_lines() {
    let mut host = Host::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut command = host.command("run", "state");
    command
        .command
        .args(["--metrics", &addr, "--log-format", "json"]);
    let log = command.log.clone();
    let mut run = command.spawn().expect("run");
    mirrors_ready(&host.lab, 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = "cssc_sequence_state{session=\"mirror-freeze-switch\",sequence=\"1\",state=\"Duplex\",reversed=\"false\"} 1";
    while !scrape(&addr).contains(want) {
        assert!(Instant::now() < deadline, "{}", scrape(&addr));
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = scrape(&addr);
    for line in [
        "# TYPE cssc_group_events_total counter",
        "cssc_group_events_total{session=\"mirror-freeze-switch\",sequence=\"1\",event=\"onDuplex\"} 1",
        "cssc_commands_total{session=\"mirror-freeze-switch\",sequence=\"1\",command=\"start\",ok=\"true\"} 1",
        "cssc_storage_reachable{session=\"mirror-freeze-switch\",storage=\"siteB\"} 1",
        "copyset=\"db\",of=\"total\",in_step=\"true\"}",
        "cssc_pair_state{session=\"mirror-freeze-switch\",sequence=\"1\",copyset=\"db\",state=\"Duplex\"} 1",
    ] {
        assert!(page.contains(line), "{line} not in:\n{page}");
    }
    let age: f64 = page
        .lines()
        .find(|l| {
            l.starts_with(
                "cssc_storage_heartbeat_age_seconds{session=\"mirror-freeze-switch\",storage=\"siteA\"}",
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no heartbeat age of siteA in:\n{page}"));
    assert!(
        age < 2.0,
        "heartbeats every 200 ms, the page every second: {age}"
    );
    // A site dies: the page says so within a couple of seconds.
    host.lab.kill("siteB");
    let gone = "cssc_storage_reachable{session=\"mirror-freeze-switch\",storage=\"siteB\"} 0";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !scrape(&addr).contains(gone) {
        assert!(Instant::now() < deadline, "{}", scrape(&addr));
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = scrape(&addr);
    assert!(page.contains("event=\"onError\"} 1"), "{page}");
    // onError froze the group; its writers were held until the 2 s hold time ended.
    let held = |page: &str| {
        page.lines()
            .find(|l| l.starts_with("cssc_freeze_held_seconds{session=\"mirror-freeze-switch\",sequence=\"1\",of=\"last\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while held(&scrape(&addr)) == 0.0 {
        assert!(Instant::now() < deadline, "{}", scrape(&addr));
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = scrape(&addr);
    assert!(
        page.contains("cssc_freezes_total{session=\"mirror-freeze-switch\",sequence=\"1\"} 1"),
        "{page}"
    );
    assert!(
        (2.0..3.0).contains(&held(&page)),
        "held for the 2 s hold time: {page}"
    );
    assert!(
        page.contains("sequence=\"1\",copyset=\"db\",state=\"Suspended\"} 1"),
        "the freeze suspended each pair: {page}"
    );
    assert_eq!(terminate(&mut run, "the run"), 0);
    // Its log: one JSON object a line, each with its time, level, kind and session.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for r in &records {
        assert!(
            r["timestamp"].as_str().is_some_and(|t| t.ends_with('Z'))
                && r["level"].is_string()
                && r["kind"].is_string()
                && r["message"].is_string()
                && r["span"]["session"] == "mirror-freeze-switch",
            "{r}"
        );
    }
    let said = |kind: &str, level: &str, key: &str, value: &str| {
        records
            .iter()
            .any(|r| r["kind"] == kind && r["level"] == level && r[key] == value)
    };
    assert!(said("event", "INFO", "event", "onError"), "{records:#?}");
    assert!(said("pair", "WARN", "pair_event", "Error"), "{records:#?}");
    assert!(said("command", "INFO", "command", "freeze"), "{records:#?}");
    assert!(said("session", "INFO", "state", "stopped"), "{records:#?}");
}

#[test]
fn a_run_under_systemd_says_ready_once_its_mirrors_run_and_stopping_when_told_to_stop() {
    let host = Host::new();
    let (manager, mut run) = run_under_a_manager(&host, &[], Duration::from_secs(30));
    let next = || {
        let mut buf = [0u8; 512];
        let n = manager.recv(&mut buf).expect("a datagram from the run");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    // Ready means started: both mirrors exist in the source daemon already.
    assert_eq!(host.jobs().len(), 2, "{:?}", host.jobs());
    // Then one status per transition: the group gets in step.
    let mut statuses = Vec::new();
    while !statuses.iter().any(|s: &String| s.contains("Duplex")) {
        statuses.push(next());
    }
    assert!(
        statuses.iter().all(|s| s.starts_with("STATUS=sequence 1 ")),
        "{statuses:?}"
    );
    support::host::signal(&run, "-TERM");
    let stopping = next();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    assert_eq!(exits_within(&mut run, 30, "the run"), 0);
}

/// A run whose service manager is a socket of the test (`NOTIFY_SOCKET`, and `env`
/// such as `WATCHDOG_USEC`), read with `read_timeout`.
fn run_under_a_manager(
    host: &Host,
    env: &[(&str, &str)],
    read_timeout: Duration,
) -> (std::os::unix::net::UnixDatagram, std::process::Child) {
    let socket = host.lab.dir.join("notify.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&socket).expect("notify socket");
    manager
        .set_read_timeout(Some(read_timeout))
        .expect("timeout");
    let mut command = host.command("run", "state");
    command
        .command
        .env("NOTIFY_SOCKET", &socket)
        .envs(env.iter().copied());
    (manager, command.spawn().expect("run"))
}

/// systemd's watchdog (`WatchdogSec=2` gives WATCHDOG_USEC=2000000): the executor's
/// loop says WATCHDOG=1 every second while it goes round, and nothing once the run is
/// stuck (SIGSTOP here), which is when systemd would kill and restart it.
#[test]
fn a_run_under_a_watchdog_pings_while_its_loop_goes_round_and_not_when_stuck() {
    let host = Host::new();
    let (manager, mut run) = run_under_a_manager(
        &host,
        &[("WATCHDOG_USEC", "2000000")],
        Duration::from_millis(200),
    );
    let pings_within = |window: Duration| {
        let until = Instant::now() + window;
        let mut pings = Vec::new();
        while Instant::now() < until {
            let mut buf = [0u8; 512];
            if let Ok(n) = manager.recv(&mut buf) {
                if &buf[..n] == b"WATCHDOG=1" {
                    pings.push(Instant::now());
                }
            }
        }
        pings
    };
    mirrors_ready(&host.lab, 2);
    let pings = pings_within(Duration::from_secs(5));
    assert!(
        (4..=6).contains(&pings.len()),
        "{} pings in 5 s",
        pings.len()
    );
    let gaps = pings.windows(2).map(|w| w[1] - w[0]);
    assert!(
        gaps.clone().all(|g| g < Duration::from_millis(1300)),
        "{:?}",
        gaps.collect::<Vec<_>>()
    );
    let signal = |s: &str| support::host::signal(&run, s);
    signal("-STOP");
    // Drain what was in flight, then silence.
    let _ = pings_within(Duration::from_millis(300));
    assert_eq!(
        pings_within(Duration::from_secs(3)).len(),
        0,
        "pings from a stopped run"
    );
    signal("-CONT");
    assert!(
        !pings_within(Duration::from_secs(2)).is_empty(),
        "pings again once it runs"
    );
    // A loop stuck inside a live process: the source's daemon stops, and an operator's
    // suspend at once has the loop wait on that daemon's monitor (a command of ours
    // keeps the heartbeat from judging it, up to the 15 s command timeout). systemd,
    // with WatchdogSec=2, would kill and restart it: no ping comes for seconds.
    host.lab.signal("siteA", "STOP").expect("SIGSTOP siteA");
    let suspend = {
        let (bin, dir) = (
            env!("CARGO_BIN_EXE_cssc-solutions"),
            host.lab.dir.join("state"),
        );
        std::thread::spawn(move || {
            std::process::Command::new(bin)
                .args(["mirror-freeze-switch", "suspend", "1", "--state-dir"])
                .arg(dir)
                .output()
        })
    };
    let stuck = pings_within(Duration::from_secs(6));
    host.lab.signal("siteA", "CONT").expect("SIGCONT siteA");
    let _ = suspend.join();
    assert!(
        stuck.len() <= 1,
        "{} pings while the loop waited on a stopped daemon",
        stuck.len()
    );
    assert!(
        !pings_within(Duration::from_secs(20)).is_empty(),
        "pings again once the loop goes round"
    );
    assert_eq!(support::host::terminate(&mut run, "the run"), 0);
}

#[test]
fn verify_finds_a_target_changed_behind_the_session_and_repairs_only_that_extent() {
    let host = Host::new();
    let mut run = host.run_in_duplex("state");
    // The application writes meanwhile (random 4 KiB through its export).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = {
        let (stop, uri) = (stop.clone(), host.lab.nbd_uri("siteA", "app-db"));
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let mut args = vec!["-f".to_string(), "raw".into(), uri.clone()];
                for off in random_chunks(round, 16, 4 * MIB) {
                    args.extend(["-c".into(), format!("write -P {} {off} 4096", round % 200)]);
                }
                let out = std::process::Command::new("qemu-io").args(&args).output();
                assert!(out.is_ok_and(|o| o.status.success()), "round {round}");
            }
            round
        })
    };
    // 100 bytes of db-r changed behind the session's back, at 9 MiB + 1000 (the
    // application writes below 4 MiB).
    change_behind_the_session(&host.lab, "db-r", 9 * MIB + 1000);
    let (code, out, err) = host.operator("verify", 1, "state");
    assert_eq!(code, Some(4), "differences remain: {out}{err}");
    assert!(
        out.contains("sequence 1 copy set db: 16777216 bytes compared, 1 differing extent(s)\n  65536 bytes at offset 9437184"),
        "{out}"
    );
    assert!(
        out.contains("copy set journal: 16777216 bytes compared, 0 differing extent(s)"),
        "{out}"
    );
    let (code, out, err) = host.operator("verify --repair", 1, "state");
    assert_eq!(code, Some(0), "repaired: {out}{err}");
    assert!(out.contains("repaired: 65536 bytes copied"), "{out}");
    stop.store(true, Ordering::Relaxed);
    let rounds = app.join().expect("the application never saw an error");
    let (code, out, _) = host.operator("verify", 1, "state");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("copy set db: 16777216 bytes compared, 0 differing extent(s)"),
        "{out}"
    );
    host.assert_copies_equal();
    println!("verify under {rounds} rounds of 16 random 4 KiB writes");
    // A sequence not in duplex is refused.
    host.operator("suspend", 1, "state");
    let (code, _, err) = host.operator("verify", 1, "state");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("verify compares the pairs of a sequence in Duplex"),
        "{err}"
    );
    assert_eq!(terminate(&mut run, "run"), 0);
    assert_nothing_left(&host.lab, &["siteA", "siteB"]);
}

/// Changes 100 bytes of a target image at `offset`, as someone writing to the target
/// behind the session's back would.
fn change_behind_the_session(lab: &Lab, target: &str, offset: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(lab.image("siteB", target))
        .expect("target image");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(&[0xee; 100]).expect("write");
}

#[test]
fn verify_every_seconds_finds_a_changed_target_by_itself() {
    let (lab, _) = two_site_lab(16);
    let host = Host::on(lab, "[timing]\nverify_every_seconds = 1\n");
    let mut run = host.run_in_duplex("state");
    change_behind_the_session(&host.lab, "journal-r", 3 * MIB);
    let found = "sequence 1 copy set journal: 16777216 bytes compared, 1 differing extent(s)\n  65536 bytes at offset 3145728";
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = || -> String {
        std::fs::read_dir(&host.lab.dir)
            .expect("lab dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    };
    while !logs().contains(found) {
        assert!(
            Instant::now() < deadline,
            "no scheduled verify found it:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(terminate(&mut run, "run"), 0);
    assert_nothing_left(&host.lab, &["siteA", "siteB"]);
}
