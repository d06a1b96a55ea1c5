//! The front end on arbitrary bytes: it must never panic, every diagnostic must point
//! inside the input and render, and whatever it accepts must survive `fmt` unchanged.
#![no_main]

use csc_compiler::diagnostics::Renderer;
use csc_compiler::{emit, front_end};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let checked = front_end("fuzz", data.to_vec());
    let renderer = Renderer::new(false);
    for d in &checked.diagnostics {
        assert!(d.span.start <= d.span.end && d.span.end <= checked.source.text.len());
        renderer.render(&checked.source, d);
    }
    if let Some(solution) = checked.solution {
        let canonical = emit::xml::canonical(&solution);
        let again = front_end("canonical", canonical.clone().into_bytes());
        let reparsed = again.solution.expect("the canonical form is valid");
        assert_eq!(reparsed, solution, "IR changed through fmt");
        // Idempotent: the re-parsed document prints the same canonical form.
        assert_eq!(emit::xml::canonical(&reparsed), canonical);
    }
});
