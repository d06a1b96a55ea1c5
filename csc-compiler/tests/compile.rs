//! `cssc compile` end to end: a standalone executable per solution, built from any
//! directory by a copy of cssc outside the checkout, whose CLI gives the document back,
//! simulates, draws and names its version.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A scratch directory outside the repository, with a copy of the cssc binary in it:
/// compiling from there proves the runtime's source is carried, not found in the checkout.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cssc-compile-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::copy(env!("CARGO_BIN_EXE_cssc"), dir.join("cssc")).expect("copy cssc");
        dir
    })
}

fn cssc(args: &[&str]) -> Output {
    Command::new(scratch().join("cssc"))
        .args(args)
        .current_dir(scratch())
        // One cache for the whole test run: the runtime is built once.
        .env(
            "CSSC_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("cssc-cache"),
        )
        .output()
        .expect("run cssc")
}

fn repo(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Compiles `doc` to an executable in the scratch directory.
fn compile(doc: &str, name: &str) -> PathBuf {
    let out = cssc(&["compile", doc, "-o", name]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "compile failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    scratch().join(name)
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .output()
        .expect("run compiled solution")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

#[test]
fn cppc_compiles_simulates_and_gives_its_document_back() {
    let doc = repo("solutions/cppc.xml");
    let bin = compile(&doc, "cppc-bin");

    let sim = run(&bin, &["simulate", "--event", "1:onError"]);
    assert!(sim.status.success());
    let text = stdout(&sim);
    let freeze = text.find("command: freeze sequence 1").expect(&text);
    let start = text.find("command: start sequence 2").expect(&text);
    assert!(
        freeze < start,
        "freeze comes before the start of sequence 2:\n{text}"
    );
    assert!(text.contains("sequence 1: Idle -> Failed"), "{text}");

    let canonical = cssc(&["fmt", &doc]);
    assert!(canonical.status.success());
    assert_eq!(
        run(&bin, &["solution"]).stdout,
        canonical.stdout,
        "solution is byte-identical to cssc fmt"
    );

    let version = stdout(&run(&bin, &["--version"]));
    assert!(version.starts_with("cppc (solution "), "{version}");
    assert!(
        version.contains(concat!("cssc ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );

    let dot = stdout(&run(&bin, &["graph", "--format", "dot"]));
    assert!(
        dot.starts_with("digraph \"cppc\"") && dot.contains("s1 -> s2 [label=\"onError: start\"]"),
        "{dot}"
    );
    let mermaid = stdout(&run(&bin, &["graph", "--format", "mermaid"]));
    assert!(
        mermaid.contains("s4 -- \"onComplete: start\" --> s1"),
        "{mermaid}"
    );

    let bad = run(&bin, &["simulate", "--event", "2:onDuplex"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("sequence 2 is Point-In-Time"));
}

#[test]
fn hostile_strings_print_back_byte_exact() {
    let doc = repo("csc-compiler/tests/fixtures/valid/hostile-strings.xml");
    let bin = compile(&doc, "hostile-bin");
    assert_eq!(run(&bin, &["solution"]).stdout, cssc(&["fmt", &doc]).stdout);
    let version = stdout(&run(&bin, &["--version"]));
    assert!(version.contains("solution "), "{version}");
}

#[test]
fn an_invalid_document_gets_the_same_diagnostics_as_check() {
    let doc = repo("csc-compiler/tests/fixtures/invalid/many-faults-at-once.xml");
    let checked = cssc(&["check", &doc]);
    let compiled = cssc(&["compile", &doc, "-o", "never-built"]);
    assert_eq!(compiled.status.code(), Some(1));
    assert_eq!(compiled.stderr, checked.stderr);
    assert!(!scratch().join("never-built").exists());
}

#[test]
fn generate_writes_only_on_change_and_check_detects_staleness() {
    let doc = repo("solutions/three-site-cascade.xml");
    let out = scratch().join("cascade.rs");
    let out = out.to_str().expect("utf-8 path");
    assert_eq!(cssc(&["generate", &doc, "-o", out]).status.code(), Some(0));
    let first = std::fs::metadata(out)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(cssc(&["generate", &doc, "-o", out]).status.code(), Some(0));
    assert_eq!(
        std::fs::metadata(out)
            .and_then(|m| m.modified())
            .expect("mtime"),
        first
    );
    assert_eq!(
        cssc(&["generate", &doc, "-o", out, "--check"])
            .status
            .code(),
        Some(0)
    );
    std::fs::write(out, "// edited by hand\n").expect("edit");
    let stale = cssc(&["generate", &doc, "-o", out, "--check"]);
    assert_eq!(stale.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("is stale"));
    assert_eq!(
        std::fs::read_to_string(out).expect("read"),
        "// edited by hand\n",
        "--check writes nothing"
    );
}
