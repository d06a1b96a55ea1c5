//! The solution library as build.rs compiled it: each built-in solution runs by name
//! and gives back exactly the canonical form of its document.

use std::process::Command;

fn builtin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cssc-solutions"))
        .args(args)
        .output()
        .expect("run")
}

#[test]
fn every_builtin_gives_back_its_canonical_document() {
    assert_eq!(cssc_solutions::NAMES.len(), 8);
    for name in cssc_solutions::NAMES {
        let path = format!("{}/solutions/{name}.xml", env!("CARGO_MANIFEST_DIR"));
        let solution = csc_compiler::front_end(&path, std::fs::read(&path).expect("read"))
            .solution
            .expect("valid");
        let out = builtin(&[name, "solution"]);
        assert!(out.status.success(), "{name}");
        assert_eq!(
            String::from_utf8(out.stdout).expect("utf-8"),
            csc_compiler::emit::xml::canonical(&solution),
            "{name}"
        );
    }
}

#[test]
fn cppc_simulates_its_error_path() {
    let out = builtin(&[
        "cppc",
        "simulate",
        "--event",
        "1:onError",
        "--event",
        "2:onComplete",
    ]);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.contains("  command: freeze sequence 1\n  command: start sequence 2\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "event 2:onComplete\n  sequence 2: Idle -> Complete\n  command: start sequence 3\n"
        ),
        "{text}"
    );
}

#[test]
fn an_unknown_builtin_is_a_usage_error() {
    let out = builtin(&["no-such-solution"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cppc"));
}
