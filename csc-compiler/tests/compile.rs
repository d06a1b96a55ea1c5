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

/// The command forms of README's two tables ("Using cssc" and a compiled solution's
/// own command line): every backticked form in a row's first cell.
fn readme_command_forms() -> Vec<String> {
    let readme = std::fs::read_to_string(repo("README.md")).expect("README.md");
    let mut forms = Vec::new();
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split(" | ").next().unwrap_or_default();
        for (i, span) in cell.split('`').enumerate() {
            if i % 2 == 1 {
                forms.push(span.replace("\\|", "|"));
            }
        }
    }
    forms
}

/// Each form README documents, run on the CPPC document (and on its compiled
/// executable) with the exit code the docs give for that case. A form this test does
/// not know fails it: a command added to README is a command added here.
#[test]
fn every_command_in_the_readme_runs_with_its_documented_exit_code() {
    let doc = repo("solutions/cppc.xml");
    let bin = compile(&doc, "cppc-readme");
    let bin = bin.to_str().expect("utf-8 path");
    let dir = scratch().join("readme-commands");
    std::fs::create_dir_all(&dir).expect("dir");
    let state = dir.join("state");
    let state = state.to_str().expect("utf-8 path");
    let vendor_dir = dir.join("vendor");
    let vendor_dir = vendor_dir.to_str().expect("utf-8 path");
    let empty = dir.join("empty");
    let empty = empty.to_str().expect("utf-8 path");
    let generated = dir.join("cppc.rs");
    let generated = generated.to_str().expect("utf-8 path");
    // A run-time file whose storages do not answer (nothing listens at these sockets),
    // and one that does not parse.
    let unreachable = dir.join("unreachable.toml");
    std::fs::write(
        &unreachable,
        "[storage.site1]\nendpoint = \"unix:/nonexistent/site1.qmp\"\n\
         [storage.site2]\nendpoint = \"unix:/nonexistent/site2.qmp\"\n\
         [storage.site3]\nendpoint = \"unix:/nonexistent/site3.qmp\"\n",
    )
    .expect("write run-time file");
    let unreachable = unreachable.to_str().expect("utf-8 path");
    let unparsable = dir.join("unparsable.toml");
    std::fs::write(&unparsable, "[storage.site1\n").expect("write run-time file");
    let unparsable = unparsable.to_str().expect("utf-8 path");

    let canonical = dir.join("canonical.xml");
    std::fs::write(&canonical, cssc(&["fmt", &doc]).stdout).expect("write canonical form");
    let canonical = canonical.to_str().expect("utf-8 path");
    let cssc_at = |args: &[&str]| cssc(args);
    let bin_at = |args: &[&str]| run(Path::new(bin), args);
    type Case<'a> = (Vec<&'a str>, i32);
    let forms = readme_command_forms();
    assert!(forms.len() >= 15, "README tables not found: {forms:?}");
    for form in &forms {
        let (program, cases): (&str, Vec<Case>) = match form.as_str() {
            "cssc check FILE..." => ("cssc", vec![(vec!["check", &doc, &doc], 0)]),
            "cssc fmt FILE" => (
                "cssc",
                // The checked-in document keeps its comments, which the canonical
                // form drops: not canonical (3); its canonical form is (0).
                vec![
                    (vec!["fmt", &doc], 0),
                    (vec!["fmt", "--check", &doc], 3),
                    (vec!["fmt", "--check", canonical], 0),
                ],
            ),
            "cssc compile FILE -o BIN" => (
                "cssc",
                vec![(vec!["compile", &doc, "-o", "cppc-readme"], 0)],
            ),
            "cssc generate FILE -o OUT.rs" => (
                "cssc",
                vec![
                    (vec!["generate", &doc, "-o", generated], 0),
                    (vec!["generate", &doc, "-o", generated, "--check"], 0),
                ],
            ),
            "cssc graph FILE --format dot|mermaid" => (
                "cssc",
                vec![
                    (vec!["graph", &doc, "--format", "dot"], 0),
                    (vec!["graph", &doc, "--format", "mermaid"], 0),
                    (vec!["graph", &doc], 0),
                ],
            ),
            "--format json" => (
                "cssc",
                vec![
                    (vec!["--format", "json", "check", &doc], 0),
                    (vec!["check", "--format", "json", &doc], 0),
                    (
                        vec!["--format", "json", "graph", &doc, "--format", "mermaid"],
                        0,
                    ),
                ],
            ),
            "cssc completions SHELL" => (
                "cssc",
                vec![
                    (vec!["completions", "bash"], 0),
                    (vec!["completions", "zsh"], 0),
                ],
            ),
            "cssc man" => ("cssc", vec![(vec!["man"], 0)]),
            "cssc vendor DIR" => ("cssc", vec![(vec!["vendor", vendor_dir], 0)]),
            "BIN completions SHELL" => (
                "BIN",
                vec![
                    (vec!["completions", "bash"], 0),
                    (vec!["completions", "fish"], 0),
                ],
            ),
            "BIN man" => ("BIN", vec![(vec!["man"], 0)]),
            "BIN solution" => ("BIN", vec![(vec!["solution"], 0)]),
            "BIN graph --format dot|mermaid" => (
                "BIN",
                vec![
                    (vec!["graph", "--format", "dot"], 0),
                    (vec!["graph", "--format", "mermaid"], 0),
                ],
            ),
            "BIN simulate --event SEQ:EVENT ..." => (
                "BIN",
                vec![(
                    vec![
                        "simulate",
                        "--event",
                        "1:onError",
                        "--event",
                        "2:onComplete",
                    ],
                    0,
                )],
            ),
            "BIN --version" => ("BIN", vec![(vec!["--version"], 0)]),
            "BIN run [--config FILE] [--state-dir DIR] [--metrics ADDR]" => (
                "BIN",
                vec![
                    // docs/runtime.md: 2 a run-time file error; 3 a storage not as needed.
                    (vec!["run", "--config", unparsable, "--state-dir", state], 2),
                    (
                        vec![
                            "run",
                            "--config",
                            unreachable,
                            "--state-dir",
                            state,
                            "--metrics",
                            "127.0.0.1:0",
                        ],
                        3,
                    ),
                ],
            ),
            // No run has kept a journal in `empty`: exit 2 (docs/runtime.md).
            "BIN status [--json]" => (
                "BIN",
                vec![
                    (vec!["status", "--state-dir", empty], 2),
                    (vec!["status", "--json", "--state-dir", empty], 2),
                ],
            ),
            // Operator commands with no run answering: exit 2.
            "BIN suspend SEQ" | "BIN resume SEQ" | "BIN reverse SEQ" => {
                let command = form.split(' ').nth(1).expect("command");
                ("BIN", vec![(vec![command, "1", "--state-dir", state], 2)])
            }
            "BIN recover SEQ [--freeze]" => (
                "BIN",
                vec![(vec!["recover", "1", "--freeze", "--state-dir", state], 2)],
            ),
            "BIN verify SEQ [--repair]" => (
                "BIN",
                vec![(vec!["verify", "1", "--repair", "--state-dir", state], 2)],
            ),
            "BIN check-config --config FILE" => (
                "BIN",
                vec![
                    (vec!["check-config", "--config", unparsable], 2),
                    (vec!["check-config", "--config", unreachable], 3),
                ],
            ),
            "BIN cleanup [--config FILE]" => {
                ("BIN", vec![(vec!["cleanup", "--config", unreachable], 3)])
            }
            // Only the solution library's binary carries `demo`; a compiled one says it
            // has no such command (a usage error).
            "BIN demo" => ("BIN", vec![(vec!["demo"], 2)]),
            other => panic!("README documents `{other}`, which this test does not run: add it"),
        };
        for (args, expected) in cases {
            let out = if program == "cssc" {
                cssc_at(&args)
            } else {
                bin_at(&args)
            };
            assert_eq!(
                out.status.code(),
                Some(expected),
                "`{program} {}` (README: `{form}`): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            // What completions and man print is for a shell and for man(1).
            if args[0] == "man" {
                assert!(
                    String::from_utf8_lossy(&out.stdout).contains(".TH "),
                    "{args:?}"
                );
            }
            if args[0] == "completions" {
                assert!(
                    out.stdout.len() > 1000,
                    "{args:?}: {} bytes",
                    out.stdout.len()
                );
            }
            // The commands with `--json` say the same as one JSON object on stdout.
            let json_too = [
                "suspend",
                "resume",
                "recover",
                "reverse",
                "verify",
                "check-config",
                "cleanup",
            ];
            if program == "BIN" && json_too.contains(&args[0]) {
                let mut with_json = args.clone();
                with_json.push("--json");
                let out = bin_at(&with_json);
                assert_eq!(out.status.code(), Some(expected), "{with_json:?}");
                let object: serde_json::Value =
                    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                        panic!(
                            "{with_json:?}: not JSON ({e}): {}",
                            String::from_utf8_lossy(&out.stdout)
                        )
                    });
                assert_eq!(object["exit"], expected, "{with_json:?}: {object}");
            }
        }
    }
}

/// README's layout names every source file of both crates' top level and of the
/// drivers (by file name; a directory by `name/`), so a new module is a new line there.
#[test]
fn the_readme_layout_names_every_module() {
    let readme = std::fs::read_to_string(repo("README.md")).expect("README.md");
    let start = readme.find("## Layout").expect("a Layout section");
    let layout = &readme[start..];
    let mut missing = Vec::new();
    for dir in [
        "csc-runtime/src",
        "csc-compiler/src",
        "csc-runtime/src/drivers/qemu",
        "csc-runtime/src/drivers/btrfs",
        "csc-runtime/src/executor",
    ] {
        for entry in std::fs::read_dir(repo(dir)).expect("source dir") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let named = if path.is_dir() {
                format!("{name}/")
            } else {
                name.clone()
            };
            let the_directory_s_own = dir.ends_with("executor") && name == "mod.rs";
            if !layout.contains(&named) && !the_directory_s_own {
                missing.push(format!("{dir}/{named}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README's layout does not name {missing:?}"
    );
}

/// On a terminal (`script` from util-linux gives cssc one), `compile` shows cargo's
/// status and progress as it builds; piped, it stays quiet.
#[test]
fn compile_shows_cargo_progress_on_a_terminal_only() {
    let doc = repo("solutions/mirror-freeze-switch.xml");
    let cssc_path = scratch().join("cssc");
    let line = format!(
        "{} compile {doc} -o switch-on-a-terminal",
        cssc_path.display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(scratch())
        .env(
            "CSSC_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("cssc-cache"),
        )
        .output()
        .expect("script (Debian: bsdutils)");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("Finished"),
        "cargo's status on the terminal: {shown}"
    );
    let piped = cssc(&["compile", &doc, "-o", "switch-piped"]);
    assert_eq!(piped.status.code(), Some(0));
    assert!(
        !String::from_utf8_lossy(&piped.stderr).contains("Finished"),
        "quiet when piped"
    );
}

/// A build host without network: `cssc vendor DIR` copies the crates once (with
/// network), then `compile --vendored DIR` builds with crates.io unreachable (an empty
/// cargo home, every proxy pointing nowhere). Without the directory the same compile
/// fails (exit 4), so the test shows that nothing came from the network.
#[test]
fn compile_offline_from_vendored_crates() {
    let vendored = scratch().join("vendored");
    let out = cssc(&["vendor", vendored.to_str().expect("utf-8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(vendored.join("serde").exists() || std::fs::read_dir(&vendored).unwrap().count() > 50);
    let home = scratch().join("empty-cargo-home");
    std::fs::create_dir_all(&home).expect("cargo home");
    let offline = |extra: &[&str], output: &str| {
        let doc = repo("solutions/mirror-freeze-switch.xml");
        let mut args = vec!["compile", doc.as_str(), "-o", output];
        args.extend_from_slice(extra);
        Command::new(scratch().join("cssc"))
            .args(&args)
            .current_dir(scratch())
            // A cache of its own: crates built from vendored sources are other
            // artifacts than crates.io's, and would rebuild the other tests' runtime.
            .env(
                "CSSC_CACHE_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("cssc-cache-offline"),
            )
            .env("CARGO_HOME", &home)
            .env("CARGO_NET_OFFLINE", "true")
            .env("https_proxy", "http://127.0.0.1:9")
            .env("http_proxy", "http://127.0.0.1:9")
            .output()
            .expect("cssc")
    };
    let without = offline(&[], "switch-without-crates");
    assert_eq!(
        without.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
    let with = offline(
        &["--vendored", vendored.to_str().expect("utf-8")],
        "switch-offline",
    );
    assert_eq!(
        with.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    let version = run(&scratch().join("switch-offline"), &["--version"]);
    assert!(
        stdout(&version).starts_with("mirror-freeze-switch"),
        "{}",
        stdout(&version)
    );
}

/// Every command line the docs show in backticks (`cssc …`, `BIN …`, `db-dr …`) parses
/// with the program's own clap definition: its fullest form (optional parts in,
/// first alternatives, placeholders filled) followed by `--help` exits 0, which
/// clap allows only when every argument before it is valid.
#[test]
fn every_command_line_the_docs_show_parses() {
    let bin = compile(&repo("solutions/cppc.xml"), "cppc-docs");
    let mut files = vec![repo("README.md")];
    for entry in std::fs::read_dir(repo("docs")).expect("docs") {
        files.push(entry.expect("entry").path().display().to_string());
    }
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("doc");
        for (i, span) in text.split('`').enumerate() {
            let Some((program, rest)) = span.split_once(' ') else {
                continue;
            };
            if i % 2 == 0 || !["cssc", "BIN", "db-dr"].contains(&program) {
                continue;
            }
            // `demo` is the solution library's only (README says so).
            if rest.starts_with("demo") {
                continue;
            }
            let mut args: Vec<String> = Vec::new();
            let mut previous = String::new();
            for word in rest
                .replace(['[', ']'], " ")
                .replace("\\|", "|")
                .split_whitespace()
            {
                let word = word.split('|').next().unwrap_or_default();
                let filled = match word {
                    "..." | "" => continue,
                    "SEQ" | "N" | "MIB" | "SECS" => "1",
                    "SEQ:EVENT" => "1:onError",
                    "FILE" | "FILE..." => "f.xml",
                    "DIR" => "/tmp/d",
                    "ADDR" => "127.0.0.1:9",
                    "SHELL" => "bash",
                    "OUT.rs" => "o.rs",
                    "BIN" if previous == "-o" => "out",
                    other => other,
                };
                previous = word.to_string();
                args.push(filled.to_string());
            }
            args.push("--help".into());
            let out = if program == "cssc" {
                cssc(&args.iter().map(String::as_str).collect::<Vec<_>>())
            } else {
                run(&bin, &args.iter().map(String::as_str).collect::<Vec<_>>())
            };
            assert_eq!(
                out.status.code(),
                Some(0),
                "{file}: `{span}` does not parse ({args:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 40,
        "only {checked} command lines found in the docs"
    );
}
