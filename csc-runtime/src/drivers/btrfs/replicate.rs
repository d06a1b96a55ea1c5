//! One copy of one pair: snapshot the source, send it (whole, or from the last snapshot
//! both pools share) into the target pool's `.cssc`, publish it at the target volume,
//! prune. Runs on a worker thread; nothing here decides what happens next.

use super::names::{Names, DIR};
use super::pool::{Pool, Subvolume};
use super::stream;
use crate::drivers::DriverError;
use crate::plan::Pair;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How a round sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Send {
    /// The whole snapshot (Point-In-Time Copy).
    Full,
    /// From the last snapshot both pools share, whole when there is none.
    Incremental,
    /// No send: the snapshot in the source's pool is the copy (NoCopy).
    Snapshot,
}

/// What a round did.
#[derive(Clone, Debug, Default)]
pub(crate) struct Round {
    /// Bytes of the send stream (0 for a snapshot).
    pub bytes: u64,
    /// Commands in the stream that change the target (0: it had nothing to send).
    pub changes: u64,
    /// When the source was snapshotted: the target holds the source as of then.
    pub at: Option<SystemTime>,
    /// Sent from a snapshot both pools held.
    pub incremental: bool,
    /// Why an incremental round sent everything.
    pub full_because: Option<String>,
}

impl Round {
    /// What a point-in-time copy says of itself when complete.
    pub(crate) fn describe(&self) -> String {
        match (&self.full_because, self.incremental) {
            (Some(why), _) => format!("full copy: {why}: {} bytes sent", self.bytes),
            (None, true) => format!("incremental: {} bytes sent", self.bytes),
            (None, false) => format!("full copy: {} bytes sent", self.bytes),
        }
    }
}

/// A pair's copy, with what it shares with the thread that watches it.
#[derive(Clone)]
pub(crate) struct Job {
    pub pair: Pair,
    pub from: Pool,
    pub to: Pool,
    pub names: Arc<Names>,
    /// Set to end the copy: a running send is killed, what it left is removed.
    pub cancel: Arc<AtomicBool>,
    /// Bytes sent by the running stream.
    pub sent: Arc<AtomicU64>,
    /// Snapshots of the pair to keep in the target pool.
    pub keep: usize,
}

fn stamp() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

impl Job {
    fn same_pool(&self) -> bool {
        self.from.id == self.to.id
    }

    /// The pair's snapshots in `subvolumes`, newest first.
    fn of_pair<'a>(&self, subvolumes: &'a [Subvolume]) -> Vec<(u128, &'a Subvolume)> {
        let mut found: Vec<(u128, &Subvolume)> = subvolumes
            .iter()
            .filter_map(|s| Some((self.names.stamp(&self.pair, &s.name)?, s)))
            .collect();
        found.sort_by_key(|s| std::cmp::Reverse(s.0));
        found
    }

    /// The newest snapshot of the pair both pools hold: in the source's pool, one whose
    /// uuid a completely received subvolume of the target's pool carries.
    pub(crate) fn common(&self) -> Result<Option<String>, DriverError> {
        let (sources, targets) = (self.from.list()?, self.to.list()?);
        let received: Vec<&String> = self
            .of_pair(&targets)
            .into_iter()
            .filter_map(|(_, t)| t.received_uuid.as_ref())
            .collect();
        Ok(self
            .of_pair(&sources)
            .into_iter()
            .find(|(_, s)| received.contains(&&s.uuid))
            .map(|(_, s)| s.name.clone()))
    }

    /// Removes what a killed or failed round left: a subvolume that a receive began
    /// and did not finish (no received uuid).
    pub(crate) fn clean(&self) -> Result<(), DriverError> {
        if !self.same_pool() {
            for (_, s) in self.of_pair(&self.to.list()?) {
                if s.received_uuid.is_none() {
                    self.to.delete(&format!("{DIR}/{}", s.name))?;
                }
            }
        }
        Ok(())
    }

    /// One copy: the source as of now, in the target volume when it returns.
    pub(crate) fn round(&self, send: Send) -> Result<Round, DriverError> {
        self.clean()?;
        let parent = match send {
            Send::Incremental => self.common()?,
            Send::Full | Send::Snapshot => None,
        };
        let snapshot = self.names.snapshot(&self.pair, stamp());
        let at = SystemTime::now();
        self.from.snapshot(&self.pair.source.name, &snapshot)?;
        let mut round = Round {
            at: Some(at),
            incremental: parent.is_some(),
            ..Round::default()
        };
        if send != Send::Snapshot {
            if send == Send::Incremental && parent.is_none() {
                round.full_because = Some("no snapshot of this pair is in both pools".into());
            }
            let sent = self.send(&snapshot, parent.as_deref());
            let stream = match sent {
                Ok(s) => s,
                Err(e) => {
                    let _ = self.from.delete(&snapshot);
                    return Err(e);
                }
            };
            round.bytes = stream.bytes;
            round.changes = stream.changes;
            if parent.is_some() && stream.changes == 0 {
                // Nothing changed: the shared snapshot stays the base, the target as it is.
                self.to.delete(&snapshot)?;
                self.from.delete(&snapshot)?;
                return Ok(round);
            }
        }
        self.publish(&snapshot)?;
        self.prune(&snapshot)?;
        Ok(round)
    }

    /// Sends `snapshot` (from `parent` when given) into the target pool's `.cssc`,
    /// counting the stream as it passes. A failed or cancelled receive's subvolume is
    /// removed.
    fn send(&self, snapshot: &str, parent: Option<&str>) -> Result<stream::Reader, DriverError> {
        let (source, parent_path) = (
            self.from.path(snapshot),
            parent.map(|p| self.from.path(&format!("{DIR}/{p}"))),
        );
        let mut argv = vec!["btrfs", "send", "-q"];
        if let Some(p) = &parent_path {
            argv.extend(["-p", p]);
        }
        argv.push(&source);
        let into = self.to.path(DIR);
        let receive = ["btrfs", "receive", into.as_str()];
        let spawn_failed =
            |pool: &Pool, argv: &[&str], e: std::io::Error| pool.refusal(argv, &e.to_string());
        let mut sender = self
            .from
            .command(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_failed(&self.from, &argv, e))?;
        let mut receiver = match self
            .to
            .command(&receive)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = sender.kill();
                let _ = sender.wait();
                return Err(spawn_failed(&self.to, &receive, e));
            }
        };
        let mut reader = stream::Reader::default();
        self.sent.store(0, Ordering::Relaxed);
        let pumped = {
            let mut out = sender.stdout.take().expect("piped");
            let mut into = receiver.stdin.take().expect("piped");
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                if self.cancel.load(Ordering::Relaxed) {
                    break Err("cancelled".to_string());
                }
                match out.read(&mut buffer) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        reader.feed(&buffer[..n]);
                        self.sent.fetch_add(n as u64, Ordering::Relaxed);
                        if let Err(e) = into.write_all(&buffer[..n]) {
                            break Err(format!("btrfs receive stopped reading: {e}"));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e.to_string()),
                }
            }
        };
        if pumped.is_err() {
            let _ = sender.kill();
            let _ = receiver.kill();
        }
        let sent = sender.wait_with_output();
        let received = receiver.wait_with_output();
        let said = |o: &std::io::Result<std::process::Output>| match o {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) => Some(e.to_string()),
        };
        let failure = match (pumped, said(&sent), said(&received)) {
            (Err(e), _, _) => Some(e),
            (_, Some(e), _) => Some(format!("btrfs send: {e}")),
            (_, _, Some(e)) => Some(format!("btrfs receive: {e}")),
            _ => None,
        };
        if let Some(failure) = failure {
            // The half-received subvolume has no received uuid: never taken for a copy,
            // and removed now (or by the next round's clean, if this pool is gone).
            let _ = self.clean();
            return Err(DriverError::on(
                &self.to.id,
                &self.pair.target.name,
                format!("sending {} failed: {failure}", self.pair.source),
            ));
        }
        Ok(reader)
    }

    /// Makes the target volume a read-only snapshot of `snapshot` (in the target's
    /// pool), replacing the one this session made before. A read-only subvolume cannot
    /// be renamed, so the old one is deleted and the new one made in its place: for
    /// those milliseconds the path is absent (docs/btrfs.md).
    fn publish(&self, snapshot: &str) -> Result<(), DriverError> {
        let target = &self.pair.target.name;
        if self.to.exists(target)? {
            self.owned_target()?;
            self.to.delete(target)?;
        }
        self.to.snapshot(snapshot, target)
    }

    /// Refuses a target volume this session did not publish: one that is not a
    /// snapshot of one of the session's snapshots in its pool.
    pub(crate) fn owned_target(&self) -> Result<(), DriverError> {
        let target = &self.pair.target.name;
        let shown = self.to.show(target)?;
        let ours = self
            .to
            .list()?
            .into_iter()
            .filter(|s| self.names.owns(&s.name))
            .any(|s| Some(&s.uuid) == shown.parent_uuid.as_ref());
        if ours {
            Ok(())
        } else {
            Err(DriverError::on(
                &self.to.id,
                target,
                "exists and is not a copy this session made (it is not a snapshot of one of the session's snapshots): cssc never overwrites a subvolume it did not create; remove it or name another target",
            ))
        }
    }

    /// Keeps the newest `keep` snapshots of the pair in the target's pool and, in the
    /// source's, only `newest` (the base of the next incremental send).
    fn prune(&self, newest: &str) -> Result<(), DriverError> {
        let newest = newest.rsplit('/').next().unwrap_or(newest);
        for (_, s) in self
            .of_pair(&self.to.list()?)
            .into_iter()
            .skip(self.keep.max(1))
        {
            if s.name != newest {
                self.to.delete(&format!("{DIR}/{}", s.name))?;
            }
        }
        if !self.same_pool() {
            for (_, s) in self.of_pair(&self.from.list()?) {
                if s.name != newest {
                    self.from.delete(&format!("{DIR}/{}", s.name))?;
                }
            }
        }
        Ok(())
    }
}
