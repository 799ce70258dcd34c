//! `rbuild`'s subcommands besides `build` (which is also the default command).
//! Each subcommand lives in a module of its own with its own clap parser and
//! is listed in [`SUBCOMMANDS`]; `main` dispatches on the first argument.

pub mod cache_mount;
mod common;
pub mod debug;
pub mod du;
mod format;
pub mod graph;
pub mod history;
mod human;
pub mod images;
pub mod inspect;
pub mod load;
pub mod prune;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod save;
mod table;
pub mod tag;

use crate::cli::failure::Failure;

/// One `rbuild NAME …` command.
pub struct Subcommand {
    pub name: &'static str,
    /// One line for `rbuild --help`.
    pub about: &'static str,
    /// A typical use, shown under `about` in `rbuild --help`.
    pub example: &'static str,
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
        example: "rbuild graph . | dot -Tpng > graph.png",
        run: graph::run,
        // Reads image configs and the timings file, which the invoking user owns.
        needs_namespace: false,
    },
    // The store commands run inside rbuild's user namespace when not root: a
    // rootless build's snapshots hold files of the namespace's other ids,
    // which only its root can remove (rmi, prune) or read (sizes).
    store_command("images", "List the images in the store", "rbuild images -q app", images::run),
    store_command("history", "Show the history of an image", "rbuild history app:1.0", history::run),
    store_command("inspect", "Show images' configs, layers and digests as JSON", "rbuild inspect -f '{{json .RootFS}}' app:1.0", inspect::run),
    store_command("tag", "Give an image in the store another name", "rbuild tag app:1.0 registry.example.com/app:1.0", tag::run),
    store_command("rmi", "Untag and remove images from the store", "rbuild rmi app:1.0", rmi::run),
    store_command("save", "Write images to a docker-archive tar (stdout by default)", "rbuild save app:1.0 | docker load", save::run),
    store_command("load", "Load images from a docker or OCI archive (stdin by default)", "docker save base:1 | rbuild load", load::run),
    store_command("pull", "Pull an image from a registry into the store", "rbuild pull 127.0.0.1:5000/team/base:1", pull::run),
    store_command("push", "Push an image from the store to a registry", "rbuild push app:1 127.0.0.1:5000/team/app:1", push::run),
    store_command(
        "cache-mount",
        "List, export, import and remove the cache mounts of RUN --mount=type=cache",
        "rbuild cache-mount export -o caches.tar",
        cache_mount::run,
    ),
    store_command(
        "debug",
        "Open a shell where a RUN failed, or in an image; --list the kept failures",
        "rbuild debug last -- cat /tmp/build.log",
        debug::run,
    ),
    Subcommand {
        name: "executor",
        about: "Build with kaniko's flags (also run as `executor` through a symlink)",
        example: "rbuild executor --context dir://. --destination registry.example.com/app:1",
        run: crate::cli::executor::run,
        // It builds, like `rbuild build`.
        needs_namespace: true,
    },
    store_command("du", "Show the store's disk usage by kind", "rbuild du --format json", du::run),
    store_command(
        "prune",
        "Remove unused data: untagged images, build cache, unreferenced content",
        "rbuild prune --keep-storage 10GB -f",
        prune::run,
    ),
];

const fn store_command(
    name: &'static str,
    about: &'static str,
    example: &'static str,
    run: fn(Vec<String>) -> Result<(), Failure>,
) -> Subcommand {
    Subcommand {
        name,
        about,
        example,
        run,
        needs_namespace: true,
    }
}

/// The subcommand named `name`, if any.
pub fn find(name: &str) -> Option<&'static Subcommand> {
    SUBCOMMANDS.iter().find(|c| c.name == name)
}

/// `docker` commands a user may try that rbuild does not have (yet), with
/// what to use instead.
const NOT_COMMANDS: &[(&str, &str)] = &[
    ("run", "rbuild builds images and does not run containers; load the image into Docker or podman (`rbuild save IMAGE | docker load`)"),
    ("login", "rbuild reads the credentials `docker login` writes to ~/.docker/config.json"),
    ("buildx", "rbuild's build takes buildx's flags itself: `rbuild build …`"),
    ("image", "the image commands are top-level: `rbuild images`, `rbuild rmi`, `rbuild history`, …"),
];

/// Whether `arg`, the first argument, reads as a mistyped or unknown command
/// rather than the build context: a plain word that names no file.
pub fn looks_like_unknown_command(arg: &str) -> bool {
    !arg.is_empty()
        && arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !arg.starts_with('-')
        && !std::path::Path::new(arg).exists()
}

/// The usage error for `rbuild NAME` when NAME is no command and no directory.
pub fn unknown_command(name: &str) -> Failure {
    let names = std::iter::once("build").chain(SUBCOMMANDS.iter().map(|c| c.name));
    let mut message = format!("unknown command {name:?}");
    if let Some((_, advice)) = NOT_COMMANDS.iter().find(|(n, _)| *n == name) {
        message.push_str(&format!(": {advice}"));
    } else if let Some(near) = rbuild_frontend::suggest::closest(name, names) {
        message.push_str(&format!(" (did you mean {near}?)"));
    }
    message.push_str("; `rbuild --help` lists the commands, and `rbuild build PATH` builds a directory of that name");
    Failure::Usage(message)
}

/// The `Commands:` section of `rbuild --help`.
pub fn help_section() -> String {
    let mut text = String::from(
        "Commands (`rbuild COMMAND --help` for each one's options):\n  \
         build      Build an image from a Dockerfile (the default command)\n             \
         e.g. rbuild build -t app:1.0 .\n",
    );
    for command in SUBCOMMANDS {
        text.push_str(&format!("  {:<10} {}\n             e.g. {}\n", command.name, command.about, command.example));
    }
    text
}
