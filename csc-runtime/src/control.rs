//! Operator commands to a running session: `BIN suspend SEQ`, `BIN resume SEQ`,
//! `BIN recover SEQ [--freeze]`, `BIN reverse SEQ`, `BIN verify SEQ [--repair]`. The
//! run listens on a unix socket in its state directory (`control.sock`, mode 0600: its
//! owner only); a command is one line (`recover 1 freeze`, `verify 1 64 repair`), its
//! answer one JSON line (`{"outcome":"done"|"refused"|"differs","message":…}`) once the
//! command has done what it does.
//!
//! A socket rather than the journal: the journal has one writer (the run that holds
//! its lock), and the operator wants an answer (done, or refused and why) while the
//! command waits, not a record to be picked up on the next poll.

use serde_json::json;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

/// What an operator may tell a running session to do with a continuous sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Split the pairs at one consistent instant, recording what changes after.
    Suspend,
    /// Back in duplex, copying only what changed.
    Resume,
    /// Failover: the targets become production volumes (exported writable), their
    /// changes recorded; `freeze`: split mirroring pairs first.
    Recover { freeze: bool },
    /// Failback: mirror from the recovered targets back to the sources, copying what
    /// changed on either side since the split.
    Reverse,
    /// Compare each pair's target with its source (verify.rs); `repair`: copy the
    /// differing extents. At most `rate` MiB/s read from each side.
    Verify { repair: bool, rate: u64 },
}

/// What a line on the socket asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// An operation on a sequence.
    Operate(Operation, u32),
    /// What the session's storage says now (`BIN status`).
    Status,
}

impl Operation {
    const WORDS: &'static [&'static str] = &["suspend", "resume", "recover", "reverse", "verify"];
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Suspend => "suspend",
            Operation::Resume => "resume",
            Operation::Recover { .. } => "recover",
            Operation::Reverse => "reverse",
            Operation::Verify { .. } => "verify",
        })
    }
}

/// How long `status` waits for the running session's view of its storage.
pub(crate) const STATUS_WITHIN: Duration = Duration::from_secs(5);

/// How long an operator command may wait for its answer (a resume waits for the
/// pairs to be in duplex again, copy time included).
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(600);

/// The socket of a state directory.
pub(crate) fn socket_in(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// One command from an operator, and where its answer goes.
pub struct Request {
    pub ask: Ask,
    pub answer: Sender<Answer>,
}

/// What the session answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    pub message: String,
}

/// How an operator command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Refused, or failed: the message says why.
    Refused,
    /// Carried out, and what it checked differs (`verify`: extents remain).
    Differs,
}

impl Outcome {
    const WORDS: [(Outcome, &'static str); 3] = [
        (Outcome::Done, "done"),
        (Outcome::Refused, "refused"),
        (Outcome::Differs, "differs"),
    ];

    fn word(self) -> &'static str {
        Outcome::WORDS
            .iter()
            .find(|(o, _)| *o == self)
            .expect("listed")
            .1
    }

    fn of_word(word: &str) -> Outcome {
        (Outcome::WORDS.iter())
            .find(|(_, w)| *w == word)
            .map_or(Outcome::Refused, |(o, _)| *o)
    }
}

/// Listens on the state directory's socket; requests arrive on the returned channel.
/// The caller holds the directory's journal lock, so a socket file left there is a
/// killed run's, and is replaced.
pub(crate) fn listen(dir: &Path) -> std::io::Result<Receiver<Request>> {
    let path = socket_in(dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let tx = tx.clone();
                let _ = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || serve(stream, &tx));
            }
        })?;
    Ok(rx)
}

/// Reads one command line, hands it to the session, writes its answer.
fn serve(stream: UnixStream, requests: &Sender<Request>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let read = BufReader::new(&stream).take(256).read_line(&mut line);
    let asked = read
        .map_err(|e| AskError::Read(e.to_string()))
        .and_then(|_| parse(&line));
    let answer = match asked {
        Err(refusal) => Answer {
            outcome: Outcome::Refused,
            message: refusal.to_string(),
        },
        Ok(ask) => {
            let (answer, answered) = mpsc::channel();
            let sent = requests.send(Request { ask, answer });
            match sent
                .ok()
                .and_then(|()| answered.recv_timeout(ANSWER_WITHIN).ok())
            {
                Some(answer) => answer,
                None => Answer {
                    outcome: Outcome::Refused,
                    message: "the session did not answer (it is stopping?)".into(),
                },
            }
        }
    };
    let body = json!({ "outcome": answer.outcome.word(), "message": answer.message });
    let _ = writeln!(&stream, "{body}");
}

/// Why a command line is not one the session takes.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AskError {
    #[error("`{0}`: write VERB SEQ, e.g. resume 1")]
    Usage(String),
    #[error("`{0}` is not an operator command; valid: {valid}, status", valid = Operation::WORDS.join(", "))]
    Verb(String),
    #[error("`{0}` is not a rate in MiB/s")]
    Rate(String),
    #[error("`{0}` is not a sequence number")]
    Sequence(String),
    #[error("the command line could not be read: {0}")]
    Read(String),
}

/// Why the operator's side got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("no running session answers at {} ({source}): is `run` running with this state directory?", path.display())]
    NoRun {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the command could not be sent: {0}")]
    Write(#[source] std::io::Error),
    #[error("the session's answer did not come: {0}")]
    NoAnswer(#[source] std::io::Error),
    #[error("the session's answer is not JSON ({source}): {line}")]
    NotJson {
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

/// `VERB SEQ`, e.g. `resume 1`; `recover SEQ freeze` asks for the freeze first;
/// `status` alone asks what the storage says now.
fn parse(line: &str) -> Result<Ask, AskError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let usage = || AskError::Usage(line.trim().to_string());
    let (verb, sequence, rest) = match words.as_slice() {
        [status] if status.eq_ignore_ascii_case("status") => return Ok(Ask::Status),
        [verb, sequence, rest @ ..] => (*verb, *sequence, rest),
        _ => return Err(usage()),
    };
    let operation = match (verb.to_ascii_lowercase().as_str(), rest) {
        ("suspend", []) => Operation::Suspend,
        ("resume", []) => Operation::Resume,
        ("recover", []) => Operation::Recover { freeze: false },
        ("recover", ["freeze"]) => Operation::Recover { freeze: true },
        ("reverse", []) => Operation::Reverse,
        ("verify", [rate]) | ("verify", [rate, "repair"]) => Operation::Verify {
            repair: rest.len() == 2,
            rate: rate
                .parse()
                .ok()
                .filter(|r| *r > 0)
                .ok_or_else(|| AskError::Rate(rate.to_string()))?,
        },
        (known, _) if Operation::WORDS.contains(&known) => return Err(usage()),
        _ => return Err(AskError::Verb(verb.to_string())),
    };
    let sequence = sequence
        .parse()
        .map_err(|_| AskError::Sequence(sequence.to_string()))?;
    Ok(Ask::Operate(operation, sequence))
}

/// The operator's side: sends `ask` to the run of `dir` and waits for its answer.
/// `Err` when no run listens there.
pub(crate) fn send(dir: &Path, ask: Ask) -> Result<Answer, SendError> {
    let path = socket_in(dir);
    let mut stream =
        UnixStream::connect(&path).map_err(|source| SendError::NoRun { path, source })?;
    let line = match ask {
        Ask::Status => "status".to_string(),
        Ask::Operate(operation @ Operation::Recover { freeze: true }, sequence) => {
            format!("{operation} {sequence} freeze")
        }
        Ask::Operate(operation @ Operation::Verify { repair, rate }, sequence) => {
            format!(
                "{operation} {sequence} {rate}{}",
                if repair { " repair" } else { "" }
            )
        }
        Ask::Operate(operation, sequence) => format!("{operation} {sequence}"),
    };
    writeln!(stream, "{line}").map_err(SendError::Write)?;
    // `status` answers from the run's memory: a run whose loop does not answer in
    // seconds (stuck on a storage) is said to be so, not waited for.
    let within = match ask {
        Ask::Status => STATUS_WITHIN,
        Ask::Operate(..) => ANSWER_WITHIN + Duration::from_secs(5),
    };
    let _ = stream.set_read_timeout(Some(within));
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(SendError::NoAnswer)?;
    let value: serde_json::Value =
        serde_json::from_str(&line).map_err(|source| SendError::NotJson {
            line: line.clone(),
            source,
        })?;
    Ok(Answer {
        outcome: Outcome::of_word(value["outcome"].as_str().unwrap_or_default()),
        message: value["message"].as_str().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_is_a_verb_an_operator_may_give_and_a_sequence() {
        let op = |operation, sequence| Ok(Ask::Operate(operation, sequence));
        assert_eq!(parse("resume 1\n"), op(Operation::Resume, 1));
        assert_eq!(parse("Suspend 12"), op(Operation::Suspend, 12));
        assert_eq!(
            parse("recover 2"),
            op(Operation::Recover { freeze: false }, 2)
        );
        assert_eq!(
            parse("recover 2 freeze"),
            op(Operation::Recover { freeze: true }, 2)
        );
        assert_eq!(parse("reverse 3"), op(Operation::Reverse, 3));
        assert_eq!(
            parse("verify 1 64 repair"),
            op(
                Operation::Verify {
                    repair: true,
                    rate: 64
                },
                1
            )
        );
        assert_eq!(
            parse("verify 1 8"),
            op(
                Operation::Verify {
                    repair: false,
                    rate: 8
                },
                1
            )
        );
        assert_eq!(parse("verify 1 0"), Err(AskError::Rate("0".into())));
        assert_eq!(parse("verify 1"), Err(AskError::Usage("verify 1".into())));
        let freeze = parse("freeze 1").unwrap_err();
        assert_eq!(freeze, AskError::Verb("freeze".into()));
        assert!(
            freeze
                .to_string()
                .contains("valid: suspend, resume, recover, reverse, verify, status"),
            "{freeze}"
        );
        for usage in ["resume 1 freeze", "resume", "resume 1 2"] {
            assert_eq!(parse(usage), Err(AskError::Usage(usage.into())));
        }
        assert_eq!(parse("resume one"), Err(AskError::Sequence("one".into())));
    }

    #[test]
    fn an_operator_gets_the_session_s_answer_through_the_socket() {
        let dir = std::env::temp_dir().join(format!("cssc-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let requests = listen(&dir).unwrap();
        let mode = std::fs::metadata(socket_in(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "owner only");
        let session = std::thread::spawn(move || {
            let request = requests.recv().unwrap();
            assert_eq!(
                request.ask,
                Ask::Operate(Operation::Recover { freeze: true }, 2)
            );
            let _ = request.answer.send(Answer {
                outcome: Outcome::Refused,
                message: "sequence 2 is Duplex".into(),
            });
        });
        let answer = send(&dir, Ask::Operate(Operation::Recover { freeze: true }, 2)).unwrap();
        assert_eq!(
            answer,
            Answer {
                outcome: Outcome::Refused,
                message: "sequence 2 is Duplex".into()
            }
        );
        session.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let gone = send(&dir, Ask::Status).unwrap_err();
        assert!(matches!(gone, SendError::NoRun { .. }), "{gone}");
    }
}
