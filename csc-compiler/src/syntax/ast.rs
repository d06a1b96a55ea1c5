//! The document as written: every element the language knows, with its raw (trimmed)
//! text and its byte span. Nothing is resolved here; the checker does that.

use crate::source::Span;
use std::borrow::Cow;

/// A value and where it stands in the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// Trimmed text content or an attribute value, borrowed from the input unless
/// entity references had to be expanded (a large session has a million values).
pub type Text<'i> = Spanned<Cow<'i, str>>;

/// `None` where the document lacks a required part: the parser has reported it already.
#[derive(Debug, Default)]
pub struct Session<'i> {
    pub span: Span,
    /// The element's name in its start tag.
    pub tag: Span,
    pub name: Option<Text<'i>>,
    pub description: Option<Text<'i>>,
    pub storages: Vec<Storage<'i>>,
    pub contacts: Vec<Contact<'i>>,
    pub copysets: Vec<CopySet<'i>>,
    pub sequences: Vec<Sequence<'i>>,
}

#[derive(Debug, Default)]
pub struct Storage<'i> {
    pub span: Span,
    pub id: Option<Text<'i>>,
    pub driver: Option<Text<'i>>,
    pub endpoint: Option<Text<'i>>,
    pub data: Option<Text<'i>>,
}

#[derive(Debug, Default)]
pub struct Contact<'i> {
    pub span: Span,
    pub name: Option<Text<'i>>,
    pub webhook: Option<Text<'i>>,
    pub command: Option<Text<'i>>,
}

#[derive(Debug, Default)]
pub struct CopySet<'i> {
    pub span: Span,
    pub name: Option<Text<'i>>,
    pub volumes: Vec<Volume<'i>>,
}

#[derive(Debug, Default)]
pub struct Volume<'i> {
    pub span: Span,
    pub storage: Option<Text<'i>>,
    pub name: Option<Text<'i>>,
}

#[derive(Debug, Default)]
pub struct Sequence<'i> {
    pub span: Span,
    /// The element's name in its start tag.
    pub tag: Span,
    pub copy_type: Option<Text<'i>>,
    pub seq_num: Option<Text<'i>>,
    pub characteristics: Vec<Text<'i>>,
    pub schedule: Option<Text<'i>>,
    pub keep: Option<Text<'i>>,
    pub cmdflags: Vec<CmdFlags<'i>>,
    pub eventflags: Vec<EventFlags<'i>>,
}

#[derive(Debug, Default)]
pub struct CmdFlags<'i> {
    pub span: Span,
    pub cmd: Option<Text<'i>>,
    pub mode: Option<Text<'i>>,
}

#[derive(Debug, Default)]
pub struct EventFlags<'i> {
    pub span: Span,
    pub event: Option<Text<'i>>,
    pub actions: Vec<Action<'i>>,
}

#[derive(Debug, Default)]
pub struct Action<'i> {
    pub span: Span,
    /// The element's name in its start tag.
    pub tag: Span,
    pub to_seq: Option<Text<'i>>,
    pub do_cmd: Option<Text<'i>>,
    pub notify: Option<Text<'i>>,
    pub run: Option<Run<'i>>,
}

#[derive(Debug)]
pub struct Run<'i> {
    pub program: Text<'i>,
    pub timeout: Option<Text<'i>>,
}
