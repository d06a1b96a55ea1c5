//! Stage 1, syntax: bytes -> text -> roxmltree -> AST with byte spans.

pub mod ast;
mod parse;

pub use parse::{parse, MAX_BYTES, MAX_NODES};

use crate::diagnostics::{Code, Diagnostic};
use crate::source::SourceFile;

/// Turns raw input into a source file, refusing what is too large or not UTF-8. On
/// refusal the file holds a lossy copy of the text, so the fault can still be shown.
pub fn decode(name: &str, bytes: Vec<u8>) -> Result<SourceFile, Box<(SourceFile, Diagnostic)>> {
    if bytes.len() > MAX_BYTES {
        let source = SourceFile::new(name, String::new());
        let d = Diagnostic::error(
            Code::UnreadableInput,
            0..0,
            format!(
                "the input is {} bytes; the limit is {MAX_BYTES}",
                bytes.len()
            ),
        )
        .help("a solution document is a few megabytes at most; is this the right file?");
        return Err(Box::new((source, d)));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(name, text)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let source = SourceFile::new(name, String::from_utf8_lossy(e.as_bytes()).into_owned());
            let d = Diagnostic::error(Code::UnreadableInput, at..at, "the input is not UTF-8 text")
                .label("invalid byte")
                .help("save the document as UTF-8; binary files are not solution documents");
            Err(Box::new((source, d)))
        }
    }
}
