//! The session's description as owned data: what the compiler's IR holds of
//! storages, contacts and copy sets, and what a running session's plan holds (the
//! document's, with a run-time file's overrides). One set of types for both, so the
//! compiler and the runtime cannot describe a session two ways; generated code
//! carries the same as static data ([`crate::session`]).

use crate::address::Address;
use crate::vocab::DriverKind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storage {
    pub id: String,
    pub driver: DriverKind,
    /// Where its control endpoint is (qemu: the QMP monitor).
    pub endpoint: Address,
    /// Where other sites reach its volumes (qemu: the NBD server).
    pub data: Option<Address>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    /// An http:// or https:// URL that receives a JSON POST.
    pub webhook: Option<String>,
    /// An absolute path of a program, run with the event in its environment.
    pub command: Option<String>,
    /// The key that signs each webhook body (from the run-time file only: a secret
    /// does not belong in a document kept in a repository).
    pub secret: Option<String>,
}

/// Why `url` cannot be a webhook, if it cannot.
pub fn webhook_fault(url: &str) -> Option<&'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => None,
        _ => Some("a webhook is an http:// or https:// URL: write https://HOST[:PORT]/PATH (https is verified against the system's CA bundle)"),
    }
}

/// Escapes text for XML element content or (with `attribute`) a double-quoted value.
/// Line breaks and tabs in attributes become character references so a parser's
/// attribute-value normalisation gives them back unchanged.
pub fn escape_xml(text: &str, attribute: bool) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' | '\r' | '\t' if attribute => {
                let _ = write!(out, "&#{};", c as u32);
            }
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// The COPYSET elements of the canonical document (inside SESSION, two-space
/// indentation). One function for the compiler's `cssc fmt` and a compiled
/// solution's `BIN solution`, which carries its copy sets as data, not as text.
pub fn copysets_xml(copysets: &[CopySet]) -> String {
    let mut out = String::new();
    for set in copysets {
        out.push_str(&format!(
            "  <COPYSET name=\"{}\">\n",
            escape_xml(&set.name, true)
        ));
        for v in &set.volumes {
            out.push_str(&format!(
                "    <VOLUME storage=\"{}\">{}</VOLUME>\n",
                escape_xml(&v.storage, true),
                escape_xml(&v.name, false)
            ));
        }
        out.push_str("  </COPYSET>\n");
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySet {
    pub name: String,
    /// Volume i (from 0) is the source of sequence i+1 and the target of sequence i.
    pub volumes: Vec<Volume>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Volume {
    pub storage: String,
    pub name: String,
}

impl std::fmt::Display for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.name, self.storage)
    }
}
