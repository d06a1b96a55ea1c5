//! Storage benchmarks, each side by side in one run (numbers go into BENCHMARKS.md):
//! point-in-time Copy vs `qemu-img convert`; synchronous-mirror 4 KiB write latency
//! under cssc vs the same mirror set up by hand; freeze of 10 and 100 pairs (and of
//! 1,000: `-- freeze-1000`, only when named; FREEZE_TRIALS=N trials of each kind, 2
//! by default) under dependent writes (asked, and on a killed target site); storage
//! event -> action latency; resynchronisation after 1%
//! of a 1 GiB volume changed; btrfs incremental
//! replication under cssc vs `btrfs send -p | btrfs receive` by hand, and the
//! asynchronous btrfs copy's recovery point under a steady writer. Run:
//! `cargo bench --bench storage [-- NAME]` (needs qemu-utils; the btrfs ones root
//! and btrfs-progs).

#[path = "../tests/support/mod.rs"]
mod support;

use csc_runtime::drivers::{Driver, PairEvent};
use csc_runtime::lab::Lab;
use csc_runtime::machine::SequenceState;
use csc_runtime::machine::Solution;
use csc_runtime::plan::Plan;
use csc_runtime::vocab::{BaseCopy, Command as Verb, ContinuousMode, PointInTimeMode};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::*;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn sync_disks() {
    Command::new("sync").status().expect("sync");
}

/// Point-in-time Copy of 1 GiB through cssc's driver vs `qemu-img convert`, both
/// buffered and both followed by `sync`, three runs each.
fn pit_copy_vs_convert() {
    let gib = 1024;
    let mode = BaseCopy::PointInTime(PointInTimeMode::Copy);
    let (lab, plan) = lab(
        &[("a", &[("src", gib), ("dst", gib), ("conv", gib)])],
        &[&[("a", "src"), ("a", "dst")]],
        mode,
    );
    let (mut d, rx) = driver(&plan);
    let (mut cssc, mut convert) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        sync_disks();
        let t = Instant::now();
        d.start(&plan.pairs(1), mode).expect("start");
        await_reports(&mut d, &rx, &PairEvent::Complete, 1);
        sync_disks();
        cssc.push(t.elapsed().as_secs_f64());
        assert!(same(&lab, ("a", "src"), ("a", "dst")));

        sync_disks();
        let t = Instant::now();
        let ok = Command::new("qemu-img")
            .args(["convert", "-U", "-n", "-f", "raw", "-O", "raw"])
            .arg(lab.image("a", "src"))
            .arg(lab.image("a", "conv"))
            .status()
            .expect("qemu-img convert");
        assert!(ok.success());
        sync_disks();
        convert.push(t.elapsed().as_secs_f64());
    }
    d.shutdown();
    let (c, q) = (median(cssc.clone()), median(convert.clone()));
    println!("PIT Copy 1 GiB (s, incl. sync): cssc {cssc:.2?} median {c:.2} ({:.0} MiB/s); qemu-img convert {convert:.2?} median {q:.2} ({:.0} MiB/s); cssc/convert throughput = {:.2}x",
        1024.0 / c, 1024.0 / q, q / c);
}

/// Mean 4 KiB write latency through the source's export, by `qemu-img bench`.
fn write_latency_us(lab: &Lab, site: &str, volume: &str, count: u32) -> f64 {
    let uri = lab.nbd_uri(site, &format!("app-{volume}"));
    let out = Command::new("qemu-img")
        .args([
            "bench",
            "-f",
            "raw",
            "-w",
            "-s",
            "4096",
            "-S",
            "4096",
            "-d",
            "1",
            "-c",
            &count.to_string(),
            &uri,
        ])
        .output()
        .expect("qemu-img bench");
    let text = String::from_utf8_lossy(&out.stdout);
    let secs: f64 = text
        .split("Run completed in ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("qemu-img bench said: {text}"));
    secs * 1e6 / f64::from(count)
}

/// Synchronous mirror: 4 KiB write latency with no mirror, under cssc, and with the
/// same mirror set up by hand over QMP (alternating, three rounds).
fn sync_mirror_latency() {
    let mode = BaseCopy::Continuous(ContinuousMode::Synchronous);
    let (lab, plan) = lab(
        &[("a", &[("src", 256)]), ("b", &[("dst", 256)])],
        &[&[("a", "src"), ("b", "dst")]],
        mode,
    );
    let count = 20_000;
    let base = write_latency_us(&lab, "a", "src", count);
    let (mut by_cssc, mut by_hand) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (mut d, rx) = driver(&plan);
        d.start(&plan.pairs(1), mode).expect("start");
        await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
        by_cssc.push(write_latency_us(&lab, "a", "src", count));
        d.shutdown();
        drop(d);

        // The same recipe by hand: export, NBD client node, write-blocking mirror.
        let (qa, qb) = (qmp(&lab, "a"), qmp(&lab, "b"));
        let port = lab.sites["b"].nbd_port.to_string();
        qb.execute("block-export-add", json!({ "type": "nbd", "id": "hand", "node-name": "dst", "name": "hand", "writable": true })).expect("export");
        qa.execute("blockdev-add", json!({ "driver": "nbd", "node-name": "handnbd", "server": { "type": "inet", "host": "127.0.0.1", "port": port }, "export": "hand", "reconnect-delay": 0 })).expect("nbd node");
        qa.execute("blockdev-mirror", json!({ "job-id": "handm", "device": "src", "target": "handnbd", "sync": "full", "copy-mode": "write-blocking", "on-target-error": "stop", "granularity": 4096 })).expect("mirror");
        while !qa.execute("query-block-jobs", Value::Null).expect("jobs")[0]["ready"]
            .as_bool()
            .unwrap_or(false)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        by_hand.push(write_latency_us(&lab, "a", "src", count));
        qa.execute(
            "block-job-cancel",
            json!({ "device": "handm", "force": true }),
        )
        .expect("cancel");
        while qa
            .execute("query-block-jobs", Value::Null)
            .expect("jobs")
            .as_array()
            .is_some_and(|j| !j.is_empty())
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        qa.execute("blockdev-del", json!({ "node-name": "handnbd" }))
            .expect("del");
        qb.execute("block-export-del", json!({ "id": "hand" }))
            .expect("export del");
    }
    let (c, h) = (median(by_cssc.clone()), median(by_hand.clone()));
    println!("sync mirror 4 KiB write, QD1, {count} writes (mean us/write): no mirror {base:.1}; cssc {by_cssc:.1?} median {c:.1}; by hand {by_hand:.1?} median {h:.1}; cssc/hand = {:.2}x", c / h);
}

/// `n` synchronous pairs from site a to sites b and c (half each), 4 MiB volumes,
/// with an application doing dependent writes over all the sources.
fn group_under_load(n: usize) -> (Lab, Plan, support::writer::Writer, Vec<(String, String)>) {
    let mode = BaseCopy::Continuous(ContinuousMode::Synchronous);
    let volumes = |prefix: &str, range: std::ops::Range<usize>| -> Vec<(String, u64)> {
        range.map(|i| (format!("{prefix}{i}"), 4)).collect()
    };
    let (src, tb, tc) = (
        volumes("s", 0..n),
        volumes("t", 0..n / 2),
        volumes("t", n / 2..n),
    );
    fn borrow(v: &[(String, u64)]) -> Vec<(&str, u64)> {
        v.iter().map(|(n, m)| (n.as_str(), *m)).collect()
    }
    let (src_b, tb_b, tc_b) = (borrow(&src), borrow(&tb), borrow(&tc));
    let targets: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                (if i < n / 2 { "b" } else { "c" }).to_string(),
                format!("t{i}"),
            )
        })
        .collect();
    let pairs: Vec<[(&str, &str); 2]> = (0..n)
        .map(|i| {
            [
                ("a", src[i].0.as_str()),
                (targets[i].0.as_str(), targets[i].1.as_str()),
            ]
        })
        .collect();
    let sets: Vec<&[(&str, &str)]> = pairs.iter().map(|p| &p[..]).collect();
    let (lab, plan) = lab(&[("a", &src_b), ("b", &tb_b), ("c", &tc_b)], &sets, mode);
    let sources: Vec<(&str, &str)> = src.iter().map(|(v, _)| ("a", v.as_str())).collect();
    let writer = support::writer::Writer::start(&lab, &sources, 1024);
    (lab, plan, writer, targets)
}

/// Ends a trial: the application stops (it never saw an error), the targets are
/// checked, the session's additions removed.
fn end_trial(
    lab: &Lab,
    targets: &[(String, String)],
    writer: support::writer::Writer,
    acked_before: usize,
    mut d: csc_runtime::drivers::qemu::Qemu,
) {
    let (_, ended, _) = writer.stop();
    ended.expect("no write failed");
    check_prefix(lab, targets, acked_before);
    d.shutdown();
}

/// The targets after a freeze: a prefix of the writes that covers every write
/// acknowledged before `instant` (checked, so that no number comes from a bad run).
fn check_prefix(lab: &Lab, targets: &[(String, String)], acked_before: usize) {
    let t: Vec<(&str, &str)> = targets
        .iter()
        .map(|(s, v)| (s.as_str(), v.as_str()))
        .collect();
    let held = support::writer::held(lab, &t, 1024);
    assert!(held.past_gap.is_empty(), "not a prefix: {held:?}");
    assert!(
        held.prefix as usize >= acked_before,
        "RPO: {acked_before} > {}",
        held.prefix
    );
}

/// Freeze of `n` synchronous pairs over two target daemons under dependent writes,
/// `trials` times each way: asked by the document (freeze then thaw at once), and on
/// a target site SIGKILLed. Times come from where things happen: the QMP reader's
/// notice of the dead monitor (detection), the driver's instant of the last hold, the
/// application's own acknowledgements (release) and the webhook receiver (notify).
fn freeze_under_load(n: usize, trials: usize) {
    let mode = BaseCopy::Continuous(ContinuousMode::Synchronous);
    let (mut ask_to_held, mut ask_stall) = (Vec::new(), Vec::new());
    let (mut kill_to_detect, mut detect_to_held, mut kill_stall, mut detect_to_notify) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..trials {
        let (lab, plan, writer, targets) = group_under_load(n);
        let (mut d, rx) = driver(&plan);
        d.start(&plan.pairs(1), mode).expect("start");
        await_reports(&mut d, &rx, &PairEvent::Duplex, n);
        writer.wait_for_progress(2 * n);
        let asked = Instant::now();
        d.freeze(&plan.pairs(1)).expect("freeze");
        let held = d.held_at(1).expect("held");
        d.thaw(&plan.pairs(1)).expect("thaw");
        writer.wait_for_progress(n);
        let released = writer
            .first_ack_after(held)
            .expect("writes after the release");
        ask_to_held.push(ms(held - asked));
        ask_stall.push(ms(released - held));
        let before = writer.acknowledged_before(held);
        end_trial(&lab, &targets, writer, before, d);
    }
    for _ in 0..trials {
        let (mut lab, plan, writer, targets) = group_under_load(n);
        let (mut d, rx) = driver(&plan);
        d.start(&plan.pairs(1), mode).expect("start");
        await_reports(&mut d, &rx, &PairEvent::Duplex, n);
        writer.wait_for_progress(2 * n);
        let (port, hooks) = webhook();
        let contact = csc_runtime::plan::Contact {
            name: "oncall".into(),
            webhook: Some(format!("http://127.0.0.1:{port}/oncall")),
            command: None,
            secret: None,
        };
        let killed = Instant::now();
        lab.kill("b");
        let detected = loop {
            let (site, notice) = rx.recv().expect("notice");
            let gone = notice == csc_runtime::drivers::qemu::qmp::Notice::Disconnected;
            let at = Instant::now();
            let reports = d.interpret(&site, notice);
            if gone && site == "b" && !reports.is_empty() {
                break at;
            }
        };
        // What the executor does on onError with `freeze; notify; thaw`.
        d.freeze(&plan.pairs(1)).expect("freeze");
        let held = d.held_at(1).expect("held");
        let what = csc_runtime::actions::Occurrence::new(
            "bench",
            1,
            csc_runtime::vocab::Event::OnError,
            None,
            "site b killed".into(),
        );
        csc_runtime::actions::notify(&contact, &what);
        d.thaw(&plan.pairs(1)).expect("thaw");
        writer.wait_for_progress(n);
        let released = writer
            .first_ack_after(held)
            .expect("writes after the release");
        let notified = hooks.lock().expect("hooks")[0].0;
        kill_to_detect.push(ms(detected - killed));
        detect_to_held.push(ms(held - detected));
        kill_stall.push(ms(released - held));
        detect_to_notify.push(ms(notified - detected));
        let before = writer.acknowledged_before(killed);
        end_trial(&lab, &targets, writer, before, d);
    }
    println!("freeze of {n} sync pairs over 2 target daemons under dependent writes, {trials} trials each (ms):");
    println!(
        "  asked: ask -> every pair held {}; held -> first write released {}",
        spread(&ask_to_held),
        spread(&ask_stall)
    );
    println!("  target daemon SIGKILLed: kill -> detected {}; detected -> every pair held {}; held -> first write released {}; detected -> webhook received {}",
        spread(&kill_to_detect), spread(&detect_to_held), spread(&kill_stall), spread(&detect_to_notify));
}

/// A target site dies under a synchronous mirror: time until the freeze command ran
/// and until the webhook arrived (five runs).
fn event_to_action() {
    type S = cssc_solutions::mirror_freeze_switch::Chain;
    let (mut to_freeze, mut to_hook) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (mut lab, _) = lab(
            &[
                ("siteA", &[("db", 8), ("journal", 8)]),
                ("siteB", &[("db-r", 8), ("journal-r", 8)]),
            ],
            &[
                &[("siteA", "db"), ("siteB", "db-r")],
                &[("siteA", "journal"), ("siteB", "journal-r")],
            ],
            BaseCopy::Continuous(ContinuousMode::Synchronous),
        );
        let mut plan = Plan::from_session(&S::SESSION);
        lab.wire(&mut plan);
        let (port, hooks) = webhook();
        plan.contacts[0].webhook = Some(format!("http://127.0.0.1:{port}/oncall"));
        let (stop, status, handle) = spawn::<S>(plan);
        wait_until(&status, "duplex", |s| {
            s.states.get(&1) == Some(&SequenceState::Duplex)
        });
        let killed = Instant::now();
        lab.kill("siteB");
        wait_until(&status, "freeze", |s| {
            s.commands.iter().any(|c| c.1 == Verb::Freeze)
        });
        to_freeze.push(killed.elapsed().as_secs_f64() * 1e3);
        while hooks.lock().expect("hooks").is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        to_hook.push(
            hooks.lock().expect("hooks")[0]
                .0
                .duration_since(killed)
                .as_secs_f64()
                * 1e3,
        );
        stop.store(true, Ordering::Relaxed);
        handle.join().expect("thread").expect("ran");
    }
    println!("target site killed -> freeze done (ms): {to_freeze:.1?} median {:.1}; -> webhook received (ms): {to_hook:.1?} median {:.1}",
        median(to_freeze.clone()), median(to_hook.clone()));
}

/// `count` distinct 4 KiB-aligned offsets in `bytes`, spread at random (xorshift).
fn random_blocks(bytes: u64, count: usize, seed: u64) -> Vec<u64> {
    let mut state = seed | 1;
    let mut chosen = std::collections::BTreeSet::new();
    while chosen.len() < count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chosen.insert(state % (bytes / 4096) * 4096);
    }
    chosen.into_iter().collect()
}

/// A 1 GiB synchronous pair whose source gets 1% rewritten (2,621 random 4 KiB
/// blocks) while it is split, by a suspend or by its target site's death (the target
/// daemon is killed and started again): bytes the resume copied against bytes
/// changed, the time from the resume to duplex, and the time the application was
/// without a synchronous copy (split -> duplex, the writes and the restart included).
fn resync_after_one_percent(trials: usize) {
    let mode = BaseCopy::Continuous(ContinuousMode::Synchronous);
    let gib = 1024;
    let blocks = ((gib * MIB) as usize / 100).div_ceil(4096);
    for outage in [false, true] {
        let (mut ratio, mut to_duplex, mut unprotected) = (Vec::new(), Vec::new(), Vec::new());
        let (mut copied, mut rounded) = (Vec::new(), Vec::new());
        for trial in 0..trials {
            let (mut lab, plan) = lab(
                &[("a", &[("src", gib)]), ("b", &[("dst", gib)])],
                &[&[("a", "src"), ("b", "dst")]],
                mode,
            );
            let (mut d, rx) = driver(&plan);
            d.start(&plan.pairs(1), mode).expect("start");
            await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
            let offsets = random_blocks(gib * MIB, blocks, 7 + trial as u64);
            let split = Instant::now();
            if outage {
                lab.kill("b");
            } else {
                d.suspend(&plan.pairs(1), mode).expect("suspend");
            }
            lab.write_blocks("a", "src", 0x5c, &offsets, 4096)
                .expect("1% rewritten");
            if outage {
                while let Ok((site, notice)) = rx.recv_timeout(Duration::from_millis(300)) {
                    d.interpret(&site, notice);
                }
                d.freeze(&plan.pairs(1)).expect("freeze");
                d.thaw(&plan.pairs(1)).expect("thaw");
                lab.restart("b").expect("target back");
            }
            let resumed = Instant::now();
            let reports = d.resume(&plan.pairs(1), mode).expect("resume");
            if !reports.iter().any(|r| r.event == PairEvent::Duplex) {
                await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
            }
            to_duplex.push(ms(resumed.elapsed()));
            unprotected.push(split.elapsed().as_secs_f64());
            let bytes = d.bytes_resynced(1, 0).expect("resynced");
            copied.push(bytes as f64 / MIB as f64);
            // What changed, rounded up to the granularity the copy works in: 4 KiB
            // for a kept mirror (target outage), 64 KiB clusters for the backup that
            // copies a split pair's record.
            let granule = if outage { 4096 } else { 65536 };
            let touched: std::collections::BTreeSet<u64> =
                offsets.iter().map(|o| o / granule).collect();
            rounded.push(touched.len() as f64 * granule as f64 / MIB as f64);
            ratio.push(bytes as f64 / (touched.len() as f64 * granule as f64));
            assert!(same(&lab, ("a", "src"), ("b", "dst")), "back in step");
            d.shutdown();
        }
        println!(
            "resync 1 GiB sync pair, 1% rewritten ({blocks} x 4 KiB = {:.2} MiB) while {}: changed rounded up to the copy's granule MiB {}; copied MiB {}; copied/rounded {}; resume -> duplex ms {}; split -> duplex s {}",
            blocks as f64 * 4096.0 / MIB as f64,
            if outage { "the target site was down" } else { "suspended" },
            spread(&rounded),
            spread(&copied),
            spread(&ratio),
            spread(&to_duplex),
            spread(&unprotected)
        );
    }
}

/// Failover, failback and switch back of a 1 GiB synchronous pair through the driver,
/// with 1% of the volume (2,622 random 4 KiB blocks) written on the recovered side and
/// 0.1% on the old source after the split: each step's duration, what it copied, and
/// the time the application is without a synchronous copy (split -> back in duplex).
fn failover_and_failback(trials: usize) {
    let mode = BaseCopy::Continuous(ContinuousMode::Synchronous);
    let gib = 1024;
    let blocks = ((gib * MIB) as usize / 100).div_ceil(4096);
    let (mut recover, mut reverse, mut unprotected, mut back, mut forward, mut back_unprotected) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut copied, mut overwritten) = (Vec::new(), Vec::new());
    let note_bytes = |reports: &[csc_runtime::drivers::PairReport], what: &str| -> f64 {
        reports
            .iter()
            .find_map(|r| match &r.event {
                PairEvent::Note(n) if n.contains(what) => {
                    n.split_whitespace().find_map(|w| w.parse::<u64>().ok())
                }
                _ => None,
            })
            .unwrap_or(0) as f64
            / MIB as f64
    };
    for trial in 0..trials {
        let (lab, plan) = lab(
            &[("a", &[("src", gib)]), ("b", &[("dst", gib)])],
            &[&[("a", "src"), ("b", "dst")]],
            mode,
        );
        let (mut d, rx) = driver(&plan);
        let forward_pairs = plan.pairs(1);
        let reversed: Vec<_> = forward_pairs
            .iter()
            .map(|p| {
                let mut p = p.clone();
                std::mem::swap(&mut p.source, &mut p.target);
                p
            })
            .collect();
        d.start(&forward_pairs, mode).expect("start");
        await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
        let split = Instant::now();
        d.freeze(&forward_pairs).expect("freeze");
        d.thaw(&forward_pairs).expect("thaw");
        let said = d.recover(&forward_pairs).expect("recover");
        recover.push(ms(split.elapsed()));
        let export = said[0]
            .split("NBD export ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("export")
            .to_string();
        lab.write_to(
            "b",
            &export,
            0x61,
            &random_blocks(gib * MIB, blocks, 11 + trial as u64),
            4096,
        )
        .expect("production writes on b");
        lab.write_blocks(
            "a",
            "src",
            0x62,
            &random_blocks(gib * MIB, blocks / 10, 13 + trial as u64),
            4096,
        )
        .expect("stale writes on a");
        let t = Instant::now();
        let mut reports = d.reverse(&reversed, mode).expect("reverse");
        if !reports.iter().any(|r| r.event == PairEvent::Duplex) {
            reports.extend(await_reports(&mut d, &rx, &PairEvent::Duplex, 1));
        }
        reverse.push(ms(t.elapsed()));
        unprotected.push(split.elapsed().as_secs_f64());
        copied.push(note_bytes(&reports, "resynchronised"));
        overwritten.push(note_bytes(&reports, "overwritten"));
        assert!(same(&lab, ("a", "src"), ("b", "dst")), "failed back");
        // Switch back: the same two commands.
        let split = Instant::now();
        d.freeze(&reversed).expect("freeze");
        d.thaw(&reversed).expect("thaw");
        d.recover(&reversed).expect("recover a");
        back.push(ms(split.elapsed()));
        let t = Instant::now();
        let reports = d.reverse(&forward_pairs, mode).expect("reverse to a -> b");
        if !reports.iter().any(|r| r.event == PairEvent::Duplex) {
            await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
        }
        forward.push(ms(t.elapsed()));
        back_unprotected.push(ms(split.elapsed()));
        assert!(same(&lab, ("a", "src"), ("b", "dst")), "switched back");
        d.shutdown();
    }
    println!(
        "failover 1 GiB sync pair: freeze+recover ms {}; 1% written on the recovered side, 0.1% on the old source; reverse -> duplex ms {}, resynced MiB {}, overwritten MiB {}; without a synchronous copy (split -> reversed duplex, writes included) s {}; switch back: freeze+recover ms {}, reverse -> duplex ms {}, without a synchronous copy ms {}",
        spread(&recover),
        spread(&reverse),
        spread(&copied),
        spread(&overwritten),
        spread(&unprotected),
        spread(&back),
        spread(&forward),
        spread(&back_unprotected)
    );
}

/// A btrfs plan of one sequence from pool `p1` to pool `p2`, share to share.
fn btrfs_plan(pools: &support::pools::Pools, copy: BaseCopy) -> Plan {
    let storages = vec![pools.storage("p1"), pools.storage("p2")];
    plan(
        "bench",
        storages,
        &[&[("p1", "share"), ("p2", "share")]],
        copy,
    )
}

fn btrfs(args: &[&str]) {
    let ok = Command::new("btrfs").args(args).status().expect("btrfs");
    assert!(ok.success(), "btrfs {args:?}");
}

/// Incremental replication of 512 MiB, then of 4 KiB, of new data (pool images in /dev/shm): cssc's Point-In-Time Incremental
/// (snapshot, send -p from the shared snapshot, receive, publish, prune) into pool
/// p2 vs the same snapshot and `btrfs send -p | btrfs receive` by hand (a shell pipe)
/// into pool p3; both end with `sync`. Trials alternate which side goes first.
fn btrfs_incremental_vs_by_hand(trials: usize) {
    use support::pools::{digest, fill, Pools};
    let mode = BaseCopy::PointInTime(PointInTimeMode::Incremental);
    // Images in memory: the disk of a VM varies by 2x from one trial to the next.
    let pools = Pools::new_in(std::path::Path::new("/dev/shm"), &["p1", "p2", "p3"], 6144);
    let share = pools.subvolume("p1", "share");
    fill(&share.join("base"), 512, 1);
    let plan = btrfs_plan(&pools, mode);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut d = csc_runtime::drivers::btrfs::Btrfs::connect(&plan, tx).expect("connect");
    d.preflight(&plan.pairs(1)).expect("preflight");
    let complete = |d: &mut csc_runtime::drivers::btrfs::Btrfs| {
        d.start(&plan.pairs(1), mode).expect("start");
        loop {
            let (_, r) = rx.recv_timeout(Duration::from_secs(600)).expect("a report");
            match r.event {
                PairEvent::Complete => break,
                PairEvent::Error(e) => panic!("{e}"),
                _ => {}
            }
        }
    };
    complete(&mut d); // the shared base, in full
    let (p1, p3) = (pools.path("p1", ".hand"), pools.path("p3", ".hand"));
    std::fs::create_dir_all(&p1).unwrap();
    std::fs::create_dir_all(&p3).unwrap();
    let by_hand_snapshot = |n: usize| p1.join(format!("s{n}"));
    btrfs(&[
        "subvolume",
        "snapshot",
        "-r",
        share.to_str().unwrap(),
        by_hand_snapshot(0).to_str().unwrap(),
    ]);
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "btrfs send -q {} | btrfs receive {}",
            by_hand_snapshot(0).display(),
            p3.display()
        ))
        .status()
        .unwrap();
    assert!(ok.success());
    let mut n = 0;
    // 512 MiB: throughput; 4 KiB: what a round costs beyond the data (ms).
    for (bytes, trials) in [(512usize << 20, trials), (4096, 10)] {
        let (mut cssc, mut hand) = (Vec::new(), Vec::new());
        for _ in 0..trials {
            n += 1;
            if bytes >= 1 << 20 {
                fill(&share.join(format!("new{n}")), bytes >> 20, n as u64 + 1);
            } else {
                std::fs::write(share.join(format!("new{n}")), vec![n as u8; bytes]).unwrap();
            }
            let by_cssc = |d: &mut csc_runtime::drivers::btrfs::Btrfs| {
                sync_disks();
                let t = Instant::now();
                complete(d);
                sync_disks();
                let took = t.elapsed().as_secs_f64();
                assert_eq!(digest(&pools.path("p2", "share")), digest(&share));
                took
            };
            let by_hand = || {
                sync_disks();
                let t = Instant::now();
                btrfs(&[
                    "subvolume",
                    "snapshot",
                    "-r",
                    share.to_str().unwrap(),
                    by_hand_snapshot(n).to_str().unwrap(),
                ]);
                let ok = Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "btrfs send -q -p {} {} | btrfs receive {}",
                        by_hand_snapshot(n - 1).display(),
                        by_hand_snapshot(n).display(),
                        p3.display()
                    ))
                    .status()
                    .unwrap();
                assert!(ok.success());
                sync_disks();
                t.elapsed().as_secs_f64()
            };
            // Alternate which side goes first: the second reads a warmer cache.
            if n % 2 == 1 {
                cssc.push(by_cssc(&mut d));
                hand.push(by_hand());
            } else {
                hand.push(by_hand());
                cssc.push(by_cssc(&mut d));
            }
        }
        if bytes >= 1 << 20 {
            let mib = (bytes >> 20) as f64;
            let speed = |xs: &[f64]| xs.iter().map(|t| mib / t).collect::<Vec<_>>();
            let (c, h) = (speed(&cssc), speed(&hand));
            println!(
                "btrfs incremental, {mib} MiB new per trial, {trials} trials (MiB/s, incl. snapshot and sync): cssc {} ; by hand {} ; cssc/hand = {:.2}x",
                spread(&c),
                spread(&h),
                median(c.clone()) / median(h.clone())
            );
        } else {
            let ms = |xs: &[f64]| xs.iter().map(|t| t * 1e3).collect::<Vec<_>>();
            println!(
                "btrfs incremental, {bytes} bytes new per trial, {trials} trials (ms, incl. snapshot and sync): cssc {} ; by hand {}",
                spread(&ms(&cssc)),
                spread(&ms(&hand))
            );
        }
    }
    d.shutdown();
}

/// The asynchronous btrfs copy at a 1 s interval under a writer that appends a
/// record with its own wall-clock time every 10 ms for 30 s; every 100 ms the newest
/// record in the target volume gives the recovery point (now - that record's time).
fn btrfs_async_recovery_point() {
    use std::io::Write;
    use support::pools::{fill, Pools};
    let mode = BaseCopy::Continuous(ContinuousMode::Asynchronous);
    let pools = Pools::new(&["p1", "p2"], 2048);
    let share = pools.subvolume("p1", "share");
    fill(&share.join("base"), 256, 1);
    let plan = btrfs_plan(&pools, mode);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut d = csc_runtime::drivers::btrfs::Btrfs::connect(&plan, tx).expect("connect");
    d.preflight(&plan.pairs(1)).expect("preflight");
    d.start(&plan.pairs(1), mode).expect("start");
    while rx
        .recv_timeout(Duration::from_secs(600))
        .expect("a report")
        .1
        .event
        != PairEvent::Duplex
    {}
    let now_us = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let log = share.join("log");
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(log).unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        // 4 KiB records: a steady 400 KiB/s, each stamped with the writer's clock.
        let mut record = vec![b'.'; 4096];
        while Instant::now() < end {
            let stamp = format!("{:020}\n", now_us());
            record[4096 - 21..].copy_from_slice(stamp.as_bytes());
            f.write_all(&record).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let target = pools.path("p2", "share/log");
    let mut points = Vec::new();
    while !writer.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(bytes) = std::fs::read(&target) else {
            continue;
        };
        // The newest whole record (a snapshot may end inside one being written).
        let newest = bytes.chunks_exact(4096).rev().find_map(|r| {
            std::str::from_utf8(&r[4096 - 21..4095])
                .ok()?
                .parse::<u64>()
                .ok()
        });
        if let Some(stamp) = newest {
            points.push((now_us() - stamp) as f64 / 1e6);
        }
    }
    writer.join().unwrap();
    d.shutdown();
    let mut sorted = points.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[sorted.len() * 99 / 100];
    println!(
        "btrfs async recovery point at a 1 s interval, 400 KiB/s writer, {} samples (s): {} ; p99 {p99:.2}",
        points.len(),
        spread(&points)
    );
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    println!(
        "machine: {} cores; qemu-storage-daemon: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        String::from_utf8_lossy(
            &Command::new("qemu-storage-daemon")
                .arg("--version")
                .output()
                .expect("qsd")
                .stdout
        )
        .lines()
        .next()
        .unwrap_or("?")
    );
    if run("pit") {
        pit_copy_vs_convert();
    }
    if run("latency") {
        sync_mirror_latency();
    }
    if run("freeze") {
        freeze_under_load(10, 5);
        freeze_under_load(100, 5);
    }
    // Only when named: starting 1,000 pairs on one daemon takes minutes (BENCHMARKS.md).
    if only.as_deref() == Some("freeze-1000") {
        // Each trial starts and stops 1,000 pairs (minutes): FREEZE_TRIALS=1 for one.
        let trials = std::env::var("FREEZE_TRIALS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(2);
        freeze_under_load(1000, trials);
    }
    if run("action") {
        event_to_action();
    }
    if run("resync") {
        resync_after_one_percent(3);
    }
    if run("failover") {
        failover_and_failback(3);
    }
    if run("btrfs-incremental") {
        btrfs_incremental_vs_by_hand(6);
    }
    if run("btrfs-lag") {
        btrfs_async_recovery_point();
    }
}
