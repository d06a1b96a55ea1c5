//! What must hold for any input, whatever its bytes: the front end does not panic,
//! every diagnostic points inside the input and renders, and whatever it accepts
//! survives `fmt` unchanged (the re-parsed document has the same IR, and prints the
//! same canonical form). The fuzz target (`csc-compiler/fuzz`, cargo-fuzz) and the
//! stable-toolchain smoke test (`tests/fuzz_smoke.rs`) both check it here.

use crate::diagnostics::Renderer;
use crate::{emit, front_end};

/// Panics when a property does not hold for `data`.
pub fn check(data: &[u8]) {
    let checked = front_end("fuzz", data.to_vec());
    let renderer = Renderer::new(false);
    for d in &checked.diagnostics {
        assert!(
            d.span.start <= d.span.end && d.span.end <= checked.source.text.len(),
            "a span outside the input: {d:?}"
        );
        renderer.render(&checked.source, d);
    }
    if let Some(solution) = checked.solution {
        let canonical = emit::xml::canonical(&solution);
        let again = front_end("canonical", canonical.clone().into_bytes());
        let reparsed = again.solution.expect("the canonical form is valid");
        assert_eq!(reparsed, solution, "IR changed through fmt");
        assert_eq!(
            emit::xml::canonical(&reparsed),
            canonical,
            "fmt is not idempotent"
        );
    }
}
