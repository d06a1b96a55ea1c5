//! A session of many pairs, as an administrator runs one, checked for a cost per pair
//! that does not grow with the number of pairs: counted (QMP commands, memory), never
//! timed (times are benches/scale.rs's, in BENCHMARKS.md).

mod support;

use std::collections::BTreeMap;
use std::time::Instant;
use support::host::{exits_within, signal};
use support::scale::{peak_kib, qmp_commands, scale_host, until};

struct Started {
    commands: BTreeMap<String, usize>,
    peak_kib: u64,
}

/// Runs `n` pairs to duplex, checks every target against its source, and stops; with
/// `kill_target`, site B is killed first (the freeze) and the stop is counted too.
fn start_and_stop(n: usize, kill_target: bool) -> Started {
    let mut host = scale_host(n, false);
    let (mut run, log) = host.run_logged("state", &[]);
    until(&host, "Duplex", Instant::now());
    let started = Started {
        commands: qmp_commands(&log, None),
        peak_kib: peak_kib(run.id()),
    };
    for i in 0..n {
        let (s, t) = (format!("s{i}"), format!("t{i}"));
        assert!(
            support::same(&host.lab, ("siteA", &s), ("siteB", &t)),
            "{t} == {s}"
        );
    }
    if kill_target {
        host.lab.kill("siteB");
        until(&host, "Suspended", Instant::now());
    }
    signal(&run, "-TERM");
    assert_eq!(exits_within(&mut run, 600, "run"), 0);
    if kill_target {
        let stop = qmp_commands(&log, Some("session stops"));
        // Deleting a node that writes to a dead site waits QEMU's reconnect delay
        // (1 s), per node: the stop spends 5 s on them, and the log says what stays.
        let deleted = stop.get("blockdev-del").copied().unwrap_or(0);
        assert!(deleted <= 3 * 6, "{stop:?}");
        let text = std::fs::read_to_string(&log).expect("log");
        let left = n - deleted / 3;
        assert!(
            text.contains(&format!("{left} pairs to siteB, which does not answer")),
            "{left} pairs left: {text}"
        );
    }
    started
}

fn per_pair(counts: &BTreeMap<String, usize>, n: usize) -> f64 {
    counts.values().sum::<usize>() as f64 / n as f64
}

/// 20 and then 200 pairs of 1 MiB mirrored from site A to site B: every target
/// equals its source, the QMP commands per pair do not grow (no daemon-wide listing per
/// pair: those made a start O(N²)), the session's memory grows by under 100 KB per
/// pair, and a stop with the target site dead sends nothing that would wait for it.
#[test]
fn two_hundred_pairs_cost_no_more_per_pair_than_twenty() {
    let small = start_and_stop(20, false);
    let large = start_and_stop(200, true);
    let (a, b) = (
        per_pair(&small.commands, 20),
        per_pair(&large.commands, 200),
    );
    assert!(
        b <= a && b <= 6.0,
        "commands per pair: {a:.2} at 20, {b:.2} at 200: {:?}",
        large.commands
    );
    assert_eq!(
        small.commands.get("query-named-block-nodes"),
        large.commands.get("query-named-block-nodes"),
        "listings of every node: {:?} / {:?}",
        small.commands,
        large.commands
    );
    let grown = large.peak_kib.saturating_sub(small.peak_kib) as f64 / 180.0;
    assert!(
        grown < 100.0,
        "memory: {} KiB at 20 pairs, {} KiB at 200: {grown:.1} KiB per pair",
        small.peak_kib,
        large.peak_kib
    );
}
