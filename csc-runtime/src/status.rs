//! `BIN status`: what the session's journal says, as a table or JSON: whether a run
//! holds the state directory now, how the last run ended, each sequence's state, the
//! last group events, and the commands and actions it started and did not see end.
//! It never takes the run's lock; while a run holds the directory it also asks that
//! run (its control socket) what its storage says now: the run owns the storages'
//! monitors, which serve one client at a time.

use crate::journal::{self, killed, Record, Torn};
use crate::machine::Solution;
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
    pub last_run: Option<(u32, String)>,
    /// The last run ended without stopping (killed, crashed, host down).
    pub ended_without_stopping: bool,
    /// Each sequence's state in the last run (and the killed runs it took over from).
    pub states: BTreeMap<u32, String>,
    /// The last group events: (time, sequence, event, from, to).
    pub events: Vec<(String, u32, String, String, String)>,
    /// Commands the last run issued that did not return: (sequence, command).
    pub unfinished_commands: Vec<(u32, String)>,
    /// Actions the last run started that did not end: (id, action).
    pub unfinished_actions: Vec<(String, String)>,
    /// Bytes of a torn record at the journal's end.
    pub torn_bytes: u64,
    /// What the running session says of its storage now (`None`: no run answered).
    pub live: Option<Vec<String>>,
}

/// What the records of a journal say (`sequences`: the document's, all idle at first).
pub(crate) fn summarize(
    records: &[Record],
    torn: Option<Torn>,
    running: bool,
    sequences: &[u32],
) -> Summary {
    let this_run = journal::going_on(records);
    let mut states: BTreeMap<u32, String> = sequences.iter().map(|s| (*s, "Idle".into())).collect();
    let mut commands: Vec<(u32, String)> = Vec::new();
    let mut actions: Vec<(String, String)> = Vec::new();
    for record in this_run {
        match record {
            Record::Transition { sequence, to, .. } => {
                states.insert(*sequence, to.clone());
            }
            // A run taking over issues again what a killed run left unfinished: one
            // command, finished by the one `Done` (as the core restores it).
            Record::Issue { sequence, command } => {
                let issued = (*sequence, command.clone());
                if !commands.contains(&issued) {
                    commands.push(issued);
                }
            }
            Record::Done {
                sequence, command, ..
            } => {
                if let Some(i) = commands
                    .iter()
                    .position(|c| c.0 == *sequence && c.1 == *command)
                {
                    commands.remove(i);
                }
            }
            Record::ActionStart { id, action, .. } => actions.push((id.clone(), action.clone())),
            Record::ActionEnd { id, .. } => actions.retain(|a| a.0 != *id),
            Record::Run { .. } | Record::Stopped { .. } => {}
        }
    }
    let mut events: Vec<(String, u32, String, String, String)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Transition {
                sequence,
                event,
                from,
                to,
                time,
            } => Some((
                time.clone(),
                *sequence,
                event.clone(),
                from.clone(),
                to.clone(),
            )),
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
            Record::Run { pid, time, .. } => Some((*pid, time.clone())),
            _ => None,
        }),
        ended_without_stopping: !running && killed(records),
        states,
        events,
        unfinished_commands: commands,
        unfinished_actions: actions,
        torn_bytes: torn.map_or(0, |t| t.dropped),
        live: None,
    }
}

/// `status`: exit 0, or 2 when the state directory has no journal.
pub(crate) fn print<S: Solution>(dir: &Path, json: bool) -> ExitCode {
    let name = S::SESSION.name;
    let path = journal::path_in(dir);
    let (records, torn) = match journal::read(&path) {
        Ok(read) => read,
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
        (Some((pid, time)), true, _) => format!("running (pid {pid}, since {time})"),
        (Some((pid, time)), false, true) => {
            format!("not running: the run of pid {pid} (started {time}) ended without stopping (killed?)")
        }
        (Some((pid, _)), false, false) => format!("not running: the run of pid {pid} stopped"),
    };
    let _ = writeln!(
        out,
        "session {name}: {run}; {} run(s) in the journal",
        s.runs
    );
    let _ = writeln!(out, "\nSEQUENCE  STATE");
    for (sequence, state) in &s.states {
        let _ = writeln!(out, "{sequence:<9} {state}");
    }
    if !s.events.is_empty() {
        let _ = writeln!(out, "\nLAST EVENTS");
        for (time, sequence, event, from, to) in &s.events {
            let _ = writeln!(out, "{time}  sequence {sequence} {event}: {from} -> {to}");
        }
    }
    for (sequence, command) in &s.unfinished_commands {
        let _ = writeln!(
            out,
            "unfinished: {command} sequence {sequence} (issued, never returned)"
        );
    }
    for (id, action) in &s.unfinished_actions {
        let _ = writeln!(
            out,
            "unfinished: action {id} ({action}) started, not seen to end"
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
            event: "onError".into(),
            contact: None,
            program: Some("/x".into()),
            timeout_secs: 5,
        }
    }

    fn transition(sequence: u32, to: &str) -> Record {
        Record::Transition {
            sequence,
            event: "onDuplex".into(),
            from: "Copying".into(),
            to: to.into(),
            time: "t".into(),
        }
    }

    #[test]
    fn the_last_run_says_the_states_and_what_did_not_finish() {
        let records = vec![
            run(1),
            transition(1, "Duplex"),
            Record::Stopped { time: "t".into() },
            run(2),
            transition(1, "Failed"),
            Record::Issue {
                sequence: 1,
                command: "freeze".into(),
            },
            Record::Done {
                sequence: 1,
                command: "freeze".into(),
                ok: true,
                detail: String::new(),
            },
            Record::Issue {
                sequence: 2,
                command: "start".into(),
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
        assert_eq!(s.last_run, Some((2, "t2".into())));
        assert_eq!(s.states[&1], "Failed");
        assert_eq!(s.states[&2], "Idle");
        assert_eq!(s.unfinished_commands, [(2, "start".to_string())]);
        assert_eq!(
            s.unfinished_actions,
            [("2.2".to_string(), "run /x".to_string())]
        );
        assert_eq!(s.events.len(), 2);
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
