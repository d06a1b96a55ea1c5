//! Hostile input never panics: it is refused with a diagnostic, cheaply.

use csc_compiler::diagnostics::Code;
use csc_compiler::front_end;

fn codes(bytes: Vec<u8>) -> Vec<Code> {
    let checked = front_end("hostile", bytes);
    assert!(checked.solution.is_none());
    checked.diagnostics.iter().map(|d| d.code).collect()
}

#[test]
fn deep_nesting_is_reported_without_descending() {
    let depth = 200_000;
    let text = format!(
        "<SESSION>{}{}</SESSION>",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    );
    assert_eq!(
        codes(text.into_bytes()),
        vec![Code::NoSequence, Code::UnknownElement]
    );
}

#[test]
fn deep_nesting_inside_a_text_element_is_refused() {
    let depth = 100_000;
    let text = format!(
        "<SESSION><SEQUENCE><TYPE>{}{}</TYPE></SEQUENCE></SESSION>",
        "<b>".repeat(depth),
        "</b>".repeat(depth)
    );
    assert!(codes(text.into_bytes()).contains(&Code::UnexpectedChild));
}

#[test]
fn entity_expansion_is_refused() {
    let text = r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><SESSION>&c;</SESSION>"#;
    assert_eq!(codes(text.into()), vec![Code::NotWellFormed]);
}

#[test]
fn binary_garbage_empty_and_wrong_roots_are_refused() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_eq!(codes(garbage), vec![Code::UnreadableInput]);
    assert_eq!(codes(Vec::new()), vec![Code::NotWellFormed]);
    assert_eq!(codes(b"   \n\n".to_vec()), vec![Code::NotWellFormed]);
    assert_eq!(
        codes(b"<html><body/></html>".to_vec()),
        vec![Code::WrongRoot]
    );
    assert_eq!(codes(b"\0\0\0\0".to_vec()), vec![Code::NotWellFormed]);
}

#[test]
fn huge_numbers_and_values_are_errors_not_overflows() {
    let num = "9".repeat(10_000);
    let text = format!(
        "<SESSION><SEQUENCE><TYPE>Continuous</TYPE><SEQ_NUM>{num}</SEQ_NUM></SEQUENCE></SESSION>"
    );
    assert_eq!(codes(text.into_bytes()), vec![Code::BadNumber]);
    let text = format!(
        "<SESSION><SEQUENCE><TYPE>Point-In-Time</TYPE><SCHEDULE>every {num}d</SCHEDULE></SEQUENCE></SESSION>"
    );
    assert_eq!(codes(text.into_bytes()), vec![Code::BadSchedule]);
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let bytes = vec![b' '; csc_compiler::syntax::MAX_BYTES + 1];
    assert_eq!(codes(bytes), vec![Code::UnreadableInput]);
}

#[test]
fn many_unknown_elements_are_all_reported() {
    let text = format!("<SESSION>{}</SESSION>", "<BOGUS/>".repeat(20_000));
    let found = codes(text.into_bytes());
    assert_eq!(
        found.iter().filter(|c| **c == Code::UnknownElement).count(),
        20_000
    );
}
