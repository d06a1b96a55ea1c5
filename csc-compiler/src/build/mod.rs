//! Stage 5, build: a generated crate (the solution's module and a two-line main)
//! that depends on csc-runtime, built by cargo into a target directory shared by every
//! compile, so a warm compile rebuilds only the generated code.
//!
//! Layout of the cache (`$CSSC_CACHE_DIR`, else `$XDG_CACHE_HOME/cssc`, else
//! `~/.cache/cssc`):
//! ```text
//! runtime-VERSION-HASH/   csc-runtime's source, as carried inside cssc
//! crates/NAME/            the generated crate of a solution
//! target/                 cargo's target directory, shared
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/runtime_source.rs"));
}

/// Why a compile failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file or a program could not be used (exit 2): what was done, on what.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cargo ran and failed (exit 4): the summary and where the full log is.
    #[error("the generated crate did not build:\n{summary}\nfull log: {}", log.display())]
    Cargo { summary: String, log: PathBuf },
}

/// A TOML basic string of `text` (a path on cargo's command line).
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads cargo's stderr to its end into `kept`, and shows it as it comes when `shown`.
fn relay(stderr: &mut impl Read, kept: &mut Vec<u8>, shown: bool) {
    let mut chunk = [0u8; 4096];
    loop {
        match stderr.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                if shown {
                    let mut out = std::io::stderr().lock();
                    let _ = out.write_all(&chunk[..n]);
                    let _ = out.flush();
                }
            }
        }
    }
}

/// Where compiles cache the runtime, generated crates and cargo's target directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CSSC_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("cssc")
}

/// A name cargo accepts for a package and a binary: `[a-z0-9_-]`, not empty.
pub fn crate_name(session: &str) -> String {
    let name: String = session
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("solution-{name}")
    } else {
        name.to_string()
    }
}

fn io(what: &'static str, path: &Path, source: std::io::Error) -> BuildError {
    BuildError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `content` to `path` only if it differs, so builds that watch the file (cargo,
/// make) see an unchanged file as unchanged.
pub fn write_if_changed(path: &Path, content: &str) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(());
    }
    std::fs::write(path, content)
}

/// Writes a file of the cache, creating its directory.
fn write_cached(path: &Path, content: &str) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    }
    write_if_changed(path, content).map_err(|e| io("write", path, e))
}

/// Extracts the embedded runtime once per content (a new cssc gets a new directory).
fn runtime_dir(cache: &Path) -> Result<PathBuf, BuildError> {
    let all: String = embedded::RUNTIME_FILES
        .iter()
        .map(|(p, c)| format!("{p}\0{c}\0"))
        .collect();
    let dir = cache.join(format!(
        "runtime-{}-{}",
        env!("CARGO_PKG_VERSION"),
        crate::codegen::solution_hash(&all)
    ));
    for (path, content) in embedded::RUNTIME_FILES {
        write_cached(&dir.join(path), content)?;
    }
    Ok(dir)
}

/// How `compile` runs cargo.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Show cargo's status and progress as it builds (cssc's stderr is a terminal).
    pub progress: bool,
    /// Build offline from this directory of crates (made by [`vendor`]) instead of
    /// crates.io: a build host without network.
    pub vendored: Option<PathBuf>,
}

/// Writes the crate of a generated module (`crates/NAME` in the cache); its directory.
fn write_crate(cache: &Path, name: &str, module: &str) -> Result<PathBuf, BuildError> {
    let runtime = runtime_dir(cache)?;
    let dir = cache.join("crates").join(name);
    let manifest = format!(
        r#"# @generated by cssc {version}
[package]
name = "{name}"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
csc-runtime = {{ path = {runtime:?} }}

[profile.release]
strip = true
incremental = true

# The solution's own crate unoptimised, the runtime at opt-level 3: what is compiled
# for each new solution is the generated module and the runtime's code generic over
# it (executor, core, command line), which waits on storage, not on the CPU; a new
# solution then builds in about 1 s instead of 3 (BENCHMARKS.md).
[profile.release.package.{name}]
opt-level = 0

[workspace]
"#,
        version = env!("CARGO_PKG_VERSION"),
        runtime = runtime.display().to_string(),
    );
    write_cached(&dir.join("Cargo.toml"), &manifest)?;
    if !dir.join("Cargo.lock").exists() {
        write_cached(&dir.join("Cargo.lock"), embedded::LOCK_FILE)?;
    }
    write_cached(
        &dir.join("src/main.rs"),
        "// @generated by cssc: the solution's module and the runtime's command line.\n\
         mod solution;\n\n\
         fn main() -> std::process::ExitCode {\n    csc_runtime::cli::main::<solution::Chain>()\n}\n",
    )?;
    write_cached(&dir.join("src/solution.rs"), module)?;
    Ok(dir)
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Copies every crate a compiled solution needs (the runtime's locked dependencies)
/// into `into` (`cargo vendor`), for [`Options::vendored`] on a host without network.
pub fn vendor(into: &Path) -> Result<(), BuildError> {
    let cache = cache_dir();
    let dir = write_crate(&cache, "cssc-vendor", "")?;
    let cargo = cargo();
    let out = Command::new(&cargo)
        .args(["vendor", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg(into)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| io("run cargo", Path::new(&cargo), e))?;
    if !out.status.success() {
        return Err(cargo_failed(dir.join("vendor.log"), &out.stderr));
    }
    Ok(())
}

/// cargo failed: its messages kept in `log`, its first errors as the summary.
fn cargo_failed(log: PathBuf, said: &[u8]) -> BuildError {
    if let Err(e) = std::fs::write(&log, said) {
        return io("write", &log, e);
    }
    let summary = String::from_utf8_lossy(said)
        .lines()
        .filter(|l| l.starts_with("error"))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n");
    BuildError::Cargo { summary, log }
}

/// Builds the executable of a generated module and copies it to `output`. With
/// `progress`, cargo's status lines and progress bar are shown as it builds (a cold
/// build takes a minute); either way its messages are kept for the log of a failed
/// build.
pub fn compile(
    session_name: &str,
    module: &str,
    output: &Path,
    options: &Options,
) -> Result<(), BuildError> {
    let cache = cache_dir();
    let name = crate_name(session_name);
    let dir = write_crate(&cache, &name, module)?;
    let target = cache.join("target");
    let cargo = cargo();
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--release", "--message-format=short"])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(vendored) = &options.vendored {
        // Source replacement on the command line: nothing is written where another
        // compile of the same solution (online) would find it.
        let vendored = std::path::absolute(vendored).map_err(|e| io("find", vendored, e))?;
        command
            .arg("--offline")
            .arg("--config")
            .arg("source.crates-io.replace-with=\"vendored-sources\"")
            .arg("--config")
            .arg(format!(
                "source.vendored-sources.directory={}",
                toml_string(&vendored.display().to_string())
            ));
    }
    let progress = options.progress;
    if progress {
        // cargo draws its bar only on a terminal; its stderr is a pipe here, relayed.
        command
            .env("CARGO_TERM_PROGRESS_WHEN", "always")
            .env("CARGO_TERM_PROGRESS_WIDTH", "80");
    } else {
        command.arg("--quiet");
    }
    let mut child = command
        .spawn()
        .map_err(|e| io("run cargo", Path::new(&cargo), e))?;
    let mut said = Vec::new();
    if let Some(mut stderr) = child.stderr.take() {
        relay(&mut stderr, &mut said, progress);
    }
    let status = child
        .wait()
        .map_err(|e| io("wait for cargo", Path::new(&cargo), e))?;
    if !status.success() {
        return Err(cargo_failed(dir.join("build.log"), &said));
    }
    let built = target.join("release").join(&name);
    // Copy beside the destination, then rename: a reader never sees half a binary.
    let partial = output.with_extension("cssc-partial");
    std::fs::copy(&built, &partial).map_err(|e| io("copy the executable to", &partial, e))?;
    std::fs::rename(&partial, output).map_err(|e| io("move the executable to", output, e))
}
