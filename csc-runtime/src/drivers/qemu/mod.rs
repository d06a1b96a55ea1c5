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
mod bypass;
pub mod cleanup;
mod commands;
mod events;
mod failover;
mod hold;
mod jobs;
mod listing;
pub(crate) mod names;
pub mod qmp;
mod replies;
mod resources;
mod resync;
mod shutdown;
mod verify;

use super::{key, report, Driver, DriverError, PairEvent, PairReport, Progress, RefusalKind};
use crate::plan::{Pair, Plan, Timing, Volume};
use crate::vocab::{BaseCopy, ContinuousMode};
use names::Names;
pub use qmp::Notice;
use qmp::{Qmp, QmpError, Refusal};
pub use replies::JobEvent;
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

/// How a job copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Condition {
    Running,
    /// Paused by a suspend (an asynchronous mirror): copies nothing, tracks changes.
    Paused,
    /// Stopped on an error (its target failed): kept, to resume from. It stays failed
    /// until it is resumed, whatever else is asked of it meanwhile.
    Failed,
}

#[derive(Debug)]
struct Job {
    pair: Pair,
    kind: Kind,
    /// A write-blocking mirror: its target has every acknowledged write.
    synchronous: bool,
    /// Why it will end: on its own, stopped, or frozen.
    intent: Intent,
    condition: Condition,
    /// Cut from its target by a freeze (its writes go to the sink).
    frozen: bool,
    /// The NBD client node in the source's daemon, for a pair across sites.
    remote_node: Option<String>,
    /// Copying what changed since the pair was split, beside the mirror.
    resync: Option<resync::Resync>,
    /// A writer attached to its source below it (bypass.rs): never in duplex until
    /// restarted.
    bypassed: bool,
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
    /// Exports `verify` reads through: (site, export id).
    verifying: BTreeSet<(String, String)>,
    /// Sites where this driver started the NBD server.
    nbd_servers: BTreeSet<String>,
    /// Sites whose NBD server someone else started (the administrator's).
    served: BTreeSet<String>,
    /// Set by `shutdown`: pairs to a storage that does not answer keep their nodes
    /// once `waited_for_absent` is spent.
    stopping: bool,
    waited_for_absent: Duration,
    /// Pairs whose nodes a stop left, by (source storage, target storage).
    left_behind: BTreeMap<(String, String), usize>,
    /// Incremental bitmaps this driver added: (site, node, name).
    bitmaps: BTreeSet<(String, String, String)>,
    /// Objects this driver added (throttle groups, TLS credentials, authz): (site, id).
    objects: BTreeSet<(String, String)>,
    /// Sites whose daemon stopped answering.
    hung: BTreeSet<String>,
    /// When each frozen sequence's writers were held.
    held: BTreeMap<u32, Instant>,
    /// Bytes the last completed job of each pair copied: (sequence, copyset).
    copied: BTreeMap<(u32, usize), u64>,
    /// What changed on the source of each split pair (or why it is not known).
    records: BTreeMap<(u32, usize), Result<resync::Record, resync::WhyFull>>,
    /// What production wrote to each recovered target since its failover.
    production: BTreeMap<(u32, usize), resync::Record>,
    /// Records being copied by a resync job.
    pending_records: BTreeMap<(u32, usize), resync::Record>,
    /// Bytes the last resynchronisation of each pair copied.
    resynced: BTreeMap<(u32, usize), u64>,
    /// Jobs finished before their end event arrived (`await_end`): that event is not
    /// the end of the pair's next job.
    ended: BTreeSet<String>,
    /// Each site's block nodes as listed once for the group being started.
    listed: BTreeMap<String, listing::Listing>,
    timing: Timing,
}

fn refused(site: &str, volume: &Volume, e: QmpError) -> DriverError {
    let taken = matches!(
        &e,
        QmpError::Refused {
            kind: Refusal::Taken | Refusal::InUse,
            ..
        }
    );
    let kind = if taken {
        RefusalKind::InUse
    } else {
        RefusalKind::Refused
    };
    DriverError::on(site, &volume.name, e).of_kind(kind)
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
            match watched(plan, id, &notices) {
                Ok(qmp) => {
                    sites.insert(id.to_string(), qmp);
                }
                Err(_) if lost_ok => {
                    let _ = notices.send((id.to_string(), Notice::Disconnected));
                }
                Err(e) => {
                    let kind = match e {
                        QmpError::Tls(_) | QmpError::Credentials(_) => RefusalKind::Certificate,
                        _ => RefusalKind::Unreachable,
                    };
                    return Err(DriverError::at(
                        id,
                        format!("cannot reach its QMP endpoint {}: {e}", storage.endpoint),
                    )
                    .of_kind(kind));
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
            verifying: BTreeSet::new(),
            nbd_servers: BTreeSet::new(),
            bitmaps: BTreeSet::new(),
            objects: BTreeSet::new(),
            hung: BTreeSet::new(),
            held: BTreeMap::new(),
            copied: BTreeMap::new(),
            records: BTreeMap::new(),
            pending_records: BTreeMap::new(),
            production: BTreeMap::new(),
            resynced: BTreeMap::new(),
            ended: BTreeSet::new(),
            listed: BTreeMap::new(),
            served: BTreeSet::new(),
            stopping: false,
            waited_for_absent: Duration::ZERO,
            left_behind: BTreeMap::new(),
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
            let Ok(qmp) = watched(&self.plan, &site, &self.notices) else {
                continue;
            };
            self.sites.insert(site.clone(), qmp);
            self.hung.remove(&site);
            // A daemon that restarted has none of this session's server, exports and
            // throttle groups (one that hung and came back has them: adding them again
            // is harmless).
            self.nbd_servers.remove(&site);
            self.served.remove(&site);
            self.exports.retain(|(s, _)| *s != site);
            self.objects.retain(|(s, _)| *s != site);
        }
    }
}

/// A QMP connection to a storage (over TLS when the plan has its credentials).
pub(super) fn monitor<T: Clone + Send + 'static>(
    plan: &Plan,
    site: &str,
    tag: T,
    notices: Sender<(T, Notice)>,
) -> Result<Qmp, QmpError> {
    Qmp::connect(
        &plan.storages[site].endpoint,
        plan.tls.get(site),
        tag,
        notices,
    )
}

/// A QMP connection to a storage, with its heartbeat.
fn watched(plan: &Plan, site: &str, notices: &Sender<(String, Notice)>) -> Result<Qmp, QmpError> {
    let qmp = monitor(plan, site, site.to_string(), notices.clone())?;
    let watch = qmp::Watch {
        every: plan.timing.heartbeat,
        deadline: plan.timing.hung_after,
    };
    qmp.watch(watch, site.to_string(), notices.clone());
    // A target's data link is watched too: it can be cut while the monitor answers
    // (another network), and a cut gives the source's NBD clients no error for many
    // minutes, holding the application's writes.
    let target = plan
        .copysets
        .iter()
        .any(|c| c.volumes.iter().skip(1).any(|v| v.storage == site));
    if let (true, Some(crate::address::Address::Tcp { host, port })) =
        (target, &plan.storages[site].data)
    {
        let resolved =
            std::net::ToSocketAddrs::to_socket_addrs(&(crate::address::bare_host(host), *port));
        if let Some(data) = resolved.ok().and_then(|mut a| a.next()) {
            qmp.watch_data(data, watch, site.to_string(), notices.clone());
        }
    }
    Ok(qmp)
}

impl Driver for Qemu {
    type Notice = Notice;

    fn preflight(&mut self, pairs: &[Pair]) -> Result<(), DriverError> {
        self.forget_listings();
        let sites: Vec<String> = self.sites.keys().cloned().collect();
        for site in &sites {
            self.listing(site)?;
        }
        for pair in pairs {
            let mut sizes = Vec::new();
            for volume in [&pair.source, &pair.target] {
                let known = &self.listed[&volume.storage].sizes;
                let size = *known.get(&volume.name).ok_or_else(|| {
                    let names: Vec<&str> = known
                        .keys()
                        .map(String::as_str)
                        .filter(|n| !n.starts_with('#'))
                        .collect();
                    DriverError::on(
                        &volume.storage,
                        &volume.name,
                        format!(
                            "no block node has this name; its nodes: {}",
                            names.join(", ")
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
                if job.condition == Condition::Running {
                    job.condition = Condition::Paused;
                }
                self.qmp(&pair.source.storage)?
                    .run(&commands::BlockJobPause { device: &id })
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
        // A writer that attached while the pair was away is found now (bypass.rs).
        let ids: Vec<String> = pairs.iter().map(|p| self.names.job(p)).collect();
        let mut reports = self.find_bypasses(Some(&ids));
        let (mut restart, mut running) = (Vec::new(), Vec::new());
        for pair in pairs {
            let id = self.names.job(pair);
            match self.jobs.get(&id) {
                // A writer below the mirror: a new mirror takes it over. A failed one
                // first copies what its own bitmap recorded (the write in flight at the
                // failure is only there).
                Some(job) if job.bypassed && !job.frozen => {
                    if job.condition == Condition::Failed {
                        let kept = self.resume_kept(&id)?;
                        reports.extend(kept.into_iter().filter(|r| r.event != PairEvent::Duplex));
                    }
                    self.end_for_restart(&id);
                    restart.push(pair.clone());
                }
                // Kept stopped by a target failure, or paused: it resumes, copying
                // what its own bitmap recorded; the record kept since the failure for
                // a writer below it is not needed.
                Some(job)
                    if job.condition == Condition::Paused
                        || (job.condition == Condition::Failed && !job.frozen) =>
                {
                    if let Some(Ok(record)) = self.records.remove(&key(pair)) {
                        self.drop_bitmap(&pair.source.storage, &record);
                    }
                    reports.extend(self.resume_kept(&id)?)
                }
                // Frozen: its mirror is ending; the pair restarts.
                Some(job) if job.frozen => restart.push(pair.clone()),
                // Running (a take-over found it copying while the others had failed):
                // the resumed group's run hears of it again, or it never completes
                // (explorer bench seed 128: a resume that waited for ever).
                Some(_) => running.push(id),
                None => restart.push(pair.clone()),
            }
        }
        reports.extend(self.still_running(&running));
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
        self.jobs_progress()
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
        let mut reports = self.adopt_left(pairs)?;
        // A writer may have attached while no session ran: such a pair is no Duplex.
        let bypassed = self.find_bypasses(None);
        reports.retain(|r| {
            r.event != PairEvent::Duplex
                || !bypassed
                    .iter()
                    .any(|b| (b.sequence, b.copyset) == (r.sequence, r.copyset))
        });
        reports.extend(bypassed);
        Ok(reports)
    }

    fn audit(&mut self) -> Vec<PairReport> {
        self.find_bypasses(None)
    }

    fn verify_sides(
        &mut self,
        pairs: &[Pair],
        repair: bool,
    ) -> Result<Vec<crate::verify::Job>, DriverError> {
        self.verify_exports(pairs, repair)
    }

    fn verify_done(&mut self, pairs: &[Pair]) {
        self.drop_verify_exports(pairs);
    }

    fn shutdown(&mut self) {
        self.shut_down();
    }
}
