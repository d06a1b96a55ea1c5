//! The names this driver gives what it adds to a daemon: `cssc-`, a tag of the
//! session (6 hex digits of the FNV-1a hash of its name), then what it is. So they
//! are told apart from the administrator's and from another session's on the same
//! daemon, removed at shutdown, and found by `cleanup` after a crash; the table is in
//! docs/qemu-recipes.md. Node names stay within qemu's 31 characters.

use crate::plan::Pair;

/// Copy sets per throttle group. QEMU walks every member of a throttle group to
/// schedule a request and at every drain's end: with all of a daemon's hold filters in
/// one group, each graph change cost O(pairs) members walked per filter, and a stop of
/// 1,000 pairs spent 100 ms per job end (BENCHMARKS.md, "Sessions of many pairs").
/// Groups of 32 keep that walk short; a hold is one `qom-set` per group, pipelined.
pub(crate) const HOLD_GROUP_SIZE: usize = 32;

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

    /// Whether this session added something of this name.
    pub(crate) fn owns(&self, name: &str) -> bool {
        name.strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('-'))
    }

    /// The job of a pair (mirror or backup).
    pub(crate) fn job(&self, pair: &Pair) -> String {
        format!("{}-s{}-c{}", self.prefix, pair.sequence, pair.copyset)
    }

    /// Which pair a job id names, if this session's.
    pub(crate) fn pair_of_job(&self, id: &str) -> Option<(u32, usize)> {
        self.pair_of(id.strip_prefix(&self.prefix)?)
    }

    /// The pair of a name's `-sSEQ-cSET` tail.
    fn pair_of(&self, tail: &str) -> Option<(u32, usize)> {
        let (sequence, copyset) = tail.strip_prefix("-s")?.split_once("-c")?;
        Some((sequence.parse().ok()?, copyset.parse().ok()?))
    }

    /// A continuous pair's hold: the throttle filter its mirror writes through.
    pub(crate) fn hold(&self, pair: &Pair) -> String {
        format!("{}-hold-s{}-c{}", self.prefix, pair.sequence, pair.copyset)
    }

    /// The filter a pair's mirror inserts above its source volume: every writer above
    /// it is mirrored, one below it is not (bypass.rs).
    pub(crate) fn top(&self, pair: &Pair) -> String {
        format!("{}-top-s{}-c{}", self.prefix, pair.sequence, pair.copyset)
    }

    /// Where a frozen pair's writes go after the cut: a null node of the source's size.
    pub(crate) fn sink(&self, pair: &Pair) -> String {
        format!("{}-sink-s{}-c{}", self.prefix, pair.sequence, pair.copyset)
    }

    /// The sink of a hold filter of this session, by the filter's name.
    pub(crate) fn sink_of_hold(&self, hold: &str) -> Option<String> {
        let pair = hold.strip_prefix(&self.prefix)?.strip_prefix("-hold-s")?;
        Some(format!("{}-sink-s{pair}", self.prefix))
    }

    /// The NBD client node in the source's daemon that reaches a pair's target.
    pub(crate) fn nbd(&self, pair: &Pair) -> String {
        format!("{}-nbd-s{}-c{}", self.prefix, pair.sequence, pair.copyset)
    }

    /// The export of a target volume in its daemon.
    pub(crate) fn export(&self, volume: &str) -> String {
        format!("{}-{volume}", self.prefix)
    }

    /// The read-only (or, for a repair, writable) export `verify` reads a volume
    /// through.
    pub(crate) fn verify_export(&self, volume: &str) -> String {
        format!("{}-vf-{volume}", self.prefix)
    }

    /// The volume an export of this session's exports.
    pub(crate) fn exported_volume<'a>(&self, export: &'a str) -> Option<&'a str> {
        export.strip_prefix(&self.prefix)?.strip_prefix('-')
    }

    /// The bitmap of a sequence's incremental point-in-time copies.
    pub(crate) fn incremental_bitmap(&self, sequence: u32) -> String {
        format!("{}-inc-s{sequence}", self.prefix)
    }

    /// The bitmap that records what changed on a pair's source since the pair was split
    /// (a freeze or a suspend): what its resynchronisation copies.
    pub(crate) fn resync_bitmap(&self, pair: &Pair) -> String {
        format!("{}-rs-s{}-c{}", self.prefix, pair.sequence, pair.copyset)
    }

    /// Which pair a resynchronisation bitmap of this session is for.
    pub(crate) fn pair_of_resync_bitmap(&self, name: &str) -> Option<(u32, usize)> {
        self.pair_of(name.strip_prefix(&self.prefix)?.strip_prefix("-rs")?)
    }

    /// The job that copies what changed to a resumed pair's target (a backup beside
    /// the mirror, which qemu 10 cannot give a bitmap).
    pub(crate) fn resync_job(&self, pair: &Pair) -> String {
        format!("{}-rsj-s{}-c{}", self.prefix, pair.sequence, pair.copyset)
    }

    /// Which pair a resynchronisation job of this session is for.
    pub(crate) fn pair_of_resync_job(&self, id: &str) -> Option<(u32, usize)> {
        self.pair_of(id.strip_prefix(&self.prefix)?.strip_prefix("-rsj")?)
    }

    /// The second NBD client node to a resumed pair's target, the resync job's (the
    /// first one is the mirror's, and busy).
    pub(crate) fn resync_nbd(&self, pair: &Pair) -> String {
        format!("{}-rsn-s{}-c{}", self.prefix, pair.sequence, pair.copyset)
    }

    /// Which pair an NBD client node of this session (the mirror's or the resync's)
    /// reaches the target of.
    pub(crate) fn pair_of_client(&self, node: &str) -> Option<(u32, usize)> {
        let rest = node.strip_prefix(&self.prefix)?;
        self.pair_of(
            rest.strip_prefix("-nbd")
                .or_else(|| rest.strip_prefix("-rsn"))?,
        )
    }

    /// The bitmap that records what production writes on a recovered target (failover).
    pub(crate) fn failover_bitmap(&self, pair: &Pair) -> String {
        format!("{}-fo-s{}-c{}", self.prefix, pair.sequence, pair.copyset)
    }

    /// Which pair a failover bitmap of this session is for.
    pub(crate) fn pair_of_failover_bitmap(&self, name: &str) -> Option<(u32, usize)> {
        self.pair_of(name.strip_prefix(&self.prefix)?.strip_prefix("-fo")?)
    }

    /// The writable export of a recovered target, for the applications (`BIN recover`).
    pub(crate) fn production_export(&self, volume: &str) -> String {
        self.export(&production(volume))
    }

    /// The TLS credentials objects of a daemon: as an NBD client of other sites
    /// (`Client`), as their NBD server (`Server`), and who may reach its exports.
    pub(crate) fn tls(&self, endpoint: &str) -> String {
        format!("{}-tls-{endpoint}", self.prefix)
    }

    pub(crate) fn authz(&self) -> String {
        format!("{}-authz", self.prefix)
    }

    /// The free group a hold filter (by its node name) moves to at release.
    pub(crate) fn free_group_of_hold(&self, hold: &str) -> Option<String> {
        let tail = hold.strip_prefix(&self.prefix)?.strip_prefix("-hold-s")?;
        let copyset = tail.split_once("-c")?.1.parse().ok()?;
        Some(self.free_group(Self::shard(copyset)))
    }

    /// The shard of a copy set's hold and free groups (`HOLD_GROUP_SIZE`).
    pub(crate) fn shard(copyset: usize) -> usize {
        copyset / HOLD_GROUP_SIZE
    }

    /// At failback, in the original source's daemon: the NBD client node to the
    /// production export, the bitmap of what to take from it, and the job that does.
    pub(crate) fn failback(&self, pair: &Pair) -> [String; 3] {
        let tail = format!("s{}-c{}", pair.sequence, pair.copyset);
        ["rvn", "rv", "rvj"].map(|what| format!("{}-{what}-{tail}", self.prefix))
    }

    /// The throttle group of sequence `sequence`'s holds to the `target`-th storage,
    /// for the `shard`-th `HOLD_GROUP_SIZE` copy sets.
    pub(crate) fn hold_group(&self, sequence: u32, target: usize, shard: usize) -> String {
        format!("{}-hold-s{sequence}-t{target}-g{shard}", self.prefix)
    }

    /// The unlimited group released holds of the `shard`-th `HOLD_GROUP_SIZE` copy sets
    /// move to.
    pub(crate) fn free_group(&self, shard: usize) -> String {
        format!("{}-free-g{shard}", self.prefix)
    }
}

/// What a production export exports, as this driver's export set keys it: the
/// volume, marked (`names.export(&production(v))` is its export).
pub(crate) fn production(volume: &str) -> String {
    format!("prod-{volume}")
}

/// Whether an export key of this driver's is a production export's.
pub(crate) fn is_production(exported: &str) -> bool {
    exported.starts_with("prod-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Volume;

    #[test]
    fn names_say_whose_they_are_and_fit_qemu() {
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
        let ours = Names::of_session("cppc");
        let theirs = Names::of_session("another-session");
        let job = ours.job(&pair);
        assert!(
            job.starts_with("cssc-") && job.ends_with("-s3-c12"),
            "{job}"
        );
        assert_eq!(ours.pair_of_job(&job), Some((3, 12)));
        assert_eq!(theirs.pair_of_job(&job), None, "another session's job");
        assert_eq!(ours.pair_of_job("backup0"), None);
        assert_eq!(
            ours.pair_of_job(&ours.resync_job(&pair)),
            None,
            "not a pair's job"
        );
        assert_eq!(
            ours.pair_of_resync_job(&ours.resync_job(&pair)),
            Some((3, 12))
        );
        assert_eq!(ours.pair_of_resync_job(&job), None);
        assert_eq!(ours.pair_of_client(&ours.nbd(&pair)), Some((3, 12)));
        assert_eq!(ours.pair_of_client(&ours.resync_nbd(&pair)), Some((3, 12)));
        assert_eq!(ours.pair_of_client(&ours.hold(&pair)), None);
        assert_eq!(theirs.pair_of_client(&ours.nbd(&pair)), None);
        assert_eq!(
            ours.pair_of_resync_bitmap(&ours.resync_bitmap(&pair)),
            Some((3, 12))
        );
        assert_eq!(
            theirs.pair_of_resync_bitmap(&ours.resync_bitmap(&pair)),
            None
        );
        assert_eq!(ours.sink_of_hold(&ours.hold(&pair)), Some(ours.sink(&pair)));
        assert_eq!(ours.sink_of_hold(&ours.sink(&pair)), None);
        assert_eq!(theirs.sink_of_hold(&ours.hold(&pair)), None);
        for name in [
            ours.hold(&pair),
            ours.sink(&pair),
            ours.nbd(&pair),
            ours.resync_nbd(&pair),
            ours.resync_job(&pair),
            ours.resync_bitmap(&pair),
            ours.failover_bitmap(&pair),
            ours.production_export("y"),
            ours.export("y"),
        ] {
            assert!(ours.owns(&name) && !theirs.owns(&name), "{name}");
        }
        assert!(!ours.owns("cssc-other") && !ours.owns("db"));
        assert_eq!(ours.exported_volume(&ours.export("db-r")), Some("db-r"));
        assert_eq!(theirs.exported_volume(&ours.export("db-r")), None);
        let biggest = Pair {
            sequence: 99,
            copyset: 99_999,
            ..pair
        };
        for name in [
            ours.sink(&biggest),
            ours.hold(&biggest),
            ours.resync_nbd(&biggest),
        ] {
            assert!(name.len() <= 31, "{name}");
        }
    }
}
