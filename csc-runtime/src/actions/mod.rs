//! The actions that leave the storage: NOTIFY a contact (webhook or program) and RUN a
//! program. Programs run with argv, never through a shell, with the event in their
//! environment and a timeout; each runs on its own thread so a slow one never holds
//! up the copy commands after it. Results are logged.

use crate::log::timestamp;
use crate::plan::Contact;
use crate::vocab::{Event, Keyword};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use wait_timeout::ChildExt;

/// How long a webhook may take, and a contact's program.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// What an action is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    pub session: String,
    pub sequence: u32,
    pub event: Event,
    /// The copy set whose pair caused the event, if one did.
    pub copyset: Option<String>,
    pub detail: String,
    pub time: String,
    /// The action's id in the session's journal (empty outside a journaled run): a
    /// receiver can tell a repeat by it.
    pub id: String,
}

impl Occurrence {
    pub fn new(
        session: &str,
        sequence: u32,
        event: Event,
        copyset: Option<String>,
        detail: String,
    ) -> Self {
        Occurrence {
            session: session.to_string(),
            sequence,
            event,
            copyset,
            detail,
            time: timestamp(),
            id: String::new(),
        }
    }

    /// The same occurrence, for the action of journal id `id`.
    pub fn for_action(&self, id: String) -> Occurrence {
        Occurrence { id, ..self.clone() }
    }

    /// The webhook body.
    pub fn json(&self) -> Value {
        json!({
            "session": self.session,
            "sequence": self.sequence,
            "event": self.event.as_str(),
            "copyset": self.copyset,
            "time": self.time,
            "detail": self.detail,
            "id": self.id,
        })
    }

    /// The environment of a program run about this occurrence.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CSSC_SESSION", self.session.clone()),
            ("CSSC_SEQUENCE", self.sequence.to_string()),
            ("CSSC_EVENT", self.event.as_str().to_string()),
            ("CSSC_COPYSET", self.copyset.clone().unwrap_or_default()),
            ("CSSC_TIME", self.time.clone()),
            ("CSSC_DETAIL", self.detail.clone()),
            ("CSSC_ACTION_ID", self.id.clone()),
        ]
    }
}

/// Why an action did not do what it was for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    #[error("cannot start {program}: {source}")]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {status}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
    },
    /// It ran past its timeout and was killed with everything it started.
    #[error("{program} killed after its timeout of {}s", timeout.as_secs())]
    TimedOut { program: String, timeout: Duration },
    /// The webhook said no for good: a 4xx, a certificate that does not verify, a bad
    /// URL.
    #[error("POST {url}: {reason}")]
    Refused { url: String, reason: String },
    /// Every attempt failed in a way a retry could change (a 5xx, a timeout, no
    /// connection).
    #[error("POST {url}: {reason}; gave up after {attempts} attempts")]
    GaveUp {
        url: String,
        reason: String,
        attempts: usize,
    },
}

/// Linux's ETXTBSY: the program file is open for writing somewhere (being replaced,
/// or inherited by a child forked at that moment); it passes within milliseconds.
const TEXT_FILE_BUSY: i32 = 26;

/// Starts `program`, retrying briefly while its file is busy.
fn spawn(program: &str, what: &Occurrence) -> Result<std::process::Child, ActionError> {
    let mut attempts = 0;
    loop {
        let started = Command::new(program)
            // Its own process group, so that a timeout ends what it started too.
            .process_group(0)
            .envs(what.environment())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match started {
            Err(e) if e.raw_os_error() == Some(TEXT_FILE_BUSY) && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => {
                return other.map_err(|source| ActionError::Start {
                    program: program.to_string(),
                    source,
                })
            }
        }
    }
}

/// Runs `program` (no shell, no PATH search) with the occurrence in its environment;
/// kills it and every process it started at `timeout`. Returns how it ended, for the log.
pub fn run_program(
    program: &str,
    timeout: Duration,
    what: &Occurrence,
) -> Result<String, ActionError> {
    let mut child = spawn(program, what)?;
    let waited = child
        .wait_timeout(timeout)
        .map_err(|source| ActionError::Wait {
            program: program.to_string(),
            source,
        })?;
    match waited {
        Some(status) if status.success() => Ok(format!("{program} exited 0")),
        Some(status) => Err(ActionError::Failed {
            program: program.to_string(),
            status,
        }),
        None => {
            // The program and whatever it started (a script's children): its group.
            if let Ok(group) = i32::try_from(child.id()) {
                // SAFETY: a plain system call on a process group this function created.
                unsafe { libc::killpg(group, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
            Err(ActionError::TimedOut {
                program: program.to_string(),
                timeout,
            })
        }
    }
}

/// The waits before each retry of a webhook: after a 5xx, a timeout or a failed
/// connection (four attempts in all).
pub const RETRY_AFTER: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// `sha256=HEX`: the HMAC-SHA256 of `body` under `secret` (the
/// `X-Cssc-Signature-256` header, as GitHub's `X-Hub-Signature-256`).
pub fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// How one POST ended: delivered (the status), refused for good, or worth another
/// try (why).
enum Attempt {
    Delivered(u16),
    Refused(String),
    Retry(String),
}

fn attempt(url: &str, body: &str, signed: Option<&str>) -> Attempt {
    use ureq::tls::{RootCerts, TlsConfig};
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(NOTIFY_TIMEOUT))
        .http_status_as_error(false)
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into();
    let mut request = agent.post(url).header("Content-Type", "application/json");
    if let Some(signature) = signed {
        request = request.header("X-Cssc-Signature-256", signature);
    }
    match request.send(body) {
        Ok(r) => {
            let status = r.status().as_u16();
            if (200..300).contains(&status) {
                Attempt::Delivered(status)
            } else if status >= 500 {
                Attempt::Retry(format!("HTTP {status}"))
            } else {
                Attempt::Refused(format!("HTTP {status}"))
            }
        }
        // What a retry cannot change: a certificate that does not verify (rustls
        // reports it as invalid data on the connection), a bad URL, TLS set-up.
        Err(
            e @ (ureq::Error::Tls(_)
            | ureq::Error::Rustls(_)
            | ureq::Error::BadUri(_)
            | ureq::Error::RequireHttpsOnly(_)),
        ) => Attempt::Refused(e.to_string()),
        Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            Attempt::Refused(e.to_string())
        }
        Err(e) => Attempt::Retry(e.to_string()),
    }
}

/// POSTs the occurrence as JSON to a webhook, signed with `secret` if given, retried
/// after each of `retry_after` on a 5xx, a timeout or a failed connection; each
/// failed attempt is given to `failed` with what comes next.
pub fn post(
    url: &str,
    secret: Option<&str>,
    what: &Occurrence,
    retry_after: &[Duration],
    failed: impl Fn(&str),
) -> Result<String, ActionError> {
    let body = what.json().to_string();
    let signed = secret.map(|s| signature(s, body.as_bytes()));
    let mut waits = retry_after.iter();
    loop {
        match attempt(url, &body, signed.as_deref()) {
            Attempt::Delivered(status) => return Ok(format!("POST {url}: {status}")),
            Attempt::Refused(reason) => {
                return Err(ActionError::Refused {
                    url: url.to_string(),
                    reason,
                })
            }
            Attempt::Retry(reason) => match waits.next() {
                Some(wait) => {
                    failed(&format!(
                        "POST {url}: {reason}; trying again in {}s",
                        wait.as_secs()
                    ));
                    std::thread::sleep(*wait);
                }
                None => {
                    return Err(ActionError::GaveUp {
                        url: url.to_string(),
                        reason,
                        attempts: retry_after.len() + 1,
                    })
                }
            },
        }
    }
}

/// Notifies a contact by every way it has, logging each result; whether all went well.
pub fn notify(contact: &Contact, what: &Occurrence) -> bool {
    let (name, sequence, event) = (contact.name.as_str(), what.sequence, what.event.as_str());
    let mut results = Vec::new();
    if let Some(url) = &contact.webhook {
        let failed = |text: &str| {
            tracing::warn!(
                kind = "notify",
                contact = name,
                sequence,
                event,
                ok = false,
                retrying = true,
                "notify {name}: {text}"
            );
        };
        results.push(post(
            url,
            contact.secret.as_deref(),
            what,
            &RETRY_AFTER,
            failed,
        ));
    }
    if let Some(program) = &contact.command {
        results.push(run_program(program, NOTIFY_TIMEOUT, what));
    }
    let mut all = true;
    for result in results {
        match result {
            Ok(text) => tracing::info!(
                kind = "notify",
                contact = name,
                sequence,
                event,
                ok = true,
                "notify {name}: {text}"
            ),
            Err(error) => {
                all = false;
                tracing::warn!(
                    kind = "notify",
                    contact = name,
                    sequence,
                    event,
                    ok = false,
                    "notify {name}: {error}"
                );
            }
        }
    }
    all
}

/// Runs a RUN action and logs how it ended; whether it succeeded.
pub fn run(program: &str, timeout: Duration, what: &Occurrence) -> bool {
    let (sequence, event) = (what.sequence, what.event.as_str());
    match run_program(program, timeout, what) {
        Ok(text) => {
            tracing::info!(
                kind = "run",
                program,
                sequence,
                event,
                ok = true,
                "run: {text}"
            );
            true
        }
        Err(error) => {
            tracing::warn!(
                kind = "run",
                program,
                sequence,
                event,
                ok = false,
                "run: {error}"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occurrence() -> Occurrence {
        Occurrence::new("s", 2, Event::OnError, Some("db".into()), "it broke".into())
    }

    #[test]
    fn programs_get_the_event_in_their_environment_and_no_shell() {
        let dir = std::env::temp_dir().join(format!("cssc-action-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("env.txt");
        let script = dir.join("record.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\nenv | grep ^CSSC_ | sort > {}\n", out.display()),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let result = run_program(
            script.to_str().expect("utf-8"),
            Duration::from_secs(5),
            &occurrence(),
        );
        assert!(result.is_ok(), "{result:?}");
        let env = std::fs::read_to_string(&out).expect("recorded");
        assert!(
            env.contains("CSSC_EVENT=onError\n")
                && env.contains("CSSC_SEQUENCE=2\n")
                && env.contains("CSSC_COPYSET=db\n"),
            "{env}"
        );
        // A shell command line is not run as one: it names no program.
        assert!(run_program(
            "/bin/echo hi; touch /tmp/x",
            Duration::from_secs(1),
            &occurrence()
        )
        .is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_program_past_its_timeout_is_killed_with_what_it_started() {
        let dir = std::env::temp_dir().join(format!("cssc-timeout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let script = dir.join("sleep.sh");
        let child_pid = dir.join("child.pid");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nsleep 30 &\necho $! > {}\nsleep 30\n",
                child_pid.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let started = std::time::Instant::now();
        let result = run_program(
            script.to_str().expect("utf-8"),
            Duration::from_millis(300),
            &occurrence(),
        );
        let error = result.expect_err("timed out");
        assert!(matches!(error, ActionError::TimedOut { .. }), "{error}");
        assert!(error.to_string().contains("killed after its timeout"));
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid = std::fs::read_to_string(&child_pid).expect("the script started a child");
        let proc = std::path::Path::new("/proc").join(pid.trim());
        // Killed (the group got SIGKILL); reaped by init soon after, or a zombie until then.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let alive = || {
            std::fs::read_to_string(proc.join("stat"))
                .is_ok_and(|stat| stat.split(' ').nth(2).is_none_or(|state| state != "Z"))
        };
        while alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "the script's child {} outlived the timeout",
                pid.trim()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
