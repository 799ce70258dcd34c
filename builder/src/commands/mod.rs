//! `rbuild`'s subcommands besides `build` (which is also the default command).
//! Each subcommand lives in a module of its own with its own clap parser and
//! is listed in [`SUBCOMMANDS`]; `main` dispatches on the first argument.

mod common;
pub mod du;
pub mod graph;
pub mod history;
mod human;
pub mod images;
pub mod load;
pub mod prune;
pub mod pull;
pub mod rmi;
pub mod save;
mod table;
pub mod tag;

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
pub const SUBCOMMANDS: &[Subcommand] = &[
    Subcommand {
        name: "graph",
        about: "Print a Dockerfile's build graph as DOT or SVG, with --timings of the last build",
        run: graph::run,
        // Reads image configs and the timings file, which the invoking user owns.
        needs_namespace: false,
    },
    // The store commands run inside rbuild's user namespace when not root: a
    // rootless build's snapshots hold files of the namespace's other ids,
    // which only its root can remove (rmi, prune) or read (sizes).
    store_command("images", "List the images in the store", images::run),
    store_command("history", "Show the history of an image", history::run),
    store_command("tag", "Give an image in the store another name", tag::run),
    store_command("rmi", "Untag and remove images from the store", rmi::run),
    store_command("save", "Write images to a docker-archive tar (stdout by default)", save::run),
    store_command("load", "Load images from a docker or OCI archive (stdin by default)", load::run),
    store_command("pull", "Pull an image from a registry into the store", pull::run),
    store_command("du", "Show the store's disk usage by kind", du::run),
    store_command(
        "prune",
        "Remove unused data: untagged images, build cache, unreferenced content",
        prune::run,
    ),
];

const fn store_command(
    name: &'static str,
    about: &'static str,
    run: fn(Vec<String>) -> Result<(), Failure>,
) -> Subcommand {
    Subcommand {
        name,
        about,
        run,
        needs_namespace: true,
    }
}

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
