//! The fault explorer: seeded, reproducible random schedules of failures, application
//! writes and operator commands on real qemu-storage-daemons, with the session run as
//! an administrator runs it (mirror-freeze-switch as a process with a journal, killed
//! and started again at any point). After every step it checks what must hold whatever
//! the schedule; a schedule that breaks one is shrunk to the shortest that still does,
//! and printed with its seed, ready to paste into a regression test (`replay`).
//!
//! `cargo test --test explorer` runs the fixed seeds CI runs; `bench/explore.sh`
//! runs hundreds (`CSSC_EXPLORE=FROM..TO`, `CSSC_EXPLORE_STEPS=N`).
//!
//! What is checked (docs/explorer.md):
//! - a sequence the running session calls Duplex has every target equal to its source
//!   once the writes are acknowledged (`qemu-img compare`);
//! - when it is Suspended or Failed (frozen), the targets hold a prefix of the
//!   dependent writes: never a write to `journal` whose preceding write to `db` is
//!   missing from `db-r`;
//! - a write to a live source never fails, and no write waits longer than the
//!   documented holds allow;
//! - at the end, with every storage back and the session running, `resume` brings the
//!   sequence to Duplex with every target equal to its source, and a clean stop
//!   (SIGTERM) exits 0 and leaves nothing the session added in the daemons.

mod support;

use serde_json::{json, Value};
use std::process::Child;
use std::time::{Duration, Instant};
use support::host::Host;
use support::{random_chunks, same, try_qmp, MIB};

/// The two pairs of mirror-freeze-switch: (source on siteA, target on siteB).
const PAIRS: [(&str, &str); 2] = [("db", "db-r"), ("journal", "journal-r")];
/// Where the dependent writes go, in both volumes (the others stay below it).
const DEPENDENT_AT: u64 = 15 * MIB;
/// The longest one write may wait: the group's hold (2 s) after a failure is noticed
/// (a hung target: 0.8 s), plus the failed target's own hold (1 s), with room for a
/// loaded machine.
const LONGEST_WRITE: Duration = Duration::from_secs(8);
/// How long a stalled write may still wait once something freed it: a session's
/// start and take-over, its hang detection and the failed target's hold.
const STALLED_WRITE_FREED: Duration = Duration::from_secs(30);

/// How an application writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `n` random 4 KiB blocks.
    Random4k(u32),
    /// `n` random 64 KiB chunks.
    Random64k(u32),
    /// 1 MiB in order, from a random place.
    Sequential,
    /// A 4 KiB write to `db`, acknowledged, then one to `journal` that depends on it.
    Dependent,
}

/// One step of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Writes to the sources, through the application's export (attached before the
    /// session started) or, `late`, through one opened now.
    Write {
        shape: Shape,
        late: bool,
    },
    KillTarget,
    RestartTarget,
    /// SIGSTOP of the target's daemon, and SIGCONT.
    HangTarget,
    ContinueTarget,
    KillSource,
    RestartSource,
    /// SIGKILL of the session's process, and `run` again (it takes over).
    KillSession,
    StartSession,
    Suspend,
    Resume,
}

/// A small seeded generator (xorshift64*): the same seed, the same schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The schedule of a seed: steps that make sense one after the other (a restart
/// follows a kill), writes between the failures.
pub fn schedule(seed: u64, steps: usize) -> Vec<Step> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (mut target, mut source, mut session) = ("up", "up", true);
    let mut out = Vec::new();
    while out.len() < steps {
        let shape = match rng.below(4) {
            0 => Shape::Random4k(1 + rng.below(64) as u32),
            1 => Shape::Random64k(1 + rng.below(40) as u32),
            2 => Shape::Sequential,
            _ => Shape::Dependent,
        };
        let candidates: Vec<Step> = [
            Some(Step::Write {
                shape,
                late: rng.below(3) == 0,
            }),
            Some(Step::Write { shape, late: false }),
            (target == "up").then_some(Step::KillTarget),
            (target == "up").then_some(Step::HangTarget),
            (target == "down").then_some(Step::RestartTarget),
            (target == "hung").then_some(Step::ContinueTarget),
            (source == "up" && rng.below(3) == 0).then_some(Step::KillSource),
            (source == "down").then_some(Step::RestartSource),
            session.then_some(Step::KillSession),
            (!session).then_some(Step::StartSession),
            session.then_some(Step::Suspend),
            session.then_some(Step::Resume),
        ]
        .into_iter()
        .flatten()
        .collect();
        let step = candidates[rng.below(candidates.len() as u64) as usize];
        match step {
            Step::KillTarget => target = "down",
            Step::HangTarget => target = "hung",
            Step::RestartTarget | Step::ContinueTarget => target = "up",
            Step::KillSource => source = "down",
            Step::RestartSource => source = "up",
            Step::KillSession => session = false,
            Step::StartSession => session = true,
            _ => {}
        }
        out.push(step);
    }
    out
}

/// What broke, after which step.
#[derive(Debug)]
pub struct Violation {
    pub step: usize,
    pub what: String,
}

/// The storage host of one schedule, and what the schedule did to it.
struct World {
    host: Host,
    run: Option<Child>,
    runs: u32,
    target: &'static str,
    source_up: bool,
    /// Exports opened during the schedule: (volume, export name).
    late: Vec<(String, String)>,
    rounds: u64,
    /// The last dependent write's tag (1, 2, …).
    dependent: u8,
    /// The longest write so far.
    slowest: Duration,
    /// A write made while the target hung and no session ran: it waits until one
    /// cuts the target or the target answers (docs/runtime.md, "When a run is
    /// killed"), and the application writes nothing more meanwhile.
    stalled: Option<Child>,
}

impl World {
    fn new() -> World {
        // mirror-freeze-switch's two pairs, each source with its application's export.
        let (lab, _) = support::lab(
            &[
                ("siteA", &[("db", 16), ("journal", 16)]),
                ("siteB", &[("db-r", 16), ("journal-r", 16)]),
            ],
            &[
                &[("siteA", "db"), ("siteB", "db-r")],
                &[("siteA", "journal"), ("siteB", "journal-r")],
            ],
            csc_runtime::vocab::BaseCopy::Continuous(
                csc_runtime::vocab::ContinuousMode::Synchronous,
            ),
        );
        // The dependent writes' tags start at 0 (before the first copy).
        for (volume, _) in PAIRS {
            lab.write("siteA", volume, 0, &[DEPENDENT_AT])
                .expect("tag 0");
        }
        let host = Host::on(lab, "");
        let mut world = World {
            host,
            run: None,
            runs: 0,
            target: "up",
            source_up: true,
            late: Vec::new(),
            rounds: 0,
            dependent: 0,
            slowest: Duration::ZERO,
            stalled: None,
        };
        world.start_session();
        world
    }

    fn start_session(&mut self) {
        self.runs += 1;
        self.run = Some(self.host.run_until_up("state", "the session"));
    }

    /// `status --json`, or null while there is no journal yet.
    fn status(&self) -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cssc-solutions"))
            .args([self.host.solution, "status", "--json", "--state-dir"])
            .arg(self.host.lab.dir.join("state"))
            .output()
            .expect("status --json");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// The sequence's state as the running session's journal says it (`None`: no
    /// session runs, so it claims nothing).
    fn claimed(&self) -> Option<String> {
        let status = self.status();
        if status["running"] != true {
            return None;
        }
        status["states"]["1"].as_str().map(str::to_string)
    }

    /// Waits until the session has seen what the step did: its state the same over
    /// half a second, after at least the hung-target detection and an audit.
    fn settle(&self) {
        std::thread::sleep(Duration::from_millis(1500));
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = self.claimed();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.claimed();
            if now == last {
                return;
            }
            last = now;
        }
    }

    fn operator(&self, verb: &str) -> String {
        let (code, out, err) =
            self.host
                .operator_within(verb, 1, "state", Duration::from_secs(120));
        format!("{verb}: exit {code:?} {out}{err}")
    }

    /// One step; `Err` when the application saw what it must not.
    fn apply(&mut self, step: Step) -> Result<(), String> {
        let lab = &mut self.host.lab;
        match step {
            Step::Write { shape, late } => return self.write(shape, late),
            Step::KillTarget if self.target != "down" => {
                if self.target == "hung" {
                    let _ = lab.signal("siteB", "CONT");
                }
                lab.kill("siteB");
                self.target = "down";
            }
            Step::RestartTarget if self.target == "down" => {
                lab.restart("siteB").expect("restart siteB");
                self.target = "up";
            }
            Step::HangTarget if self.target == "up" => {
                lab.signal("siteB", "STOP").expect("SIGSTOP");
                self.target = "hung";
            }
            Step::ContinueTarget if self.target == "hung" => {
                lab.signal("siteB", "CONT").expect("SIGCONT");
                self.target = "up";
            }
            Step::KillSource if self.source_up => {
                lab.kill("siteA");
                self.source_up = false;
                self.late.clear();
            }
            Step::RestartSource if !self.source_up => {
                lab.restart("siteA").expect("restart siteA");
                self.source_up = true;
            }
            Step::KillSession => {
                if let Some(mut run) = self.run.take() {
                    let _ = run.kill();
                    let _ = run.wait();
                }
            }
            Step::StartSession if self.run.is_none() => self.start_session(),
            Step::Suspend if self.run.is_some() => {
                let said = self.operator("suspend");
                println!("  {}", said.trim());
            }
            Step::Resume if self.run.is_some() => {
                let said = self.operator("resume");
                println!("  {}", said.trim());
            }
            _ => {} // Not possible now (a shrunk schedule): nothing to do.
        }
        Ok(())
    }

    fn write(&mut self, shape: Shape, late: bool) -> Result<(), String> {
        if !self.source_up || self.stalled.is_some() {
            return Ok(());
        }
        if self.run.is_none() && self.target == "hung" {
            // Nothing cuts the hung target: the write may wait for ever, and so would
            // a new export (it drains the volume). Start it and go on.
            self.rounds += 1;
            let uri = self.host.lab.nbd_uri("siteA", "app-db");
            let write = format!(
                "write -P {} {} 65536",
                self.rounds % 200 + 30,
                (self.rounds % 200) * 65536
            );
            let child = std::process::Command::new("qemu-io")
                .args(["-f", "raw", &uri, "-c", &write])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run qemu-io: {e}"))?;
            self.stalled = Some(child);
            return Ok(());
        }
        self.rounds += 1;
        let pattern = (self.rounds % 200) as u8 + 30;
        // An administrator who cannot reach the source's monitor for 10 s has a daemon
        // stuck: that is a finding, not a harness failure.
        let export = |world: &mut World, volume: &str| -> Result<String, String> {
            if !late {
                return Ok(format!("app-{volume}"));
            }
            let name = format!("late{}-{volume}", world.rounds);
            try_qmp(&world.host.lab, "siteA", Duration::from_secs(10))?
                .execute(
                    "block-export-add",
                    json!({ "type": "nbd", "id": name, "node-name": volume, "name": name, "writable": true }),
                )
                .map_err(|e| format!("opening an export of {volume} failed: {e}"))?;
            world.late.push((volume.to_string(), name.clone()));
            Ok(name)
        };
        let seed = self.rounds;
        let writes: Vec<(&str, Vec<u64>, u64, u8)> = match shape {
            Shape::Random4k(n) => PAIRS
                .iter()
                .map(|(v, _)| {
                    let chunks = random_chunks(seed, n as usize, DEPENDENT_AT);
                    let blocks = chunks.iter().map(|c| c + (seed % 16) * 4096).collect();
                    (*v, blocks, 4096, pattern)
                })
                .collect(),
            Shape::Random64k(n) => PAIRS
                .iter()
                .map(|(v, _)| {
                    (
                        *v,
                        random_chunks(seed, n as usize, DEPENDENT_AT),
                        65536,
                        pattern,
                    )
                })
                .collect(),
            Shape::Sequential => {
                let start = (seed % 14) * MIB;
                vec![("db", vec![start], MIB, pattern)]
            }
            Shape::Dependent => {
                self.dependent += 1;
                let tag = self.dependent;
                vec![
                    ("db", vec![DEPENDENT_AT], 4096, tag),
                    ("journal", vec![DEPENDENT_AT], 4096, tag),
                ]
            }
        };
        for (volume, offsets, size, pattern) in writes {
            let name = export(self, volume)?;
            let started = Instant::now();
            let written = self
                .host
                .lab
                .write_to("siteA", &name, pattern, &offsets, size);
            let took = started.elapsed();
            self.slowest = self.slowest.max(took);
            written.map_err(|e| format!("a write to the live source {volume} failed: {e}"))?;
            if took > LONGEST_WRITE * offsets.len().min(2) as u32 {
                return Err(format!(
                    "{} writes to {volume} took {took:?}: the application was held longer than the holds allow",
                    offsets.len()
                ));
            }
        }
        Ok(())
    }

    /// A stalled write must end once something frees it: a session runs (it cuts the
    /// hung target), the target answers or is gone, or the source is gone (then it
    /// fails, as it may).
    fn free_stalled(&mut self) -> Result<(), String> {
        let freed = self.run.is_some() || self.target != "hung" || !self.source_up;
        let Some(child) = self.stalled.as_mut().filter(|_| freed) else {
            return Ok(());
        };
        let deadline = Instant::now() + STALLED_WRITE_FREED;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => break None,
            }
        };
        let mut child = self.stalled.take().expect("stalled");
        match status {
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "a write made while the target hung and no session ran still waits {STALLED_WRITE_FREED:?} after it was freed"
                ))
            }
            Some(status) if !status.success() && self.source_up => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                Err(format!(
                    "a stalled write to the live source failed: {}",
                    err.trim()
                ))
            }
            Some(_) => Ok(()),
        }
    }

    /// What must hold now, whatever the schedule did.
    fn check(&self) -> Result<(), String> {
        let Some(state) = self.claimed() else {
            return Ok(());
        };
        match state.as_str() {
            "Duplex" => {
                for (source, target) in PAIRS {
                    if !same(&self.host.lab, ("siteA", source), ("siteB", target)) {
                        return Err(format!(
                            "the session says Duplex, and {target} differs from {source}"
                        ));
                    }
                }
            }
            // Frozen: the images are read as files, whatever their daemon's state.
            "Suspended" | "Failed" => {
                let tag = |volume: &str| {
                    support::read_at(self.host.lab.image("siteB", volume), DEPENDENT_AT, 1)[0]
                };
                let (db, journal) = (tag("db-r"), tag("journal-r"));
                if journal > db {
                    return Err(format!(
                        "the frozen targets are no prefix: journal-r has dependent write {journal}, db-r only {db}"
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The logs of the session's runs and commands (in the lab's directory).
    fn print_logs(&self) {
        let Ok(dir) = std::fs::read_dir(&self.host.lab.dir) else {
            return;
        };
        let mut logs: Vec<_> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            println!("--- {}\n{text}", log.display());
        }
    }

    /// Everything back, the session running and resumed: it must converge, then stop
    /// cleanly leaving nothing behind.
    fn heal(&mut self) -> Result<(), String> {
        if self.target == "hung" {
            let _ = self.host.lab.signal("siteB", "CONT");
        }
        if self.target == "down" {
            self.host.lab.restart("siteB").expect("restart siteB");
        }
        self.target = "up";
        if !self.source_up {
            self.host.lab.restart("siteA").expect("restart siteA");
            self.source_up = true;
        }
        if self.run.is_none() {
            self.start_session();
        }
        self.free_stalled()?;
        self.settle();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut said = Vec::new();
        loop {
            let state = self.claimed();
            if state.as_deref() == Some("Duplex") {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not back in Duplex 90 s after everything came back: {state:?}; {said:?}"
                ));
            }
            if matches!(state.as_deref(), Some("Suspended" | "Failed")) {
                let answer = self.operator("resume");
                if !said.contains(&answer) {
                    said.push(answer);
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for (source, target) in PAIRS {
            if !same(&self.host.lab, ("siteA", source), ("siteB", target)) {
                return Err(format!(
                    "back in Duplex, and {target} differs from {source}"
                ));
            }
        }
        let mut run = self.run.take().expect("running");
        let code = support::host::terminate(&mut run, "the session");
        if code != 0 {
            return Err(format!("a clean stop exited {code}"));
        }
        let left: Vec<String> = ["siteA", "siteB"]
            .iter()
            .flat_map(|s| support::leftovers(&self.host.lab, s))
            .collect();
        if !left.is_empty() {
            return Err(format!("a clean stop left {left:?}"));
        }
        Ok(())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut write) = self.stalled.take() {
            let _ = write.kill();
            let _ = write.wait();
        }
        if let Some(mut run) = self.run.take() {
            let _ = run.kill();
            let _ = run.wait();
        }
        let _ = self.host.lab.signal("siteB", "CONT");
    }
}

/// Runs a schedule on a new host; the first violation, if any (the session's logs
/// are printed with it).
pub fn replay(steps: &[Step]) -> Result<Outcome, Violation> {
    // One schedule at a time: its settle times and hold bounds assume the machine is
    // not running another (seed 7 broke once with two side by side).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut world = World::new();
    let violated = |world: &World, step: usize, what: String| {
        world.print_logs();
        Violation { step, what }
    };
    for (i, step) in steps.iter().enumerate() {
        println!("  step {i}: {step:?}");
        if let Err(what) = world.apply(*step).and_then(|_| world.free_stalled()) {
            return Err(violated(&world, i, what));
        }
        world.settle();
        if let Err(what) = world.check() {
            return Err(violated(&world, i, what));
        }
    }
    if let Err(what) = world.heal() {
        return Err(violated(&world, steps.len(), what));
    }
    Ok(Outcome {
        slowest: world.slowest,
        runs: world.runs,
    })
}

/// What a schedule that held every invariant measured.
pub struct Outcome {
    pub slowest: Duration,
    pub runs: u32,
}

/// The shortest schedule (one step removed at a time, while it still fails) that
/// still breaks an invariant.
fn shrink(mut steps: Vec<Step>) -> (Vec<Step>, Violation) {
    let mut violation = replay(&steps).err().expect("it failed");
    steps.truncate(violation.step + 1);
    let mut i = steps.len();
    while i > 0 {
        i -= 1;
        let mut shorter = steps.clone();
        shorter.remove(i);
        println!("shrinking: without step {i} ({} steps)", shorter.len());
        if let Err(v) = replay(&shorter) {
            shorter.truncate(v.step + 1);
            steps = shorter;
            violation = v;
            i = i.min(steps.len());
        }
    }
    (steps, violation)
}

/// Runs the seeds of `CSSC_EXPLORE` (`FROM..TO`, else `default`), `CSSC_EXPLORE_STEPS`
/// steps each; panics with the seed and the shrunk schedule of the first violation,
/// or, with `CSSC_EXPLORE_ALL` set (the benchmark), runs every seed and panics at the
/// end with each violating seed (shrink one with `CSSC_EXPLORE=SEED..SEED+1`).
fn explore(default: std::ops::Range<u64>, default_steps: usize) {
    let seeds = std::env::var("CSSC_EXPLORE")
        .ok()
        .and_then(|r| {
            let (a, b) = r.split_once("..")?;
            Some(a.parse().ok()?..b.parse().ok()?)
        })
        .unwrap_or(default);
    let steps = std::env::var("CSSC_EXPLORE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_steps);
    let all = std::env::var_os("CSSC_EXPLORE_ALL").is_some();
    let started = Instant::now();
    let (mut held, mut slowest, mut runs) = (0, Duration::ZERO, 0);
    let mut violations = Vec::new();
    for seed in seeds.clone() {
        let schedule = schedule(seed, steps);
        println!("seed {seed}: {schedule:?}");
        match replay(&schedule) {
            Ok(done) => {
                held += 1;
                slowest = slowest.max(done.slowest);
                runs += done.runs;
            }
            Err(v) if all => {
                println!("seed {seed}: step {}: {}", v.step, v.what);
                violations.push((seed, v));
            }
            Err(v) => {
                println!("seed {seed}: step {}: {}", v.step, v.what);
                let (shortest, v) = shrink(schedule);
                panic!(
                    "seed {seed} breaks an invariant at step {}: {}\nshortest schedule: replay(&{shortest:?})",
                    v.step, v.what
                );
            }
        }
    }
    println!(
        "explorer: {} schedules of {steps} steps (seeds {seeds:?}): {held} held every invariant, {} broke one; {runs} session runs; slowest write batch {slowest:?}; {:?}",
        seeds.end - seeds.start,
        violations.len(),
        started.elapsed()
    );
    assert!(violations.is_empty(), "violations: {violations:?}");
}

#[test]
fn fixed_seeds_hold_every_invariant() {
    explore(1..7, 8);
}

// Schedules the explorer found breaking an invariant, shrunk, kept as regressions.

#[test]
fn seed_2_a_late_writer_in_duplex_then_the_freeze_it_causes() {
    // The freeze that the writer's error caused recorded changes from its instant on,
    // over the bypass's verdict (copy in full): the resume missed the writer's writes.
    replay(&[Step::Write {
        shape: Shape::Random64k(29),
        late: true,
    }])
    .expect("every invariant holds");
}

#[test]
fn seed_1_the_target_and_the_source_lost_then_back() {
    // The session that had lost every storage got them back, yet its clean stop
    // exited 4 (every storage lost), counting losses once and never the returns.
    replay(&[Step::KillTarget, Step::KillSource]).expect("every invariant holds");
}

#[test]
fn seed_1_the_target_restarted_while_no_session_ran() {
    // The next run took the mirrors over as Duplex although their target had lost
    // its export, and a clean stop left the jobs that could never end.
    replay(&[Step::KillSession, Step::KillTarget]).expect("every invariant holds");
}

#[test]
fn seed_2_a_late_writer_while_the_target_hangs_and_no_session_runs() {
    replay(&[
        Step::KillSession,
        Step::HangTarget,
        Step::Write {
            shape: Shape::Random64k(29),
            late: true,
        },
        Step::StartSession,
    ])
    .expect("every invariant holds");
}

#[test]
fn seed_7_operator_commands_while_the_target_hangs() {
    // Broke once, with two explorers running side by side (resume refused for 90 s
    // after the target continued: "storage siteB: not connected"); not seen again
    // alone or under CPU load. Kept for the day it does.
    replay(&[
        Step::HangTarget,
        Step::Suspend,
        Step::Resume,
        Step::Write {
            shape: Shape::Random4k(5),
            late: false,
        },
        Step::Suspend,
        Step::Write {
            shape: Shape::Sequential,
            late: false,
        },
        Step::Resume,
        Step::ContinueTarget,
    ])
    .expect("every invariant holds");
}

#[test]
fn seed_10_the_target_restarted_under_writes_while_no_session_ran() {
    // The next run found the mirrors failed and its freeze cut them although their
    // filters, over clients that had lost their server, could not be swapped: the
    // application was held for ever, and resume took minutes and never got back.
    replay(&[
        Step::KillSession,
        Step::KillTarget,
        Step::Write {
            shape: Shape::Random64k(25),
            late: false,
        },
        Step::RestartTarget,
        Step::StartSession,
    ])
    .expect("every invariant holds");
}

#[test]
fn seed_22_a_write_after_the_target_hangs() {
    // Found by the bench (seed 22): the run's progress line asked the hung daemon for
    // its jobs, waited 15 s, and asked again at once: a command of ours always waiting
    // kept the heartbeat from saying the daemon was hung, and the application's write
    // waited for ever. It needs the progress line to meet the hang, so this replay may
    // pass without the fix too.
    replay(&[
        Step::Suspend,
        Step::Resume,
        Step::Write {
            shape: Shape::Random4k(64),
            late: false,
        },
        Step::HangTarget,
        Step::Write {
            shape: Shape::Dependent,
            late: false,
        },
    ])
    .expect("every invariant holds");
}

#[test]
fn seed_18_the_source_lost_after_its_target_failed() {
    // Found by the bench: a mirror failed (its target hung), then its source's daemon
    // died; its end was reported as a stop, the sequence was Stopped, and `resume`
    // (for a sequence Suspended or Failed) could never bring it back.
    replay(&[
        Step::HangTarget,
        Step::KillSession,
        Step::StartSession,
        Step::ContinueTarget,
        Step::KillSource,
    ])
    .expect("every invariant holds");
}

#[test]
fn seed_25_a_late_writer_then_the_target_hangs_then_another_late_writer() {
    replay(&[
        Step::Write {
            shape: Shape::Random4k(26),
            late: true,
        },
        Step::HangTarget,
        Step::Write {
            shape: Shape::Sequential,
            late: true,
        },
    ])
    .expect("every invariant holds");
}

#[test]
fn seed_29_a_write_while_the_target_hangs_and_no_session_runs_is_freed_by_the_next_run() {
    // Found by the bench: the harness waited with the write for ever. The write is the
    // design's limit while no session runs (docs/runtime.md); the next run must free
    // it within STALLED_WRITE_FREED.
    replay(&[
        Step::KillSession,
        Step::HangTarget,
        Step::Write {
            shape: Shape::Sequential,
            late: false,
        },
        Step::StartSession,
    ])
    .expect("every invariant holds");
}

#[test]
fn seed_43_runs_started_while_the_target_hangs() {
    // Found by the bench: a run killed while the target hung left its connection in
    // the stopped daemon's monitor queue; the next run's connect(2) to that full queue
    // blocked for ever, so it never started (and `status` waited on it for minutes).
    replay(&[
        Step::Suspend,
        Step::KillSession,
        Step::HangTarget,
        Step::StartSession,
        Step::KillSession,
        Step::StartSession,
    ])
    .expect("every invariant holds");
}

#[test]
fn seed_56_a_take_over_after_a_resume_that_failed() {
    // Found by the bench: the take-over reported its adopted (failed) mirrors as
    // Started, which completed an onStart the group's run after the failed `resume`
    // never had: Suspended -> Copying, and the errors that followed were that run's
    // onError already, so it stayed Copying for ever.
    replay(&[
        Step::KillTarget,
        Step::Resume,
        Step::Write {
            shape: Shape::Sequential,
            late: true,
        },
        Step::KillSession,
        Step::RestartTarget,
        Step::KillTarget,
        Step::StartSession,
    ])
    .expect("every invariant holds");
}

#[test]
fn seed_128_a_resume_with_one_pair_still_in_duplex() {
    // Found by the bench: after the target hung and two take-overs, one pair's mirror
    // had run on in duplex while the other had failed; `resume` restarted the failed
    // one and said nothing of the running one in the group's new run, so onDuplex
    // never came and the resume waited for ever.
    replay(&[
        Step::Resume,
        Step::Write {
            shape: Shape::Dependent,
            late: false,
        },
        Step::HangTarget,
        Step::KillSession,
        Step::Write {
            shape: Shape::Sequential,
            late: false,
        },
        Step::StartSession,
        Step::KillSession,
        Step::Write {
            shape: Shape::Dependent,
            late: false,
        },
    ])
    .expect("every invariant holds");
}
