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
    /// Older snapshots of the pair that the new one makes surplus, to delete after the
    /// copy is reported (a deletion can wait for the page cache of the files it held):
    /// (in the target's pool, in the source's).
    pub stale: (Vec<String>, Vec<String>),
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
    fn common(&self, sources: &[Subvolume], targets: &[Subvolume]) -> Option<String> {
        let received: Vec<&String> = self
            .of_pair(targets)
            .into_iter()
            .filter_map(|(_, t)| t.received_uuid.as_ref())
            .collect();
        self.of_pair(sources)
            .into_iter()
            .find(|(_, s)| received.contains(&&s.uuid))
            .map(|(_, s)| s.name.clone())
    }

    /// Removes what a killed or failed round left in the target's pool: a subvolume
    /// that a receive began and did not finish (no received uuid). Returns the
    /// target pool's listing without them.
    pub(crate) fn clean(&self) -> Result<Vec<Subvolume>, DriverError> {
        let targets = self.to.list()?;
        if self.same_pool() {
            return Ok(targets);
        }
        let (half, whole): (Vec<Subvolume>, Vec<Subvolume>) = targets.into_iter().partition(|s| {
            s.received_uuid.is_none() && self.names.stamp(&self.pair, &s.name).is_some()
        });
        let paths: Vec<String> = half.iter().map(|s| format!("{DIR}/{}", s.name)).collect();
        self.to.delete(&paths)?;
        Ok(whole)
    }

    /// One copy: the source as of now, in the target volume when it returns. Each
    /// pool is listed once; the rest is one program per step.
    pub(crate) fn round(&self, send: Send) -> Result<Round, DriverError> {
        let targets = self.clean()?;
        let sources = if self.same_pool() {
            targets.clone()
        } else {
            self.from.list()?
        };
        let parent = match send {
            Send::Incremental => self.common(&sources, &targets),
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
                    let _ = self.from.delete(&[snapshot]);
                    return Err(e);
                }
            };
            round.bytes = stream.bytes;
            round.changes = stream.changes;
            if parent.is_some() && stream.changes == 0 {
                // Nothing changed: the shared snapshot stays the base, the target as it is.
                self.to.delete(std::slice::from_ref(&snapshot))?;
                self.from.delete(&[snapshot])?;
                return Ok(round);
            }
        }
        self.publish(&snapshot)?;
        round.stale = self.stale(&sources, &targets);
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
            pump(&mut out, &mut into, &mut reader, &self.sent, &self.cancel)
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
            (Err(e), _, _) => Some(e.to_string()),
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

    /// Points the target volume at `snapshot` (a read-only snapshot in the target's
    /// `.cssc`): the volume is a symbolic link, made beside it and renamed over it, so
    /// a reader finds the previous copy or the new one, never neither, and no
    /// transaction is committed for it (docs/btrfs.md).
    fn publish(&self, snapshot: &str) -> Result<(), DriverError> {
        let target = &self.pair.target.name;
        self.owned_target()?;
        // Relative, so the pool may be mounted elsewhere (or reached over ssh).
        let up = "../".repeat(target.matches('/').count());
        let link = self.names.link(&self.pair);
        // -f: a link a killed round left in the way is replaced.
        self.to.run(&[
            "ln",
            "-sfT",
            &format!("{up}{snapshot}"),
            &self.to.path(&link),
        ])?;
        self.to
            .run(&["mv", "-T", &self.to.path(&link), &self.to.path(target)])
            .map(drop)
    }

    /// Refuses a target volume this session did not make: anything there but a
    /// symbolic link to one of the pair's snapshots.
    pub(crate) fn owned_target(&self) -> Result<(), DriverError> {
        let target = &self.pair.target.name;
        let path = self.to.path(target);
        let ours = match self.to.run(&["readlink", &path]) {
            Ok(link) => link
                .trim_end_matches('\n')
                .rsplit_once(&format!("{DIR}/"))
                .is_some_and(|(up, name)| {
                    up.split('/').all(|s| s.is_empty() || s == "..")
                        && self.names.stamp(&self.pair, name).is_some()
                }),
            Err(_) => !self.to.exists(target)?,
        };
        if ours {
            Ok(())
        } else {
            Err(DriverError::on(
                &self.to.id,
                target,
                "exists and is not a copy this session made (not a link to one of its snapshots): cssc never overwrites a subvolume it did not create; remove it or name another target",
            ))
        }
    }

    /// After a round that made a new snapshot (kept on both sides): the target's pool
    /// keeps the newest `keep - 1` older ones of the pair, the source's none (the new
    /// one is the next base). `sources` and `targets` are the listings from before.
    fn stale(&self, sources: &[Subvolume], targets: &[Subvolume]) -> (Vec<String>, Vec<String>) {
        let path = |s: &Subvolume| format!("{DIR}/{}", s.name);
        let in_target = self
            .of_pair(targets)
            .into_iter()
            .skip(self.keep.max(1) - 1)
            .map(|(_, s)| path(s))
            .collect();
        let in_source = if self.same_pool() {
            Vec::new()
        } else {
            self.of_pair(sources)
                .into_iter()
                .map(|(_, s)| path(s))
                .collect()
        };
        (in_target, in_source)
    }

    /// Deletes what a round made stale.
    pub(crate) fn prune(&self, round: &Round) -> Result<(), DriverError> {
        self.to.delete(&round.stale.0)?;
        self.from.delete(&round.stale.1)
    }
}

/// Why a send stream did not reach its receive.
#[derive(Debug, thiserror::Error)]
enum PumpError {
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Send(#[source] std::io::Error),
    #[error("btrfs receive stopped reading: {0}")]
    Receive(#[source] std::io::Error),
}

/// Moves a send stream into a receive. Read here until the stream shows a change (or
/// ends): that is all [`stream::Reader`] needs to know, usually in the first
/// kilobytes. The rest goes pipe to pipe in the kernel (`io::copy` splices between
/// child pipes), in slices, so that a cancel is seen and the count is current.
fn pump(
    out: &mut std::process::ChildStdout,
    into: &mut std::process::ChildStdin,
    reader: &mut stream::Reader,
    sent: &AtomicU64,
    cancel: &AtomicBool,
) -> Result<(), PumpError> {
    let refused = PumpError::Receive;
    let mut buffer = vec![0u8; 64 << 10];
    while reader.changes == 0 {
        if cancel.load(Ordering::Relaxed) {
            return Err(PumpError::Cancelled);
        }
        let n = match out.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PumpError::Send(e)),
        };
        reader.feed(&buffer[..n]);
        sent.fetch_add(n as u64, Ordering::Relaxed);
        into.write_all(&buffer[..n]).map_err(refused)?;
    }
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(PumpError::Cancelled);
        }
        let n = std::io::copy(&mut (&mut *out).take(16 << 20), into).map_err(refused)?;
        if n == 0 {
            return Ok(());
        }
        reader.bytes += n;
        sent.fetch_add(n, Ordering::Relaxed);
    }
}
