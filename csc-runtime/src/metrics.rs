//! `run --metrics ADDR`: the session's state in Prometheus' text format, served at
//! `GET /metrics` on an address the operator names (off unless asked; give a loopback
//! address to keep it on the host). The executor gathers its figures once a second;
//! `render` writes them as text (pure) and `serve` serves the last rendering. One
//! read-only GET needs no HTTP framework, so every solution binary stays free of one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The last rendering, shared between the executor and the server.
pub(crate) type Page = Arc<Mutex<String>>;

/// Clients answered at once; more are closed at once (a scraper retries).
const CLIENTS_AT_ONCE: usize = 16;

/// Serves `page` on `addr` from a thread of its own, each client from a thread of its
/// own (a slow client waits alone); returns the bound address.
pub(crate) fn serve(addr: &str, page: Page) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if active.fetch_add(1, Ordering::SeqCst) >= CLIENTS_AT_ONCE {
                    active.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let (page, done) = (Arc::clone(&page), Arc::clone(&active));
                let spawned = std::thread::Builder::new()
                    .name("metrics-client".into())
                    .spawn(move || {
                        let _ = answer(stream, &page);
                        done.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })?;
    Ok(bound)
}

/// What identifies the running program on the page, from its first rendering on.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Build {
    pub session: String,
    /// The FNV-1a hash of the solution document.
    pub hash: String,
    pub cssc_version: String,
    /// With `run --ha`: this manager's id, and whether it leads.
    pub manager: Option<(String, bool)>,
}

/// The page before the executor's first rendering: the program is up, nothing else
/// is known yet (a scrape in the first second is never empty).
pub(crate) fn starting(build: &Build) -> String {
    let mut out = String::new();
    build_families(&mut out, build);
    out
}

fn build_families(out: &mut String, b: &Build) {
    let s = b.session.as_str();
    Family::new(
        out,
        s,
        "cssc_up",
        "gauge",
        "1 while the session's program runs.",
    )
    .sample(&[], 1);
    Family::new(
        out,
        s,
        "cssc_build_info",
        "gauge",
        "1, labelled with the solution document's hash and the cssc version that compiled it.",
    )
    .sample(&[("hash", &b.hash), ("cssc_version", &b.cssc_version)], 1);
    if let Some((manager, leads)) = &b.manager {
        Family::new(
            out,
            s,
            "cssc_ha_leader",
            "gauge",
            "With run --ha: 1 while this manager leads the session, 0 while it stands by.",
        )
        .sample(&[("manager", manager)], u64::from(*leads));
    }
}

/// Reads the request head (bounded) and answers it: the page for `GET /metrics`, 404
/// for anything else.
fn answer(stream: TcpStream, page: &Page) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers, up to the blank line (at most 100 of them).
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", page.lock().expect("page").clone()),
        _ => ("404 Not Found", "GET /metrics\n".to_string()),
    };
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A label value as Prometheus' text format writes it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What the page shows, as the executor saw it at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Figures {
    pub build: Build,
    pub sequences: Vec<SequenceFigures>,
    pub storages: Vec<StorageFigures>,
    pub copies: Vec<CopyFigures>,
    /// Notifications and programs started by this run.
    pub actions_started: usize,
    /// Ended actions by (kind, ok): how many, and seconds they took in all.
    pub actions_ended: BTreeMap<(&'static str, bool), (u64, f64)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SequenceFigures {
    pub number: u32,
    pub state: &'static str,
    pub reversed: bool,
    /// Each copy set's pair: the last thing it reported this run (`None`: nothing yet).
    pub pairs: Vec<(String, Option<&'static str>)>,
    /// Group events handled by this run, by event.
    pub events: BTreeMap<&'static str, u64>,
    /// Copy commands issued by this run, by (command, ok).
    pub commands: BTreeMap<(&'static str, bool), u64>,
    /// Freezes this run (count), and seconds the writers were held: the last freeze,
    /// all of them, and the one holding now.
    pub freezes: Option<FreezeFigures>,
    /// What `verify` found this run: bytes compared, bytes differing, bytes repaired.
    pub verified: Option<(u64, u64, u64)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FreezeFigures {
    pub count: u64,
    pub last: f64,
    pub total: f64,
    pub current: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StorageFigures {
    pub name: String,
    pub reachable: bool,
    /// Seconds since it last answered its heartbeat, where its driver keeps one.
    pub heartbeat_age: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CopyFigures {
    pub sequence: u32,
    pub copyset: String,
    pub done: u64,
    pub total: u64,
    pub in_step: bool,
    /// An asynchronous copy's lag, where its driver measures it: (seconds, bytes).
    pub lag: Option<(f64, u64)>,
}

/// One metric family: its help and type once, then its samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
    session: String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, session: &str, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Family {
            out,
            name,
            session: label(session),
        }
    }

    /// A sample with the session's label and `labels` (values escaped here).
    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.out, "{}{{session=\"{}\"", self.name, self.session);
        for (key, val) in labels {
            let _ = write!(self.out, ",{key}=\"{}\"", label(val));
        }
        let _ = writeln!(self.out, "}} {value}");
    }
}

/// The most copy sets whose pairs get series of their own (state, bytes, lag). A page
/// of 20,000 copy sets over 8 sequences would carry 160,000 pair-state series, read
/// and stored at every scrape: above this, `cssc_pairs` counts the pairs in each
/// state (series bounded by sequences × states), and one pair is found with `status`.
pub(crate) const PER_PAIR_SERIES_UP_TO: usize = 1000;

/// The figures in Prometheus' text format (0.0.4).
pub(crate) fn render(f: &Figures) -> String {
    let mut out = String::new();
    build_families(&mut out, &f.build);
    let s = f.build.session.as_str();
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_sequence_state",
        "gauge",
        "1 for the state each sequence is in.",
    );
    for q in &f.sequences {
        family.sample(
            &[
                ("sequence", &q.number.to_string()),
                ("state", q.state),
                ("reversed", &q.reversed.to_string()),
            ],
            1,
        );
    }
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_pairs",
        "gauge",
        "Pairs of each sequence by what they last reported this run (Pending: nothing yet).",
    );
    for q in &f.sequences {
        let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, state) in &q.pairs {
            *by_state.entry(state.unwrap_or("Pending")).or_default() += 1;
        }
        for (state, count) in by_state {
            family.sample(
                &[("sequence", &q.number.to_string()), ("state", state)],
                count,
            );
        }
    }
    let per_pair =
        f.sequences.iter().map(|q| q.pairs.len()).max().unwrap_or(0) <= PER_PAIR_SERIES_UP_TO;
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_pair_state",
        "gauge",
        "1 for what each copy set's pair last reported this run (Pending: nothing yet); only in sessions of at most 1000 copy sets.",
    );
    for q in f.sequences.iter().filter(|_| per_pair) {
        for (copyset, state) in &q.pairs {
            let state = state.unwrap_or("Pending");
            family.sample(
                &[
                    ("sequence", &q.number.to_string()),
                    ("copyset", copyset),
                    ("state", state),
                ],
                1,
            );
        }
    }
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_group_events_total",
        "counter",
        "Group events handled by this run.",
    );
    for q in &f.sequences {
        for (event, count) in &q.events {
            family.sample(
                &[("sequence", &q.number.to_string()), ("event", event)],
                count,
            );
        }
    }
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_commands_total",
        "counter",
        "Copy commands issued by this run, by outcome.",
    );
    for q in &f.sequences {
        for ((command, ok), count) in &q.commands {
            family.sample(
                &[
                    ("sequence", &q.number.to_string()),
                    ("command", command),
                    ("ok", &ok.to_string()),
                ],
                count,
            );
        }
    }
    Family::new(
        &mut out,
        s,
        "cssc_actions_started_total",
        "counter",
        "Notifications and programs started by this run.",
    )
    .sample(&[], f.actions_started);
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_actions_ended_total",
        "counter",
        "Notifications and programs ended this run, by kind and outcome.",
    );
    for ((kind, ok), (count, _)) in &f.actions_ended {
        family.sample(&[("action", kind), ("ok", &ok.to_string())], count);
    }
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_action_seconds_total",
        "counter",
        "Time the ended notifications and programs took, by kind and outcome.",
    );
    for ((kind, ok), (_, seconds)) in &f.actions_ended {
        family.sample(
            &[("action", kind), ("ok", &ok.to_string())],
            format!("{seconds:.3}"),
        );
    }
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_storage_reachable",
        "gauge",
        "1 while the storage answers the session.",
    );
    for storage in &f.storages {
        family.sample(&[("storage", &storage.name)], u8::from(storage.reachable));
    }
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_storage_heartbeat_age_seconds",
        "gauge",
        "Since the storage last answered its heartbeat.",
    );
    for storage in &f.storages {
        if let Some(age) = storage.heartbeat_age {
            family.sample(&[("storage", &storage.name)], format!("{age:.3}"));
        }
    }
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_copy_bytes",
        "gauge",
        "Each running copy: bytes done and to do; in_step once a mirror is in step; only in sessions of at most 1000 copy sets.",
    );
    for c in f.copies.iter().filter(|_| per_pair) {
        let (sequence, in_step) = (c.sequence.to_string(), c.in_step.to_string());
        for (of, bytes) in [("done", c.done), ("total", c.total)] {
            family.sample(
                &[
                    ("sequence", &sequence),
                    ("copyset", &c.copyset),
                    ("of", of),
                    ("in_step", &in_step),
                ],
                bytes,
            );
        }
    }
    for (name, help, pick) in [
        (
            "cssc_verified_bytes_total",
            "Bytes of each sequence's sources that verify compared with their targets this run.",
            (|v: (u64, u64, u64)| v.0) as fn((u64, u64, u64)) -> u64,
        ),
        (
            "cssc_verify_differing_bytes_total",
            "Bytes verify found differing between a target and its source this run.",
            |v| v.1,
        ),
        (
            "cssc_verify_repaired_bytes_total",
            "Bytes verify --repair copied from a source to its target this run.",
            |v| v.2,
        ),
    ] {
        let mut family = Family::new(&mut out, s, name, "counter", help);
        for q in &f.sequences {
            if let Some(v) = q.verified {
                family.sample(&[("sequence", &q.number.to_string())], pick(v));
            }
        }
    }
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_freezes_total",
        "counter",
        "Freezes of each sequence by this run.",
    );
    for q in &f.sequences {
        if let Some(freezes) = &q.freezes {
            family.sample(&[("sequence", &q.number.to_string())], freezes.count);
        }
    }
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_freeze_held_seconds",
        "gauge",
        "How long each sequence's writers were held: the last freeze, all of this run's, and the one holding now (from the freeze command to the thaw or the end of the hold time).",
    );
    for q in &f.sequences {
        if let Some(z) = &q.freezes {
            for (of, seconds) in [("last", z.last), ("total", z.total), ("current", z.current)] {
                family.sample(
                    &[("sequence", &q.number.to_string()), ("of", of)],
                    format!("{seconds:.3}"),
                );
            }
        }
    }
    let mut family = Family::new(
        &mut out,
        s,
        "cssc_async_lag",
        "gauge",
        "Each asynchronous copy that measures it: seconds since the instant its target holds, and bytes behind (yet to copy where the driver knows it, else its last change sent); only in sessions of at most 1000 copy sets.",
    );
    for c in f.copies.iter().filter(|_| per_pair) {
        if let Some((seconds, bytes)) = c.lag {
            let sequence = c.sequence.to_string();
            family.sample(
                &[
                    ("sequence", &sequence),
                    ("copyset", &c.copyset),
                    ("of", "seconds"),
                ],
                format!("{seconds:.3}"),
            );
            family.sample(
                &[
                    ("sequence", &sequence),
                    ("copyset", &c.copyset),
                    ("of", "bytes"),
                ],
                bytes,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::Read;

    #[test]
    fn the_page_is_served_at_get_metrics_only() {
        let page: Page = Arc::new(Mutex::new("cssc_up 1\n".into()));
        let addr = serve("127.0.0.1:0", Arc::clone(&page)).expect("bind");
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).expect("connect");
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
            let mut text = String::new();
            s.read_to_string(&mut text).expect("answer");
            text
        };
        let ok = get("/metrics");
        assert!(
            ok.starts_with("HTTP/1.1 200 OK") && ok.ends_with("\r\n\r\ncssc_up 1\n"),
            "{ok}"
        );
        *page.lock().unwrap() = "cssc_up 0\n".into();
        assert!(get("/metrics").ends_with("cssc_up 0\n"));
        assert!(get("/").starts_with("HTTP/1.1 404"));
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    /// A client that connects and sends nothing (it would hold the server for its 5 s
    /// read timeout) does not delay another's scrape.
    #[test]
    fn a_slow_client_does_not_stall_the_others() {
        let page: Page = Arc::new(Mutex::new("cssc_up 1\n".into()));
        let addr = serve("127.0.0.1:0", Arc::clone(&page)).expect("bind");
        let _slow = TcpStream::connect(addr).expect("connect");
        std::thread::sleep(Duration::from_millis(50));
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        write!(s, "GET /metrics HTTP/1.1\r\n\r\n").expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text)
            .expect("answered while the slow client waits");
        assert!(text.ends_with("cssc_up 1\n"), "{text}");
    }

    #[test]
    fn the_first_page_says_up_and_what_runs() {
        let page = starting(&Build {
            session: "cppc".into(),
            hash: "00ff".into(),
            cssc_version: "0.1.0".into(),
            manager: None,
        });
        assert!(page.contains("\ncssc_up{session=\"cppc\"} 1\n"), "{page}");
        assert!(!page.contains("cssc_ha_leader"), "{page}");
        assert!(
            page.contains(
                "cssc_build_info{session=\"cppc\",hash=\"00ff\",cssc_version=\"0.1.0\"} 1"
            ),
            "{page}"
        );
    }

    /// Figures with something in every family.
    fn full_figures() -> Figures {
        Figures {
            build: Build {
                session: "cppc".into(),
                hash: "00ff".into(),
                cssc_version: "0.1.0".into(),
                manager: Some(("host:7".into(), true)),
            },
            sequences: vec![SequenceFigures {
                number: 1,
                state: "Duplex",
                reversed: false,
                pairs: vec![("db".into(), Some("Duplex")), ("lo\"g".into(), None)],
                events: BTreeMap::from([("onDuplex", 1), ("onError", 2)]),
                commands: BTreeMap::from([(("start", true), 1)]),
                freezes: Some(FreezeFigures {
                    count: 1,
                    last: 2.0,
                    total: 2.0,
                    current: 0.0,
                }),
                verified: Some((1 << 20, 65536, 65536)),
            }],
            storages: vec![StorageFigures {
                name: "siteA".into(),
                reachable: true,
                heartbeat_age: Some(0.2),
            }],
            copies: vec![CopyFigures {
                sequence: 1,
                copyset: "db".into(),
                done: 5,
                total: 10,
                in_step: false,
                lag: Some((1.5, 4096)),
            }],
            actions_started: 3,
            actions_ended: BTreeMap::from([
                (("notify", true), (2, 0.25)),
                (("run", false), (1, 1.0)),
            ]),
        }
    }

    #[test]
    fn above_a_thousand_copy_sets_pairs_are_counted_not_listed() {
        let mut f = full_figures();
        let states = [Some("Duplex"), Some("Error"), None];
        f.sequences[0].pairs = (0..1001)
            .map(|i| (format!("cs{i}"), states[i % 3]))
            .collect();
        let page = render(&f);
        assert!(!page.contains("cssc_pair_state{"), "{page}");
        assert!(!page.contains("cssc_copy_bytes{"), "{page}");
        for line in [
            "cssc_pairs{session=\"cppc\",sequence=\"1\",state=\"Duplex\"} 334",
            "cssc_pairs{session=\"cppc\",sequence=\"1\",state=\"Error\"} 334",
            "cssc_pairs{session=\"cppc\",sequence=\"1\",state=\"Pending\"} 333",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} in {page}");
        }
        f.sequences[0].pairs.truncate(1000);
        assert!(render(&f).contains("cssc_pair_state{"));
    }

    /// The `cssc_…` words of `text`.
    fn metric_words(text: &str) -> BTreeSet<String> {
        text.match_indices("cssc_")
            .filter(|(at, _)| {
                !text[..*at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            })
            // A metric's name goes on with a letter (`cssc_*.deb` is a package's).
            .filter(|(at, _)| text[at + 5..].starts_with(|c: char| c.is_ascii_lowercase()))
            .map(|(at, _)| {
                text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect()
            })
            .collect()
    }

    /// What docs and the Grafana dashboard (contrib/grafana-dashboard.json) name is
    /// what the page has: each `cssc_…` word a family (or the label `cssc_version`),
    /// every family documented in docs/runtime.md, and every label a dashboard
    /// expression matches or groups by one the page has.
    #[test]
    fn docs_and_the_dashboard_name_only_metrics_the_page_has() {
        let page = render(&full_figures());
        let families: BTreeSet<String> = page
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect();
        let labels: BTreeSet<String> = page
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('{').and_then(|(_, r)| r.split_once('}')))
            .flat_map(|(inner, _)| {
                inner
                    .split(',')
                    .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let mut files = vec![
            root.join("README.md"),
            root.join("contrib/grafana-dashboard.json"),
        ];
        for entry in std::fs::read_dir(root.join("docs")).expect("docs") {
            files.push(entry.expect("entry").path());
        }
        for file in &files {
            for word in metric_words(&read(file)) {
                assert!(
                    families.contains(&word) || labels.contains(&word),
                    "{} names {word}, which the metrics page does not have",
                    file.display()
                );
            }
        }
        let documented = metric_words(&read(&root.join("docs/runtime.md")));
        for family in &families {
            assert!(
                documented.contains(family),
                "{family} is not in docs/runtime.md"
            );
        }
        let dashboard: serde_json::Value =
            serde_json::from_str(&read(&root.join("contrib/grafana-dashboard.json")))
                .expect("JSON");
        let exprs: Vec<String> = dashboard["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .map(|t| t["expr"].as_str().expect("expr").to_string())
            .collect();
        assert!(exprs.len() >= 15, "{exprs:?}");
        for expr in &exprs {
            assert!(!metric_words(expr).is_empty(), "{expr} names no metric");
            // Labels in matchers `{a="…", b=~"…"}` and in `by (a, b)`.
            let mut used = Vec::new();
            for (_, rest) in expr.match_indices('{').map(|(i, _)| ((), &expr[i + 1..])) {
                let inner = rest.split('}').next().unwrap_or_default();
                used.extend(
                    inner
                        .split(',')
                        .filter_map(|m| m.split(['=', '!']).next())
                        .map(str::trim),
                );
            }
            for (i, _) in expr.match_indices("by (") {
                let inner = expr[i + 4..].split(')').next().unwrap_or_default();
                used.extend(inner.split(',').map(str::trim));
            }
            for label in used.into_iter().filter(|l| !l.is_empty()) {
                assert!(
                    labels.contains(label),
                    "{expr}: label {label} is on no metric"
                );
            }
        }
    }

    #[test]
    fn every_family_renders_its_samples_with_escaped_labels() {
        let page = render(&full_figures());
        for line in [
            "cssc_up{session=\"cppc\"} 1",
            "cssc_build_info{session=\"cppc\",hash=\"00ff\",cssc_version=\"0.1.0\"} 1",
            "cssc_sequence_state{session=\"cppc\",sequence=\"1\",state=\"Duplex\",reversed=\"false\"} 1",
            "cssc_pair_state{session=\"cppc\",sequence=\"1\",copyset=\"db\",state=\"Duplex\"} 1",
            "cssc_pair_state{session=\"cppc\",sequence=\"1\",copyset=\"lo\\\"g\",state=\"Pending\"} 1",
            "cssc_group_events_total{session=\"cppc\",sequence=\"1\",event=\"onError\"} 2",
            "cssc_commands_total{session=\"cppc\",sequence=\"1\",command=\"start\",ok=\"true\"} 1",
            "cssc_actions_started_total{session=\"cppc\"} 3",
            "cssc_actions_ended_total{session=\"cppc\",action=\"notify\",ok=\"true\"} 2",
            "cssc_action_seconds_total{session=\"cppc\",action=\"run\",ok=\"false\"} 1.000",
            "cssc_storage_reachable{session=\"cppc\",storage=\"siteA\"} 1",
            "cssc_storage_heartbeat_age_seconds{session=\"cppc\",storage=\"siteA\"} 0.200",
            "cssc_copy_bytes{session=\"cppc\",sequence=\"1\",copyset=\"db\",of=\"total\",in_step=\"false\"} 10",
            "cssc_freezes_total{session=\"cppc\",sequence=\"1\"} 1",
            "cssc_verified_bytes_total{session=\"cppc\",sequence=\"1\"} 1048576",
            "cssc_verify_differing_bytes_total{session=\"cppc\",sequence=\"1\"} 65536",
            "cssc_verify_repaired_bytes_total{session=\"cppc\",sequence=\"1\"} 65536",
            "cssc_freeze_held_seconds{session=\"cppc\",sequence=\"1\",of=\"last\"} 2.000",
            "cssc_async_lag{session=\"cppc\",sequence=\"1\",copyset=\"db\",of=\"bytes\"} 4096",
            "# TYPE cssc_pair_state gauge",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} not in:\n{page}");
        }
        // Every sample belongs to the family declared above it.
        let mut family = "";
        for line in page.lines() {
            if let Some(name) = line.strip_prefix("# TYPE ") {
                family = name.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                assert!(
                    line.starts_with(&format!("{family}{{")),
                    "{line} under {family}"
                );
            }
        }
    }
}
