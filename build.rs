//! Build-time check of the solution library: every solutions/*.xml must be valid, or
//! `cargo build` fails with the same diagnostics `cssc check` prints.

use csc_compiler::diagnostics::Renderer;
use std::path::Path;

fn main() {
    let dir = Path::new("solutions");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("solutions/ is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    let renderer = Renderer::new(false);
    let mut failed = false;
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let checked = csc_compiler::front_end(&path.display().to_string(), bytes);
        for d in &checked.diagnostics {
            eprint!("{}", renderer.render(&checked.source, d));
        }
        failed |= checked.solution.is_none();
    }
    if failed {
        eprintln!("error: the solution library has invalid documents (see above)");
        std::process::exit(1);
    }
}
