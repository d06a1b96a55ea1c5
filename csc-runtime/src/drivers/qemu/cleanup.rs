//! `cleanup`: after a run was killed, removes what this session left in its storages
//! (jobs, NBD client nodes, holds, sinks, exports, bitmaps, throttle groups), found by
//! the session's name tag (names.rs). Never a volume, never another session's names.

use super::commands::{
    Bitmap, BlockDirtyBitmapRemove, BlockExportAdd, BlockExportDel, BlockJobCancel, BlockdevAdd,
    BlockdevDel, BlockdevReopen, NbdServerStart, ObjectAdd, ObjectDel, QomList, QueryBlockExports,
    QueryBlockJobs, Throttle, ALL_NODES,
};
use super::names::Names;
use super::qmp::{Notice, Qmp, QmpError, Refusal};
use super::replies::JobStatus;
use super::resources::ServerTls;
use crate::plan::Plan;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One step of the cleanup on one daemon: what it removed.
type Step = fn(&Qmp, &Names) -> Result<Vec<String>, QmpError>;

use crate::drivers::{Cleaned, DriverError, RefusalKind};

/// Removes what session `plan.name` left on every storage its copy sets use.
pub fn cleanup(plan: &Plan) -> Cleaned {
    let names = Names::of_session(&plan.name);
    let (tx, _rx) = std::sync::mpsc::channel::<((), Notice)>();
    let mut sites: BTreeMap<String, Qmp> = BTreeMap::new();
    let mut cleaned = Cleaned::new();
    for id in plan.storages_of(crate::vocab::DriverKind::Qemu) {
        match super::monitor(plan, id, (), tx.clone()) {
            Ok(qmp) => {
                sites.insert(id.to_string(), qmp);
                cleaned.insert(id.to_string(), Ok(Vec::new()));
            }
            Err(e) => {
                let endpoint = &plan.storages[id].endpoint;
                let refused = DriverError::at(id, format!("cannot reach {endpoint}: {e}"))
                    .of_kind(RefusalKind::Unreachable);
                cleaned.insert(id.to_string(), Err(refused));
            }
        }
    }
    // The targets first (a job ending, or a node going, flushes its target), then
    // jobs everywhere (their nodes and the exports they write to are busy until they
    // end), then nodes, exports, bitmaps; objects last (an NBD server uses its TLS
    // credentials and authz while it runs).
    let served = serve_targets_again(plan, &names, &sites);
    let steps: [Step; 4] = [end_jobs, delete_nodes, delete_exports, remove_bitmaps];
    for step in steps {
        run_step(step, &sites, &names, &mut cleaned);
    }
    // A server started only so that clients could go is stopped once it serves
    // nothing (another session may export through it meanwhile).
    for site in served {
        let qmp = &sites[&site];
        if qmp.ask(&QueryBlockExports).is_ok_and(|e| e.is_empty()) {
            let _ = qmp.execute("nbd-server-stop", Value::Null);
        }
    }
    run_step(delete_objects, &sites, &names, &mut cleaned);
    cleaned
}

/// Runs one step on every site that has answered every step so far.
fn run_step(step: Step, sites: &BTreeMap<String, Qmp>, names: &Names, cleaned: &mut Cleaned) {
    for (site, qmp) in sites {
        let Some(Ok(removed)) = cleaned.get_mut(site) else {
            continue;
        };
        match step(qmp, names) {
            Ok(more) => removed.extend(more),
            Err(e) => {
                cleaned.insert(site.clone(), Err(DriverError::at(site, e)));
            }
        }
    }
}

/// Deleting an NBD client node whose target's export is gone (its daemon restarted)
/// waits the node's reconnect delay, one node after the other (docs/qemu-recipes.md):
/// 1,000 of them took 1,000 s. So every target this session's clients reach is
/// exported again first (its daemon's NBD server started if it has none), the clients
/// reconnect and go at once, and those exports go with the others. Returns the sites
/// whose NBD server was started here.
fn serve_targets_again(plan: &Plan, names: &Names, sites: &BTreeMap<String, Qmp>) -> Vec<String> {
    let (mut asked, mut started) = (BTreeSet::new(), Vec::new());
    for qmp in sites.values() {
        let Ok(nodes) = qmp.ask(&ALL_NODES) else {
            continue;
        };
        for node in named(nodes.iter().map(|n| &n.node_name), names) {
            let Some((sequence, copyset)) = names.pair_of_client(node) else {
                continue;
            };
            let Some(target) = plan
                .copysets
                .get(copyset)
                .and_then(|c| c.volumes.get(sequence as usize))
            else {
                continue;
            };
            let (Some(there), Some(data)) = (
                sites.get(&target.storage),
                plan.storages
                    .get(&target.storage)
                    .and_then(|s| s.data.as_ref()),
            ) else {
                continue;
            };
            // Asked once per site: the server's size counts the plan's pairs; a
            // storage that speaks TLS gets its credentials and authz first (its
            // clients speak TLS, and a plaintext server must not appear).
            if asked.insert(target.storage.clone()) {
                let tls = ServerTls::of(plan, &target.storage, names);
                for object in tls.iter().flat_map(ServerTls::objects) {
                    // Refused when it is there already: the session's, kept.
                    let _ = there.run(&object);
                }
                let start = NbdServerStart::of_session(plan, &target.storage, data, tls.as_ref());
                if there.run(&start).is_ok() {
                    started.push(target.storage.clone());
                }
            }
            let export = names.export(&target.name);
            // Refused when it is there already: then the client reaches it as it is.
            let _ = there.run(&BlockExportAdd::nbd(&export, &target.name, true));
        }
    }
    started
}

/// The names among `all` that are this session's.
fn named<'a>(all: impl IntoIterator<Item = &'a String>, names: &Names) -> Vec<&'a str> {
    all.into_iter()
        .map(String::as_str)
        .filter(|n| names.owns(n))
        .collect()
}

/// Releases held writers (every hold filter onto its sink, in an unlimited group: a
/// mirror cannot end while its writes wait), then ends every job and waits for them.
fn end_jobs(qmp: &Qmp, names: &Names) -> Result<Vec<String>, QmpError> {
    let nodes = qmp.ask(&ALL_NODES)?;
    let holds: Vec<(&str, String)> = named(nodes.iter().map(|n| &n.node_name), names)
        .into_iter()
        .filter_map(|n| Some((n, names.sink_of_hold(n)?)))
        .collect();
    for (hold, sink) in holds {
        let Some(free) = names.free_group_of_hold(hold) else {
            continue;
        };
        // Refused when it is there already: one group serves many holds.
        let _ = qmp.run(&ObjectAdd::throttle_group(&free));
        let _ = qmp.run(&BlockdevReopen {
            options: vec![BlockdevAdd::Throttle(Throttle {
                node_name: hold,
                throttle_group: &free,
                file: &sink,
            })],
        });
    }
    let jobs = qmp.ask(&QueryBlockJobs)?;
    let mut ended = Vec::new();
    for job in jobs.iter().filter(|j| names.owns(&j.device)) {
        let id = job.device.as_str();
        // A mirror in step ends gracefully (a forced cancel under writes has crashed
        // qemu-storage-daemon); one stopped on an error cannot synchronise.
        let force = job.status != JobStatus::Ready;
        qmp.run(&BlockJobCancel { device: id, force })?;
        ended.push(format!("job {id}"));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let left = qmp.ask(&QueryBlockJobs)?;
        if named(left.iter().map(|j| &j.device), names).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(ended)
}

/// Deletes this session's nodes, filters before what they sit on: passes until none
/// is left or a pass deletes nothing.
fn delete_nodes(qmp: &Qmp, names: &Names) -> Result<Vec<String>, QmpError> {
    let mut deleted = Vec::new();
    loop {
        let nodes = qmp.ask(&ALL_NODES)?;
        let ours: Vec<String> = named(nodes.iter().map(|n| &n.node_name), names)
            .into_iter()
            .map(str::to_string)
            .collect();
        let before = deleted.len();
        for node in &ours {
            if qmp.run(&BlockdevDel { node_name: node }).is_ok() {
                deleted.push(format!("node {node}"));
            }
        }
        if deleted.len() == before || deleted.len() - before == ours.len() {
            return Ok(deleted);
        }
    }
}

fn delete_exports(qmp: &Qmp, names: &Names) -> Result<Vec<String>, QmpError> {
    let exports = qmp.ask(&QueryBlockExports)?;
    let mut deleted = Vec::new();
    for id in named(exports.iter().map(|e| &e.id), names) {
        qmp.run(&BlockExportDel {
            id,
            mode: Some("hard"),
        })?;
        deleted.push(format!("export {id}"));
    }
    Ok(deleted)
}

fn remove_bitmaps(qmp: &Qmp, names: &Names) -> Result<Vec<String>, QmpError> {
    let nodes = qmp.ask(&ALL_NODES)?;
    let mut removed = Vec::new();
    for node in &nodes {
        let node_name = node.node_name.as_str();
        for bitmap in named(
            node.dirty_bitmaps.iter().filter_map(|b| b.name.as_ref()),
            names,
        ) {
            qmp.run(&BlockDirtyBitmapRemove(Bitmap {
                node: node_name,
                name: bitmap,
            }))?;
            removed.push(format!("bitmap {bitmap} on {node_name}"));
        }
    }
    Ok(removed)
}

/// Throttle groups, TLS credentials and authz. Credentials an NBD server of the
/// session's still uses (it serves another session's exports too) stay.
fn delete_objects(qmp: &Qmp, names: &Names) -> Result<Vec<String>, QmpError> {
    let objects = qmp.ask(&QomList { path: "/objects" })?;
    let mut deleted = Vec::new();
    for id in named(objects.iter().map(|o| &o.name), names) {
        match qmp.run(&ObjectDel { id }) {
            Ok(_) => deleted.push(format!("object {id}")),
            Err(QmpError::Refused {
                kind: Refusal::InUse,
                ..
            }) => tracing::warn!(
                kind = "storage",
                "object {id} is in use (an NBD server that serves other exports): kept"
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}
