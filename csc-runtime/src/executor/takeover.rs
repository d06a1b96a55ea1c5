//! Taking over from a killed run: the machine as its journal left it, its copies
//! adopted where they run, what it began and did not finish carried out; and the
//! directions (reversed, recovered) earlier runs left.

use super::Executor;
use super::{Action, SetupError};
use crate::core::record::{Record, StorageCommand};
use crate::core::Unfinished;
use crate::drivers::{Driver, PairEvent, PairReport};
use crate::machine::{Command, Solution};
use crate::plan::Pair;
use crate::vocab::{BaseCopy, Command as Verb, Keyword};
use std::collections::BTreeSet;
use std::time::Instant;

/// Adds `sequence` to `set`, or removes it if it was there.
pub(super) fn toggle(set: &mut BTreeSet<u32>, sequence: u32) {
    if !set.remove(&sequence) {
        set.insert(sequence);
    }
}

/// The sequences reversed and recovered by the runs of a journal (`reverse` and
/// `recover` that returned ok), so a later run copies in the same direction and never
/// starts a recovered sequence over its production volumes.
pub fn directions(records: &[Record]) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let (mut reversed, mut recovered) = (BTreeSet::new(), BTreeSet::new());
    for record in records {
        if let Record::Done {
            sequence,
            command,
            ok: true,
            ..
        } = record
        {
            match command {
                StorageCommand::Recover => {
                    recovered.insert(*sequence);
                }
                StorageCommand::Reverse => {
                    recovered.remove(sequence);
                    toggle(&mut reversed, *sequence);
                }
                StorageCommand::Copy(_) => {}
            }
        }
    }
    (reversed, recovered)
}

impl<S: Solution, D: Driver> Executor<S, D> {
    /// Takes over from a killed run: the machine as its journal left it, its copies
    /// adopted where they run. A continuous pair whose copy is gone (its daemon
    /// restarted) is reported failed, so the document decides; a point-in-time copy
    /// that was running and is gone is started again.
    pub(super) fn take_over(
        &mut self,
        previous: &[Record],
        pairs: &[Pair],
    ) -> Result<Unfinished, SetupError> {
        let mut unfinished = self.core.restore(previous, Instant::now());
        let adopted = self.driver.adopt(pairs).map_err(SetupError::Storage)?;
        // Every adopted copy is reported (Started if it runs, else how it stands).
        let copies = adopted
            .iter()
            .map(|r| (r.sequence, r.copyset))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        tracing::info!(
            kind = "session",
            state = "taking-over",
            adopted = copies,
            "taking over from the killed run: {copies} of its copies adopted, {} commands and {} actions to finish",
            unfinished.commands.len(),
            unfinished.actions.len()
        );
        for sequence in &self.plan.sequences {
            let running = self.core.sequence_state(sequence.number).is_running();
            if !running {
                continue;
            }
            let missing: Vec<&Pair> = pairs
                .iter()
                .filter(|p| p.sequence == sequence.number)
                .filter(|p| {
                    !adopted
                        .iter()
                        .any(|r| r.sequence == p.sequence && r.copyset == p.copyset)
                })
                .collect();
            if missing.is_empty() {
                continue;
            }
            match sequence.copy {
                BaseCopy::Continuous(_) => self.reports.extend(missing.iter().map(|p| {
                    PairReport {
                        sequence: p.sequence,
                        copyset: p.copyset,
                        event: PairEvent::Error(
                            "its copy is gone: its daemon restarted while no session watched it"
                                .into(),
                        ),
                    }
                })),
                BaseCopy::PointInTime(_) => {
                    if !unfinished
                        .commands
                        .contains(&(sequence.number, Verb::Start))
                    {
                        unfinished.commands.push((sequence.number, Verb::Start));
                    }
                }
            }
        }
        self.reports.extend(adopted);
        Ok(unfinished)
    }

    /// Finishes what a killed run left unfinished: its commands issued again (the
    /// driver skips what is already done), its actions run again under their ids.
    pub(super) fn finish(&mut self, unfinished: Unfinished) {
        for (sequence, verb) in unfinished.commands {
            tracing::info!(
                kind = "session",
                sequence,
                command = verb.as_str(),
                "finishing what the killed run began: {verb} sequence {sequence}"
            );
            self.command(
                Command::Copy {
                    sequence,
                    command: verb,
                },
                None,
            );
        }
        for action in unfinished.owed_actions {
            tracing::info!(
                kind = "session",
                action = %action,
                "finishing what the killed run began: {action}"
            );
            self.command(action, None);
        }
        for record in unfinished.actions {
            let Record::ActionStart {
                id,
                sequence,
                event,
                contact,
                program,
                timeout_secs,
                ..
            } = record
            else {
                continue;
            };
            let what = self.occurrence(None, sequence, event);
            let action = match (contact, program) {
                (Some(contact), _) => Action::Notify(contact),
                (None, Some(program)) => Action::Run(program, timeout_secs),
                (None, None) => continue,
            };
            self.act(Some(id), what, action);
        }
    }
}
