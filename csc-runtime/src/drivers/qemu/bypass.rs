//! Writers that bypass a mirror (docs/qemu-recipes.md, "Every writer of a volume").
//!
//! A mirror inserts its filter above its source volume and takes over the writers the
//! volume has at that moment. A writer that attaches later (an NBD export opened after a
//! failure, a backup agent, an application moved) attaches to the volume by name, below
//! the filter: its writes are neither mirrored nor in the mirror's own record. The
//! driver reads the block graph for such writers (a block backend with write permission
//! on a volume whose mirror filter sits above it) when a target fails, on `resume`,
//! after a take-over and on every audit the executor asks for. A pair with one is an
//! error, never Duplex; its `resume` restarts the mirror (a new filter takes over every
//! writer the volume has) and copies what changed since a record that started before
//! the writer attached, or everything when there is none.

use super::commands::{BlockJobCancel, QueryBlockExports, QueryBlockGraph};
use super::replies::{BlockGraph, GraphNode, NodeType};
use super::resync::WhyFull;
use super::{key, report, Condition, Intent, Kind, Qemu};
use crate::drivers::{PairEvent, PairReport};
use std::collections::BTreeMap;

/// A daemon's block graph, indexed once per reading: each node's parents as (name,
/// type, whether it writes). An audit asks it about every mirror of the daemon, so a
/// question costs the node's parents, not a scan of the whole graph.
pub(super) struct Parents<'a>(BTreeMap<&'a str, Vec<(&'a str, NodeType, bool)>>);

impl<'a> Parents<'a> {
    pub(super) fn of(graph: &'a BlockGraph) -> Parents<'a> {
        let nodes: BTreeMap<u64, &GraphNode> = graph.nodes.iter().map(|n| (n.id, n)).collect();
        let mut parents: BTreeMap<&str, Vec<(&str, NodeType, bool)>> = BTreeMap::new();
        for e in &graph.edges {
            let (Some(child), Some(parent)) = (nodes.get(&e.child), nodes.get(&e.parent)) else {
                continue;
            };
            let writes = e.perm.iter().any(|p| p == "write");
            parents.entry(child.name.as_str()).or_default().push((
                parent.name.as_str(),
                parent.kind,
                writes,
            ));
        }
        Parents(parents)
    }

    /// Whether `volume` has a writer attached below the filter `top`: the filter is one
    /// of its parents, and so is a block backend (an export's, a job's) that writes.
    pub(super) fn writer_below(&self, volume: &str, top: &str) -> bool {
        let parents = self.0.get(volume).map(Vec::as_slice).unwrap_or_default();
        parents.iter().any(|(name, ..)| *name == top)
            && (parents.iter()).any(|(_, kind, writes)| *kind == NodeType::BlockBackend && *writes)
    }
}

impl Qemu {
    /// Looks for writers below the mirrors `ids` (every mirror when `None`): one graph
    /// reading per source daemon. A mirror found with one is flagged, reported as an
    /// error once, and what its restart copies decided: a record kept since its target
    /// failed (taken while no writer was below) still holds every write; otherwise no
    /// record does, and the restart copies in full.
    pub(super) fn find_bypasses(&mut self, ids: Option<&[String]>) -> Vec<PairReport> {
        let mut by_site: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, job) in &self.jobs {
            let asked = ids.is_none_or(|ids| ids.contains(id));
            if asked && job.kind == Kind::Mirror && !job.frozen && !job.bypassed {
                by_site
                    .entry(job.pair.source.storage.clone())
                    .or_default()
                    .push(id.clone());
            }
        }
        let mut reports = Vec::new();
        for (site, ids) in by_site {
            let Some(graph) = self
                .sites
                .get(&site)
                .and_then(|q| q.ask(&QueryBlockGraph).ok())
            else {
                continue;
            };
            let parents = Parents::of(&graph);
            // Asked only once a writer is found: the audit runs every second.
            let mut exports = None;
            for id in ids {
                let job = &self.jobs[&id];
                let pair = job.pair.clone();
                if !parents.writer_below(&pair.source.name, &self.names.top(&pair)) {
                    continue;
                }
                let kept = job.condition == Condition::Failed
                    && matches!(self.records.get(&key(&pair)), Some(Ok(_)));
                self.jobs.get_mut(&id).expect("listed").bypassed = true;
                if !kept {
                    if let Some(Ok(old)) = self.records.remove(&key(&pair)) {
                        self.drop_bitmap(&site, &old);
                    }
                    self.records
                        .insert(key(&pair), Err(WhyFull::Bypassed(pair.source.clone())));
                }
                let names: Vec<&str> = (exports.get_or_insert_with(|| self.exports_of(&site)))
                    .iter()
                    .filter(|(_, node)| *node == pair.source.name)
                    .map(|(export, _)| export.as_str())
                    .collect();
                reports.push(report(
                    &pair,
                    PairEvent::Error(format!(
                        "a writer attached to {} after its mirror started (exports of it: {}) bypasses the mirror: its writes are not copied; `resume` restarts the mirror above it",
                        pair.source,
                        names.join(", ")
                    )),
                ));
            }
        }
        reports
    }

    /// Ends a mirror so that its pair starts again at once (its new filter takes over
    /// every writer of the volume): its end says nothing, the restart reports.
    pub(super) fn end_for_restart(&mut self, id: &str) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        job.intent = Intent::Freeze;
        // A mirror in step ends gracefully (see cancel_all on forced cancels).
        let force = job.condition != Condition::Running;
        if let Some(qmp) = self.sites.get(&job.pair.source.storage) {
            let _ = qmp.run(&BlockJobCancel { device: id, force });
        }
        self.await_end(id);
    }

    /// The exports of a daemon: (id, node).
    fn exports_of(&self, site: &str) -> Vec<(String, String)> {
        let Some(list) = self
            .sites
            .get(site)
            .and_then(|q| q.ask(&QueryBlockExports).ok())
        else {
            return Vec::new();
        };
        list.into_iter().map(|e| (e.id, e.node_name)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_writer_below_the_filter_is_found() {
        // As qemu-storage-daemon 10.0.2 answers x-debug-query-block-graph with a mirror
        // of `a` (filter `top`) and an export added to `a` after it started.
        let graph = |late: bool| {
            let mut edges = vec![
                json!({ "parent": 3, "child": 1, "name": "backing", "perm": ["write", "consistent-read"] }),
                json!({ "parent": 1, "child": 2, "name": "file", "perm": ["write"] }),
                json!({ "parent": 4, "child": 3, "name": "root", "perm": ["write", "consistent-read"] }),
            ];
            if late {
                edges.push(json!({ "parent": 5, "child": 1, "name": "root", "perm": ["write", "consistent-read"] }));
            }
            json!({
                "nodes": [
                    { "id": 1, "name": "a", "type": "block-driver" },
                    { "id": 2, "name": "a-file", "type": "block-driver" },
                    { "id": 3, "name": "top", "type": "block-driver" },
                    { "id": 4, "name": "", "type": "block-backend" },
                    { "id": 5, "name": "", "type": "block-backend" },
                ],
                "edges": edges,
            })
        };
        let read = |graph: serde_json::Value| -> BlockGraph {
            serde_json::from_value(graph).expect("a block graph")
        };
        let (late, early) = (read(graph(true)), read(graph(false)));
        assert!(Parents::of(&late).writer_below("a", "top"));
        assert!(
            !Parents::of(&early).writer_below("a", "top"),
            "the first export is above"
        );
        assert!(
            !Parents::of(&late).writer_below("a", "other"),
            "not this mirror's volume"
        );
    }
}
