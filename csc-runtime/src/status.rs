//! `BIN status`: what the session's journal says, as a table or JSON: whether a run
//! holds the state directory now, how the last run ended, each sequence's state, the
//! last group events, and the commands and actions it started and did not see end.
//! It never takes the run's lock; while a run holds the directory it also asks that
//! run (its control socket) what its storage says now: the run owns the storages'
//! monitors, which serve one client at a time.

use crate::core::record::{going_on, killed, Record, StorageCommand};
use crate::journal::{self, JournalError, Torn};
use crate::machine::{SequenceState, Solution};
use crate::vocab::Event;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Summary {
    /// A run holds the state directory now.
    pub running: bool,
    pub runs: usize,
    /// The last run's process and start.
    pub last_run: Option<LastRun>,
    /// The last run ended without stopping (killed, crashed, host down).
    pub ended_without_stopping: bool,
    /// Each sequence's state in the last run (and the killed runs it took over from).
    pub states: BTreeMap<u32, SequenceState>,
    /// The last group events, oldest first.
    pub events: Vec<Transition>,
    /// Commands the last run issued that did not return.
    pub unfinished_commands: Vec<Unfinished>,
    /// Actions the last run started that did not end.
    pub unfinished_actions: Vec<UnfinishedAction>,
    /// Bytes of a torn record at the journal's end.
    pub torn_bytes: u64,
    /// What the running session says of its storage now (`None`: no run answered).
    pub live: Option<Vec<String>>,
    /// With --ha: who leads the managers, for how long yet, who waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managers: Option<crate::ha::Office>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct LastRun {
    pub pid: u32,
    /// When it started (RFC 3339).
    pub started: String,
}

/// A group event and the transition it caused.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Transition {
    pub time: String,
    pub sequence: u32,
    pub event: Event,
    pub from: SequenceState,
    pub to: SequenceState,
}

/// A command issued to a sequence's storage that did not return.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Unfinished {
    pub sequence: u32,
    pub command: StorageCommand,
}

/// An action (notify, run) started and not seen to end, under its journal id.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct UnfinishedAction {
    pub id: String,
    pub action: String,
}

/// What the records of a journal say (`sequences`: the document's, all idle at first).
pub(crate) fn summarize(
    records: &[Record],
    torn: Option<Torn>,
    running: bool,
    sequences: &[u32],
) -> Summary {
    let this_run = going_on(records);
    let mut states: BTreeMap<u32, SequenceState> = sequences
        .iter()
        .map(|s| (*s, SequenceState::Idle))
        .collect();
    let mut commands: Vec<Unfinished> = Vec::new();
    let mut actions: Vec<UnfinishedAction> = Vec::new();
    for record in this_run {
        match record {
            Record::Transition { sequence, to, .. } => {
                states.insert(*sequence, *to);
            }
            // A run taking over issues again what a killed run left unfinished: one
            // command, finished by the one `Done` (as the core restores it).
            Record::Issue { sequence, command } => {
                let issued = Unfinished {
                    sequence: *sequence,
                    command: *command,
                };
                if !commands.contains(&issued) {
                    commands.push(issued);
                }
            }
            Record::Done {
                sequence, command, ..
            } => {
                if let Some(i) = commands
                    .iter()
                    .position(|c| c.sequence == *sequence && c.command == *command)
                {
                    commands.remove(i);
                }
            }
            Record::ActionStart { id, action, .. } => actions.push(UnfinishedAction {
                id: id.clone(),
                action: action.clone(),
            }),
            Record::ActionEnd { id, .. } => actions.retain(|a| a.id != *id),
            Record::Run { .. } | Record::Stopped { .. } => {}
        }
    }
    let mut events: Vec<Transition> = records
        .iter()
        .filter_map(|r| match r {
            Record::Transition {
                sequence,
                event,
                from,
                to,
                time,
            } => Some(Transition {
                time: time.clone(),
                sequence: *sequence,
                event: *event,
                from: *from,
                to: *to,
            }),
            _ => None,
        })
        .collect();
    events.drain(..events.len().saturating_sub(10));
    Summary {
        running,
        runs: records
            .iter()
            .filter(|r| matches!(r, Record::Run { .. }))
            .count(),
        last_run: records.iter().rev().find_map(|r| match r {
            Record::Run { pid, time, .. } => Some(LastRun {
                pid: *pid,
                started: time.clone(),
            }),
            _ => None,
        }),
        ended_without_stopping: !running && killed(records),
        states,
        events,
        unfinished_commands: commands,
        unfinished_actions: actions,
        torn_bytes: torn.map_or(0, |t| t.dropped),
        live: None,
        managers: None,
    }
}

/// `status`: exit 0, 2 when the state directory has no journal, 3 when it holds a
/// record this runtime cannot read.
pub(crate) fn print<S: Solution>(dir: &Path, json: bool, ha: Option<&crate::ha::Ha>) -> ExitCode {
    let name = S::SESSION.name;
    let path = journal::path_in(dir);
    let (records, torn) = match journal::read(&path) {
        Ok(read) => read,
        Err(e @ JournalError::Unreadable { .. }) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(3);
        }
        Err(e) => {
            eprintln!(
                "{name}: no journal to read ({e}): has the session run with --state-dir {}?",
                dir.display()
            );
            return ExitCode::from(2);
        }
    };
    let sequences: Vec<u32> = S::SESSION.sequences.iter().map(|s| s.number).collect();
    let mut summary = summarize(&records, torn, journal::held(&path), &sequences);
    if summary.running {
        summary.live = crate::control::send(dir, crate::control::Ask::Status)
            .ok()
            .filter(|a| a.outcome == crate::control::Outcome::Done)
            .map(|a| a.message.lines().map(str::to_string).collect());
    }
    if let Some(ha) = ha {
        match crate::ha::office(ha) {
            Ok(office) => summary.managers = Some(office),
            Err(e) => {
                eprintln!("{name}: --ha: {e}");
                return ExitCode::from(3);
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("serialisable")
        );
    } else {
        print!("{}", table(name, &summary));
    }
    ExitCode::SUCCESS
}

fn table(name: &str, s: &Summary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let run = match (&s.last_run, s.running, s.ended_without_stopping) {
        (None, _, _) => "never ran".to_string(),
        (Some(LastRun { pid, started }), true, _) => {
            format!("running (pid {pid}, since {started})")
        }
        (Some(LastRun { pid, started }), false, true) => {
            format!("not running: the run of pid {pid} (started {started}) ended without stopping (killed?)")
        }
        (Some(LastRun { pid, .. }), false, false) => {
            format!("not running: the run of pid {pid} stopped")
        }
    };
    let _ = writeln!(
        out,
        "session {name}: {run}; {} run(s) in the journal",
        s.runs
    );
    if let Some(office) = &s.managers {
        let _ = writeln!(
            out,
            "managers: {} leads{}; standing by: {}",
            office.leader.as_deref().unwrap_or("nobody"),
            office
                .lease_left
                .map_or(String::new(), |t| format!(" (lease: {t} s left)")),
            if office.standbys.is_empty() {
                "none".to_string()
            } else {
                office.standbys.join(", ")
            }
        );
    }
    let _ = writeln!(out, "\nSEQUENCE  STATE");
    for (sequence, state) in &s.states {
        let _ = writeln!(out, "{sequence:<9} {state}");
    }
    if !s.events.is_empty() {
        let _ = writeln!(out, "\nLAST EVENTS");
        for e in &s.events {
            let _ = writeln!(
                out,
                "{}  sequence {} {}: {} -> {}",
                e.time, e.sequence, e.event, e.from, e.to
            );
        }
    }
    for c in &s.unfinished_commands {
        let _ = writeln!(
            out,
            "unfinished: {} sequence {} (issued, never returned)",
            c.command, c.sequence
        );
    }
    for a in &s.unfinished_actions {
        let _ = writeln!(
            out,
            "unfinished: action {} ({}) started, not seen to end",
            a.id, a.action
        );
    }
    if s.torn_bytes > 0 {
        let _ = writeln!(
            out,
            "the journal ends with a torn record of {} bytes (a crash mid-write)",
            s.torn_bytes
        );
    }
    match &s.live {
        Some(lines) => {
            let _ = writeln!(out, "now, as the running session sees its storage:");
            for line in lines {
                let _ = writeln!(out, "  {line}");
            }
        }
        None if s.running => {
            let _ = writeln!(out, "the running session did not answer for its storage");
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Command as Verb;

    fn run(pid: u32) -> Record {
        Record::Run {
            pid,
            time: format!("t{pid}"),
            solution: "h".into(),
        }
    }

    fn action(id: &str, what: &str) -> Record {
        Record::ActionStart {
            id: id.into(),
            action: what.into(),
            sequence: 1,
            event: Event::OnError,
            contact: None,
            program: Some("/x".into()),
            timeout_secs: 5,
        }
    }

    fn transition(sequence: u32, to: SequenceState) -> Record {
        Record::Transition {
            sequence,
            event: Event::OnDuplex,
            from: SequenceState::Copying,
            to,
            time: "t".into(),
        }
    }

    #[test]
    fn the_last_run_says_the_states_and_what_did_not_finish() {
        let records = vec![
            run(1),
            transition(1, SequenceState::Duplex),
            Record::Stopped { time: "t".into() },
            run(2),
            transition(1, SequenceState::Failed),
            Record::Issue {
                sequence: 1,
                command: StorageCommand::Copy(Verb::Freeze),
            },
            Record::Done {
                sequence: 1,
                command: StorageCommand::Copy(Verb::Freeze),
                ok: true,
                detail: String::new(),
            },
            Record::Issue {
                sequence: 2,
                command: StorageCommand::Copy(Verb::Start),
            },
            action("2.1", "notify oncall"),
            action("2.2", "run /x"),
            Record::ActionEnd {
                id: "2.1".into(),
                ok: true,
            },
        ];
        let s = summarize(&records, None, false, &[1, 2]);
        assert!(s.ended_without_stopping && killed(&records));
        assert_eq!(s.runs, 2);
        assert_eq!(
            s.last_run,
            Some(LastRun {
                pid: 2,
                started: "t2".into()
            })
        );
        assert_eq!(s.states[&1], SequenceState::Failed);
        assert_eq!(s.states[&2], SequenceState::Idle);
        assert_eq!(
            s.unfinished_commands,
            [Unfinished {
                sequence: 2,
                command: StorageCommand::Copy(Verb::Start)
            }]
        );
        assert_eq!(
            s.unfinished_actions,
            [UnfinishedAction {
                id: "2.2".into(),
                action: "run /x".into()
            }]
        );
        assert_eq!(s.events.len(), 2);
        // JSON names its fields (no positional arrays).
        let json = serde_json::to_value(&s).expect("JSON");
        assert_eq!(json["last_run"]["pid"], 2);
        assert_eq!(json["events"][1]["to"], "Failed");
        assert_eq!(json["unfinished_commands"][0]["command"], "start");
        assert_eq!(json["unfinished_actions"][0]["id"], "2.2");
        let stopped = &records[..3];
        assert!(!killed(stopped));
        assert!(!summarize(stopped, None, false, &[1]).ended_without_stopping);
        let text = table("t", &s);
        assert!(
            text.contains("ended without stopping") && text.contains("1         Failed"),
            "{text}"
        );
    }
}
