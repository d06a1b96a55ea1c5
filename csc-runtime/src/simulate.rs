//! The dry run (`BIN simulate`): events fed to the generated machine, each
//! transition and the commands it would issue printed. Touches no storage.

use crate::machine::{Command, SequenceEvent, Solution};
use crate::vocab::{Event, Keyword};
use std::fmt::Write;

/// Why an event given to the dry run is not one of the solution's.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("`{0}`: write SEQ:EVENT, e.g. 1:onError")]
    Form(String),
    #[error("`{0}` is not a sequence number")]
    Sequence(String),
    #[error("there is no sequence {number}; this solution has 1..{sequences}")]
    NoSuchSequence { number: u32, sequences: usize },
    #[error("sequence {number} is {copy_type}; `{name}` is not one of its events: {valid}")]
    NotItsEvent {
        number: u32,
        copy_type: crate::vocab::CopyType,
        name: String,
        valid: String,
    },
}

/// Parses `SEQ:EVENT` into the solution's typed event, explaining what is valid.
pub fn parse_event<S: Solution>(text: &str) -> Result<S::Event, EventError> {
    let (seq, name) = text
        .split_once(':')
        .ok_or_else(|| EventError::Form(text.to_string()))?;
    let sequences = S::SESSION.sequences;
    let number: u32 = seq
        .trim()
        .parse()
        .map_err(|_| EventError::Sequence(seq.to_string()))?;
    let Some(sequence) = sequences.iter().find(|s| s.number == number) else {
        return Err(EventError::NoSuchSequence {
            number,
            sequences: sequences.len(),
        });
    };
    let copy_type = sequence.copy.copy_type();
    let valid = copy_type
        .events()
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Event::parse(name.trim())
        .and_then(|event| S::event(number, event))
        .ok_or_else(|| EventError::NotItsEvent {
            number,
            copy_type,
            name: name.to_string(),
            valid,
        })
}

/// The dry run: the session start, then each event's transition and commands.
pub fn simulate<S: Solution>(events: &[String]) -> Result<String, EventError> {
    let typed = events
        .iter()
        .map(|e| parse_event::<S>(e))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = String::new();
    let _ = writeln!(out, "session {} starts", S::SESSION.name);
    write_commands::<S>(&mut out, S::start());
    let mut state = S::State::default();
    for event in typed {
        let (sequence, general) = (event.sequence(), event.general());
        let (next, commands) = S::step(state, event);
        let _ = writeln!(
            out,
            "event {sequence}:{general}\n  sequence {sequence}: {} -> {}",
            S::sequence_state(&state, sequence).unwrap_or_default(),
            S::sequence_state(&next, sequence).unwrap_or_default()
        );
        write_commands::<S>(&mut out, commands);
        state = next;
    }
    Ok(out)
}

fn write_commands<S: Solution>(out: &mut String, commands: Vec<S::Command>) {
    if commands.is_empty() {
        out.push_str("  no commands\n");
    }
    for command in commands {
        let command: Command = command.into();
        let _ = writeln!(out, "  command: {command}");
    }
}
