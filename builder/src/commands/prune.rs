//! `rbuild prune [--all] [--keep-storage SIZE]`: frees space in the store.
//! Content nothing uses goes first; then build cache and untagged images,
//! least recently used first (tagged images too with `--all`); with
//! `--keep-storage`, only until the store is no larger than SIZE. Nothing a
//! running rbuild process uses is ever removed.

use clap::Parser;
use rbuild_store::gc::PruneOptions;
use rbuild_store::records::RecordKind;

use super::common::{open_store, parse_args};
use super::human;
use crate::failure::Failure;

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
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<PruneArgs>(args)? else {
        return Ok(());
    };
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
    println!(
        "Total reclaimed space: {}",
        human::size(report.reclaimed, 4)
    );
    Ok(())
}
