//! `rbuild push [--insecure-registry H] IMAGE [DESTINATION]`: push an image in the store
//! to a registry, like `docker push`; to another name with DESTINATION (`skopeo copy`'s
//! two-argument form). Blobs the registry has are not sent again. A multi-platform tag
//! (an index) is pushed whole: each platform's image, then the index.

use clap::Parser;
use rbuild_store::registry::RegistryAccess;
use rbuild_store::{Compression, Platform, Reference, Store, StoredImage};

use super::common::{find_image, open_store, parse_args};
use crate::cli::failure::Failure;
use crate::engine::output::layer_codec;
use crate::engine::pulling::{insecure_registries, open_registry, push_index_logged, push_logged};

/// Push an image from rbuild's store to a registry.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild push",
    override_usage = "rbuild push [OPTIONS] IMAGE [DESTINATION]",
    after_help = "Examples:\n  rbuild push 127.0.0.1:5000/team/app:1\n  rbuild push app:1 registry.example.com/team/app:1\n\nCredentials come from docker's config.json ($DOCKER_CONFIG or ~/.docker): auths, credsStore, credHelpers."
)]
pub struct PushArgs {
    /// The image: a name (pushed as that name unless DESTINATION is given) or an image id
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Where to push it: REGISTRY/REPOSITORY[:TAG]
    #[arg(value_name = "DESTINATION")]
    pub destination: Option<String>,

    /// Layer compression: gzip (default; every client reads it) or zstd
    #[arg(long, value_name = "gzip|zstd", default_value = "gzip")]
    pub compression: String,

    /// Compression level of the layers the push compresses: gzip 0–9, zstd 1–19 (layers
    /// already stored in that compression are pushed as they are)
    #[arg(long = "compression-level", value_name = "N")]
    pub compression_level: Option<String>,

    /// Reach this registry over plain HTTP (loopback registries always are); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,

    /// Print only the pushed manifest's digest
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<PushArgs>(args)? else {
        return Ok(());
    };
    let name = args.destination.as_deref().unwrap_or(&args.image);
    let destination = Reference::parse(name).map_err(|e| Failure::Usage(format!("invalid reference {name:?}: {e}")))?;
    if destination.digest().is_some() {
        return Err(Failure::Usage(format!("cannot push to {name}: a push names a tag, not a digest")));
    }
    let compression = layer_codec(Some(&args.compression), args.compression_level.as_deref()).map_err(Failure::Usage)?;
    if compression.compression == Compression::None {
        return Err(Failure::Usage("--compression=uncompressed is for archives; a push sends gzip or zstd layers".into()));
    }
    let insecure = insecure_registries(&args.insecure_registries).map_err(Failure::Usage)?;
    let store = open_store()?;
    let platform_images = multi_platform_images(&store, &args.image).map_err(Failure::Build)?;
    let registry = open_registry(Platform::host(), RegistryAccess { insecure, ..RegistryAccess::default() }).map_err(|e| Failure::Build(e.into()))?;
    let quiet = args.quiet;
    let mut log = |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let pushed = match platform_images {
        // A multi-platform tag goes as it is: each image, then the index.
        Some(images) => push_index_logged(&registry, &store, &images, &destination, compression, &mut log),
        None => {
            let image = find_image(&store, &args.image).map_err(Failure::Build)?;
            push_logged(&registry, &store, &image, &destination, compression, &mut log)
        }
    }
    .map_err(|e| Failure::Build(e.into()))?;
    // As `docker push` ends: the digest, which `NAME@DIGEST` pulls.
    if quiet {
        println!("{}", pushed.digest);
    } else {
        println!("{}: digest: {}", destination.full(), pushed.digest);
    }
    Ok(())
}

/// The images of `name` when it is a tag naming an index of several platforms.
fn multi_platform_images(store: &Store, name: &str) -> anyhow::Result<Option<Vec<StoredImage>>> {
    let Ok(reference) = Reference::parse(name) else { return Ok(None) };
    if reference.digest().is_some() {
        return Ok(None);
    }
    let Some(target) = store.resolve_tag(&reference)? else { return Ok(None) };
    let Some(entries) = store.platform_images(&target)? else { return Ok(None) };
    Ok(Some(entries.iter().map(|entry| store.image(&entry.manifest)).collect::<Result<_, _>>()?))
}
