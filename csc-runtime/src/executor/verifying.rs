//! `verify` as the executor runs it: the driver adds the exports, a thread of its own
//! reads and compares (verify.rs) while the loop goes on, and the loop answers the
//! operator, removes the exports and counts the figures when the thread is done.

use super::Executor;
use crate::control::{Answer, Outcome};
use crate::drivers::{Driver, DriverError};
use crate::machine::Solution;
use crate::plan::Pair;
use crate::verify::{self, Verified, VerifyError};
use crate::vocab::BaseCopy;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

/// A verify under way.
pub(super) struct Verifying {
    sequence: u32,
    pairs: Vec<Pair>,
    results: Receiver<Vec<Result<Verified, VerifyError>>>,
    answer: Sender<Answer>,
}

/// What verify found in a sequence this run, for the metrics page.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct VerifyTotals {
    pub(super) bytes: u64,
    pub(super) differing: u64,
    pub(super) repaired: u64,
}

/// Why a verify did not start.
#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
    /// The driver could not give both sides of a pair to read.
    #[error(transparent)]
    Storage(#[from] DriverError),
    #[error("cannot start verifying: {0}")]
    Thread(#[source] std::io::Error),
}

/// The rate of a scheduled verify (the operator's default): bytes a second a side.
const SCHEDULED_RATE: u64 = 64 << 20;

/// How often a long verify says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl<S: Solution, D: Driver> Executor<S, D> {
    /// Starts verifying `sequence` (in duplex: checked by the caller).
    pub(super) fn start_verify(
        &mut self,
        sequence: u32,
        options: verify::Options,
        answer: Sender<Answer>,
    ) -> Result<(), StartError> {
        let pairs = self.pairs(sequence);
        let jobs = self.driver.verify_sides(&pairs, options.repair)?;
        let names: Vec<String> = jobs
            .iter()
            .map(|j| self.plan.copyset_name(j.copyset).unwrap_or("?").to_string())
            .collect();
        let (tx, results) = mpsc::channel();
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("verify".into())
            .spawn(move || {
                let _entered = span.enter();
                let found = jobs
                    .iter()
                    .zip(&names)
                    .map(|(job, name)| {
                        let said = std::cell::Cell::new(Instant::now());
                        verify::run(job, options, &|bytes| {
                            if said.get().elapsed() >= PROGRESS_EVERY {
                                said.set(Instant::now());
                                tracing::info!(
                                    kind = "verify",
                                    sequence,
                                    copyset = name.as_str(),
                                    bytes,
                                    "verify: {bytes} bytes of copy set {name} compared"
                                );
                            }
                        })
                    })
                    .collect();
                let _ = tx.send(found);
            })
            .map_err(StartError::Thread)?;
        self.verifying.push(Verifying {
            sequence,
            pairs,
            results,
            answer,
        });
        Ok(())
    }

    /// `verify_every_seconds`: every continuous sequence in Duplex not being verified
    /// now is (at the operator's default rate, no repair); what it finds is logged and
    /// counted like an operator's verify.
    pub(super) fn verify_on_schedule(&mut self) {
        let due: Vec<u32> = (self.plan.sequences.iter())
            .filter(|s| matches!(s.copy, BaseCopy::Continuous(_)))
            .map(|s| s.number)
            .filter(|n| self.core.sequence_state(*n) == crate::machine::SequenceState::Duplex)
            .filter(|n| !self.verifying.iter().any(|v| v.sequence == *n))
            .collect();
        for sequence in due {
            // Nobody waits for the answer.
            let (answer, _) = mpsc::channel();
            let options = verify::Options {
                rate: SCHEDULED_RATE,
                repair: false,
            };
            if let Err(e) = self.start_verify(sequence, options, answer) {
                tracing::warn!(kind = "verify", sequence, "scheduled verify failed: {e}");
            }
        }
    }

    /// Answers the verifies that are done.
    pub(super) fn verify_ended(&mut self) {
        let mut still = Vec::new();
        for v in std::mem::take(&mut self.verifying) {
            let found = match v.results.try_recv() {
                Err(TryRecvError::Empty) => {
                    still.push(v);
                    continue;
                }
                Ok(found) => found,
                Err(TryRecvError::Disconnected) => vec![Err(VerifyError::Died)],
            };
            self.driver.verify_done(&v.pairs);
            let (mut failed, mut differs) = (false, false);
            let mut lines = Vec::new();
            for result in found {
                match result {
                    Ok(f) => {
                        let name = self.plan.copyset_name(f.copyset).unwrap_or("?");
                        let totals = self.verified.entry(v.sequence).or_default();
                        totals.bytes += f.bytes;
                        totals.differing += f.differing.iter().map(|e| e.len).sum::<u64>();
                        totals.repaired += f.repaired;
                        let left = if f.repaired > 0 || !f.unrepaired.is_empty() {
                            &f.unrepaired
                        } else {
                            &f.differing
                        };
                        differs |= !left.is_empty();
                        let line = verify::describe(&f, name);
                        if f.differing.is_empty() {
                            tracing::info!(
                                kind = "verify",
                                sequence = v.sequence,
                                copyset = name,
                                bytes = f.bytes,
                                "{line}"
                            );
                        } else {
                            tracing::warn!(
                                kind = "verify",
                                sequence = v.sequence,
                                copyset = name,
                                bytes = f.bytes,
                                differing = f.differing.len(),
                                repaired = f.repaired,
                                "{line}"
                            );
                        }
                        lines.push(line);
                    }
                    Err(e) => {
                        failed = true;
                        tracing::warn!(
                            kind = "verify",
                            sequence = v.sequence,
                            "verify failed: {e}"
                        );
                        lines.push(format!("verify failed: {e}"));
                    }
                }
            }
            let outcome = match (failed, differs) {
                (true, _) => Outcome::Refused,
                (false, true) => Outcome::Differs,
                (false, false) => Outcome::Done,
            };
            let _ = v.answer.send(Answer {
                outcome,
                message: lines.join("\n"),
            });
        }
        self.verifying = still;
    }
}
