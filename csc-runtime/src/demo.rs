//! `demo`: the solution, end to end, on real storage made for the occasion. One
//! qemu-storage-daemon per site in a scratch directory, volumes with data, the
//! session running, an application writing, then a site failure: the first site's
//! daemon is killed. The solution reacts by itself; afterwards every copy that
//! should hold the data is compared byte for byte with its source.

use crate::executor::{self, Options, Status};
use crate::lab::{Lab, LabError};
use crate::machine::{SequenceState, Solution};
use crate::plan::Plan;
use crate::vocab::{BaseCopy, ContinuousMode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct DemoOptions {
    pub volume_mib: u64,
    pub keep: bool,
    /// The terminal's progress bars (`None`: progress as log lines).
    pub bars: Option<indicatif::MultiProgress>,
}

/// What the demo says, on stdout (the session logs on stderr).
fn say(text: &str) {
    println!("demo: {text}");
}

fn wait_for(status: &Mutex<Status>, timeout: Duration, done: impl Fn(&Status) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done(&status.lock().expect("status")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Why the demo did not show every copy matching its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    #[error("the demo needs copy sets in the document")]
    NoCopySets,
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("the executor panicked")]
    Panicked,
    #[error("the session did not start: {0}")]
    NotStarted(#[source] executor::SetupError),
    #[error("sequence 1 did not reach duplex or complete in 120 s")]
    NotSettled,
    #[error("the session did not react to the site failure within 10 s")]
    NoReaction,
    #[error("no copy was in a state to compare")]
    NothingToCompare,
    #[error("{0} copies differ from their sources")]
    Differ(usize),
}

/// Runs the demo; `Ok` with the verdicts when every copy matched.
pub fn run<S: Solution>(options: DemoOptions) -> Result<Vec<String>, DemoError> {
    let mut plan = Plan::from_session(&S::SESSION);
    if plan.copysets.is_empty() {
        return Err(DemoError::NoCopySets);
    }
    let bytes = options.volume_mib << 20;
    let mut lab = Lab::new(&std::env::temp_dir(), options.keep)?;
    say(&format!("scratch directory {}", lab.dir.display()));
    let sites: Vec<String> = plan.storages.keys().cloned().collect();
    for site in &sites {
        let volumes: Vec<(String, u64)> = plan
            .copysets
            .iter()
            .flat_map(|c| {
                c.volumes
                    .iter()
                    .filter(|v| &v.storage == site)
                    .map(|v| (v.name.clone(), bytes))
            })
            .collect();
        if volumes.is_empty() {
            continue;
        }
        let sources: Vec<String> = plan
            .copysets
            .iter()
            .filter(|c| &c.volumes[0].storage == site)
            .map(|c| c.volumes[0].name.clone())
            .collect();
        lab.add_site(site, &volumes, &sources)?;
        say(&format!(
            "site {site}: qemu-storage-daemon with {} volumes of {} MiB",
            volumes.len(),
            options.volume_mib
        ));
    }
    lab.wire(&mut plan);

    let stop = Arc::new(AtomicBool::new(false));
    let status = Arc::new(Mutex::new(Status::default()));
    let executor = {
        let (plan, stop, status) = (plan.clone(), Arc::clone(&stop), Arc::clone(&status));
        let opts = Options {
            journal: None,
            bars: options.bars.clone(),
            progress_every: Some(Duration::from_secs(2)),
            control: None,
            metrics: None,
        };
        std::thread::spawn(move || {
            let _session = crate::log::session_span(&plan.name).entered();
            executor::run::<S>(plan, opts, stop, status)
        })
    };
    let outcome = drive(&mut lab, &plan, bytes, &status, &executor);
    stop.store(true, Ordering::Relaxed);
    let ended = executor.join().map_err(|_| DemoError::Panicked)?;
    ended.map_err(DemoError::NotStarted)?;
    outcome
}

fn drive(
    lab: &mut Lab,
    plan: &Plan,
    volume_bytes: u64,
    status: &Mutex<Status>,
    executor: &std::thread::JoinHandle<Result<executor::Ended, executor::SetupError>>,
) -> Result<Vec<String>, DemoError> {
    let first = &plan.sequences[0];
    let settled = |s: &Status| {
        matches!(
            s.states.get(&1),
            Some(SequenceState::Duplex | SequenceState::Complete)
        )
    };
    if !wait_for(status, Duration::from_secs(120), |s| {
        settled(s) || executor.is_finished()
    }) || executor.is_finished()
    {
        return Err(DemoError::NotSettled);
    }
    say(&format!(
        "sequence 1 ({} {}) is {}",
        first.copy.copy_type(),
        first.copy.mode_name(),
        status.lock().expect("status").states[&1]
    ));

    // An application writes while the chain runs: 32 writes of 64 KiB per source.
    for (i, set) in plan.copysets.iter().enumerate() {
        let source = &set.volumes[0];
        // One write per MiB, wrapping within the volume.
        let size = volume_bytes.max(1 << 20);
        let offsets: Vec<u64> = (0..32).map(|k| (k << 20) % size).collect();
        lab.write(&source.storage, &source.name, 0xa0 + i as u8, &offsets)?;
        say(&format!(
            "application wrote 32 x 64 KiB to {source} (all acknowledged)"
        ));
    }

    let failed_site = plan.copysets[0].volumes[0].storage.clone();
    let events_before = status.lock().expect("status").events.len();
    say(&format!(
        "site failure: killing the qemu-storage-daemon of {failed_site}"
    ));
    let killed_at = Instant::now();
    lab.kill(&failed_site);
    if !wait_for(status, Duration::from_secs(10), |s| {
        s.events.len() > events_before
    }) {
        return Err(DemoError::NoReaction);
    }
    say(&format!(
        "the session reacted after {} ms",
        killed_at.elapsed().as_millis()
    ));
    // Settled: no new event for 3 s (at most 120 s).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(3));
        let now = status.lock().expect("status").events.len();
        if now == seen {
            break;
        }
        seen = now;
    }
    let snapshot = status.lock().expect("status").clone();
    say("what happened, in order:");
    for (seq, event) in &snapshot.events {
        println!("        sequence {seq}: {event}");
    }
    for (seq, verb, ok) in &snapshot.commands {
        println!(
            "        command: {verb} sequence {seq}{}",
            if *ok { "" } else { " (failed)" }
        );
    }

    let mut verdicts = Vec::new();
    let mut mismatches = Vec::new();
    for seq in &plan.sequences {
        let state = snapshot
            .states
            .get(&seq.number)
            .copied()
            .unwrap_or_default();
        let complete = matches!(state, SequenceState::Duplex | SequenceState::Complete);
        let frozen_mirror = state == SequenceState::Failed
            && seq.copy == BaseCopy::Continuous(ContinuousMode::Synchronous)
            && plan
                .pairs(seq.number)
                .iter()
                .all(|p| p.source.storage == failed_site);
        if !(complete || frozen_mirror) {
            continue;
        }
        for pair in plan.pairs(seq.number) {
            let same = lab.same(
                lab.image(&pair.source.storage, &pair.source.name),
                lab.image(&pair.target.storage, &pair.target.name),
            )?;
            let why = if frozen_mirror {
                "every acknowledged write reached the target"
            } else {
                state.as_str()
            };
            let line = format!(
                "sequence {} {}: {} {} {} ({why})",
                seq.number,
                plan.copysets[pair.copyset].name,
                pair.source,
                if same { "==" } else { "!=" },
                pair.target
            );
            if !same {
                mismatches.push(line.clone());
            }
            say(&line);
            verdicts.push(line);
        }
    }
    if verdicts.is_empty() {
        return Err(DemoError::NothingToCompare);
    }
    if !mismatches.is_empty() {
        return Err(DemoError::Differ(mismatches.len()));
    }
    say(&format!(
        "every copy ({}) matches its source byte for byte",
        verdicts.len()
    ));
    Ok(verdicts)
}
