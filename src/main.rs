//! `cssc-solutions NAME COMMAND...`: runs a built-in solution (solutions/NAME.xml)
//! without a separate compile step, e.g. `cssc-solutions cppc simulate --event 1:onError`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_default();
    let Some(name) = args.next() else {
        eprintln!(
            "usage: cssc-solutions NAME COMMAND...\nsolutions: {}",
            cssc_solutions::NAMES.join(", ")
        );
        return ExitCode::from(2);
    };
    let name = name.to_string_lossy().into_owned();
    // The solution's own command line sees "NAME COMMAND...".
    let rest = std::iter::once(program).chain(args).collect();
    cssc_solutions::main_for(&name, rest).unwrap_or_else(|| {
        eprintln!(
            "cssc-solutions: no built-in solution `{name}`; solutions: {}",
            cssc_solutions::NAMES.join(", ")
        );
        ExitCode::from(2)
    })
}
