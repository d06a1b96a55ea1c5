//! Operators' commands to the running session (`suspend`, `resume`, `recover`,
//! `reverse`, and what its storage says now): checked against the sequence's state,
//! carried out through the driver, answered when the sequence gets where the command
//! leads (or when it cannot).

use super::takeover::toggle;
use super::Executor;
use crate::control::{self, Answer, Ask, Operation, Outcome, Request};
use crate::core::record::StorageCommand;
use crate::drivers::Driver;
use crate::machine::{SequenceState, Solution};
use crate::vocab::{BaseCopy, Command as Verb};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// An operator waiting for the answer to a command.
pub(super) struct Waiting {
    pub(super) sequence: u32,
    /// The state the command leads to.
    until: SequenceState,
    answer: Sender<Answer>,
    /// What the sequence's pairs said meanwhile.
    pub(super) notes: Vec<String>,
    deadline: Instant,
}

impl<S: Solution, D: Driver> Executor<S, D> {
    /// An operator's command (`BIN resume SEQ`, …): refused with the reason when the
    /// sequence cannot take it now, else carried out; answered when the sequence gets
    /// where the command leads (or fails), with what its pairs said on the way.
    pub(super) fn operator(&mut self, request: Request) {
        let (operation, sequence, answer) = match request.ask {
            Ask::Operate(operation, sequence) => (operation, sequence, request.answer),
            Ask::Status => {
                let message = self.live().join("\n");
                let _ = request.answer.send(Answer {
                    outcome: Outcome::Done,
                    message,
                });
                return;
            }
        };
        let refuse = |message: String| {
            let _ = answer.send(Answer {
                outcome: Outcome::Refused,
                message,
            });
        };
        let Some(copy) = self.plan.sequence(sequence).map(|s| s.copy) else {
            return refuse(format!(
                "there is no sequence {sequence}; this session has 1..{}",
                self.plan.sequences.len()
            ));
        };
        if !matches!(copy, BaseCopy::Continuous(_)) {
            return refuse(format!(
                "sequence {sequence} is {}: only a continuous sequence can be told to {operation}",
                copy.copy_type()
            ));
        }
        let state = self.core.sequence_state(sequence);
        let recovered = self.recovered.contains(&sequence);
        let refusal = match operation {
            _ if recovered && operation != Operation::Reverse => Some(format!(
                "sequence {sequence} is recovered: production runs on its targets; `reverse {sequence}` mirrors them back"
            )),
            Operation::Suspend if !state.is_running() => Some(format!(
                "sequence {sequence} is {state}: suspend is for a sequence that is Copying or Duplex"
            )),
            Operation::Resume if !state.is_split() => Some(format!(
                "sequence {sequence} is {state}: resume is for a sequence that is Suspended or Failed"
            )),
            Operation::Recover { freeze: false } if state.is_running() => {
                Some(format!(
                    "sequence {sequence} is {state}: its pairs still mirror, so the application may still write to its sources; `recover {sequence} --freeze` splits them at one consistent instant first"
                ))
            }
            Operation::Recover { .. } if !state.is_running() && !state.is_split() => Some(format!(
                "sequence {sequence} is {state}: there is nothing to recover"
            )),
            Operation::Verify { .. } if state != SequenceState::Duplex => Some(format!(
                "sequence {sequence} is {state}: verify compares the pairs of a sequence in Duplex"
            )),
            Operation::Reverse if !recovered => Some(format!(
                "sequence {sequence} was not recovered: `recover {sequence}` first"
            )),
            _ => None,
        };
        if let Some(why) = refusal {
            return refuse(why);
        }
        tracing::info!(
            kind = "operator",
            sequence,
            command = %operation,
            "operator: {operation} sequence {sequence}"
        );
        let wait = |ex: &mut Self, until: SequenceState, answer: Sender<Answer>| {
            ex.waiting.push(Waiting {
                sequence,
                until,
                answer,
                notes: Vec::new(),
                deadline: Instant::now() + control::ANSWER_WITHIN - Duration::from_secs(5),
            })
        };
        match operation {
            Operation::Suspend | Operation::Resume => {
                let (verb, until) = match operation {
                    Operation::Suspend => (Verb::Suspend, SequenceState::Suspended),
                    _ => (Verb::Resume, SequenceState::Duplex),
                };
                match self.copy(sequence, verb) {
                    Err(e) => refuse(format!("{verb} sequence {sequence} failed: {e}")),
                    Ok(()) => wait(self, until, answer),
                }
            }
            Operation::Recover { .. } => {
                if state.is_running() {
                    // Split at one consistent instant, the writers released at once.
                    let split = self
                        .copy(sequence, Verb::Freeze)
                        .and_then(|()| self.copy(sequence, Verb::Thaw));
                    if let Err(e) = split {
                        return refuse(format!("the freeze before the recover failed: {e}"));
                    }
                }
                let pairs = self.pairs(sequence);
                let mut said = Vec::new();
                let result = self.journaled(sequence, StorageCommand::Recover, |ex| {
                    said = ex.driver.recover(&pairs)?;
                    Ok(())
                });
                match result {
                    Err(e) => refuse(format!("recover sequence {sequence} failed: {e}")),
                    Ok(()) => {
                        self.recovered.insert(sequence);
                        for line in &said {
                            tracing::info!(
                                kind = "operator",
                                sequence,
                                recovered = line.as_str(),
                                "{line}"
                            );
                        }
                        let mut message = format!("sequence {sequence}: recovered");
                        for line in said {
                            message.push_str(&format!("\n{line}"));
                        }
                        let _ = answer.send(Answer {
                            outcome: Outcome::Done,
                            message,
                        });
                    }
                }
            }
            Operation::Verify { repair, rate } => {
                let options = crate::verify::Options {
                    rate: rate.saturating_mul(1 << 20),
                    repair,
                };
                if let Err(e) = self.start_verify(sequence, options, answer.clone()) {
                    refuse(format!("verify sequence {sequence} failed: {e}"));
                }
            }
            Operation::Reverse => {
                self.core.issue(sequence, Verb::Resume, Instant::now());
                toggle(&mut self.reversed, sequence);
                let pairs = self.pairs(sequence);
                let result = self.journaled(sequence, StorageCommand::Reverse, |ex| {
                    ex.driver
                        .reverse(&pairs, copy)
                        .map(|r| ex.reports.extend(r))
                });
                match result {
                    Err(e) => {
                        toggle(&mut self.reversed, sequence);
                        refuse(format!("reverse sequence {sequence} failed: {e}"))
                    }
                    Ok(()) => {
                        self.recovered.remove(&sequence);
                        wait(self, SequenceState::Duplex, answer)
                    }
                }
            }
        }
    }

    /// The session as its storage and its own state say now: each sequence's state
    /// and direction, and each copy job the daemons report with how far it is.
    fn live(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        for sequence in &self.plan.sequences {
            let n = sequence.number;
            let mut line = format!("sequence {n}: {}", self.core.sequence_state(n));
            if self.recovered.contains(&n) {
                line.push_str(", recovered (production on its targets)");
            }
            if self.reversed.contains(&n) {
                line.push_str(", reversed (copying from its targets to its sources)");
            }
            lines.push(line);
        }
        for p in self.driver.progress() {
            let set = self.plan.copyset_name(p.copyset).unwrap_or("?");
            let how = if p.in_step {
                format!("in step, {} bytes copied so far", p.done)
            } else {
                format!(
                    "copying, {} of {} bytes ({}%)",
                    p.done,
                    p.total,
                    p.done * 100 / p.total.max(1)
                )
            };
            lines.push(format!(
                "sequence {} copy set {set}: its copy runs, {how}",
                p.sequence
            ));
        }
        lines
    }

    /// Answers the operators waiting on `sequence`, now `state` (or all whose wait is
    /// over, with `state` None).
    pub(super) fn answer_waiting(&mut self, sequence: Option<u32>, state: Option<SequenceState>) {
        let now = Instant::now();
        let (done, waiting): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| match (sequence, state) {
                (Some(seq), Some(state)) => {
                    w.sequence == seq && (state == w.until || state == SequenceState::Failed)
                }
                _ => w.deadline <= now,
            });
        self.waiting = waiting;
        for w in done {
            let ok = state == Some(w.until);
            let state = state.map_or("not there yet", SequenceState::as_str);
            let mut message = format!("sequence {}: {state}", w.sequence);
            for note in &w.notes {
                message.push_str(&format!("\n{note}"));
            }
            let outcome = if ok { Outcome::Done } else { Outcome::Refused };
            let _ = w.answer.send(Answer { outcome, message });
        }
    }
}
