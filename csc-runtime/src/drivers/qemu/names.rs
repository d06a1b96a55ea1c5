//! The names this driver gives what it adds to a daemon. All start with `cssc-`, so
//! they are told apart from the administrator's and removed at shutdown; the table is
//! in docs/qemu-recipes.md.

use crate::plan::Pair;

pub(super) fn job_id(pair: &Pair) -> String {
    format!("cssc-s{}-c{}", pair.sequence, pair.copyset)
}

/// A continuous pair's hold: the throttle filter its mirror writes through.
pub(super) fn hold_node(pair: &Pair) -> String {
    format!("cssc-hold-s{}-c{}", pair.sequence, pair.copyset)
}

/// Where a frozen pair's writes go after the cut: a null node of the source's size.
pub(super) fn sink_node(pair: &Pair) -> String {
    format!("cssc-sink-s{}-c{}", pair.sequence, pair.copyset)
}

/// Which pair a job id names.
pub(super) fn parse_job_id(id: &str) -> Option<(u32, usize)> {
    let rest = id.strip_prefix("cssc-s")?;
    let (sequence, copyset) = rest.split_once("-c")?;
    Some((sequence.parse().ok()?, copyset.parse().ok()?))
}

/// The NBD client node in the source's daemon that reaches a pair's target.
pub(super) fn nbd_node(pair: &Pair) -> String {
    format!("cssc-nbd-s{}-c{}", pair.sequence, pair.copyset)
}

/// The export of a target volume in its daemon.
pub(super) fn export(volume: &str) -> String {
    format!("cssc-{volume}")
}

/// The bitmap of a sequence's incremental point-in-time copies.
pub(super) fn incremental_bitmap(sequence: u32) -> String {
    format!("cssc-inc-s{sequence}")
}

/// The throttle group of sequence `sequence`'s holds to the `target`-th storage.
pub(super) fn hold_group(sequence: u32, target: usize) -> String {
    format!("cssc-hold-s{sequence}-t{target}")
}

/// The unlimited group released holds move to.
pub(super) const FREE_GROUP: &str = "cssc-free";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Volume;

    #[test]
    fn job_ids_name_their_pair() {
        let pair = Pair {
            sequence: 3,
            copyset: 12,
            source: Volume {
                storage: "a".into(),
                name: "x".into(),
            },
            target: Volume {
                storage: "b".into(),
                name: "y".into(),
            },
        };
        assert_eq!(job_id(&pair), "cssc-s3-c12");
        assert_eq!(nbd_node(&pair), "cssc-nbd-s3-c12");
        assert_eq!(hold_node(&pair), "cssc-hold-s3-c12");
        assert_eq!(sink_node(&pair), "cssc-sink-s3-c12");
        assert_eq!(export("y"), "cssc-y");
        assert_eq!(parse_job_id("cssc-s3-c12"), Some((3, 12)));
        assert_eq!(parse_job_id("backup0"), None);
        assert_eq!(parse_job_id("cssc-sx-c1"), None);
    }
}
