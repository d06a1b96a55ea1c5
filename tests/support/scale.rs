//! Sessions of many pairs (the scale test and benches/scale.rs): N copy sets, each a
//! 1 MiB volume of site A mirrored to one of site B, run by the built-in
//! mirror-freeze-switch from a run-time file that lists them.

use super::host::Host;
use csc_runtime::lab::Lab;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Site A with `n` 1 MiB sources s0… (exported for an application), site B with `n`
/// 1 MiB targets t0….
pub fn scale_lab(n: usize, keep: bool) -> Lab {
    let mut lab = Lab::new(&std::env::temp_dir(), keep).expect("lab");
    let mib = 1 << 20;
    let sources: Vec<(String, u64)> = (0..n).map(|i| (format!("s{i}"), mib)).collect();
    let names: Vec<String> = sources.iter().map(|(v, _)| v.clone()).collect();
    lab.add_site("siteA", &sources, &names).expect("site A");
    let targets: Vec<(String, u64)> = (0..n).map(|i| (format!("t{i}"), mib)).collect();
    lab.add_site("siteB", &targets, &[]).expect("site B");
    lab
}

/// The scale lab with a run-time file whose copy sets cs0… pair s_i with t_i.
pub fn scale_host(n: usize, keep: bool) -> Host {
    let copysets: String = (0..n)
        .map(|i| {
            format!("[[copyset]]\nname = \"cs{i}\"\nvolumes = [\"siteA:s{i}\", \"siteB:t{i}\"]\n")
        })
        .collect();
    Host::on(scale_lab(n, keep), &copysets)
}

/// A process's peak resident memory (VmHWM), in KiB.
pub fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The QMP commands a run sent, by command, from its debug records (`kind="qmp"`),
/// those logged after the first line containing `after` if given.
pub fn qmp_commands(log: &Path, after: Option<&str>) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lines = text.lines();
    if let Some(marker) = after {
        lines.by_ref().find(|l| l.contains(marker));
    }
    let mut counts = BTreeMap::new();
    for line in lines.filter(|l| l.contains("kind=\"qmp\"")) {
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

impl Host {
    /// `run` with debug records (the QMP commands it sends) and `more` arguments, in
    /// the state directory `state`: the process and its log.
    pub fn run_logged(&self, state: &str, more: &[&str]) -> (Child, PathBuf) {
        let mut cmd = self.command("run", state);
        cmd.command.args(["--log-level", "debug"]).args(more);
        let log = cmd.log.clone();
        (cmd.spawn().expect("run"), log)
    }
}

/// Sequence 1's state in `status --json` of the state directory `state`, and how long
/// `status` took.
pub fn state(host: &Host) -> (Option<String>, Duration) {
    let t = Instant::now();
    let mut cmd = host.command("status", "state");
    cmd.command.arg("--json");
    let out = cmd.output().expect("status");
    let took = t.elapsed();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (summary["states"]["1"].as_str().map(str::to_string), took)
}

/// Waits until sequence 1 is `want` (fails after 20 minutes); the seconds since `since`.
pub fn until(host: &Host, want: &str, since: Instant) -> f64 {
    loop {
        if state(host).0.as_deref() == Some(want) {
            return since.elapsed().as_secs_f64();
        }
        assert!(
            since.elapsed().as_secs() < 1200,
            "not {want} within 20 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
