//! Freeze: hold, cut, release (docs/qemu-recipes.md). Every mirror writes to its
//! target through a throttle filter; the filters of a sequence's pairs to one target
//! storage share a throttle group. Hold: the group's limit drops to nothing, so mirror
//! writes wait unacknowledged. Cut: one `blockdev-reopen` per source daemon points
//! the filters at null sinks while the writers wait. Release: the filters move to an
//! unlimited group and the held writes complete into the sinks.

use super::commands::QueryBlockJobs;
use super::commands::{
    BlockJobChange, BlockdevAdd, BlockdevReopen, CopyMode, Limits, ObjectAdd, ObjectDel, QomSet,
    Throttle,
};
use super::names::Names;
use super::{refused, report, Condition, Intent, Kind, Qemu};
use crate::address::Address;
use crate::drivers::{DriverError, PairEvent, PairReport};
use crate::plan::{Pair, Volume};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long an asynchronous pair may take to get in step before its freeze.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Why a hung target's connections were not destroyed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectionsKept {
    #[error("cannot run ss (Debian: iproute2): {0}")]
    NoSs(#[source] std::io::Error),
    #[error("ss -K failed: {0}")]
    SsFailed(String),
    #[error("its DATA address {0} is not TCP: connections to it cannot be destroyed, so writes to it stay held until it answers again")]
    NotTcp(Address),
}

impl Qemu {
    /// The throttle group of a pair's hold: one per sequence, source daemon, target
    /// storage and `HOLD_GROUP_SIZE` copy sets, so a few `qom-set`s hold all the pairs
    /// to a site (a QMP command costs about a millisecond), and pairs to a site that
    /// failed, whose NBD clients hold their writes, are never in a held group (a group
    /// once held keeps its requests waiting on a timer that only a move to another
    /// group undoes).
    fn hold_group(&self, pair: &Pair) -> String {
        let target = self
            .plan
            .storages
            .keys()
            .position(|s| *s == pair.target.storage)
            .unwrap_or(usize::MAX);
        self.names
            .hold_group(pair.sequence, target, Names::shard(pair.copyset))
    }

    /// The hold groups of the jobs `ids`, by source daemon.
    fn hold_groups<'a>(
        &self,
        ids: impl Iterator<Item = &'a String>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for id in ids {
            let pair = &self.jobs[id].pair;
            groups
                .entry(pair.source.storage.clone())
                .or_default()
                .insert(self.hold_group(pair));
        }
        groups
    }

    /// The virtual size of a volume, as its daemon listed it for this group.
    fn size(&mut self, volume: &Volume) -> Result<u64, DriverError> {
        self.listing(&volume.storage)?
            .sizes
            .get(&volume.name)
            .copied()
            .ok_or_else(|| {
                DriverError::on(&volume.storage, &volume.name, "no block node has this name")
            })
    }

    /// A mirror's target: a hold filter (in the sequence's throttle group) over
    /// `target`, and the null sink the cut of a freeze swaps in.
    pub(super) fn hold_filter(&mut self, pair: &Pair, target: &str) -> Result<String, DriverError> {
        let site = pair.source.storage.clone();
        let size = self.size(&pair.source)?;
        let group = self.hold_group(pair);
        self.ensure_object(&site, &ObjectAdd::throttle_group(&group))?;
        let qmp = self.qmp(&site)?;
        qmp.run(&BlockdevAdd::NullCo {
            node_name: &self.names.sink(pair),
            size,
        })
        .map_err(|e| refused(&site, &pair.source, e))?;
        qmp.run(&BlockdevAdd::Throttle(Throttle {
            node_name: &self.names.hold(pair),
            throttle_group: &group,
            file: target,
        }))
        .map_err(|e| refused(&site, &pair.source, e))?;
        Ok(self.names.hold(pair))
    }

    /// Points the hold filters of `ids` at their sinks, in their hold group (the cut)
    /// or in the unlimited one (`release`): one `blockdev-reopen` per source daemon.
    /// Returns the jobs whose filter could not be swapped (a reopen flushes the old
    /// child, which fails when its target died meanwhile).
    fn reopen_holds(&mut self, ids: &[String], release: bool) -> Vec<String> {
        let mut by_site: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        for id in ids {
            let site = self.jobs[id].pair.source.storage.clone();
            by_site.entry(site).or_default().push(id);
        }
        let mut failed = Vec::new();
        for (site, site_ids) in by_site {
            // Each filter's names: (filter, group, sink).
            let names: Vec<[String; 3]> = site_ids
                .iter()
                .map(|id| {
                    let pair = &self.jobs[*id].pair;
                    let group = if release {
                        self.names.free_group(Names::shard(pair.copyset))
                    } else {
                        self.hold_group(pair)
                    };
                    [self.names.hold(pair), group, self.names.sink(pair)]
                })
                .collect();
            let free: BTreeSet<&String> = names.iter().map(|[_, group, _]| group).collect();
            let ready = !release
                || free.iter().all(|g| {
                    self.ensure_object(&site, &ObjectAdd::throttle_group(g))
                        .is_ok()
                });
            fn option([filter, group, sink]: &[String; 3]) -> BlockdevAdd<'_> {
                BlockdevAdd::Throttle(Throttle {
                    node_name: filter,
                    throttle_group: group,
                    file: sink,
                })
            }
            let Some(qmp) = self.sites.get(&site).filter(|_| ready) else {
                failed.extend(site_ids.into_iter().cloned());
                continue;
            };
            let all = BlockdevReopen {
                options: names.iter().map(option).collect(),
            };
            if qmp.run(&all).is_ok() {
                continue;
            }
            // One failed pair fails the whole reopen: swap them one by one.
            for (id, one) in site_ids.into_iter().zip(&names) {
                let one = BlockdevReopen {
                    options: vec![option(one)],
                };
                if qmp.run(&one).is_err() {
                    failed.push(id.clone());
                }
            }
        }
        failed
    }

    /// Asynchronous mirrors of `ids` become write-blocking and are waited for until
    /// their targets are in step; returns the reports of those that did not get there.
    fn catch_up(&mut self, ids: &[String]) -> Vec<PairReport> {
        let mut waiting: Vec<String> = Vec::new();
        for id in ids {
            let job = &self.jobs[id];
            if job.synchronous || job.condition == Condition::Failed {
                continue;
            }
            let site = job.pair.source.storage.clone();
            let changed = self.qmp(&site).and_then(|q| {
                q.run(&BlockJobChange {
                    id,
                    kind: "mirror",
                    copy_mode: CopyMode::WriteBlocking,
                })
                .map_err(|e| DriverError::at(&site, e.to_string()))
            });
            if changed.is_ok() {
                waiting.push(id.clone());
            }
        }
        let deadline = Instant::now() + CATCH_UP;
        while !waiting.is_empty() && Instant::now() < deadline {
            let mut synced = BTreeSet::new();
            for qmp in self.sites.values() {
                if let Ok(jobs) = qmp.ask(&QueryBlockJobs) {
                    synced.extend(
                        jobs.into_iter()
                            .filter(|j| j.actively_synced)
                            .map(|j| j.device),
                    );
                }
            }
            waiting.retain(|id| !synced.contains(id));
            if !waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for id in ids {
            if let Some(job) = self.jobs.get_mut(id) {
                job.synchronous |= !waiting.contains(id);
            }
        }
        waiting
            .iter()
            .map(|id| {
                report(
                    &self.jobs[id].pair,
                    PairEvent::Error(format!(
                        "its asynchronous target did not get in step within {} s: it is not consistent with the group",
                        CATCH_UP.as_secs()
                    )),
                )
            })
            .collect()
    }

    /// Ends the source daemon's TCP connections to a target that hangs, so its held
    /// writes fail after `failed_target_hold_secs` instead of never (SOCK_DESTROY through
    /// `ss -K`; only for connections of this host).
    pub(super) fn destroy_connections(&self, site: &str) -> Result<(), ConnectionsKept> {
        match self.plan.storages[site].data.as_ref() {
            Some(Address::Tcp { host, port }) => {
                let host = crate::address::bare_host(host);
                let out = std::process::Command::new("ss")
                    .args(["-K", "dst", host, "dport", "=", &format!(":{port}")])
                    .output()
                    .map_err(ConnectionsKept::NoSs)?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(ConnectionsKept::SsFailed(
                        String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    ))
                }
            }
            Some(other) => Err(ConnectionsKept::NotTcp(other.clone())),
            None => Ok(()),
        }
    }

    /// Hold then cut every continuous pair of `pairs` (the group): see the module.
    pub(super) fn hold_and_cut(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        let ids: Vec<String> = pairs
            .iter()
            .map(|p| self.names.job(p))
            .filter(|id| {
                self.jobs
                    .get(id)
                    .is_some_and(|j| j.kind == Kind::Mirror && !j.frozen)
            })
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut reports = self.catch_up(&ids);
        // A pair whose target storage is lost (gone or hung) is held by its NBD client
        // (its writes wait failed_target_hold_secs, unacknowledged, then fail): cut
        // already. Every other pair is held, then cut.
        // So is a pair whose mirror failed already (found failed by a take-over while
        // its target's daemon is back): its target lacks writes anyway, and its filter,
        // over a client that lost its server, cannot be swapped (the cut would leave
        // its writers held for ever).
        let cut: Vec<String> = ids
            .iter()
            .filter(|id| {
                let job = &self.jobs[*id];
                self.sites.contains_key(&job.pair.target.storage)
                    && job.condition != Condition::Failed
            })
            .cloned()
            .collect();
        // Hold: the mirror writes of these pairs wait in their filters, unacknowledged.
        // Holds may be staggered across groups and daemons: nothing can depend on a
        // held write. One `qom-set` per group, pipelined per source daemon.
        for (site, site_groups) in self.hold_groups(cut.iter()) {
            let Ok(qmp) = self.qmp(&site) else { continue };
            let commands: Vec<QomSet> = site_groups
                .iter()
                .map(|g| QomSet {
                    path: g,
                    property: "limits",
                    value: Limits { bps_write: Some(1) },
                })
                .collect();
            if let Some(Err(e)) = qmp.run_all(&commands).into_iter().find(Result::is_err) {
                return Err(DriverError::at(
                    &site,
                    format!("cannot hold the writers: {e}"),
                ));
            }
        }
        self.held.insert(pairs[0].sequence, Instant::now());
        // While the writers wait: from here on, what changes on the sources is what
        // the targets will lack, and what a resume copies.
        // (A failed pair's record runs since its failure: events.rs.)
        self.record_changes(&cut);
        // Cut: each filter's child becomes its sink while the writers still wait. The
        // reopen drains, so it waits for writes the NBD clients of failed targets hold.
        let stuck = self.reopen_holds(&cut, false);
        let newly_failed: Vec<String> = stuck
            .iter()
            .filter(|id| self.jobs[*id].condition != Condition::Failed)
            .cloned()
            .collect();
        for id in &ids {
            let job = self.jobs.get_mut(id).expect("listed");
            job.frozen = cut.contains(id) && !stuck.contains(id);
            job.intent = Intent::Freeze;
            if stuck.contains(id) {
                job.condition = Condition::Failed;
                reports.push(report(&job.pair, PairEvent::Error("its target failed during the freeze: its filter cannot be swapped, so its writes stay held (docs/runtime.md, Freeze)".into())));
            } else if !reports.iter().any(|r| r.copyset == job.pair.copyset) {
                reports.push(report(&job.pair, PairEvent::Suspended));
            }
        }
        reports.extend(self.record_failed(&newly_failed));
        Ok(reports)
    }

    /// Release the writers a freeze holds, and end the frozen mirrors.
    pub(super) fn release_held(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        let ids: Vec<String> = pairs
            .iter()
            .map(|p| self.names.job(p))
            .filter(|id| self.jobs.get(id).is_some_and(|j| j.frozen))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        // Release: in a group without limits the held writes go on, into the sinks.
        let stuck = self.reopen_holds(&ids, true);
        let frozen: Vec<Pair> = ids.iter().map(|id| self.jobs[id].pair.clone()).collect();
        // The emptied hold groups go: a group once held keeps new members waiting
        // (its limit set back to nothing does not help, measured), so a pair that
        // starts again gets a fresh group.
        let emptied = self.hold_groups(ids.iter().filter(|id| !stuck.contains(id)));
        for (site, groups) in emptied {
            if let Ok(qmp) = self.qmp(&site) {
                let commands: Vec<ObjectDel> = groups.iter().map(|g| ObjectDel { id: g }).collect();
                for (group, result) in groups.iter().zip(qmp.run_all(&commands)) {
                    if result.is_ok() {
                        self.objects.remove(&(site.clone(), group.clone()));
                    }
                }
            }
        }
        self.cancel_all(&frozen, Intent::Freeze)?;
        match stuck.first() {
            None => Ok(()),
            Some(id) => Err(DriverError::at(
                &self
                    .jobs
                    .get(id)
                    .map_or(String::new(), |j| j.pair.source.storage.clone()),
                format!("cannot release the writers of {}", stuck.join(", ")),
            )),
        }
    }
}
