//! A small QMP client: JSON lines over a unix or TCP socket. A reader thread routes
//! each reply to the command that carries its `id` and every asynchronous event to
//! the executor's channel, so commands can be pipelined and events never wait.
//!
//! Chosen over the `qapi` crate: its generated schema is large, tied to QEMU
//! releases, and we use about fifteen commands.

use super::replies::JobEvent;
use crate::address::Address;
use crate::tls::{Tls, TlsError, TlsStream};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long any command may take before it is reported as hung.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The daemon could not be reached or the connection broke.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// What came back is not QMP (a greeting, a reply), or the monitor closed.
    #[error("{0}")]
    Protocol(String),
    /// The daemon refused the command: its class, its description, and what the
    /// description says, read once here ([`Refusal::of`]).
    #[error("{desc}")]
    Refused {
        class: String,
        desc: String,
        kind: Refusal,
    },
    #[error("no reply in time")]
    Timeout,
    /// The storage's TLS credentials cannot be used.
    #[error(transparent)]
    Credentials(#[from] TlsError),
    /// The TLS handshake failed: a certificate was refused by either side.
    #[error("TLS handshake: {0} (check the storage's [tls] files, its daemon's tls-creds and tls-authz)")]
    Tls(#[source] std::io::Error),
}

/// What a refusal is about. QEMU's class is GenericError for nearly everything, so its
/// description is all there is: read here, at the edge, once, into a kind the driver
/// matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A name (node, object, job, export) is taken: "Duplicate ID", "duplicate
    /// property", "is already in use".
    Taken,
    /// The volume is used by someone else (a job, a writer): "in use".
    InUse,
    /// The NBD server runs already: "already running".
    AlreadyRunning,
    Other,
}

impl Refusal {
    pub fn of(desc: &str) -> Refusal {
        if desc.contains("uplicate") || desc.contains("already in use") {
            Refusal::Taken
        } else if desc.contains("in use") {
            Refusal::InUse
        } else if desc.contains("already running") {
            Refusal::AlreadyRunning
        } else {
            Refusal::Other
        }
    }
}

/// What a daemon says on its own: an event, that it is gone (its monitor closed), or
/// that it hangs (a heartbeat went unanswered past its deadline).
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    Job(JobEvent),
    Disconnected,
    Hung,
    /// Its NBD server at the DATA address did not greet within the deadline, though
    /// the monitor may answer: the data link is cut (a partition gives no EOF and no
    /// RST), or the server hangs.
    DataHung,
}

/// How a connection is watched: a heartbeat every `every`, and the daemon is hung
/// when one goes unanswered for `deadline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    pub every: Duration,
    pub deadline: Duration,
}

type Pending = Arc<Mutex<HashMap<u64, Sender<Result<Value, QmpError>>>>>;

/// Where the reader also sends the id of each job that ends, while someone waits for
/// ends (`Qmp::job_ends`).
type Ends = Arc<Mutex<Option<Sender<String>>>>;

pub struct Qmp {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<WriteHalf>,
    pending: Pending,
    ends: Ends,
    next_id: AtomicU64,
    /// Commands of ours awaiting their reply: while the monitor works for us (a drain
    /// can hold it for a while) a missing heartbeat reply proves nothing.
    busy: AtomicUsize,
    /// When the daemon last answered a heartbeat (or the connection was made).
    heartbeat: Mutex<Instant>,
    /// The monitor's address, for debug records.
    monitor: String,
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

impl Stream for TlsStream {
    fn try_clone_box(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn set_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }
    fn close(&self) {
        let _ = self.tcp().shutdown(std::net::Shutdown::Both);
    }
}

/// A daemon's QMP monitor serves one client at a time: closing both directions ends
/// the reader thread and frees the monitor for the next client.
impl Drop for Qmp {
    fn drop(&mut self) {
        if let Ok(writer) = self.inner.writer.lock() {
            writer.0.close();
        }
    }
}

impl Qmp {
    /// Connects (to a `tcp:` monitor over TLS when `tls` has cssc's credentials), reads the
    /// greeting, negotiates capabilities, and starts the reader, which sends every
    /// event of this daemon to `notices` tagged with `tag`.
    pub fn connect<T: Clone + Send + 'static>(
        endpoint: &Address,
        tls: Option<&Tls>,
        tag: T,
        notices: Sender<(T, Notice)>,
    ) -> Result<Qmp, QmpError> {
        let stream: Box<dyn Stream> = match endpoint {
            Address::Unix(path) => Box::new(connect_unix(path, CONNECT_TIMEOUT)?),
            Address::Local(_) | Address::Ssh { .. } => {
                return Err(QmpError::Protocol(format!(
                    "{endpoint} is a pool, not a QMP monitor"
                )))
            }
            Address::Tcp { host, port } => {
                let host = crate::address::bare_host(host);
                let address = std::net::ToSocketAddrs::to_socket_addrs(&(host, *port))?
                    .next()
                    .ok_or_else(|| QmpError::Protocol(format!("{host} has no address")))?;
                // A partitioned host must not hold the session in connect for minutes.
                let tcp = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
                match tls.and_then(|t| Some((t.monitor.as_ref()?, t.hostname.as_deref()))) {
                    None => Box::new(tcp),
                    Some((credentials, hostname)) => {
                        let (config, server) = credentials.client(hostname.unwrap_or(host))?;
                        tcp.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                        tcp.set_write_timeout(Some(CONNECT_TIMEOUT))?;
                        // No answer in time is a daemon that does not answer, not a
                        // certificate refused.
                        let stream =
                            TlsStream::handshake(tcp, config, server).map_err(|e| {
                                match e.kind() {
                                    std::io::ErrorKind::WouldBlock
                                    | std::io::ErrorKind::TimedOut => QmpError::Io(e),
                                    _ => QmpError::Tls(e),
                                }
                            })?;
                        stream.tcp().set_write_timeout(None)?;
                        Box::new(stream)
                    }
                }
            }
        };
        // A daemon that accepts but does not greet (stopped) is not waited for long.
        stream.set_timeout(Some(CONNECT_TIMEOUT))?;
        let mut reader = BufReader::new(stream.try_clone_box()?);
        let mut writer = stream;
        let mut line = String::new();
        let greeted = read_past_events(&mut reader, &mut line);
        // Over TLS 1.3 the client's side of the handshake ends before the daemon has
        // checked cssc's certificate: a refusal is the connection closing instead of
        // the greeting.
        let over_tls =
            matches!(endpoint, Address::Tcp { .. }) && tls.is_some_and(|t| t.monitor.is_some());
        if over_tls && (greeted.is_err() || line.is_empty()) {
            let why = greeted.err().map_or(String::new(), |e| format!(" ({e})"));
            return Err(QmpError::Tls(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("the daemon closed the connection instead of greeting{why}: it refused cssc's certificate (not of its CA, or a DN its monitor's tls-authz does not allow)"),
            )));
        }
        greeted?;
        if !line.contains("\"QMP\"") {
            return Err(QmpError::Protocol(format!(
                "not a QMP greeting: {}",
                line.trim()
            )));
        }
        writer.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
        read_past_events(&mut reader, &mut line)?;
        let reply: Value =
            serde_json::from_str(&line).map_err(|e| QmpError::Protocol(e.to_string()))?;
        if reply.get("return").is_none() {
            return Err(QmpError::Protocol(format!(
                "capabilities refused: {}",
                line.trim()
            )));
        }
        writer.set_timeout(None)?;
        let pending: Pending = Arc::default();
        let ends: Ends = Arc::default();
        let (routes, taps) = (Arc::clone(&pending), Arc::clone(&ends));
        std::thread::Builder::new()
            .name("qmp-reader".into())
            .spawn(move || read_loop(reader, routes, taps, tag, notices))?;
        Ok(Qmp {
            inner: Arc::new(Inner {
                writer: Mutex::new(WriteHalf(writer)),
                pending,
                ends,
                next_id: AtomicU64::new(1),
                busy: AtomicUsize::new(0),
                heartbeat: Mutex::new(Instant::now()),
                monitor: endpoint.to_string(),
            }),
        })
    }

    /// When the daemon last answered a heartbeat.
    pub fn last_heartbeat(&self) -> Instant {
        *self.inner.heartbeat.lock().expect("heartbeat")
    }

    /// Watches the daemon: a `query-version` heartbeat; `Notice::Hung` (once) when one
    /// is not answered within the deadline. Ends with the connection.
    pub fn watch<T: Send + 'static>(&self, watch: Watch, tag: T, notices: Sender<(T, Notice)>) {
        let inner = Arc::downgrade(&self.inner);
        let _ = std::thread::Builder::new()
            .name("qmp-heartbeat".into())
            .spawn(move || heartbeat(inner, watch, tag, notices));
    }

    /// The id of every job of this daemon that ends from now on (its notices still
    /// go out too), until the next call.
    pub fn job_ends(&self) -> Receiver<String> {
        let (tx, rx) = mpsc::channel();
        *self.inner.ends.lock().expect("ends") = Some(tx);
        rx
    }

    /// Watches the daemon's NBD server at `data` from this host, as long as this
    /// connection lives: every `watch.every` a new connection must bring the NBD
    /// greeting within `watch.deadline`, then ends with NBD_OPT_ABORT (a clean end, no
    /// complaint in the daemon's log). No answer in time sends `Notice::DataHung`
    /// (once). A refused connection is an answer: the server is not started yet, or
    /// the daemon is gone, which its monitor says.
    pub fn watch_data<T: Send + 'static>(
        &self,
        data: std::net::SocketAddr,
        watch: Watch,
        tag: T,
        notices: Sender<(T, Notice)>,
    ) {
        let inner = Arc::downgrade(&self.inner);
        let _ = std::thread::Builder::new()
            .name("nbd-probe".into())
            .spawn(move || loop {
                std::thread::sleep(watch.every);
                if inner.upgrade().is_none() {
                    return;
                }
                if !greets(data, watch.deadline) {
                    let _ = notices.send((tag, Notice::DataHung));
                    return;
                }
            });
    }

    /// Runs one command and waits for its reply.
    pub fn execute(&self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        self.execute_within(command, arguments, COMMAND_TIMEOUT)
    }

    /// Runs one command and waits at most `timeout` for its reply.
    pub fn execute_within(
        &self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        self.call(command, arguments, timeout, None::<fn()>)
    }

    /// Runs one command; when no reply has come within `patience`, calls `unblock`
    /// once (which should free what the daemon waits for) and waits the rest of the
    /// usual timeout.
    pub fn execute_unblocking(
        &self,
        command: &str,
        arguments: Value,
        patience: Duration,
        unblock: impl FnOnce(),
    ) -> Result<Value, QmpError> {
        self.call(command, arguments, patience, Some(unblock))
    }

    /// One command of ours, counted as busy while it waits: its reply within
    /// `patience`, else (with `unblock`) that called and the rest of the usual timeout.
    fn call(
        &self,
        command: &str,
        arguments: Value,
        patience: Duration,
        unblock: Option<impl FnOnce()>,
    ) -> Result<Value, QmpError> {
        self.inner.busy.fetch_add(1, Ordering::SeqCst);
        let sent = Instant::now();
        let rx = self.inner.send(command, arguments);
        let reply = match (rx.recv_timeout(patience), unblock) {
            (Ok(reply), _) => reply,
            (Err(RecvTimeoutError::Timeout), Some(unblock)) => {
                unblock();
                wait(rx, COMMAND_TIMEOUT.saturating_sub(patience))
            }
            (Err(_), _) => Err(QmpError::Timeout),
        };
        self.inner.busy.fetch_sub(1, Ordering::SeqCst);
        self.inner.replied(command, sent, &reply);
        reply
    }

    /// Runs a query whose reply is a list (an empty one if it is not).
    pub fn list(&self, command: &str, arguments: Value) -> Result<Vec<Value>, QmpError> {
        Ok(self
            .execute(command, arguments)?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Sends every command before reading any reply (pipelined), then collects the
    /// replies in order.
    pub fn execute_all(&self, commands: Vec<(&str, Value)>) -> Vec<Result<Value, QmpError>> {
        self.inner.busy.fetch_add(1, Ordering::SeqCst);
        let sent = Instant::now();
        let receivers: Vec<_> = commands
            .into_iter()
            .map(|(c, a)| (c, self.inner.send(c, a)))
            .collect();
        let replies = receivers
            .into_iter()
            .map(|(command, rx)| {
                let reply = wait(rx, COMMAND_TIMEOUT);
                self.inner.replied(command, sent, &reply);
                reply
            })
            .collect();
        self.inner.busy.fetch_sub(1, Ordering::SeqCst);
        replies
    }
}

/// Whether an NBD server at `data` answers within `deadline`: its newstyle greeting,
/// or a refused connection.
fn greets(data: std::net::SocketAddr, deadline: Duration) -> bool {
    use std::io::Read;
    let mut stream = match TcpStream::connect_timeout(&data, deadline) {
        Ok(stream) => stream,
        Err(e) => return e.kind() == std::io::ErrorKind::ConnectionRefused,
    };
    let _ = stream.set_read_timeout(Some(deadline));
    let _ = stream.set_write_timeout(Some(deadline));
    // NBDMAGIC, IHAVEOPT, 16 bits of handshake flags.
    let mut greeting = [0u8; 18];
    if stream.read_exact(&mut greeting).is_err() || &greeting[..8] != b"NBDMAGIC" {
        return false;
    }
    // Client flags (fixed newstyle, no zeroes), then NBD_OPT_ABORT with no data.
    let mut abort = vec![0, 0, 0, 3];
    abort.extend_from_slice(b"IHAVEOPT");
    abort.extend_from_slice(&2u32.to_be_bytes());
    abort.extend_from_slice(&0u32.to_be_bytes());
    let _ = stream.write_all(&abort);
    true
}

fn heartbeat<T>(inner: Weak<Inner>, watch: Watch, tag: T, notices: Sender<(T, Notice)>) {
    loop {
        std::thread::sleep(watch.every);
        let Some(connection) = inner.upgrade() else {
            return;
        };
        if connection.busy.load(Ordering::SeqCst) > 0 {
            continue;
        }
        let reply = connection.send("query-version", Value::Null);
        drop(connection);
        match reply.recv_timeout(watch.deadline) {
            Ok(Ok(_)) => {
                if let Some(connection) = inner.upgrade() {
                    *connection.heartbeat.lock().expect("heartbeat") = Instant::now();
                }
            }
            // The connection is gone: the reader reports it.
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let ours = inner
                    .upgrade()
                    .is_some_and(|c| c.busy.load(Ordering::SeqCst) > 0);
                if !ours {
                    let _ = notices.send((tag, Notice::Hung));
                    return;
                }
            }
        }
    }
}

impl Inner {
    /// A debug record of a command of ours and its reply (a storage that answers
    /// slowly, or not, is diagnosed from these).
    fn replied(&self, command: &str, sent: Instant, reply: &Result<Value, QmpError>) {
        let ms = sent.elapsed().as_millis() as u64;
        match reply {
            Ok(_) => {
                tracing::debug!(kind = "qmp", monitor = %self.monitor, command, ms, "{command}: replied in {ms} ms")
            }
            Err(e) => {
                tracing::debug!(kind = "qmp", monitor = %self.monitor, command, ms, "{command}: {e} after {ms} ms")
            }
        }
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
            let _ = tx.send(Err(QmpError::Io(e)));
        }
        rx
    }
}

/// Connects to a unix socket, giving up after `within`. connect(2) to a listener whose
/// queue is full blocks for ever, and a stopped daemon's monitor queue fills with one
/// client (a killed run's, never accepted): a run started then would never start. So
/// the socket connects non-blocking, and EAGAIN (queue full) is tried again until the
/// deadline.
fn connect_unix(path: &str, within: Duration) -> std::io::Result<UnixStream> {
    use std::os::fd::FromRawFd;
    let bytes = path.as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid empty address.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{path}: not a socket path (too long, or a NUL byte)"),
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (to, from) in addr.sun_path.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    let length = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    let deadline = Instant::now() + within;
    loop {
        // SAFETY: a new socket; its descriptor is owned by the stream at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a socket this function just opened and nothing else owns.
        let stream = unsafe { UnixStream::from_raw_fd(fd) };
        // SAFETY: `addr` is a valid sockaddr_un of `length` bytes.
        let connected = unsafe {
            libc::connect(
                fd,
                std::ptr::addr_of!(addr).cast::<libc::sockaddr>(),
                length,
            )
        };
        if connected == 0 {
            stream.set_nonblocking(false)?;
            return Ok(stream);
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EAGAIN) {
            return Err(error);
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{path} accepts no connection (its queue is full: the daemon is stopped or stuck)"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads the next line that is not an event into `line`: a monitor whose previous
/// client just left may first flush events meant for that client, before its greeting
/// or a reply to the new one.
fn read_past_events(reader: &mut impl BufRead, line: &mut String) -> std::io::Result<()> {
    for _ in 0..64 {
        line.clear();
        reader.read_line(line)?;
        if !line.contains("\"event\"") {
            break;
        }
    }
    Ok(())
}

fn wait(rx: Receiver<Result<Value, QmpError>>, timeout: Duration) -> Result<Value, QmpError> {
    rx.recv_timeout(timeout).unwrap_or(Err(QmpError::Timeout))
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

/// Whether a line is an event the driver does not act on (`JobEvent::NAMES`), known
/// without parsing it. A job emits JOB_STATUS_CHANGE twice at every graph change of
/// its daemon (each drains every job): a start of N pairs sends O(N²) of them, which
/// parsed and queued made the session's memory and time grow as N² (BENCHMARKS.md).
fn ignored_event(line: &str) -> bool {
    // QEMU writes an event as {"timestamp": ..., "event": "NAME", ...}; a reply
    // never starts with a timestamp.
    if !line.starts_with("{\"timestamp\"") {
        return false;
    }
    let Some(at) = line.find("\"event\": \"") else {
        return false;
    };
    let name = line[at + 10..].split('"').next().unwrap_or_default();
    !JobEvent::NAMES.contains(&name)
}

fn read_loop<T: Clone>(
    mut reader: BufReader<Box<dyn Stream>>,
    pending: Pending,
    ends: Ends,
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
        if ignored_event(&line) {
            continue;
        }
        if line.starts_with("{\"timestamp\"") {
            // An event the driver acts on (the rest were dropped above).
            match serde_json::from_str::<JobEvent>(&line) {
                Ok(event) => {
                    tracing::trace!(kind = "qmp", ?event, "event");
                    if let JobEvent::Completed { device, .. } | JobEvent::Cancelled { device } =
                        &event
                    {
                        if let Some(tap) = ends.lock().expect("ends").as_ref() {
                            let _ = tap.send(device.clone());
                        }
                    }
                    let _ = notices.send((tag.clone(), Notice::Job(event)));
                }
                Err(e) => tracing::warn!(kind = "qmp", "an event of another shape: {e}: {line}"),
            }
            continue;
        }
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(id) = message.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let Some(reply_to) = pending.lock().expect("pending").remove(&id) else {
            continue;
        };
        let reply = match message.get("error") {
            Some(error) => {
                let desc = error["desc"].as_str().unwrap_or_default().to_string();
                Err(QmpError::Refused {
                    class: error["class"].as_str().unwrap_or_default().to_string(),
                    kind: Refusal::of(&desc),
                    desc,
                })
            }
            None => Ok(message.get("return").cloned().unwrap_or(Value::Null)),
        };
        let _ = reply_to.send(reply);
    }
    for (_, waiting) in pending.lock().expect("pending").drain() {
        let _ = waiting.send(Err(QmpError::Protocol("connection closed".into())));
    }
    let _ = notices.send((tag, Notice::Disconnected));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_the_driver_does_not_act_on_are_dropped_unparsed() {
        let status = r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "JOB_STATUS_CHANGE", "data": {"status": "paused", "id": "j"}}"#;
        let ready = r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "BLOCK_JOB_READY", "data": {"device": "j"}}"#;
        let reply = r#"{"return": [{"event": "JOB_STATUS_CHANGE"}], "id": 3}"#;
        assert!(ignored_event(status));
        assert!(!ignored_event(ready));
        assert!(!ignored_event(reply));
    }

    /// A listener that accepts nobody (a stopped daemon): once its queue is full, a
    /// connection gives up at its deadline instead of blocking for ever.
    #[test]
    fn a_unix_connect_to_a_full_queue_gives_up_in_time() {
        let dir = std::env::temp_dir().join(format!("cssc-connect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("stopped.sock");
        let _ = std::fs::remove_file(&path);
        let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let path = path.to_str().expect("utf-8").to_string();
        let mut queued = Vec::new();
        let refused = loop {
            let started = Instant::now();
            match connect_unix(&path, Duration::from_millis(100)) {
                Ok(stream) => queued.push(stream),
                Err(e) => break (e, started.elapsed()),
            }
            assert!(queued.len() < 10_000, "the queue never filled");
        };
        assert_eq!(
            refused.0.kind(),
            std::io::ErrorKind::TimedOut,
            "{}",
            refused.0
        );
        assert!(refused.1 < Duration::from_secs(2), "{:?}", refused.1);
        assert!(!queued.is_empty());
        assert!(connect_unix(
            dir.join("none.sock").to_str().unwrap(),
            Duration::from_millis(100)
        )
        .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn qemus_refusals_are_read_into_the_kinds_the_driver_matches() {
        // QEMU 9's words (qom/object.c, block.c, block/export/export.c, job.c,
        // blockdev-nbd.c).
        for (desc, kind) in [
            (
                "attempt to add duplicate property 'cssc-t1' to object (type 'container')",
                Refusal::Taken,
            ),
            ("Duplicate nodes with node-name='cssc-x'", Refusal::Taken),
            ("Block export id 'cssc-e' is already in use", Refusal::Taken),
            ("Job ID 'cssc-m' already in use", Refusal::Taken),
            (
                "Node 'a' is busy: block device is in use by block job: mirror",
                Refusal::InUse,
            ),
            ("NBD server already running", Refusal::AlreadyRunning),
            (
                "Cannot find device='nope' nor node-name='nope'",
                Refusal::Other,
            ),
        ] {
            assert_eq!(Refusal::of(desc), kind, "{desc}");
        }
    }
}
