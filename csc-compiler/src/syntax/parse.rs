//! roxmltree document -> AST. Reports what is structurally wrong (unknown or missing
//! elements and attributes, text where elements belong, repeats) and goes on, so one
//! run reports every fault. Values are not interpreted here.

use super::ast::{self, Spanned, Text};
use crate::diagnostics::{choices_help, did_you_mean, Code, Diagnostic};
use crate::source::{Position, SourceFile, Span};
use roxmltree::{Node, NodeType, StringStorage};
use std::borrow::Cow;

/// Where each element may stand: (element, parent). The grammar's single source for
/// "what is valid here" and "it belongs inside".
const PLACES: &[(&str, &str)] = &[
    ("DESCRIPTION", "SESSION"),
    ("STORAGE", "SESSION"),
    ("CONTACT", "SESSION"),
    ("COPYSET", "SESSION"),
    ("SEQUENCE", "SESSION"),
    ("ENDPOINT", "STORAGE"),
    ("DATA", "STORAGE"),
    ("WEBHOOK", "CONTACT"),
    ("COMMAND", "CONTACT"),
    ("VOLUME", "COPYSET"),
    ("TYPE", "SEQUENCE"),
    ("SEQ_NUM", "SEQUENCE"),
    ("CHARACTERISTIC", "SEQUENCE"),
    ("SCHEDULE", "SEQUENCE"),
    ("KEEP", "SEQUENCE"),
    ("CMDFLAGS", "SEQUENCE"),
    ("EVENTFLAGS", "SEQUENCE"),
    ("CMD", "CMDFLAGS"),
    ("MODE", "CMDFLAGS"),
    ("EVENT", "EVENTFLAGS"),
    ("ACTION", "EVENTFLAGS"),
    ("TO_SEQ", "ACTION"),
    ("DO_CMD", "ACTION"),
    ("NOTIFY", "ACTION"),
    ("RUN", "ACTION"),
];

/// Where an element's name stands in its start tag (`SEQUENCE` of `<SEQUENCE>`): the
/// span a diagnostic about the element as a whole points at.
fn tag(node: Node<'_, '_>) -> Span {
    let start = node.range().start + 1;
    start..start + node.tag_name().name().len()
}

/// The elements valid inside `parent`, in grammar order.
fn valid_in(parent: &str) -> Vec<&'static str> {
    PLACES
        .iter()
        .filter(|(_, p)| *p == parent)
        .map(|(e, _)| *e)
        .collect()
}

/// Inputs past these limits are refused before parsing, so hostile input stays cheap.
pub const MAX_BYTES: usize = 64 << 20;
pub const MAX_NODES: u32 = 8_000_000;

/// Parses `source`; `None` when it is not a SESSION document at all.
pub fn parse<'i>(source: &'i SourceFile, diags: &mut Vec<Diagnostic>) -> Option<ast::Session<'i>> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..Default::default()
    };
    let doc = match roxmltree::Document::parse_with_options(&source.text, options) {
        Ok(doc) => doc,
        Err(e) => {
            diags.push(xml_error(source, &e));
            return None;
        }
    };
    let root = doc.root_element();
    if root.tag_name().name() != "SESSION" {
        diags.push(
            Diagnostic::error(
                Code::WrongRoot,
                name_span(root),
                format!("the root element is <{}>, not <SESSION>", root.tag_name().name()),
            )
            .label("expected <SESSION>")
            .help("a solution document is one <SESSION> element holding STORAGE, CONTACT, COPYSET and SEQUENCE elements"),
        );
        return None;
    }
    Some(Parser { diags }.session(root))
}

fn xml_error(source: &SourceFile, e: &roxmltree::Error) -> Diagnostic {
    let pos = e.pos();
    let at = source.offset(Position {
        line: pos.row as usize,
        column: pos.col as usize,
    });
    let full = e.to_string();
    let message = full
        .rsplit_once(" at ")
        .map_or(full.as_str(), |(m, _)| m)
        .to_string();
    let help = match e {
        roxmltree::Error::UnexpectedCloseTag(expected, actual, _) => format!(
            "<{expected}> is still open here; close it with </{expected}> before </{actual}> (a closing tag starts with `</`)"
        ),
        roxmltree::Error::DtdDetected => {
            "document type declarations are refused: entity expansion is a denial-of-service risk, and the language needs none".into()
        }
        roxmltree::Error::NodesLimitReached => format!(
            "a solution document may hold at most {MAX_NODES} XML nodes"
        ),
        roxmltree::Error::InvalidChar(..) | roxmltree::Error::InvalidChar2(..) => {
            "element names have no spaces: write <DO_CMD>, not <DO CMD>; attribute values are quoted".into()
        }
        roxmltree::Error::NoRootNode => "the document is empty: it needs a <SESSION> element".into(),
        _ => "fix the XML at this position; nothing after it was checked".into(),
    };
    Diagnostic::error(
        Code::NotWellFormed,
        at..at,
        format!("not well-formed XML: {message}"),
    )
    .label("here")
    .help(help)
}

/// The span of an element's name in its start tag.
fn name_span(node: Node) -> Span {
    let start = node.range().start + 1;
    start..start + node.tag_name().name().len()
}

struct Parser<'d> {
    diags: &'d mut Vec<Diagnostic>,
}

/// The elements of a container, each with its grammar name.
type Children<'a, 'i> = Vec<(&'static str, Node<'a, 'i>)>;

impl Parser<'_> {
    fn session<'i>(&mut self, node: Node<'_, 'i>) -> ast::Session<'i> {
        let [name] = self.attributes(node, ["name"]);
        let mut s = ast::Session {
            span: node.range(),
            tag: tag(node),
            name,
            ..Default::default()
        };
        for (tag, child) in self.children(node) {
            match tag {
                "DESCRIPTION" => self.once(&mut s.description, child),
                "STORAGE" => s.storages.push(self.storage(child)),
                "CONTACT" => s.contacts.push(self.contact(child)),
                "COPYSET" => s.copysets.push(self.copyset(child)),
                _ => s.sequences.push(self.sequence(child)),
            }
        }
        s
    }

    fn storage<'i>(&mut self, node: Node<'_, 'i>) -> ast::Storage<'i> {
        let [id, driver] = self.attributes(node, ["id", "driver"]);
        self.require_attribute(node, "id", &id);
        let mut s = ast::Storage {
            span: node.range(),
            id,
            driver,
            ..Default::default()
        };
        let children = self.children(node);
        for &(tag, child) in &children {
            match tag {
                "ENDPOINT" => self.once(&mut s.endpoint, child),
                _ => self.once(&mut s.data, child),
            }
        }
        self.require(node, &children, "ENDPOINT");
        s
    }

    fn contact<'i>(&mut self, node: Node<'_, 'i>) -> ast::Contact<'i> {
        let [name] = self.attributes(node, ["name"]);
        self.require_attribute(node, "name", &name);
        let mut c = ast::Contact {
            span: node.range(),
            name,
            ..Default::default()
        };
        for (tag, child) in self.children(node) {
            match tag {
                "WEBHOOK" => self.once(&mut c.webhook, child),
                _ => self.once(&mut c.command, child),
            }
        }
        c
    }

    fn copyset<'i>(&mut self, node: Node<'_, 'i>) -> ast::CopySet<'i> {
        let [name] = self.attributes(node, ["name"]);
        self.require_attribute(node, "name", &name);
        let mut c = ast::CopySet {
            span: node.range(),
            name,
            ..Default::default()
        };
        for (_, child) in self.children(node) {
            let (name, [storage]) = self.text_with(child, ["storage"]);
            self.require_attribute(child, "storage", &storage);
            c.volumes.push(ast::Volume {
                span: child.range(),
                storage,
                name,
            });
        }
        c
    }

    fn sequence<'i>(&mut self, node: Node<'_, 'i>) -> ast::Sequence<'i> {
        self.attributes(node, []);
        let mut s = ast::Sequence {
            span: node.range(),
            tag: tag(node),
            ..Default::default()
        };
        let children = self.children(node);
        for &(tag, child) in &children {
            match tag {
                "TYPE" => self.once(&mut s.copy_type, child),
                "SEQ_NUM" => self.once(&mut s.seq_num, child),
                "CHARACTERISTIC" => s.characteristics.extend(self.text(child)),
                "SCHEDULE" => self.once(&mut s.schedule, child),
                "KEEP" => self.once(&mut s.keep, child),
                "CMDFLAGS" => s.cmdflags.push(self.cmdflags(child)),
                _ => s.eventflags.push(self.eventflags(child)),
            }
        }
        self.require(node, &children, "TYPE");
        s
    }

    fn cmdflags<'i>(&mut self, node: Node<'_, 'i>) -> ast::CmdFlags<'i> {
        self.attributes(node, []);
        let mut c = ast::CmdFlags {
            span: node.range(),
            ..Default::default()
        };
        let children = self.children(node);
        for &(tag, child) in &children {
            match tag {
                "CMD" => self.once(&mut c.cmd, child),
                _ => self.once(&mut c.mode, child),
            }
        }
        self.require(node, &children, "CMD");
        c
    }

    fn eventflags<'i>(&mut self, node: Node<'_, 'i>) -> ast::EventFlags<'i> {
        self.attributes(node, []);
        let mut e = ast::EventFlags {
            span: node.range(),
            ..Default::default()
        };
        let children = self.children(node);
        for &(tag, child) in &children {
            match tag {
                "EVENT" => self.once(&mut e.event, child),
                _ => e.actions.push(self.action(child)),
            }
        }
        self.require(node, &children, "EVENT");
        e
    }

    fn action<'i>(&mut self, node: Node<'_, 'i>) -> ast::Action<'i> {
        self.attributes(node, []);
        let mut a = ast::Action {
            span: node.range(),
            tag: tag(node),
            ..Default::default()
        };
        for (tag, child) in self.children(node) {
            match tag {
                "TO_SEQ" => self.once(&mut a.to_seq, child),
                "DO_CMD" => self.once(&mut a.do_cmd, child),
                "NOTIFY" => self.once(&mut a.notify, child),
                _ => {
                    let (program, [timeout]) = self.text_with(child, ["timeout"]);
                    if a.run.is_some() {
                        self.duplicate(child);
                    } else if let Some(program) = program {
                        a.run = Some(ast::Run { program, timeout });
                    }
                }
            }
        }
        a
    }

    /// The values of the attributes `names`; any other attribute is reported.
    fn attributes<'i, const N: usize>(
        &mut self,
        node: Node<'_, 'i>,
        names: [&str; N],
    ) -> [Option<Text<'i>>; N] {
        let mut values = [(); N].map(|_| None);
        for attr in node.attributes() {
            match names.iter().position(|&n| n == attr.name()) {
                Some(i) => {
                    values[i] = Some(Spanned {
                        value: trimmed(attr.value_storage()),
                        span: attr.range_value(),
                    })
                }
                None => {
                    let help = if names.is_empty() {
                        format!("<{}> takes no attributes", node.tag_name().name())
                    } else {
                        choices_help(attr.name(), &names, "valid attributes")
                    };
                    self.diags.push(
                        Diagnostic::error(
                            Code::UnknownAttribute,
                            attr.range_qname(),
                            format!(
                                "unknown attribute `{}` on <{}>",
                                attr.name(),
                                node.tag_name().name()
                            ),
                        )
                        .label("not valid here")
                        .help(help),
                    )
                }
            }
        }
        values
    }

    fn require_attribute(&mut self, node: Node, name: &str, value: &Option<Text<'_>>) {
        if value.is_none() {
            let tag = node.tag_name().name();
            self.diags.push(
                Diagnostic::error(
                    Code::MissingAttribute,
                    name_span(node),
                    format!("<{tag}> needs a `{name}` attribute"),
                )
                .label(format!("no `{name}` here"))
                .help(format!("write <{tag} {name}=\"...\">")),
            );
        }
    }

    /// The element children of a container, by grammar name. Unknown elements and
    /// stray text are reported and skipped (not descended into).
    fn children<'a, 'i>(&mut self, node: Node<'a, 'i>) -> Children<'a, 'i> {
        let parent = node.tag_name().name();
        let mut out = Vec::new();
        for child in node.children() {
            match child.node_type() {
                NodeType::Element => {
                    let name = child.tag_name().name();
                    match PLACES.iter().find(|&&(e, p)| e == name && p == parent) {
                        Some(&(tag, _)) => out.push((tag, child)),
                        None => self.unknown_element(parent, child),
                    }
                }
                NodeType::Text => {
                    if let Some(span) = trimmed_span(child) {
                        self.diags.push(
                            Diagnostic::error(
                                Code::UnexpectedText,
                                span,
                                format!("text inside <{parent}>, which holds only elements"),
                            )
                            .label("stray text")
                            .help(format!(
                                "remove the text or put it in an element; valid in <{parent}>: {}",
                                valid_in(parent).join(", ")
                            )),
                        );
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn unknown_element(&mut self, parent: &str, child: Node) {
        let name = child.tag_name().name();
        let valid = valid_in(parent);
        let home = PLACES.iter().find(|(e, _)| *e == name).map(|(_, p)| *p);
        let list = valid.join(", ");
        let help = if let Some(home) = home {
            format!("<{name}> belongs inside <{home}>; valid in <{parent}>: {list}")
        } else if let Some(best) = did_you_mean(name, valid.iter().copied()) {
            format!("did you mean <{best}>? valid in <{parent}>: {list}")
        } else if valid.is_empty() {
            format!("<{parent}> holds only text")
        } else {
            format!("valid in <{parent}>: {list}")
        };
        self.diags.push(
            Diagnostic::error(
                Code::UnknownElement,
                name_span(child),
                format!("<{name}> is not valid inside <{parent}>"),
            )
            .label("unknown here")
            .help(help),
        );
    }

    /// Reports a required element missing from `children`.
    fn require(&mut self, node: Node, children: &Children, tag: &str) {
        if !children.iter().any(|(t, _)| *t == tag) {
            let parent = node.tag_name().name();
            self.diags.push(
                Diagnostic::error(
                    Code::MissingElement,
                    name_span(node),
                    format!("<{parent}> has no <{tag}>"),
                )
                .label(format!("<{tag}> missing"))
                .help(format!("add <{tag}>...</{tag}> inside this <{parent}>")),
            );
        }
    }

    /// Fills a once-only text slot, reporting a repeat.
    fn once<'i>(&mut self, slot: &mut Option<Text<'i>>, child: Node<'_, 'i>) {
        let value = self.text(child);
        if slot.is_some() {
            self.duplicate(child);
        } else {
            *slot = value;
        }
    }

    fn duplicate(&mut self, child: Node) {
        let name = child.tag_name().name();
        self.diags.push(
            Diagnostic::error(
                Code::DuplicateElement,
                name_span(child),
                format!("a second <{name}> here"),
            )
            .label("repeated")
            .help(format!("<{name}> may appear once here; remove one of them")),
        );
    }

    /// The trimmed text of a text-only element; `None` (reported) when it is empty
    /// or holds elements. Borrowed from the input when it is one plain text node.
    fn text<'i>(&mut self, node: Node<'_, 'i>) -> Option<Text<'i>> {
        self.text_with(node, []).0
    }

    /// The text of a text-only element and the values of its attributes `names`
    /// (any other attribute is reported).
    fn text_with<'i, const N: usize>(
        &mut self,
        node: Node<'_, 'i>,
        names: [&str; N],
    ) -> (Option<Text<'i>>, [Option<Text<'i>>; N]) {
        let attributes = self.attributes(node, names);
        (self.text_only(node), attributes)
    }

    fn text_only<'i>(&mut self, node: Node<'_, 'i>) -> Option<Text<'i>> {
        let name = node.tag_name().name();
        // Usually one text node, borrowed; comments inside the value split it.
        let mut value: Option<Cow<'i, str>> = None;
        let mut span: Option<Span> = None;
        for child in node.children() {
            match child.node_type() {
                NodeType::Text => {
                    let Some(piece) = child.text_storage() else {
                        continue;
                    };
                    value = Some(match value {
                        None => trimmed(piece),
                        Some(before) => Cow::Owned(
                            format!("{before}{}", piece.as_str())
                                .trim_ascii()
                                .to_string(),
                        ),
                    });
                    if let Some(s) = trimmed_span(child) {
                        span = Some(span.map_or(s.clone(), |old| old.start..s.end));
                    }
                }
                NodeType::Element => {
                    self.diags.push(
                        Diagnostic::error(
                            Code::UnexpectedChild,
                            name_span(child),
                            format!(
                                "<{}> inside <{name}>, which holds only text",
                                child.tag_name().name()
                            ),
                        )
                        .label("not valid here")
                        .help(format!("write the value as text: <{name}>value</{name}>")),
                    );
                    return None;
                }
                _ => {}
            }
        }
        let value = value.unwrap_or_default();
        match span {
            Some(span) if !value.is_empty() => Some(Spanned { value, span }),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        Code::EmptyValue,
                        name_span(node),
                        format!("<{name}> is empty"),
                    )
                    .label("no value")
                    .help(format!("write a value: <{name}>value</{name}>")),
                );
                None
            }
        }
    }
}

/// Trimmed text that stays borrowed from the input where roxmltree could borrow it.
fn trimmed<'i>(storage: &StringStorage<'i>) -> Cow<'i, str> {
    match storage {
        StringStorage::Borrowed(text) => Cow::Borrowed(text.trim_ascii()),
        StringStorage::Owned(text) => Cow::Owned(text.trim_ascii().to_string()),
    }
}

/// The span of a text node without its surrounding white space; `None` if blank.
/// XML white space is ASCII (space, tab, CR, LF), so ASCII trimming is exact.
fn trimmed_span(text_node: Node) -> Option<Span> {
    let raw = text_node.text().unwrap_or_default();
    let start_trimmed = raw.trim_ascii_start();
    if start_trimmed.is_empty() {
        return None;
    }
    let lead = raw.len() - start_trimmed.len();
    let trail = start_trimmed.len() - start_trimmed.trim_ascii_end().len();
    let range = text_node.range();
    // Entity references make the source longer than the text; clamp to the node.
    let start = (range.start + lead).min(range.end);
    Some(start..range.end.saturating_sub(trail).max(start))
}
