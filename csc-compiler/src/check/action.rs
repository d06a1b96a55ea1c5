//! ACTION: exactly one thing to do, its TO_SEQ, its command for the target's type.

use super::{values, Checker, Types};
use crate::diagnostics::{choices_help, valid_values_help, Code, Diagnostic};
use crate::ir::{self, Action};
use crate::syntax::ast::{self, Text};
use csc_runtime::vocab::{Command, Keyword};

impl Checker<'_> {
    pub(super) fn action(
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
            let help = "an ACTION holds one of: <DO_CMD> (with an optional <TO_SEQ>), <NOTIFY> or <RUN>; write one ACTION for each";
            self.diags.push(
                Diagnostic::error(Code::BadAction, tag.clone(), message)
                    .label("one action expected")
                    .help(help.to_string()),
            );
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
                            .help(help.to_string()),
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
                    .help(help.to_string()),
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
                        .help(help.to_string()),
                    );
                })
                .ok(),
        };
        Some(Action::Run {
            program: program?,
            timeout_secs: timeout_secs?,
        })
    }

    pub(super) fn target(&mut self, t: &Text, types: &Types) -> Option<u32> {
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
                    .help(help.to_string()),
                );
                None
            }
        }
    }
}
