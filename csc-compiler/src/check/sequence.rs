//! SEQUENCE: numbering, TYPE, mode, KEEP, SCHEDULE, events, and the advice about
//! sequences nothing starts.

use super::{names, values, Checker, Types};
use crate::diagnostics::{valid_values_help, Code, Diagnostic};
use crate::ir::{self, Action};
use crate::source::Span;
use crate::syntax::ast::{self, Text};
use csc_runtime::vocab::{BaseCopy, Command, CommandFlags, CopyType, Event, Keyword};
use std::collections::{BTreeMap, BTreeSet};

impl Checker<'_> {
    /// SEQ_NUM on all sequences or on none (then document order numbers them), 1..=N.
    pub(super) fn number_sequences<'a, 'i>(
        &mut self,
        seqs: &'a [ast::Sequence<'i>],
    ) -> BTreeMap<u32, &'a ast::Sequence<'i>> {
        let with: Vec<&ast::Sequence> = seqs.iter().filter(|s| s.seq_num.is_some()).collect();
        if with.is_empty() {
            return (1..).zip(seqs).collect();
        }
        if with.len() != seqs.len() {
            let without = seqs
                .iter()
                .find(|s| s.seq_num.is_none())
                .expect("some lack SEQ_NUM");
            let tag = without.tag.clone();
            let message = "this sequence has no SEQ_NUM, but others do";
            let help = "give every sequence a <SEQ_NUM>, or none (then they are numbered in document order)";
            self.diags.push(
                Diagnostic::error(Code::MixedSeqNum, tag.clone(), message)
                    .label("no SEQ_NUM")
                    .help(help.to_string()),
            );
            return BTreeMap::new();
        }
        let mut numbered = BTreeMap::new();
        let mut spans = BTreeMap::new();
        for seq in seqs {
            let text = seq.seq_num.as_ref().expect("all have SEQ_NUM");
            match values::seq_number(&text.value) {
                Err(help) => {
                    self.diags.push(
                        Diagnostic::error(
                            Code::BadNumber,
                            text.span.clone(),
                            format!("bad SEQ_NUM `{}`", text.value),
                        )
                        .label("not a sequence number")
                        .help(help.to_string()),
                    );
                }
                Ok(n) if numbered.contains_key(&n) => {
                    self.diags.push(
                        Diagnostic::error(
                            Code::DuplicateSeqNum,
                            text.span.clone(),
                            format!("SEQ_NUM {n} is used twice"),
                        )
                        .label("repeated")
                        .help("each sequence needs its own number, 1..N"),
                    );
                }
                Ok(n) => {
                    numbered.insert(n, seq);
                    spans.insert(n, text.span.clone());
                }
            }
        }
        let count = seqs.len() as u64;
        let missing: Vec<String> = (1..=count as u32)
            .filter(|n| !numbered.contains_key(n))
            .map(|n| n.to_string())
            .collect();
        for (&n, span) in spans.range(count as u32 + 1..) {
            self.diags.push(
                Diagnostic::error(
                    Code::SeqNumGap,
                    (span).clone(),
                    format!("SEQ_NUM {n}, but the session has {count} sequences"),
                )
                .label("out of range")
                .help(format!(
                    "sequences are numbered 1..{count} (the chain's order); unused: {}",
                    missing.join(", ")
                )),
            );
        }
        numbered
    }

    pub(super) fn copy_type(&mut self, seq: &ast::Sequence) -> Option<CopyType> {
        let text = seq.copy_type.as_ref()?;
        let parsed = CopyType::parse(&text.value);
        if parsed.is_none() {
            let help = valid_values_help(&text.value, &names::<CopyType>());
            self.diags.push(
                Diagnostic::error(
                    Code::UnknownType,
                    text.span.clone(),
                    format!("unknown TYPE `{}`", text.value),
                )
                .label("not a base copy type")
                .help(help.to_string()),
            );
        }
        parsed
    }

    pub(super) fn sequence(
        &mut self,
        num: u32,
        copy_type: CopyType,
        seq: &ast::Sequence,
        types: &Types,
        contacts: &[ir::Contact],
    ) -> ir::Sequence {
        let copy = self.mode(copy_type, seq);
        let schedule = seq
            .schedule
            .as_ref()
            .and_then(|s| self.schedule(copy_type, s));
        let keep = seq.keep.as_ref().map_or(1, |k| self.keep(copy_type, k));
        let mut events: BTreeMap<Event, Vec<Action>> = BTreeMap::new();
        let mut seen: BTreeMap<Event, Span> = BTreeMap::new();
        for flags in &seq.eventflags {
            let Some(event) = flags
                .event
                .as_ref()
                .and_then(|e| self.event(copy_type, e, &mut seen))
            else {
                continue;
            };
            let actions = flags
                .actions
                .iter()
                .filter_map(|a| self.action(num, a, types, contacts))
                .collect();
            events.insert(event, actions);
        }
        ir::Sequence {
            num,
            copy,
            schedule,
            keep,
            events,
        }
    }

    /// The mode from CHARACTERISTIC and CMDFLAGS/startFlags/MODE; all must agree.
    pub(super) fn mode(&mut self, copy_type: CopyType, seq: &ast::Sequence) -> BaseCopy {
        let mut chosen: Option<(BaseCopy, &Text)> = None;
        let mut given: Vec<&Text> = seq.characteristics.iter().collect();
        for flags in &seq.cmdflags {
            if let Some(cmd) = &flags.cmd {
                if CommandFlags::parse(&cmd.value).is_none() {
                    let help = valid_values_help(&cmd.value, &names::<CommandFlags>());
                    self.diags.push(
                        Diagnostic::error(
                            Code::UnknownCmdFlags,
                            cmd.span.clone(),
                            format!("unknown CMD `{}`", cmd.value),
                        )
                        .label("no such command flags")
                        .help(help.to_string()),
                    );
                }
            }
            given.extend(&flags.mode);
        }
        for text in given {
            let Some(copy) = BaseCopy::parse_mode(copy_type, &text.value) else {
                let valid = copy_type.mode_names();
                let help = valid_values_help(&text.value, &valid);
                self.diags.push(
                    Diagnostic::error(
                        Code::UnknownMode,
                        text.span.clone(),
                        format!("`{}` is not a mode of a {copy_type} sequence", text.value),
                    )
                    .label("not valid for this type")
                    .help(help.to_string()),
                );
                continue;
            };
            match chosen {
                Some((earlier, first)) if earlier != copy => {
                    let message = format!(
                        "mode {} contradicts {} given earlier",
                        copy.mode_name(),
                        earlier.mode_name()
                    );
                    self.diags.push(
                        Diagnostic::error(Code::ConflictingModes, text.span.clone(), message)
                            .label("conflicting mode")
                            .also(first.span.clone(), "first mode")
                            .help("a sequence has one mode; keep one of them"),
                    );
                }
                Some(_) => {}
                None => chosen = Some((copy, text)),
            }
        }
        chosen.map_or(BaseCopy::default_for(copy_type), |(copy, _)| copy)
    }

    /// KEEP's count (1 where it is wrong: reported).
    pub(super) fn keep(&mut self, copy_type: CopyType, text: &Text) -> u32 {
        if copy_type == CopyType::Continuous {
            let help = "a continuous copy is one target kept in step; KEEP counts the copies a Point-In-Time sequence keeps";
            self.diags.push(
                Diagnostic::error(
                    Code::BadKeep,
                    text.span.clone(),
                    "a Continuous sequence has no KEEP",
                )
                .label("not valid here")
                .help(help.to_string()),
            );
            return 1;
        }
        values::keep(&text.value).unwrap_or_else(|help| {
            self.diags.push(
                Diagnostic::error(
                    Code::BadKeep,
                    text.span.clone(),
                    format!("bad KEEP `{}`", text.value),
                )
                .label("not a count of copies")
                .help(help.to_string()),
            );
            1
        })
    }

    pub(super) fn schedule(&mut self, copy_type: CopyType, text: &Text) -> Option<ir::Schedule> {
        if copy_type == CopyType::Continuous {
            self.diags.push(
                Diagnostic::error(
                    Code::BadSchedule,
                    text.span.clone(),
                    "a Continuous sequence has no SCHEDULE",
                )
                .label("not valid here")
                .help(
                    "a continuous copy runs all the time; SCHEDULE starts Point-In-Time sequences",
                ),
            );
            return None;
        }
        values::schedule(&text.value)
            .map_err(|help| {
                self.diags.push(
                    Diagnostic::error(
                        Code::BadSchedule,
                        text.span.clone(),
                        format!("bad SCHEDULE `{}`", text.value),
                    )
                    .label("not a schedule")
                    .help(help.to_string()),
                );
            })
            .ok()
    }

    pub(super) fn event(
        &mut self,
        copy_type: CopyType,
        text: &Text,
        seen: &mut BTreeMap<Event, Span>,
    ) -> Option<Event> {
        let valid: Vec<&str> = copy_type.events().iter().map(|e| e.as_str()).collect();
        let Some(event) = Event::parse(&text.value).filter(|e| copy_type.events().contains(e))
        else {
            let message = match Event::parse(&text.value) {
                Some(e) => format!("a {copy_type} sequence has no {e} event"),
                None => format!("unknown EVENT `{}`", text.value),
            };
            let help = valid_values_help(&text.value, &valid);
            self.diags.push(
                Diagnostic::error(Code::UnknownEvent, text.span.clone(), message)
                    .label("not an event here")
                    .help(help.to_string()),
            );
            return None;
        };
        // For a continuous copy, "complete" means the initial copy is done: duplex.
        let event = match (copy_type, event) {
            (CopyType::Continuous, Event::OnComplete) => Event::OnDuplex,
            (_, e) => e,
        };
        if seen.contains_key(&event) {
            let message = format!("{event} is handled twice in this sequence");
            let help = format!(
                "put all actions for {event} in one <EVENTFLAGS>, in the order they should run{}",
                if event == Event::OnDuplex {
                    " (onComplete is onDuplex for a Continuous sequence)"
                } else {
                    ""
                }
            );
            self.diags.push(
                Diagnostic::error(Code::DuplicateEvent, text.span.clone(), message)
                    .label("second handler")
                    .help(help.to_string()),
            );
            return None;
        }
        seen.insert(event, text.span.clone());
        Some(event)
    }

    /// A sequence nothing starts never runs: not the first, no SCHEDULE, no `start` action.
    pub(super) fn warn_unreachable(
        &mut self,
        numbered: &BTreeMap<u32, &ast::Sequence>,
        sequences: &BTreeMap<u32, ir::Sequence>,
    ) {
        let started: BTreeSet<u32> = sequences
            .values()
            .flat_map(|s| s.events.values().flatten())
            .filter_map(|a| match a {
                Action::Command {
                    target,
                    command: Command::Start,
                } => Some(*target),
                _ => None,
            })
            .collect();
        for (num, seq) in sequences {
            if *num != 1 && seq.schedule.is_none() && !started.contains(num) {
                let span = numbered[num].tag.clone();
                let help = "add a SCHEDULE, or an action <TO_SEQ>N</TO_SEQ><DO_CMD>start</DO_CMD> on an event of another sequence";
                self.diags.push(
                    Diagnostic::warning(
                        Code::Unreachable,
                        span,
                        format!("nothing starts sequence {num}"),
                    )
                    .label("never started")
                    .help(help.to_string()),
                );
            }
        }
    }
}
