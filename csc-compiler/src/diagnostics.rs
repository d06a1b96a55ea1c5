//! Diagnostics: stable codes, one span each, help text; rendered for people by miette
//! (source line, caret, colour only on a terminal) and for programs as JSON.
//!
//! miette is used rather than hand-drawn snippets because it already handles wide
//! characters, tabs, multi-line spans and terminal capabilities.

use crate::source::{Position, SourceFile, Span};
use miette::{GraphicalReportHandler, GraphicalTheme, MietteError, SourceCode, SpanContents};
use serde::Serialize;
use std::fmt;

macro_rules! codes {
    ($($variant:ident = $code:literal : $title:literal,)+) => {
        /// Stable diagnostic codes; documented in docs/solution-format.md.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Code { $($variant,)+ }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)+];
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)+ }
            }
            /// One line saying what the code is about.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)+ }
            }
        }
    };
}

codes! {
    NotWellFormed = "E0100": "the document is not well-formed XML",
    WrongRoot = "E0101": "the root element is not SESSION",
    UnknownElement = "E0102": "an element is not valid where it stands",
    UnknownAttribute = "E0103": "an attribute is not valid on its element",
    MissingElement = "E0104": "a required element is missing",
    MissingAttribute = "E0105": "a required attribute is missing",
    DuplicateElement = "E0106": "an element that may appear once appears again",
    UnexpectedText = "E0107": "text stands where only elements are valid",
    UnexpectedChild = "E0108": "an element stands where only text is valid",
    EmptyValue = "E0109": "a value is empty",
    UnreadableInput = "E0110": "the input is not a UTF-8 text of a sane size",
    UnknownType = "E0201": "TYPE is not a base copy type",
    UnknownMode = "E0202": "a mode (CHARACTERISTIC or MODE) is not valid for the sequence's type",
    ConflictingModes = "E0203": "a sequence is given two different modes",
    UnknownCmdFlags = "E0204": "CMD names no command that takes flags",
    UnknownEvent = "E0205": "EVENT is not an event of the sequence's type",
    BadCommand = "E0206": "DO_CMD is not a command of the target sequence's type",
    UnknownSequence = "E0207": "TO_SEQ names no sequence",
    UnknownContact = "E0208": "NOTIFY names no CONTACT",
    UnknownStorage = "E0209": "VOLUME names no STORAGE",
    BadNumber = "E0210": "a number is not a positive whole number in range",
    MixedSeqNum = "E0211": "some sequences have SEQ_NUM and some do not",
    DuplicateSeqNum = "E0212": "two sequences have the same SEQ_NUM",
    SeqNumGap = "E0213": "SEQ_NUM values do not run 1..N",
    DuplicateCopySet = "E0214": "two copy sets have the same name",
    DuplicateStorage = "E0215": "two STORAGE elements have the same id",
    DuplicateContact = "E0216": "two contacts have the same name",
    VolumeCount = "E0217": "a copy set does not have one volume more than there are sequences",
    BadSchedule = "E0218": "SCHEDULE is malformed or on a Continuous sequence",
    BadAction = "E0219": "an ACTION does not do exactly one thing",
    DuplicateEvent = "E0220": "a sequence handles the same event twice",
    BadEndpoint = "E0221": "an address is not one its storage's driver is reached at",
    UnknownDriver = "E0222": "STORAGE names a driver cssc does not have",
    BadContact = "E0223": "a CONTACT has no usable WEBHOOK or COMMAND",
    BadProgram = "E0224": "a program to run is not an absolute path",
    NoSequence = "E0225": "the session has no SEQUENCE",
    DuplicateVolume = "E0226": "a volume appears twice in the session",
    BadDuration = "E0227": "a duration is malformed",
    Incapable = "E0228": "a sequence asks a storage for what its driver cannot do",
    BadVolume = "E0229": "a volume name is not one its storage's driver accepts",
    BadKeep = "E0230": "KEEP is not a count of copies of a Point-In-Time sequence",
    Unreachable = "W0301": "nothing starts a sequence",
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a document, at one span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    /// Said at the caret.
    pub label: String,
    /// What would be valid, a "did you mean", or how to fix it.
    pub help: Option<String>,
    /// Other places that explain this one (the first declaration of a duplicate).
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            span,
            label: String::new(),
            help: None,
            related: Vec::new(),
        }
    }

    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn also(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
}

/// How many of `diagnostics` are errors (warnings do not make a document invalid).
pub fn error_count(diagnostics: &[Diagnostic]) -> usize {
    diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

/// "did you mean X?" for the closest candidate, if one is close enough to be a typo.
pub fn did_you_mean<'a>(
    text: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = text.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Help naming the valid values, led by a "did you mean" when one is close.
pub fn valid_values_help(text: &str, valid: &[&str]) -> String {
    choices_help(text, valid, "valid values")
}

/// Help listing the choices under `label`, led by a "did you mean" when one is close.
pub fn choices_help(text: &str, choices: &[&str], label: &str) -> String {
    let list = choices.join(", ");
    match did_you_mean(text, choices.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? {label}: {list}"),
        None => format!("{label}: {list}"),
    }
}

/// A diagnostic with the file it is about, as JSON tools read it.
#[derive(Serialize)]
pub struct JsonDiagnostic<'a> {
    pub code: Code,
    pub severity: Severity,
    pub message: &'a str,
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub help: Option<&'a str>,
}

impl<'a> JsonDiagnostic<'a> {
    pub fn new(source: &'a SourceFile, d: &'a Diagnostic) -> Self {
        let Position { line, column } = source.position(d.span.start);
        let end = source.position(d.span.end);
        JsonDiagnostic {
            code: d.code,
            severity: d.severity,
            message: &d.message,
            file: &source.name,
            line,
            column,
            end_line: end.line,
            end_column: end.column,
            help: d.help.as_deref(),
        }
    }
}

/// Renders diagnostics for a person: `file:line:col`, the source line, a caret, help.
pub struct Renderer {
    handler: GraphicalReportHandler,
}

impl Renderer {
    pub fn new(colour: bool) -> Self {
        let theme = if colour {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        Renderer {
            handler: GraphicalReportHandler::new_themed(theme).with_width(100),
        }
    }

    pub fn render(&self, source: &SourceFile, d: &Diagnostic) -> String {
        let mut out = String::new();
        let view = View { source, d };
        // Writing into a String cannot fail.
        let _ = self.handler.render_report(&mut out, &view);
        out
    }
}

/// A diagnostic and its source, as miette sees them.
struct View<'a> {
    source: &'a SourceFile,
    d: &'a Diagnostic,
}

impl fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.d.fmt(f)
    }
}

impl fmt::Display for View<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.message)
    }
}

impl std::error::Error for View<'_> {}

impl miette::Diagnostic for View<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.d.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.d.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.d
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let primary = (&self.d.span, &self.d.label);
        let related = self.d.related.iter().map(|(span, label)| (span, label));
        Some(Box::new(std::iter::once(primary).chain(related).map(
            |(span, label)| {
                let label = (!label.is_empty()).then(|| label.clone());
                miette::LabeledSpan::new_with_span(label, span.start..span.end.max(span.start))
            },
        )))
    }
}

/// Context lines come from the line index, so rendering a diagnostic near the end of
/// a large file does not rescan the file from the start.
impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let start = self.position(span.offset());
        let end = self.position(span.offset() + span.len()).line - 1;
        let first = (start.line - 1).saturating_sub(context_lines_before);
        let last = (end + context_lines_after).min(self.line_count() - 1);
        // As miette's own sources do: without context before, the contents start at
        // the span itself, and their column is the span's (the `file:line:col` header).
        let (from, column) = if context_lines_before == 0 {
            (span.offset().min(self.text.len()), start.column - 1)
        } else {
            (self.line_start(first), 0)
        };
        let to = self.line_end(last).max(from);
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            &self.text.as_bytes()[from..to],
            (from, to - from).into(),
            first,
            column,
            last - first + 1,
        )))
    }
}
