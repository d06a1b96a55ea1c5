//! The session's journal: an append-only file in its state directory, one record per
//! step of the run (a command before it is issued and once it returned, each group
//! event with the states around it, each action started and ended), each written and
//! fsync'd before the run goes on.
//!
//! Format: records of `[length: u32 LE][CRC-32 of payload: u32 LE][payload: JSON]`.
//! Chosen over an embedded database: it is a log that is only appended and read
//! whole, the JSON stays readable with `tail -c`, and the checksum tells a torn or
//! corrupt tail (a SIGKILL or power loss mid-write) from a record: reading stops at
//! the first record that does not check and reports the bytes it dropped; opening for
//! a run cuts them off.

use crate::core::record::Record;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The most a record may hold: more is taken for garbage, not read.
const MAX_RECORD: u32 = 1 << 20;

/// What reading a journal found past its last good record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Torn {
    /// Where the good records end.
    pub at: u64,
    /// Bytes after that, dropped.
    pub dropped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}", path = .0.display(), source = .1)]
    Io(PathBuf, #[source] std::io::Error),
    /// Another run holds the state directory.
    #[error("another run of this session holds {} (one run per state directory)", .0.display())]
    Busy(PathBuf),
    /// A record checks but does not read: written by another version of cssc. The
    /// journal is left as it is.
    #[error("journal {path}: the record at byte {at} is intact but this runtime cannot read it ({source}); was it written by another version of cssc? The journal was left as it is", path = path.display())]
    Unreadable {
        path: PathBuf,
        at: u64,
        #[source]
        source: serde_json::Error,
    },
    /// The journal's remote store (etcd) did not take the record.
    #[error("the journal in etcd: {0}")]
    Remote(String),
    /// The record was refused because this manager no longer leads (HA).
    #[error("this manager no longer leads: the journal refused its record")]
    Deposed,
}

/// Where a run's records go: the state directory's file ([`Journal`]), or etcd for
/// managers in HA (`crate::ha`). Appended to, never rewritten.
pub trait Store: Send {
    fn append(&mut self, record: &Record) -> Result<(), JournalError>;
}

/// The journal of a run: appended to, never rewritten.
pub struct Journal {
    file: File,
    path: PathBuf,
}

/// The journal's file in a state directory.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join("journal")
}

/// Reads every good record of a journal; a torn or corrupt tail is reported, not read.
pub fn read(path: &Path) -> Result<(Vec<Record>, Option<Torn>), JournalError> {
    let io = |e| JournalError::Io(path.to_path_buf(), e);
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io)?;
    decode(&bytes).map_err(|e| e.at(path))
}

/// A record whose checksum holds and whose payload this runtime cannot read (another
/// version wrote it): an error where it starts, never a torn tail to cut off.
#[derive(Debug)]
struct Unreadable {
    at: u64,
    source: serde_json::Error,
}

impl Unreadable {
    fn at(self, path: &Path) -> JournalError {
        JournalError::Unreadable {
            path: path.to_path_buf(),
            at: self.at,
            source: self.source,
        }
    }
}

fn decode(bytes: &[u8]) -> Result<(Vec<Record>, Option<Torn>), Unreadable> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some((payload, len)) = frame(&bytes[at..]) else {
            let torn = Torn {
                at: at as u64,
                dropped: (bytes.len() - at) as u64,
            };
            return Ok((records, Some(torn)));
        };
        let record = serde_json::from_slice(payload).map_err(|source| Unreadable {
            at: at as u64,
            source,
        })?;
        records.push(record);
        at += len;
    }
    Ok((records, None))
}

/// The checked payload of the record at the start of `bytes`, and the record's length
/// with its header; `None` for a torn or corrupt record.
fn frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(8..8 + len as usize)?;
    (crc32fast::hash(payload) == crc).then_some((payload, 8 + len as usize))
}

fn encode(record: &Record) -> Vec<u8> {
    let payload = serde_json::to_vec(record).expect("records serialise");
    let mut bytes = Vec::with_capacity(payload.len() + 8);
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    bytes
}

/// Whether a run holds the state directory's journal now.
pub fn held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    // SAFETY: flock on a descriptor this function owns; released when it closes.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

/// Makes the journal in `dir` hold exactly `records` (with --ha the state directory's
/// file is this host's copy of the journal in etcd, for `status`): written whole to a
/// new file, synced, then renamed over the old one. Refused while a run holds it.
pub fn replace(dir: &Path, records: &[Record]) -> Result<(), JournalError> {
    let path = path_in(dir);
    if held(&path) {
        return Err(JournalError::Busy(path));
    }
    std::fs::create_dir_all(dir).map_err(|e| JournalError::Io(dir.to_path_buf(), e))?;
    let fresh = dir.join("journal.new");
    let io = |e| JournalError::Io(fresh.clone(), e);
    let mut file = File::create(&fresh).map_err(io)?;
    for record in records {
        file.write_all(&encode(record)).map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    std::fs::rename(&fresh, &path).map_err(|e| JournalError::Io(path.clone(), e))
}

impl Journal {
    /// Opens (or creates) the journal in `dir` for a run: takes the directory for this
    /// run alone, reads what earlier runs wrote, and cuts off a torn tail.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<Record>, Option<Torn>), JournalError> {
        let path = path_in(dir);
        let io = |e| JournalError::Io(path.clone(), e);
        std::fs::create_dir_all(dir).map_err(|e| JournalError::Io(dir.to_path_buf(), e))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        // Another run holds it for as long as it lives; `status` only for an instant
        // (its probe), so a busy lock is tried again for a second before giving up.
        let mut tries = 0;
        // SAFETY: flock on a descriptor owned by `file`, held as long as it is open.
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            tries += 1;
            if tries == 20 {
                return Err(JournalError::Busy(path));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.read_to_end(&mut bytes).map_err(io)?;
        let (records, torn) = decode(&bytes).map_err(|e| e.at(&path))?;
        if let Some(t) = torn {
            file.set_len(t.at).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok((Journal { file, path }, records, torn))
    }
}

impl Store for Journal {
    /// Appends a record and waits until it is on disk.
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let io = |e| JournalError::Io(self.path.clone(), e);
        self.file.write_all(&encode(record)).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::StorageCommand;
    use crate::machine::SequenceState;
    use crate::vocab::{Command as Verb, Event};

    fn records() -> Vec<Record> {
        vec![
            Record::Run {
                pid: 7,
                time: "t0".into(),
                solution: "abc".into(),
            },
            Record::Issue {
                sequence: 1,
                command: StorageCommand::Copy(Verb::Start),
            },
            Record::Done {
                sequence: 1,
                command: StorageCommand::Copy(Verb::Start),
                ok: true,
                detail: String::new(),
            },
            Record::Transition {
                sequence: 1,
                event: Event::OnDuplex,
                from: SequenceState::Copying,
                to: SequenceState::Duplex,
                time: "t1".into(),
            },
        ]
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cssc-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_come_back_in_order_across_runs() {
        let dir = scratch("order");
        let (mut j, earlier, torn) = Journal::open(&dir).expect("open");
        assert!(earlier.is_empty() && torn.is_none());
        for r in &records()[..2] {
            j.append(r).expect("append");
        }
        drop(j);
        let (mut j, earlier, _) = Journal::open(&dir).expect("reopen");
        assert_eq!(earlier, records()[..2]);
        for r in &records()[2..] {
            j.append(r).expect("append");
        }
        assert_eq!(read(&path_in(&dir)).expect("read"), (records(), None));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_torn_last_record_is_dropped_at_every_cut_never_misread() {
        let all: Vec<u8> = records().iter().flat_map(encode).collect();
        let last = encode(records().last().expect("a record"));
        let good = all.len() - last.len();
        for cut in good..all.len() {
            let (read, torn) = decode(&all[..cut]).expect("intact records read");
            assert_eq!(read, records()[..3], "cut at {cut}");
            assert_eq!(
                torn,
                (cut > good).then_some(Torn {
                    at: good as u64,
                    dropped: (cut - good) as u64
                })
            );
        }
        // A flipped byte anywhere in the last record: dropped, not misread.
        for i in good..all.len() {
            let mut bad = all.clone();
            bad[i] ^= 0x40;
            let (read, torn) = decode(&bad).expect("intact records read");
            assert_eq!(read, records()[..3], "byte {i}");
            assert!(torn.is_some());
        }
    }

    #[test]
    fn opening_cuts_a_torn_tail_and_one_run_holds_the_directory() {
        let dir = scratch("tail");
        let (mut j, _, _) = Journal::open(&dir).expect("open");
        j.append(&records()[0]).expect("append");
        assert!(held(&path_in(&dir)));
        assert!(matches!(Journal::open(&dir), Err(JournalError::Busy(_))));
        drop(j);
        assert!(!held(&path_in(&dir)));
        let mut file = OpenOptions::new()
            .append(true)
            .open(path_in(&dir))
            .expect("file");
        file.write_all(&encode(&records()[1])[..5])
            .expect("torn write");
        drop(file);
        let (_j, earlier, torn) = Journal::open(&dir).expect("reopen");
        assert_eq!(earlier, records()[..1]);
        assert_eq!(torn.map(|t| t.dropped), Some(5));
        assert_eq!(
            read(&path_in(&dir)).expect("read"),
            (records()[..1].to_vec(), None),
            "the tail was cut off"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_intact_record_this_runtime_cannot_read_is_an_error_and_the_journal_stays() {
        let dir = scratch("unreadable");
        let (mut j, _, _) = Journal::open(&dir).expect("open");
        j.append(&records()[0]).expect("append");
        drop(j);
        // What another version could write: checksummed, of a kind this one lacks.
        let payload = br#"{"record":"issue","sequence":1,"command":"teleport"}"#;
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        let path = path_in(&dir);
        let good = std::fs::metadata(&path).expect("journal").len();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&frame))
            .expect("append another version's record");
        let before = std::fs::read(&path).expect("bytes");
        for result in [read(&path).map(|_| ()), Journal::open(&dir).map(|_| ())] {
            match result {
                Err(JournalError::Unreadable { at, .. }) => assert_eq!(at, good),
                other => panic!("expected Unreadable at byte {good}, got {other:?}"),
            }
        }
        assert_eq!(
            std::fs::read(&path).expect("bytes"),
            before,
            "nothing was cut"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
