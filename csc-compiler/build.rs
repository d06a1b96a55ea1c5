//! Embeds csc-runtime's source and the workspace lock file into cssc, so that
//! `cssc compile` can build solutions anywhere, even from a `cargo install` copy.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let runtime = manifest.join("../csc-runtime");
    let mut files = vec![runtime.join("Cargo.toml")];
    collect_rs(&runtime.join("src"), &mut files);
    files.sort();
    let mut out = String::from("/// csc-runtime's files: (path inside the crate, content).\npub const RUNTIME_FILES: &[(&str, &str)] = &[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let relative = file.strip_prefix(&runtime).expect("inside the runtime");
        let _ = writeln!(
            out,
            "    ({:?}, include_str!({:?})),",
            relative.display().to_string(),
            file.display().to_string()
        );
    }
    out.push_str("];\n");
    let lock = manifest.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let _ = writeln!(out, "/// The workspace's lock file: compiled solutions use the versions cssc was tested with.\npub const LOCK_FILE: &str = include_str!({:?});", lock.display().to_string());
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("runtime_source.rs");
    if std::fs::read_to_string(&dest).ok().as_deref() != Some(out.as_str()) {
        std::fs::write(&dest, out).expect("write runtime_source.rs");
    }
}

fn collect_rs(dir: &Path, files: &mut Vec<PathBuf>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rs(&path, files);
        } else if path.extension().is_some_and(|x| x == "rs") {
            files.push(path);
        }
    }
}
