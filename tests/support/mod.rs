//! Helpers shared by the real-storage tests and benchmarks: labs of
//! qemu-storage-daemons with a plan over them, drivers, sessions, a webhook receiver.
#![allow(dead_code)] // each user takes what it needs

pub mod etcd;
pub mod host;
pub mod pools;
pub mod relay;
pub mod scale;
pub mod writer;

use csc_runtime::drivers::qemu::qmp::{Notice, Qmp};
use csc_runtime::drivers::qemu::Qemu;
use csc_runtime::drivers::PairEvent;
use csc_runtime::drivers::{Driver, PairReport};
use csc_runtime::executor::{self, Options, SetupError, Status};
use csc_runtime::lab::Lab;
use csc_runtime::machine::Solution;
use csc_runtime::plan::{CopySet, Plan, Sequence, Storage, Volume};
use csc_runtime::vocab::BaseCopy;
use serde_json::{json, Value};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MIB: u64 = 1 << 20;

pub fn vol(storage: &str, name: &str) -> Volume {
    Volume {
        storage: storage.into(),
        name: name.into(),
    }
}

/// A lab with `sites` (site, [(volume, MiB)]); first volumes of `copysets` get random
/// data and an application export. Returns the lab and a plan over it.
pub fn lab(
    sites: &[(&str, &[(&str, u64)])],
    copysets: &[&[(&str, &str)]],
    copy: BaseCopy,
) -> (Lab, Plan) {
    let mut lab = Lab::new(&std::env::temp_dir(), false).expect("lab");
    let sources: Vec<(String, String)> = copysets
        .iter()
        .map(|c| (c[0].0.to_string(), c[0].1.to_string()))
        .collect();
    for (site, volumes) in sites {
        let volumes: Vec<(String, u64)> = volumes
            .iter()
            .map(|(v, mib)| (v.to_string(), mib * MIB))
            .collect();
        let exported: Vec<String> = sources
            .iter()
            .filter(|(s, _)| s == site)
            .map(|(_, v)| v.clone())
            .collect();
        lab.add_site(site, &volumes, &exported).expect("daemon");
    }
    let plan = plan_on(&lab, "test", copysets, copy);
    (lab, plan)
}

/// A one-sequence plan named `name` over every site of `lab`, wired to its daemons
/// (a secure lab's with their TLS).
pub fn plan_on(lab: &Lab, name: &str, copysets: &[&[(&str, &str)]], copy: BaseCopy) -> Plan {
    let storages = lab
        .sites
        .keys()
        .map(|s| Storage {
            id: s.clone(),
            driver: csc_runtime::vocab::DriverKind::Qemu,
            endpoint: csc_runtime::address::Address::Unix(String::new()),
            data: None,
        })
        .collect();
    let mut plan = plan(name, storages, copysets, copy);
    lab.wire(&mut plan);
    plan
}

/// A one-sequence plan named `name` (its storages' tag) over `storages`, with copy
/// sets of (storage, volume) hops named set0, set1, …
pub fn plan(
    name: &str,
    storages: Vec<Storage>,
    copysets: &[&[(&str, &str)]],
    copy: BaseCopy,
) -> Plan {
    Plan {
        name: name.into(),
        storages: storages.into_iter().map(|s| (s.id.clone(), s)).collect(),
        contacts: Vec::new(),
        copysets: copysets
            .iter()
            .enumerate()
            .map(|(i, c)| CopySet {
                name: format!("set{i}"),
                volumes: c.iter().map(|(s, v)| vol(s, v)).collect(),
            })
            .collect(),
        timing: Default::default(),
        time_zone: csc_runtime::plan::TimeZone::UTC,
        tls: Default::default(),
        insecure: Default::default(),
        sequences: vec![Sequence {
            number: 1,
            copy,
            schedule: None,
            keep: 1,
            handled: &[],
            commands: &[],
        }],
    }
}

/// A driver on the plan and the channel of its notices.
pub fn driver(plan: &Plan) -> (Qemu, Receiver<(String, Notice)>) {
    let (tx, rx) = mpsc::channel();
    (Qemu::connect(plan, tx, false).expect("connect"), rx)
}

/// Feeds notices to the driver until `want` reports have the event `event` (or fails).
pub fn await_reports(
    driver: &mut Qemu,
    rx: &Receiver<(String, Notice)>,
    event: &PairEvent,
    want: usize,
) -> Vec<PairReport> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut all = Vec::new();
    while all
        .iter()
        .filter(|r: &&PairReport| &r.event == event)
        .count()
        < want
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let (site, notice) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {event:?} within 60 s; got {all:?}"));
        all.extend(driver.interpret(&site, notice));
    }
    all
}

pub fn same(lab: &Lab, a: (&str, &str), b: (&str, &str)) -> bool {
    lab.same(lab.image(a.0, a.1), lab.image(b.0, b.1))
        .expect("compare")
}

pub fn qmp(lab: &Lab, site: &str) -> Qmp {
    try_qmp(lab, site, Duration::from_secs(2)).expect("qmp")
}

/// The administrator's monitor of a site, or why it did not answer within `within`.
/// The monitor serves one client at a time, and queues one more: a connection made
/// while the last one's close is still being handled is refused for a moment.
pub fn try_qmp(lab: &Lab, site: &str, within: Duration) -> Result<Qmp, String> {
    let admin = csc_runtime::address::Address::Unix(lab.sites[site].admin.display().to_string());
    let deadline = Instant::now() + within;
    loop {
        let (tx, _rx) = mpsc::channel::<((), Notice)>();
        match Qmp::connect(&admin, None, (), tx) {
            Ok(qmp) => return Ok(qmp),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(format!(
                    "the monitor of {site} did not answer in {within:?}: {e}"
                ))
            }
        }
    }
}

/// What cssc may have left in a daemon: its jobs, block nodes and exports.
pub fn leftovers(lab: &Lab, site: &str) -> Vec<String> {
    let q = qmp(lab, site);
    let mut found = Vec::new();
    for (command, args, key) in [
        ("query-block-jobs", Value::Null, "device"),
        (
            "query-named-block-nodes",
            json!({ "flat": true }),
            "node-name",
        ),
        ("query-block-exports", Value::Null, "id"),
    ] {
        let list = q.execute(command, args).expect("query");
        found.extend(
            list.as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x[key].as_str())
                .filter(|n| n.starts_with("cssc-"))
                .map(str::to_string),
        );
    }
    found
}

/// Asserts that cssc left nothing (job, node, export) in these sites' daemons.
pub fn assert_nothing_left(lab: &Lab, sites: &[&str]) {
    for site in sites {
        let left = leftovers(lab, site);
        assert!(left.is_empty(), "{site}: {left:?}");
    }
}

pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).expect("open image");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).expect("read");
    buf
}

/// A running session: its stop flag, its status, its thread.
pub type Session = (
    Arc<AtomicBool>,
    Arc<Mutex<Status>>,
    std::thread::JoinHandle<Result<executor::Ended, SetupError>>,
);

/// Requests a webhook received: when, and the body.
pub type Received = Arc<Mutex<Vec<(Instant, String)>>>;

/// Runs a compiled solution on `plan` in a thread.
pub fn spawn<S: Solution>(plan: Plan) -> Session {
    let stop = Arc::new(AtomicBool::new(false));
    let status = Arc::new(Mutex::new(Status::default()));
    let (s, st) = (Arc::clone(&stop), Arc::clone(&status));
    let options = Options {
        bars: None,
        progress_every: None,
        journal: None,
        control: None,
        metrics: None,
    };
    (
        stop,
        status,
        std::thread::spawn(move || executor::run::<S>(plan, options, s, st)),
    )
}

pub fn wait_until(status: &Mutex<Status>, what: &str, done: impl Fn(&Status) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&status.lock().expect("status")) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            status.lock().expect("status")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A local HTTP server that records each request body with the time it arrived.
pub fn webhook() -> (u16, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = vec![0; 65536];
            let mut got = 0;
            // Headers, then the body of Content-Length bytes.
            let body = loop {
                let n = stream.read(&mut buf[got..]).unwrap_or(0);
                if n == 0 {
                    break String::new();
                }
                got += n;
                let text = String::from_utf8_lossy(&buf[..got]).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break body.to_string();
                    }
                }
            };
            record.lock().expect("record").push((Instant::now(), body));
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            );
        }
    });
    (port, seen)
}

/// `GET /metrics` of a running session.
pub fn scrape(addr: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("answer");
    text
}

/// Opens a new writable NBD export `late-VOLUME` of a volume, as a client that attaches
/// to it at any time (a VM restarted, a backup agent): returns the export's name.
pub fn attach_late(lab: &Lab, site: &str, volume: &str, n: u32) -> String {
    let name = format!("late{n}-{volume}");
    qmp(lab, site)
        .execute(
            "block-export-add",
            json!({ "type": "nbd", "id": name, "node-name": volume, "name": name, "writable": true }),
        )
        .expect("block-export-add");
    name
}

/// `count` distinct offsets of 64 KiB chunks in a volume of `bytes`, from `seed`.
pub fn random_chunks(seed: u64, count: usize, bytes: u64) -> Vec<u64> {
    let chunks = bytes / 65536;
    let mut x = seed | 1;
    let mut out = std::collections::BTreeSet::new();
    while out.len() < count {
        // xorshift64*: reproducible from the seed, no dependency.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.insert((x.wrapping_mul(0x2545_f491_4f6c_dd1d) % chunks) * 65536);
    }
    out.into_iter().collect()
}

/// `min / median / max` of measurements.
pub fn spread(xs: &[f64]) -> String {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "min {:.1} / median {:.1} / max {:.1}",
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    )
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
