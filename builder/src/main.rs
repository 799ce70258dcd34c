use std::process::ExitCode;

use clap::Parser;
use rbuild_builder::build_command::{self, Failure};
use rbuild_builder::cli::{normalise_args, BuildArgs};
use rbuild_builder::sandbox;

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
    // Before anything else (and while the process has one thread): a
    // non-root user builds inside a user namespace where it is root.
    if let Err(error) = sandbox::enter_user_namespace_if_needed() {
        eprintln!("error: {error}");
        return ExitCode::from(1);
    }
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
