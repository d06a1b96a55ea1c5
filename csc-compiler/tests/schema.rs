//! schema/solution.xsd describes the canonical form: every valid document, formatted,
//! passes `xmllint --schema`; a document outside the canonical form does not.

mod common;

use common::{display_name, fixtures, solutions};
use csc_compiler::{emit, front_end};
use std::path::Path;
use std::process::Command;

fn xmllint(document: &Path) -> (bool, String) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/solution.xsd");
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(document)
        .output()
        .expect("xmllint runs (Debian: apt-get install libxml2-utils)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn canonical_form_of_every_valid_document_passes_the_schema() {
    let dir = std::env::temp_dir().join(format!("cssc-xsd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut documents = fixtures("valid");
    documents.extend(solutions());
    for path in documents {
        let name = display_name(&path);
        let solution = front_end(&name, std::fs::read(&path).expect("read"))
            .solution
            .expect("valid");
        let out = dir.join(path.file_name().expect("name"));
        std::fs::write(&out, emit::xml::canonical(&solution)).expect("write");
        let (ok, stderr) = xmllint(&out);
        assert!(ok, "{name}: canonical form fails the schema:\n{stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_schema_rejects_what_is_not_canonical() {
    // cppc.xml gives its modes through CMDFLAGS, which canonical form writes as CHARACTERISTIC.
    let cppc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../solutions/cppc.xml");
    let (ok, stderr) = xmllint(&cppc);
    assert!(!ok);
    assert!(stderr.contains("CMDFLAGS"), "{stderr}");
}
