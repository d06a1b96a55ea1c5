//! What the executor starts and records: the document's actions on threads of their
//! own (each recorded as started with its id, its end recorded by its thread), and
//! storage commands between their two journal records (issued, returned).

use super::Executor;
use crate::actions::{self, Occurrence};
use crate::core::record::{Record, StorageCommand};
use crate::drivers::{Driver, DriverError};
use crate::journal::{JournalError, Store};
use crate::machine::Solution;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An action of the document: notify a contact, or run a program (with its timeout).
#[derive(Clone, Debug)]
pub(super) enum Action {
    Notify(String),
    Run(String, u64),
}

impl Action {
    /// Its kind, as the metrics page counts it.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Action::Notify(_) => "notify",
            Action::Run(..) => "run",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Notify(contact) => write!(f, "notify {contact}"),
            Action::Run(program, _) => write!(f, "run {program}"),
        }
    }
}

/// Appends a record; a journal that cannot be written is logged loudly, and the
/// session goes on (its copies matter more than its record of them).
fn append(journal: &Option<Arc<Mutex<Box<dyn Store>>>>, record: Record) {
    if let Some(journal) = journal {
        let appended = journal.lock().expect("journal").append(&record);
        // With --ha: another manager leads, or no etcd member took the record. This
        // one must not issue what it was recording, nor go on unrecorded.
        if let Err(e @ (JournalError::Deposed | JournalError::Remote(_))) = &appended {
            tracing::error!(
                kind = "ha",
                state = "deposed",
                "{e}: ending (exit {})",
                crate::ha::EXIT_DEPOSED
            );
            std::process::exit(crate::ha::EXIT_DEPOSED);
        }
        if let Err(e) = appended {
            tracing::error!(
                kind = "journal",
                ok = false,
                "cannot write the journal: {e}; a restart will not know this step"
            );
        }
    }
}

impl<S: Solution, D: Driver> Executor<S, D> {
    pub(super) fn journal(&self, record: Record) {
        append(&self.journal, record);
    }

    /// Starts an action on its own thread: a new one (recorded as started, with a new
    /// id) or, with `id`, one a killed run started and did not see end. Its end is
    /// recorded by its thread.
    pub(super) fn act(&mut self, id: Option<String>, what: Occurrence, action: Action) {
        let contact = match &action {
            Action::Notify(name) => match self.plan.contacts.iter().find(|c| c.name == *name) {
                Some(contact) => Some(contact.clone()),
                None => {
                    tracing::warn!(
                        kind = "notify",
                        contact = name.as_str(),
                        ok = false,
                        "notify {name}: no such contact in this session; the event is only logged"
                    );
                    return;
                }
            },
            Action::Run(..) => None,
        };
        let id = id.unwrap_or_else(|| {
            self.actions += 1;
            let id = format!("{}.{}", self.run, self.actions);
            let (program, timeout_secs) = match &action {
                Action::Run(program, timeout) => (Some(program.clone()), *timeout),
                Action::Notify(_) => (None, 0),
            };
            self.journal(Record::ActionStart {
                id: id.clone(),
                action: action.to_string(),
                sequence: what.sequence,
                event: what.event,
                contact: contact.as_ref().map(|c| c.name.clone()),
                program,
                timeout_secs,
            });
            id
        });
        let what = what.for_action(id);
        let (journal, status) = (self.journal.clone(), self.status.clone());
        // The action's records are the session's too.
        let span = tracing::Span::current();
        std::thread::spawn(move || {
            let _session = span.entered();
            let started = Instant::now();
            let ok = match (&action, contact) {
                (Action::Run(program, timeout), _) => {
                    actions::run(program, Duration::from_secs(*timeout), &what)
                }
                (Action::Notify(_), Some(contact)) => actions::notify(&contact, &what),
                (Action::Notify(_), None) => false,
            };
            let mut status = status.lock().expect("status");
            let tally = status.actions.entry((action.kind(), ok)).or_default();
            tally.0 += 1;
            tally.1 += started.elapsed().as_secs_f64();
            drop(status);
            append(&journal, Record::ActionEnd { id: what.id, ok });
        });
    }

    /// Runs a storage command between its two journal records: issued, and returned.
    pub(super) fn journaled(
        &mut self,
        sequence: u32,
        command: StorageCommand,
        run: impl FnOnce(&mut Self) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        self.journal(Record::Issue { sequence, command });
        let result = run(self);
        self.journal(Record::Done {
            sequence,
            command,
            ok: result.is_ok(),
            detail: result
                .as_ref()
                .err()
                .map_or(String::new(), |e| e.to_string()),
        });
        result
    }
}
