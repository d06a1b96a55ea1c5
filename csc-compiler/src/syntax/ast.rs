//! The document as written: every element the language knows, with its raw (trimmed)
//! text and its byte span. Nothing is resolved here; the checker does that.

use crate::source::Span;

/// A value and where it stands in the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// Trimmed text content or an attribute value.
pub type Text = Spanned<String>;

/// `None` where the document lacks a required part: the parser has reported it already.
#[derive(Debug, Default)]
pub struct Session {
    pub span: Span,
    pub name: Option<Text>,
    pub description: Option<Text>,
    pub storages: Vec<Storage>,
    pub contacts: Vec<Contact>,
    pub copysets: Vec<CopySet>,
    pub sequences: Vec<Sequence>,
}

#[derive(Debug, Default)]
pub struct Storage {
    pub span: Span,
    pub id: Option<Text>,
    pub driver: Option<Text>,
    pub endpoint: Option<Text>,
    pub data: Option<Text>,
}

#[derive(Debug, Default)]
pub struct Contact {
    pub span: Span,
    pub name: Option<Text>,
    pub webhook: Option<Text>,
    pub command: Option<Text>,
}

#[derive(Debug, Default)]
pub struct CopySet {
    pub span: Span,
    pub name: Option<Text>,
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Default)]
pub struct Volume {
    pub span: Span,
    pub storage: Option<Text>,
    pub name: Option<Text>,
}

#[derive(Debug, Default)]
pub struct Sequence {
    pub span: Span,
    pub copy_type: Option<Text>,
    pub seq_num: Option<Text>,
    pub characteristics: Vec<Text>,
    pub schedule: Option<Text>,
    pub cmdflags: Vec<CmdFlags>,
    pub eventflags: Vec<EventFlags>,
}

#[derive(Debug, Default)]
pub struct CmdFlags {
    pub span: Span,
    pub cmd: Option<Text>,
    pub mode: Option<Text>,
}

#[derive(Debug, Default)]
pub struct EventFlags {
    pub span: Span,
    pub event: Option<Text>,
    pub actions: Vec<Action>,
}

#[derive(Debug, Default)]
pub struct Action {
    pub span: Span,
    pub to_seq: Option<Text>,
    pub do_cmd: Option<Text>,
    pub notify: Option<Text>,
    pub run: Option<Run>,
}

#[derive(Debug)]
pub struct Run {
    pub program: Text,
    pub timeout: Option<Text>,
}
