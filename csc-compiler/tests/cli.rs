//! The `cssc` binary: exit codes, JSON diagnostics, stdin, fmt --write/--check.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn cssc(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cssc"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cssc");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("cssc output")
}

fn fixture(kind: &str, name: &str) -> String {
    format!(
        "{}/tests/fixtures/{kind}/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn check_exit_codes() {
    assert_eq!(
        cssc(&["check", &fixture("valid", "minimal.xml")], None)
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        cssc(&["check", &fixture("invalid", "unknown-type.xml")], None)
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        cssc(&["check", "/nonexistent/x.xml"], None).status.code(),
        Some(2)
    );
    assert_eq!(cssc(&["check"], None).status.code(), Some(2));
    assert_eq!(cssc(&["bogus"], None).status.code(), Some(2));
}

#[test]
fn cssc_check_accepts_the_solution_library() {
    let files: Vec<String> = common::solutions()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = cssc(&args, None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        files.len()
    );
}

#[test]
fn check_reads_stdin_and_names_it() {
    let out = cssc(
        &["check", "-"],
        Some("<SESSION><SEQUENCE><TYPE>Continous</TYPE></SEQUENCE></SESSION>"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[<stdin>:1:26]"), "{stderr}");
    assert!(stderr.contains("did you mean `Continuous`?"), "{stderr}");
}

#[test]
fn json_diagnostics_carry_code_position_and_help() {
    let out = cssc(
        &[
            "--format",
            "json",
            "check",
            &fixture("invalid", "unknown-contact.xml"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let d = &list.as_array().expect("array")[0];
    assert_eq!(d["code"], "E0208");
    assert_eq!(d["severity"], "error");
    assert!(d["file"]
        .as_str()
        .expect("file")
        .ends_with("unknown-contact.xml"));
    assert_eq!(d["line"], 25);
    assert_eq!(d["column"], 23);
    assert_eq!(d["message"], "no CONTACT is named `Bil`");
    assert!(d["help"]
        .as_str()
        .expect("help")
        .starts_with("did you mean `Bill`?"));
}

#[test]
fn fmt_check_write_and_stdout() {
    let dir = std::env::temp_dir().join(format!("cssc-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("doc.xml");
    let file = file.to_str().expect("utf-8 path");
    std::fs::copy(fixture("valid", "no-seq-nums-mixed-case.xml"), file).expect("copy");

    let out = cssc(&["fmt", "--check", file], None);
    assert_eq!(out.status.code(), Some(3), "a non-canonical file is stale");
    let printed = cssc(&["fmt", file], None);
    assert_eq!(printed.status.code(), Some(0));
    assert_eq!(cssc(&["fmt", "--write", file], None).status.code(), Some(0));
    assert_eq!(std::fs::read(file).expect("read back"), printed.stdout);
    let modified = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(cssc(&["fmt", "--check", file], None).status.code(), Some(0));
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(cssc(&["fmt", "--write", file], None).status.code(), Some(0));
    let after = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(modified, after, "--write leaves a canonical file untouched");

    std::fs::write(
        file,
        "<SESSION><SEQUENCE><TYPE>x</TYPE></SEQUENCE></SESSION>",
    )
    .expect("write");
    assert_eq!(cssc(&["fmt", "--write", file], None).status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(file).expect("read"),
        "<SESSION><SEQUENCE><TYPE>x</TYPE></SEQUENCE></SESSION>",
        "an invalid document is never rewritten"
    );
    std::fs::remove_dir_all(&dir).ok();
}
