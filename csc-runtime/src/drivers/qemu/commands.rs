//! The QMP commands this driver sends with arguments, typed: each struct serialises to
//! the arguments qapi/block-core.json (and qom.json, transaction.json) documents, field
//! for field, so a misspelt key or a wrong kind of value is a compile error, not a
//! refusal from a daemon at 3 a.m. Commands without arguments (`query-block-jobs`, ...)
//! are sent by name.

use super::replies;
use crate::address::Address;
use serde::Serialize;
use serde_json::Value;

/// A QMP command: its name and, as the struct, its arguments.
pub(super) trait Command: Serialize {
    const NAME: &'static str;

    /// The command as `Qmp::execute` sends it.
    fn wire(&self) -> (&'static str, Value) {
        (
            Self::NAME,
            serde_json::to_value(self).expect("QMP arguments serialise"),
        )
    }
}

/// A command whose reply the driver reads, and the type it reads it as
/// (`replies.rs`).
pub(super) trait Query: Command {
    type Reply: serde::de::DeserializeOwned;
}

macro_rules! query {
    ($name:literal => $type:ident -> $reply:ty) => {
        #[derive(Serialize)]
        pub(super) struct $type;
        impl Command for $type {
            const NAME: &'static str = $name;
        }
        impl Query for $type {
            type Reply = $reply;
        }
    };
}

query!("query-block-jobs" => QueryBlockJobs -> Vec<replies::BlockJob>);
query!("query-jobs" => QueryJobs -> Vec<replies::Job>);
query!("query-block-exports" => QueryBlockExports -> Vec<replies::Export>);
query!("x-debug-query-block-graph" => QueryBlockGraph -> replies::BlockGraph);

impl Query for QueryNamedBlockNodes {
    type Reply = Vec<replies::BlockNode>;
}

impl Query for QomList<'_> {
    type Reply = Vec<replies::Property>;
}

impl super::qmp::Qmp {
    /// Runs a typed query and reads its reply as its type; a reply of another shape
    /// is a protocol error naming the command.
    pub(super) fn ask<Q: Query>(&self, query: &Q) -> Result<Q::Reply, super::qmp::QmpError> {
        read_reply::<Q>(self.run(query)?)
    }

    /// [`Qmp::ask`], waiting at most `timeout` for the reply.
    pub(super) fn ask_within<Q: Query>(
        &self,
        query: &Q,
        timeout: std::time::Duration,
    ) -> Result<Q::Reply, super::qmp::QmpError> {
        read_reply::<Q>(self.run_within(query, timeout)?)
    }

    /// Runs a typed command.
    pub(super) fn run<C: Command>(&self, command: &C) -> Result<Value, super::qmp::QmpError> {
        let (name, arguments) = command.wire();
        self.execute(name, arguments)
    }

    /// Runs a typed command, waiting at most `timeout` for its reply.
    pub(super) fn run_within<C: Command>(
        &self,
        command: &C,
        timeout: std::time::Duration,
    ) -> Result<Value, super::qmp::QmpError> {
        let (name, arguments) = command.wire();
        self.execute_within(name, arguments, timeout)
    }

    /// Runs typed commands pipelined (`execute_all`).
    pub(super) fn run_all<C: Command>(
        &self,
        commands: &[C],
    ) -> Vec<Result<Value, super::qmp::QmpError>> {
        self.execute_all(commands.iter().map(Command::wire).collect())
    }
}

fn read_reply<Q: Query>(reply: Value) -> Result<Q::Reply, super::qmp::QmpError> {
    serde_json::from_value(reply).map_err(|e| {
        super::qmp::QmpError::Protocol(format!("{}: a reply of another shape: {e}", Q::NAME))
    })
}

macro_rules! command {
    ($name:literal => $type:ident) => {
        impl Command for $type<'_> {
            const NAME: &'static str = $name;
        }
    };
}

/// QMP's SocketAddress (`type` beside its fields).
#[derive(Serialize, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum SocketAddress<'a> {
    Unix { path: &'a str },
    Inet { host: &'a str, port: String },
}

impl<'a> SocketAddress<'a> {
    pub(super) fn of(address: &'a Address) -> SocketAddress<'a> {
        match address {
            Address::Unix(path) => SocketAddress::Unix { path },
            Address::Tcp { host, port } => SocketAddress::Inet {
                host: crate::address::bare_host(host),
                port: port.to_string(),
            },
            // Not a qemu address (`Plan::validate` refuses it): qemu says so if it is sent.
            Address::Local(path) | Address::Ssh { path, .. } => SocketAddress::Unix { path },
        }
    }
}

/// QMP's legacy SocketAddress (`nbd-server-start` takes only this form): `type`, and
/// the fields under `data`.
#[derive(Serialize, Debug, PartialEq)]
#[serde(tag = "type", content = "data", rename_all = "lowercase")]
pub(super) enum SocketAddressLegacy<'a> {
    Unix { path: &'a str },
    Inet { host: &'a str, port: String },
}

impl<'a> From<SocketAddress<'a>> for SocketAddressLegacy<'a> {
    fn from(address: SocketAddress<'a>) -> Self {
        match address {
            SocketAddress::Unix { path } => SocketAddressLegacy::Unix { path },
            SocketAddress::Inet { host, port } => SocketAddressLegacy::Inet { host, port },
        }
    }
}

#[derive(Serialize)]
pub(super) struct QueryNamedBlockNodes {
    pub flat: bool,
}
impl Command for QueryNamedBlockNodes {
    const NAME: &'static str = "query-named-block-nodes";
}

/// Every block node, flat (one list, children included).
pub(super) const ALL_NODES: QueryNamedBlockNodes = QueryNamedBlockNodes { flat: true };

#[derive(Serialize)]
pub(super) struct QomList<'a> {
    pub path: &'a str,
}
command!("qom-list" => QomList);

/// A node's options, by its driver (QAPI's BlockdevOptions): what `blockdev-add`
/// takes, and `blockdev-reopen` a list of.
#[derive(Serialize)]
#[serde(
    tag = "driver",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub(super) enum BlockdevAdd<'a> {
    /// A client of an NBD export.
    Nbd {
        node_name: &'a str,
        server: SocketAddress<'a>,
        export: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        read_only: Option<bool>,
        /// Seconds a request to a lost server waits for it before failing.
        #[serde(skip_serializing_if = "Option::is_none")]
        reconnect_delay: Option<u64>,
        /// TLS to the server: the client credentials object, and the name the
        /// server's certificate must carry.
        #[serde(flatten)]
        tls: Option<NbdTls<'a>>,
    },
    /// Swallows writes: a cut hold filter's child.
    NullCo {
        node_name: &'a str,
        size: u64,
    },
    Throttle(Throttle<'a>),
}
command!("blockdev-add" => BlockdevAdd);

/// An NBD client's TLS (block-core.json's BlockdevOptionsNbd).
#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(super) struct NbdTls<'a> {
    pub tls_creds: &'a str,
    pub tls_hostname: &'a str,
}

/// A throttle filter in a group over `file`: a pair's hold.
#[derive(Serialize, Clone)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Throttle<'a> {
    pub node_name: &'a str,
    pub throttle_group: &'a str,
    pub file: &'a str,
}

/// Reopens nodes with new options (here: throttle filters with a new child or group).
#[derive(Serialize)]
pub(super) struct BlockdevReopen<'a> {
    pub options: Vec<BlockdevAdd<'a>>,
}
command!("blockdev-reopen" => BlockdevReopen);

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct BlockdevDel<'a> {
    pub node_name: &'a str,
}
command!("blockdev-del" => BlockdevDel);

/// A throttle group's limits: none, or writes at one byte per second (a hold).
#[derive(Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bps_write: Option<u64>,
}

/// An object the driver adds to a daemon (QAPI's ObjectOptions, flat).
#[derive(Serialize)]
#[serde(tag = "qom-type", rename_all_fields = "kebab-case")]
pub(super) enum ObjectAdd<'a> {
    #[serde(rename = "throttle-group")]
    ThrottleGroup { id: &'a str, limits: Limits },
    /// x509 credentials read from `dir` on the daemon's host (crypto.json).
    #[serde(rename = "tls-creds-x509")]
    TlsCreds {
        id: &'a str,
        dir: &'a str,
        endpoint: TlsEndpoint,
        verify_peer: bool,
    },
    /// Who may connect (authz.json): the DNs of `rules`, nobody else.
    #[serde(rename = "authz-list")]
    AuthzList {
        id: &'a str,
        policy: &'static str,
        rules: Vec<AuthzRule<'a>>,
    },
}
command!("object-add" => ObjectAdd);

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum TlsEndpoint {
    Client,
    Server,
}

#[derive(Serialize)]
pub(super) struct AuthzRule<'a> {
    #[serde(rename = "match")]
    pub matches: &'a str,
    pub policy: &'static str,
    pub format: &'static str,
}

impl<'a> ObjectAdd<'a> {
    /// A throttle group without limits.
    pub(super) fn throttle_group(id: &'a str) -> ObjectAdd<'a> {
        ObjectAdd::ThrottleGroup {
            id,
            limits: Limits::default(),
        }
    }

    /// Allows exactly the DNs `allowed`, denies everyone else.
    pub(super) fn allow_only(id: &'a str, allowed: &'a [String]) -> ObjectAdd<'a> {
        ObjectAdd::AuthzList {
            id,
            policy: "deny",
            rules: allowed
                .iter()
                .map(|dn| AuthzRule {
                    matches: dn,
                    policy: "allow",
                    format: "exact",
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct ObjectDel<'a> {
    pub id: &'a str,
}
command!("object-del" => ObjectDel);

#[derive(Serialize)]
pub(super) struct QomSet<'a> {
    pub path: &'a str,
    pub property: &'static str,
    pub value: Limits,
}
command!("qom-set" => QomSet);

#[derive(Serialize)]
pub(super) struct BlockJobCancel<'a> {
    pub device: &'a str,
    pub force: bool,
}
command!("block-job-cancel" => BlockJobCancel);

/// A job by its id (`block-job-pause`, `block-job-resume`).
#[derive(Serialize)]
pub(super) struct BlockJobPause<'a> {
    pub device: &'a str,
}
command!("block-job-pause" => BlockJobPause);

#[derive(Serialize)]
pub(super) struct BlockJobResume<'a> {
    pub device: &'a str,
}
command!("block-job-resume" => BlockJobResume);

/// A mirror's copy mode, changed while it runs.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct BlockJobChange<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub copy_mode: CopyMode,
}
command!("block-job-change" => BlockJobChange);

#[derive(Serialize)]
pub(super) struct JobDismiss<'a> {
    pub id: &'a str,
}
command!("job-dismiss" => JobDismiss);

#[derive(Serialize)]
pub(super) struct JobCancel<'a> {
    pub id: &'a str,
}
command!("job-cancel" => JobCancel);

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(super) enum CopyMode {
    WriteBlocking,
    Background,
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Sync {
    Full,
    None,
    Incremental,
    Bitmap,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct BlockdevMirror<'a> {
    pub job_id: &'a str,
    pub device: &'a str,
    pub target: &'a str,
    pub sync: Sync,
    pub on_target_error: &'static str,
    pub on_source_error: &'static str,
    pub copy_mode: CopyMode,
    pub granularity: u64,
    /// Named, so the block graph tells the mirror's own writer from one below it.
    pub filter_node_name: &'a str,
}
command!("blockdev-mirror" => BlockdevMirror);

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct BlockdevBackup<'a> {
    pub job_id: &'a str,
    pub device: &'a str,
    pub target: &'a str,
    pub sync: Sync,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitmap: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitmap_mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_dismiss: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_perf: Option<Perf>,
}
command!("blockdev-backup" => BlockdevBackup);

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct Perf {
    pub use_copy_range: bool,
}

#[derive(Serialize)]
pub(super) struct BlockDirtyBitmapAdd<'a> {
    pub node: &'a str,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<u64>,
}
command!("block-dirty-bitmap-add" => BlockDirtyBitmapAdd);

/// A bitmap by node and name.
#[derive(Serialize)]
pub(super) struct Bitmap<'a> {
    pub node: &'a str,
    pub name: &'a str,
}

#[derive(Serialize)]
pub(super) struct BlockDirtyBitmapRemove<'a>(pub Bitmap<'a>);
command!("block-dirty-bitmap-remove" => BlockDirtyBitmapRemove);

#[derive(Serialize)]
pub(super) struct BlockDirtyBitmapMerge<'a> {
    pub node: &'a str,
    pub target: &'a str,
    pub bitmaps: Vec<Bitmap<'a>>,
}
command!("block-dirty-bitmap-merge" => BlockDirtyBitmapMerge);

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct NbdServerStart<'a> {
    pub addr: SocketAddressLegacy<'a>,
    /// QEMU's default is 100 (since 9.1): one client per pair, so a session of more
    /// pairs to one site asks for what it needs. Its 101st client would otherwise
    /// hang in connect, and the monitor of its source with it.
    pub max_connections: u32,
    /// TLS: the server credentials object, and who may connect.
    #[serde(flatten)]
    pub tls: Option<NbdServerTls<'a>>,
}
command!("nbd-server-start" => NbdServerStart);

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(super) struct NbdServerTls<'a> {
    pub tls_creds: &'a str,
    pub tls_authz: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct BlockExportAdd<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    pub node_name: &'a str,
    pub name: &'a str,
    pub writable: bool,
}
command!("block-export-add" => BlockExportAdd);

impl<'a> BlockExportAdd<'a> {
    /// An NBD export of `node` whose id and name are both `export`.
    pub(super) fn nbd(export: &'a str, node: &'a str, writable: bool) -> Self {
        BlockExportAdd {
            kind: "nbd",
            id: export,
            node_name: node,
            name: export,
            writable,
        }
    }
}

#[derive(Serialize)]
pub(super) struct BlockExportDel<'a> {
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
}
command!("block-export-del" => BlockExportDel);

/// Several actions at one instant.
#[derive(Serialize)]
pub(super) struct Transaction<'a> {
    pub actions: Vec<Action<'a>>,
    pub properties: TransactionProperties,
}
command!("transaction" => Transaction);

#[derive(Serialize)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub(super) enum Action<'a> {
    BlockDirtyBitmapAdd(BlockDirtyBitmapAdd<'a>),
    BlockdevBackup(BlockdevBackup<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct TransactionProperties {
    /// `individual`: each action's job succeeds or fails on its own once started.
    pub completion_mode: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Each command as the daemons were sent it before it was typed (the recipes of
    /// docs/qemu-recipes.md), key for key.
    #[test]
    fn typed_commands_serialise_to_the_documented_arguments() {
        let tcp = Address::Tcp {
            host: "[::1]".into(),
            port: 10809,
        };
        let cases: Vec<((&str, Value), Value)> = vec![
            (
                BlockdevMirror {
                    job_id: "j",
                    device: "db",
                    target: "t",
                    sync: Sync::Full,
                    on_target_error: "stop",
                    on_source_error: "stop",
                    copy_mode: CopyMode::WriteBlocking,
                    granularity: 4096,
                    filter_node_name: "f",
                }
                .wire(),
                json!({ "job-id": "j", "device": "db", "target": "t", "sync": "full", "filter-node-name": "f",
                        "on-target-error": "stop", "on-source-error": "stop",
                        "copy-mode": "write-blocking", "granularity": 4096 }),
            ),
            (
                Transaction {
                    actions: vec![
                        Action::BlockDirtyBitmapAdd(BlockDirtyBitmapAdd {
                            node: "db",
                            name: "b",
                            granularity: None,
                        }),
                        Action::BlockdevBackup(BlockdevBackup {
                            job_id: "j",
                            device: "db",
                            target: "t",
                            sync: Sync::Incremental,
                            bitmap: Some("b"),
                            bitmap_mode: None,
                            auto_dismiss: None,
                            x_perf: Some(Perf {
                                use_copy_range: true,
                            }),
                        }),
                    ],
                    properties: TransactionProperties {
                        completion_mode: "individual",
                    },
                }
                .wire(),
                json!({ "actions": [
                    { "type": "block-dirty-bitmap-add", "data": { "node": "db", "name": "b" } },
                    { "type": "blockdev-backup", "data": { "job-id": "j", "device": "db", "target": "t",
                      "sync": "incremental", "bitmap": "b", "x-perf": { "use-copy-range": true } } },
                ], "properties": { "completion-mode": "individual" } }),
            ),
            (
                BlockdevAdd::Nbd {
                    node_name: "n",
                    server: SocketAddress::of(&tcp),
                    export: "e",
                    read_only: None,
                    reconnect_delay: Some(5),
                    tls: None,
                }
                .wire(),
                json!({ "driver": "nbd", "node-name": "n",
                        "server": { "type": "inet", "host": "::1", "port": "10809" },
                        "export": "e", "reconnect-delay": 5 }),
            ),
            (
                BlockdevAdd::NullCo {
                    node_name: "s",
                    size: 512,
                }
                .wire(),
                json!({ "driver": "null-co", "node-name": "s", "size": 512 }),
            ),
            (
                BlockdevAdd::Throttle(Throttle {
                    node_name: "h",
                    throttle_group: "g",
                    file: "t",
                })
                .wire(),
                json!({ "driver": "throttle", "node-name": "h", "throttle-group": "g", "file": "t" }),
            ),
            (
                BlockdevReopen {
                    options: vec![BlockdevAdd::Throttle(Throttle {
                        node_name: "h",
                        throttle_group: "g",
                        file: "s",
                    })],
                }
                .wire(),
                json!({ "options": [{ "driver": "throttle", "node-name": "h", "throttle-group": "g", "file": "s" }] }),
            ),
            (
                BlockdevAdd::Nbd {
                    node_name: "n",
                    server: SocketAddress::of(&tcp),
                    export: "e",
                    read_only: None,
                    reconnect_delay: None,
                    tls: Some(NbdTls {
                        tls_creds: "c",
                        tls_hostname: "b.example",
                    }),
                }
                .wire(),
                json!({ "driver": "nbd", "node-name": "n",
                        "server": { "type": "inet", "host": "::1", "port": "10809" },
                        "export": "e", "tls-creds": "c", "tls-hostname": "b.example" }),
            ),
            (
                NbdServerStart {
                    addr: SocketAddress::of(&tcp).into(),
                    max_connections: 100,
                    tls: Some(NbdServerTls {
                        tls_creds: "s",
                        tls_authz: "z",
                    }),
                }
                .wire(),
                json!({ "addr": { "type": "inet", "data": { "host": "::1", "port": "10809" } },
                        "max-connections": 100, "tls-creds": "s", "tls-authz": "z" }),
            ),
            (
                ObjectAdd::TlsCreds {
                    id: "c",
                    dir: "/etc/pki/qemu",
                    endpoint: TlsEndpoint::Server,
                    verify_peer: true,
                }
                .wire(),
                json!({ "qom-type": "tls-creds-x509", "id": "c", "dir": "/etc/pki/qemu",
                        "endpoint": "server", "verify-peer": true }),
            ),
            (
                ObjectAdd::allow_only("z", &["CN=a,O=x".to_string()]).wire(),
                json!({ "qom-type": "authz-list", "id": "z", "policy": "deny",
                        "rules": [{ "match": "CN=a,O=x", "policy": "allow", "format": "exact" }] }),
            ),
            (
                ObjectAdd::throttle_group("g").wire(),
                json!({ "qom-type": "throttle-group", "id": "g", "limits": {} }),
            ),
            (
                QomSet {
                    path: "g",
                    property: "limits",
                    value: Limits { bps_write: Some(1) },
                }
                .wire(),
                json!({ "path": "g", "property": "limits", "value": { "bps-write": 1 } }),
            ),
            (
                BlockJobChange {
                    id: "j",
                    kind: "mirror",
                    copy_mode: CopyMode::WriteBlocking,
                }
                .wire(),
                json!({ "id": "j", "type": "mirror", "copy-mode": "write-blocking" }),
            ),
            (
                NbdServerStart {
                    addr: SocketAddress::of(&Address::Unix("/run/x.sock".into())).into(),
                    max_connections: 100,
                    tls: None,
                }
                .wire(),
                json!({ "addr": { "type": "unix", "data": { "path": "/run/x.sock" } }, "max-connections": 100 }),
            ),
            (
                BlockExportAdd {
                    kind: "nbd",
                    id: "x",
                    node_name: "db",
                    name: "x",
                    writable: true,
                }
                .wire(),
                json!({ "type": "nbd", "id": "x", "node-name": "db", "name": "x", "writable": true }),
            ),
            (
                BlockDirtyBitmapMerge {
                    node: "n",
                    target: "b",
                    bitmaps: vec![Bitmap {
                        node: "m",
                        name: "c",
                    }],
                }
                .wire(),
                json!({ "node": "n", "target": "b", "bitmaps": [{ "node": "m", "name": "c" }] }),
            ),
            (
                BlockDirtyBitmapRemove(Bitmap {
                    node: "n",
                    name: "b",
                })
                .wire(),
                json!({ "node": "n", "name": "b" }),
            ),
            (
                BlockExportDel {
                    id: "x",
                    mode: Some("hard"),
                }
                .wire(),
                json!({ "id": "x", "mode": "hard" }),
            ),
            (ALL_NODES.wire(), json!({ "flat": true })),
        ];
        for ((name, got), want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }
}
