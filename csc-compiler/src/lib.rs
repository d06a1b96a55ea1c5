//! cssc, the copy-services solution compiler.
//!
//! The pipeline, one module a stage: [`syntax`] (bytes -> AST with spans), [`check`]
//! (AST -> [`ir`], every fault reported), [`codegen`] (IR -> the Rust module of a
//! solution), [`build`] (that module -> a standalone executable, built by cargo);
//! beside them [`emit`] (IR -> canonical XML, DOT, Mermaid). [`diagnostics`] renders
//! what the stages report.

pub mod build;
pub mod check;
pub mod codegen;
pub mod diagnostics;
pub mod emit;
#[doc(hidden)]
pub mod fuzzing;
pub mod ir;
pub mod source;
pub mod syntax;

use diagnostics::Diagnostic;
use source::SourceFile;

/// A document run through the front end.
pub struct Checked {
    pub source: SourceFile,
    pub diagnostics: Vec<Diagnostic>,
    /// Present when the document has no errors (warnings allowed).
    pub solution: Option<ir::Solution>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        diagnostics::error_count(&self.diagnostics)
    }
}

/// Runs syntax and check over one document's bytes.
pub fn front_end(name: &str, bytes: Vec<u8>) -> Checked {
    let source = match syntax::decode(name, bytes) {
        Ok(source) => source,
        Err(refused) => {
            let (source, d) = *refused;
            return Checked {
                source,
                diagnostics: vec![d],
                solution: None,
            };
        }
    };
    let mut diagnostics = Vec::new();
    let solution = syntax::parse(&source, &mut diagnostics)
        .and_then(|ast| check::check(&ast, &mut diagnostics));
    // Report in document order, whichever stage found what.
    diagnostics.sort_by_key(|d| d.span.start);
    // A fault found by syntax leaves holes the checker skips; never call that valid.
    let solution = solution.filter(|_| diagnostics::error_count(&diagnostics) == 0);
    Checked {
        source,
        diagnostics,
        solution,
    }
}
