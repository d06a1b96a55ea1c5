//! Stage 3, the IR: a checked solution with every reference resolved, in ordered
//! collections so that everything written from it comes out in one order.

pub use csc_runtime::address::Address;
/// Storages, contacts and copy sets as the runtime's plan holds them: one model.
pub use csc_runtime::model::{Contact, CopySet, Storage, Volume};
/// The runtime's own: `every` in seconds, `daily` in the session's zone (one definition, so the
/// document and the runtime cannot disagree).
pub use csc_runtime::session::Schedule;
use csc_runtime::vocab::{BaseCopy, Command, Event};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Solution {
    pub name: Option<String>,
    pub description: Option<String>,
    /// In document order; ids are unique.
    pub storages: Vec<Storage>,
    /// In document order; names are unique.
    pub contacts: Vec<Contact>,
    /// In document order; names are unique.
    pub copysets: Vec<CopySet>,
    /// By SEQ_NUM, which runs 1..=N.
    pub sequences: BTreeMap<u32, Sequence>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    pub num: u32,
    pub copy: BaseCopy,
    pub schedule: Option<Schedule>,
    /// How many of its copies the target keeps (KEEP; 1 unless given).
    pub keep: u32,
    /// Events in canonical order; each event's actions in document order.
    pub events: BTreeMap<Event, Vec<Action>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// DO_CMD on TO_SEQ (this sequence when TO_SEQ is absent).
    Command {
        target: u32,
        command: Command,
    },
    Notify {
        contact: String,
    },
    Run {
        program: String,
        timeout_secs: u64,
    },
}

/// How long RUN waits for its program unless told otherwise.
pub const DEFAULT_RUN_TIMEOUT_SECS: u64 = 60;

impl Solution {
    pub fn storage(&self, id: &str) -> Option<&Storage> {
        self.storages.iter().find(|s| s.id == id)
    }
}

/// The commands actions of `sequences` give sequence `num`, in canonical order.
pub fn commands_to(sequences: &BTreeMap<u32, Sequence>, num: u32) -> Vec<Command> {
    let set: std::collections::BTreeSet<Command> = sequences
        .values()
        .flat_map(|q| q.events.values().flatten())
        .filter_map(|a| match a {
            Action::Command { target, command } if *target == num => Some(*command),
            _ => None,
        })
        .collect();
    set.into_iter().collect()
}
