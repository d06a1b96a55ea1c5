//! The command line of every compiled solution: `solution`, `graph`, `simulate`.
//! Generated code calls [`main`] with its [`Solution`]; nothing here is per-solution.

use crate::machine::{Command, Solution};
use crate::vocab::{Event, Keyword};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::fmt::Write;
use std::process::ExitCode;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the solution document (canonical XML) this program was compiled from.
    Solution,
    /// Draw the chain's state machine.
    Graph {
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Dry run: feed events to the state machine and print each transition and the
    /// commands it would issue. Touches no storage.
    Simulate {
        /// An event as SEQ:EVENT, e.g. 1:onError; repeat for a script of events.
        #[arg(long = "event", value_name = "SEQ:EVENT", required = true)]
        events: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

/// What `--version` prints after the program's name: the solution's hash and the compiler.
pub fn version<S: Solution>() -> String {
    format!(
        "(solution {}), compiled by cssc {}",
        S::HASH,
        S::CSSC_VERSION
    )
}

/// Runs the program's command line. Exit codes: 0 success, 2 usage error.
pub fn main<S: Solution>() -> ExitCode {
    main_from::<S>(std::env::args_os())
}

pub fn main_from<S: Solution>(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let command = Cli::command()
        .name(S::SESSION.name)
        .version(version::<S>())
        .about(
            S::SESSION
                .description
                .unwrap_or("A compiled copy-services solution"),
        );
    let cli = match command
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Cmd::Solution => print!("{}", S::XML),
        Cmd::Graph { format } => print!(
            "{}",
            match format {
                GraphFormat::Dot => S::DOT,
                GraphFormat::Mermaid => S::MERMAID,
            }
        ),
        Cmd::Simulate { events } => match simulate::<S>(&events) {
            Ok(text) => print!("{text}"),
            Err(message) => {
                eprintln!("{}: {message}", S::SESSION.name);
                return ExitCode::from(2);
            }
        },
    }
    ExitCode::SUCCESS
}

/// Parses `SEQ:EVENT` into the solution's typed event, explaining what is valid.
pub fn parse_event<S: Solution>(text: &str) -> Result<S::Event, String> {
    let (seq, name) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: write SEQ:EVENT, e.g. 1:onError"))?;
    let sequences = S::SESSION.sequences;
    let number: u32 = seq
        .trim()
        .parse()
        .map_err(|_| format!("`{seq}` is not a sequence number"))?;
    let Some(sequence) = sequences.iter().find(|s| s.number == number) else {
        return Err(format!(
            "there is no sequence {number}; this solution has 1..{}",
            sequences.len()
        ));
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
        .ok_or_else(|| {
            format!("sequence {number} is {copy_type}; `{name}` is not one of its events: {valid}")
        })
}

/// The dry run: the session start, then each event's transition and commands.
pub fn simulate<S: Solution>(events: &[String]) -> Result<String, String> {
    let typed = events
        .iter()
        .map(|e| parse_event::<S>(e))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = String::new();
    let _ = writeln!(out, "session {} starts", S::SESSION.name);
    write_commands::<S>(&mut out, S::start());
    let mut state = S::State::default();
    for event in typed {
        let (sequence, general) = S::describe_event(event);
        let (next, commands) = S::step(state, event);
        let _ = writeln!(
            out,
            "event {sequence}:{general}\n  sequence {sequence}: {} -> {}",
            S::sequence_state(&state, sequence),
            S::sequence_state(&next, sequence)
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
