//! Operator commands to a running session: `BIN suspend SEQ`, `BIN resume SEQ`. The
//! run listens on a unix socket in its state directory (`control.sock`, mode 0600:
//! its owner only); a command is one line (`resume 1`), its answer one JSON line
//! (`{"ok":…,"message":…}`) once the command has done what it does.
//!
//! A socket rather than the journal: the journal has one writer (the run that holds
//! its lock), and the operator wants an answer (done, or refused and why) while the
//! command waits, not a record to be picked up on the next poll.

use crate::vocab::{Command as Verb, Keyword};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

/// The verbs an operator may give a running session.
pub const OPERATOR_VERBS: &[Verb] = &[Verb::Suspend, Verb::Resume];

/// How long an operator command may wait for its answer (a resume waits for the
/// pairs to be in duplex again, copy time included).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(600);

/// The socket of a state directory.
pub fn socket_in(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// One command from an operator, and where its answer goes.
pub struct Request {
    pub verb: Verb,
    pub sequence: u32,
    pub answer: Sender<Answer>,
}

/// What the session answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    pub message: String,
}

/// Listens on the state directory's socket; requests arrive on the returned channel.
/// The caller holds the directory's journal lock, so a socket file left there is a
/// killed run's, and is replaced.
pub fn listen(dir: &Path) -> std::io::Result<Receiver<Request>> {
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
    let answer = match read.map_err(|e| e.to_string()).and_then(|_| parse(&line)) {
        Err(message) => Answer { ok: false, message },
        Ok((verb, sequence)) => {
            let (answer, answered) = mpsc::channel();
            let sent = requests.send(Request {
                verb,
                sequence,
                answer,
            });
            match sent
                .ok()
                .and_then(|()| answered.recv_timeout(ANSWER_WITHIN).ok())
            {
                Some(answer) => answer,
                None => Answer {
                    ok: false,
                    message: "the session did not answer (it is stopping?)".into(),
                },
            }
        }
    };
    let body = json!({ "ok": answer.ok, "message": answer.message });
    let _ = writeln!(&stream, "{body}");
}

/// `VERB SEQ`, e.g. `resume 1`.
fn parse(line: &str) -> Result<(Verb, u32), String> {
    let mut words = line.split_whitespace();
    let (Some(verb), Some(sequence), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("`{}`: write VERB SEQ, e.g. resume 1", line.trim()));
    };
    let verb = Verb::parse(verb)
        .filter(|v| OPERATOR_VERBS.contains(v))
        .ok_or_else(|| {
            let valid: Vec<&str> = OPERATOR_VERBS.iter().map(|v| v.as_str()).collect();
            format!(
                "`{verb}` is not an operator command; valid: {}",
                valid.join(", ")
            )
        })?;
    let sequence = sequence
        .parse()
        .map_err(|_| format!("`{sequence}` is not a sequence number"))?;
    Ok((verb, sequence))
}

/// The operator's side: sends `verb sequence` to the run of `dir` and waits for its
/// answer. `Err` when no run listens there.
pub fn send(dir: &Path, verb: Verb, sequence: u32) -> Result<Answer, String> {
    let path = socket_in(dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "no running session answers at {} ({e}): is `run` running with this state directory?",
            path.display()
        )
    })?;
    writeln!(stream, "{verb} {sequence}").map_err(|e| e.to_string())?;
    let _ = stream.set_read_timeout(Some(ANSWER_WITHIN + Duration::from_secs(5)));
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("the session's answer did not come: {e}"))?;
    let value: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| format!("the session's answer is not JSON ({e}): {line}"))?;
    Ok(Answer {
        ok: value["ok"] == true,
        message: value["message"].as_str().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_is_a_verb_an_operator_may_give_and_a_sequence() {
        assert_eq!(parse("resume 1\n"), Ok((Verb::Resume, 1)));
        assert_eq!(parse("Suspend 12"), Ok((Verb::Suspend, 12)));
        let freeze = parse("freeze 1").unwrap_err();
        assert!(freeze.contains("valid: suspend, resume"), "{freeze}");
        assert!(parse("resume one")
            .unwrap_err()
            .contains("not a sequence number"));
        assert!(parse("resume").unwrap_err().contains("write VERB SEQ"));
        assert!(parse("resume 1 2").unwrap_err().contains("write VERB SEQ"));
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
            assert_eq!((request.verb, request.sequence), (Verb::Resume, 2));
            let _ = request.answer.send(Answer {
                ok: false,
                message: "sequence 2 is Duplex".into(),
            });
        });
        let answer = send(&dir, Verb::Resume, 2).unwrap();
        assert_eq!(
            answer,
            Answer {
                ok: false,
                message: "sequence 2 is Duplex".into()
            }
        );
        session.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let gone = send(&dir, Verb::Resume, 2).unwrap_err();
        assert!(gone.contains("no running session"), "{gone}");
    }
}
