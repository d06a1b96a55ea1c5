//! Managers on etcd (numbers go into BENCHMARKS.md): what a journal record costs in
//! etcd (a transaction fenced by the leader key, through the JSON gateway, three
//! members on loopback) against the state directory's fsync'd file; the leader
//! SIGKILLed in duplex -> the standby in office, and -> its take-over under way; and
//! the leader and the target site killed at the same moment -> the `onError` webhook
//! (after the freeze) from the next leader; over TRIALS runs (default 5) with a 3 s
//! lease. Run: `cargo bench --bench ha` (needs
//! qemu-utils and etcd-server).

#[path = "../tests/support/mod.rs"]
mod support;

use csc_runtime::core::record::Record;
use csc_runtime::ha::{self, Ha};
use csc_runtime::journal::{Journal, Store};
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use support::etcd::Cluster;
use support::host::{await_log, Host};
use support::{ms, spread};

const RECORDS: usize = 500;

/// Milliseconds each of `RECORDS` appends took.
fn appends(store: &mut dyn Store) -> Vec<f64> {
    (0..RECORDS)
        .map(|i| {
            let record = Record::Run {
                pid: i as u32,
                time: "2026-12-06T00:00:00Z".into(),
                solution: "0123456789abcdef".into(),
            };
            let t = Instant::now();
            store.append(&record).expect("append");
            ms(t.elapsed())
        })
        .collect()
}

fn journal_cost() {
    let dir = std::env::temp_dir().join(format!("cssc-bench-journal-{}", std::process::id()));
    let (mut file, _, _) = Journal::open(&dir).expect("journal");
    let on_file = appends(&mut file);
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = Cluster::start();
    let ha = Ha::parse(&cluster.ha(), "bench", 3).expect("ha");
    let leader = ha::campaign(&ha, "bench", &AtomicBool::new(false))
        .expect("etcd")
        .expect("leads");
    let (mut remote, _) = leader.journal().expect("journal");
    let in_etcd = appends(&mut remote);
    println!(
        "journal, {RECORDS} records, ms each: file (fsync) {}; etcd (fenced txn) {}",
        spread(&on_file),
        spread(&in_etcd)
    );
}

fn take_over(trials: usize) {
    let (mut to_office, mut to_take_over) = (Vec::new(), Vec::new());
    for _ in 0..trials {
        let cluster = Cluster::start();
        let host = Host::new();
        let [(mut first, _), (mut second, second_log)] =
            host.leader_and_standby(&cluster.ha(), &cluster.ha());
        let killed = Instant::now();
        support::host::signal(&first, "-KILL");
        let _ = first.wait();
        to_office.push(ms(await_log(&second_log, "this manager leads", 30) - killed));
        to_take_over.push(ms(await_log(&second_log, "taking over", 30) - killed));
        support::host::signal(&second, "-TERM");
        support::host::exits_within(&mut second, 60, "the new leader");
    }
    println!(
        "leader SIGKILLed in duplex, lease 3 s, {trials} runs (ms): -> standby in office {}; -> its take-over under way {}",
        spread(&to_office),
        spread(&to_take_over)
    );
}

fn killed_with_the_target(trials: usize) {
    let mut to_hook = Vec::new();
    for _ in 0..trials {
        let cluster = Cluster::start();
        let (port, hooks) = support::webhook();
        let (lab, _) = support::host::two_site_lab(16);
        let mut host = Host::on(
            lab,
            &format!("[contact.oncall]\nwebhook = \"http://127.0.0.1:{port}/oncall\"\n"),
        );
        let [(mut first, _), (mut second, _)] =
            host.leader_and_standby(&cluster.ha(), &cluster.ha());
        let killed = Instant::now();
        support::host::signal(&first, "-KILL");
        host.lab.kill("siteB");
        let _ = first.wait();
        let notified = loop {
            if let Some((at, _)) = hooks.lock().expect("hooks").first() {
                break *at;
            }
            assert!(killed.elapsed().as_secs() < 60, "no webhook");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        to_hook.push(ms(notified - killed));
        support::host::signal(&second, "-TERM");
        support::host::exits_within(&mut second, 60, "the new leader");
    }
    println!(
        "leader and target site SIGKILLed together, lease 3 s, {trials} runs (ms): -> the next leader's onError webhook (after its freeze) {}",
        spread(&to_hook)
    );
}

fn main() {
    let trials = std::env::var("TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(5);
    journal_cost();
    take_over(trials);
    killed_with_the_target(trials);
}
