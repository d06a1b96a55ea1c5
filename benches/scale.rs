//! Sessions of many pairs, side by side with a hand-written script (numbers go into
//! BENCHMARKS.md): N copy sets, each a 1 MiB volume on one qemu-storage-daemon mirrored
//! synchronously (write-blocking) to a second daemon over TCP NBD. For each N: the
//! script's start (one `block-export-add`, one NBD `blockdev-add` and one
//! `blockdev-mirror` per pair, each waited for, then every job ready), and the
//! built-in mirror-freeze-switch run by its binary as an administrator runs it:
//! `run` -> Duplex, its peak memory, `status` and a metrics scrape, QMP commands per
//! pair (from its debug records), a SIGKILLed run taken over, the target site killed ->
//! Suspended (the freeze), SIGTERM with that site dead, `cleanup` once it is back, and
//! SIGTERM in duplex with every storage up.
//! Run: `cargo bench --bench scale [-- N...]` (default 100 200 500 1000; needs
//! qemu-utils). SCALE_START_ONLY or SCALE_SCRIPT_ONLY: one side's start only (the
//! session's then stopped by SIGTERM in duplex);
//! SCALE_GRANULARITY=4096: the script's mirrors at the session's granularity;
//! SCALE_KEEP: the labs' directories kept. Profile a run with `heaptrack -p PID`.

#[path = "../tests/support/mod.rs"]
mod support;

use csc_runtime::address::Address;
use csc_runtime::drivers::qemu::qmp::{Notice, Qmp};
use csc_runtime::lab::Lab;
use serde_json::{json, Value};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::host::{exits_within, signal, Host};
use support::scale::{peak_kib, qmp_commands, scale_host, scale_lab, state, until};

fn keep() -> bool {
    std::env::var_os("SCALE_KEEP").is_some()
}

/// The administrator's monitor of a site (not the one the session uses).
fn admin(lab: &Lab, site: &str) -> Qmp {
    let (tx, _rx) = mpsc::channel::<((), Notice)>();
    Qmp::connect(
        &Address::Unix(lab.sites[site].admin.display().to_string()),
        None,
        (),
        tx,
    )
    .expect("admin monitor")
}

fn ready_jobs(qmp: &Qmp) -> usize {
    qmp.list("query-block-jobs", Value::Null)
        .expect("jobs")
        .iter()
        .filter(|j| j["ready"] == true)
        .count()
}

/// The hand-written script: per pair one export on B, one NBD client on A and one
/// mirror, each command waited for in turn; then every job ready. Seconds.
fn script(n: usize) -> f64 {
    let granularity: Option<u64> = std::env::var("SCALE_GRANULARITY")
        .ok()
        .and_then(|g| g.parse().ok());
    let lab = scale_lab(n, keep());
    let (a, b) = (admin(&lab, "siteA"), admin(&lab, "siteB"));
    let port = lab.sites["siteB"].nbd_port;
    let t = Instant::now();
    for i in 0..n {
        b.execute(
            "block-export-add",
            json!({"type": "nbd", "id": format!("x{i}"), "node-name": format!("t{i}"),
                   "name": format!("t{i}"), "writable": true}),
        )
        .expect("export");
        a.execute(
            "blockdev-add",
            json!({"driver": "nbd", "node-name": format!("n{i}"), "export": format!("t{i}"),
                   "server": {"type": "inet", "host": "127.0.0.1", "port": port.to_string()}}),
        )
        .expect("nbd client");
        let mut mirror = json!({"job-id": format!("m{i}"), "device": format!("s{i}"),
            "target": format!("n{i}"), "sync": "full", "copy-mode": "write-blocking"});
        if let Some(g) = granularity {
            mirror["granularity"] = json!(g);
        }
        a.execute("blockdev-mirror", mirror).expect("mirror");
    }
    while ready_jobs(&a) < n {
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed().as_secs_f64()
}

/// A run of the host's session with debug records and a metrics page.
fn run(host: &Host, metrics: &str) -> (Child, std::path::PathBuf) {
    host.run_logged("state", &["--metrics", metrics])
}

fn scrape(address: &str) -> (Duration, usize) {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut stream = std::net::TcpStream::connect(address).expect("metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("ask");
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("page");
    (t.elapsed(), page.len())
}

/// SIGTERM to a run: its exit code and the seconds it took to exit.
fn terminate(child: &mut Child) -> (i32, f64) {
    let t = Instant::now();
    signal(child, "-TERM");
    let code = exits_within(child, 1200, "run");
    (code, t.elapsed().as_secs_f64())
}

fn session(n: usize) {
    let mut host = scale_host(n, keep());
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        format!("127.0.0.1:{}", l.local_addr().expect("port").port())
    };
    let t = Instant::now();
    let (mut child, log) = run(&host, &metrics);
    let duplex = until(&host, "Duplex", t);
    let peak = peak_kib(child.id());
    let (_, status) = state(&host);
    let (scrape, page) = scrape(&metrics);
    let counts = qmp_commands(&log, None);
    let total: usize = counts.values().sum();
    println!(
        "N={n} session: run -> Duplex {duplex:.2} s; peak RSS {:.1} MB; status {:.0} ms; metrics {:.0} ms, {page} bytes; QMP commands {total} ({:.2}/pair): {counts:?}",
        peak as f64 / 1024.0,
        status.as_secs_f64() * 1e3,
        scrape.as_secs_f64() * 1e3,
        total as f64 / n as f64,
    );
    if std::env::var_os("SCALE_START_ONLY").is_some() {
        let (code, took) = terminate(&mut child);
        println!("N={n} SIGTERM in duplex, every storage up -> exit {code} in {took:.2} s");
        return;
    }
    // A SIGKILLed run, taken over.
    signal(&child, "-KILL");
    let _ = child.wait();
    let t = Instant::now();
    let (mut child, log) = run(&host, &metrics);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("taking over from the killed run")
    {
        assert!(t.elapsed().as_secs() < 1200, "no take-over");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took_over = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let jobs = ready_jobs(&admin(&host.lab, "siteA"));
    println!(
        "N={n} take-over: {took_over:.2} s (listing the {jobs} jobs: {:.0} ms)",
        t.elapsed().as_secs_f64() * 1e3
    );
    // The target site dies: the freeze, then SIGTERM with the site dead.
    let t = Instant::now();
    host.lab.kill("siteB");
    let frozen = until(&host, "Suspended", t);
    let (code, took) = terminate(&mut child);
    println!(
        "N={n} site B killed -> Suspended {frozen:.2} s; SIGTERM with B dead -> exit {code} in {took:.2} s"
    );
    // B back: cleanup, then a run from scratch stopped in duplex.
    host.lab.restart("siteB").expect("restart B");
    let t = Instant::now();
    let out = host.command("cleanup", "state").output().expect("cleanup");
    println!(
        "N={n} cleanup after B came back: exit {:?} in {:.2} s",
        out.status.code(),
        t.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(host.lab.dir.join("state"));
    let t = Instant::now();
    let (mut child, _) = run(&host, &metrics);
    until(&host, "Duplex", t);
    let (code, took) = terminate(&mut child);
    println!("N={n} SIGTERM in duplex, every storage up -> exit {code} in {took:.2} s");
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 200, 500, 1000]
    } else {
        sizes
    };
    for n in sizes {
        if std::env::var_os("SCALE_START_ONLY").is_none() {
            println!("N={n} script: start -> all ready {:.2} s", script(n));
        }
        if std::env::var_os("SCALE_SCRIPT_ONLY").is_none() {
            session(n);
        }
    }
}
