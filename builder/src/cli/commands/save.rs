//! `rbuild save [-o FILE] IMAGE…`: images from the store as one archive that
//! `docker load` (and podman, skopeo, containerd) reads, the same format as a
//! build's `-o` archive. Images named by tag carry that tag; images named by
//! id carry none, as with `docker save`. A FILE ending in `.gz` or `.tgz` is
//! gzipped whole; the archive goes to stdout without `-o` or with `-o -`.
//! Images go as they are stored (plain layers stay plain; only zstd ones are
//! converted), so `rbuild load` gives them back with the same manifest digest.
//! Of a multi-platform tag, the host's image goes, or `--platform`'s.

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use rbuild_store::{write_archive, ArchiveFormat, Platform, Reference, Store, StoredImage};

use super::common::{find_image_for, open_store, parse_args};
use crate::cli::failure::Failure;
use crate::engine::output::{is_gzip_name, write_output, Destination};

/// Save one or more images to a tar archive (streamed to stdout by default).
#[derive(Debug, Parser)]
#[command(
    name = "rbuild save",
    override_usage = "rbuild save [OPTIONS] IMAGE [IMAGE...]"
)]
pub struct SaveArgs {
    /// Images: tags or image ids (prefixes)
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,

    /// Write to a file instead of stdout (`-` is stdout; `.gz`/`.tgz` gzips it)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Of a multi-platform image, save the image for this platform (default: the host's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<SaveArgs>(args)? else {
        return Ok(());
    };
    let dest = match args.output.filter(|p| p.as_os_str() != "-") {
        Some(path) => Destination::File(path),
        None => Destination::Stdout,
    };
    if dest == Destination::Stdout && io::stdout().is_terminal() {
        return Err(Failure::Usage(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
        ));
    }
    let platform = args.platform.as_deref().map(Platform::parse).transpose().map_err(Failure::Usage)?;
    let store = open_store()?;
    let images = resolve(&store, &args.images, platform.as_ref())?;
    let gzip = matches!(&dest, Destination::File(path) if is_gzip_name(&path.to_string_lossy()));
    write_output(&dest, gzip, &mut io::stdout(), |out| {
        write_archive(&store, &images, &ArchiveFormat::DockerAsStored, out).map_err(anyhow::Error::from)
    })
    .with_context(|| format!("writing the archive to {dest}"))
    .map_err(Failure::Build)
}

/// The images to save, each once, with the tags they were named by.
/// A multi-platform tag gives its image for `platform` (the host's when `None`).
fn resolve(store: &Store, names: &[String], platform: Option<&Platform>) -> Result<Vec<(StoredImage, Vec<Reference>)>, Failure> {
    let mut images: Vec<(StoredImage, Vec<Reference>)> = Vec::new();
    for name in names {
        let image = find_image_for(store, name, platform).map_err(Failure::Build)?;
        let tag = match Reference::parse(name) {
            Ok(reference) if reference.digest().is_none() => {
                let target = store.resolve_tag(&reference).map_err(|e| Failure::Build(e.into()))?;
                let targets = match target {
                    Some(target) => store.tag_targets(&target).map_err(|e| Failure::Build(e.into()))?,
                    None => Vec::new(),
                };
                targets.contains(&image.manifest_digest).then_some(reference)
            }
            _ => None,
        };
        let entry = match images
            .iter_mut()
            .find(|(i, _)| i.manifest_digest == image.manifest_digest)
        {
            Some(entry) => entry,
            None => {
                images.push((image, Vec::new()));
                images.last_mut().expect("just pushed")
            }
        };
        if let Some(tag) = tag {
            if !entry.1.contains(&tag) {
                entry.1.push(tag);
            }
        }
    }
    Ok(images)
}
