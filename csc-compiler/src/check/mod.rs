//! Stage 2, check: AST -> IR. Interprets every value, resolves every reference and
//! enforces the language's rules, reporting every fault in one run.

mod values;

pub use values::format_duration;

use crate::diagnostics::{choices_help, error_count, valid_values_help, Code, Diagnostic};
use crate::ir::{self, Action, Solution};
use crate::source::Span;
use crate::syntax::ast::{self, Text};
use csc_runtime::address::Address;
use csc_runtime::capability::{refusals, volume_fault, Needs, Unable};
use csc_runtime::model::webhook_fault;
use csc_runtime::vocab::{BaseCopy, Command, CommandFlags, CopyType, DriverKind, Event, Keyword};
use rustc_hash::FxHashSet;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Checks a parsed document; the IR only when no error was found.
pub fn check(session: &ast::Session, diags: &mut Vec<Diagnostic>) -> Option<Solution> {
    let errors_before = error_count(diags);
    let mut c = Checker { diags };
    let solution = c.solution(session);
    (error_count(c.diags) == errors_before).then_some(solution)
}

fn names<K: Keyword>() -> Vec<&'static str> {
    K::ALL.iter().map(|k| k.as_str()).collect()
}

/// Where an action tells sequence `target` to do `command`, the first in the document.
fn command_span(s: &ast::Session, target: u32, command: Command) -> Option<Span> {
    let numbered: Vec<&ast::Sequence> = s.sequences.iter().collect();
    numbered.iter().enumerate().find_map(|(i, seq)| {
        let own = seq
            .seq_num
            .as_ref()
            .and_then(|n| n.value.parse::<u32>().ok())
            .unwrap_or(i as u32 + 1);
        seq.eventflags
            .iter()
            .flat_map(|f| &f.actions)
            .filter(|a| {
                let to = a
                    .to_seq
                    .as_ref()
                    .map_or(Some(own), |t| t.value.parse().ok());
                to == Some(target)
            })
            .find_map(|a| {
                a.do_cmd
                    .as_ref()
                    .filter(|c| Command::parse(&c.value) == Some(command))
                    .map(|c| c.span.clone())
            })
    })
}

/// Every sequence by number, with its type when that is known.
type Types = BTreeMap<u32, Option<CopyType>>;

struct Checker<'d> {
    diags: &'d mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn solution(&mut self, s: &ast::Session) -> Solution {
        let session_tag = s.tag.clone();
        let storages = self.storages(&s.storages);
        let contacts = self.contacts(&s.contacts);
        let numbered = self.number_sequences(&s.sequences);
        if s.sequences.is_empty() {
            self.diags.push(Diagnostic::error(Code::NoSequence, session_tag.clone(), "the session has no <SEQUENCE>").label("empty session").help("a session is a chain of one or more sequences: add <SEQUENCE><TYPE>Continuous</TYPE></SEQUENCE>"));
        }
        // `None` for a sequence whose TYPE is broken (reported): it exists, so TO_SEQ
        // may name it, but what it accepts is unknown.
        let types: Types = numbered
            .iter()
            .map(|(&n, seq)| (n, self.copy_type(seq)))
            .collect();
        let mut sequences = BTreeMap::new();
        for (&num, seq) in &numbered {
            if let Some(&Some(copy_type)) = types.get(&num) {
                let sequence = self.sequence(num, copy_type, seq, &types, &contacts);
                sequences.insert(num, sequence);
            } else {
                // The type is broken (reported), but what actions name can still be checked.
                for action in seq.eventflags.iter().flat_map(|f| &f.actions) {
                    self.action(num, action, &types, &contacts);
                }
            }
        }
        // Against every declared id: a STORAGE with a fault of its own is still declared.
        let mut declared: Vec<&str> = Vec::new();
        for id in s.storages.iter().filter_map(|st| st.id.as_ref()) {
            if !declared.contains(&id.value.as_ref()) {
                declared.push(&id.value);
            }
        }
        let copysets = self.copysets(&s.copysets, &declared, &storages, s.sequences.len());
        if error_count(self.diags) == 0 {
            self.capabilities(s, &numbered, &storages, &copysets, &sequences);
        }
        // Only a document without errors gets this advice; with errors it is noise.
        if error_count(self.diags) == 0 {
            self.warn_unreachable(&numbered, &sequences);
        }
        Solution {
            name: s.name.as_ref().map(|n| n.value.to_string()),
            description: s.description.as_ref().map(|d| d.value.to_string()),
            storages,
            contacts,
            copysets,
            sequences,
        }
    }

    /// Reports a name already seen in `seen` (a duplicate id or name).
    fn unique<'a>(
        &mut self,
        seen: &mut HashMap<&'a str, Span>,
        name: &'a Text,
        code: Code,
        what: &str,
    ) -> bool {
        if let Some(first) = seen.get(name.value.as_ref()) {
            self.diags.push(
                Diagnostic::error(
                    code,
                    name.span.clone(),
                    format!("{what} `{}` is declared twice", name.value),
                )
                .label("second declaration")
                .also(first.clone(), "first declared here")
                .help(format!("{what}s must be unique: rename or remove one")),
            );
            return false;
        }
        seen.insert(&name.value, name.span.clone());
        true
    }

    fn storages(&mut self, storages: &[ast::Storage]) -> Vec<ir::Storage> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for s in storages {
            let Some(id) = &s.id else { continue };
            let unique = self.unique(&mut seen, id, Code::DuplicateStorage, "storage id");
            let driver = match &s.driver {
                None => Some(DriverKind::Qemu),
                Some(d) => DriverKind::parse(&d.value).or_else(|| {
                    let help = valid_values_help(&d.value, &names::<DriverKind>());
                    self.diags.push(
                        Diagnostic::error(
                            Code::UnknownDriver,
                            d.span.clone(),
                            format!("unknown driver `{}`", d.value),
                        )
                        .label("unknown driver")
                        .help(help),
                    );
                    None
                }),
            };
            let endpoint = s.endpoint.as_ref().and_then(|e| self.endpoint(e, driver));
            // `Some(None)`: no DATA, which is fine; `None`: a DATA that is wrong.
            let data = match &s.data {
                None => Some(None),
                Some(d) if driver.is_some_and(|k| k != DriverKind::Qemu) => {
                    self.diags.push(
                        Diagnostic::error(
                            Code::BadEndpoint,
                            d.span.clone(),
                            format!(
                                "a {} storage has no DATA address",
                                driver.expect("a driver")
                            ),
                        )
                        .label("not for this driver")
                        .help("its pool is reached through ENDPOINT alone: remove <DATA>"),
                    );
                    None
                }
                Some(d) => self.endpoint(d, driver).map(Some),
            };
            if let (true, Some(driver), Some(endpoint), Some(data)) =
                (unique, driver, endpoint, data)
            {
                out.push(ir::Storage {
                    id: id.value.to_string(),
                    driver,
                    endpoint,
                    data,
                });
            }
        }
        out
    }

    /// An address, and whether a storage of `driver` (when known) is reached there.
    fn endpoint(&mut self, text: &Text, driver: Option<DriverKind>) -> Option<Address> {
        let address = Address::parse(&text.value)
            .map_err(|help| {
                self.diags.push(
                    Diagnostic::error(
                        Code::BadEndpoint,
                        text.span.clone(),
                        format!("`{}` is not an address", text.value),
                    )
                    .label("bad address")
                    .help(help),
                );
            })
            .ok()?;
        match driver {
            Some(driver) if !address.suits(driver) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::BadEndpoint,
                        text.span.clone(),
                        format!("a {driver} storage is not reached at `{}`", text.value),
                    )
                    .label("not for this driver")
                    .help(format!("write {}", driver.capabilities().endpoints)),
                );
                None
            }
            _ => Some(address),
        }
    }

    fn contacts(&mut self, contacts: &[ast::Contact]) -> Vec<ir::Contact> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for c in contacts {
            let Some(name) = &c.name else { continue };
            let unique = self.unique(&mut seen, name, Code::DuplicateContact, "contact");
            if c.webhook.is_none() && c.command.is_none() {
                self.diags.push(Diagnostic::error(Code::BadContact, name.span.clone(), format!("contact `{}` has no way to be reached", name.value)).label("no WEBHOOK or COMMAND").help("add <WEBHOOK>http://127.0.0.1:9000/hook</WEBHOOK> or <COMMAND>/absolute/program</COMMAND>"));
                continue;
            }
            let webhook = c.webhook.as_ref().map(|w| match webhook_fault(&w.value) {
                Some(fault) => {
                    let message = format!("`{}` is not a webhook URL", w.value);
                    self.diags.push(
                        Diagnostic::error(Code::BadContact, w.span.clone(), message)
                            .label("bad webhook")
                            .help(fault),
                    );
                    None
                }
                None => Some(w.value.to_string()),
            });
            let command = c.command.as_ref().map(|p| self.program(p));
            if unique && !matches!(webhook, Some(None)) && !matches!(command, Some(None)) {
                out.push(ir::Contact {
                    name: name.value.to_string(),
                    webhook: webhook.flatten(),
                    command: command.flatten(),
                    secret: None,
                });
            }
        }
        out
    }

    /// A program to run must be an absolute path: it is run without a shell or PATH search.
    fn program(&mut self, text: &Text) -> Option<String> {
        if text.value.starts_with('/') {
            return Some(text.value.to_string());
        }
        self.diags.push(Diagnostic::error(Code::BadProgram, text.span.clone(), format!("`{}` is not an absolute path", text.value)).label("relative path").help("programs run directly (no shell, no PATH search); write the full path, e.g. /usr/local/sbin/site-switch"));
        None
    }

    /// SEQ_NUM on all sequences or on none (then document order numbers them), 1..=N.
    fn number_sequences<'a, 'i>(
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
            self.diags.push(Diagnostic::error(Code::MixedSeqNum, tag.clone(), "this sequence has no SEQ_NUM, but others do").label("no SEQ_NUM").help("give every sequence a <SEQ_NUM>, or none (then they are numbered in document order)"));
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
                        .help(help),
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

    fn copy_type(&mut self, seq: &ast::Sequence) -> Option<CopyType> {
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
                .help(help),
            );
        }
        parsed
    }

    fn sequence(
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
    fn mode(&mut self, copy_type: CopyType, seq: &ast::Sequence) -> BaseCopy {
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
                        .help(help),
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
                    .help(help),
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
    fn keep(&mut self, copy_type: CopyType, text: &Text) -> u32 {
        if copy_type == CopyType::Continuous {
            self.diags.push(Diagnostic::error(Code::BadKeep, text.span.clone(), "a Continuous sequence has no KEEP").label("not valid here").help("a continuous copy is one target kept in step; KEEP counts the copies a Point-In-Time sequence keeps"));
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
                .help(help),
            );
            1
        })
    }

    fn schedule(&mut self, copy_type: CopyType, text: &Text) -> Option<ir::Schedule> {
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
                    .help(help),
                );
            })
            .ok()
    }

    fn event(
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
                    .help(help),
            );
            return None;
        };
        // For a continuous copy, "complete" means the initial copy is done: duplex.
        let event = match (copy_type, event) {
            (CopyType::Continuous, Event::OnComplete) => Event::OnDuplex,
            (_, e) => e,
        };
        if seen.contains_key(&event) {
            self.diags.push(Diagnostic::error(Code::DuplicateEvent, text.span.clone(), format!("{event} is handled twice in this sequence")).label("second handler").help(format!(
                "put all actions for {event} in one <EVENTFLAGS>, in the order they should run{}",
                if event == Event::OnDuplex { " (onComplete is onDuplex for a Continuous sequence)" } else { "" }
            )));
            return None;
        }
        seen.insert(event, text.span.clone());
        Some(event)
    }

    fn action(
        &mut self,
        this: u32,
        a: &ast::Action,
        types: &Types,
        contacts: &[ir::Contact],
    ) -> Option<Action> {
        let kinds = usize::from(a.do_cmd.is_some())
            + usize::from(a.notify.is_some())
            + usize::from(a.run.is_some());
        let tag = a.tag.clone();
        if kinds != 1 || (a.to_seq.is_some() && a.do_cmd.is_none()) {
            let message = match (kinds, &a.to_seq) {
                (0, Some(_)) => "TO_SEQ without DO_CMD: nothing to do",
                (0, None) => "this ACTION does nothing",
                _ => "this ACTION does more than one thing",
            };
            self.diags.push(Diagnostic::error(Code::BadAction, tag.clone(), message).label("one action expected").help("an ACTION holds one of: <DO_CMD> (with an optional <TO_SEQ>), <NOTIFY> or <RUN>; write one ACTION for each"));
            return None;
        }
        if let Some(cmd) = &a.do_cmd {
            let target = match &a.to_seq {
                None => this,
                Some(t) => self.target(t, types)?,
            };
            let target_type = (*types.get(&target)?)?;
            let command = Command::parse(&cmd.value);
            return match command.filter(|c| target_type.commands().contains(c)) {
                Some(command) => Some(Action::Command { target, command }),
                None => {
                    let valid: Vec<&str> =
                        target_type.commands().iter().map(|c| c.as_str()).collect();
                    let message = match command {
                        Some(c) => format!(
                            "sequence {target} is {target_type}, which has no `{c}` command"
                        ),
                        None => format!("unknown DO_CMD `{}`", cmd.value),
                    };
                    let help = valid_values_help(&cmd.value, &valid);
                    self.diags.push(
                        Diagnostic::error(Code::BadCommand, cmd.span.clone(), message)
                            .label(format!("not a command of sequence {target}"))
                            .help(help),
                    );
                    None
                }
            };
        }
        if let Some(name) = &a.notify {
            if !contacts.is_empty() && !contacts.iter().any(|c| c.name == name.value) {
                let known: Vec<&str> = contacts.iter().map(|c| c.name.as_str()).collect();
                let help = choices_help(&name.value, &known, "contacts");
                self.diags.push(
                    Diagnostic::error(
                        Code::UnknownContact,
                        name.span.clone(),
                        format!("no CONTACT is named `{}`", name.value),
                    )
                    .label("unknown contact")
                    .help(help),
                );
                return None;
            }
            return Some(Action::Notify {
                contact: name.value.to_string(),
            });
        }
        let run = a.run.as_ref()?;
        let program = self.program(&run.program);
        let timeout_secs = match &run.timeout {
            None => Some(ir::DEFAULT_RUN_TIMEOUT_SECS),
            Some(t) => values::duration(&t.value)
                .map_err(|help| {
                    self.diags.push(
                        Diagnostic::error(
                            Code::BadDuration,
                            t.span.clone(),
                            format!("bad timeout `{}`", t.value),
                        )
                        .label("not a duration")
                        .help(help),
                    );
                })
                .ok(),
        };
        Some(Action::Run {
            program: program?,
            timeout_secs: timeout_secs?,
        })
    }

    fn target(&mut self, t: &Text, types: &Types) -> Option<u32> {
        let valid: Vec<String> = types.keys().map(u32::to_string).collect();
        match values::seq_number(&t.value) {
            Ok(n) if types.contains_key(&n) => Some(n),
            Ok(n) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::UnknownSequence,
                        t.span.clone(),
                        format!("there is no sequence {n}"),
                    )
                    .label("unknown sequence")
                    .help(format!(
                        "TO_SEQ names a sequence by its SEQ_NUM: {}",
                        valid.join(", ")
                    )),
                );
                None
            }
            Err(help) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::BadNumber,
                        t.span.clone(),
                        format!("bad TO_SEQ `{}`", t.value),
                    )
                    .label("not a sequence number")
                    .help(help),
                );
                None
            }
        }
    }

    fn copysets(
        &mut self,
        sets: &[ast::CopySet],
        storage_ids: &[&str],
        storages: &[ir::Storage],
        sequences: usize,
    ) -> Vec<ir::CopySet> {
        let mut seen = HashMap::new();
        // Borrowed keys and FxHash: a large session has hundreds of thousands of
        // volumes, and SipHash was a tenth of the whole check's time.
        let total = sets.iter().map(|s| s.volumes.len()).sum();
        let mut volumes_seen: FxHashSet<(&str, &str)> =
            FxHashSet::with_capacity_and_hasher(total, Default::default());
        let mut out = Vec::new();
        for set in sets {
            let Some(name) = &set.name else { continue };
            let mut ok = self.unique(&mut seen, name, Code::DuplicateCopySet, "copy set");
            if sequences > 0 && set.volumes.len() != sequences + 1 {
                self.diags.push(Diagnostic::error(Code::VolumeCount, name.span.clone(), format!("copy set `{}` has {} volumes; {sequences} sequences need {}", name.value, set.volumes.len(), sequences + 1)).label("wrong number of volumes").help(format!(
                    "sequence i copies volume i to volume i+1, so a chain of {sequences} needs {} VOLUME elements, source first",
                    sequences + 1
                )));
                ok = false;
            }
            let mut volumes = Vec::with_capacity(set.volumes.len());
            for v in &set.volumes {
                let (Some(storage), Some(vname)) = (&v.storage, &v.name) else {
                    ok = false;
                    continue;
                };
                if !storage_ids.is_empty() && !storage_ids.contains(&storage.value.as_ref()) {
                    let help = choices_help(&storage.value, storage_ids, "storages");
                    self.diags.push(
                        Diagnostic::error(
                            Code::UnknownStorage,
                            storage.span.clone(),
                            format!("no STORAGE has id `{}`", storage.value),
                        )
                        .label("unknown storage")
                        .help(help),
                    );
                    ok = false;
                }
                let driver = storages
                    .iter()
                    .find(|s| s.id == storage.value)
                    .map(|s| s.driver);
                if let Some(fault) = driver.and_then(|d| volume_fault(d, &vname.value)) {
                    self.diags.push(
                        Diagnostic::error(
                            Code::BadVolume,
                            vname.span.clone(),
                            format!(
                                "`{}` is not a volume of storage `{}`",
                                vname.value, storage.value
                            ),
                        )
                        .label("bad volume name")
                        .help(fault),
                    );
                    ok = false;
                }
                if !volumes_seen.insert((&storage.value, &vname.value)) {
                    self.diags.push(Diagnostic::error(Code::DuplicateVolume, vname.span.clone(), format!("volume `{}` on `{}` is already used in this session", vname.value, storage.value)).label("used twice").help("a volume can be in one place of one chain only: copying onto a volume that is also a source would destroy data"));
                    ok = false;
                }
                volumes.push(ir::Volume {
                    storage: storage.value.to_string(),
                    name: vname.value.to_string(),
                });
            }
            if ok {
                out.push(ir::CopySet {
                    name: name.value.to_string(),
                    volumes,
                });
            }
        }
        out
    }

    /// What each sequence asks of its storages against what their drivers can do
    /// (on a document whose references are sound: the copy sets are the AST's).
    fn capabilities(
        &mut self,
        s: &ast::Session,
        numbered: &BTreeMap<u32, &ast::Sequence>,
        storages: &[ir::Storage],
        copysets: &[ir::CopySet],
        sequences: &BTreeMap<u32, ir::Sequence>,
    ) {
        let commands: Vec<Vec<Command>> = sequences
            .keys()
            .map(|&n| ir::commands_to(sequences, n))
            .collect();
        let needs: Vec<Needs> = sequences
            .values()
            .zip(&commands)
            .map(|(q, commands)| Needs {
                sequence: q.num,
                copy: q.copy,
                commands,
                keep: q.keep,
            })
            .collect();
        let driver_of = |id: &str| storages.iter().find(|st| st.id == id).map(|st| st.driver);
        for refusal in refusals(driver_of, copysets, &needs) {
            let seq = numbered[&refusal.sequence];
            // The words that ask: the mode (or the type), or the action's command.
            let asked = match &refusal.unable {
                Unable::Command(command) => command_span(s, refusal.sequence, *command),
                Unable::Keep(_) => seq.keep.as_ref().map(|k| k.span.clone()),
                _ => None,
            }
            .or_else(|| seq.characteristics.first().map(|c| c.span.clone()))
            .or_else(|| seq.copy_type.as_ref().map(|t| t.span.clone()))
            .unwrap_or_else(|| seq.span.clone());
            let volume = &s.copysets[refusal.copyset].volumes[refusal.hop];
            let at = volume
                .storage
                .as_ref()
                .map_or(volume.span.clone(), |v| v.span.clone());
            self.diags.push(
                Diagnostic::error(Code::Incapable, asked, refusal.to_string())
                    .label("asked here")
                    .also(
                        at,
                        format!(
                            "copy set `{}` copies from here",
                            copysets[refusal.copyset].name
                        ),
                    )
                    .help(refusal.help()),
            );
        }
    }

    /// A sequence nothing starts never runs: not the first, no SCHEDULE, no `start` action.
    fn warn_unreachable(
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
                self.diags.push(
                    Diagnostic::warning(Code::Unreachable, span, format!("nothing starts sequence {num}"))
                        .label("never started")
                        .help("add a SCHEDULE, or an action <TO_SEQ>N</TO_SEQ><DO_CMD>start</DO_CMD> on an event of another sequence"),
                );
            }
        }
    }
}
