//! Failover and failback (docs/qemu-recipes.md, "Failover and failback").
//!
//! - Recover: a split pair's target becomes a production volume: a bitmap on its
//!   `file` child records what production writes from that instant, and it is
//!   exported writable (`cssc-TAG-prod-VOLUME`). Our production export of the pair's
//!   source, if it has one (a switch back), goes: the source is a target again.
//! - Reverse: the pairs mirror the other way, copying only the union of what changed
//!   on either side since the split. First, in the original source's daemon, the
//!   clusters it wrote after the split (its resync record) are overwritten with
//!   production's data (a backup from an NBD client node to the production export,
//!   through a bitmap merged from the record); then the reversed mirror starts with
//!   production's record as its resync record (resync.rs).

use super::commands::QueryJobs;
use super::commands::{
    Bitmap, BlockDirtyBitmapAdd, BlockDirtyBitmapMerge, BlockExportDel, BlockdevAdd,
    BlockdevBackup, BlockdevDel, Command, JobCancel, JobDismiss, SocketAddress, Sync,
};
use super::names::production;
use super::qmp::Qmp;
use super::replies::JobStatus;
use super::resources::ClientTls;
use super::resync::{file_child, Record, WhyFull, GRANULARITY};
use super::{key, refused, report, Condition, Qemu};
use crate::drivers::{DriverError, PairEvent, PairReport};
use crate::plan::Pair;
use crate::vocab::ContinuousMode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long the overwrite of a failback may take (it copies what changed only).
const OVERWRITE_WITHIN: Duration = Duration::from_secs(600);

impl Qemu {
    /// Makes the targets of `pairs` (split already) production volumes; says, for each,
    /// where applications reach it.
    pub(super) fn recover_targets(&mut self, pairs: &[Pair]) -> Result<Vec<String>, DriverError> {
        self.reach_again(pairs);
        for pair in pairs {
            let id = self.names.job(pair);
            if self.jobs.get(&id).is_some_and(|j| j.frozen) {
                self.await_end(&id);
            }
            if let Some(job) = self.jobs.get(&id) {
                let why = if job.condition == Condition::Failed {
                    "its target failed: it cannot take production (`resume` once its storage is back)"
                } else {
                    "its pair still mirrors: split it first"
                };
                return Err(DriverError::on(
                    &pair.target.storage,
                    &pair.target.name,
                    why,
                ));
            }
        }
        let mut said = Vec::new();
        for pair in pairs {
            let site = pair.target.storage.clone();
            let node = self
                .graph(&site)
                .and_then(|g| file_child(&g, &pair.target))
                .map_err(|e| DriverError::on(&site, &pair.target.name, e))?;
            let record = Record {
                node,
                bitmap: self.names.failover_bitmap(pair),
            };
            self.qmp(&site)?
                .run(&BlockDirtyBitmapAdd {
                    node: &record.node,
                    name: &record.bitmap,
                    granularity: Some(GRANULARITY),
                })
                .map_err(|e| refused(&site, &pair.target, e))?;
            self.bitmaps
                .insert((site.clone(), record.node.clone(), record.bitmap.clone()));
            self.production.insert(key(pair), record);
            // A switch back: the old production volume is a target again.
            let old = (pair.source.storage.clone(), production(&pair.source.name));
            if self.exports.contains(&old) {
                self.qmp(&pair.source.storage)?
                    .run(&BlockExportDel {
                        id: &self.names.production_export(&pair.source.name),
                        mode: None,
                    })
                    .map_err(|e| {
                        DriverError::on(
                            &pair.source.storage,
                            &pair.source.name,
                            format!("its production export cannot go (are applications still connected? stop them there first): {e}"),
                        )
                    })?;
                self.exports.remove(&old);
            }
            let data = self.ensure_nbd_server(&site, &pair.target)?;
            let export = self.export(&pair.target, &production(&pair.target.name))?;
            said.push(format!(
                "{} is production now: NBD export {export} at {data}; what is written to it is recorded from now",
                pair.target
            ));
        }
        Ok(said)
    }

    /// Starts `pairs` (reversed: each source is a recovered target) copying only what
    /// changed on either side since the split; the original source's own changes are
    /// overwritten first, and the reports say how many bytes that was.
    pub(super) fn reverse_pairs(
        &mut self,
        pairs: &[Pair],
        mode: ContinuousMode,
    ) -> Result<Vec<PairReport>, DriverError> {
        let mut reports = Vec::new();
        self.reach_again(pairs);
        self.forget_listings();
        for pair in pairs {
            let theirs = self.records.remove(&key(pair));
            let ours = self.production.remove(&key(pair));
            // What the original source (now the target) wrote after the split, which
            // production never had: taken from production, cluster by cluster.
            let overwritten = match theirs {
                Some(Ok(record)) => match self.record_present(&pair.target.storage, &record) {
                    Ok(true) => self.overwrite(pair, &record).map(Some),
                    Ok(false) => Err(WhyFull::LostAfterSplit(pair.target.clone())),
                    Err(e) => Err(e),
                },
                Some(Err(why)) => Err(why),
                None => Err(WhyFull::NotKnownAfterSplit(pair.target.clone())),
            };
            match (overwritten, ours) {
                (Ok(bytes), Some(record)) => {
                    reports.push(report(
                        pair,
                        PairEvent::Note(format!(
                            "{} bytes written to {} after the split, which {} never had, were overwritten with production's data",
                            bytes.unwrap_or(0),
                            pair.target,
                            pair.source
                        )),
                    ));
                    self.records.insert(key(pair), Ok(record));
                }
                (Ok(_), None) => {
                    self.records.insert(
                        key(pair),
                        Err(WhyFull::NoProductionRecord(pair.source.clone())),
                    );
                }
                (Err(why), ours) => {
                    if let Some(record) = ours {
                        self.drop_bitmap(&pair.source.storage, &record);
                    }
                    self.records.insert(key(pair), Err(why));
                }
            }
        }
        reports.extend(self.start_mirrors(pairs, mode)?);
        Ok(reports)
    }

    /// In the daemon of `pair.target` (the original source): copies from production
    /// the clusters `record` marks there. Returns the bytes copied.
    fn overwrite(&mut self, pair: &Pair, record: &Record) -> Result<u64, WhyFull> {
        let site = pair.target.storage.clone();
        let [node, bitmap, job] = self.names.failback(pair);
        let production = self.names.production_export(&pair.source.name);
        let data = self.plan.storages[&pair.source.storage]
            .data
            .clone()
            .ok_or_else(|| WhyFull::NoData(pair.source.storage.clone()))?;
        let tls = self.client_tls(&pair.target, &pair.source.storage)?;
        let qmp = self.qmp(&site)?;
        fn run<C: Command>(qmp: &Qmp, command: &C) -> Result<Value, WhyFull> {
            qmp.run(command).map_err(|e| WhyFull::Refused {
                command: C::NAME,
                reason: e.to_string(),
            })
        }
        run(
            qmp,
            &BlockdevAdd::Nbd {
                node_name: &node,
                server: SocketAddress::of(&data),
                export: &production,
                read_only: Some(true),
                reconnect_delay: None,
                tls: tls.as_ref().map(ClientTls::options),
            },
        )?;
        let copied = (|| {
            run(
                qmp,
                &BlockDirtyBitmapAdd {
                    node: &node,
                    name: &bitmap,
                    granularity: Some(GRANULARITY),
                },
            )?;
            run(
                qmp,
                &BlockDirtyBitmapMerge {
                    node: &node,
                    target: &bitmap,
                    bitmaps: vec![Bitmap {
                        node: &record.node,
                        name: &record.bitmap,
                    }],
                },
            )?;
            run(
                qmp,
                &BlockdevBackup {
                    job_id: &job,
                    device: &node,
                    target: &pair.target.name,
                    sync: Sync::Bitmap,
                    bitmap: Some(&bitmap),
                    bitmap_mode: Some("never"),
                    auto_dismiss: Some(false),
                    x_perf: None,
                },
            )?;
            let deadline = Instant::now() + OVERWRITE_WITHIN;
            loop {
                let jobs = qmp.ask(&QueryJobs).map_err(|e| WhyFull::Refused {
                    command: QueryJobs::NAME,
                    reason: e.to_string(),
                })?;
                let state = jobs.into_iter().find(|j| j.id == job);
                match state {
                    Some(j) if j.status == JobStatus::Concluded => {
                        let _ = run(qmp, &JobDismiss { id: &job });
                        return match j.error {
                            Some(e) => Err(WhyFull::CopyFailed(e)),
                            None => Ok(j.current_progress),
                        };
                    }
                    Some(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Some(_) => {
                        let _ = run(qmp, &JobCancel { id: &job });
                        return Err(WhyFull::CopyTimedOut(OVERWRITE_WITHIN));
                    }
                    None => return Err(WhyFull::CopyVanished),
                }
            }
        })();
        let _ = run(qmp, &BlockdevDel { node_name: &node });
        if copied.is_ok() {
            self.drop_bitmap(&site, record);
        }
        copied
    }
}
