//! `rbuild load [-i FILE]`: images from a docker-archive or OCI-archive tar
//! (plain, gzip or zstd; what `docker save`, `skopeo` and `rbuild save`
//! write) into the store, tagged with the names the archive gives them, as
//! `docker load` does. Without `-i`, the archive is read from stdin.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use clap::Parser;
use rbuild_store::Store;

use super::common::{open_store, parse_args};
use crate::cli::failure::Failure;

/// Load images from a tar archive (or stdin) into rbuild's store.
#[derive(Debug, Parser)]
#[command(name = "rbuild load", override_usage = "rbuild load [OPTIONS]")]
pub struct LoadArgs {
    /// Read from a tar archive file instead of stdin
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<LoadArgs>(args)? else {
        return Ok(());
    };
    let input = args.input.filter(|p| p.as_os_str() != "-");
    if input.is_none() && io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "requested load from stdin, but stdin is a terminal: give -i FILE or redirect an archive".into(),
        ));
    }
    let store = open_store()?;
    let loaded = load(&store, input).map_err(Failure::Build)?;
    if !args.quiet {
        print!("{loaded}");
    }
    Ok(())
}

/// Imports and tags; returns what `docker load` would print.
fn load(store: &Store, input: Option<PathBuf>) -> anyhow::Result<String> {
    // The importer reads a file; stdin is first kept in the store's temp area
    // (removed when this returns).
    let staging = store.tempdir()?;
    let path = match input {
        Some(path) => path,
        None => {
            let path = staging.path().join("stdin.tar");
            let mut file = BufWriter::new(
                File::create(&path).with_context(|| format!("creating {}", path.display()))?,
            );
            io::copy(&mut io::stdin().lock(), &mut file)
                .context("reading the archive from stdin")?;
            file.flush()
                .with_context(|| format!("writing {}", path.display()))?;
            path
        }
    };
    let images = store
        .import_archive(&path)
        .with_context(|| format!("loading {}", path.display()))?;
    let mut printed = String::new();
    for (image, names) in images {
        if names.is_empty() {
            printed.push_str(&format!("Loaded image ID: {}\n", image.id()));
        }
        for name in names {
            let name = match name.tag() {
                Some(_) => name,
                None => name.with_tag("latest").map_err(|e| anyhow!(e))?,
            };
            store
                .tag(&name, &image.manifest_digest)
                .with_context(|| format!("tagging the loaded image as {}", name.familiar()))?;
            printed.push_str(&format!("Loaded image: {}\n", name.familiar()));
        }
    }
    Ok(printed)
}
