//! Stage 2, check: AST -> IR. Interprets every value, resolves every reference and
//! enforces the language's rules, reporting every fault in one run.

mod action;
mod capability;
mod copyset;
mod sequence;
mod storage;
mod values;

pub use values::format_duration;

use crate::diagnostics::{error_count, Code, Diagnostic};
use crate::ir::Solution;
use crate::source::Span;
use crate::syntax::ast::{self, Text};
use csc_runtime::vocab::{CopyType, Keyword};
use std::collections::{BTreeMap, HashMap};

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
            let help = "a session is a chain of one or more sequences: add <SEQUENCE><TYPE>Continuous</TYPE></SEQUENCE>";
            self.diags.push(
                Diagnostic::error(
                    Code::NoSequence,
                    session_tag.clone(),
                    "the session has no <SEQUENCE>",
                )
                .label("empty session")
                .help(help),
            );
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
}
