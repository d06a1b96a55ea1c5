//! The canonical XML form ([0035]: what was deserialised serialises back): fixed
//! element order and two-space indentation, canonical keyword spelling, explicit
//! SEQ_NUM, TO_SEQ, mode and RUN timeout; comments are not kept.

use crate::check::format_duration;
use crate::ir::{Action, Schedule, Solution};
use csc_runtime::model::copysets_xml;
use csc_runtime::vocab::Keyword;

pub fn canonical(s: &Solution) -> String {
    let (head, tail) = canonical_around_copysets(s);
    format!("{head}{}{tail}", copysets_xml(&s.copysets))
}

/// The canonical document before its COPYSET elements and after them: a compiled
/// solution carries these two texts and its copy sets as data.
pub fn canonical_around_copysets(s: &Solution) -> (String, String) {
    let mut w = Writer::default();
    w.line("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    match &s.name {
        Some(name) => w.open(&format!("SESSION name=\"{}\"", escape(name, true))),
        None => w.open("SESSION"),
    }
    if let Some(d) = &s.description {
        w.leaf("DESCRIPTION", d);
    }
    for st in &s.storages {
        w.open(&format!(
            "STORAGE id=\"{}\" driver=\"{}\"",
            escape(&st.id, true),
            st.driver
        ));
        w.leaf("ENDPOINT", &st.endpoint.to_string());
        if let Some(data) = &st.data {
            w.leaf("DATA", &data.to_string());
        }
        w.close("STORAGE");
    }
    for c in &s.contacts {
        w.open(&format!("CONTACT name=\"{}\"", escape(&c.name, true)));
        if let Some(hook) = &c.webhook {
            w.leaf("WEBHOOK", hook);
        }
        if let Some(cmd) = &c.command {
            w.leaf("COMMAND", cmd);
        }
        w.close("CONTACT");
    }
    let head = std::mem::take(&mut w.out);
    for seq in s.sequences.values() {
        w.open("SEQUENCE");
        w.leaf("TYPE", seq.copy.copy_type().as_str());
        w.leaf("SEQ_NUM", &seq.num.to_string());
        w.leaf("CHARACTERISTIC", seq.copy.mode_name());
        if let Some(schedule) = &seq.schedule {
            w.leaf(
                "SCHEDULE",
                &match schedule {
                    Schedule::Every { seconds } => format!("every {}", format_duration(*seconds)),
                    Schedule::Daily { hour, minute } => format!("daily {hour:02}:{minute:02}"),
                },
            );
        }
        if seq.keep != 1 {
            w.leaf("KEEP", &seq.keep.to_string());
        }
        for (event, actions) in &seq.events {
            w.open("EVENTFLAGS");
            w.leaf("EVENT", event.as_str());
            for action in actions {
                w.open("ACTION");
                match action {
                    Action::Command { target, command } => {
                        w.leaf("TO_SEQ", &target.to_string());
                        w.leaf("DO_CMD", command.as_str());
                    }
                    Action::Notify { contact } => w.leaf("NOTIFY", contact),
                    Action::Run {
                        program,
                        timeout_secs,
                    } => w.line(&format!(
                        "<RUN timeout=\"{}\">{}</RUN>",
                        format_duration(*timeout_secs),
                        escape(program, false)
                    )),
                }
                w.close("ACTION");
            }
            w.close("EVENTFLAGS");
        }
        w.close("SEQUENCE");
    }
    w.close("SESSION");
    (head, w.out)
}

/// Escapes text for element content or (with `attribute`) a double-quoted value.
pub use csc_runtime::model::escape_xml as escape;

#[derive(Default)]
struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    fn line(&mut self, text: &str) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn open(&mut self, tag: &str) {
        self.line(&format!("<{tag}>"));
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth -= 1;
        self.line(&format!("</{name}>"));
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.line(&format!("<{name}>{}</{name}>", escape(text, false)));
    }
}
