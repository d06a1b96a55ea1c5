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
//! daemon is named `cssc-...` and removed by `shutdown`.

pub mod qmp;

use super::{Driver, DriverError, PairEvent, PairReport, Progress};
use crate::plan::{Pair, Plan, Timing, Volume};
use crate::vocab::{BaseCopy, ContinuousMode, PointInTimeMode};
use qmp::{Notice, Qmp, QmpError};
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
}

pub struct Qemu {
    plan: Plan,
    notices: Sender<(String, Notice)>,
    sites: BTreeMap<String, Qmp>,
    /// By job id (`cssc-s{sequence}-c{copyset}`).
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
    timing: Timing,
}

fn job_id(pair: &Pair) -> String {
    format!("cssc-s{}-c{}", pair.sequence, pair.copyset)
}

/// A continuous pair's hold: the throttle filter its mirror writes through.
fn hold_node(pair: &Pair) -> String {
    format!("cssc-hold-s{}-c{}", pair.sequence, pair.copyset)
}

/// Where a frozen pair's writes go after the cut: a null node of the source's size.
fn sink_node(pair: &Pair) -> String {
    format!("cssc-sink-s{}-c{}", pair.sequence, pair.copyset)
}

/// The unlimited group released holds move to.
const FREE_GROUP: &str = "cssc-free";

/// How long an asynchronous pair may take to get in step before its freeze.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Which pair a job id names.
fn parse_job_id(id: &str) -> Option<(u32, usize)> {
    let rest = id.strip_prefix("cssc-s")?;
    let (sequence, copyset) = rest.split_once("-c")?;
    Some((sequence.parse().ok()?, copyset.parse().ok()?))
}

fn site_error(site: &str, message: String) -> DriverError {
    DriverError {
        site: site.to_string(),
        volume: None,
        message,
    }
}

fn refused(site: &str, volume: &Volume, e: QmpError) -> DriverError {
    DriverError {
        site: site.to_string(),
        volume: Some(volume.name.clone()),
        message: e.to_string(),
    }
}

/// An address as QMP's legacy SocketAddress (`nbd-server-start` takes only this form).
fn socket_legacy(address: &crate::address::Address) -> Value {
    let flat = socket(address);
    let kind = flat["type"].clone();
    let mut data = flat;
    data.as_object_mut().expect("an object").remove("type");
    json!({ "type": kind, "data": data })
}

/// An address as QMP's SocketAddress.
fn socket(address: &crate::address::Address) -> Value {
    match address {
        crate::address::Address::Unix(path) => json!({ "type": "unix", "path": path }),
        crate::address::Address::Tcp { host, port } => {
            json!({ "type": "inet", "host": host.trim_start_matches('[').trim_end_matches(']'), "port": port.to_string() })
        }
    }
}

impl Qemu {
    /// Connects to every storage the plan's copy sets use; their notices go to `notices`.
    pub fn connect(plan: &Plan, notices: Sender<(String, Notice)>) -> Result<Qemu, DriverError> {
        let used: BTreeSet<&str> = plan
            .copysets
            .iter()
            .flat_map(|c| c.volumes.iter().map(|v| v.storage.as_str()))
            .collect();
        let mut sites = BTreeMap::new();
        for id in used {
            let storage = &plan.storages[id];
            let qmp =
                watched(&storage.endpoint, id, plan.timing, &notices).map_err(|e| DriverError {
                    site: id.to_string(),
                    volume: None,
                    message: format!("cannot reach its QMP endpoint {}: {e}", storage.endpoint),
                })?;
            sites.insert(id.to_string(), qmp);
        }
        Ok(Qemu {
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
            timing: plan.timing,
        })
    }

    /// The throttle group of a pair's hold: one per sequence, source daemon and target
    /// storage, so one `qom-set` holds all the pairs to a site (a QMP command costs
    /// about a millisecond), and pairs to a site that failed, whose NBD clients hold
    /// their writes, are never in a held group (a group once held keeps its requests
    /// waiting on a timer that only a move to another group undoes).
    fn hold_group(&self, pair: &Pair) -> String {
        let target = self
            .plan
            .storages
            .keys()
            .position(|s| *s == pair.target.storage)
            .unwrap_or(usize::MAX);
        format!("cssc-hold-s{}-t{target}", pair.sequence)
    }

    /// Whether the session is connected to this storage's daemon.
    pub fn reaches(&self, site: &str) -> bool {
        self.sites.contains_key(site)
    }

    /// How many bytes the last completed point-in-time copy of a pair copied (for an
    /// incremental copy: what changed since the previous one).
    pub fn bytes_copied(&self, sequence: u32, copyset: usize) -> Option<u64> {
        self.copied.get(&(sequence, copyset)).copied()
    }

    /// When the writers of `sequence` were held by its last freeze.
    pub fn held_at(&self, sequence: u32) -> Option<Instant> {
        self.held.get(&sequence).copied()
    }

    /// Adds a throttle group to a daemon once.
    fn ensure_group(&mut self, site: &str, id: &str) -> Result<(), DriverError> {
        let key = (site.to_string(), id.to_string());
        if !self.groups.contains(&key) {
            self.qmp(site)?
                .execute(
                    "object-add",
                    json!({ "qom-type": "throttle-group", "id": id, "limits": {} }),
                )
                .map_err(|e| site_error(site, format!("cannot add throttle group {id}: {e}")))?;
            self.groups.insert(key);
        }
        Ok(())
    }

    /// The virtual size of a volume, as its daemon reports it.
    fn size(&self, volume: &Volume) -> Result<u64, DriverError> {
        let nodes = self
            .qmp(&volume.storage)?
            .execute("query-named-block-nodes", json!({ "flat": true }))
            .map_err(|e| refused(&volume.storage, volume, e))?;
        size_of(&nodes, &volume.name).ok_or_else(|| DriverError {
            site: volume.storage.clone(),
            volume: Some(volume.name.clone()),
            message: "no block node has this name".into(),
        })
    }

    /// A mirror's target: a hold filter (in the sequence's throttle group) over
    /// `target`, and the null sink the cut of a freeze swaps in.
    fn hold_filter(&mut self, pair: &Pair, target: &str) -> Result<String, DriverError> {
        let site = pair.source.storage.clone();
        let size = self.size(&pair.source)?;
        let group = self.hold_group(pair);
        self.ensure_group(&site, &group)?;
        let qmp = self.qmp(&site)?;
        qmp.execute(
            "blockdev-add",
            json!({ "driver": "null-co", "node-name": sink_node(pair), "size": size }),
        )
        .map_err(|e| refused(&site, &pair.source, e))?;
        qmp.execute(
            "blockdev-add",
            json!({ "driver": "throttle", "node-name": hold_node(pair), "throttle-group": group, "file": target }),
        )
        .map_err(|e| refused(&site, &pair.source, e))?;
        Ok(hold_node(pair))
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
            let ready = !release || self.ensure_group(&site, FREE_GROUP).is_ok();
            let option = |pair: &Pair| {
                let group = if release {
                    FREE_GROUP.to_string()
                } else {
                    self.hold_group(pair)
                };
                json!({ "driver": "throttle", "node-name": hold_node(pair), "throttle-group": group, "file": sink_node(pair) })
            };
            let Some(qmp) = self.sites.get(&site).filter(|_| ready) else {
                failed.extend(site_ids.into_iter().cloned());
                continue;
            };
            let all: Vec<Value> = site_ids
                .iter()
                .map(|id| option(&self.jobs[*id].pair))
                .collect();
            if qmp
                .execute("blockdev-reopen", json!({ "options": all }))
                .is_ok()
            {
                continue;
            }
            // One failed pair fails the whole reopen: swap them one by one.
            for id in site_ids {
                let one = option(&self.jobs[id].pair);
                if qmp
                    .execute("blockdev-reopen", json!({ "options": [one] }))
                    .is_err()
                {
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
            if job.synchronous || job.failed {
                continue;
            }
            let site = job.pair.source.storage.clone();
            let changed = self.qmp(&site).and_then(|q| {
                q.execute(
                    "block-job-change",
                    json!({ "id": id, "type": "mirror", "copy-mode": "write-blocking" }),
                )
                .map_err(|e| site_error(&site, e.to_string()))
            });
            if changed.is_ok() {
                waiting.push(id.clone());
            }
        }
        let deadline = Instant::now() + CATCH_UP;
        while !waiting.is_empty() && Instant::now() < deadline {
            let mut synced = BTreeSet::new();
            for qmp in self.sites.values() {
                if let Ok(Value::Array(jobs)) = qmp.execute("query-block-jobs", Value::Null) {
                    synced.extend(
                        jobs.iter()
                            .filter(|j| j["actively-synced"] == true)
                            .filter_map(|j| j["device"].as_str().map(str::to_string)),
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
    fn destroy_connections(&self, site: &str) -> Result<(), String> {
        match self.plan.storages[site].data.as_ref() {
            Some(crate::address::Address::Tcp { host, port }) => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let out = std::process::Command::new("ss")
                    .args(["-K", "dst", host, "dport", "=", &format!(":{port}")])
                    .output()
                    .map_err(|e| format!("cannot run ss (Debian: iproute2): {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "ss -K failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            }
            Some(other) => Err(format!(
                "its DATA address {other} is not TCP: connections to it cannot be destroyed, so writes to it stay held until it answers again"
            )),
            None => Ok(()),
        }
    }

    fn qmp(&self, site: &str) -> Result<&Qmp, DriverError> {
        self.sites.get(site).ok_or_else(|| DriverError {
            site: site.to_string(),
            volume: None,
            message: "not connected (its daemon is gone)".into(),
        })
    }

    /// The node a job in the source's daemon writes to: the target itself on the same
    /// site, else an NBD client node to the target's export (created here).
    fn target_node(&mut self, pair: &Pair) -> Result<(String, Option<String>), DriverError> {
        if pair.source.storage == pair.target.storage {
            return Ok((pair.target.name.clone(), None));
        }
        let target_site = pair.target.storage.clone();
        let data = self.plan.storages[&target_site]
            .data
            .clone()
            .ok_or_else(|| DriverError {
                site: target_site.clone(),
                volume: Some(pair.target.name.clone()),
                message: "has no DATA address: other sites cannot reach its volumes".into(),
            })?;
        let qmp = self.qmp(&target_site)?;
        if !self.nbd_servers.contains(&target_site) {
            match qmp.execute("nbd-server-start", json!({ "addr": socket_legacy(&data) })) {
                Ok(_) => {
                    self.nbd_servers.insert(target_site.clone());
                }
                // The administrator's own server (--nbd-server) serves as well.
                Err(QmpError::Refused { desc, .. }) if desc.contains("already running") => {}
                Err(e) => return Err(refused(&target_site, &pair.target, e)),
            }
        }
        let export = format!("cssc-{}", pair.target.name);
        let key = (target_site.clone(), pair.target.name.clone());
        if !self.exports.contains(&key) {
            self.qmp(&target_site)?
                .execute(
                    "block-export-add",
                    json!({ "type": "nbd", "id": export, "node-name": pair.target.name, "name": export, "writable": true }),
                )
                .map_err(|e| refused(&target_site, &pair.target, e))?;
            self.exports.insert(key);
        }
        let node = format!("cssc-nbd-{}", job_id(pair).trim_start_matches("cssc-"));
        let args = json!({
            "driver": "nbd", "node-name": node, "server": socket(&data), "export": export,
            // A write to a dead target is held this long (not acknowledged without its
            // target) while the rest of the group is held: the failure's own hold.
            "reconnect-delay": self.timing.failed_target_hold_secs,
        });
        self.qmp(&pair.source.storage)?
            .execute("blockdev-add", args)
            .map_err(|e| refused(&pair.source.storage, &pair.target, e))?;
        Ok((node.clone(), Some(node)))
    }

    /// Removes a pair's hold filter and sink (`continuous`), its NBD client node, and
    /// the export when no job uses it any more.
    fn release(&mut self, pair: &Pair, continuous: bool, remote_node: Option<String>) {
        if let Some(qmp) = self.sites.get(&pair.source.storage) {
            if continuous {
                for node in [hold_node(pair), sink_node(pair)] {
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
                    json!({ "id": format!("cssc-{}", pair.target.name) }),
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
        for pair in pairs {
            let id = job_id(pair);
            if self.jobs.contains_key(&id) {
                continue;
            }
            let result = self.target_node(pair).and_then(|(target, remote)| {
                let target = match self.hold_filter(pair, &target) {
                    Ok(node) => node,
                    Err(e) => {
                        self.release(pair, true, remote);
                        return Err(e);
                    }
                };
                let mut args = json!({
                    "job-id": id, "device": pair.source.name, "target": target, "sync": "full",
                    "on-target-error": "stop", "on-source-error": "stop",
                    "copy-mode": match mode { ContinuousMode::Synchronous => "write-blocking", ContinuousMode::Asynchronous => "background" },
                });
                if mode == ContinuousMode::Asynchronous {
                    // 4 KiB granularity: a 4 KiB write copies 4 KiB, not 64 (notes §4).
                    args["granularity"] = json!(4096);
                }
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
                        id,
                        Job {
                            pair: pair.clone(),
                            kind: Kind::Mirror,
                            synchronous: mode == ContinuousMode::Synchronous,
                            intent: Intent::Run,
                            failed: false,
                            paused: false,
                            frozen: false,
                            remote_node,
                        },
                    );
                    started.push(pair.clone());
                }
                Err(e) => {
                    // Nothing of this group stays started.
                    for pair in &started {
                        self.cancel(pair, true);
                    }
                    return Err(e);
                }
            }
        }
        Ok(started
            .iter()
            .map(|p| report(p, PairEvent::Started))
            .collect())
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
            .filter(|p| !self.jobs.contains_key(&job_id(p)))
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
            let bitmap = format!("cssc-inc-s{}", group[0].0.sequence);
            let mut actions = Vec::new();
            let mut new_bitmaps = Vec::new();
            for (pair, target, _) in group {
                let mut backup = json!({
                    "job-id": job_id(pair), "device": pair.source.name, "target": target, "sync": "full",
                    // copy_file_range between files: as fast as qemu-img convert (notes §1).
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
                    job_id(pair),
                    Job {
                        pair: pair.clone(),
                        kind: Kind::Backup,
                        synchronous: false,
                        intent: Intent::Run,
                        failed: false,
                        paused: false,
                        frozen: false,
                        remote_node: remote.clone(),
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

    /// Asks a pair's job to end (`force`: at once, without a final synchronisation).
    fn cancel(&mut self, pair: &Pair, force: bool) {
        let id = job_id(pair);
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
            let id = job_id(pair);
            if let Some(job) = self.jobs.get_mut(&id) {
                job.intent = intent;
                // End at once (no last synchronisation) a failed or paused mirror, which
                // cannot synchronise, and a backup. A mirror in step ends gracefully: a
                // synchronous or frozen one has nothing left to copy, a background one
                // drains first so its target catches up. (A forced cancel of a
                // write-blocking mirror under writes has crashed qemu-storage-daemon
                // 10.0.2 with heap corruption: docs/qemu-recipes.md.)
                let force = job.failed || job.paused || job.kind == Kind::Backup;
                by_site
                    .entry(pair.source.storage.clone())
                    .or_default()
                    .push((id, force));
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
                    return Err(DriverError {
                        site: site.clone(),
                        volume: Some(id.clone()),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The end of a job: its report, and its resources released.
    fn finish(&mut self, id: &str, error: Option<String>) -> Option<PairReport> {
        let job = self.jobs.remove(id)?;
        self.release(&job.pair, job.kind == Kind::Mirror, job.remote_node.clone());
        let event = match (error, job.intent) {
            (_, Intent::Freeze) => return None,
            // An error already reported (BLOCK_JOB_ERROR) ends as a stop.
            (Some(e), _) if !job.failed => PairEvent::Error(e),
            (None, Intent::Run) if job.kind == Kind::Backup => PairEvent::Complete,
            _ => PairEvent::Stopped,
        };
        Some(report(&job.pair, event))
    }
}

fn report(pair: &Pair, event: PairEvent) -> PairReport {
    PairReport {
        sequence: pair.sequence,
        copyset: pair.copyset,
        event,
    }
}

/// A QMP connection to a storage, with its heartbeat.
fn watched(
    endpoint: &crate::address::Address,
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

fn notice_is_hang(notice: &Notice) -> bool {
    *notice == Notice::Hung
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
                .map_err(|e| DriverError {
                    site: site.clone(),
                    volume: None,
                    message: format!("cannot list its block nodes: {e}"),
                })?;
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
                    DriverError {
                        site: volume.storage.clone(),
                        volume: Some(volume.name.clone()),
                        message: format!(
                            "no block node has this name; its nodes: {}",
                            known.join(", ")
                        ),
                    }
                })?;
                sizes.push(size);
            }
            if sizes[1] < sizes[0] {
                return Err(DriverError {
                    site: pair.target.storage.clone(),
                    volume: Some(pair.target.name.clone()),
                    message: format!(
                        "the target holds {} bytes, less than its source {} ({} bytes)",
                        sizes[1], pair.source, sizes[0]
                    ),
                });
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
                let id = job_id(pair);
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
        let mut reports = Vec::new();
        let mut restart = Vec::new();
        for pair in pairs {
            let id = job_id(pair);
            match self.jobs.get_mut(&id) {
                Some(job) if job.paused => {
                    job.paused = false;
                    self.qmp(&pair.source.storage)?
                        .execute("block-job-resume", json!({ "device": id }))
                        .map_err(|e| refused(&pair.source.storage, &pair.source, e))?;
                    // It copies only what changed while paused, staying ready.
                    reports.push(report(pair, PairEvent::Started));
                    reports.push(report(pair, PairEvent::Duplex));
                }
                Some(_) => {}
                None => restart.push(pair.clone()),
            }
        }
        reports.extend(self.start(&restart, copy)?);
        Ok(reports)
    }

    fn freeze(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError> {
        let ids: Vec<String> = pairs
            .iter()
            .map(job_id)
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
        let cut: Vec<String> = ids
            .iter()
            .filter(|id| self.sites.contains_key(&self.jobs[*id].pair.target.storage))
            .cloned()
            .collect();
        // Hold: the mirror writes of these pairs wait in their filters, unacknowledged.
        // Holds may be staggered across groups and daemons: nothing can depend on a
        // held write. One `qom-set` per group, pipelined per source daemon.
        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for id in &cut {
            let pair = &self.jobs[id].pair;
            groups
                .entry(pair.source.storage.clone())
                .or_default()
                .insert(self.hold_group(pair));
        }
        for (site, site_groups) in groups {
            let Ok(qmp) = self.qmp(&site) else { continue };
            let commands = site_groups
                .iter()
                .map(|g| {
                    (
                        "qom-set",
                        json!({ "path": g, "property": "limits", "value": { "bps-write": 1 } }),
                    )
                })
                .collect();
            if let Some(Err(e)) = qmp.execute_all(commands).into_iter().find(Result::is_err) {
                return Err(site_error(&site, format!("cannot hold the writers: {e}")));
            }
        }
        self.held.insert(pairs[0].sequence, Instant::now());
        // Cut: each filter's child becomes its sink while the writers still wait. The
        // reopen drains, so it waits for writes the NBD clients of failed targets hold.
        let stuck = self.reopen_holds(&cut, false);
        for id in &ids {
            let job = self.jobs.get_mut(id).expect("listed");
            job.frozen = cut.contains(id) && !stuck.contains(id);
            job.intent = Intent::Freeze;
            if stuck.contains(id) {
                job.failed = true;
                reports.push(report(&job.pair, PairEvent::Error("its target failed during the freeze: its filter cannot be swapped, so its writes stay held (docs/runtime.md, Freeze)".into())));
            } else if !reports.iter().any(|r| r.copyset == job.pair.copyset) {
                reports.push(report(&job.pair, PairEvent::Suspended));
            }
        }
        Ok(reports)
    }

    fn thaw(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        let ids: Vec<String> = pairs
            .iter()
            .map(job_id)
            .filter(|id| self.jobs.get(id).is_some_and(|j| j.frozen))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        // Release: in a group without limits the held writes go on, into the sinks.
        let stuck = self.reopen_holds(&ids, true);
        let frozen: Vec<Pair> = ids.iter().map(|id| self.jobs[id].pair.clone()).collect();
        self.cancel_all(&frozen, Intent::Freeze)?;
        match stuck.first() {
            None => Ok(()),
            Some(id) => Err(site_error(
                &self
                    .jobs
                    .get(id)
                    .map_or(String::new(), |j| j.pair.source.storage.clone()),
                format!("cannot release the writers of {}", stuck.join(", ")),
            )),
        }
    }

    fn interpret(&mut self, site: &str, notice: Notice) -> Vec<PairReport> {
        let (name, data) = match notice {
            Notice::Event { name, data } => (name, data),
            // The end of a connection this driver dropped because its daemon hangs.
            Notice::Disconnected if self.hung.contains(site) => return Vec::new(),
            Notice::Disconnected | Notice::Hung => {
                self.sites.remove(site);
                if notice == Notice::Disconnected {
                    // A monitor connection can drop while its daemon lives: reconnect.
                    let endpoint = self.plan.storages[site].endpoint.clone();
                    if let Ok(qmp) = watched(&endpoint, site, self.timing, &self.notices) {
                        self.sites.insert(site.to_string(), qmp);
                        return Vec::new();
                    }
                }
                let mut reason = if notice_is_hang(&notice) {
                    format!(
                        "storage {site} does not answer (hung for more than {} ms)",
                        self.timing.hung_after.as_millis()
                    )
                } else {
                    format!("storage {site} is unreachable (its daemon is gone)")
                };
                if notice_is_hang(&notice) {
                    self.hung.insert(site.to_string());
                    let targets_here = self.jobs.values().any(|j| j.pair.target.storage == site);
                    if targets_here {
                        if let Err(e) = self.destroy_connections(site) {
                            reason.push_str(&format!("; {e}"));
                        }
                    }
                }
                let mut reports = Vec::new();
                let ids: Vec<String> = self.jobs.keys().cloned().collect();
                for id in ids {
                    let job = self.jobs.get_mut(&id).expect("listed");
                    if job.pair.source.storage == site {
                        // The job died with its daemon.
                        reports.extend(self.finish(&id, Some(reason.clone())));
                    } else if job.pair.target.storage == site && !job.failed && !job.frozen {
                        // The job lives on in the source's daemon, failing: keep it to end it.
                        job.failed = true;
                        reports.push(report(&job.pair, PairEvent::Error(reason.clone())));
                    }
                }
                return reports;
            }
        };
        let Some(id) = data["device"]
            .as_str()
            .or(data["id"].as_str())
            .map(str::to_string)
        else {
            return Vec::new();
        };
        if parse_job_id(&id).is_none() || !self.jobs.contains_key(&id) {
            return Vec::new();
        }
        match name.as_str() {
            "BLOCK_JOB_READY" => vec![report(&self.jobs[&id].pair, PairEvent::Duplex)],
            "BLOCK_JOB_ERROR" => {
                let job = self.jobs.get_mut(&id).expect("checked");
                if job.failed || job.frozen {
                    return Vec::new();
                }
                job.failed = true;
                let message = format!(
                    "{} error ({})",
                    data["operation"].as_str().unwrap_or("I/O"),
                    data["action"].as_str().unwrap_or("stop")
                );
                vec![report(&job.pair, PairEvent::Error(message))]
            }
            "BLOCK_JOB_COMPLETED" => {
                if let (Some(len), Some(job)) = (data["len"].as_u64(), self.jobs.get(&id)) {
                    self.copied
                        .insert((job.pair.sequence, job.pair.copyset), len);
                }
                self.finish(&id, data["error"].as_str().map(str::to_string))
                    .into_iter()
                    .collect()
            }
            "BLOCK_JOB_CANCELLED" => self.finish(&id, None).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    fn progress(&mut self) -> Vec<Progress> {
        let mut out = Vec::new();
        for qmp in self.sites.values() {
            let Ok(Value::Array(jobs)) = qmp.execute("query-block-jobs", Value::Null) else {
                continue;
            };
            for job in jobs {
                let Some((sequence, copyset)) = job["device"].as_str().and_then(parse_job_id)
                else {
                    continue;
                };
                out.push(Progress {
                    sequence,
                    copyset,
                    done: job["offset"].as_u64().unwrap_or(0),
                    total: job["len"].as_u64().unwrap_or(0),
                });
            }
        }
        out
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
            if let Some(qmp) = self.sites.get(&site) {
                let _ = qmp.execute("block-export-del", json!({ "id": format!("cssc-{node}") }));
            }
        }
        for (site, id) in std::mem::take(&mut self.groups) {
            if let Some(qmp) = self.sites.get(&site) {
                let _ = qmp.execute("object-del", json!({ "id": id }));
            }
        }
        for site in std::mem::take(&mut self.nbd_servers) {
            if let Some(qmp) = self.sites.get(&site) {
                let _ = qmp.execute("nbd-server-stop", Value::Null);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_name_their_pair() {
        let pair = Pair {
            sequence: 3,
            copyset: 12,
            source: Volume {
                storage: "a".into(),
                name: "x".into(),
            },
            target: Volume {
                storage: "b".into(),
                name: "y".into(),
            },
        };
        assert_eq!(job_id(&pair), "cssc-s3-c12");
        assert_eq!(parse_job_id("cssc-s3-c12"), Some((3, 12)));
        assert_eq!(parse_job_id("backup0"), None);
        assert_eq!(parse_job_id("cssc-sx-c1"), None);
    }
}
