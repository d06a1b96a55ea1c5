//! The front end over the fixtures: every invalid document reports the code it
//! declares, at a position, with help; every valid one round-trips through fmt.

mod common;

use common::{display_name, fixtures, solutions};
use csc_compiler::diagnostics::{Renderer, Severity};
use csc_compiler::{emit, front_end};
use std::path::Path;

/// The code an invalid fixture declares in its `<!-- expect: E0000 -->` comment.
fn expected_code(bytes: &[u8]) -> String {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    let at = head
        .find("expect: ")
        .expect("fixture declares `expect: CODE`");
    head[at + 8..at + 13].to_string()
}

#[test]
fn invalid_documents_report_their_code_with_help_and_are_snapshotted() {
    let renderer = Renderer::new(false);
    let invalid = fixtures("invalid");
    assert!(invalid.len() >= 25, "at least 25 invalid fixtures");
    for path in invalid {
        let bytes = std::fs::read(&path).expect("read fixture");
        let expected = expected_code(&bytes);
        let name = display_name(&path);
        let checked = front_end(&name, bytes);
        assert!(checked.solution.is_none(), "{name} was accepted");
        let codes: Vec<&str> = checked
            .diagnostics
            .iter()
            .map(|d| d.code.as_str())
            .collect();
        assert!(
            codes.contains(&expected.as_str()),
            "{name}: expected {expected}, got {codes:?}"
        );
        let mut rendered = String::new();
        for d in &checked.diagnostics {
            assert!(d.help.is_some(), "{name}: {} has no help", d.code.as_str());
            let text = renderer.render(&checked.source, d);
            assert!(
                text.contains(&format!("[{name}:")),
                "{name}: no file:line:col in\n{text}"
            );
            rendered.push_str(&text);
        }
        let stem = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        expectorate::assert_contents(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/snapshots/diagnostics")
                .join(format!("{stem}.txt")),
            &rendered,
        );
    }
}

#[test]
fn all_faults_are_reported_in_one_run() {
    let path = fixtures("invalid")
        .into_iter()
        .find(|p| p.ends_with("many-faults-at-once.xml"))
        .expect("fixture");
    let checked = front_end("many", std::fs::read(path).expect("read"));
    let codes: Vec<&str> = checked
        .diagnostics
        .iter()
        .map(|d| d.code.as_str())
        .collect();
    for code in ["E0102", "E0104", "E0202", "E0208", "E0209"] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
}

#[test]
fn every_error_code_is_exercised_by_a_fixture() {
    let mut seen = std::collections::BTreeSet::new();
    for path in fixtures("invalid") {
        let checked = front_end("f", std::fs::read(path).expect("read"));
        seen.extend(checked.diagnostics.iter().map(|d| d.code));
    }
    let missing: Vec<&str> = csc_compiler::diagnostics::Code::ALL
        .iter()
        .filter(|c| c.as_str().starts_with('E') && !seen.contains(c))
        .map(|c| c.as_str())
        .collect();
    assert!(missing.is_empty(), "no fixture triggers {missing:?}");
}

fn valid_documents() -> Vec<std::path::PathBuf> {
    let mut all = fixtures("valid");
    all.extend(solutions());
    all
}

#[test]
fn valid_documents_check_clean() {
    for path in valid_documents() {
        let checked = front_end(&display_name(&path), std::fs::read(&path).expect("read"));
        let errors: Vec<_> = checked
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        assert!(checked.solution.is_some());
    }
}

#[test]
fn fmt_round_trips_and_is_idempotent() {
    for path in valid_documents() {
        let name = display_name(&path);
        let original = front_end(&name, std::fs::read(&path).expect("read"))
            .solution
            .expect("valid");
        let canonical = emit::xml::canonical(&original);
        let again = front_end("canonical", canonical.clone().into_bytes());
        assert!(
            again.diagnostics.is_empty(),
            "{name}: canonical form has diagnostics {:?}",
            again.diagnostics
        );
        // The same IR back, and fmt idempotent: what the fuzz target checks.
        csc_compiler::fuzzing::check(&std::fs::read(&path).expect("read"));
    }
}

#[test]
fn every_code_is_documented() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/solution-format.md"
    ))
    .expect("docs/solution-format.md");
    for code in csc_compiler::diagnostics::Code::ALL {
        let row = format!("| `{}` | {} |", code.as_str(), code.title());
        assert!(
            doc.contains(&row),
            "docs/solution-format.md lacks the row {row}"
        );
    }
}

#[test]
fn a_storage_with_a_fault_is_still_declared() {
    // Its volumes must not also be told that the storage does not exist.
    let doc = r#"<SESSION><STORAGE id="s1"><ENDPOINT>tcp:host</ENDPOINT></STORAGE>
<COPYSET name="c"><VOLUME storage="s1">a</VOLUME><VOLUME storage="s1">b</VOLUME></COPYSET>
<SEQUENCE><TYPE>Continuous</TYPE></SEQUENCE></SESSION>"#;
    let checked = front_end("x", doc.as_bytes().to_vec());
    let codes: Vec<&str> = checked
        .diagnostics
        .iter()
        .map(|d| d.code.as_str())
        .collect();
    assert_eq!(codes, vec!["E0221"]);
}

#[test]
fn text_elements_report_unknown_attributes_with_their_valid_ones() {
    let doc = r#"<SESSION><COPYSET name="c"><VOLUME storage="s" stroage="x">a</VOLUME><VOLUME storage="s">b</VOLUME></COPYSET><SEQUENCE><TYPE mode="y">Continuous</TYPE><EVENTFLAGS><EVENT>onError</EVENT><ACTION><RUN timout="5s">/bin/true</RUN></ACTION></EVENTFLAGS></SEQUENCE></SESSION>"#;
    let checked = front_end("x", doc.as_bytes().to_vec());
    let found: Vec<(&str, &str)> = checked
        .diagnostics
        .iter()
        .map(|d| (d.message.as_str(), d.help.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "unknown attribute `stroage` on <VOLUME>",
                "did you mean `storage`? valid attributes: storage"
            ),
            (
                "unknown attribute `mode` on <TYPE>",
                "<TYPE> takes no attributes"
            ),
            (
                "unknown attribute `timout` on <RUN>",
                "did you mean `timeout`? valid attributes: timeout"
            ),
        ]
    );
}
