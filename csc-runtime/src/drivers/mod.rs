//! What every storage offers, as the executor uses it. A driver acts on the pairs of
//! one sequence at a time (a consistency group) and reports what happens to each
//! pair; the executor turns pair reports into group events.

pub mod btrfs;
pub mod qemu;
mod storages;

pub use storages::{Notice, Storages};
// The pure core owns the events it consumes; drivers produce them.
pub use crate::core::{PairEvent, PairReport};

use crate::plan::Pair;
use crate::vocab::BaseCopy;
use std::fmt;

/// What `cleanup` did, by storage: the names it removed, or why it could not.
pub type Cleaned = std::collections::BTreeMap<String, Result<Vec<String>, DriverError>>;

/// `cssc-TAG`: how every name a driver adds to a storage begins. TAG is 6 hex digits
/// of the FNV-1a hash of the session's name, so two sessions on one storage, and the
/// administrator's own names, are told apart.
pub(crate) fn session_prefix(session: &str) -> String {
    let tag = crate::fingerprint::fnv1a64(session.as_bytes()) >> 40;
    format!("cssc-{tag:06x}")
}

/// A pair's key in a driver's per-pair maps: (sequence, copy set).
pub(crate) fn key(pair: &Pair) -> (u32, usize) {
    (pair.sequence, pair.copyset)
}

/// What happened to `pair`, as a report.
pub(crate) fn report(pair: &Pair, event: PairEvent) -> PairReport {
    PairReport {
        sequence: pair.sequence,
        copyset: pair.copyset,
        event,
    }
}

/// A refusal, naming the site and, where there is one, the volume; its kind and
/// what it left partly written are fields a caller matches, never text it searches.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("storage {site}{on}: {message}{partly}", on = on_volume(.volume), partly = partly(.partly_written))]
pub struct DriverError {
    pub site: String,
    pub volume: Option<String>,
    pub message: String,
    pub kind: RefusalKind,
    /// Targets a start that failed half way had begun to write (their copies ended).
    pub partly_written: Vec<String>,
}

/// What kind of refusal a storage made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalKind {
    /// Refused or failed for its own reason (the message says it).
    #[default]
    Refused,
    /// A name or a volume the session needs is taken in the storage: what a killed run
    /// left (`cleanup` removes it) or another job on the volume.
    InUse,
    /// The storage did not answer at its endpoint (its daemon down, or the address
    /// wrong).
    Unreachable,
    /// TLS to the storage failed: its credentials cannot be read, or a certificate
    /// was refused (by cssc or by the daemon).
    Certificate,
}

fn on_volume(volume: &Option<String>) -> String {
    volume
        .as_ref()
        .map_or(String::new(), |v| format!(", volume {v}"))
}

fn partly(targets: &[String]) -> String {
    if targets.is_empty() {
        return String::new();
    }
    format!(
        "; {} pair(s) of this sequence had started and were ended: their targets are partly written ({})",
        targets.len(),
        targets.join(", ")
    )
}

impl DriverError {
    /// A refusal about a whole storage.
    pub fn at(site: &str, message: impl fmt::Display) -> DriverError {
        DriverError {
            site: site.to_string(),
            volume: None,
            message: message.to_string(),
            kind: RefusalKind::Refused,
            partly_written: Vec::new(),
        }
    }

    /// A refusal about one volume, as seen from storage `site`.
    pub fn on(site: &str, volume: &str, message: impl fmt::Display) -> DriverError {
        DriverError {
            volume: Some(volume.to_string()),
            ..DriverError::at(site, message)
        }
    }

    /// The same refusal, of `kind`.
    pub fn of_kind(self, kind: RefusalKind) -> DriverError {
        DriverError { kind, ..self }
    }
}

/// The refusal of a driver that cannot change a pair's direction.
pub(crate) fn refuse_direction(pairs: &[Pair], what: &str) -> DriverError {
    let site = pairs.first().map_or("?", |p| p.source.storage.as_str());
    DriverError::at(site, format!("its driver cannot {what}"))
}

/// How far a long copy has come.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub sequence: u32,
    pub copyset: usize,
    pub done: u64,
    pub total: u64,
    /// A continuous copy in step with its source (its initial copy is done).
    pub in_step: bool,
    /// How far an asynchronous copy's target is behind its source, where the driver
    /// measures it.
    pub lag: Option<Lag>,
}

/// An asynchronous copy's lag.
#[derive(Clone, Debug, PartialEq)]
pub struct Lag {
    /// Since the instant the target holds the source as of (NaN: not yet copied).
    pub seconds: f64,
    /// How far behind: what is yet to copy where the driver knows it (qemu), else
    /// the size of the last change sent (btrfs).
    pub bytes: u64,
}

pub trait Driver {
    /// What the storage says on its own, as the executor receives it.
    type Notice: Send + 'static;

    /// Checks that every volume exists and every target can hold its source, before
    /// anything is changed.
    fn preflight(&mut self, pairs: &[Pair]) -> Result<(), DriverError>;
    /// Starts the pairs of one sequence: atomically where the storage can (one
    /// point-in-time instant per site); on failure nothing stays started.
    fn start(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError>;
    fn stop(&mut self, pairs: &[Pair]) -> Result<(), DriverError>;
    fn suspend(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError>;
    fn resume(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError>;
    /// Splits every continuous pair of the group at one dependent-write-consistent
    /// instant: hold (no pair acknowledges a write any more), then cut (the pairs are
    /// split while the writers wait). The writers stay held until `thaw`.
    fn freeze(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError>;
    /// Releases the writers a freeze holds; they go on without the pairs.
    fn thaw(&mut self, pairs: &[Pair]) -> Result<(), DriverError>;
    /// Failover: the targets of `pairs` (split already) become production volumes,
    /// writable for applications, with what is written to them recorded from now.
    /// Returns, for each, where applications reach it. A driver that cannot says so.
    fn recover(&mut self, pairs: &[Pair]) -> Result<Vec<String>, DriverError> {
        Err(refuse_direction(pairs, "recover"))
    }
    /// Failback: starts `pairs` (reversed: each source is a recovered target) copying
    /// only what changed on either side since the split; what the new target wrote
    /// after the split is overwritten, and the reports say how much.
    fn reverse(&mut self, pairs: &[Pair], copy: BaseCopy) -> Result<Vec<PairReport>, DriverError> {
        let _ = copy;
        Err(refuse_direction(pairs, "reverse"))
    }
    /// Looks, now and then, for what the storage does not notify: in the qemu driver,
    /// a writer attached below a mirror (an error: the pair is no longer in step).
    fn audit(&mut self) -> Vec<PairReport> {
        Vec::new()
    }
    /// Where `verify` reads each pair's two sides (exports added for it); `repair`:
    /// the target's is writable. A driver that cannot says so.
    fn verify_sides(
        &mut self,
        pairs: &[Pair],
        repair: bool,
    ) -> Result<Vec<crate::verify::Job>, DriverError> {
        let _ = repair;
        Err(refuse_direction(pairs, "verify"))
    }
    /// Removes what `verify_sides` added.
    fn verify_done(&mut self, pairs: &[Pair]) {
        let _ = pairs;
    }
    /// Turns one notice of site `site` into pair reports.
    fn interpret(&mut self, site: &str, notice: Self::Notice) -> Vec<PairReport>;
    fn progress(&mut self) -> Vec<Progress>;
    /// How long ago each storage it is connected to last answered its heartbeat.
    fn heartbeat_ages(&self) -> Vec<(String, std::time::Duration)> {
        Vec::new()
    }
    /// Whether the driver is connected to this storage now.
    fn reaches(&self, site: &str) -> bool;
    /// Takes over the copies a killed run of this session left running for `pairs`
    /// (none is restarted): a report that each runs, and where it stands.
    fn adopt(&mut self, pairs: &[Pair]) -> Result<Vec<PairReport>, DriverError>;
    /// Ends every copy this driver started and removes everything it added.
    fn shutdown(&mut self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_where_and_carries_what_a_caller_matches() {
        let plain = DriverError::on("siteA", "db", "no block node has this name");
        assert_eq!(
            plain.to_string(),
            "storage siteA, volume db: no block node has this name"
        );
        assert_eq!(plain.kind, RefusalKind::Refused);
        let mut taken = DriverError::at("siteB", "Duplicate job ID").of_kind(RefusalKind::InUse);
        taken.partly_written = vec!["siteB/db-r".into()];
        assert_eq!(taken.kind, RefusalKind::InUse);
        assert_eq!(
            taken.to_string(),
            "storage siteB: Duplicate job ID; 1 pair(s) of this sequence had started and were ended: their targets are partly written (siteB/db-r)"
        );
    }
}
