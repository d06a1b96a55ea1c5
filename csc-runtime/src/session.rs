//! The session as a document describes it, as static data in generated code.

use crate::vocab::{BaseCopy, Command, DriverKind, Event};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub name: &'static str,
    pub description: Option<&'static str>,
    pub storages: &'static [Storage],
    pub contacts: &'static [Contact],
    /// The copy sets: data, not code, so a document of 20,000 copy sets compiles as
    /// one string literal ([`crate::plan::Plan::from_session`] reads it at start).
    pub copysets: CopySets,
    /// In chain order: element i is sequence i+1.
    pub sequences: &'static [Sequence],
}

/// The canonical document of a compiled solution, as two texts around its COPYSET
/// elements: the copy sets are data ([`Session::copysets`]), so a document of
/// 20,000 of them does not carry them twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canonical {
    pub head: &'static str,
    pub tail: &'static str,
}

impl Canonical {
    /// The whole document, with these copy sets (the session's own).
    pub fn render(&self, copysets: &[crate::model::CopySet]) -> String {
        format!(
            "{}{}{}",
            self.head,
            crate::model::copysets_xml(copysets),
            self.tail
        )
    }
}

/// A storage as the document declares it. Its addresses are their canonical text
/// (`unix:…`, `tcp:HOST:PORT`, `local:…`, `ssh:…`), checked by the compiler and read
/// back by the plan with the same parser ([`crate::address::Address::parse`]): one schema of
/// addresses, not a second one in static form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Storage {
    pub id: &'static str,
    pub driver: DriverKind,
    pub endpoint: &'static str,
    pub data: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact {
    pub name: &'static str,
    pub webhook: Option<&'static str>,
    pub command: Option<&'static str>,
}

/// A function that returns the copy sets as JSON text,
/// `[[NAME, [[STORAGE, VOLUME], ...]], ...]`. A function, not the text itself: a
/// constant is copied into every place that uses it, and this text can be megabytes.
#[derive(Clone, Copy)]
pub struct CopySets(pub fn() -> &'static str);

impl CopySets {
    pub fn json(self) -> &'static str {
        (self.0)()
    }
}

impl PartialEq for CopySets {
    fn eq(&self, other: &CopySets) -> bool {
        self.json() == other.json()
    }
}

impl Eq for CopySets {}

impl std::fmt::Debug for CopySets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CopySets({} bytes of JSON)", self.json().len())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequence {
    pub number: u32,
    pub copy: BaseCopy,
    pub schedule: Option<Schedule>,
    /// How many of its copies the target keeps (KEEP).
    pub keep: u32,
    /// The events this sequence acts on.
    pub handled: &'static [Event],
    /// The commands actions give it (what its storages must be able to do).
    pub commands: &'static [Command],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// `every 3h`: seconds between starts.
    Every { seconds: u64 },
    /// `daily 06:00`: hour and minute, in the session's time zone (`Plan::time_zone`).
    Daily { hour: u8, minute: u8 },
}
