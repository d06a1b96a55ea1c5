//! COPYSET: names, volume counts, storages referenced, volumes used once, volume
//! names by driver.

use super::Checker;
use crate::diagnostics::{choices_help, Code, Diagnostic};
use crate::ir::{self};
use crate::syntax::ast::{self};
use csc_runtime::capability::volume_fault;
use rustc_hash::FxHashSet;
use std::collections::HashMap;

impl Checker<'_> {
    pub(super) fn copysets(
        &mut self,
        sets: &[ast::CopySet],
        storage_ids: &[&str],
        storages: &[ir::Storage],
        sequences: usize,
    ) -> Vec<ir::CopySet> {
        let mut seen = HashMap::new();
        // Borrowed keys and FxHash: a large session has hundreds of thousands of
        // volumes, and SipHash was a tenth of the whole check's time.
        let total = sets.iter().map(|s| s.volumes.len()).sum();
        let mut volumes_seen: FxHashSet<(&str, &str)> =
            FxHashSet::with_capacity_and_hasher(total, Default::default());
        let mut out = Vec::new();
        for set in sets {
            let Some(name) = &set.name else { continue };
            let mut ok = self.unique(&mut seen, name, Code::DuplicateCopySet, "copy set");
            if sequences > 0 && set.volumes.len() != sequences + 1 {
                let message = format!(
                    "copy set `{}` has {} volumes; {sequences} sequences need {}",
                    name.value,
                    set.volumes.len(),
                    sequences + 1
                );
                let help = format!(
                    "sequence i copies volume i to volume i+1, so a chain of {sequences} needs {} VOLUME elements, source first",
                    sequences + 1
                );
                self.diags.push(
                    Diagnostic::error(Code::VolumeCount, name.span.clone(), message)
                        .label("wrong number of volumes")
                        .help(help),
                );
                ok = false;
            }
            let mut volumes = Vec::with_capacity(set.volumes.len());
            for v in &set.volumes {
                let (Some(storage), Some(vname)) = (&v.storage, &v.name) else {
                    ok = false;
                    continue;
                };
                if !storage_ids.is_empty() && !storage_ids.contains(&storage.value.as_ref()) {
                    let help = choices_help(&storage.value, storage_ids, "storages");
                    self.diags.push(
                        Diagnostic::error(
                            Code::UnknownStorage,
                            storage.span.clone(),
                            format!("no STORAGE has id `{}`", storage.value),
                        )
                        .label("unknown storage")
                        .help(help),
                    );
                    ok = false;
                }
                let driver = storages
                    .iter()
                    .find(|s| s.id == storage.value)
                    .map(|s| s.driver);
                if let Some(fault) = driver.and_then(|d| volume_fault(d, &vname.value)) {
                    self.diags.push(
                        Diagnostic::error(
                            Code::BadVolume,
                            vname.span.clone(),
                            format!(
                                "`{}` is not a volume of storage `{}`",
                                vname.value, storage.value
                            ),
                        )
                        .label("bad volume name")
                        .help(fault),
                    );
                    ok = false;
                }
                if !volumes_seen.insert((&storage.value, &vname.value)) {
                    let message = format!(
                        "volume `{}` on `{}` is already used in this session",
                        vname.value, storage.value
                    );
                    let help = "a volume can be in one place of one chain only: copying onto a volume that is also a source would destroy data";
                    self.diags.push(
                        Diagnostic::error(Code::DuplicateVolume, vname.span.clone(), message)
                            .label("used twice")
                            .help(help),
                    );
                    ok = false;
                }
                volumes.push(ir::Volume {
                    storage: storage.value.to_string(),
                    name: vname.value.to_string(),
                });
            }
            if ok {
                out.push(ir::CopySet {
                    name: name.value.to_string(),
                    volumes,
                });
            }
        }
        out
    }
}
