//! `cssc`: check, format and compile copy-services solution documents.
//!
//! Exit codes: 0 success; 1 a document is invalid; 2 usage or I/O error;
//! 3 a file is valid but not as it should be (`fmt --check`: not canonical).

use clap::{Parser, Subcommand, ValueEnum};
use csc_compiler::diagnostics::{JsonDiagnostic, Renderer};
use csc_compiler::{emit, front_end, Checked};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// A large document is a million small allocations freed in bulk; with glibc's
/// allocator a third of `cssc check`'s time went to page faults (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_INVALID: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_STALE: u8 = 3;

#[derive(Parser)]
#[command(name = "cssc", version, about = "The copy-services solution compiler")]
struct Cli {
    /// How diagnostics are printed.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    format: Format,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// For people: file:line:col, the source line, a caret and help (stderr).
    Human,
    /// A JSON array of {code, severity, message, file, line, column, end_line, end_column, help} (stdout).
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check documents and report every fault (`-` reads standard input).
    Check {
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Print a document in canonical form.
    Fmt {
        file: String,
        /// Rewrite the file in place (only if it changes).
        #[arg(long, conflicts_with = "check")]
        write: bool,
        /// Exit 3 if the file is not in canonical form; write nothing.
        #[arg(long)]
        check: bool,
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

fn run(cli: &Cli) -> Result<u8, String> {
    let reporter = Reporter::new(cli.format);
    match &cli.command {
        Cmd::Check { files } => {
            let mut all = Vec::new();
            for file in files {
                all.push(load(file)?);
            }
            reporter.report(&all);
            let invalid = all.iter().filter(|c| c.solution.is_none()).count();
            if cli.format == Format::Human {
                for c in all.iter().filter(|c| c.solution.is_some()) {
                    println!("ok: {}", c.source.name);
                }
            }
            // The process is about to exit: freeing a million-node solution piece by
            // piece would only delay it.
            std::mem::forget(all);
            Ok(if invalid == 0 { 0 } else { EXIT_INVALID })
        }
        Cmd::Fmt { file, write, check } => {
            let checked = load(file)?;
            reporter.report(std::slice::from_ref(&checked));
            let Some(solution) = &checked.solution else {
                return Ok(EXIT_INVALID);
            };
            let canonical = emit::xml::canonical(solution);
            if *check {
                if canonical == checked.source.text {
                    return Ok(0);
                }
                eprintln!("cssc: {file} is not in canonical form; run `cssc fmt --write {file}`");
                return Ok(EXIT_STALE);
            }
            if *write && file != "-" {
                if canonical != checked.source.text {
                    std::fs::write(file, &canonical)
                        .map_err(|e| format!("cannot write {file}: {e}"))?;
                }
                return Ok(0);
            }
            std::io::stdout()
                .write_all(canonical.as_bytes())
                .map_err(|e| format!("cannot write to standard output: {e}"))?;
            Ok(0)
        }
    }
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
        return Err(format!("{file} is a directory; name the solution documents in it"));
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
