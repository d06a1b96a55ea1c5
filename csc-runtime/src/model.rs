//! The session's description as owned data: what the compiler's IR holds of
//! storages, contacts and copy sets, and what a running session's plan holds (the
//! document's, with a run-time file's overrides). One set of types for both, so the
//! compiler and the runtime cannot describe a session two ways; generated code
//! carries the same as static data ([`crate::session`]).

use crate::address::Address;
use crate::vocab::DriverKind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storage {
    pub id: String,
    pub driver: DriverKind,
    /// Where its control endpoint is (qemu: the QMP monitor).
    pub endpoint: Address,
    /// Where other sites reach its volumes (qemu: the NBD server).
    pub data: Option<Address>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    /// An http:// URL that receives a JSON POST.
    pub webhook: Option<String>,
    /// An absolute path of a program, run with the event in its environment.
    pub command: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySet {
    pub name: String,
    /// Volume i (from 0) is the source of sequence i+1 and the target of sequence i.
    pub volumes: Vec<Volume>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Volume {
    pub storage: String,
    pub name: String,
}

impl std::fmt::Display for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.name, self.storage)
    }
}
