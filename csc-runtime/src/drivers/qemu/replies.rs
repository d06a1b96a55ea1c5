//! The replies the driver reads, typed (QEMU's qapi: block-core.json, job.json,
//! block-export.json, qom.json). Only the fields the driver uses; every other field
//! is ignored, and a field QEMU may leave out has its default, so a newer QEMU that
//! adds fields reads the same.

use serde::Deserialize;

/// A job event the driver acts on (block-core.json's BLOCK_JOB_*), read from the
/// monitor's line; the reader drops every other event unparsed (`NAMES`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", content = "data")]
pub enum JobEvent {
    /// A mirror's initial copy is done: it is in step.
    #[serde(rename = "BLOCK_JOB_READY")]
    Ready { device: String },
    /// An I/O error stopped the job or was ignored, as its policy says.
    #[serde(rename = "BLOCK_JOB_ERROR")]
    Error {
        device: String,
        operation: String,
        action: String,
    },
    #[serde(rename = "BLOCK_JOB_COMPLETED")]
    Completed {
        device: String,
        #[serde(default)]
        len: Option<u64>,
        #[serde(default)]
        error: Option<String>,
    },
    #[serde(rename = "BLOCK_JOB_CANCELLED")]
    Cancelled { device: String },
}

impl JobEvent {
    /// The names of the events above, as QEMU sends them.
    pub const NAMES: [&'static str; 4] = [
        "BLOCK_JOB_READY",
        "BLOCK_JOB_ERROR",
        "BLOCK_JOB_COMPLETED",
        "BLOCK_JOB_CANCELLED",
    ];

    /// The job it is about.
    pub fn device(&self) -> &str {
        match self {
            JobEvent::Ready { device }
            | JobEvent::Error { device, .. }
            | JobEvent::Completed { device, .. }
            | JobEvent::Cancelled { device } => device,
        }
    }
}

/// One entry of `query-block-jobs` (BlockJobInfo).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) struct BlockJob {
    /// The job's id (named `device` for block jobs).
    pub device: String,
    #[serde(rename = "type")]
    pub kind: JobType,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub len: u64,
    /// A mirror's initial copy is done: it is in step.
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub io_status: IoStatus,
    #[serde(default)]
    pub status: JobStatus,
    /// A write-blocking mirror has nothing left to copy in the background (QEMU 8.2+).
    #[serde(default)]
    pub actively_synced: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum JobType {
    Mirror,
    Backup,
    #[default]
    #[serde(other)]
    Other,
}

/// BlockDeviceIoStatus.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum IoStatus {
    #[default]
    Ok,
    Failed,
    #[serde(other)]
    Other,
}

/// JobStatus (the states the driver looks at; the rest are `Other`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum JobStatus {
    Running,
    Ready,
    Concluded,
    #[default]
    #[serde(other)]
    Other,
}

/// One entry of `query-jobs` (JobInfo).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Job {
    pub id: String,
    #[serde(default)]
    pub status: JobStatus,
    #[serde(default)]
    pub current_progress: u64,
    pub error: Option<String>,
}

/// One entry of `query-named-block-nodes` (BlockDeviceInfo).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) struct BlockNode {
    pub node_name: String,
    /// The node's file name; for a filter over an unnamed description QEMU writes
    /// `json:{…}` here.
    #[serde(default)]
    pub file: String,
    pub image: Option<Image>,
    #[serde(default)]
    pub dirty_bitmaps: Vec<DirtyBitmap>,
}

impl BlockNode {
    /// The driver of this node's child, when `file` describes it as `json:{…,
    /// "file": {"driver": …}}` (a filter over an unnamed node).
    pub(super) fn child_driver(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Description {
            file: Child,
        }
        #[derive(Deserialize)]
        struct Child {
            driver: String,
        }
        let json = self.file.strip_prefix("json:")?;
        serde_json::from_str::<Description>(json)
            .ok()
            .map(|d| d.file.driver)
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Image {
    pub virtual_size: u64,
}

/// BlockDirtyInfo. A mirror's own bitmap has no name.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(super) struct DirtyBitmap {
    pub name: Option<String>,
}

/// One entry of `query-block-exports` (BlockExportInfo).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Export {
    pub id: String,
    pub node_name: String,
}

/// One entry of `qom-list` (ObjectPropertyInfo).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(super) struct Property {
    pub name: String,
}

/// `x-debug-query-block-graph` (XDbgBlockGraph): the only reply that says which
/// node is which node's child.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub(super) struct BlockGraph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(super) struct GraphNode {
    pub id: u64,
    /// The node's name (a job's id for a job's own node).
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: NodeType,
}

/// XDbgBlockGraphNodeType.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum NodeType {
    /// A user of a node: an export's, a job's, a device's.
    BlockBackend,
    BlockJob,
    BlockDriver,
    #[serde(other)]
    Other,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(super) struct GraphEdge {
    pub parent: u64,
    pub child: u64,
    /// The child's role (`file`, `backing`, `target`...).
    pub name: String,
    /// The permissions the parent holds on the child (`write`, ...).
    #[serde(default)]
    pub perm: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_job_event_the_reader_lets_through_reads_as_its_variant() {
        let line = |name: &str, data: serde_json::Value| json!({"timestamp": {"seconds": 1, "microseconds": 2}, "event": name, "data": data});
        let job = json!({"type": "mirror", "device": "m", "len": 8, "offset": 8, "speed": 0});
        let error = json!({"device": "m", "operation": "write", "action": "stop"});
        for name in JobEvent::NAMES {
            let data = if name == "BLOCK_JOB_ERROR" {
                &error
            } else {
                &job
            };
            let event: JobEvent = serde_json::from_value(line(name, data.clone())).expect(name);
            assert_eq!(event.device(), "m", "{name}");
        }
        let completed: JobEvent = serde_json::from_value(line(
            "BLOCK_JOB_COMPLETED",
            json!({"type": "backup", "device": "b", "len": 4, "offset": 2, "speed": 0,
                   "error": "Input/output error"}),
        ))
        .expect("completed");
        assert_eq!(
            completed,
            JobEvent::Completed {
                device: "b".into(),
                len: Some(4),
                error: Some("Input/output error".into())
            }
        );
        assert!(serde_json::from_value::<JobEvent>(line(
            "JOB_STATUS_CHANGE",
            json!({"id": "m", "status": "running"})
        ))
        .is_err());
    }

    #[test]
    fn replies_as_qemu_9_writes_them_read_into_the_driver_s_types() {
        // Shaped as QEMU's qapi schema defines them, with fields the driver ignores.
        let job: BlockJob = serde_json::from_value(json!({
            "auto-finalize": true, "io-status": "ok", "device": "cssc-1a2b3c-m1-0",
            "auto-dismiss": true, "busy": false, "len": 1048576, "offset": 1048576,
            "status": "ready", "paused": false, "speed": 0, "ready": true,
            "type": "mirror", "actively-synced": true
        }))
        .expect("BlockJobInfo");
        assert_eq!(
            (
                job.kind,
                job.status,
                job.io_status,
                job.ready,
                job.actively_synced
            ),
            (JobType::Mirror, JobStatus::Ready, IoStatus::Ok, true, true)
        );
        let backup: BlockJob = serde_json::from_value(json!({
            "device": "b", "type": "backup", "io-status": "nospace", "status": "standby",
            "len": 4, "offset": 0, "ready": false, "paused": true
        }))
        .expect("a backup, an io-status and a status the driver does not name");
        assert_eq!(
            (backup.kind, backup.io_status, backup.status),
            (JobType::Backup, IoStatus::Other, JobStatus::Other)
        );
        let node: BlockNode = serde_json::from_value(json!({
            "node-name": "cssc-1a2b3c-hold-1-0", "drv": "throttle",
            "file": "json:{\"driver\": \"throttle\", \"file\": {\"driver\": \"null-co\"}}",
            "image": {"virtual-size": 1048576, "filename": "x", "format": "throttle"},
            "dirty-bitmaps": [{"name": "cssc-1a2b3c-r1-0", "granularity": 65536,
                               "count": 0, "recording": true, "busy": false,
                               "persistent": false}]
        }))
        .expect("BlockDeviceInfo");
        assert_eq!(node.child_driver().as_deref(), Some("null-co"));
        assert_eq!(node.image.map(|i| i.virtual_size), Some(1048576));
        assert_eq!(
            node.dirty_bitmaps[0].name.as_deref(),
            Some("cssc-1a2b3c-r1-0")
        );
        let mirrored: BlockNode = serde_json::from_value(json!({
            "node-name": "a", "file": "/x", "image": {"virtual-size": 4},
            "dirty-bitmaps": [{"granularity": 65536, "count": 0, "recording": true,
                               "busy": false, "persistent": false}]
        }))
        .expect("a mirror's unnamed bitmap");
        assert_eq!(mirrored.dirty_bitmaps[0].name, None);
        let graph: BlockGraph = serde_json::from_value(json!({
            "nodes": [{"id": 1, "name": "a", "type": "block-driver"},
                      {"id": 2, "name": "a-file", "type": "block-driver"}],
            "edges": [{"parent": 1, "child": 2, "name": "file",
                       "perm": ["consistent-read", "write"], "shared-perm": []}]
        }))
        .expect("XDbgBlockGraph");
        assert_eq!(graph.edges[0].perm, ["consistent-read", "write"]);
        let job: Job = serde_json::from_value(json!({
            "id": "j", "type": "backup", "status": "concluded",
            "current-progress": 65536, "total-progress": 65536, "error": "EIO"
        }))
        .expect("JobInfo");
        assert_eq!(
            (job.status, job.current_progress, job.error.as_deref()),
            (JobStatus::Concluded, 65536, Some("EIO"))
        );
    }
}
