//! A small QMP client: JSON lines over a unix or TCP socket. A reader thread routes
//! each reply to the command that carries its `id` and every asynchronous event to
//! the executor's channel, so commands can be pipelined and events never wait.
//!
//! Chosen over the `qapi` crate: its generated schema is large, tied to QEMU
//! releases, and we use about fifteen commands.

use crate::address::Address;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long any command may take before it is reported as hung.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QmpError {
    /// The daemon could not be reached or the connection broke.
    Io(String),
    /// The daemon refused the command (its class and description).
    Refused {
        class: String,
        desc: String,
    },
    Timeout,
}

impl std::fmt::Display for QmpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QmpError::Io(e) => write!(f, "{e}"),
            QmpError::Refused { desc, .. } => write!(f, "{desc}"),
            QmpError::Timeout => write!(f, "no reply within {}s", COMMAND_TIMEOUT.as_secs()),
        }
    }
}

/// What a daemon says on its own: an event, or that it is gone.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    Event { name: String, data: Value },
    Disconnected,
}

type Pending = Arc<Mutex<HashMap<u64, Sender<Result<Value, QmpError>>>>>;

pub struct Qmp {
    writer: Mutex<WriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
}

trait Stream: std::io::Read + Write + Send {
    fn try_clone_box(&self) -> std::io::Result<Box<dyn Stream>>;
    fn set_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
    fn close(&self);
}

macro_rules! stream {
    ($($t:ty),+) => {$(
        impl Stream for $t {
            fn try_clone_box(&self) -> std::io::Result<Box<dyn Stream>> {
                Ok(Box::new(self.try_clone()?))
            }
            fn set_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
                self.set_read_timeout(timeout)
            }
            fn close(&self) {
                let _ = self.shutdown(std::net::Shutdown::Both);
            }
        }
    )+};
}

stream!(UnixStream, TcpStream);

/// A daemon's QMP monitor serves one client at a time: closing both directions ends
/// the reader thread and frees the monitor for the next client.
impl Drop for Qmp {
    fn drop(&mut self) {
        if let Ok(writer) = self.writer.lock() {
            writer.0.close();
        }
    }
}

impl Qmp {
    /// Connects, reads the greeting, negotiates capabilities, and starts the reader,
    /// which sends every event of this daemon to `notices` tagged with `tag`.
    pub fn connect<T: Clone + Send + 'static>(
        endpoint: &Address,
        tag: T,
        notices: Sender<(T, Notice)>,
    ) -> Result<Qmp, QmpError> {
        let io = |e: std::io::Error| QmpError::Io(e.to_string());
        let stream: Box<dyn Stream> = match endpoint {
            Address::Unix(path) => Box::new(UnixStream::connect(path).map_err(io)?),
            Address::Tcp { host, port } => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Box::new(TcpStream::connect((host, *port)).map_err(io)?)
            }
        };
        stream.set_timeout(Some(COMMAND_TIMEOUT)).map_err(io)?;
        let mut reader = BufReader::new(stream.try_clone_box().map_err(io)?);
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).map_err(io)?;
        if !line.contains("\"QMP\"") {
            return Err(QmpError::Io(format!("not a QMP greeting: {}", line.trim())));
        }
        writer
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .map_err(io)?;
        line.clear();
        reader.read_line(&mut line).map_err(io)?;
        let reply: Value = serde_json::from_str(&line).map_err(|e| QmpError::Io(e.to_string()))?;
        if reply.get("return").is_none() {
            return Err(QmpError::Io(format!(
                "capabilities refused: {}",
                line.trim()
            )));
        }
        writer.set_timeout(None).map_err(io)?;
        let pending: Pending = Arc::default();
        let routes = Arc::clone(&pending);
        std::thread::Builder::new()
            .name("qmp-reader".into())
            .spawn(move || read_loop(reader, routes, tag, notices))
            .map_err(io)?;
        Ok(Qmp {
            writer: Mutex::new(WriteHalf(writer)),
            pending,
            next_id: AtomicU64::new(1),
        })
    }

    /// Sends a command and returns a receiver for its reply.
    fn send(&self, command: &str, arguments: Value) -> Receiver<Result<Value, QmpError>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.pending.lock().expect("pending").insert(id, tx.clone());
        let mut message = json!({ "execute": command, "id": id });
        if !arguments.is_null() {
            message["arguments"] = arguments;
        }
        let mut text = message.to_string();
        text.push('\n');
        let written = self
            .writer
            .lock()
            .expect("writer")
            .write_all(text.as_bytes());
        if let Err(e) = written {
            self.pending.lock().expect("pending").remove(&id);
            let _ = tx.send(Err(QmpError::Io(e.to_string())));
        }
        rx
    }

    /// Runs one command and waits for its reply.
    pub fn execute(&self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        wait(self.send(command, arguments))
    }

    /// Sends every command before reading any reply (pipelined), then collects the
    /// replies in order.
    pub fn execute_all(&self, commands: Vec<(&str, Value)>) -> Vec<Result<Value, QmpError>> {
        let receivers: Vec<_> = commands.into_iter().map(|(c, a)| self.send(c, a)).collect();
        receivers.into_iter().map(wait).collect()
    }
}

fn wait(rx: Receiver<Result<Value, QmpError>>) -> Result<Value, QmpError> {
    rx.recv_timeout(COMMAND_TIMEOUT)
        .unwrap_or(Err(QmpError::Timeout))
}

/// The writing side of a stream (the reader owns its own clone).
struct WriteHalf(Box<dyn Stream>);

impl Write for WriteHalf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn read_loop<T: Clone>(
    mut reader: BufReader<Box<dyn Stream>>,
    pending: Pending,
    tag: T,
    notices: Sender<(T, Notice)>,
) {
    let _ = reader.get_ref().set_timeout(None);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(name) = message.get("event").and_then(Value::as_str) {
            let data = message.get("data").cloned().unwrap_or(Value::Null);
            let _ = notices.send((
                tag.clone(),
                Notice::Event {
                    name: name.to_string(),
                    data,
                },
            ));
            continue;
        }
        let Some(id) = message.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let Some(reply_to) = pending.lock().expect("pending").remove(&id) else {
            continue;
        };
        let reply = match message.get("error") {
            Some(error) => Err(QmpError::Refused {
                class: error["class"].as_str().unwrap_or_default().to_string(),
                desc: error["desc"].as_str().unwrap_or_default().to_string(),
            }),
            None => Ok(message.get("return").cloned().unwrap_or(Value::Null)),
        };
        let _ = reply_to.send(reply);
    }
    for (_, waiting) in pending.lock().expect("pending").drain() {
        let _ = waiting.send(Err(QmpError::Io("connection closed".into())));
    }
    let _ = notices.send((tag, Notice::Disconnected));
}
