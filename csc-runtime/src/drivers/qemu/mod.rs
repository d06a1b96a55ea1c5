//! The qemu driver: one qemu-storage-daemon per STORAGE, controlled over QMP. A
//! VOLUME is a block node the administrator defined in that daemon. A pair across
//! sites copies to an NBD client node in the source's daemon, pointing at an export
//! of the target in the target's daemon (its DATA address).
//!
//! Recipes (docs/qemu-recipes.md): Continuous is `blockdev-mirror` (`write-blocking`
//! for Synchronous, `background` for Asynchronous) with `on-target-error=stop`, whose
//! target is a throttle filter (the pair's hold) over the NBD client node; Point-In-Time
//! Copy is `blockdev-backup sync=full`, Incremental `sync=incremental` against a bitmap,
//! NoCopy `sync=none` (copy before write into a fleecing target); the PIT jobs of one
//! site start in one `transaction` (one instant). Freeze is hold (the group's throttle
//! limit set to nothing), cut (every hold filter's child swapped for a null sink) and,
//! at thaw, release (the filters moved to an unlimited group). Everything added to a
//! daemon is named `cssc-TAG-…` (names.rs) and removed by `shutdown`.

mod adopt;
pub mod cleanup;
mod events;
mod failover;
mod hold;
pub(crate) mod names;
pub mod qmp;
mod resync;

use super::{key, report, Driver, DriverError, PairEvent, PairReport, Progress};
use crate::address::Address;
use crate::plan::{Pair, Plan, Timing, Volume};
use crate::vocab::{BaseCopy, ContinuousMode, PointInTimeMode};
use names::Names;
pub use qmp::Notice;
use qmp::{Qmp, QmpError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mirror,
    Backup,
}

/// Why a job is ending, so its end is reported as what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Intent {
    Run,
    Stop,
    /// Frozen: already reported suspended at the cut; its end says nothing more.
    Freeze,
}

#[derive(Debug)]
struct Job {
    pair: Pair,
    kind: Kind,
    /// A write-blocking mirror: its target has every acknowledged write.
    synchronous: bool,
    intent: Intent,
    failed: bool,
    paused: bool,
    /// Cut from its target by a freeze (its writes go to the sink).
    frozen: bool,
    /// The NBD client node in the source's daemon, for a pair across sites.
    remote_node: Option<String>,
    /// Copying what changed since the pair was split, beside the mirror.
    resync: Option<resync::Resync>,
}

pub struct Qemu {
    plan: Plan,
    names: Names,
    notices: Sender<(String, Notice)>,
    sites: BTreeMap<String, Qmp>,
    /// By job id (`Names::job`).
    jobs: BTreeMap<String, Job>,
    /// Exports this driver added: (site, node).
    exports: BTreeSet<(String, String)>,
    /// Sites where this driver started the NBD server.
    nbd_servers: BTreeSet<String>,
    /// Incremental bitmaps this driver added: (site, node, name).
    bitmaps: BTreeSet<(String, String, String)>,
    /// Throttle groups this driver added: (site, id).
    groups: BTreeSet<(String, String)>,
    /// Sites whose daemon stopped answering.
    hung: BTreeSet<String>,
    /// When each frozen sequence's writers were held.
    held: BTreeMap<u32, Instant>,
    /// Bytes the last completed job of each pair copied: (sequence, copyset).
    copied: BTreeMap<(u32, usize), u64>,
    /// What changed on the source of each split pair (or why it is not known).
    records: BTreeMap<(u32, usize), Result<resync::Record, String>>,
    /// What production wrote to each recovered target since its failover.
    production: BTreeMap<(u32, usize), resync::Record>,
    /// Records being copied by a resync job.
    pending_records: BTreeMap<(u32, usize), resync::Record>,
    /// Bytes the last resynchronisation of each pair copied.
    resynced: BTreeMap<(u32, usize), u64>,
    /// Jobs finished before their end event arrived (`await_end`): that event is not
    /// the end of the pair's next job.
    ended: BTreeSet<String>,
    timing: Timing,
}

fn refused(site: &str, volume: &Volume, e: QmpError) -> DriverError {
    DriverError::on(site, &volume.name, e)
}

/// An address as QMP's legacy SocketAddress (`nbd-server-start` takes only this form).
fn socket_legacy(address: &Address) -> Value {
    let flat = socket(address);
    let kind = flat["type"].clone();
    let mut data = flat;
    data.as_object_mut().expect("an object").remove("type");
    json!({ "type": kind, "data": data })
}

/// An address as QMP's SocketAddress.
fn socket(address: &Address) -> Value {
    match address {
        Address::Unix(path) => json!({ "type": "unix", "path": path }),
        Address::Tcp { host, port } => {
            json!({ "type": "inet", "host": host.trim_start_matches('[').trim_end_matches(']'), "port": port.to_string() })
        }
        // Not a qemu address (`Plan::validate` refuses it): qemu says so if it is sent.
        Address::Local(path) | Address::Ssh { path, .. } => {
            json!({ "type": "unix", "path": path })
        }
    }
}

impl Qemu {
    /// Connects to every storage the plan's copy sets use; their notices go to
    /// `notices`. A storage that cannot be reached refuses the connection, unless
    /// `lost_ok` (a run taking over, whose copies run on elsewhere): then it is
    /// reported as gone, as if its daemon had died under the session.
    pub fn connect(
        plan: &Plan,
        notices: Sender<(String, Notice)>,
        lost_ok: bool,
    ) -> Result<Qemu, DriverError> {
        let mut sites = BTreeMap::new();
        for id in plan.storages_of(crate::vocab::DriverKind::Qemu) {
            let storage = &plan.storages[id];
            match watched(&storage.endpoint, id, plan.timing, &notices) {
                Ok(qmp) => {
                    sites.insert(id.to_string(), qmp);
                }
                Err(_) if lost_ok => {
                    let _ = notices.send((id.to_string(), Notice::Disconnected));
                }
                Err(e) => {
                    return Err(DriverError::at(
                        id,
                        format!("cannot reach its QMP endpoint {}: {e}", storage.endpoint),
                    ))
                }
            }
        }
        Ok(Qemu {
            names: Names::of_session(&plan.name),
            plan: plan.clone(),
            notices,
            sites,
            jobs: BTreeMap::new(),
            exports: BTreeSet::new(),
            nbd_servers: BTreeSet::new(),
            bitmaps: BTreeSet::new(),
            groups: BTreeSet::new(),
            hung: BTreeSet::new(),
            held: BTreeMap::new(),
            copied: BTreeMap::new(),
            records: BTreeMap::new(),
            pending_records: BTreeMap::new(),
            production: BTreeMap::new(),
            resynced: BTreeMap::new(),
            ended: BTreeSet::new(),
            timing: plan.timing,
        })
    }

    /// How many bytes the last completed point-in-time copy of a pair copied (for an
    /// incremental copy: what changed since the previous one).
    pub fn bytes_copied(&self, sequence: u32, copyset: usize) -> Option<u64> {
        self.copied.get(&(sequence, copyset)).copied()
    }

    /// How many bytes the last resynchronisation of a pair copied (what changed on its
    /// source while it was split).
    pub fn bytes_resynced(&self, sequence: u32, copyset: usize) -> Option<u64> {
        self.resynced.get(&(sequence, copyset)).copied()
    }

    /// When the writers of `sequence` were held by its last freeze.
    pub fn held_at(&self, sequence: u32) -> Option<Instant> {
        self.held.get(&sequence).copied()
    }

    fn qmp(&self, site: &str) -> Result<&Qmp, DriverError> {
        self.sites
            .get(site)
            .ok_or_else(|| DriverError::at(site, "not connected (its daemon is gone)"))
    }

    /// Connects again to the storages of `pairs` that were lost (they may be back); one
    /// still away stays lost, and what needs it says so.
    fn reach_again(&mut self, pairs: &[Pair]) {
        let sites: BTreeSet<String> = pairs
            .iter()
            .flat_map(|p| [p.source.storage.clone(), p.target.storage.clone()])
            .filter(|site| !self.sites.contains_key(site))
            .collect();
        for site in sites {
            let endpoint = self.plan.storages[&site].endpoint.clone();
            let Ok(qmp) = watched(&endpoint, &site, self.timing, &self.notices) else {
                continue;
            };
            self.sites.insert(site.clone(), qmp);
            self.hung.remove(&site);
            // A daemon that restarted has none of this session's server, exports and
            // throttle groups (one that hung and came back has them: adding them again
            // is harmless).
            self.nbd_servers.remove(&site);
            self.exports.retain(|(s, _)| *s != site);
            self.groups.retain(|(s, _)| *s != site);
        }
    }

    /// The node a job in the source's daemon writes to: the target itself on the same
    /// site, else an NBD client node to the target's export (created here).
    fn target_node(&mut self, pair: &Pair) -> Result<(String, Option<String>), DriverError> {
        if pair.source.storage == pair.target.storage {
            return Ok((pair.target.name.clone(), None));
        }
        let node = self.names.nbd(pair);
        self.nbd_client(pair, &node)?;
        Ok((node.clone(), Some(node)))
    }

    /// Adds NBD client node `node` in the source's daemon, to the target's export
    /// (served first if it is not).
    fn nbd_client(&mut self, pair: &Pair, node: &str) -> Result<(), DriverError> {
        let (export, data) = self.serve_target(pair)?;
        let args = json!({
            "driver": "nbd", "node-name": node, "server": socket(&data), "export": export,
            // A write to a dead target is held this long (not acknowledged without its
            // target) while the rest of the group is held: the failure's own hold.
            "reconnect-delay": self.timing.failed_target_hold_secs,
        });
        self.qmp(&pair.source.storage)?
            .execute("blockdev-add", args)
            .map_err(|e| refused(&pair.source.storage, &pair.target, e))?;
        Ok(())
    }

    /// Starts the NBD server of a storage at its DATA address unless one runs there;
    /// returns the address. `volume` is what needs it (for the refusal).
    fn ensure_nbd_server(&mut self, site: &str, volume: &Volume) -> Result<Address, DriverError> {
        let data = self.plan.storages[site].data.clone().ok_or_else(|| {
            DriverError::on(
                site,
                &volume.name,
                "has no DATA address: other sites cannot reach its volumes",
            )
        })?;
        if !self.nbd_servers.contains(site) {
            match self
                .qmp(site)?
                .execute("nbd-server-start", json!({ "addr": socket_legacy(&data) }))
            {
                Ok(_) => {
                    self.nbd_servers.insert(site.to_string());
                }
                // The administrator's own server (--nbd-server) serves as well.
                Err(QmpError::Refused { desc, .. }) if desc.contains("already running") => {}
                Err(e) => return Err(refused(site, volume, e)),
            }
        }
        Ok(data)
    }

    /// Exports a pair's target in its daemon (starting the NBD server there if it has
    /// none): the export's name and where it is served. Asking again is harmless, and
    /// is how a target daemon that restarted serves the pair again.
    fn serve_target(&mut self, pair: &Pair) -> Result<(String, Address), DriverError> {
        let target_site = pair.target.storage.clone();
        let data = self.ensure_nbd_server(&target_site, &pair.target)?;
        let export = self.export(&pair.target, &pair.target.name)?;
        Ok((export, data))
    }

    /// Exports `volume` writable in its daemon as `names.export(as_name)` (once; an
    /// export that is already there is ours: a daemon that hung and came back keeps
    /// its exports). Returns the export's name.
    fn export(&mut self, volume: &Volume, as_name: &str) -> Result<String, DriverError> {
        let site = &volume.storage;
        let export = self.names.export(as_name);
        let key = (site.clone(), as_name.to_string());
        if !self.exports.contains(&key) {
            match self.qmp(site)?.execute(
                "block-export-add",
                json!({ "type": "nbd", "id": export, "node-name": volume.name, "name": export, "writable": true }),
            ) {
                Ok(_) => {}
                Err(QmpError::Refused { desc, .. }) if desc.contains("already in use") => {}
                Err(e) => return Err(refused(site, volume, e)),
            }
            self.exports.insert(key);
        }
        Ok(export)
    }

    /// Removes a pair's hold filter and sink (`continuous`), its NBD client node, and
    /// the export when no job uses it any more.
    fn release(&mut self, pair: &Pair, continuous: bool, remote_node: Option<String>) {
        if let Some(qmp) = self.sites.get(&pair.source.storage) {
            if continuous {
                for node in [self.names.hold(pair), self.names.sink(pair)] {
                    let _ = qmp.execute("blockdev-del", json!({ "node-name": node }));
                }
            }
        }
        let Some(node) = remote_node else { return };
        if let Some(qmp) = self.sites.get(&pair.source.storage) {
            let _ = qmp.execute("blockdev-del", json!({ "node-name": node }));
        }
        let in_use = self.jobs.values().any(|j| j.pair.target == pair.target);
        let key = (pair.target.storage.clone(), pair.target.name.clone());
        if !in_use && self.exports.remove(&key) {
            if let Some(qmp) = self.sites.get(&pair.target.storage) {
                let _ = qmp.execute(
                    "block-export-del",
                    json!({ "id": self.names.export(&pair.target.name) }),
                );
            }
        }
    }

    fn has_bitmap(&self, site: &str, node: &str, name: &str) -> bool {
        self.bitmaps
            .contains(&(site.to_string(), node.to_string(), name.to_string()))
    }

    fn start_mirrors(
        &mut self,
        pairs: &[Pair],
        mode: ContinuousMode,
    ) -> Result<Vec<PairReport>, DriverError> {
        let mut started = Vec::new();
        let mut reports = Vec::new();
        for pair in pairs {
            let id = self.names.job(pair);
            if self.jobs.get(&id).is_some_and(|j| j.frozen) {
                self.await_end(&id);
            }
            if self.jobs.contains_key(&id) {
                continue;
            }
            // A pair split before copies only what changed since; without a record of
            // that, in full, and the report says why.
            let record = match self.take_record(pair) {
                Some(Ok(record)) => Some(record),
                Some(Err(why)) => {
                    reports.push(report(pair, PairEvent::Note(format!("full copy: {why}"))));
                    None
                }
                None => None,
            };
            self.forget_records_of_target(pair);
            let result = self.target_node(pair).and_then(|(target, remote)| {
                let target = match self.hold_filter(pair, &target) {
                    Ok(node) => node,
                    Err(e) => {
                        self.release(pair, true, remote);
                        return Err(e);
                    }
                };
                let args = json!({
                    "job-id": id, "device": pair.source.name, "target": target,
                    "sync": if record.is_some() { "none" } else { "full" },
                    "on-target-error": "stop", "on-source-error": "stop",
                    "copy-mode": match mode { ContinuousMode::Synchronous => "write-blocking", ContinuousMode::Asynchronous => "background" },
                    // 4 KiB granularity: a 4 KiB write copies 4 KiB, not 64, and a
                    // failed target's resync copies 4 KiB per write it missed
                    // (docs/qemu-recipes.md).
                    "granularity": 4096,
                });
                match self.qmp(&pair.source.storage)?.execute("blockdev-mirror", args) {
                    Ok(_) => Ok(remote),
                    Err(e) => {
                        self.release(pair, true, remote);
                        Err(refused(&pair.source.storage, &pair.source, e))
                    }
                }
            });
            match result {
                Ok(remote_node) => {
                    self.jobs.insert(
                        id.clone(),
                        Job {
                            pair: pair.clone(),
                            kind: Kind::Mirror,
                            synchronous: mode == ContinuousMode::Synchronous,
                            intent: Intent::Run,
                            failed: false,
                            paused: false,
                            frozen: false,
                            remote_node,
                            resync: None,
                        },
                    );
                    started.push(pair.clone());
                    if let Some(record) = record {
                        match self.start_resync(pair, &record) {
                            Ok(resync) => {
                                self.jobs.get_mut(&id).expect("inserted").resync = Some(resync)
                            }
                            Err(e) => {
                                // The mirror runs, but its target lacks what changed:
                                // an error, and the record kept for the next restart.
                                self.records.insert(key(pair), Ok(record));
                                self.jobs.get_mut(&id).expect("inserted").failed = true;
                                reports.push(report(
                                    pair,
                                    PairEvent::Error(format!(
                                        "cannot copy what changed since the split: {e}"
                                    )),
                                ));
                            }
                        }
                    }
                }
                Err(mut e) => {
                    if let Some(record) = record {
                        self.records.insert(key(pair), Ok(record));
                    }
                    // Nothing of this group stays started; what had started has written
                    // part of its target, and the refusal says so.
                    for pair in &started {
                        self.cancel(pair, false);
                    }
                    if !started.is_empty() {
                        let targets: Vec<String> =
                            started.iter().map(|p| p.target.to_string()).collect();
                        e.message.push_str(&format!(
                            "; {} pair(s) of this sequence had started and were ended: their targets are partly written ({})",
                            started.len(),
                            targets.join(", ")
                        ));
                    }
                    return Err(e);
                }
            }
        }
        let mut out: Vec<PairReport> = started
            .iter()
            .map(|p| report(p, PairEvent::Started))
            .collect();
        out.extend(reports);
        Ok(out)
    }

    fn start_backups(
        &mut self,
        pairs: &[Pair],
        mode: PointInTimeMode,
    ) -> Result<Vec<PairReport>, DriverError> {
        let mut by_site: BTreeMap<String, Vec<(Pair, String, Option<String>)>> = BTreeMap::new();
        let mut prepared: Vec<(Pair, Option<String>)> = Vec::new();
        let idle: Vec<&Pair> = pairs
            .iter()
            .filter(|p| !self.jobs.contains_key(&self.names.job(p)))
            .collect();
        for pair in idle {
            match self.target_node(pair) {
                Ok((target, remote)) => {
                    prepared.push((pair.clone(), remote.clone()));
                    by_site
                        .entry(pair.source.storage.clone())
                        .or_default()
                        .push((pair.clone(), target, remote));
                }
                Err(e) => {
                    for (p, remote) in prepared {
                        self.release(&p, false, remote);
                    }
                    return Err(e);
                }
            }
        }
        let mut reports = Vec::new();
        let mut done_sites: Vec<String> = Vec::new();
        for (site, group) in &by_site {
            let bitmap = self.names.incremental_bitmap(group[0].0.sequence);
            let mut actions = Vec::new();
            let mut new_bitmaps = Vec::new();
            for (pair, target, _) in group {
                let mut backup = json!({
                    "job-id": self.names.job(pair), "device": pair.source.name, "target": target, "sync": "full",
                    // copy_file_range between files: as fast as qemu-img convert (docs/qemu-recipes.md).
                    "x-perf": { "use-copy-range": true },
                });
                match mode {
                    PointInTimeMode::Copy => {}
                    PointInTimeMode::NoCopy => backup["sync"] = json!("none"),
                    PointInTimeMode::Incremental
                        if self.has_bitmap(site, &pair.source.name, &bitmap) =>
                    {
                        backup["sync"] = json!("incremental");
                        backup["bitmap"] = json!(bitmap);
                    }
                    PointInTimeMode::Incremental => {
                        // The first copy is full; the bitmap, added at the same instant,
                        // records what the next one must copy.
                        actions.push(json!({ "type": "block-dirty-bitmap-add", "data": { "node": pair.source.name, "name": bitmap } }));
                        new_bitmaps.push((site.clone(), pair.source.name.clone(), bitmap.clone()));
                    }
                }
                actions.push(json!({ "type": "blockdev-backup", "data": backup }));
            }
            let result = self.qmp(site).and_then(|q| {
                q.execute("transaction", json!({ "actions": actions, "properties": { "completion-mode": "individual" } }))
                    .map_err(|e| refused(site, &group[0].0.source, e))
            });
            if let Err(e) = result {
                // Earlier sites' groups already run: stop them; undo every preparation.
                for (p, remote) in &prepared {
                    if done_sites.contains(&p.source.storage) {
                        self.cancel(p, true);
                    } else {
                        self.release(p, false, remote.clone());
                    }
                }
                return Err(e);
            }
            done_sites.push(site.clone());
            self.bitmaps.extend(new_bitmaps);
            for (pair, _, remote) in group {
                self.jobs.insert(
                    self.names.job(pair),
                    Job {
                        pair: pair.clone(),
                        kind: Kind::Backup,
                        synchronous: false,
                        intent: Intent::Run,
                        failed: false,
                        paused: false,
                        frozen: false,
                        remote_node: remote.clone(),
                        resync: None,
                    },
                );
                reports.push(report(pair, PairEvent::Started));
                if mode == PointInTimeMode::NoCopy {
                    // The instant copy exists once the job runs; it lasts until stopped.
                    reports.push(report(pair, PairEvent::Complete));
                }
            }
        }
        Ok(reports)
    }

    /// Waits (up to 10 s) until a job that was told to end has gone from its daemon,
    /// and finishes it now, so its pair can start again under the same job id; the end
    /// event it already sent is then not taken for the new job's.
    fn await_end(&mut self, id: &str) {
        let Some(site) = self.jobs.get(id).map(|j| j.pair.source.storage.clone()) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let listed = self
                .qmp(&site)
                .ok()
                .and_then(|q| q.list("query-block-jobs", Value::Null).ok());
            match listed {
                Some(jobs) if jobs.iter().any(|j| j["device"] == id) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => break,
            }
        }
        self.finish(id, None);
        self.ended.insert(id.to_string());
    }

    /// Asks a pair's job to end (`force`: at once, without a final synchronisation).
    fn cancel(&mut self, pair: &Pair, force: bool) {
        let id = self.names.job(pair);
        if let Some(job) = self.jobs.get_mut(&id) {
            if job.intent == Intent::Run {
                job.intent = Intent::Stop;
            }
            if let Some(qmp) = self.sites.get(&pair.source.storage) {
                let _ = qmp.execute("block-job-cancel", json!({ "device": id, "force": force }));
            }
        }
    }

    /// Sends `block-job-cancel` to every given job, pipelined per site.
    fn cancel_all(&mut self, pairs: &[Pair], intent: Intent) -> Result<(), DriverError> {
        let mut by_site: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
        for pair in pairs {
            let id = self.names.job(pair);
            if let Some(job) = self.jobs.get_mut(&id) {
                job.intent = intent;
                // End at once (no last synchronisation) a failed or paused mirror, which
                // cannot synchronise, and a backup. A mirror in step ends gracefully: a
                // synchronous or frozen one has nothing left to copy, a background one
                // drains first so its target catches up. (A forced cancel of a
                // write-blocking mirror under writes has crashed qemu-storage-daemon
                // 10.0.2 with heap corruption: docs/qemu-recipes.md.)
                let force = job.failed || job.paused || job.kind == Kind::Backup;
                let site = by_site.entry(pair.source.storage.clone()).or_default();
                if job.resync.is_some() {
                    site.push((self.names.resync_job(pair), true));
                }
                site.push((id, force));
            }
        }
        for (site, jobs) in by_site {
            let Ok(qmp) = self.qmp(&site) else { continue };
            let commands = jobs
                .iter()
                .map(|(id, force)| ("block-job-cancel", json!({ "device": id, "force": force })))
                .collect();
            for ((id, _), result) in jobs.iter().zip(qmp.execute_all(commands)) {
                if let Err(e) = result {
                    return Err(DriverError::on(&site, id, e));
                }
            }
        }
        Ok(())
    }
}

/// A QMP connection to a storage, with its heartbeat.
fn watched(
    endpoint: &Address,
    site: &str,
    timing: Timing,
    notices: &Sender<(String, Notice)>,
) -> Result<Qmp, QmpError> {
    let qmp = Qmp::connect(endpoint, site.to_string(), notices.clone())?;
    let watch = qmp::Watch {
        every: timing.heartbeat,
        deadline: timing.hung_after,
    };
    qmp.watch(watch, site.to_string(), notices.clone());
    Ok(qmp)
}

fn size_of(nodes: &Value, name: &str) -> Option<u64> {
    nodes.as_array()?.iter().find(|n| n["node-name"] == name)?["image"]["virtual-size"].as_u64()
}

impl Driver for Qemu {
    type Notice = Notice;

    fn preflight(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        let mut nodes: BTreeMap<String, Value> = BTreeMap::new();
        for site in self.sites.keys() {
            let list = self.sites[site]
                .execute("query-named-block-nodes", json!({ "flat": true }))
                .map_err(|e| DriverError::at(site, format!("cannot list its block nodes: {e}")))?;
            nodes.insert(site.clone(), list);
        }
        for pair in pairs {
            let mut sizes = Vec::new();
            for volume in [&pair.source, &pair.target] {
                let list = &nodes[&volume.storage];
                let size = size_of(list, &volume.name).ok_or_else(|| {
                    let known: Vec<&str> = list
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|n| n["node-name"].as_str())
                        .filter(|n| !n.starts_with('#'))
                        .collect();
                    DriverError::on(
                        &volume.storage,
                        &volume.name,
                        format!(
                            "no block node has this name; its nodes: {}",
                            known.join(", ")
                        ),
                    )
                })?;
                sizes.push(size);
            }
            if sizes[1] < sizes[0] {
                return Err(DriverError::on(
                    &pair.target.storage,
                    &pair.target.name,
                    format!(
                        "the target holds {} bytes, less than its source {} ({} bytes)",
                        sizes[1], pair.source, sizes[0]
                    ),
                ));
            }
        }
        Ok(())
    }

    fn start(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        match copy {
            BaseCopy::Continuous(mode) => self.start_mirrors(pairs, mode),
            BaseCopy::PointInTime(mode) => self.start_backups(pairs, mode),
        }
    }

    fn stop(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        self.cancel_all(pairs, Intent::Stop)
    }

    fn suspend(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        if copy == BaseCopy::Continuous(ContinuousMode::Asynchronous) {
            // A paused background mirror copies nothing and tracks what changes.
            let mut reports = Vec::new();
            for pair in pairs {
                let id = self.names.job(pair);
                let Some(job) = self.jobs.get_mut(&id) else {
                    continue;
                };
                job.paused = true;
                self.qmp(&pair.source.storage)?
                    .execute("block-job-pause", json!({ "device": id }))
                    .map_err(|e| refused(&pair.source.storage, &pair.source, e))?;
                reports.push(report(pair, PairEvent::Suspended));
            }
            return Ok(reports);
        }
        // A paused write-blocking mirror still writes synchronously: split the group
        // the way a freeze does, at one consistent instant, and release at once.
        let reports = self.freeze(pairs)?;
        self.thaw(pairs)?;
        Ok(reports)
    }

    fn resume(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        self.reach_again(pairs);
        let mut reports = Vec::new();
        let mut restart = Vec::new();
        for pair in pairs {
            let id = self.names.job(pair);
            match self.jobs.get(&id) {
                // Kept stopped by a target failure, or paused: it resumes, copying
                // what its own bitmap recorded.
                Some(job) if job.paused || (job.failed && !job.frozen) => {
                    reports.extend(self.resume_kept(&id)?)
                }
                // Frozen: its mirror is ending; the pair restarts.
                Some(job) if job.frozen => restart.push(pair.clone()),
                Some(_) => {}
                None => restart.push(pair.clone()),
            }
        }
        reports.extend(self.start(&restart, copy)?);
        Ok(reports)
    }

    fn freeze(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        self.hold_and_cut(pairs)
    }

    fn thaw(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        self.release_held(pairs)
    }

    fn recover(&mut self, pairs: &[Pair]) -> Result<Vec<String>, DriverError> {
        self.recover_targets(pairs)
    }

    fn reverse(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        match copy {
            BaseCopy::Continuous(mode) => self.reverse_pairs(pairs, mode),
            BaseCopy::PointInTime(_) => Err(DriverError::at(
                &pairs
                    .first()
                    .map_or(String::new(), |p| p.source.storage.clone()),
                "a point-in-time sequence has no direction to reverse",
            )),
        }
    }

    fn interpret(&mut self, site: &str, notice: Notice) -> Vec<PairReport> {
        self.on_notice(site, notice)
    }

    fn progress(&mut self) -> Vec<Progress> {
        let mut out = Vec::new();
        for qmp in self.sites.values() {
            let Ok(Value::Array(jobs)) = qmp.execute("query-block-jobs", Value::Null) else {
                continue;
            };
            for job in jobs {
                let Some((sequence, copyset)) = job["device"]
                    .as_str()
                    .and_then(|id| self.names.pair_of_job(id))
                else {
                    continue;
                };
                let (done, total) = (
                    job["offset"].as_u64().unwrap_or(0),
                    job["len"].as_u64().unwrap_or(0),
                );
                // A background mirror's lag is what it has yet to copy; qemu does not
                // say since when.
                let background = self
                    .jobs
                    .get(job["device"].as_str().unwrap_or_default())
                    .is_some_and(|j| j.kind == Kind::Mirror && !j.synchronous);
                out.push(Progress {
                    sequence,
                    copyset,
                    done,
                    total,
                    in_step: job["ready"] == true,
                    lag: background.then(|| super::Lag {
                        seconds: f64::NAN,
                        bytes: total.saturating_sub(done),
                    }),
                });
            }
        }
        out
    }

    fn heartbeat_ages(&self) -> Vec<(String, Duration)> {
        self.sites
            .iter()
            .map(|(site, qmp)| (site.clone(), qmp.last_heartbeat().elapsed()))
            .collect()
    }

    fn reaches(&self, site: &str) -> bool {
        self.sites.contains_key(site)
    }

    fn adopt(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        self.adopt_left(pairs)
    }

    fn shutdown(&mut self) {
        let pairs: Vec<Pair> = self.jobs.values().map(|j| j.pair.clone()).collect();
        // Held writers go on first.
        let _ = self.thaw(&pairs);
        let _ = self.cancel_all(&pairs, Intent::Stop);
        // Mirrors in sync end once they have synchronised a last time: wait a little.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.jobs.is_empty() && Instant::now() < deadline {
            let mut ended = Vec::new();
            for (site, qmp) in &self.sites {
                let running: BTreeSet<String> = match qmp.execute("query-block-jobs", Value::Null) {
                    Ok(Value::Array(jobs)) => jobs
                        .iter()
                        .filter_map(|j| j["device"].as_str().map(str::to_string))
                        .collect(),
                    _ => BTreeSet::new(),
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
        for (site, node, name) in std::mem::take(&mut self.bitmaps) {
            if let Some(qmp) = self.sites.get(&site) {
                let _ = qmp.execute(
                    "block-dirty-bitmap-remove",
                    json!({ "node": node, "name": name }),
                );
            }
        }
        for (site, node) in std::mem::take(&mut self.exports) {
            // A recovered target's export is production's: applications run on it,
            // session or not (`reverse`, a switch back or `cleanup` remove it).
            if names::is_production(&node) {
                continue;
            }
            if let Some(qmp) = self.sites.get(&site) {
                let _ = qmp.execute(
                    "block-export-del",
                    json!({ "id": self.names.export(&node) }),
                );
            }
        }
        for (site, id) in std::mem::take(&mut self.groups) {
            if let Some(qmp) = self.sites.get(&site) {
                let _ = qmp.execute("object-del", json!({ "id": id }));
            }
        }
        // An NBD server this driver started stops only when no export is left on it:
        // another session (or the administrator) may export through it now.
        for site in std::mem::take(&mut self.nbd_servers) {
            if let Some(qmp) = self.sites.get(&site) {
                let idle = qmp
                    .execute("query-block-exports", Value::Null)
                    .is_ok_and(|e| e.as_array().is_some_and(Vec::is_empty));
                if idle {
                    let _ = qmp.execute("nbd-server-stop", Value::Null);
                }
            }
        }
    }
}
