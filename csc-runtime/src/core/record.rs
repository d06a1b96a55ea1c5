//! The records of a run, as the core restores from them: what the executor journals
//! (a command issued and returned, a group event with the states around it, an action
//! started and ended) in the core's own types. The journal stores them; it depends on
//! this module, not the reverse.

use crate::machine::SequenceState;
use crate::vocab::{Command as Verb, Event, Keyword};
use serde::{Deserialize, Serialize};

/// A command the session issues to its storage: one of the document's verbs, or an
/// operator's `recover` or `reverse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum StorageCommand {
    Copy(Verb),
    /// Recover a frozen or failed sequence: its targets become production.
    Recover,
    /// Reverse a recovered sequence: copy back from the targets to the sources.
    Reverse,
}

impl StorageCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageCommand::Copy(verb) => verb.as_str(),
            StorageCommand::Recover => "recover",
            StorageCommand::Reverse => "reverse",
        }
    }
}

impl From<StorageCommand> for &'static str {
    fn from(command: StorageCommand) -> &'static str {
        command.as_str()
    }
}

/// A journal names a command this runtime does not have.
#[derive(Debug, thiserror::Error)]
#[error("no storage command `{0}` (this runtime issues start, stop, suspend, resume, freeze, thaw, recover and reverse)")]
pub struct UnknownCommand(String);

impl TryFrom<String> for StorageCommand {
    type Error = UnknownCommand;

    fn try_from(text: String) -> Result<StorageCommand, UnknownCommand> {
        // Canonical spelling only: the journal is written by the runtime, not typed.
        match text.as_str() {
            "recover" => Ok(StorageCommand::Recover),
            "reverse" => Ok(StorageCommand::Reverse),
            word => Verb::ALL
                .iter()
                .find(|v| v.as_str() == word)
                .map(|v| StorageCommand::Copy(*v))
                .ok_or(UnknownCommand(text)),
        }
    }
}

impl std::fmt::Display for StorageCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// A run began (its process, the solution's hash).
    Run {
        pid: u32,
        time: String,
        solution: String,
    },
    /// A command is about to be issued to the storage.
    Issue {
        sequence: u32,
        command: StorageCommand,
    },
    /// The command returned.
    Done {
        sequence: u32,
        command: StorageCommand,
        ok: bool,
        detail: String,
    },
    /// A group event went through the machine.
    Transition {
        sequence: u32,
        event: Event,
        from: SequenceState,
        to: SequenceState,
        time: String,
    },
    /// An action started; `id` names it to its receiver. What it is (a contact to
    /// notify, or a program with its timeout) and what it is about, so that a run
    /// taking over can run it again under the same id; `action` says it for people.
    ActionStart {
        id: String,
        action: String,
        sequence: u32,
        event: Event,
        contact: Option<String>,
        program: Option<String>,
        timeout_secs: u64,
    },
    ActionEnd {
        id: String,
        ok: bool,
    },
    /// The run ended on request, its copies ended and its additions removed.
    Stopped {
        time: String,
    },
}

/// Whether the last run in a journal ended without its `Stopped` record.
pub fn killed(records: &[Record]) -> bool {
    records
        .iter()
        .rev()
        .find(|r| matches!(r, Record::Run { .. } | Record::Stopped { .. }))
        .is_some_and(|r| matches!(r, Record::Run { .. }))
}

/// The records of the session going on: the last run and the killed runs before it,
/// each of which the next took over (everything after the last clean stop that
/// precedes the last run).
pub fn going_on(records: &[Record]) -> &[Record] {
    let last_run = records
        .iter()
        .rposition(|r| matches!(r, Record::Run { .. }))
        .unwrap_or(0);
    let since = records[..last_run]
        .iter()
        .rposition(|r| matches!(r, Record::Stopped { .. }))
        .map_or(0, |i| i + 1);
    &records[since..]
}

/// The hash of the solution the last run was compiled from (`Record::Run`).
pub fn last_solution(records: &[Record]) -> Option<&str> {
    records.iter().rev().find_map(|r| match r {
        Record::Run { solution, .. } => Some(solution.as_str()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_stored_in_the_spelling_logs_and_status_show() {
        fn json<T: Serialize>(value: &T) -> String {
            serde_json::to_string(value).expect("serialises")
        }
        for verb in Verb::ALL {
            let command = StorageCommand::Copy(*verb);
            assert_eq!(json(verb), format!("{:?}", verb.as_str()));
            assert_eq!(json(&command), format!("{:?}", verb.as_str()));
            let back: StorageCommand = serde_json::from_str(&json(&command)).expect("reads");
            assert_eq!(back, command);
        }
        for command in [StorageCommand::Recover, StorageCommand::Reverse] {
            let back: StorageCommand = serde_json::from_str(&json(&command)).expect("reads");
            assert_eq!(back, command);
        }
        for event in Event::ALL {
            assert_eq!(json(event), format!("{:?}", event.as_str()));
        }
        use SequenceState::*;
        for state in [Idle, Copying, Duplex, Complete, Suspended, Failed, Stopped] {
            assert_eq!(json(&state), format!("{:?}", state.as_str()));
            let back: SequenceState = serde_json::from_str(&json(&state)).expect("reads");
            assert_eq!(back, state);
        }
    }

    #[test]
    fn a_word_this_runtime_does_not_have_is_an_error_not_a_guess() {
        for text in [
            r#"{"record":"issue","sequence":1,"command":"START"}"#,
            r#"{"record":"issue","sequence":1,"command":"teleport"}"#,
            r#"{"record":"transition","sequence":1,"event":"onExplode","from":"Idle","to":"Copying","time":"t"}"#,
            r#"{"record":"transition","sequence":1,"event":"onStart","from":"Idle","to":"Molten","time":"t"}"#,
        ] {
            assert!(serde_json::from_str::<Record>(text).is_err(), "{text}");
        }
        let read: Record = serde_json::from_str(
            r#"{"record":"done","sequence":2,"command":"reverse","ok":true,"detail":""}"#,
        )
        .expect("reads");
        assert_eq!(
            read,
            Record::Done {
                sequence: 2,
                command: StorageCommand::Reverse,
                ok: true,
                detail: String::new()
            }
        );
    }

    #[test]
    fn the_last_run_says_which_solution_it_was() {
        let run = |solution: &str| Record::Run {
            pid: 1,
            time: String::new(),
            solution: solution.into(),
        };
        assert_eq!(last_solution(&[]), None);
        let records = [
            run("a"),
            Record::Stopped {
                time: String::new(),
            },
            run("b"),
        ];
        assert_eq!(last_solution(&records), Some("b"));
    }
}
