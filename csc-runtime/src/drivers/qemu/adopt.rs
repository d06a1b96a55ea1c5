//! Taking over what a killed run of this session left in the daemons: its jobs keep
//! running there while no session watches them; a new run adopts them (no copy is
//! restarted) with the nodes, exports, bitmaps and throttle groups they use, found by
//! the session's names.

use super::commands::{BlockdevDel, QomList, QueryBlockExports, QueryBlockJobs, ALL_NODES};
use super::qmp::QmpError;
use super::replies::{IoStatus, JobType};
use super::{Condition, Intent, Job, Kind, Qemu};
use crate::drivers::{DriverError, PairEvent, PairReport};
use crate::plan::Pair;
use crate::vocab::{BaseCopy, ContinuousMode};
use std::collections::BTreeSet;

impl Qemu {
    /// Adopts this session's jobs for `pairs` and what they use; reports, for each
    /// adopted pair, that it runs and where it stands (in duplex, failed, suspended).
    pub(super) fn adopt_left(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        let mut reports = Vec::new();
        let sites: Vec<String> = self.sites.keys().cloned().collect();
        for site in sites {
            let qmp = self.qmp(&site)?;
            let cannot = |command: &str| {
                let site = site.clone();
                let command = command.to_string();
                move |e: QmpError| DriverError::at(&site, format!("cannot list {command}: {e}"))
            };
            let jobs = qmp
                .ask(&QueryBlockJobs)
                .map_err(cannot("query-block-jobs"))?;
            let nodes = qmp
                .ask(&ALL_NODES)
                .map_err(cannot("query-named-block-nodes"))?;
            let exports = (qmp.ask(&QueryBlockExports)).map_err(cannot("query-block-exports"))?;
            let objects = (qmp.ask(&QomList { path: "/objects" })).map_err(cannot("qom-list"))?;
            let node = |name: &str| nodes.iter().find(|n| n.node_name == name);
            for pair in pairs.iter().filter(|p| p.source.storage == site) {
                let id = self.names.job(pair);
                let Some(job) = jobs.iter().find(|j| j.device == id) else {
                    // A start killed half way left nodes without a job: roll them back,
                    // so that starting the pair again does not find its names taken.
                    for leftover in [self.names.hold(pair), self.names.sink(pair)] {
                        if node(&leftover).is_some() {
                            let _ = self.sites[&site].run(&BlockdevDel {
                                node_name: &leftover,
                            });
                        }
                    }
                    let client = self.names.nbd(pair);
                    if node(&client).is_some() {
                        self.delete_client(pair, &client);
                    }
                    continue;
                };
                let kind = if job.kind == JobType::Mirror {
                    Kind::Mirror
                } else {
                    Kind::Backup
                };
                let copy = self.plan.sequence(pair.sequence).map(|s| s.copy);
                // A hold filter whose child is its null sink: the pair was cut by a freeze.
                let frozen = node(&self.names.hold(pair))
                    .is_some_and(|n| n.child_driver().as_deref() == Some("null-co"));
                let condition = if job.io_status == IoStatus::Failed {
                    Condition::Failed
                } else if job.paused {
                    Condition::Paused
                } else {
                    Condition::Running
                };
                let remote = self.names.nbd(pair);
                self.jobs.insert(
                    id,
                    Job {
                        pair: pair.clone(),
                        kind,
                        synchronous: copy
                            == Some(BaseCopy::Continuous(ContinuousMode::Synchronous)),
                        intent: if frozen { Intent::Freeze } else { Intent::Run },
                        condition,
                        frozen,
                        remote_node: node(&remote).map(|_| remote),
                        resync: None,
                        bypassed: false,
                    },
                );
                // Started only for a copy that runs: a failed, frozen or paused one is
                // not copying, and a Started would complete an onStart its group never
                // had (a take-over after a failed `resume` went Suspended -> Copying
                // and stayed there: explorer seed 56).
                let running = condition == Condition::Running && !frozen;
                if running {
                    reports.push(super::report(pair, PairEvent::Started));
                }
                let now = if condition == Condition::Failed {
                    Some(PairEvent::Error(
                        "it had failed while no session watched it".into(),
                    ))
                } else if frozen || condition == Condition::Paused {
                    Some(PairEvent::Suspended)
                } else if job.ready {
                    Some(PairEvent::Duplex)
                } else {
                    None
                };
                reports.extend(now.map(|event| super::report(pair, event)));
            }
            for export in &exports {
                if let Some(volume) = self.names.exported_volume(&export.id) {
                    self.exports.insert((site.clone(), volume.to_string()));
                }
            }
            for object in &objects {
                if self.names.owns(&object.name) {
                    self.objects.insert((site.clone(), object.name.clone()));
                }
            }
            for n in &nodes {
                let node_name = n.node_name.as_str();
                for name in n.dirty_bitmaps.iter().filter_map(|b| b.name.as_deref()) {
                    if self.names.owns(name) {
                        self.adopt_record(node_name, name);
                        self.bitmaps.insert((
                            site.clone(),
                            node_name.to_string(),
                            name.to_string(),
                        ));
                    }
                }
            }
        }
        // A target whose daemon restarted (or is gone) while no session ran has lost
        // the export its pair's NBD client reconnects to: the pair has not copied since,
        // whatever its job says, until `resume` serves the target again.
        let lost: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                j.kind == Kind::Mirror
                    && j.remote_node.is_some()
                    && j.condition != Condition::Failed
                    && !j.frozen
                    && !self
                        .exports
                        .contains(&(j.pair.target.storage.clone(), j.pair.target.name.clone()))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &lost {
            let job = self.jobs.get_mut(id).expect("listed");
            job.condition = Condition::Failed;
            let key = (job.pair.sequence, job.pair.copyset);
            reports.retain(|r| (r.sequence, r.copyset) != key);
            reports.push(super::report(
                &job.pair,
                PairEvent::Error(format!(
                    "its target {} lost its export while no session watched it (its daemon restarted, or is gone)",
                    job.pair.target
                )),
            ));
        }
        // A target that does not answer now may hang rather than be gone: a write in
        // flight to it waits until its connection ends, and nothing else ends it (no
        // heartbeat watches a daemon never reached).
        let unreached: BTreeSet<String> = lost
            .iter()
            .map(|id| self.jobs[id].pair.target.storage.clone())
            .filter(|site| !self.sites.contains_key(site))
            .collect();
        for site in unreached {
            if let Err(e) = self.destroy_connections(&site) {
                tracing::warn!(kind = "storage", storage = %site, "writes to {site}, which does not answer, may stay held: {e}");
            }
        }
        reports.extend(self.record_failed(&lost));
        Ok(reports)
    }
}
