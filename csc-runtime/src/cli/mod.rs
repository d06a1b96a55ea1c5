//! The command line of every compiled solution: `solution`, `graph`, `simulate`,
//! `run`, `status`, `suspend`, `resume`, `recover`, `reverse`, `check-config`,
//! `cleanup`, and `demo` where the `demo` feature is on (docs/runtime.md has each, with
//! its exit codes). Generated code calls [`main`] with its [`Solution`]; nothing here
//! is per-solution.

use crate::control::Operation;
use admin::{check_config, cleanup, operator};
use run::run;

mod admin;
mod run;
use crate::log::LogFormat;
use crate::machine::Solution;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
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
    /// Run the session against the storage the document (or --config) names, until
    /// SIGINT or SIGTERM; then end its copies and remove what it added.
    Run {
        /// A run-time file (TOML) that supplies or overrides STORAGE and COPYSET
        /// (default: /etc/cssc/SESSION.toml when it exists).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        #[command(flatten)]
        logging: Logging,
        /// Log the progress of long copies every SECONDS (0: never); on a terminal,
        /// progress bars instead, moving every second.
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        progress_every: u64,
        /// Where the session keeps its journal (default: $STATE_DIRECTORY, as systemd
        /// sets it, else /var/lib/cssc/SESSION).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<std::path::PathBuf>,
        /// Serve Prometheus metrics at http://ADDR/metrics (off unless given; use a
        /// loopback address such as 127.0.0.1:9464 to keep them on this host).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// Run as one of several managers of this session (etcd=http://HOST:PORT,...):
        /// the one holding the leader key runs it, the others wait, and take over when
        /// it goes (docs/deployment.md, "Two managers").
        #[arg(long, value_name = "etcd=URLS")]
        ha: Option<String>,
        /// The leader's lease with --ha, seconds.
        #[arg(long, default_value_t = 3, value_name = "SECONDS")]
        ha_ttl: u64,
    },
    /// What the session's journal says: whether a run holds it, each sequence's state,
    /// the last events, commands and actions that did not finish.
    Status {
        /// The state directory of `run` (same default).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<std::path::PathBuf>,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Also who leads the session's managers, for how long yet, and who waits
        /// (etcd=http://HOST:PORT,..., as `run --ha`).
        #[arg(long, value_name = "etcd=URLS")]
        ha: Option<String>,
    },
    /// Suspend a continuous sequence of the running session (`run` with the same state
    /// directory): its pairs are split at one consistent instant, and what changes on
    /// their sources from then on is recorded for `resume`.
    Suspend(OnRun),
    /// Resume a suspended or failed continuous sequence of the running session: each
    /// pair copies only what changed since it was split (or in full, saying why), and
    /// the command returns once every pair is in duplex again.
    Resume(OnRun),
    /// Failover: the targets of a split continuous sequence of the running session
    /// become production volumes (exported writable for applications), and what is
    /// written to them is recorded from now. A sequence that still mirrors is refused
    /// unless --freeze splits it at one consistent instant first.
    Recover {
        #[command(flatten)]
        on: OnRun,
        /// Split the sequence first if it still mirrors (a freeze, released at once).
        #[arg(long)]
        freeze: bool,
    },
    /// Failback: mirror a recovered sequence the other way, from its targets back to
    /// its sources, copying only what changed on either side since the split. A
    /// reversed sequence switches back with `recover --freeze` and `reverse` again.
    Reverse(OnRun),
    /// Online verify: compare each pair's target of a continuous sequence in duplex
    /// with its source while the session runs, read through the storages at a bounded
    /// rate, and list the extents that differ; --repair copies just those. Returns when
    /// every pair is compared (exit 0: nothing differs, after the repair with --repair; 4:
    /// differences remain; 1: refused or failed; 2: no run answers).
    Verify {
        #[command(flatten)]
        on: OnRun,
        /// Copy the differing extents from source to target.
        #[arg(long)]
        repair: bool,
        /// Read at most this many MiB a second from each side.
        #[arg(long, default_value_t = 64, value_name = "MIB")]
        rate: u64,
    },
    /// Check a run-time file without changing anything: it parses, its copy sets
    /// follow the compiler's rules, every storage answers, every volume exists and
    /// every target can hold its source (like zrepl's configcheck). Run it before
    /// `run`: a storage's monitor serves one client at a time.
    CheckConfig {
        /// The run-time file.
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
        /// One JSON object on stdout: config, ok, storages reached, pairs, error, exit.
        #[arg(long)]
        json: bool,
    },
    /// Remove what a killed run of this session left in its storages (jobs, NBD
    /// nodes, holds, exports, bitmaps, throttle groups named for this session). The
    /// volumes are never touched, nor what another session added.
    Cleanup {
        /// The run-time file the killed run used (default: /etc/cssc/SESSION.toml
        /// when it exists).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        /// One JSON object on stdout: each storage with what was removed or its
        /// error, and the exit code.
        #[arg(long)]
        json: bool,
    },
    /// The solution end to end on storage made for the occasion: one
    /// qemu-storage-daemon per site, data, writes, a site failure, every copy verified.
    #[cfg(feature = "demo")]
    Demo {
        /// Size of each volume.
        #[arg(long, default_value_t = 64, value_name = "MIB")]
        volume_mib: u64,
        /// Keep the scratch directory (images, sockets) afterwards.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        logging: Logging,
    },
    /// Print this program's shell completion script (bash, zsh, fish, elvish,
    /// powershell).
    Completions { shell: clap_complete::Shell },
    /// Print this program's man page (roff) on stdout.
    Man,
    /// Dry run: feed events to the state machine and print each transition and the
    /// commands it would issue. Touches no storage.
    Simulate {
        /// An event as SEQ:EVENT, e.g. 1:onError; repeat for a script of events.
        #[arg(long = "event", value_name = "SEQ:EVENT", required = true)]
        events: Vec<String>,
    },
}

/// Which sequence of which running session an operator command is for.
#[derive(Args)]
struct OnRun {
    /// The sequence number.
    sequence: u32,
    /// The state directory of `run` (same default).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// One JSON object on stdout: command, sequence, outcome (done, refused,
    /// differs, unanswered), message, exit.
    #[arg(long)]
    json: bool,
}

/// How a long-running command logs.
#[derive(Args)]
struct Logging {
    #[arg(long, value_enum, default_value_t = LogFormatArg::Human)]
    log_format: LogFormatArg,
    /// The least severe records written: debug adds each command sent to a storage's
    /// monitor and how long its reply took.
    #[arg(long, value_enum, env = "CSSC_LOG", default_value_t = LogLevel::Info)]
    log_level: LogLevel,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
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

/// The program's command line, named after its session.
fn command<S: Solution>() -> clap::Command {
    Cli::command()
        .name(S::SESSION.name)
        .version(version::<S>())
        .about(
            S::SESSION
                .description
                .unwrap_or("A compiled copy-services solution"),
        )
}

pub fn main_from<S: Solution>(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match command::<S>()
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
        Cmd::Solution => print!(
            "{}",
            S::XML.render(&crate::plan::Plan::from_session(&S::SESSION).copysets)
        ),
        Cmd::Graph { format } => print!(
            "{}",
            match format {
                GraphFormat::Dot => S::DOT,
                GraphFormat::Mermaid => S::MERMAID,
            }
        ),
        Cmd::Run {
            config,
            logging,
            progress_every,
            state_dir,
            metrics,
            ha,
            ha_ttl,
        } => {
            let dir = state_dir.unwrap_or_else(default_state_dir::<S>);
            let ha = match ha.map(|h| crate::ha::Ha::parse(&h, S::SESSION.name, ha_ttl)) {
                None => None,
                Some(Ok(ha)) => Some(ha),
                Some(Err(e)) => {
                    eprintln!("{}: --ha: {e}", S::SESSION.name);
                    return ExitCode::from(2);
                }
            };
            let bars = log(&logging);
            return run::<S>(config, bars, progress_every, &dir, metrics.as_deref(), ha);
        }
        Cmd::Status {
            state_dir,
            json,
            ha,
        } => {
            let dir = state_dir.unwrap_or_else(default_state_dir::<S>);
            // The lease's length does not matter to a reader.
            let ha = match ha.map(|h| crate::ha::Ha::parse(&h, S::SESSION.name, 3)) {
                None => None,
                Some(Ok(ha)) => Some(ha),
                Some(Err(e)) => {
                    eprintln!("{}: --ha: {e}", S::SESSION.name);
                    return ExitCode::from(2);
                }
            };
            return crate::status::print::<S>(&dir, json, ha.as_ref());
        }
        Cmd::Cleanup { config, json } => return cleanup::<S>(config, json),
        Cmd::CheckConfig { config, json } => return check_config::<S>(config, json),
        Cmd::Suspend(on) => return operator::<S>(Operation::Suspend, on),
        Cmd::Resume(on) => return operator::<S>(Operation::Resume, on),
        Cmd::Recover { on, freeze } => return operator::<S>(Operation::Recover { freeze }, on),
        Cmd::Reverse(on) => return operator::<S>(Operation::Reverse, on),
        Cmd::Verify { on, repair, rate } => {
            return operator::<S>(Operation::Verify { repair, rate }, on)
        }
        #[cfg(feature = "demo")]
        Cmd::Demo {
            volume_mib,
            keep,
            logging,
        } => {
            let options = crate::demo::DemoOptions {
                volume_mib,
                keep,
                bars: log(&logging),
            };
            return match crate::demo::run::<S>(options) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}: demo failed: {e}", S::SESSION.name);
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut command::<S>(),
                S::SESSION.name,
                &mut std::io::stdout(),
            );
        }
        Cmd::Man => {
            if let Err(e) = clap_mangen::Man::new(command::<S>()).render(&mut std::io::stdout()) {
                eprintln!("{}: cannot write the man page: {e}", S::SESSION.name);
                return ExitCode::from(2);
            }
        }
        Cmd::Simulate { events } => match crate::simulate::simulate::<S>(&events) {
            Ok(text) => print!("{text}"),
            Err(message) => {
                eprintln!("{}: {message}", S::SESSION.name);
                return ExitCode::from(2);
            }
        },
    }
    ExitCode::SUCCESS
}

/// Installs the log; returns progress bars when it is for people and stderr is a
/// terminal.
fn log(logging: &Logging) -> Option<indicatif::MultiProgress> {
    use std::io::IsTerminal;
    let format = match logging.log_format {
        LogFormatArg::Human => LogFormat::Human,
        LogFormatArg::Json => LogFormat::Json,
    };
    let level = match logging.log_level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    let bars = (format == LogFormat::Human && std::io::stderr().is_terminal())
        .then(indicatif::MultiProgress::new);
    crate::log::init(format, level, bars.clone());
    bars
}

/// The state directory by default: systemd's `StateDirectory=`, else /var/lib/cssc/SESSION.
fn default_state_dir<S: Solution>() -> std::path::PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new("/var/lib/cssc").join(S::SESSION.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks (argument ids, conflicts, defaults) over every
    /// command: a definition clash panics here, not in an administrator's hands.
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
