//! The names this driver gives what it adds to a pool. Everything lives in the pool's
//! `.cssc` directory and is named `cssc-TAG-…` (TAG as the qemu driver's: the
//! session's name hashed), so two sessions on one pool never touch each other's:
//!
//! | name | what |
//! |---|---|
//! | `cssc-TAG-sSEQ-cSET-STAMP` | a pair's snapshot (STAMP: microseconds since the epoch); received under the same name |
//! | `cssc-TAG-run-sSEQ-cSET` | a file: the pair's continuous copy runs (a killed run's is taken over) |
//! | `cssc-TAG-link-sSEQ-cSET` | a target volume's new link, about to be renamed over it |

use crate::plan::Pair;

/// The directory in each pool where the driver keeps what it adds.
pub(crate) const DIR: &str = ".cssc";

pub(crate) struct Names {
    /// `cssc-TAG`.
    prefix: String,
}

impl Names {
    pub(crate) fn of_session(session: &str) -> Names {
        Names {
            prefix: crate::drivers::session_prefix(session),
        }
    }

    fn pair(pair: &Pair) -> String {
        format!("s{}-c{}", pair.sequence, pair.copyset)
    }

    /// The prefix every snapshot of `pair` has (then the stamp).
    fn snapshots_of(&self, pair: &Pair) -> String {
        format!("{}-{}-", self.prefix, Names::pair(pair))
    }

    /// A new snapshot of `pair`, at `stamp`.
    pub(crate) fn snapshot(&self, pair: &Pair, stamp: u128) -> String {
        format!("{DIR}/{}{stamp}", self.snapshots_of(pair))
    }

    /// The stamp of a snapshot of `pair` named `name`, if it is one.
    pub(crate) fn stamp(&self, pair: &Pair, name: &str) -> Option<u128> {
        name.strip_prefix(&self.snapshots_of(pair))?.parse().ok()
    }

    pub(crate) fn link(&self, pair: &Pair) -> String {
        format!("{DIR}/{}-link-{}", self.prefix, Names::pair(pair))
    }

    /// Whether this session added something of this name (a snapshot, a link being
    /// made, a running marker), for `cleanup`.
    pub(crate) fn owns(&self, name: &str) -> bool {
        name.strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('-'))
    }

    /// Whether a name of this session is a file (a running marker or a link being
    /// made), not a snapshot.
    pub(crate) fn is_file(&self, name: &str) -> bool {
        ["-run-", "-link-"]
            .iter()
            .any(|kind| name.starts_with(&format!("{}{kind}", self.prefix)))
    }

    pub(crate) fn running(&self, pair: &Pair) -> String {
        format!("{DIR}/{}-run-{}", self.prefix, Names::pair(pair))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Volume;

    fn pair(sequence: u32, copyset: usize) -> Pair {
        let v = Volume {
            storage: "p".into(),
            name: "v".into(),
        };
        Pair {
            sequence,
            copyset,
            source: v.clone(),
            target: v,
        }
    }

    #[test]
    fn a_snapshot_is_found_again_by_its_pair_only() {
        let names = Names::of_session("share");
        let path = names.snapshot(&pair(1, 2), 1234);
        let name = path.strip_prefix(".cssc/").unwrap();
        assert_eq!(names.stamp(&pair(1, 2), name), Some(1234));
        assert_eq!(names.stamp(&pair(1, 21), name), None);
        assert_eq!(names.stamp(&pair(11, 2), name), None);
        assert_eq!(Names::of_session("other").stamp(&pair(1, 2), name), None);
        assert!(names.owns(name) && !names.is_file(name));
        assert!(!Names::of_session("other").owns(name));
        let marker = names.running(&pair(1, 2));
        assert!(names.is_file(marker.strip_prefix(".cssc/").unwrap()));
    }
}
