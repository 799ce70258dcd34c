//! `rbuild save [-o FILE] IMAGE…`: images from the store as one archive that
//! `docker load` (and podman, skopeo, containerd) reads, the same format as a
//! build's `-o` archive. Images named by tag carry that tag; images named by
//! id carry none, as with `docker save`. A FILE ending in `.gz` or `.tgz` is
//! gzipped whole; the archive goes to stdout without `-o` or with `-o -`.
//! Images go as they are stored (plain layers stay plain; only zstd ones are
//! converted), so `rbuild load` gives them back with the same manifest digest.

use std::fs;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use clap::Parser;
use rbuild_store::compress::BackgroundEncoder;
use rbuild_store::{write_archive, ArchiveFormat, Compression, Reference, Store, StoredImage};

use super::common::{find_image, open_store, parse_args};
use crate::cli::failure::Failure;

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
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<SaveArgs>(args)? else {
        return Ok(());
    };
    let output = args.output.filter(|p| p.as_os_str() != "-");
    if output.is_none() && io::stdout().is_terminal() {
        return Err(Failure::Usage(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
        ));
    }
    let store = open_store()?;
    let images = resolve(&store, &args.images)?;
    let result = match &output {
        None => write_stdout(&store, &images),
        Some(path) => write_file(&store, &images, path),
    };
    result.map_err(Failure::Build)
}

/// The images to save, each once, with the tags they were named by.
fn resolve(store: &Store, names: &[String]) -> Result<Vec<(StoredImage, Vec<Reference>)>, Failure> {
    let mut images: Vec<(StoredImage, Vec<Reference>)> = Vec::new();
    for name in names {
        let image = find_image(store, name).map_err(Failure::Build)?;
        let tag = match Reference::parse(name) {
            Ok(reference) if reference.digest().is_none() => store
                .resolve_tag(&reference)
                .map_err(|e| Failure::Build(e.into()))?
                .filter(|manifest| *manifest == image.manifest_digest)
                .map(|_| reference),
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

fn write_stdout(store: &Store, images: &[(StoredImage, Vec<Reference>)]) -> anyhow::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    write_archive(store, images, &ArchiveFormat::DockerAsStored, &mut out)
        .context("writing the archive to stdout")?;
    out.flush().context("writing the archive to stdout")
}

/// Writes the archive to a temp file beside `path` and renames it into place:
/// a failed save never leaves half an archive under the asked name.
fn write_file(
    store: &Store,
    images: &[(StoredImage, Vec<Reference>)],
    path: &Path,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let file = temp
        .as_file()
        .try_clone()
        .context("duplicating a file handle")?;
    let writing = || format!("writing {}", path.display());
    let file = if gzipped(path) {
        let mut encoder = BackgroundEncoder::spawn(Compression::Gzip, BufWriter::new(file))
            .with_context(writing)?;
        write_archive(store, images, &ArchiveFormat::DockerAsStored, &mut encoder).with_context(writing)?;
        encoder.finish().with_context(writing)?
    } else {
        let mut out = BufWriter::new(file);
        write_archive(store, images, &ArchiveFormat::DockerAsStored, &mut out).with_context(writing)?;
        out
    };
    file.into_inner()
        .map_err(|e| e.into_error())
        .with_context(writing)?;
    // A temp file is created 0600; an archive is an ordinary file.
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .with_context(writing)?;
    temp.as_file().sync_all().with_context(writing)?;
    temp.persist(path)
        .map_err(|e| anyhow!("{}: {}", writing(), e.error))?;
    Ok(())
}

fn gzipped(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".gz") || name.ends_with(".tgz")
}
