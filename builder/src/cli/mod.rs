//! The command line: arguments in, rendered progress and errors out. Every subcommand
//! lives in [`commands`]; `rbuild build` in [`build`]. Only this layer writes to the
//! terminal.

pub mod args;
pub mod build;
pub mod commands;
pub mod dockerfile;
pub mod disk_full;
pub mod dot;
pub mod executor;
pub mod failure;
pub mod progress;
pub mod progress_tty;
pub mod shell;
pub mod snippet;
pub mod terminal;
