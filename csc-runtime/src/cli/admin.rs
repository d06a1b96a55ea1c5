//! The commands that act on a session from outside its run: the operator commands
//! (through the run's socket), `check-config` and `cleanup` (on the storages), and the
//! run-time file they and `run` read.

use super::{default_state_dir, OnRun, Solution};
use crate::control::Operation;
use crate::plan::Plan;
use std::process::ExitCode;

/// An operator command to the running session: exit 0 when it got where the command
/// leads, 1 when it was refused or failed (the reason is printed), 2 when no run of
/// this state directory answers.
pub(super) fn operator<S: Solution>(operation: Operation, on: OnRun) -> ExitCode {
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
pub(super) fn plan<S: Solution>(config: Option<std::path::PathBuf>) -> Result<Plan, ExitCode> {
    let mut plan = Plan::from_session(&S::SESSION);
    if let Some(path) = config.or_else(default_config::<S>) {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            eprintln!("{}: cannot read {}: {e}", S::SESSION.name, path.display());
            ExitCode::from(2)
        })?;
        if let Err(e) = plan.apply_run_file(&path.display().to_string(), &text) {
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
pub(super) fn check_config<S: Solution>(config: std::path::PathBuf, json: bool) -> ExitCode {
    use crate::drivers::Driver;
    let name = S::SESSION.name;
    let shown = config.display().to_string();
    let mut warnings: Vec<String> = Vec::new();
    let report = |ok: bool,
                  storages: Vec<String>,
                  pairs: usize,
                  error: Option<String>,
                  code: u8,
                  warnings: &[String]| {
        let object = serde_json::json!({
            "config": shown, "ok": ok, "storages_reached": storages,
            "pairs": pairs, "error": error, "exit": code, "warnings": warnings,
        });
        println!("{object}");
        ExitCode::from(code)
    };
    let plan = match plan::<S>(Some(config)) {
        Ok(plan) => plan,
        Err(_) if json => {
            let error = "the run-time file does not load (the diagnostic is on stderr)";
            return report(false, Vec::new(), 0, Some(error.into()), 2, &[]);
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
    // cssc's own certificates first: one that does not verify against its CA, or
    // is about to expire, is said by name (the daemon's is checked by the handshake).
    for (id, credentials) in plan
        .tls
        .iter()
        .filter_map(|(id, t)| Some((id, t.monitor.as_ref()?)))
    {
        match credentials.check() {
            Ok(()) => {}
            Err(e @ crate::tls::TlsError::ExpiresSoon(_)) => {
                let warning = format!("storage {id}: {e}: renew it before it does");
                if !json {
                    eprintln!("{name}: warning: {warning}");
                }
                warnings.push(warning);
            }
            Err(e) if json => {
                return report(
                    false,
                    Vec::new(),
                    pairs.len(),
                    Some(format!("storage {id}: {e}")),
                    3,
                    &warnings,
                )
            }
            Err(e) => {
                eprintln!("{name}: {shown}: storage {id}: {e}; nothing was changed");
                return ExitCode::from(3);
            }
        }
    }
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
            report(true, reached, pairs.len(), None, 0, &warnings)
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
            &warnings,
        ),
        Err(e) => {
            eprintln!("{name}: {shown}: {e}; nothing was changed");
            ExitCode::from(3)
        }
    }
}

/// `cleanup`: exit 0 when every storage was reached and cleaned, 3 when one could not
/// be (the others are cleaned), 2 for a bad run-time file.
pub(super) fn cleanup<S: Solution>(config: Option<std::path::PathBuf>, json: bool) -> ExitCode {
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
                // The refusal names its storage.
                eprintln!("{name}: {e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}
