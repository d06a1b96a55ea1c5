//! What a copy needs in the daemons besides its job, and what this driver adds for it:
//! NBD servers and exports at a target's site, NBD client nodes at the source's,
//! bitmaps; added once, recorded in the driver's registries, released with the pair.

use super::commands::{
    BlockExportAdd, BlockExportDel, BlockdevAdd, BlockdevDel, Command, NbdServerStart,
    NbdServerTls, NbdTls, ObjectAdd, SocketAddress, TlsEndpoint,
};
use super::qmp::{QmpError, Refusal};
use super::{refused, Qemu};
use crate::address::Address;
use crate::drivers::DriverError;
use crate::plan::{Pair, Plan, Volume};
use crate::tls::Tls;
use std::time::{Duration, Instant};

/// The most a stop spends removing nodes that write to storages that do not answer.
const ABSENT_PATIENCE: Duration = Duration::from_secs(5);

impl<'a> NbdServerStart<'a> {
    /// A session's NBD server of `site` at `data` (over `tls` if the storage has it),
    /// allowing the connections it may have to serve: a client per pair whose target
    /// it holds, as many again for a resync or verify beside each, and QEMU's default
    /// of 100 at least.
    pub(super) fn of_session(
        plan: &Plan,
        site: &str,
        data: &'a Address,
        tls: Option<&'a ServerTls>,
    ) -> Self {
        let targets = (1..=plan.sequences.len() as u32)
            .flat_map(|n| plan.pairs(n))
            .filter(|p| p.target.storage == site)
            .count();
        NbdServerStart {
            addr: SocketAddress::of(data).into(),
            max_connections: u32::try_from(2 * targets).unwrap_or(u32::MAX).max(100),
            tls: tls.map(ServerTls::options),
        }
    }
}

/// How an NBD client node reaches a server over TLS.
pub(super) struct ClientTls {
    /// The client credentials object in the client's daemon.
    creds: String,
    /// The name the server's certificate must carry.
    hostname: String,
}

impl ClientTls {
    pub(super) fn options(&self) -> NbdTls<'_> {
        NbdTls {
            tls_creds: &self.creds,
            tls_hostname: &self.hostname,
        }
    }
}

/// What an NBD server of a `[tls]` storage needs: server credentials from its
/// `daemon_dir` (clients must present a certificate of its CA), and an authz that
/// lets in only the session's daemons' DNs.
pub(super) struct ServerTls {
    creds: String,
    authz: String,
    dir: String,
    allowed: Vec<String>,
}

impl ServerTls {
    pub(super) fn of(plan: &Plan, site: &str, names: &super::names::Names) -> Option<ServerTls> {
        let tls = plan.tls.get(site)?;
        Some(ServerTls {
            creds: names.tls("server"),
            authz: names.authz(),
            dir: tls.daemon_dir.clone(),
            allowed: plan.tls.values().map(|t| t.identity.clone()).collect(),
        })
    }

    /// Its objects, in the order they are added.
    pub(super) fn objects(&self) -> [ObjectAdd<'_>; 2] {
        [
            ObjectAdd::TlsCreds {
                id: &self.creds,
                dir: &self.dir,
                endpoint: TlsEndpoint::Server,
                verify_peer: true,
            },
            ObjectAdd::allow_only(&self.authz, &self.allowed),
        ]
    }

    pub(super) fn options(&self) -> NbdServerTls<'_> {
        NbdServerTls {
            tls_creds: &self.creds,
            tls_authz: &self.authz,
        }
    }
}

/// The name a storage's certificate carries for its NBD server: its `[tls]
/// hostname`, else its DATA address's host.
fn data_hostname<'p>(plan: &'p Plan, site: &str, tls: &'p Tls) -> &'p str {
    match (&tls.hostname, &plan.storages[site].data) {
        (Some(name), _) => name,
        (None, Some(Address::Tcp { host, .. })) => crate::address::bare_host(host),
        (None, _) => "",
    }
}

impl Qemu {
    /// The node a job in the source's daemon writes to: the target itself on the same
    /// site, else an NBD client node to the target's export (created here).
    pub(super) fn target_node(
        &mut self,
        pair: &Pair,
    ) -> Result<(String, Option<String>), DriverError> {
        if pair.source.storage == pair.target.storage {
            return Ok((pair.target.name.clone(), None));
        }
        let node = self.names.nbd(pair);
        self.nbd_client(pair, &node)?;
        Ok((node.clone(), Some(node)))
    }

    /// Adds NBD client node `node` in the source's daemon, to the target's export
    /// (served first if it is not).
    pub(super) fn nbd_client(&mut self, pair: &Pair, node: &str) -> Result<(), DriverError> {
        let (export, data) = self.serve_target(pair)?;
        let tls = self.client_tls(&pair.source, &pair.target.storage)?;
        let client = BlockdevAdd::Nbd {
            node_name: node,
            server: SocketAddress::of(&data),
            export: &export,
            read_only: None,
            // A write to a dead target is held this long (not acknowledged without its
            // target) while the rest of the group is held: the failure's own hold.
            reconnect_delay: Some(self.timing.failed_target_hold_secs),
            tls: tls.as_ref().map(ClientTls::options),
        };
        self.qmp(&pair.source.storage)?
            .run(&client)
            .map_err(|e| refused(&pair.source.storage, &pair.target, e))?;
        Ok(())
    }

    /// Adds an object to a daemon once (one already there is ours: a daemon that hung
    /// and came back keeps what the session added).
    pub(super) fn ensure_object(
        &mut self,
        site: &str,
        object: &ObjectAdd,
    ) -> Result<(), DriverError> {
        let id = match object {
            ObjectAdd::ThrottleGroup { id, .. }
            | ObjectAdd::TlsCreds { id, .. }
            | ObjectAdd::AuthzList { id, .. } => id.to_string(),
        };
        let key = (site.to_string(), id);
        if self.objects.contains(&key) {
            return Ok(());
        }
        match self.qmp(site)?.run(object) {
            Ok(_)
            | Err(QmpError::Refused {
                kind: Refusal::Taken,
                ..
            }) => {
                self.objects.insert(key);
                Ok(())
            }
            Err(e) => Err(DriverError::at(
                site,
                format!("cannot add object {}: {e}", key.1),
            )),
        }
    }

    /// The TLS of an NBD client in `source`'s daemon to `target`'s server, when the
    /// target speaks TLS: the client credentials object (added to the source's
    /// daemon, from its `daemon_dir`) and the name the target's certificate carries.
    pub(super) fn client_tls(
        &mut self,
        source: &Volume,
        target: &str,
    ) -> Result<Option<ClientTls>, DriverError> {
        let Some(target_tls) = self.plan.tls.get(target) else {
            return Ok(None);
        };
        let hostname = data_hostname(&self.plan, target, target_tls).to_string();
        let Some(own) = self.plan.tls.get(&source.storage) else {
            return Err(DriverError::on(
                &source.storage,
                &source.name,
                format!("reaches {target}'s exports, which speak TLS, but has no [storage.{}.tls]: its daemon needs a client certificate", source.storage),
            ));
        };
        let (creds, dir) = (self.names.tls("client"), own.daemon_dir.clone());
        self.ensure_object(
            &source.storage,
            &ObjectAdd::TlsCreds {
                id: &creds,
                dir: &dir,
                endpoint: TlsEndpoint::Client,
                verify_peer: true,
            },
        )?;
        Ok(Some(ClientTls { creds, hostname }))
    }

    /// The TLS of `site`'s NBD server (`ServerTls`), its objects added once.
    fn server_tls(&mut self, site: &str) -> Result<Option<ServerTls>, DriverError> {
        let Some(tls) = ServerTls::of(&self.plan, site, &self.names) else {
            return Ok(None);
        };
        for object in tls.objects() {
            self.ensure_object(site, &object)?;
        }
        Ok(Some(tls))
    }

    /// Starts the NBD server of a storage at its DATA address unless one runs there;
    /// returns the address. `volume` is what needs it (for the refusal).
    pub(super) fn ensure_nbd_server(
        &mut self,
        site: &str,
        volume: &Volume,
    ) -> Result<Address, DriverError> {
        let data = self.plan.storages[site].data.clone().ok_or_else(|| {
            DriverError::on(
                site,
                &volume.name,
                "has no DATA address: other sites cannot reach its volumes",
            )
        })?;
        if !self.nbd_servers.contains(site) && !self.served.contains(site) {
            let tls = self.server_tls(site)?;
            let start = NbdServerStart::of_session(&self.plan, site, &data, tls.as_ref());
            match self.qmp(site)?.run(&start) {
                Ok(_) => {
                    self.nbd_servers.insert(site.to_string());
                }
                // The administrator's own server (--nbd-server) serves as well: not
                // ours to stop, and not asked for again for every pair.
                Err(QmpError::Refused {
                    kind: Refusal::AlreadyRunning,
                    ..
                }) => {
                    self.served.insert(site.to_string());
                }
                Err(e) => return Err(refused(site, volume, e)),
            }
        }
        Ok(data)
    }

    /// Exports a pair's target in its daemon (starting the NBD server there if it has
    /// none): the export's name and where it is served. Asking again is harmless, and
    /// is how a target daemon that restarted serves the pair again.
    pub(super) fn serve_target(&mut self, pair: &Pair) -> Result<(String, Address), DriverError> {
        let target_site = pair.target.storage.clone();
        let data = self.ensure_nbd_server(&target_site, &pair.target)?;
        let export = self.export(&pair.target, &pair.target.name)?;
        Ok((export, data))
    }

    /// Exports `volume` writable in its daemon as `names.export(as_name)` (once; an
    /// export that is already there is ours: a daemon that hung and came back keeps
    /// its exports). Returns the export's name.
    pub(super) fn export(&mut self, volume: &Volume, as_name: &str) -> Result<String, DriverError> {
        let site = &volume.storage;
        let export = self.names.export(as_name);
        let key = (site.clone(), as_name.to_string());
        if !self.exports.contains(&key) {
            match self
                .qmp(site)?
                .run(&BlockExportAdd::nbd(&export, &volume.name, true))
            {
                Ok(_) => {}
                Err(QmpError::Refused {
                    kind: Refusal::Taken,
                    ..
                }) => {}
                Err(e) => return Err(refused(site, volume, e)),
            }
            self.exports.insert(key);
        }
        Ok(export)
    }

    /// Removes a pair's hold filter and sink (`continuous`), its NBD client node, and
    /// the export when no job uses it any more.
    pub(super) fn release(&mut self, pair: &Pair, continuous: bool, remote_node: Option<String>) {
        // Removing a node that writes to a storage gone or hung waits for it: QEMU's
        // reconnect delay, or the hang, per node, with the source's monitor held
        // (docs/qemu-recipes.md). A stop spends at most ABSENT_PATIENCE on them; the
        // rest stay, and `cleanup` removes them.
        let absent = self.stopping
            && remote_node.is_some()
            && !self.sites.contains_key(&pair.target.storage);
        if absent && self.waited_for_absent >= ABSENT_PATIENCE {
            *self
                .left_behind
                .entry((pair.source.storage.clone(), pair.target.storage.clone()))
                .or_default() += 1;
            return;
        }
        let began = Instant::now();
        self.remove_nodes(pair, continuous, remote_node);
        if absent {
            self.waited_for_absent += began.elapsed();
        }
    }

    fn remove_nodes(&mut self, pair: &Pair, continuous: bool, remote_node: Option<String>) {
        if let Some(qmp) = self.sites.get(&pair.source.storage) {
            if continuous {
                for node in [self.names.hold(pair), self.names.sink(pair)] {
                    let _ = qmp.run(&BlockdevDel { node_name: &node });
                }
            }
        }
        let Some(node) = remote_node else { return };
        self.delete_client(pair, &node);
        let in_use = self.jobs.values().any(|j| j.pair.target == pair.target);
        let key = (pair.target.storage.clone(), pair.target.name.clone());
        if !in_use && self.exports.remove(&key) {
            if let Some(qmp) = self.sites.get(&pair.target.storage) {
                // A target that hangs keeps its export (a later start takes it as
                // ours, `cleanup` removes it): the session does not wait on it.
                let _ = qmp.run_within(
                    &BlockExportDel {
                        id: &self.names.export(&pair.target.name),
                        mode: None,
                    },
                    self.timing.hung_after,
                );
            }
        }
    }

    /// Deletes a pair's NBD client node (in its source's daemon). Deleting a client
    /// whose server hangs waits for that server and holds the source's whole monitor
    /// meanwhile (every client's commands, qemu-storage-daemon 10.0.2; measured, see
    /// docs/qemu-recipes.md): a delete that takes longer than a hang gets its target's
    /// connections destroyed, which lets it finish at once.
    pub(super) fn delete_client(&self, pair: &Pair, node: &str) {
        let Some(qmp) = self.sites.get(&pair.source.storage) else {
            return;
        };
        let (name, arguments) = BlockdevDel { node_name: node }.wire();
        let _ = qmp.execute_unblocking(name, arguments, self.timing.hung_after, || {
            if let Err(e) = self.destroy_connections(&pair.target.storage) {
                tracing::warn!(
                    kind = "storage",
                    storage = %pair.source.storage,
                    "deleting {node} waits for {}, which does not answer: {e}",
                    pair.target.storage
                );
            }
        });
    }

    pub(super) fn has_bitmap(&self, site: &str, node: &str, name: &str) -> bool {
        self.bitmaps
            .contains(&(site.to_string(), node.to_string(), name.to_string()))
    }
}
