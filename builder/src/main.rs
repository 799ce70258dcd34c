use std::process::ExitCode;

use clap::Parser;
use rbuild_builder::build_command::{self, Failure};
use rbuild_builder::cli::{normalise_args, BuildArgs};

fn main() -> ExitCode {
    let args = normalise_args(std::env::args().collect());
    let args = match BuildArgs::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match build_command::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Build(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
        Err(Failure::Located { error, snippet }) => {
            eprintln!("error: {error:#}");
            eprint!("{snippet}");
            ExitCode::from(1)
        }
    }
}
