//! `cssc`: check, format and compile copy-services solution documents.
//!
//! Exit codes: 0 success; 1 a document is invalid; 2 usage or I/O error;
//! 3 a file is valid but not as it should be (`fmt --check`, `generate --check`: stale);
//! 4 the generated crate failed to build (`compile`).

use clap::{Parser, Subcommand, ValueEnum};
use csc_compiler::build::{self, BuildError};
use csc_compiler::diagnostics::{JsonDiagnostic, Renderer};
use csc_compiler::ir::Solution;
use csc_compiler::{codegen, emit, front_end, Checked};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A large document is a million small allocations freed in bulk; with glibc's
/// allocator a third of `cssc check`'s time went to page faults (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_INVALID: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_STALE: u8 = 3;
const EXIT_BUILD: u8 = 4;

#[derive(Parser)]
#[command(name = "cssc", version, about = "The copy-services solution compiler")]
struct Cli {
    /// How diagnostics are printed (also accepted after the command, except after
    /// `graph`, whose own `--format` is the drawing's).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    #[command(subcommand)]
    command: Cmd,
}

/// `--format` after a command that reports diagnostics. Not a clap `global`: `graph`
/// has a `--format` of its own, and one id for both made clap panic (issue 24).
#[derive(clap::Args)]
struct Diagnostics {
    /// How diagnostics are printed.
    #[arg(long = "format", value_enum)]
    format: Option<Format>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// For people: file:line:col, the source line, a caret and help (stderr).
    Human,
    /// A JSON array of {code, severity, message, file, line, column, end_line, end_column, help} (stdout).
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile a solution into a standalone executable.
    Compile {
        file: String,
        /// The executable to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Build offline from DIR, the crates `cssc vendor DIR` copied (a build host
        /// without network).
        #[arg(long, value_name = "DIR")]
        vendored: Option<PathBuf>,
        #[command(flatten)]
        diagnostics: Diagnostics,
    },
    /// Copy every crate a compiled solution needs into DIR (`cargo vendor`), for
    /// `compile --vendored DIR` on a host without network.
    Vendor { dir: PathBuf },
    /// Generate the solution's Rust module (the check-in mode of codegen).
    Generate {
        file: String,
        /// Where to write the module (written only if its content changed).
        #[arg(short, long)]
        output: String,
        /// Write nothing; exit 3 if OUTPUT is not what FILE generates.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        diagnostics: Diagnostics,
    },
    /// Draw the chain: sequences and what each event does.
    Graph {
        file: String,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Check documents and report every fault (`-` reads standard input).
    Check {
        #[arg(required = true)]
        files: Vec<String>,
        #[command(flatten)]
        diagnostics: Diagnostics,
    },
    /// Print the shell completion script of cssc (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print cssc's man page (roff) on stdout.
    Man,
    /// Print a document in canonical form.
    Fmt {
        file: String,
        /// Rewrite the file in place (only if it changes).
        #[arg(long, conflicts_with = "check")]
        write: bool,
        /// Exit 3 if the file is not in canonical form; write nothing.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        diagnostics: Diagnostics,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("cssc: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The diagnostics format: the command's own `--format`, else the one before it.
fn diagnostics_format(cli: &Cli) -> Format {
    match &cli.command {
        Cmd::Check { diagnostics, .. }
        | Cmd::Fmt { diagnostics, .. }
        | Cmd::Compile { diagnostics, .. }
        | Cmd::Generate { diagnostics, .. } => diagnostics.format.unwrap_or(cli.format),
        Cmd::Graph { .. } | Cmd::Completions { .. } | Cmd::Man | Cmd::Vendor { .. } => cli.format,
    }
}

fn run(cli: &Cli) -> Result<u8, String> {
    let format = diagnostics_format(cli);
    let reporter = Reporter::new(format);
    match &cli.command {
        Cmd::Check { files, .. } => {
            let mut all = Vec::new();
            for file in files {
                all.push(load(file)?);
            }
            reporter.report(&all);
            let invalid = all.iter().filter(|c| c.solution.is_none()).count();
            if format == Format::Human {
                for c in all.iter().filter(|c| c.solution.is_some()) {
                    println!("ok: {}", c.source.name);
                }
            }
            // The process is about to exit: freeing a million-node solution piece by
            // piece would only delay it.
            std::mem::forget(all);
            Ok(if invalid == 0 { 0 } else { EXIT_INVALID })
        }
        Cmd::Fmt {
            file, write, check, ..
        } => {
            let Some((checked, solution)) = load_valid(file, &reporter)? else {
                return Ok(EXIT_INVALID);
            };
            let canonical = emit::xml::canonical(&solution);
            if *check {
                return Ok(stale_unless(canonical == checked.source.text, || {
                    format!("{file} is not in canonical form; run `cssc fmt --write {file}`")
                }));
            }
            if *write && file != "-" {
                write_if_changed(file, &canonical)?;
                return Ok(0);
            }
            print_stdout(&canonical)
        }
        Cmd::Vendor { dir } => {
            let code = cargo_ran(build::vendor(dir), "cargo vendor failed")?;
            if code == 0 {
                println!(
                    "{}: the crates of every compiled solution; compile with --vendored {}",
                    dir.display(),
                    dir.display()
                );
            }
            Ok(code)
        }
        Cmd::Compile {
            file,
            output,
            vendored,
            ..
        } => {
            let Some((_, solution)) = load_valid(file, &reporter)? else {
                return Ok(EXIT_INVALID);
            };
            let session_name = codegen::session_name(&solution, file);
            // The module in cssc's cache: one text whatever the output, so a compile to
            // another path reuses the build.
            let code = codegen::rust(
                &solution,
                file,
                "cssc compile DOC -o BIN (a copy in cssc's cache)",
            );
            let options = build::Options {
                progress: std::io::stderr().is_terminal(),
                vendored: vendored.clone(),
            };
            cargo_ran(
                build::compile(&session_name, &code, output, &options),
                &format!("the generated crate of {file} did not build (a cssc or toolchain fault, not the document's)"),
            )
        }
        Cmd::Generate {
            file,
            output,
            check,
            ..
        } => {
            let Some((_, solution)) = load_valid(file, &reporter)? else {
                return Ok(EXIT_INVALID);
            };
            let code = codegen::rust(
                &solution,
                file,
                &format!("cssc generate {file} -o {output}"),
            );
            if *check {
                let current = std::fs::read_to_string(output).unwrap_or_default();
                return Ok(stale_unless(current == code, || {
                    format!(
                        "{output} is stale: regenerate it with `cssc generate {file} -o {output}`"
                    )
                }));
            }
            write_if_changed(output, &code)?;
            Ok(0)
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "cssc", &mut out);
            print_stdout(&String::from_utf8_lossy(&out))
        }
        Cmd::Man => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(|e| format!("cannot render the man page: {e}"))?;
            print_stdout(&String::from_utf8_lossy(&out))
        }
        Cmd::Graph { file, format } => {
            let Some((_, solution)) = load_valid(file, &reporter)? else {
                return Ok(EXIT_INVALID);
            };
            print_stdout(&match format {
                GraphFormat::Dot => emit::graph::dot(&solution),
                GraphFormat::Mermaid => emit::graph::mermaid(&solution),
            })
        }
    }
}

/// The exit code of a cargo run: 0, a usage/I-O error, or cargo's failure said with
/// its summary and log (exit 4).
fn cargo_ran(result: Result<(), BuildError>, failed: &str) -> Result<u8, String> {
    match result {
        Ok(()) => Ok(0),
        Err(e @ BuildError::Io { .. }) => Err(e.to_string()),
        Err(BuildError::Cargo { summary, log }) => {
            eprintln!("cssc: {failed}:\n{summary}\nfull log: {}", log.display());
            Ok(EXIT_BUILD)
        }
    }
}

/// Loads and checks one document, reporting its diagnostics; the solution if valid.
fn load_valid(file: &str, reporter: &Reporter) -> Result<Option<(Checked, Solution)>, String> {
    let mut checked = load(file)?;
    reporter.report(std::slice::from_ref(&checked));
    Ok(checked.solution.take().map(|s| (checked, s)))
}

/// 0 when `fresh`, else says why and returns the "stale" exit code.
fn stale_unless(fresh: bool, why: impl FnOnce() -> String) -> u8 {
    if fresh {
        return 0;
    }
    eprintln!("cssc: {}", why());
    EXIT_STALE
}

/// Writes a file the user named, only if its content changed.
fn write_if_changed(path: &str, content: &str) -> Result<(), String> {
    build::write_if_changed(Path::new(path), content)
        .map_err(|e| format!("cannot write {path}: {e}"))
}

fn print_stdout(text: &str) -> Result<u8, String> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to standard output: {e}"))?;
    Ok(0)
}

/// Reads a document (`-` is standard input) and runs the front end over it.
fn load(file: &str) -> Result<Checked, String> {
    if file == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(front_end("<stdin>", bytes));
    }
    if Path::new(file).is_dir() {
        return Err(format!(
            "{file} is a directory; name the solution documents in it"
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    Ok(front_end(file, bytes))
}

struct Reporter {
    format: Format,
    renderer: Renderer,
}

impl Reporter {
    fn new(format: Format) -> Self {
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Reporter {
            format,
            renderer: Renderer::new(colour),
        }
    }

    fn report(&self, checked: &[Checked]) {
        match self.format {
            Format::Json => {
                let list: Vec<JsonDiagnostic> = checked
                    .iter()
                    .flat_map(|c| {
                        c.diagnostics
                            .iter()
                            .map(|d| JsonDiagnostic::new(&c.source, d))
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).expect("diagnostics serialise")
                );
            }
            Format::Human => {
                let mut err = std::io::stderr().lock();
                for c in checked {
                    for d in &c.diagnostics {
                        let _ = write!(err, "{}", self.renderer.render(&c.source, d));
                    }
                    if c.errors() > 0 {
                        let _ = writeln!(
                            err,
                            "error: {}: {} error(s); nothing was compiled\n",
                            c.source.name,
                            c.errors()
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap's own consistency checks over every command (a global `--format` shared
    /// with `graph`'s once panicked at `cssc graph FILE --format dot`).
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// debug_assert does not see that clash; parsing the line does.
    #[test]
    fn both_formats_parse_around_graph() {
        let cli = Cli::try_parse_from([
            "cssc", "--format", "json", "graph", "f.xml", "--format", "mermaid",
        ])
        .expect("parses");
        assert!(cli.format == Format::Json);
        assert!(matches!(
            cli.command,
            Cmd::Graph {
                format: GraphFormat::Mermaid,
                ..
            }
        ));
        let cli =
            Cli::try_parse_from(["cssc", "check", "--format", "json", "f.xml"]).expect("parses");
        assert!(diagnostics_format(&cli) == Format::Json);
    }
}
