//! A stop: held writers released, every job ended (mirrors in step synchronise a last
//! time), and everything the driver added removed, except what a storage that does
//! not answer keeps (said, for `cleanup`).

use super::{commands, names, Intent, Qemu};
use crate::drivers::Driver;
use crate::plan::Pair;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

impl Qemu {
    pub(super) fn shut_down(&mut self) {
        self.stopping = true;
        let pairs: Vec<Pair> = self.jobs.values().map(|j| j.pair.clone()).collect();
        // Held writers go on first.
        let _ = self.thaw(&pairs);
        let _ = self.cancel_all(&pairs, Intent::Stop);
        // Mirrors in sync end once they have synchronised a last time: wait a little.
        // One that cannot (its target's NBD client still reconnecting to a daemon that
        // restarted) is then ended at once: a clean stop leaves no job behind.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut forced = false;
        while !self.jobs.is_empty() && Instant::now() < deadline + Duration::from_secs(5) {
            if !forced && Instant::now() > deadline {
                forced = true;
                for (id, job) in &self.jobs {
                    if let Some(qmp) = self.sites.get(&job.pair.source.storage) {
                        let _ = qmp.run(&commands::BlockJobCancel {
                            device: id,
                            force: true,
                        });
                    }
                }
            }
            let mut ended = Vec::new();
            for (site, qmp) in &self.sites {
                let running: BTreeSet<String> = match qmp.ask(&commands::QueryBlockJobs) {
                    Ok(jobs) => jobs.into_iter().map(|j| j.device).collect(),
                    Err(_) => BTreeSet::new(),
                };
                ended.extend(
                    self.jobs
                        .iter()
                        .filter(|(id, j)| &j.pair.source.storage == site && !running.contains(*id))
                        .map(|(id, _)| id.clone()),
                );
            }
            ended.extend(
                self.jobs
                    .iter()
                    .filter(|(_, j)| !self.sites.contains_key(&j.pair.source.storage))
                    .map(|(id, _)| id.clone()),
            );
            for id in ended {
                self.finish(&id, None);
            }
            if !self.jobs.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for (site, export) in std::mem::take(&mut self.verifying) {
            if let Some(qmp) = self.sites.get(&site) {
                let _ = qmp.run(&commands::BlockExportDel {
                    id: &export,
                    mode: Some("hard"),
                });
            }
        }
        for (site, node, name) in std::mem::take(&mut self.bitmaps) {
            if let Some(qmp) = self.sites.get(&site) {
                let _ = qmp.run(&commands::BlockDirtyBitmapRemove(commands::Bitmap {
                    node: &node,
                    name: &name,
                }));
            }
        }
        for (site, node) in std::mem::take(&mut self.exports) {
            // A recovered target's export is production's: applications run on it,
            // session or not (`reverse`, a switch back or `cleanup` remove it).
            if names::is_production(&node) {
                continue;
            }
            if let Some(qmp) = self.sites.get(&site) {
                let _ = qmp.run(&commands::BlockExportDel {
                    id: &self.names.export(&node),
                    mode: None,
                });
            }
        }
        // An NBD server this driver started stops only when no export is left on it:
        // another session (or the administrator) may export through it now. Before
        // the objects go: its TLS credentials and authz are in use while it runs.
        for site in std::mem::take(&mut self.nbd_servers) {
            if let Some(qmp) = self.sites.get(&site) {
                let idle = (qmp.ask(&commands::QueryBlockExports)).is_ok_and(|e| e.is_empty());
                if idle {
                    let _ = qmp.execute("nbd-server-stop", Value::Null);
                }
            }
        }
        for (site, id) in std::mem::take(&mut self.objects) {
            if let Some(qmp) = self.sites.get(&site) {
                let _ = qmp.run(&commands::ObjectDel { id: &id });
            }
        }
        for ((source, target), pairs) in std::mem::take(&mut self.left_behind) {
            tracing::warn!(
                kind = "storage",
                storage = %source,
                "{pairs} pairs to {target}, which does not answer, keep their nodes in {source}'s daemon: run `cleanup` once {target} answers"
            );
        }
    }
}
