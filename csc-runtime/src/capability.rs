//! What each kind of storage can do, as one table, and the check of a session against
//! it. The compiler refuses a document that asks a storage for more (with spans); a
//! run refuses a run-time file that does (before it touches any storage). One table
//! and one check for both, so they cannot disagree.

use crate::model::CopySet;
use crate::vocab::{BaseCopy, Command, ContinuousMode, DriverKind, Keyword, PointInTimeMode};
use std::collections::BTreeSet;
use std::fmt;

/// What one kind of storage can do.
#[derive(Debug)]
pub struct Capabilities {
    /// The base copies it makes.
    pub copies: &'static [BaseCopy],
    /// The commands its continuous copies take (a point-in-time copy takes start and
    /// stop on every kind).
    pub commands: &'static [Command],
    /// Copies whose source and target must be on one storage (a snapshot stays in
    /// its pool).
    pub same_storage: &'static [BaseCopy],
    /// Whether a point-in-time copy can keep more than one copy (KEEP).
    pub history: bool,
    /// Why it cannot do the rest, said with a refusal.
    pub limits: &'static str,
    /// The endpoints it is reached at, for messages.
    pub endpoints: &'static str,
}

use BaseCopy::{Continuous, PointInTime};

const QEMU: Capabilities = Capabilities {
    copies: &[
        Continuous(ContinuousMode::Synchronous),
        Continuous(ContinuousMode::Asynchronous),
        PointInTime(PointInTimeMode::Copy),
        PointInTime(PointInTimeMode::NoCopy),
        PointInTime(PointInTimeMode::Incremental),
    ],
    commands: &[
        Command::Start,
        Command::Stop,
        Command::Suspend,
        Command::Resume,
        Command::Freeze,
        Command::Thaw,
    ],
    same_storage: &[],
    history: false,
    limits: "",
    endpoints: "unix:/PATH or tcp:HOST:PORT (its QMP monitor)",
};

const BTRFS: Capabilities = Capabilities {
    copies: &[
        Continuous(ContinuousMode::Asynchronous),
        PointInTime(PointInTimeMode::Copy),
        PointInTime(PointInTimeMode::NoCopy),
        PointInTime(PointInTimeMode::Incremental),
    ],
    commands: &[
        Command::Start,
        Command::Stop,
        Command::Suspend,
        Command::Resume,
    ],
    same_storage: &[PointInTime(PointInTimeMode::NoCopy)],
    history: true,
    limits: "btrfs copies by snapshot and send/receive: a write cannot wait for its copy (no Synchronous), and snapshots of several subvolumes are not one instant (no freeze or thaw of a group); a NoCopy snapshot stays in its pool",
    endpoints: "local:/PATH or ssh:[USER@]HOST[:PORT]:/PATH (a mounted btrfs file system)",
};

impl DriverKind {
    pub fn capabilities(self) -> &'static Capabilities {
        match self {
            DriverKind::Qemu => &QEMU,
            DriverKind::Btrfs => &BTRFS,
        }
    }
}

/// Why `name` cannot name a volume on a storage of kind `driver`, if it cannot. A
/// btrfs volume is a subvolume path inside its pool: relative, plain segments, and
/// outside `.cssc` (where the driver keeps its snapshots). The characters are few
/// because the path reaches a remote shell through ssh.
pub fn volume_fault(driver: DriverKind, name: &str) -> Option<String> {
    if driver != DriverKind::Btrfs {
        return None;
    }
    let plain = |seg: &str| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@'))
    };
    if name.starts_with('/') {
        Some("a btrfs volume is a subvolume path inside its pool: write it relative to the pool (`share`, not `/srv/pool1/share`)".into())
    } else if !name.split('/').all(plain) {
        Some("a btrfs volume path is segments of letters, digits and . _ - + @ separated by /, with no empty, . or .. segment".into())
    } else if name.split('/').next() == Some(".cssc") {
        Some("`.cssc` in a pool is where cssc keeps its snapshots: name a volume elsewhere".into())
    } else {
        None
    }
}

/// A copy as documents name it: `Continuous Synchronous`, `Point-In-Time NoCopy`.
pub fn copy_name(copy: BaseCopy) -> String {
    format!("{} {}", copy.copy_type(), copy.mode_name())
}

/// What a sequence asks of the storages of its pairs.
#[derive(Clone, Debug)]
pub struct Needs<'a> {
    pub sequence: u32,
    pub copy: BaseCopy,
    /// The commands actions give it.
    pub commands: &'a [Command],
    /// How many copies it keeps (KEEP).
    pub keep: u32,
}

/// What a storage cannot do for a sequence.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unable {
    Copy(BaseCopy),
    Command(Command),
    /// KEEP more than 1 where the target is one volume overwritten.
    Keep(u32),
    /// The copy must stay on one storage; this pair's target is on another.
    SameStorage {
        target: String,
    },
    /// Source and target are on different kinds of storage.
    MixedKinds {
        target: String,
        target_driver: DriverKind,
    },
}

/// A refusal: sequence `sequence`, copying copy set `copyset` (its first pair that
/// shows the fault) from `storage`, asks what its driver cannot do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub sequence: u32,
    pub copy: BaseCopy,
    /// Index of the copy set, and of its source volume (the sequence's hop).
    pub copyset: usize,
    pub hop: usize,
    pub storage: String,
    pub driver: DriverKind,
    pub unable: Unable,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, storage, driver) = (self.sequence, &self.storage, self.driver);
        match &self.unable {
            Unable::Copy(copy) => write!(
                f,
                "sequence {n} asks storage `{storage}` (driver {driver}) for a {} copy, which {driver} cannot make",
                copy_name(*copy)
            ),
            Unable::Command(command) => write!(
                f,
                "sequence {n} is told to {command}, but its storage `{storage}` (driver {driver}) cannot {command}"
            ),
            Unable::Keep(keep) => write!(
                f,
                "sequence {n} keeps {keep} copies, but storage `{storage}` (driver {driver}) keeps one: its target volume is overwritten by each copy"
            ),
            Unable::SameStorage { target } => write!(
                f,
                "sequence {n} makes a {} copy from storage `{storage}` to `{target}`, but a {driver} {} copy stays on its own storage",
                copy_name(self.copy),
                self.copy.mode_name()
            ),
            Unable::MixedKinds {
                target,
                target_driver,
            } => write!(
                f,
                "sequence {n} copies from storage `{storage}` (driver {driver}) to `{target}` (driver {target_driver}): both volumes of a pair must be on the same kind of storage"
            ),
        }
    }
}

impl Refusal {
    /// What the driver can do instead.
    pub fn help(&self) -> String {
        let caps = self.driver.capabilities();
        let driver = self.driver;
        match &self.unable {
            Unable::Copy(_) => {
                let can: Vec<String> = caps.copies.iter().map(|c| copy_name(*c)).collect();
                format!("{driver} can make: {}. {}", can.join(", "), caps.limits)
            }
            Unable::Command(_) => {
                let can: Vec<&str> = caps.commands.iter().map(|c| c.as_str()).collect();
                format!(
                    "{driver} continuous copies take: {}. {}",
                    can.join(", "),
                    caps.limits
                )
            }
            Unable::Keep(_) => format!(
                "remove KEEP (or make it 1) for {driver} storages; a history of copies needs a storage that snapshots, such as btrfs"
            ),
            Unable::SameStorage { .. } => format!(
                "put the target volume on storage `{}`, or use Point-In-Time Copy or Incremental to reach another storage",
                self.storage
            ),
            Unable::MixedKinds { .. } => "a copy between kinds would need a format both understand: give the pair two storages of one kind (a session may still mix kinds across copy sets)".to_string(),
        }
    }
}

/// Everything `sequences` ask of the storages of `copysets` that their drivers cannot
/// do; one refusal per sequence, storage and fault (the first copy set that shows
/// it), in order. Storages `driver_of` does not know are not judged here.
pub fn refusals(
    driver_of: impl Fn(&str) -> Option<DriverKind>,
    copysets: &[CopySet],
    sequences: &[Needs<'_>],
) -> Vec<Refusal> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (hop, needs) in sequences.iter().enumerate() {
        for (index, set) in copysets.iter().enumerate() {
            let (Some(source), Some(target)) = (set.volumes.get(hop), set.volumes.get(hop + 1))
            else {
                continue;
            };
            let Some(driver) = driver_of(&source.storage) else {
                continue;
            };
            let caps = driver.capabilities();
            let mut faults = Vec::new();
            if !caps.copies.contains(&needs.copy) {
                faults.push(Unable::Copy(needs.copy));
            }
            if needs.keep > 1 && !caps.history {
                faults.push(Unable::Keep(needs.keep));
            }
            if matches!(needs.copy, Continuous(_)) {
                faults.extend(
                    needs
                        .commands
                        .iter()
                        .filter(|c| !caps.commands.contains(c))
                        .map(|c| Unable::Command(*c)),
                );
            }
            match driver_of(&target.storage) {
                Some(other) if other != driver => faults.push(Unable::MixedKinds {
                    target: target.storage.clone(),
                    target_driver: other,
                }),
                _ if caps.same_storage.contains(&needs.copy)
                    && target.storage != source.storage =>
                {
                    faults.push(Unable::SameStorage {
                        target: target.storage.clone(),
                    })
                }
                _ => {}
            }
            for unable in faults {
                if seen.insert((needs.sequence, source.storage.clone(), unable.clone())) {
                    out.push(Refusal {
                        sequence: needs.sequence,
                        copy: needs.copy,
                        copyset: index,
                        hop,
                        storage: source.storage.clone(),
                        driver,
                        unable,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Volume;

    fn set(name: &str, volumes: &[(&str, &str)]) -> CopySet {
        CopySet {
            name: name.into(),
            volumes: volumes
                .iter()
                .map(|(s, v)| Volume {
                    storage: s.to_string(),
                    name: v.to_string(),
                })
                .collect(),
        }
    }

    fn kind(id: &str) -> Option<DriverKind> {
        match id {
            "site1" | "site2" => Some(DriverKind::Qemu),
            "pool1" | "pool2" => Some(DriverKind::Btrfs),
            _ => None,
        }
    }

    const SYNC: BaseCopy = Continuous(ContinuousMode::Synchronous);
    const ASYNC: BaseCopy = Continuous(ContinuousMode::Asynchronous);

    #[test]
    fn qemu_can_do_everything_the_language_says() {
        let sets = [set("db", &[("site1", "a"), ("site2", "b"), ("site2", "c")])];
        let needs = [
            Needs {
                sequence: 1,
                copy: SYNC,
                commands: &[Command::Freeze, Command::Thaw],
                keep: 1,
            },
            Needs {
                sequence: 2,
                copy: PointInTime(PointInTimeMode::NoCopy),
                commands: &[],
                keep: 1,
            },
        ];
        assert_eq!(refusals(kind, &sets, &needs), vec![]);
    }

    #[test]
    fn btrfs_refuses_synchronous_freeze_and_a_snapshot_across_pools() {
        let sets = [
            set("share", &[("pool1", "a"), ("pool2", "b"), ("pool1", "c")]),
            set("home", &[("pool1", "h"), ("pool2", "h2"), ("pool1", "h3")]),
        ];
        let needs = [
            Needs {
                sequence: 1,
                copy: SYNC,
                commands: &[Command::Freeze, Command::Start],
                keep: 1,
            },
            Needs {
                sequence: 2,
                copy: PointInTime(PointInTimeMode::NoCopy),
                commands: &[],
                keep: 1,
            },
        ];
        let found: Vec<(u32, Unable)> = refusals(kind, &sets, &needs)
            .into_iter()
            .map(|r| (r.sequence, r.unable))
            .collect();
        assert_eq!(
            found,
            vec![
                (1, Unable::Copy(SYNC)),
                (1, Unable::Command(Command::Freeze)),
                (
                    2,
                    Unable::SameStorage {
                        target: "pool1".into()
                    }
                ),
            ],
            "one refusal per sequence, storage and fault, not per copy set"
        );
    }

    #[test]
    fn a_pair_across_kinds_is_refused_and_unknown_storages_are_not_judged() {
        let sets = [
            set("x", &[("site1", "a"), ("pool2", "b")]),
            set("y", &[("nowhere", "a"), ("pool2", "c")]),
        ];
        let needs = [Needs {
            sequence: 1,
            copy: ASYNC,
            commands: &[],
            keep: 1,
        }];
        let found = refusals(kind, &sets, &needs);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "sequence 1 copies from storage `site1` (driver qemu) to `pool2` (driver btrfs): both volumes of a pair must be on the same kind of storage"
        );
    }

    #[test]
    fn btrfs_volumes_are_plain_relative_paths() {
        for good in ["share", "data/home", "vm-1.img", "a@b+c_d"] {
            assert_eq!(volume_fault(DriverKind::Btrfs, good), None, "{good}");
        }
        for bad in [
            "/srv/p/share",
            "a/../b",
            "a//b",
            "a b",
            "x;rm",
            ".cssc/x",
            "$(id)",
            "",
        ] {
            assert!(volume_fault(DriverKind::Btrfs, bad).is_some(), "{bad}");
        }
        assert_eq!(volume_fault(DriverKind::Qemu, "a b"), None);
    }

    #[test]
    fn the_help_says_what_the_driver_can_do_instead() {
        let sets = [set("share", &[("pool1", "a"), ("pool2", "b")])];
        let needs = [Needs {
            sequence: 1,
            copy: SYNC,
            commands: &[],
            keep: 1,
        }];
        let refusal = &refusals(kind, &sets, &needs)[0];
        assert_eq!(
            refusal.to_string(),
            "sequence 1 asks storage `pool1` (driver btrfs) for a Continuous Synchronous copy, which btrfs cannot make"
        );
        assert!(refusal.help().starts_with("btrfs can make: Continuous Asynchronous, Point-In-Time Copy, Point-In-Time NoCopy, Point-In-Time Incremental."), "{}", refusal.help());
    }
}
