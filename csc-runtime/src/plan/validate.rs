//! What makes a plan one a session can run: the compiler's rules for copy sets and
//! the storages' capabilities, checked again after a run-time file changed them.

use super::*;

/// A fault of a plan, and the copy set (index) it is about, if one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanFault {
    pub copyset: Option<usize>,
    pub message: String,
}

impl Plan {
    /// What a run-time file could break: chain lengths, storage references, and the
    /// compiler's rule that a volume is in one place of one copy set only (a source
    /// is never its own target; no volume is written by two pairs).
    /// The first fault, with the copy set it is about.
    pub fn validate(&self) -> Result<(), PlanFault> {
        let of_set = |i: usize, message: String| PlanFault {
            copyset: Some(i),
            message,
        };
        let mut seen: BTreeMap<&Volume, &str> = BTreeMap::new();
        for (i, set) in self.copysets.iter().enumerate() {
            for volume in &set.volumes {
                if let Some(first) = seen.insert(volume, &set.name) {
                    return Err(of_set(i, format!(
                        "copy set {}: volume {volume} is already in copy set {first}: a volume is in one place of one copy set only",
                        set.name
                    )));
                }
            }
        }
        for id in self.storages_used() {
            let Some(storage) = self.storages.get(id) else {
                continue;
            };
            let driver = storage.driver;
            // Secure by default: what crosses a link is encrypted and authenticated
            // unless the run-time file says otherwise for this storage.
            let exposed = [Some(&storage.endpoint), storage.data.as_ref()]
                .into_iter()
                .flatten()
                .find(|a| matches!(a, Address::Tcp { .. }) && !a.is_loopback());
            if let (Some(address), false, false) = (
                exposed,
                self.tls.contains_key(id),
                self.insecure.contains(id),
            ) {
                return Err(PlanFault {
                    copyset: None,
                    message: format!(
                        "storage {id}: {address} is reached over the network without TLS: its monitor gives full control of the daemon and its NBD connections carry every mirrored write; give it a [storage.{id}.tls] table in the run-time file (docs/runtime.md, \"Links between sites\"), or `insecure = true` to accept plaintext on a network you trust"
                    ),
                });
            }
            if !storage.endpoint.suits(driver) {
                return Err(PlanFault {
                    copyset: None,
                    message: format!(
                        "storage {id}: a {driver} storage is not reached at {}: write {}",
                        storage.endpoint,
                        driver.capabilities().endpoints
                    ),
                });
            }
        }
        let needed = self.sequences.len() + 1;
        for (i, set) in self.copysets.iter().enumerate() {
            if set.volumes.len() != needed {
                return Err(of_set(
                    i,
                    format!(
                        "copy set {} has {} volumes; the chain of {} sequences needs {needed}",
                        set.name,
                        set.volumes.len(),
                        self.sequences.len()
                    ),
                ));
            }
            for v in &set.volumes {
                let Some(storage) = self.storages.get(&v.storage) else {
                    return Err(of_set(
                        i,
                        format!(
                            "copy set {}: volume {v}: no storage `{}` (storages: {})",
                            set.name,
                            v.storage,
                            self.storages.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                if let Some(fault) = volume_fault(storage.driver, &v.name) {
                    return Err(of_set(
                        i,
                        format!("copy set {}: volume {v}: {fault}", set.name),
                    ));
                }
            }
        }
        let needs: Vec<Needs> = self
            .sequences
            .iter()
            .map(|s| Needs {
                sequence: s.number,
                copy: s.copy,
                commands: s.commands,
                keep: s.keep,
            })
            .collect();
        let driver_of = |id: &str| self.storages.get(id).map(|s| s.driver);
        if let Some(refusal) = refusals(driver_of, &self.copysets, &needs).first() {
            return Err(of_set(
                refusal.copyset,
                format!(
                    "copy set {}: {refusal}; {}",
                    self.copysets[refusal.copyset].name,
                    refusal.help()
                ),
            ));
        }
        Ok(())
    }
}
