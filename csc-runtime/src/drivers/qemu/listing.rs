//! What the driver reads of a daemon's block nodes (`query-named-block-nodes`): each
//! node's virtual size and dirty bitmaps. The reply lists every node of the daemon,
//! so it is asked once per site and group of pairs, never once per pair (that made a
//! start of N pairs O(N²): docs/qemu-recipes.md).

use super::commands::ALL_NODES;
use super::replies::BlockNode;
use super::Qemu;
use crate::drivers::DriverError;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub(super) struct Listing {
    /// Virtual size by node name.
    pub sizes: BTreeMap<String, u64>,
    /// (node, bitmap) of every dirty bitmap.
    pub bitmaps: BTreeSet<(String, String)>,
}

impl Listing {
    pub(super) fn of(nodes: Vec<BlockNode>) -> Listing {
        let mut listing = Listing::default();
        for node in nodes {
            if let Some(image) = &node.image {
                listing
                    .sizes
                    .insert(node.node_name.clone(), image.virtual_size);
            }
            for name in node.dirty_bitmaps.into_iter().filter_map(|b| b.name) {
                listing.bitmaps.insert((node.node_name.clone(), name));
            }
        }
        listing
    }
}

impl Qemu {
    /// A site's listing, asked once until `forget_listings` (each group of pairs
    /// starts with that: what it reads existed before it).
    pub(super) fn listing(&mut self, site: &str) -> Result<&Listing, DriverError> {
        if !self.listed.contains_key(site) {
            let nodes = self
                .qmp(site)?
                .ask(&ALL_NODES)
                .map_err(|e| DriverError::at(site, format!("cannot list its block nodes: {e}")))?;
            self.listed.insert(site.to_string(), Listing::of(nodes));
        }
        Ok(&self.listed[site])
    }

    pub(super) fn forget_listings(&mut self) {
        self.listed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listing_reads_sizes_and_bitmaps_by_node() {
        let nodes = serde_json::from_value(json!([
            {"node-name": "db", "image": {"virtual-size": 1048576},
             "dirty-bitmaps": [{"name": "cssc-x-r1-0"}]},
            {"node-name": "db-file", "image": {"virtual-size": 1048576}},
            {"node-name": "#block123"}
        ]))
        .expect("nodes");
        let listing = Listing::of(nodes);
        assert_eq!(listing.sizes.get("db"), Some(&1048576));
        assert_eq!(listing.sizes.len(), 2);
        assert!(listing
            .bitmaps
            .contains(&("db".to_string(), "cssc-x-r1-0".to_string())));
        assert_eq!(listing.bitmaps.len(), 1);
    }
}
