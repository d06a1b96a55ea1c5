//! Two managers of one session on a three-member etcd cluster (issue 23): one leads
//! and runs the session, the other waits; the leader SIGKILLed in duplex is replaced
//! by the standby, which takes over its copies without recopying; a deposed leader
//! cannot append to the journal. Needs qemu-utils and etcd-server.

mod support;

use csc_runtime::core::record::Record;
use csc_runtime::ha::{self, Ha};
use csc_runtime::journal::{JournalError, Store};
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use support::etcd::Cluster;
use support::host::{await_log, exits_within, mirrors_ready, Host};
use support::relay::Relay;

/// The ids of site A's jobs, and whether each is in step.
fn jobs(host: &Host) -> Vec<(String, bool)> {
    let mut jobs: Vec<(String, bool)> = support::qmp(&host.lab, "siteA")
        .list("query-block-jobs", Value::Null)
        .expect("jobs")
        .iter()
        .map(|j| {
            (
                j["device"].as_str().unwrap_or_default().to_string(),
                j["ready"] == true,
            )
        })
        .collect();
    jobs.sort();
    jobs
}

#[test]
fn a_killed_leader_is_replaced_by_the_standby_which_takes_over_without_recopying() {
    let cluster = Cluster::start();
    let host = Host::new();
    let port = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        format!("127.0.0.1:{}", l.local_addr().expect("port").port())
    };
    let (one, two) = (port(), port());
    let (mut first, first_log) = host.manager("m1", &cluster.ha(), &["--metrics", &one]);
    await_log(&first_log, "this manager leads", 20);
    mirrors_ready(&host.lab, 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !host.status("m1").contains("1         Duplex") {
        assert!(Instant::now() < deadline, "{}", host.status("m1"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut second, second_log) = host.manager("m2", &cluster.ha(), &["--metrics", &two]);
    await_log(&second_log, &format!(":{} leads", first.id()), 20);
    let before = jobs(&host);
    assert_eq!(before.len(), 2, "{before:?}");
    let mut status = host.command("status", "m1");
    status.command.args(["--ha", &cluster.ha()]);
    let said = String::from_utf8_lossy(&status.output().expect("status").stdout).into_owned();
    let host_name = ha::manager_id()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        said.contains(&format!(
            "managers: {host_name}:{} leads (lease: ",
            first.id()
        )) && said.contains(&format!("standing by: {host_name}:{}", second.id())),
        "{said}"
    );
    // And the metrics pages: the leader's says 1, the standby's 0.
    std::thread::sleep(Duration::from_millis(1100));
    for (address, child, leads) in [(&one, &first, 1), (&two, &second, 0)] {
        let page = support::scrape(address);
        let line = format!(
            "cssc_ha_leader{{session=\"mirror-freeze-switch\",manager=\"{host_name}:{}\"}} {leads}",
            child.id()
        );
        assert!(page.contains(&line), "no `{line}` in:\n{page}");
    }

    let killed = Instant::now();
    support::host::signal(&first, "-KILL");
    let _ = first.wait();
    let leads = await_log(&second_log, "this manager leads", 30);
    await_log(&second_log, "taking over", 30);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !host.status("m2").contains("1         Duplex") {
        assert!(Instant::now() < deadline, "{}", host.status("m2"));
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "leader SIGKILLed -> standby leads in {} ms",
        (leads - killed).as_millis()
    );
    assert_eq!(
        jobs(&host),
        before,
        "the same mirrors, in step: adopted, not recopied"
    );
    host.lab
        .write("siteA", "db", 0x7e, &[0, 3 << 20, 9 << 20])
        .expect("writes");
    host.assert_copies_equal();

    // A standby stopped by SIGTERM while it waits ends at once, cleanly.
    let (mut third, third_log) = host.manager("m3", &cluster.ha(), &[]);
    await_log(&third_log, &format!(":{} leads", second.id()), 20);
    support::host::signal(&third, "-TERM");
    assert_eq!(exits_within(&mut third, 5, "a standby"), 0);
    support::host::signal(&second, "-TERM");
    assert_eq!(exits_within(&mut second, 60, "the new leader"), 0);
    for site in ["siteA", "siteB"] {
        assert_eq!(support::leftovers(&host.lab, site), Vec::<String>::new());
    }
}

#[test]
fn a_deposed_leader_cannot_append_to_the_journal() {
    let cluster = Cluster::start();
    let ha = Ha::parse(&cluster.ha(), "fencing", 3).expect("ha");
    let stop = AtomicBool::new(false);
    let record = Record::Run {
        pid: 1,
        time: "t".into(),
        solution: "s".into(),
    };
    let first = ha::campaign(&ha, "one", &stop)
        .expect("etcd")
        .expect("leads");
    let (mut journal, earlier) = first.journal().expect("journal");
    assert!(earlier.is_empty());
    journal.append(&record).expect("the leader appends");
    // Its lease ends (as when it cannot renew): another manager wins.
    let etcd = ha::etcd::Etcd::new(cluster.urls.clone(), Duration::from_secs(1));
    etcd.revoke(first.lease).expect("revoke");
    let second = ha::campaign(&ha, "two", &stop)
        .expect("etcd")
        .expect("leads");
    assert!(
        matches!(journal.append(&record), Err(JournalError::Deposed)),
        "the deposed leader appended"
    );
    let (mut journal, earlier) = second.journal().expect("journal");
    assert_eq!(
        earlier,
        vec![record.clone()],
        "what the first leader wrote, once"
    );
    journal.append(&record).expect("the new leader appends");
    assert_eq!(second.journal().expect("journal").1.len(), 2);
}

#[test]
fn a_leader_without_quorum_stops_the_copies_go_on_and_the_next_leader_adopts_them() {
    let mut cluster = Cluster::start();
    let host = Host::new();
    let (mut leader, log) = host.manager("m1", &cluster.ha(), &[]);
    await_log(&log, "this manager leads", 20);
    mirrors_ready(&host.lab, 2);
    let before = jobs(&host);

    cluster.kill_member(1);
    cluster.kill_member(2);
    let lost = Instant::now();
    assert_eq!(
        exits_within(&mut leader, 30, "the leader without quorum"),
        ha::EXIT_DEPOSED
    );
    eprintln!(
        "quorum lost -> the leader ended in {} ms",
        lost.elapsed().as_millis()
    );
    // The storage goes on copying: the same mirrors, every write on the targets.
    assert_eq!(jobs(&host), before);
    host.lab
        .write("siteA", "db", 0x5c, &[1 << 20, 7 << 20])
        .expect("writes");
    host.assert_copies_equal();

    // Quorum back; the manager restarted (as systemd does) leads and adopts them.
    cluster.start_member(1);
    cluster.start_member(2);
    cluster.await_healthy();
    let (mut next, log) = host.manager("m1", &cluster.ha(), &[]);
    await_log(&log, "this manager leads", 30);
    await_log(&log, "taking over", 30);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !host.status("m1").contains("1         Duplex") {
        assert!(Instant::now() < deadline, "{}", host.status("m1"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(jobs(&host), before, "adopted, not recopied");
    support::host::signal(&next, "-TERM");
    assert_eq!(exits_within(&mut next, 60, "the next leader"), 0);
}

/// When the first line of `log` containing `text` was written: seconds from the start
/// of its month (the line's RFC 3339 UTC timestamp), to compare lines of one test.
fn logged_at(log: &std::path::Path, text: &str) -> f64 {
    let said = std::fs::read_to_string(log).expect("log");
    let line = said
        .lines()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no `{text}` in:\n{said}"));
    // 2026-12-06T14:10:29.154123Z
    let stamp = line.split_whitespace().next().unwrap_or_default();
    let parse = || -> Option<f64> {
        let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
        let day: f64 = date.split('-').nth(2)?.parse().ok()?;
        let mut parts = time.split(':');
        let (h, m, s): (f64, f64, f64) = (
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        );
        Some(day * 86400.0 + h * 3600.0 + m * 60.0 + s)
    };
    parse().unwrap_or_else(|| panic!("no timestamp: {line}"))
}

#[test]
fn a_leader_cut_off_from_etcd_but_not_from_storage_stops_before_the_standby_leads() {
    let cluster = Cluster::start();
    let host = Host::new();
    // The first manager reaches etcd through relays that can be cut; the standby
    // and the storage are reached directly.
    let relays: Vec<Relay> = cluster
        .urls
        .iter()
        .map(|u| Relay::to(u.trim_start_matches("http://").to_string()))
        .collect();
    let through: Vec<String> = relays
        .iter()
        .map(|r| format!("http://127.0.0.1:{}", r.port))
        .collect();
    let [(mut first, first_log), (mut second, second_log)] =
        host.leader_and_standby(&format!("etcd={}", through.join(",")), &cluster.ha());
    let before = jobs(&host);

    for relay in &relays {
        relay.cut();
    }
    assert_eq!(
        exits_within(&mut first, 30, "the leader cut off from etcd"),
        ha::EXIT_DEPOSED
    );
    await_log(&second_log, "this manager leads", 30);
    await_log(&second_log, "taking over", 30);
    let ended = logged_at(&first_log, "state=\"deposed\"");
    let leads = logged_at(&second_log, "this manager leads");
    let gap_ms = (leads - ended) * 1000.0;
    eprintln!("the old leader ended {gap_ms:.0} ms before the new one led");
    assert!(
        gap_ms > 0.0,
        "the new leader led {:.0} ms before the old one ended",
        -gap_ms
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !host.status("m2").contains("1         Duplex") {
        assert!(Instant::now() < deadline, "{}", host.status("m2"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(jobs(&host), before, "adopted, not recopied");
    host.lab
        .write("siteA", "db", 0x3d, &[2 << 20, 5 << 20])
        .expect("writes");
    host.assert_copies_equal();
    support::host::signal(&second, "-TERM");
    assert_eq!(exits_within(&mut second, 60, "the new leader"), 0);
}

#[test]
fn a_target_site_that_fails_while_no_leader_is_in_office_is_seen_by_the_next_one() {
    let cluster = Cluster::start();
    let mut host = Host::new();
    let [(mut first, _), (mut second, second_log)] =
        host.leader_and_standby(&cluster.ha(), &cluster.ha());

    // The leader dies, then the target site, before the standby is in office.
    support::host::signal(&first, "-KILL");
    let _ = first.wait();
    host.lab.kill("siteB");
    await_log(&second_log, "this manager leads", 30);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !host.status("m2").contains("onError: Duplex -> Failed") {
        assert!(Instant::now() < deadline, "{}", host.status("m2"));
        std::thread::sleep(Duration::from_millis(50));
    }
    // The application goes on: its writes complete without their target.
    let wrote = Instant::now();
    host.lab
        .write("siteA", "db", 0x21, &[4 << 20])
        .expect("the application writes");
    assert!(
        wrote.elapsed() < Duration::from_secs(10),
        "a write waited {:?}",
        wrote.elapsed()
    );
    support::host::signal(&second, "-TERM");
    assert_eq!(exits_within(&mut second, 60, "the new leader"), 0);
}

#[test]
fn a_leader_killed_while_its_freeze_holds_writers_is_replaced_and_they_are_released() {
    let cluster = Cluster::start();
    let mut host = Host::three_sites();
    let [(mut first, _), (mut second, second_log)] =
        host.leader_and_standby(&cluster.ha(), &cluster.ha());
    // Site B dies: the freeze holds the pair to site C (its writers wait), for 2 s;
    // the leader is killed within the hold.
    host.kill_and_await("siteB", "m1", "onSuspend");
    support::host::signal(&first, "-KILL");
    let _ = first.wait();
    let mut writer = std::process::Command::new("qemu-io")
        .args(["-f", "raw", &host.lab.nbd_uri("siteA", "app-s1")])
        .args(["-c", "write -P 114 1M 64k", "-c", "write -P 114 2M 64k"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("qemu-io");
    std::thread::sleep(Duration::from_millis(1000));
    // (A held group lets its first write through: QEMU's bucket starts empty. The
    // second waits.)
    assert!(
        writer.try_wait().expect("wait").is_none(),
        "the application's writes are held"
    );
    // No leader for up to a lease; then the standby takes over and releases it.
    await_log(&second_log, "this manager leads", 30);
    assert_eq!(
        exits_within(&mut writer, 20, "the held write"),
        0,
        "the writes were released and acknowledged"
    );
    assert_eq!(
        support::read_at(host.lab.image("siteA", "s1"), 2 << 20, 65536),
        vec![114; 65536]
    );
    assert_ne!(
        support::read_at(host.lab.image("siteC", "t1"), 2 << 20, 65536),
        vec![114; 65536],
        "the frozen target stays as it was at the freeze"
    );
    support::host::signal(&second, "-TERM");
    assert_eq!(exits_within(&mut second, 60, "the new leader"), 0);
}

#[test]
fn an_action_the_killed_leader_did_not_see_end_runs_again_under_the_same_id() {
    let cluster = Cluster::start();
    let (lab, _) = support::host::two_site_lab(16);
    // The on-call contact is a program here: it says when it starts and ends, and
    // takes 4 s in between.
    let said = lab.dir.join("oncall.said");
    let program = lab.dir.join("oncall.sh");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\necho \"$CSSC_ACTION_ID start\" >> {said}\nsleep 4\necho \"$CSSC_ACTION_ID end\" >> {said}\n",
            said = said.display()
        ),
    )
    .expect("program");
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(&program)
        .status()
        .expect("chmod");
    let mut host = Host::on(
        lab,
        &format!("[contact.oncall]\ncommand = \"{}\"\n", program.display()),
    );
    let [(mut first, _), (mut second, second_log)] =
        host.leader_and_standby(&cluster.ha(), &cluster.ha());

    // Site B dies: onError freezes and notifies; the leader dies while the
    // notification runs.
    host.lab.kill("siteB");
    await_log(&said, " start", 20);
    support::host::signal(&first, "-KILL");
    let _ = first.wait();
    await_log(&second_log, "this manager leads", 30);
    // The notification the killed leader started (its id: the first line) runs again
    // under the same id; the new leader's own later actions (onSuspend's
    // notification, once its freeze is complete) have ids of their own.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (id, lines) = loop {
        let text = std::fs::read_to_string(&said).unwrap_or_default();
        let id = text
            .lines()
            .next()
            .and_then(|l| l.strip_suffix(" start"))
            .unwrap_or_default()
            .to_string();
        let count = |what: &str| {
            text.lines()
                .filter(|l| *l == format!("{id} {what}"))
                .count()
        };
        if count("start") >= 2 && count("end") >= 2 {
            break (id, text);
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!id.is_empty(), "{lines}");
    assert_eq!(
        lines
            .lines()
            .filter(|l| *l == format!("{id} start"))
            .count(),
        2,
        "once by each leader, under the same id: {lines}"
    );
    support::host::signal(&second, "-TERM");
    assert_eq!(exits_within(&mut second, 60, "the new leader"), 0);
}
