//! `rbuild`'s subcommands besides `build` (which is also the default command).
//! Each subcommand lives in a module of its own with its own clap parser and
//! is listed in [`SUBCOMMANDS`]; `main` dispatches on the first argument.

use crate::failure::Failure;

/// One `rbuild NAME …` command.
pub struct Subcommand {
    pub name: &'static str,
    /// One line for `rbuild --help`.
    pub about: &'static str,
    /// Runs the command with its arguments (`args[0]` is `rbuild NAME`).
    pub run: fn(Vec<String>) -> Result<(), Failure>,
    /// Whether the command touches the store or runs steps, and so must run
    /// inside rbuild's user namespace when not root.
    pub needs_namespace: bool,
}

/// Every subcommand, in the order `--help` lists them.
pub const SUBCOMMANDS: &[Subcommand] = &[];

/// The subcommand named `name`, if any.
pub fn find(name: &str) -> Option<&'static Subcommand> {
    SUBCOMMANDS.iter().find(|c| c.name == name)
}

/// The `Commands:` section of `rbuild --help`.
pub fn help_section() -> String {
    let mut text = String::from("Commands:\n  build      Build an image from a Dockerfile (the default command)\n");
    for command in SUBCOMMANDS {
        text.push_str(&format!("  {:<10} {}\n", command.name, command.about));
    }
    text
}
