//! Helpers shared by the front-end tests.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};

pub fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    xml_files(&dir)
}

pub fn solutions() -> Vec<PathBuf> {
    xml_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../solutions"))
}

fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no documents in {}", dir.display());
    files
}

/// `kind/name.xml`: how diagnostics name a fixture, stable across machines.
pub fn display_name(path: &Path) -> String {
    let parent = path
        .parent()
        .and_then(Path::file_name)
        .expect("parent")
        .to_string_lossy();
    format!(
        "{parent}/{}",
        path.file_name().expect("name").to_string_lossy()
    )
}
