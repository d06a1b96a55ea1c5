//! A synchronous mirror across a long link (numbers go into BENCHMARKS.md): a link of
//! 20 ms round trip, made by a relay on loopback that holds what it forwards 10 ms
//! each way (this kernel has no netem), between the source daemon's NBD client and the
//! target daemon's NBD server. The application writes 4 KiB at queue depth 1 (qemu-io,
//! one command per write, its own clock): under the session, with TLS on that link,
//! against the same mirror set up by hand over QMP without TLS. Run: `cargo bench
//! --bench wan [-- WRITES]` (default 100; needs qemu-utils and openssl).

#[path = "../tests/support/mod.rs"]
mod support;

use csc_runtime::address::Address;
use csc_runtime::drivers::{Driver, PairEvent};
use csc_runtime::lab::Lab;
use csc_runtime::vocab::{BaseCopy, ContinuousMode};
use serde_json::{json, Value};
use std::time::Duration;
use support::relay::Relay;
use support::{await_reports, driver, spread, MIB};

const SYNC: BaseCopy = BaseCopy::Continuous(ContinuousMode::Synchronous);
const ONE_WAY: Duration = Duration::from_millis(10);

/// Each write's latency in ms, as qemu-io says it (`... and N ops/sec` per command).
fn latencies(lab: &Lab, writes: usize) -> Vec<f64> {
    let mut args = lab.qemu_io("a", "app-src");
    for k in 0..writes {
        args.push("-c".into());
        args.push(format!(
            "write -P {} {} 4k",
            k % 200 + 1,
            (k as u64 * 7919 % 8192) * 4096
        ));
    }
    let out = std::process::Command::new("qemu-io")
        .args(&args)
        .output()
        .expect("qemu-io");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rates: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            l.split(" and ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map(|ops| 1000.0 / ops)
        .collect();
    assert_eq!(rates.len(), writes, "{text}");
    rates
}

/// Site a (source `src`, exported for the application) and site b (target `dst`, and
/// a volume of its own so that it has an NBD server).
fn sites(secure: bool) -> Lab {
    let mut lab = Lab::new(&std::env::temp_dir(), false).expect("lab");
    if secure {
        lab.secure().expect("certificates (openssl)");
    }
    lab.add_site("a", &[("src".into(), 32 * MIB)], &["src".into()])
        .expect("site a");
    lab.add_site(
        "b",
        &[("dst".into(), 32 * MIB), ("own".into(), MIB)],
        &["own".into()],
    )
    .expect("site b");
    lab
}

fn under_cssc(writes: usize) -> Vec<f64> {
    let lab = sites(true);
    let mut plan = support::plan_on(&lab, "wan", &[&[("a", "src"), ("b", "dst")]], SYNC);
    let relay = Relay::delayed(format!("127.0.0.1:{}", lab.sites["b"].nbd_port), ONE_WAY);
    plan.storages.get_mut("b").expect("b").data = Some(Address::Tcp {
        host: "127.0.0.1".into(),
        port: relay.port,
    });
    let (mut d, rx) = driver(&plan);
    d.start(&plan.pairs(1), SYNC).expect("start");
    await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
    let measured = latencies(&lab, writes);
    assert!(
        support::same(&lab, ("a", "src"), ("b", "dst")),
        "the target"
    );
    d.stop(&plan.pairs(1)).expect("stop");
    d.shutdown();
    measured
}

fn by_hand(writes: usize) -> Vec<f64> {
    let lab = sites(false);
    let relay = Relay::delayed(format!("127.0.0.1:{}", lab.sites["b"].nbd_port), ONE_WAY);
    let (a, b) = (support::qmp(&lab, "a"), support::qmp(&lab, "b"));
    b.execute(
        "block-export-add",
        json!({ "type": "nbd", "id": "x", "node-name": "dst", "name": "x", "writable": true }),
    )
    .expect("export");
    a.execute(
        "blockdev-add",
        json!({ "driver": "nbd", "node-name": "t", "export": "x",
                "server": { "type": "inet", "host": "127.0.0.1", "port": relay.port.to_string() } }),
    )
    .expect("client");
    a.execute(
        "blockdev-mirror",
        json!({ "job-id": "j", "device": "src", "target": "t", "sync": "full",
                "copy-mode": "write-blocking", "granularity": 4096 }),
    )
    .expect("mirror");
    while !a
        .list("query-block-jobs", Value::Null)
        .expect("jobs")
        .iter()
        .any(|j| j["ready"] == true)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let measured = latencies(&lab, writes);
    assert!(
        support::same(&lab, ("a", "src"), ("b", "dst")),
        "the target"
    );
    measured
}

fn main() {
    let writes = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let by_hand = by_hand(writes);
    let cssc = under_cssc(writes);
    let median = |xs: &[f64]| {
        let mut s = xs.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    println!(
        "sync mirror, 20 ms RTT, {writes} writes of 4 KiB at QD1 (ms): by hand, no TLS {}; cssc, TLS {}; median ratio {:.3}",
        spread(&by_hand),
        spread(&cssc),
        median(&cssc) / median(&by_hand)
    );
}
