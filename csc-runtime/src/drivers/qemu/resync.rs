//! Resynchronisation: a continuous pair that was split (a freeze, a suspend) or whose
//! target failed gets back in step by copying only what changed on its source since
//! (docs/qemu-recipes.md, "Resynchronisation").
//!
//! - Split by a freeze or a suspend: a dirty bitmap is added on the source's `file`
//!   child while the freeze holds the writers, before the cut, so every write the
//!   target will miss is recorded. Restarting the pair mirrors with `sync=none` and
//!   copies the bitmap with a backup job beside it, from the child (the volume itself
//!   is busy with the mirror) to a second NBD client node (the first is the mirror's).
//!   qemu 10's `blockdev-mirror` takes no bitmap, hence the two jobs.
//! - Target failed: the mirror is kept, stopped on the error; its own dirty bitmap is
//!   the record. Resuming serves the target again and resumes the job until it sticks
//!   (the NBD client reconnects in the background).
//! - A record that is gone (its source daemon restarted: bitmaps of raw volumes live
//!   in memory) is said, and the pair is copied in full: never a silent partial copy.

use super::commands::{
    Bitmap, BlockDirtyBitmapAdd, BlockDirtyBitmapRemove, BlockJobResume, BlockdevBackup,
    QueryBlockGraph, QueryBlockJobs, Sync,
};
use super::replies::{BlockGraph, BlockJob, IoStatus};
use super::{key, report, Condition, Qemu};
use crate::drivers::{DriverError, PairEvent, PairReport};
use crate::plan::{Pair, Volume};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Granularity of the records: 64 KiB, the cluster qemu's backup job copies whatever
/// the bitmap's granularity (block-copy's minimum; measured: 2,622 random 4 KiB writes
/// recorded at 4 KiB still copied 151.8 MiB), so a finer record only costs memory.
pub(super) const GRANULARITY: u64 = 65536;

/// Why what changed on a pair's volume is not known, so the pair is copied in full
/// (and says why: never silent).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum WhyFull {
    /// Its storage is not connected (the driver's refusal says which).
    #[error(transparent)]
    Storage(#[from] DriverError),
    #[error("cannot read the block graph of {site}: {reason}")]
    NoGraph { site: String, reason: String },
    #[error("{0} is not in its daemon's block graph")]
    NotInGraph(Volume),
    #[error("{0} has no named file child to copy from beside its mirror (define the volume as a format node over a named file node)")]
    NoFileChild(Volume),
    #[error("the record of what changed on {0} is lost (its daemon restarted: records of raw volumes live in memory)")]
    Lost(Volume),
    #[error("the record of what changed cannot be read: {0}")]
    Unreadable(String),
    #[error("the record of what changed on {0} after the split is lost (its daemon restarted)")]
    LostAfterSplit(Volume),
    #[error("what changed on {0} after the split is not known (no freeze recorded it: its daemon was lost first)")]
    NotKnownAfterSplit(Volume),
    #[error("no record of what production wrote to {0}")]
    NoProductionRecord(Volume),
    #[error("{0} has no DATA address")]
    NoData(String),
    #[error("{command}: {reason}")]
    Refused {
        command: &'static str,
        reason: String,
    },
    #[error("its changes could not be recorded: {0}")]
    NotRecorded(String),
    #[error("a writer bypassed the mirror of {0} before it was seen")]
    Bypassed(Volume),
    #[error("the copy from production failed: {0}")]
    CopyFailed(String),
    #[error("the copy from production did not end within {} s", .0.as_secs())]
    CopyTimedOut(Duration),
    #[error("the copy from production vanished")]
    CopyVanished,
}
/// How long a kept mirror may take to accept its resume (its NBD client reconnects to
/// a target that came back in the background, backing off up to 16 s between tries).
const RESUME_TRIES: Duration = Duration::from_secs(30);
/// How long a resumed synchronous mirror may take to get back in step.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Where the changes to a split pair's source are recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Record {
    /// The volume's `file` child, which holds the bitmap (for a resync: what it reads).
    pub(super) node: String,
    pub(super) bitmap: String,
}

/// A resync in progress beside a pair's mirror.
#[derive(Debug)]
pub(super) struct Resync {
    /// The mirror is ready (its target gets every new write); the pair is in duplex
    /// once the resync job has copied the record too.
    pub(super) mirror_ready: bool,
    /// The resync job's NBD client node, when the target is on another site.
    remote_node: Option<String>,
}

impl Qemu {
    /// The block graph of a daemon (`x-debug-query-block-graph`: it is the only
    /// command that lists a node's children; `query-named-block-nodes` does not).
    pub(super) fn graph(&self, site: &str) -> Result<BlockGraph, WhyFull> {
        self.qmp(site)?
            .ask(&QueryBlockGraph)
            .map_err(|e| WhyFull::NoGraph {
                site: site.to_string(),
                reason: e.to_string(),
            })
    }

    /// Starts recording what changes on the sources of the mirrors `ids` (a freeze
    /// holds their writers now): one bitmap per pair on the source's `file` child. A
    /// pair that cannot be recorded is
    /// remembered with the reason, which its restart says before it copies in full.
    pub(super) fn record_changes(&mut self, ids: &[String]) {
        let mut by_site: BTreeMap<String, Vec<Pair>> = BTreeMap::new();
        // A pair a writer bypassed keeps what bypass.rs decided: a record started now
        // would miss that writer's earlier writes.
        for id in ids.iter().filter(|id| !self.jobs[*id].bypassed) {
            let pair = self.jobs[id].pair.clone();
            by_site
                .entry(pair.source.storage.clone())
                .or_default()
                .push(pair);
        }
        for (site, pairs) in by_site {
            let graph = self.graph(&site);
            let mut recorded = Vec::new();
            for pair in pairs {
                match graph
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|g| file_child(g, &pair.source))
                {
                    Ok(node) => {
                        let bitmap = self.names.resync_bitmap(&pair);
                        recorded.push((pair, Record { node, bitmap }));
                    }
                    Err(why) => {
                        self.records.insert(key(&pair), Err(why));
                    }
                }
            }
            // A record left from an earlier split goes first: this one replaces it.
            for (pair, _) in &recorded {
                if let Some(Ok(old)) = self.records.remove(&key(pair)) {
                    self.drop_bitmap(&site, &old);
                }
            }
            // One command per pair, pipelined: a `transaction` would drain the daemon
            // while the writers are held, and a drain lets held writes through
            // (tests/consistency.rs found writes past a gap on a target).
            let commands: Vec<BlockDirtyBitmapAdd> = recorded
                .iter()
                .map(|(_, r)| BlockDirtyBitmapAdd {
                    node: &r.node,
                    name: &r.bitmap,
                    granularity: Some(GRANULARITY),
                })
                .collect();
            let added = match self.qmp(&site) {
                Ok(q) => q
                    .run_all(&commands)
                    .into_iter()
                    .map(|r| r.map_err(|e| e.to_string()))
                    .collect(),
                Err(e) => vec![Err(e.to_string()); recorded.len()],
            };
            for ((pair, record), added) in recorded.into_iter().zip(added) {
                let entry = match added {
                    Ok(_) => {
                        self.bitmaps.insert((
                            site.clone(),
                            record.node.clone(),
                            record.bitmap.clone(),
                        ));
                        Ok(record)
                    }
                    Err(reason) => Err(WhyFull::NotRecorded(reason)),
                };
                self.records.insert(key(&pair), entry);
            }
        }
    }

    /// Takes a restarting pair's record, if it has one: `Ok` when it can be copied,
    /// `Err` with why the pair must be copied in full (said, never silent).
    pub(super) fn take_record(&mut self, pair: &Pair) -> Option<Result<Record, WhyFull>> {
        let record = self.records.remove(&key(pair))?;
        Some(record.and_then(|r| {
            let site = &pair.source.storage;
            if self.record_present(site, &r)? {
                Ok(r)
            } else {
                self.bitmaps
                    .retain(|(s, _, b)| !(s == site && *b == r.bitmap));
                Err(WhyFull::Lost(pair.source.clone()))
            }
        }))
    }

    /// Whether a record's bitmap is still in its daemon (`Err`: it cannot be asked).
    pub(super) fn record_present(&mut self, site: &str, record: &Record) -> Result<bool, WhyFull> {
        let listing = self
            .listing(site)
            .map_err(|e| WhyFull::Unreadable(e.to_string()))?;
        Ok(listing
            .bitmaps
            .contains(&(record.node.clone(), record.bitmap.clone())))
    }

    /// Drops the records of pairs whose target `pair` is about to write: they would
    /// no longer say what the target lacks.
    pub(super) fn forget_records_of_target(&mut self, pair: &Pair) {
        // The records are few (split pairs); the plan's pairs are many.
        let stale: Vec<(u32, usize)> = self
            .records
            .keys()
            .filter(|&&(sequence, copyset)| {
                (sequence, copyset) != key(pair)
                    && self.plan.copysets[copyset].volumes.get(sequence as usize)
                        == Some(&pair.target)
            })
            .copied()
            .collect();
        for k in stale {
            if let Some(Ok(record)) = self.records.remove(&k) {
                let source = &self.plan.copysets[k.1].volumes[k.0 as usize - 1].storage;
                self.drop_bitmap(&source.clone(), &record);
            }
        }
    }

    pub(super) fn drop_bitmap(&mut self, site: &str, record: &Record) {
        if let Some(qmp) = self.sites.get(site) {
            let _ = qmp.run(&BlockDirtyBitmapRemove(Bitmap {
                node: &record.node,
                name: &record.bitmap,
            }));
        }
        self.bitmaps
            .retain(|(s, n, b)| !(s == site && *n == record.node && *b == record.bitmap));
    }

    /// Copies a record to a pair whose mirror (`sync=none`) was just started: a backup
    /// of the recorded clusters from the source's child to a second client node.
    pub(super) fn start_resync(
        &mut self,
        pair: &Pair,
        record: &Record,
    ) -> Result<Resync, DriverError> {
        let site = pair.source.storage.clone();
        let (target, remote_node) = if pair.source.storage == pair.target.storage {
            (pair.target.name.clone(), None)
        } else {
            let node = self.names.resync_nbd(pair);
            self.nbd_client(pair, &node)?;
            (node.clone(), Some(node))
        };
        let backup = BlockdevBackup {
            job_id: &self.names.resync_job(pair),
            device: &record.node,
            target: &target,
            sync: Sync::Bitmap,
            bitmap: Some(&record.bitmap),
            bitmap_mode: Some("on-success"),
            auto_dismiss: Some(true),
            x_perf: None,
        };
        if let Err(e) = self.qmp(&site)?.run(&backup) {
            if let Some(node) = &remote_node {
                self.delete_client(pair, node);
            }
            return Err(DriverError::on(&site, &pair.source.name, e));
        }
        self.pending_records.insert(key(pair), record.clone());
        Ok(Resync {
            mirror_ready: false,
            remote_node,
        })
    }

    /// The end of a resync job (`len`: bytes it copied): the pair is in duplex if its
    /// mirror is ready; its record is removed. On an error the record is kept, so a
    /// later restart copies it again.
    pub(super) fn resync_ended(
        &mut self,
        id: &str,
        len: Option<u64>,
        error: Option<String>,
    ) -> Vec<PairReport> {
        let Some((sequence, copyset)) = self.names.pair_of_resync_job(id) else {
            return Vec::new();
        };
        let Some(job) = self
            .jobs
            .values_mut()
            .find(|j| j.pair.sequence == sequence && j.pair.copyset == copyset)
        else {
            return Vec::new();
        };
        let pair = job.pair.clone();
        let resync = job.resync.take();
        let record = self.pending_records.remove(&(sequence, copyset));
        if let Some(node) = resync.as_ref().and_then(|r| r.remote_node.as_deref()) {
            self.delete_client(&pair, node);
        }
        if let Some(e) = error {
            if let Some(record) = record {
                self.records.insert(key(&pair), Ok(record));
            }
            return vec![report(
                &pair,
                PairEvent::Error(format!("copying what changed since the split failed: {e}")),
            )];
        }
        if let Some(record) = &record {
            self.drop_bitmap(&pair.source.storage, record);
        }
        let bytes = len.unwrap_or(0);
        self.resynced.insert((sequence, copyset), bytes);
        let mut reports = vec![report(
            &pair,
            PairEvent::Note(format!(
                "resynchronised: {bytes} bytes copied (what changed on the source since the split)"
            )),
        )];
        if resync.is_some_and(|r| r.mirror_ready) {
            reports.push(report(&pair, PairEvent::Duplex));
        }
        reports
    }

    /// Reports copies that run on through a resume: Started, and Duplex for those in
    /// step (one `query-block-jobs` per source daemon; one not yet in step says so by
    /// its BLOCK_JOB_READY later).
    pub(super) fn still_running(&self, ids: &[String]) -> Vec<PairReport> {
        let mut reports = Vec::new();
        let sites: BTreeSet<&str> = ids
            .iter()
            .map(|id| self.jobs[id].pair.source.storage.as_str())
            .collect();
        let mut ready: BTreeSet<String> = BTreeSet::new();
        for site in sites {
            let listed = self
                .qmp(site)
                .and_then(|q| q.ask(&QueryBlockJobs).map_err(|e| DriverError::at(site, e)));
            ready.extend(
                (listed.unwrap_or_default().into_iter())
                    .filter(|j| j.ready)
                    .map(|j| j.device),
            );
        }
        for id in ids {
            let pair = &self.jobs[id].pair;
            reports.push(report(pair, PairEvent::Started));
            if ready.contains(id) {
                reports.push(report(pair, PairEvent::Duplex));
            }
        }
        reports
    }

    /// Resumes a mirror that was kept stopped (a target failure) or paused (an
    /// asynchronous suspend): its target is served again, the job resumed until it
    /// sticks; a synchronous one is waited for until it is in step again.
    pub(super) fn resume_kept(&mut self, id: &str) -> Result<Vec<PairReport>, DriverError> {
        let job = &self.jobs[id];
        let pair = job.pair.clone();
        let (failed, synchronous) = (job.condition == Condition::Failed, job.synchronous);
        let site = pair.source.storage.clone();
        if failed && pair.source.storage != pair.target.storage {
            self.serve_target(&pair)?;
        }
        let state = |q: &Qemu| -> Option<BlockJob> {
            q.qmp(&site)
                .ok()?
                .ask(&QueryBlockJobs)
                .ok()?
                .into_iter()
                .find(|j| j.device == id)
        };
        let before = state(self).map_or(0, |j| j.offset);
        let deadline = Instant::now() + RESUME_TRIES;
        loop {
            let _ = self.qmp(&site)?.run(&BlockJobResume { device: id });
            std::thread::sleep(Duration::from_millis(200));
            let now = state(self).ok_or_else(|| {
                DriverError::on(
                    &site,
                    &pair.source.name,
                    "its mirror ended while it was resumed",
                )
            })?;
            if !now.paused && now.io_status != IoStatus::Failed {
                break;
            }
            if Instant::now() > deadline {
                return Err(DriverError::on(
                    &site,
                    &pair.target.name,
                    format!(
                        "its mirror does not resume within {} s: is the target back?",
                        RESUME_TRIES.as_secs()
                    ),
                ));
            }
        }
        let job = self.jobs.get_mut(id).expect("listed");
        job.condition = Condition::Running;
        job.intent = super::Intent::Run;
        let mut reports = vec![report(&pair, PairEvent::Started)];
        if !synchronous {
            reports.push(report(
                &pair,
                PairEvent::Note("resumed: it copies what changed while it was paused".into()),
            ));
            reports.push(report(&pair, PairEvent::Duplex));
            return Ok(reports);
        }
        let deadline = Instant::now() + CATCH_UP;
        while !state(self).is_some_and(|j| j.actively_synced) {
            if Instant::now() > deadline {
                return Ok(reports);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let after = state(self).map_or(before, |j| j.offset);
        let bytes = after.saturating_sub(before);
        self.resynced.insert(key(&pair), bytes);
        reports.push(report(
            &pair,
            PairEvent::Note(format!(
                "resynchronised: {bytes} bytes copied (what changed on the source while its target was away)"
            )),
        ));
        reports.push(report(&pair, PairEvent::Duplex));
        Ok(reports)
    }

    /// Takes over, after a killed run, the records its freezes and failovers left
    /// (bitmaps named for a pair's resync or failover).
    pub(super) fn adopt_record(&mut self, node: &str, bitmap: &str) {
        let record = || Record {
            node: node.to_string(),
            bitmap: bitmap.to_string(),
        };
        if let Some(pair) = self.names.pair_of_resync_bitmap(bitmap) {
            self.records.insert(pair, Ok(record()));
        } else if let Some(pair) = self.names.pair_of_failover_bitmap(bitmap) {
            self.production.insert(pair, record());
        }
    }
}

/// The name of the `file` child of `volume`'s node in a daemon's block graph.
pub(super) fn file_child(graph: &BlockGraph, volume: &Volume) -> Result<String, WhyFull> {
    let parent = (graph.nodes.iter())
        .find(|n| n.name == volume.name)
        .ok_or_else(|| WhyFull::NotInGraph(volume.clone()))?;
    (graph.edges.iter())
        .find(|e| e.parent == parent.id && e.name == "file")
        .and_then(|e| graph.nodes.iter().find(|n| n.id == e.child))
        .map(|n| n.name.clone())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| WhyFull::NoFileChild(volume.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_record_goes_on_the_volume_s_file_child() {
        // As qemu-storage-daemon 10.0.2 answers x-debug-query-block-graph.
        let graph: BlockGraph = serde_json::from_value(json!({
            "edges": [{ "name": "file", "parent": 2, "child": 1, "perm": [], "shared-perm": [] }],
            "nodes": [
                { "name": "a", "type": "block-driver", "id": 2 },
                { "name": "a-file", "type": "block-driver", "id": 1 },
            ],
        }))
        .expect("a block graph");
        let volume = |name: &str| Volume {
            storage: "s".into(),
            name: name.into(),
        };
        assert_eq!(file_child(&graph, &volume("a")), Ok("a-file".into()));
        assert_eq!(
            file_child(&graph, &volume("a-file")),
            Err(WhyFull::NoFileChild(volume("a-file")))
        );
        assert_eq!(
            file_child(&graph, &volume("b")),
            Err(WhyFull::NotInGraph(volume("b")))
        );
    }
}
