//! A storage host as an administrator has one: a lab of qemu-storage-daemons, a
//! run-time file for it, and the solution binary run as a process with a state
//! directory (`run`, `status`, operator commands, SIGKILL and SIGTERM).

use super::{lab, qmp, same};
use csc_runtime::lab::Lab;
use csc_runtime::machine::Solution;
use csc_runtime::plan::Plan;
use csc_runtime::vocab::{BaseCopy, ContinuousMode};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub fn two_site_lab(target_mib: u64) -> (Lab, Plan) {
    let (lab, _) = lab(
        &[
            ("siteA", &[("db", 16), ("journal", 16)]),
            ("siteB", &[("db-r", target_mib), ("journal-r", 16)]),
        ],
        &[&[("siteA", "db"), ("siteB", "db-r")]],
        BaseCopy::Continuous(ContinuousMode::Synchronous),
    );
    let mut plan = Plan::from_session(&cssc_solutions::mirror_freeze_switch::Chain::SESSION);
    lab.wire(&mut plan);
    (lab, plan)
}

/// Waits up to `secs` for a child to exit; kills it and fails if it does not.
pub fn exits_within(child: &mut std::process::Child, secs: u64, what: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `log` contains `text`; fails with the log.
pub fn await_log(log: &std::path::Path, text: &str, secs: u64) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        if said.contains(text) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "no `{text}` in:\n{said}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until site A runs `n` mirror jobs in step.
pub fn mirrors_ready(lab: &Lab, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = qmp(lab, "siteA")
            .execute("query-block-jobs", Value::Null)
            .expect("jobs");
        let ready = jobs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["status"] == "ready")
            .count();
        if ready == n {
            return;
        }
        assert!(Instant::now() < deadline, "mirrors not ready: {jobs}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command of the solution binary and the file its log (stderr) goes to.
pub struct Cmd {
    pub command: std::process::Command,
    pub log: std::path::PathBuf,
}

impl Cmd {
    pub fn spawn(mut self) -> std::io::Result<std::process::Child> {
        self.command.spawn()
    }
    pub fn output(mut self) -> std::io::Result<std::process::Output> {
        self.command.output()
    }
}

/// The two-site lab with a run-time file for it: the built-in mirror-freeze-switch
/// run as an administrator runs it, as a process with a state directory.
pub struct Host {
    pub lab: Lab,
    pub file: std::path::PathBuf,
    /// The built-in solution it runs.
    pub solution: &'static str,
}

impl Host {
    pub fn new() -> Host {
        let (lab, _) = two_site_lab(16);
        Host::on(lab, "")
    }

    /// The two-site lab, secure: TLS monitors and NBD servers (site B's started by the
    /// session), and a run-time file with each site's `[tls]`.
    pub fn secure() -> Host {
        let mut lab = Lab::new(&std::env::temp_dir(), false).expect("lab");
        lab.secure().expect("certificates (openssl)");
        let volumes = |names: [&str; 2]| names.map(|v| (v.to_string(), 16 * super::MIB));
        lab.add_site("siteA", &volumes(["db", "journal"]), &["db".into()])
            .expect("site A");
        lab.add_site("siteB", &volumes(["db-r", "journal-r"]), &[])
            .expect("site B");
        Host::on(lab, "")
    }

    /// Site A's s0 mirrored to site B, s1 to site C (copy sets of the run-time file).
    pub fn three_sites() -> Host {
        let (lab, _) = lab(
            &[
                ("siteA", &[("s0", 16), ("s1", 16)]),
                ("siteB", &[("t0", 16)]),
                ("siteC", &[("t1", 16)]),
            ],
            &[
                &[("siteA", "s0"), ("siteB", "t0")],
                &[("siteA", "s1"), ("siteC", "t1")],
            ],
            BaseCopy::Continuous(ContinuousMode::Synchronous),
        );
        let copysets = "[[copyset]]\nname = \"b\"\nvolumes = [\"siteA:s0\", \"siteB:t0\"]\n[[copyset]]\nname = \"c\"\nvolumes = [\"siteA:s1\", \"siteC:t1\"]\n";
        Host::on(lab, copysets)
    }

    /// Writes the run-time file: every site of the lab, then `more`.
    pub fn on(lab: Lab, more: &str) -> Host {
        let file = lab.dir.join("host.toml");
        let mut text = storages_of(&lab);
        text.push_str(more);
        std::fs::write(&file, text).expect("run file");
        Host {
            lab,
            file,
            solution: "mirror-freeze-switch",
        }
    }

    /// `run`, `status` or `cleanup`, with the run-time file and the state directory
    /// `state` (under the lab) where they take them.
    pub fn command(&self, command: &str, state: &str) -> Cmd {
        // The log goes to a file: a pipe nobody reads would block the run once full.
        static LOGS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = LOGS.fetch_add(1, Ordering::Relaxed);
        let log = self.lab.dir.join(format!("{command}-{n}.log"));
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cssc-solutions"));
        c.args([self.solution, command])
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if command != "status" {
            c.arg("--config").arg(&self.file);
        }
        if command != "cleanup" {
            c.arg("--state-dir").arg(self.lab.dir.join(state));
        }
        Cmd { command: c, log }
    }

    /// Starts `run --ha HA --ha-ttl 3 MORE...` (one of several managers) with state
    /// directory `state`: the process and its log.
    pub fn manager(
        &self,
        state: &str,
        ha: &str,
        more: &[&str],
    ) -> (std::process::Child, std::path::PathBuf) {
        let mut command = self.command("run", state);
        command
            .command
            .args(["--ha", ha, "--ha-ttl", "3"])
            .args(more);
        let log = command.log.clone();
        (command.spawn().expect("run --ha"), log)
    }

    /// Starts manager m1 (reaching etcd at `first`) and waits until it leads and both
    /// mirrors are in step, then manager m2 (at `second`) and waits until it stands by:
    /// each manager's process and log.
    pub fn leader_and_standby(
        &self,
        first: &str,
        second: &str,
    ) -> [(std::process::Child, std::path::PathBuf); 2] {
        let (leader, leader_log) = self.manager("m1", first, &[]);
        await_log(&leader_log, "this manager leads", 20);
        mirrors_ready(&self.lab, 2);
        let (standby, standby_log) = self.manager("m2", second, &[]);
        await_log(&standby_log, &format!(":{} leads", leader.id()), 20);
        [(leader, leader_log), (standby, standby_log)]
    }

    /// Starts `run` and waits until its journal says it runs (taking over, or started);
    /// fails with its log if it ends instead.
    pub fn run_until_up(&self, state: &str, what: &str) -> std::process::Child {
        let command = self.command("run", state);
        let log = command.log.clone();
        let mut run = command.spawn().expect("run");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self
            .status_if_any(state)
            .is_some_and(|s| s.contains(&format!("running (pid {}", run.id())))
        {
            assert!(
                run.try_wait().expect("wait").is_none(),
                "{what} ended: {:?}\n{}",
                self.status_if_any(state),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            assert!(Instant::now() < deadline, "{what} did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        run
    }

    /// Starts `run` and waits until both mirrors are ready and its journal says
    /// sequence 1 is in duplex.
    pub fn run_in_duplex(&self, state: &str) -> std::process::Child {
        let run = self.command("run", state).spawn().expect("run");
        mirrors_ready(&self.lab, 2);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.status(state).contains("1         Duplex") {
            assert!(Instant::now() < deadline, "{}", self.status(state));
            std::thread::sleep(Duration::from_millis(20));
        }
        run
    }

    /// Both copy sets of mirror-freeze-switch: each target equals its source.
    pub fn assert_copies_equal(&self) {
        for (source, target) in [("db", "db-r"), ("journal", "journal-r")] {
            assert!(
                same(&self.lab, ("siteA", source), ("siteB", target)),
                "{source} == {target}"
            );
        }
    }

    /// Kills a site's daemon and waits until the journal in `state` shows `text`.
    pub fn kill_and_await(&mut self, site: &str, state: &str, text: &str) {
        self.lab.kill(site);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.status(state).contains(text) {
            assert!(Instant::now() < deadline, "{}", self.status(state));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An operator command (`suspend 1`, `recover 1 --freeze`, …) to the run of
    /// `state`: (exit code, stdout, stderr).
    pub fn operator(
        &self,
        command: &str,
        sequence: u32,
        state: &str,
    ) -> (Option<i32>, String, String) {
        self.operator_within(command, sequence, state, Duration::from_secs(660))
    }

    /// An operator command, given up (killed, code `None`) after `within`: a run that
    /// never answers is a finding, not a test that hangs for ten minutes.
    pub fn operator_within(
        &self,
        command: &str,
        sequence: u32,
        state: &str,
        within: Duration,
    ) -> (Option<i32>, String, String) {
        let mut words = command.split_whitespace();
        let verb = words.next().expect("a verb");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cssc-solutions"))
            .args([self.solution, verb, &sequence.to_string()])
            .args(words)
            .arg("--state-dir")
            .arg(self.lab.dir.join(state))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("operator command");
        let deadline = std::time::Instant::now() + within;
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return (None, String::new(), format!("no answer within {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("operator command");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn status(&self, state: &str) -> String {
        self.status_if_any(state)
            .expect("a journal in the state directory")
    }

    /// `status`, or `None` while the state directory has no journal yet (exit 2).
    pub fn status_if_any(&self, state: &str) -> Option<String> {
        let out = self.command("status", state).output().expect("status");
        match out.status.code() {
            Some(0) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
            Some(2) => None,
            other => panic!("status exited {other:?}"),
        }
    }

    /// Site A's jobs: (id, offset), by id.
    pub fn jobs(&self) -> Vec<(String, u64)> {
        let jobs = qmp(&self.lab, "siteA")
            .execute("query-block-jobs", Value::Null)
            .expect("jobs");
        let mut found: Vec<(String, u64)> = jobs
            .as_array()
            .into_iter()
            .flatten()
            .map(|j| {
                (
                    j["device"].as_str().unwrap_or_default().to_string(),
                    j["offset"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        found.sort();
        found
    }
}

pub fn terminate(child: &mut std::process::Child, what: &str) -> i32 {
    signal(child, "-TERM");
    exits_within(child, 30, what)
}

/// Sends `signal` (`-TERM`, `-STOP`, ...) to a child process.
pub fn signal(child: &std::process::Child, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// The `[storage.SITE]` tables of a run-time file for every site of a lab.
pub fn storages_of(lab: &Lab) -> String {
    let mut text = String::new();
    for (site, daemon) in &lab.sites {
        let Some(tls) = lab.tls_of(site) else {
            text.push_str(&format!(
                "[storage.{site}]\nendpoint = \"unix:{}\"\ndata = \"tcp:127.0.0.1:{}\"\n",
                daemon.qmp.display(),
                daemon.nbd_port
            ));
            continue;
        };
        // A secure lab: the TLS monitor, and the site's credentials.
        let monitor = tls.monitor.expect("a secure lab's monitor speaks TLS");
        text.push_str(&format!(
            "[storage.{site}]\nendpoint = \"tcp:127.0.0.1:{}\"\ndata = \"tcp:127.0.0.1:{}\"\n[storage.{site}.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nhostname = \"{}\"\ndaemon_dir = \"{}\"\nidentity = \"{}\"\n",
            daemon.qmp_port,
            daemon.nbd_port,
            monitor.ca.display(),
            monitor.cert.display(),
            monitor.key.display(),
            tls.hostname.unwrap_or_default(),
            tls.daemon_dir,
            tls.identity
        ));
    }
    text
}
