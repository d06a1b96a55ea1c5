//! `run`, started in small named steps (mini-redis style): the metrics page, the plan,
//! the journal (and whether this run takes over), the signals, the operator socket;
//! then the executor, and its end as an exit code.

use super::{admin::plan, Solution};
use crate::drivers::RefusalKind;
use crate::executor::{self, Options};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// `run`: exit 0 after a clean stop, 3 when the session cannot start (bad run-time
/// input: unreachable storage, unknown volume, target too small, busy volume; or its
/// state directory held by another run), with the storage left as it was, 4 when it
/// was stopped after losing every storage.
pub(super) fn run<S: Solution>(
    config: Option<PathBuf>,
    bars: Option<indicatif::MultiProgress>,
    progress_every: u64,
    state_dir: &Path,
    metrics: Option<&str>,
    ha: Option<crate::ha::Ha>,
) -> ExitCode {
    let _session = crate::log::session_span(S::SESSION.name).entered();
    abort_on_panic();
    let started = (|| {
        let metrics = metrics
            .map(|addr| serve_metrics(addr, &build::<S>(ha.is_some())))
            .transpose()?;
        let plan = plan::<S>(config)?;
        let stop = handle_signals()?;
        let journal = match &ha {
            None => open_journal::<S>(state_dir)?,
            Some(ha) => lead::<S>(ha, state_dir, &stop)?,
        };
        let control = listen_for_operators(state_dir)?;
        let options = Options {
            control: Some(control),
            metrics,
            bars,
            progress_every: (progress_every > 0).then(|| Duration::from_secs(progress_every)),
            journal: Some(journal),
        };
        Ok::<_, ExitCode>((plan, options, stop))
    })();
    match started {
        Ok((plan, options, stop)) => {
            ended::<S>(executor::run::<S>(plan, options, stop, Arc::default()))
        }
        Err(code) => code,
    }
}

/// What identifies this program on the metrics page (with --ha: a manager that does
/// not lead yet).
fn build<S: Solution>(ha: bool) -> crate::metrics::Build {
    crate::metrics::Build {
        session: S::SESSION.name.to_string(),
        hash: S::HASH.to_string(),
        cssc_version: S::CSSC_VERSION.to_string(),
        manager: ha.then(|| (crate::ha::manager_id(), false)),
    }
}

/// Opens the state directory's journal (one run at a time), says a torn record, and
/// decides whether this run takes over a killed one: only a killed run of the same
/// document (another document's machine would misread its journal).
fn open_journal<S: Solution>(state_dir: &Path) -> Result<executor::Journaled, ExitCode> {
    let (journal, earlier, torn) =
        crate::journal::Journal::open(state_dir).map_err(|e| not_started(e.to_string()))?;
    if let Some(t) = torn {
        tracing::warn!(
            kind = "journal",
            dropped = t.dropped,
            "the journal's last {} bytes were a torn record (a crash mid-write): dropped",
            t.dropped
        );
    }
    journaled::<S>(
        Box::new(journal),
        &earlier,
        &state_dir.display().to_string(),
    )
}

fn not_started(why: String) -> ExitCode {
    tracing::error!(
        kind = "session",
        state = "not-started",
        "cannot start: {why}; nothing was changed"
    );
    ExitCode::from(3)
}

/// With --ha: waits to lead (a SIGTERM meanwhile ends the wait: exit 0), keeps the
/// lease, and journals to etcd (fenced) and to the state directory's file, this
/// host's copy of etcd's for `status`; the earlier records are etcd's, every
/// leader's.
fn lead<S: Solution>(
    ha: &crate::ha::Ha,
    state_dir: &Path,
    stop: &AtomicBool,
) -> Result<executor::Journaled, ExitCode> {
    let me = crate::ha::manager_id();
    let leadership = match crate::ha::campaign(ha, &me, stop) {
        Ok(Some(leadership)) => leadership,
        Ok(None) => return Err(ExitCode::SUCCESS),
        Err(e) => return Err(not_started(format!("--ha: {e}"))),
    };
    leadership.keep();
    let (remote, earlier) = leadership
        .journal()
        .map_err(|e| not_started(format!("--ha: the journal: {e}")))?;
    // This host's copy of the journal starts as etcd's, whoever wrote it.
    crate::journal::replace(state_dir, &earlier).map_err(|e| not_started(e.to_string()))?;
    let (local, _, _) =
        crate::journal::Journal::open(state_dir).map_err(|e| not_started(e.to_string()))?;
    let store = crate::ha::Both(remote, local);
    let mut journaled = journaled::<S>(Box::new(store), &earlier, &format!("etcd {}", ha.prefix))?;
    journaled.manager = Some(me);
    Ok(journaled)
}

/// Whether this run takes over a killed one, from the records earlier runs left in
/// `journal` (said as `place`).
fn journaled<S: Solution>(
    journal: Box<dyn crate::journal::Store>,
    earlier: &[crate::core::record::Record],
    place: &str,
) -> Result<executor::Journaled, ExitCode> {
    let runs = earlier
        .iter()
        .filter(|r| matches!(r, crate::core::record::Record::Run { .. }))
        .count();
    let killed = crate::core::record::killed(earlier);
    let killed_by = crate::core::record::last_solution(earlier).filter(|_| killed);
    if let Some(other) = killed_by.filter(|h| *h != S::HASH) {
        return Err(not_started(format!(
            "the killed run in {place} was compiled from another document (solution {other}; this is {}): run that binary again to take over, or `{} cleanup` and start afresh",
            S::HASH,
            S::SESSION.name
        )));
    }
    let take_over = killed.then(|| {
        tracing::warn!(
            kind = "session",
            state = "taking-over",
            "the last run ended without stopping (killed?): this run takes over its copies"
        );
        crate::core::record::going_on(earlier).to_vec()
    });
    Ok(executor::Journaled {
        journal,
        runs,
        take_over,
        directions: executor::directions(earlier),
        manager: None,
    })
}

/// SIGINT and SIGTERM set the flag the executor stops on.
fn handle_signals() -> Result<Arc<AtomicBool>, ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            tracing::error!(
                kind = "session",
                state = "not-started",
                "cannot handle signal {signal}: {e}"
            );
            return Err(ExitCode::from(2));
        }
    }
    Ok(stop)
}

/// The operator socket in the state directory (owner only).
fn listen_for_operators(state_dir: &Path) -> Result<Receiver<crate::control::Request>, ExitCode> {
    crate::control::listen(state_dir).map_err(|e| {
        tracing::error!(
            kind = "session",
            state = "not-started",
            "cannot listen for operator commands at {}: {e}; nothing was changed",
            crate::control::socket_in(state_dir).display()
        );
        ExitCode::from(3)
    })
}

/// The executor's end as an exit code, said in the log.
fn ended<S: Solution>(result: Result<executor::Ended, executor::SetupError>) -> ExitCode {
    match result {
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
            match refusal.map(|r| r.kind) {
                Some(RefusalKind::InUse) => {
                    tracing::info!(kind = "session", "if a run of this session was killed without its journal (another --state-dir), `{} cleanup` removes what it left", S::SESSION.name);
                }
                Some(RefusalKind::Certificate) => {
                    tracing::info!(kind = "session", "the storage's [storage.ID.tls] files must verify against its daemon: its certificate signed by that CA and carrying that hostname, and cssc's certificate's DN in the daemon monitor's tls-authz; `{} check-config` checks them (exit 3)", S::SESSION.name);
                }
                Some(RefusalKind::Unreachable) => {
                    tracing::info!(kind = "session", "is the storage's daemon running, and is its endpoint right? `{} check-config` tries every storage; under systemd the unit tries again in 5 s (exit 3)", S::SESSION.name);
                }
                _ => {}
            }
            ExitCode::from(3)
        }
    }
}

/// A panic in any thread of a run ends the process (SIGABRT, after the panic's message
/// and an error record): systemd restarts it and the next run takes over from the
/// journal, rather than a session going on without the thread that died.
pub(super) fn abort_on_panic() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
                "cli::run::tests::a_panic_in_a_worker_thread_ends_the_process",
                "--nocapture",
            ])
            .env("CSSC_PANIC_CHILD", "1")
            .output()
            .expect("child");
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("a worker fails"));
    }
}
