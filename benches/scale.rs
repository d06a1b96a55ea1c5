//! Sessions of many pairs, side by side with a hand-written script (numbers go into
//! BENCHMARKS.md): N copy sets, each a 1 MiB volume on one qemu-storage-daemon mirrored
//! synchronously (write-blocking) to a second daemon over TCP NBD. For each N: the
//! script's start (one `block-export-add`, one NBD `blockdev-add` and one
//! `blockdev-mirror` per pair, then every job ready), and the built-in
//! mirror-freeze-switch run by its binary as an administrator runs it: `run` -> Duplex,
//! its peak memory, `status` and a metrics scrape, QMP commands per pair (from its
//! debug records), the target site killed -> the freeze, SIGTERM with the site dead,
//! a SIGKILLed run taken over, and SIGTERM with every storage up.
//! Run: `cargo bench --bench scale [-- N...]` (default 100 200 500 1000; needs
//! qemu-utils). SCALE_START_ONLY or SCALE_SCRIPT_ONLY: one side's start only;
//! SCALE_GRANULARITY=4096: the script's mirrors at the session's granularity;
//! SCALE_LOG: the run's log level (debug: QMP commands counted); SCALE_WRAP=heaptrack:
//! the run under a profiler; SCALE_KEEP: the lab's directory kept.

#[path = "../tests/support/mod.rs"]
mod support;

use csc_runtime::address::Address;
use csc_runtime::drivers::qemu::qmp::{Notice, Qmp};
use csc_runtime::lab::Lab;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::host::{exits_within, signal, storages_of};

/// Site A with `n` 1 MiB sources (exported for an application), site B with `n`
/// 1 MiB targets.
fn scale_lab(n: usize) -> Lab {
    let mut lab = Lab::new(
        &std::env::temp_dir(),
        std::env::var_os("SCALE_KEEP").is_some(),
    )
    .expect("lab");
    let mib = 1 << 20;
    let sources: Vec<(String, u64)> = (0..n).map(|i| (format!("s{i}"), mib)).collect();
    let names: Vec<String> = sources.iter().map(|(v, _)| v.clone()).collect();
    lab.add_site("siteA", &sources, &names).expect("site A");
    let targets: Vec<(String, u64)> = (0..n).map(|i| (format!("t{i}"), mib)).collect();
    lab.add_site("siteB", &targets, &[]).expect("site B");
    lab
}

/// The administrator's monitor of a site (not the one the session uses).
fn admin(lab: &Lab, site: &str) -> Qmp {
    let (tx, _rx) = mpsc::channel::<((), Notice)>();
    Qmp::connect(
        &Address::Unix(lab.sites[site].admin.display().to_string()),
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
    let lab = scale_lab(n);
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
        a.execute("blockdev-mirror", {
            let mut mirror = json!({"job-id": format!("m{i}"), "device": format!("s{i}"),
                    "target": format!("n{i}"), "sync": "full", "copy-mode": "write-blocking"});
            // SCALE_GRANULARITY=4096: like for like with the session's mirrors.
            if let Some(g) = granularity {
                mirror["granularity"] = json!(g);
            }
            mirror
        })
        .expect("mirror");
    }
    while ready_jobs(&a) < n {
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed().as_secs_f64()
}

/// The process's peak resident memory (VmHWM), in KiB.
fn peak_kib(child: &Child) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Session {
    lab: Lab,
    file: std::path::PathBuf,
    state: std::path::PathBuf,
    metrics: String,
}

impl Session {
    fn new(n: usize) -> Session {
        let lab = scale_lab(n);
        let mut text = storages_of(&lab);
        for i in 0..n {
            text.push_str(&format!(
                "[[copyset]]\nname = \"cs{i}\"\nvolumes = [\"siteA:s{i}\", \"siteB:t{i}\"]\n"
            ));
        }
        let file = lab.dir.join("scale.toml");
        std::fs::write(&file, text).expect("run file");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        Session {
            state: lab.dir.join("state"),
            file,
            lab,
            metrics: format!("127.0.0.1:{port}"),
        }
    }

    fn command(&self, args: &[&str], log: &str) -> Command {
        let bin = env!("CARGO_BIN_EXE_cssc-solutions");
        // SCALE_WRAP=heaptrack (or perf ...): `run` under a profiler.
        let mut c = match std::env::var("SCALE_WRAP") {
            Ok(wrap) if args[0] == "run" => {
                let mut c = Command::new(wrap);
                c.arg(bin);
                c
            }
            _ => Command::new(bin),
        };
        c.arg("mirror-freeze-switch").args(args);
        if args[0] != "cleanup" {
            c.arg("--state-dir").arg(&self.state);
        }
        c.stdout(Stdio::null())
            .stderr(std::fs::File::create(self.lab.dir.join(log)).expect("log"));
        c
    }

    fn run(&self, log: &str) -> Child {
        self.command(
            &[
                "run",
                "--log-level",
                &std::env::var("SCALE_LOG").unwrap_or("debug".into()),
            ],
            log,
        )
        .arg("--config")
        .arg(&self.file)
        .args(["--metrics", &self.metrics])
        .spawn()
        .expect("run")
    }

    /// Sequence 1's state from `status --json`, and how long `status` took.
    fn state(&self) -> (Option<String>, Duration) {
        let t = Instant::now();
        let out = self
            .command(&["status", "--json"], "status.log")
            .stdout(Stdio::piped())
            .output()
            .expect("status");
        let took = t.elapsed();
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (summary["states"]["1"].as_str().map(str::to_string), took)
    }

    /// Waits until sequence 1 is `want` (or fails after `secs`); the time it took.
    fn until(&self, want: &str, secs: u64, since: Instant) -> f64 {
        loop {
            if self.state().0.as_deref() == Some(want) {
                return since.elapsed().as_secs_f64();
            }
            assert!(
                since.elapsed().as_secs() < secs,
                "not {want} within {secs} s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn scrape(&self) -> (Duration, usize) {
        let t = Instant::now();
        let mut stream = std::net::TcpStream::connect(&self.metrics).expect("metrics");
        use std::io::{Read, Write};
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("ask");
        let mut page = String::new();
        stream.read_to_string(&mut page).expect("page");
        (t.elapsed(), page.len())
    }

    /// QMP commands of a run's log, by command.
    fn commands(&self, log: &str) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(self.lab.dir.join(log)).unwrap_or_default();
        let mut counts = BTreeMap::new();
        for line in text.lines().filter(|l| l.contains("kind=\"qmp\"")) {
            if let Some(command) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("command="))
            {
                *counts
                    .entry(command.trim_matches('"').to_string())
                    .or_default() += 1;
            }
        }
        counts
    }
}

fn session(n: usize) {
    let mut s = Session::new(n);
    let t = Instant::now();
    let mut run = s.run("run-1.log");
    let duplex = s.until("Duplex", 600, t);
    let peak = peak_kib(&run);
    let (_, status) = s.state();
    let (scrape, page) = s.scrape();
    let counts = s.commands("run-1.log");
    let total: usize = counts.values().sum();
    println!(
        "N={n} session: run -> Duplex {duplex:.2} s; peak RSS {:.1} MB ({:.1} KB/pair); status {:.0} ms; metrics {:.0} ms, {page} bytes; QMP commands {total} ({:.1}/pair): {counts:?}",
        peak as f64 / 1024.0,
        peak as f64 / n as f64,
        status.as_secs_f64() * 1e3,
        scrape.as_secs_f64() * 1e3,
        total as f64 / n as f64,
    );
    if std::env::var_os("SCALE_START_ONLY").is_some() {
        signal(&run, "-TERM");
        exits_within(&mut run, 600, "run");
        return;
    }
    // A SIGKILLed run, taken over.
    signal(&run, "-KILL");
    let _ = run.wait();
    let t = Instant::now();
    let mut run = s.run("run-2.log");
    while !std::fs::read_to_string(s.lab.dir.join("run-2.log"))
        .unwrap_or_default()
        .contains("taking over from the killed run")
    {
        assert!(t.elapsed().as_secs() < 600, "no take-over");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took_over = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let jobs = ready_jobs(&admin(&s.lab, "siteA"));
    let listed = t.elapsed().as_secs_f64();
    println!(
        "N={n} take-over: {took_over:.2} s ({jobs} jobs listed in {:.0} ms)",
        listed * 1e3
    );
    // The target site dies: the freeze, then SIGTERM with the site dead.
    let t = Instant::now();
    s.lab.kill("siteB");
    let frozen = s.until("Suspended", 600, t);
    let t = Instant::now();
    signal(&run, "-TERM");
    let code = exits_within(&mut run, 600, "run");
    println!(
        "N={n} site B killed -> Suspended {frozen:.2} s; SIGTERM with B dead -> exit {code} in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // Every storage up: start again, SIGTERM once in duplex.
    s.lab.restart("siteB").expect("restart B");
    let cleanup = Instant::now();
    let out = s
        .command(&["cleanup"], "cleanup.log")
        .arg("--config")
        .arg(&s.file)
        .output()
        .expect("cleanup");
    println!(
        "N={n} cleanup: exit {:?} in {:.2} s",
        out.status.code(),
        cleanup.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&s.state);
    let t = Instant::now();
    let mut run = s.run("run-3.log");
    s.until("Duplex", 600, t);
    let t = Instant::now();
    signal(&run, "-TERM");
    let code = exits_within(&mut run, 600, "run");
    println!(
        "N={n} SIGTERM in duplex, every storage up -> exit {code} in {:.2} s",
        t.elapsed().as_secs_f64()
    );
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
        if std::env::var_os("SCALE_SCRIPT_ONLY").is_some() {
            continue;
        }
        session(n);
    }
}
