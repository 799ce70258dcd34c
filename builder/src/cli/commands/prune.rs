//! `rbuild prune [--all] [--keep-storage SIZE]`: frees space in the store.
//! Content nothing uses goes first; then build cache and untagged images,
//! least recently used first (tagged images too with `--all`); with
//! `--keep-storage`, only until the store is no larger than SIZE; then cache
//! mounts (`RUN --mount=type=cache`), least recently used first. Nothing a
//! running rbuild process uses is ever removed.

use std::io::{BufRead, IsTerminal, Write};

use clap::Parser;
use rbuild_store::gc::PruneOptions;
use rbuild_store::records::RecordKind;

use super::common::{open_store, parse_args};
use super::human;
use crate::cli::failure::Failure;
use crate::engine::cache_mounts::CacheMounts;

/// Remove unused data from rbuild's store.
#[derive(Debug, Parser)]
#[command(name = "rbuild prune", override_usage = "rbuild prune [OPTIONS]")]
pub struct PruneArgs {
    /// Remove tagged images too: everything no running build uses
    #[arg(short, long)]
    pub all: bool,

    /// Stop once the store is this small (e.g. 10GB; binary units)
    #[arg(long, value_name = "SIZE", value_parser = human::parse_size)]
    pub keep_storage: Option<u64>,

    /// Do not ask for confirmation (it is only asked on a terminal)
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<PruneArgs>(args)? else {
        return Ok(());
    };
    // As `docker system prune`: a person at a terminal is told what goes and
    // asked; scripts (no terminal on stdin) and --force are not.
    if !args.force && std::io::stdin().is_terminal() && !confirmed(args.all)? {
        return Ok(());
    }
    let store = open_store()?;
    let report = store
        .prune(&PruneOptions {
            all: args.all,
            keep_storage: args.keep_storage,
        })
        .map_err(|e| Failure::Build(e.into()))?;
    let images: Vec<_> = report
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::Image)
        .collect();
    let cache: Vec<_> = report
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::BuildCache)
        .collect();
    let failures: Vec<_> = report.records.iter().filter(|r| r.kind == RecordKind::KeptFailure).collect();
    if !failures.is_empty() {
        println!("Deleted kept failures:");
        for record in failures {
            println!("{}", record.id);
        }
        println!();
    }
    if !images.is_empty() {
        println!("Deleted Images:");
        for image in images {
            for name in &image.names {
                println!("untagged: {name}");
            }
            println!("deleted: {}", image.id);
        }
        println!();
    }
    if !cache.is_empty() {
        println!("Deleted build cache objects:");
        for record in cache {
            println!("{}", record.id);
        }
        println!();
    }
    // Cache mounts are build cache too: after the store's own, least recently used first.
    let cache_mounts = CacheMounts::new(store.root().join("cache-mounts"));
    let removed = match args.keep_storage {
        Some(keep) => {
            let size = store.disk_usage().map_err(|e| Failure::Build(e.into()))?.total;
            cache_mounts.prune(&|freed| size.saturating_sub(freed) <= keep)
        }
        None => cache_mounts.prune(&|_| false),
    }
    .map_err(|e| Failure::Build(anyhow::anyhow!("pruning cache mounts: {e}")))?;
    if !removed.is_empty() {
        println!("Deleted cache mounts:");
        for mount in &removed {
            println!("{}", mount.id);
        }
        println!();
    }
    let reclaimed = report.reclaimed + removed.iter().map(|m| m.size).sum::<u64>();
    println!("Total reclaimed space: {}", human::size(reclaimed, 4));
    Ok(())
}

/// Says what a prune removes and reads the answer; true for `y`/`yes`.
fn confirmed(all: bool) -> Result<bool, Failure> {
    let images = if all { "all images without at least one running build using them" } else { "all untagged images" };
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "WARNING! This will remove:\n  - {images}\n  - all build cache and cache mounts\n  - all content nothing uses (left by interrupted builds)\n\nAre you sure you want to continue? [y/N] "
    );
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::Build(anyhow::anyhow!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}
