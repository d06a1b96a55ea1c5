//! The command line of every compiled solution: `solution`, `graph`, `simulate`,
//! `run`, `status`, `suspend`, `resume`, `recover`, `reverse`, `check-config`,
//! `cleanup`, and `demo` where the `demo` feature is on (docs/runtime.md has each, with
//! its exit codes). Generated code calls [`main`] with its [`Solution`]; nothing here
//! is per-solution.

use crate::control::Operation;
use crate::executor::{self, Options};
use crate::log::LogFormat;
use crate::machine::{Command, SequenceEvent, Solution};
use crate::plan::Plan;
use crate::vocab::{Event, Keyword};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::fmt::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

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
        } => {
            let dir = state_dir.unwrap_or_else(default_state_dir::<S>);
            let bars = log(&logging);
            return run::<S>(config, bars, progress_every, &dir, metrics.as_deref());
        }
        Cmd::Status { state_dir, json } => {
            let dir = state_dir.unwrap_or_else(default_state_dir::<S>);
            return crate::status::print::<S>(&dir, json);
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

/// `run`: exit 0 after a clean stop, 3 when the session cannot start (bad run-time
/// input: unreachable storage, unknown volume, target too small, busy volume; or its
/// state directory held by another run), with the storage left as it was, 4 when it
/// was stopped after losing every storage.
fn run<S: Solution>(
    config: Option<std::path::PathBuf>,
    bars: Option<indicatif::MultiProgress>,
    progress_every: u64,
    state_dir: &std::path::Path,
    metrics: Option<&str>,
) -> ExitCode {
    let name = S::SESSION.name;
    let _session = crate::log::session_span(name).entered();
    abort_on_panic();
    let build = crate::metrics::Build {
        session: name.to_string(),
        hash: S::HASH.to_string(),
        cssc_version: S::CSSC_VERSION.to_string(),
    };
    let metrics = match metrics.map(|addr| serve_metrics(addr, &build)).transpose() {
        Ok(page) => page,
        Err(code) => return code,
    };
    let plan = match plan::<S>(config) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let (journal, earlier, torn) = match crate::journal::Journal::open(state_dir) {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(
                kind = "session",
                state = "not-started",
                "cannot start: {e}; nothing was changed"
            );
            return ExitCode::from(3);
        }
    };
    if let Some(t) = torn {
        tracing::warn!(
            kind = "journal",
            dropped = t.dropped,
            "the journal's last {} bytes were a torn record (a crash mid-write): dropped",
            t.dropped
        );
    }
    let runs = earlier
        .iter()
        .filter(|r| matches!(r, crate::journal::Record::Run { .. }))
        .count();
    // A killed run is taken over only by the same solution: another document's
    // machine would misread its journal.
    let killed_by =
        crate::journal::last_solution(&earlier).filter(|_| crate::journal::killed(&earlier));
    if let Some(other) = killed_by.filter(|h| *h != S::HASH) {
        tracing::error!(
            kind = "session",
            state = "not-started",
            "cannot start: the killed run in {} was compiled from another document (solution {other}; this is {}): run that binary again to take over, or `{name} cleanup` and start afresh; nothing was changed",
            state_dir.display(),
            S::HASH
        );
        return ExitCode::from(3);
    }
    let take_over = crate::journal::killed(&earlier).then(|| {
        tracing::warn!(
            kind = "session",
            state = "taking-over",
            "the last run ended without stopping (killed?): this run takes over its copies"
        );
        crate::journal::going_on(&earlier).to_vec()
    });
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            tracing::error!(
                kind = "session",
                state = "not-started",
                "cannot handle signal {signal}: {e}"
            );
            return ExitCode::from(2);
        }
    }
    let control = match crate::control::listen(state_dir) {
        Ok(requests) => Some(requests),
        Err(e) => {
            tracing::error!(
                kind = "session",
                state = "not-started",
                "cannot listen for operator commands at {}: {e}; nothing was changed",
                crate::control::socket_in(state_dir).display()
            );
            return ExitCode::from(3);
        }
    };
    let options = Options {
        control,
        metrics,
        bars,
        progress_every: (progress_every > 0).then(|| Duration::from_secs(progress_every)),
        journal: Some(executor::Journaled {
            journal,
            runs,
            take_over,
            directions: executor::directions(&earlier),
        }),
    };
    match executor::run::<S>(plan, options, stop, Arc::default()) {
        Ok(executor::Ended::Clean) => ExitCode::SUCCESS,
        Ok(executor::Ended::StoragesLost) => {
            tracing::error!(
                kind = "session",
                state = "storages-lost",
                "stopped after every storage of the session was lost"
            );
            ExitCode::from(4)
        }
        Err(e) => {
            let refusal = match &e {
                executor::SetupError::Storage(refusal) => Some(refusal),
                executor::SetupError::Plan(_) => None,
            };
            let changed = refusal.is_some_and(|r| !r.partly_written.is_empty());
            let unchanged = if changed { "" } else { "; nothing was changed" };
            tracing::error!(
                kind = "session",
                state = "not-started",
                "cannot start: {e}{unchanged}"
            );
            if refusal.is_some_and(|r| r.kind == crate::drivers::RefusalKind::InUse) {
                tracing::info!(kind = "session", "if a run of this session was killed without its journal (another --state-dir), `{name} cleanup` removes what it left");
            }
            ExitCode::from(3)
        }
    }
}

/// A panic in any thread of a run ends the process (SIGABRT, after the panic's message
/// and an error record): systemd restarts it and the next run takes over from the
/// journal, rather than a session going on without the thread that died.
fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(
            kind = "session",
            "{info}: ending the run (the next run takes over)"
        );
        std::process::abort();
    }));
}

/// Serves the metrics page at `addr`; exit 2 when it is not an address, 3 when it
/// cannot be bound now (in use, not yet configured: a restart may find it free).
fn serve_metrics(
    addr: &str,
    build: &crate::metrics::Build,
) -> Result<crate::metrics::Page, ExitCode> {
    if std::net::ToSocketAddrs::to_socket_addrs(addr).is_err() {
        tracing::error!(
            kind = "metrics",
            "--metrics {addr}: not an address (HOST:PORT)"
        );
        return Err(ExitCode::from(2));
    }
    let page: crate::metrics::Page =
        std::sync::Arc::new(std::sync::Mutex::new(crate::metrics::starting(build)));
    match crate::metrics::serve(addr, std::sync::Arc::clone(&page)) {
        Ok(bound) => {
            tracing::info!(kind = "metrics", address = %bound, "metrics at http://{bound}/metrics");
            Ok(page)
        }
        Err(e) => {
            tracing::error!(kind = "metrics", "cannot serve metrics at {addr}: {e}");
            Err(ExitCode::from(3))
        }
    }
}

/// An operator command to the running session: exit 0 when it got where the command
/// leads, 1 when it was refused or failed (the reason is printed), 2 when no run of
/// this state directory answers.
fn operator<S: Solution>(operation: Operation, on: OnRun) -> ExitCode {
    use crate::control::Outcome;
    let dir = on.state_dir.unwrap_or_else(default_state_dir::<S>);
    let (outcome, message, code) =
        match crate::control::send(&dir, crate::control::Ask::Operate(operation, on.sequence)) {
            Ok(answer) => match answer.outcome {
                Outcome::Refused => ("refused", answer.message, 1),
                // `verify`: differences remain.
                Outcome::Differs => ("differs", answer.message, 4),
                Outcome::Done => ("done", answer.message, 0),
            },
            Err(e) => ("unanswered", e.to_string(), 2),
        };
    if on.json {
        let object = serde_json::json!({
            "command": operation.to_string(),
            "sequence": on.sequence,
            "outcome": outcome,
            "message": message,
            "exit": code,
        });
        println!("{object}");
    } else if code == 0 || code == 4 {
        println!("{message}");
    } else if code == 1 {
        eprintln!("{}: {operation} refused: {message}", S::SESSION.name);
    } else {
        eprintln!("{}: {message}", S::SESSION.name);
    }
    ExitCode::from(code)
}

/// The document's plan with the run-time file applied; exit 2 when the file is bad.
fn plan<S: Solution>(config: Option<std::path::PathBuf>) -> Result<Plan, ExitCode> {
    let mut plan = Plan::from_session(&S::SESSION);
    if let Some(path) = config.or_else(default_config::<S>) {
        let applied = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| plan.apply_run_file(&path.display().to_string(), &text));
        if let Err(e) = applied {
            eprintln!("{}: {e}", S::SESSION.name);
            return Err(ExitCode::from(2));
        }
    }
    Ok(plan)
}

/// The run-time file by default: `/etc/cssc/SESSION.toml` when it exists (the
/// directory is `$CSSC_CONFIG_DIR` if set), as the template unit names it.
fn default_config<S: Solution>() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("CSSC_CONFIG_DIR").unwrap_or_else(|| "/etc/cssc".into());
    let path = std::path::Path::new(&dir).join(format!("{}.toml", S::SESSION.name));
    path.exists().then_some(path)
}

/// `check-config`: exit 0 when the file is good and every storage and volume is as
/// `run` needs, 2 for a bad run-time file, 3 when a storage or volume is not.
fn check_config<S: Solution>(config: std::path::PathBuf, json: bool) -> ExitCode {
    use crate::drivers::Driver;
    let name = S::SESSION.name;
    let shown = config.display().to_string();
    let report =
        |ok: bool, storages: Vec<String>, pairs: usize, error: Option<String>, code: u8| {
            let object = serde_json::json!({
                "config": shown, "ok": ok, "storages_reached": storages,
                "pairs": pairs, "error": error, "exit": code,
            });
            println!("{object}");
            ExitCode::from(code)
        };
    let plan = match plan::<S>(Some(config)) {
        Ok(plan) => plan,
        Err(_) if json => {
            let error = "the run-time file does not load (the diagnostic is on stderr)";
            return report(false, Vec::new(), 0, Some(error.into()), 2);
        }
        Err(code) => return code,
    };
    if !json {
        println!(
            "{shown}: {} storage(s), {} copy set(s), {} contact(s); daily schedules in {}",
            plan.storages.len(),
            plan.copysets.len(),
            plan.contacts.len(),
            plan.time_zone.iana_name().unwrap_or("the host's zone")
        );
    }
    let pairs: Vec<_> = plan
        .sequences
        .iter()
        .flat_map(|s| plan.pairs(s.number))
        .collect();
    let (tx, _rx) = std::sync::mpsc::channel();
    let checked = crate::drivers::Storages::connect(&plan, tx, false)
        .and_then(|mut driver| driver.preflight(&pairs));
    match checked {
        Ok(()) if json => {
            let reached = plan
                .storages_used()
                .into_iter()
                .map(|id| id.to_string())
                .collect();
            report(true, reached, pairs.len(), None, 0)
        }
        Ok(()) => {
            for id in plan.storages_used() {
                println!("storage {id}: reached");
            }
            println!("{} pair(s): every volume exists and every target can hold its source; nothing was changed", pairs.len());
            ExitCode::SUCCESS
        }
        Err(e) if json => report(
            false,
            Vec::new(),
            pairs.len(),
            Some(format!("{e}; nothing was changed")),
            3,
        ),
        Err(e) => {
            eprintln!("{name}: {shown}: {e}; nothing was changed");
            ExitCode::from(3)
        }
    }
}

/// `cleanup`: exit 0 when every storage was reached and cleaned, 3 when one could not
/// be (the others are cleaned), 2 for a bad run-time file.
fn cleanup<S: Solution>(config: Option<std::path::PathBuf>, json: bool) -> ExitCode {
    let name = S::SESSION.name;
    let plan = match plan::<S>(config) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let mut ok = true;
    let mut cleaned = crate::drivers::qemu::cleanup::cleanup(&plan);
    cleaned.extend(crate::drivers::btrfs::cleanup::cleanup(&plan));
    if json {
        let storages: Vec<serde_json::Value> = cleaned
            .iter()
            .map(|(storage, result)| match result {
                Ok(removed) => {
                    serde_json::json!({"storage": storage, "removed": removed, "error": null})
                }
                Err(e) => {
                    ok = false;
                    serde_json::json!({"storage": storage, "removed": [], "error": e.to_string()})
                }
            })
            .collect();
        let code = if ok { 0 } else { 3 };
        println!(
            "{}",
            serde_json::json!({"storages": storages, "exit": code})
        );
        return ExitCode::from(code);
    }
    for (storage, result) in cleaned {
        match result {
            Ok(removed) if removed.is_empty() => println!("storage {storage}: nothing to remove"),
            Ok(removed) => {
                for item in removed {
                    println!("storage {storage}: removed {item}");
                }
            }
            Err(e) => {
                ok = false;
                eprintln!("{name}: storage {storage}: {e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks (argument ids, conflicts, defaults) over every
    /// command: a definition clash panics here, not in an administrator's hands.
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Run in a child process of this test binary (`CSSC_PANIC_CHILD`): a worker
    /// thread panics after `abort_on_panic`; the whole process must end by SIGABRT.
    #[test]
    fn a_panic_in_a_worker_thread_ends_the_process() {
        use std::os::unix::process::ExitStatusExt;
        if std::env::var_os("CSSC_PANIC_CHILD").is_some() {
            abort_on_panic();
            let _ = std::thread::spawn(|| panic!("a worker fails")).join();
            std::thread::sleep(Duration::from_secs(5));
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "cli::tests::a_panic_in_a_worker_thread_ends_the_process",
                "--nocapture",
            ])
            .env("CSSC_PANIC_CHILD", "1")
            .output()
            .expect("child");
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("a worker fails"));
    }
}
