//! The solution library: every document is valid, says what it is for, and the
//! library holds the patent's two samples plus at least four other topologies.

use std::path::Path;

fn library() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("solutions"))
            .expect("solutions/")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
            .collect();
    files.sort();
    files
}

#[test]
fn every_solution_is_valid_and_documented() {
    let files = library();
    assert!(
        files.len() >= 6,
        "the patent's two samples and at least four more"
    );
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        let comment = text
            .find("<!--")
            .expect("a comment saying what the solution is for");
        assert!(
            comment < text.find("<SESSION").expect("SESSION"),
            "{}: comment first",
            path.display()
        );
        let checked = csc_compiler::front_end(&path.display().to_string(), text.into_bytes());
        assert!(
            checked.diagnostics.is_empty(),
            "{}: {:?}",
            path.display(),
            checked.diagnostics
        );
        assert!(checked.solution.is_some());
    }
}
