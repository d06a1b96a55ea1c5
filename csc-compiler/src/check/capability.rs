//! What each sequence asks of its storages against their drivers' capabilities
//! (E0228), on a document whose references are sound.

use super::Checker;
use crate::diagnostics::{Code, Diagnostic};
use crate::ir::{self};
use crate::source::Span;
use crate::syntax::ast::{self};
use csc_runtime::capability::{refusals, Needs, Unable};
use csc_runtime::vocab::{Command, Keyword};
use std::collections::BTreeMap;

impl Checker<'_> {
    /// What each sequence asks of its storages against what their drivers can do
    /// (on a document whose references are sound: the copy sets are the AST's).
    pub(super) fn capabilities(
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
