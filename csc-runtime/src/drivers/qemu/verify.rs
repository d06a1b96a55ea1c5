//! The exports `verify` reads a pair's two sides through (verify.rs): one per volume,
//! `cssc-TAG-vf-VOLUME`, at its daemon's DATA address; read-only for the source (a
//! reader is no writer below the mirror), writable for a target being repaired.

use super::commands::{BlockExportAdd, BlockExportDel};
use super::{refused, Qemu};
use crate::drivers::DriverError;
use crate::plan::{Pair, Volume};
use crate::verify::{Job, Side};

impl Qemu {
    pub(super) fn verify_exports(
        &mut self,
        pairs: &[Pair],
        repair: bool,
    ) -> Result<Vec<Job>, DriverError> {
        let mut jobs = Vec::new();
        for pair in pairs {
            let sides = self
                .verify_side(&pair.source, false)
                .and_then(|source| Ok((source, self.verify_side(&pair.target, repair)?)));
            match sides {
                Ok((source, target)) => jobs.push(Job {
                    sequence: pair.sequence,
                    copyset: pair.copyset,
                    source,
                    target,
                }),
                Err(e) => {
                    self.drop_verify_exports(pairs);
                    return Err(e);
                }
            }
        }
        Ok(jobs)
    }

    fn verify_side(&mut self, volume: &Volume, writable: bool) -> Result<Side, DriverError> {
        // cssc's own NBD reader (nbd.rs) speaks no TLS yet.
        if self.plan.tls.contains_key(&volume.storage) {
            return Err(DriverError::on(
                &volume.storage,
                &volume.name,
                "speaks TLS, and verify's reader does not yet: verify is not available on storages with [tls] (docs/runtime.md, \"Links between sites\")",
            ));
        }
        let address = self.ensure_nbd_server(&volume.storage, volume)?;
        let export = self.names.verify_export(&volume.name);
        self.qmp(&volume.storage)?
            .run(&BlockExportAdd::nbd(&export, &volume.name, writable))
            .map_err(|e| refused(&volume.storage, volume, e))?;
        self.verifying
            .insert((volume.storage.clone(), export.clone()));
        Ok(Side { address, export })
    }

    pub(super) fn drop_verify_exports(&mut self, pairs: &[Pair]) {
        for volume in pairs.iter().flat_map(|p| [&p.source, &p.target]) {
            let key = (
                volume.storage.clone(),
                self.names.verify_export(&volume.name),
            );
            if self.verifying.remove(&key) {
                if let Some(qmp) = self.sites.get(&key.0) {
                    let _ = qmp.run(&BlockExportDel {
                        id: &key.1,
                        mode: Some("hard"),
                    });
                }
            }
        }
    }
}
