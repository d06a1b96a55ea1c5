//! Links between sites (issue 22): a secure lab whose monitors and NBD servers speak
//! TLS and let in only certificates of its CA and DNs they know; the session's own
//! mirror over TLS, compared byte for byte; strangers refused at every monitor and
//! at every export the session created; the run-time file's secure default.
//! Needs qemu-utils and openssl.

mod support;

use csc_runtime::drivers::qemu::qmp::{Notice, Qmp, QmpError};
use csc_runtime::drivers::{Driver, PairEvent};
use csc_runtime::lab::pki::{self, Pki};
use csc_runtime::lab::Lab;
use csc_runtime::plan::Plan;
use csc_runtime::tls::{Credentials, Tls, TlsError};
use csc_runtime::vocab::{BaseCopy, ContinuousMode};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::{await_reports, driver, leftovers, plan_on, same, MIB};

const SYNC: BaseCopy = BaseCopy::Continuous(ContinuousMode::Synchronous);

/// Site a (source `src`, with an application export) and site b (target `dst`, no
/// NBD server of its own), both secure; a plan mirroring src to dst.
fn secure_lab() -> (Lab, Plan) {
    let mut lab = Lab::new(&std::env::temp_dir(), false).expect("lab");
    lab.secure().expect("certificates (openssl)");
    lab.add_site("a", &[("src".into(), 16 * MIB)], &["src".into()])
        .expect("site a");
    lab.add_site("b", &[("dst".into(), 16 * MIB)], &[])
        .expect("site b");
    let plan = plan_on(&lab, "links", &[&[("a", "src"), ("b", "dst")]], SYNC);
    (lab, plan)
}

/// The monitor of `site` reached over TLS with these credentials.
fn monitor(lab: &Lab, site: &str, tls: &Tls) -> Result<Qmp, QmpError> {
    let (tx, _rx) = std::sync::mpsc::channel::<((), Notice)>();
    let endpoint = csc_runtime::address::Address::Tcp {
        host: "127.0.0.1".into(),
        port: lab.sites[site].qmp_port,
    };
    Qmp::connect(&endpoint, Some(tls), (), tx)
}

/// Whether `qemu-img info` opens export `export` of site `site`'s NBD server, as a
/// client with the credentials in `dir` (none: plaintext).
fn opens(lab: &Lab, site: &str, export: &str, dir: Option<&Path>) -> bool {
    let port = lab.sites[site].nbd_port;
    let mut command = Command::new("qemu-img");
    command.arg("info");
    match dir {
        None => command.arg(format!("nbd://127.0.0.1:{port}/{export}")),
        Some(dir) => command.args([
            "--object".to_string(),
            format!("tls-creds-x509,id=t,dir={},endpoint=client", dir.display()),
            "--image-opts".into(),
            format!(
                "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},export={export},tls-creds=t,tls-hostname={}",
                pki::hostname(site)
            ),
        ]),
    };
    command.output().expect("qemu-img").status.success()
}

/// What a TLS client without a certificate of its own reads from a monitor
/// (`openssl s_client`, which verifies the daemon against the lab's CA).
fn read_without_certificate(lab: &Lab, site: &str) -> String {
    let secure = lab.tls.as_ref().expect("secure");
    let out = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-CAfile"])
        .arg(secure.pki.ca())
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", lab.sites[site].qmp_port))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_synchronous_mirror_over_tls_has_every_acknowledged_write_and_leaves_nothing() {
    let (lab, plan) = secure_lab();
    let (mut d, rx) = driver(&plan);
    d.start(&plan.pairs(1), SYNC).expect("start over TLS");
    await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
    assert!(same(&lab, ("a", "src"), ("b", "dst")), "the initial copy");
    for round in 0..3u8 {
        let offsets: Vec<u64> = (0..7).map(|k| (k * 2 + u64::from(round)) * MIB).collect();
        lab.write("a", "src", 0x40 + round, &offsets)
            .expect("the application writes over TLS");
        assert!(same(&lab, ("a", "src"), ("b", "dst")), "round {round}");
    }
    d.stop(&plan.pairs(1)).expect("stop");
    await_reports(&mut d, &rx, &PairEvent::Stopped, 1);
    d.shutdown();
    for site in ["a", "b"] {
        assert_eq!(leftovers(&lab, site), Vec::<String>::new(), "site {site}");
        let objects = support::qmp(&lab, site)
            .list("qom-list", serde_json::json!({ "path": "/objects" }))
            .expect("objects");
        let ours: Vec<&Value> = objects
            .iter()
            .filter(|o| o["name"].as_str().is_some_and(|n| n.starts_with("cssc-")))
            .collect();
        assert!(ours.is_empty(), "site {site} keeps {ours:?}");
    }
}

#[test]
fn strangers_cannot_open_a_monitor_or_an_export_the_session_created() {
    let (lab, plan) = secure_lab();
    let (mut d, rx) = driver(&plan);
    d.start(&plan.pairs(1), SYNC).expect("start");
    await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
    let secure = lab.tls.as_ref().expect("secure");
    let rogue = Pki::new(&lab.dir.join("rogue"), "rogue CA").expect("rogue CA");
    let rogue_dir = rogue.daemon_dir("a").expect("rogue a");
    let own = plan.tls["b"].clone();

    let export = support::qmp(&lab, "b")
        .list("query-block-exports", Value::Null)
        .expect("exports")
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .find(|id| id.starts_with("cssc-"))
        .expect("the session's export of dst");

    // Exports: the session's NBD server on b lets in the session's daemons only.
    assert!(
        opens(&lab, "b", &export, Some(&secure.pki.dir.join("a"))),
        "control: site a's own credentials open the export"
    );
    assert!(!opens(&lab, "b", &export, None), "plaintext is refused");
    assert!(
        !opens(&lab, "b", &export, Some(&secure.pki.dir.join("app"))),
        "a certificate of the CA whose DN the session does not know is refused"
    );
    assert!(
        !opens(&lab, "b", &export, Some(&rogue_dir)),
        "a certificate of another CA (with site a's DN) is refused"
    );
    d.stop(&plan.pairs(1)).expect("stop");
    await_reports(&mut d, &rx, &PairEvent::Stopped, 1);
    d.shutdown();
    drop(d);

    // Monitors, once the session's connection is gone (a monitor serves one client
    // at a time: a second waits, it is not refused).
    monitor(&lab, "b", &own).expect("control: cssc's certificate opens b's monitor");
    let text = read_without_certificate(&lab, "b");
    assert!(
        !text.contains("QMP"),
        "a client without a certificate read the greeting: {text}"
    );
    let with = |cert: &Path, key: &Path| Tls {
        monitor: own.monitor.clone().map(|m| Credentials {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ..m
        }),
        ..own.clone()
    };
    let stranger = with(
        &rogue_dir.join("client-cert.pem"),
        &rogue_dir.join("client-key.pem"),
    );
    assert!(
        matches!(monitor(&lab, "b", &stranger), Err(QmpError::Tls(_))),
        "a certificate of another CA opens the monitor"
    );
    let app = with(&secure.app.cert, &secure.app.key);
    assert!(
        matches!(monitor(&lab, "b", &app), Err(QmpError::Tls(_))),
        "a certificate of the CA with another DN opens the monitor"
    );
    let wrong_name = Tls {
        hostname: Some("elsewhere.cssc.test".into()),
        ..own
    };
    assert!(
        matches!(monitor(&lab, "b", &wrong_name), Err(QmpError::Tls(_))),
        "cssc accepts a daemon whose certificate names another host"
    );
}

#[test]
fn the_certificate_check_tells_one_that_expires_soon_or_is_not_of_the_ca() {
    let dir = std::env::temp_dir().join(format!("cssc-pki-{}", std::process::id()));
    let pki = Pki::new(&dir, "check CA").expect("CA");
    let rogue = Pki::new(&dir.join("rogue"), "rogue CA").expect("rogue CA");
    let good = pki
        .issue("good", 365, &dir.join("good.pem"), &dir.join("good.key"))
        .expect("good");
    let soon = pki
        .issue("soon", 10, &dir.join("soon.pem"), &dir.join("soon.key"))
        .expect("soon");
    let other = rogue
        .issue("other", 365, &dir.join("other.pem"), &dir.join("other.key"))
        .expect("other");
    let ca = pki.ca();
    assert!(csc_runtime::tls::check_chain(&good.cert, &ca).is_ok());
    assert!(matches!(
        csc_runtime::tls::check_chain(&soon.cert, &ca),
        Err(TlsError::ExpiresSoon(_))
    ));
    assert!(matches!(
        csc_runtime::tls::check_chain(&other.cert, &ca),
        Err(TlsError::Unverified { .. })
    ));
    assert!(matches!(
        csc_runtime::tls::check_chain(&dir.join("missing.pem"), &ca),
        Err(TlsError::Read { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cleanup_serves_a_tls_target_again_over_tls_and_leaves_nothing() {
    let mut host = support::host::Host::secure();
    let mut first = host.run_in_duplex("first");
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    host.lab.kill("siteB");
    host.lab.restart("siteB").expect("site B again");
    let out = host.command("cleanup", "").output().expect("cleanup");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("storage siteB: removed export"),
        "the targets were served again, over TLS: {report}"
    );
    for site in ["siteA", "siteB"] {
        assert_eq!(leftovers(&host.lab, site), Vec::<String>::new(), "{site}");
        let objects = support::qmp(&host.lab, site)
            .list("qom-list", serde_json::json!({ "path": "/objects" }))
            .expect("objects");
        assert!(
            !objects
                .iter()
                .any(|o| o["name"].as_str().is_some_and(|n| n.starts_with("cssc-"))),
            "{site}: {objects:?}"
        );
    }
    // And the session runs again over TLS, every copy equal to its source.
    let mut again = host.run_in_duplex("again");
    host.assert_copies_equal();
    support::host::signal(&again, "-TERM");
    assert_eq!(
        support::host::exits_within(&mut again, 60, "the next run"),
        0
    );
}

#[test]
fn a_cut_data_link_is_noticed_as_a_hung_target_the_application_goes_on_and_the_healed_link_gets_only_what_changed(
) {
    // The session reaches both monitors (unix sockets); only the data link between
    // the daemons goes through a relay, cut mid-mirror: no EOF, no RST.
    let mut lab = Lab::new(&std::env::temp_dir(), false).expect("lab");
    lab.add_site("a", &[("src".into(), 16 * MIB)], &["src".into()])
        .expect("site a");
    lab.add_site("b", &[("dst".into(), 16 * MIB)], &[])
        .expect("site b");
    let mut plan = plan_on(&lab, "cut", &[&[("a", "src"), ("b", "dst")]], SYNC);
    let relay = support::relay::Relay::to(format!("127.0.0.1:{}", lab.sites["b"].nbd_port));
    plan.storages.get_mut("b").expect("b").data = Some(csc_runtime::address::Address::Tcp {
        host: "127.0.0.1".into(),
        port: relay.port,
    });
    let (mut d, rx) = driver(&plan);
    d.start(&plan.pairs(1), SYNC).expect("start");
    await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
    lab.write("a", "src", 0x11, &[0])
        .expect("a write before the cut");
    assert!(same(&lab, ("a", "src"), ("b", "dst")));

    relay.cut();
    let cut = std::time::Instant::now();
    let mut args = lab.qemu_io("a", "app-src");
    args.extend(["-c".to_string(), "write -P 34 1M 64k".to_string()]);
    let mut writer = Command::new("qemu-io")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("qemu-io");
    let (site, notice) = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("a notice within the hung deadline and a heartbeat");
    assert_eq!((site.as_str(), &notice), ("b", &Notice::DataHung));
    let noticed = cut.elapsed();
    let reports = d.interpret(&site, notice);
    assert!(
        reports.iter().any(|r| matches!(&r.event,
            PairEvent::Error(why) if why.contains("does not answer at its DATA address"))),
        "{reports:?}"
    );
    eprintln!("data link cut -> noticed in {} ms", noticed.as_millis());
    // Handled like a hung target: its connections destroyed, the write goes on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(status) = writer.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the application's write is still held"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "the write completes on the source");

    // More writes while the link is cut; then it heals and the operator resumes.
    let offsets: Vec<u64> = (0..10).map(|k| (100 + 3 * k) * 65536).collect();
    lab.write("a", "src", 0x56, &offsets)
        .expect("writes while cut");
    relay.heal();
    // A synchronous pair whose record is short is back in duplex when resume returns.
    let reports = d.resume(&plan.pairs(1), SYNC).expect("resume");
    if !reports.iter().any(|r| r.event == PairEvent::Duplex) {
        await_reports(&mut d, &rx, &PairEvent::Duplex, 1);
    }
    assert!(same(&lab, ("a", "src"), ("b", "dst")), "back in step");
    let bytes = d.bytes_resynced(1, 0).expect("a resync ran");
    // The ten 64 KiB blocks, and the write that was in flight at the cut.
    assert!(
        (10 * 65536..=11 * 65536).contains(&bytes),
        "copied {bytes} bytes for eleven 64 KiB writes"
    );
    eprintln!("after the link healed: resume copied {bytes} bytes");
    d.shutdown();
}
