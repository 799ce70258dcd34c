//! `rbuild pull [--platform P] REF`: fetch an image into the store without
//! building, like `docker pull`. The reference is always resolved at its
//! registry (that is what pulling means); layers the store already has are
//! not downloaded again.

use anyhow::Context as _;
use clap::Parser;
use rbuild_store::registry::RegistryAccess;
use rbuild_store::{Platform, Reference, Store};

use crate::cli::failure::Failure;
use crate::engine::pulling::{insecure_registries, open_registry, pull_logged};

/// Pull an image from a registry into rbuild's store.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild pull",
    override_usage = "rbuild pull [OPTIONS] NAME[:TAG|@DIGEST]",
    after_help = "Examples:\n  rbuild pull debian:12\n  rbuild pull --platform linux/arm64 127.0.0.1:5000/team/base:1\n\nCredentials come from docker's config.json ($DOCKER_CONFIG or ~/.docker): auths, credsStore, credHelpers."
)]
pub struct PullArgs {
    /// The image to pull
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub reference: String,

    /// The platform to pull from a multi-platform image (default: the host's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// Reach this registry over plain HTTP (loopback registries always are); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,

    /// Print only the image's full name
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let args = match PullArgs::try_parse_from(args) {
        Ok(args) => args,
        Err(error) => return Failure::from_clap(error).map_or(Ok(()), Err),
    };
    let reference = Reference::parse(&args.reference).map_err(|e| Failure::Usage(e.to_string()))?;
    let platform = match &args.platform {
        Some(text) => Platform::parse(text).map_err(Failure::Usage)?,
        None => Platform::host(),
    };
    let insecure = insecure_registries(&args.insecure_registries).map_err(Failure::Usage)?;

    let store = Store::open(Store::default_root()).context("opening rbuild's store")?;
    let registry = open_registry(platform, RegistryAccess { insecure, ..RegistryAccess::default() }).map_err(|e| Failure::Build(e.into()))?;
    let quiet = args.quiet;
    let outcome = pull_logged(&registry, &store, &reference, &mut |line| {
        if !quiet {
            eprintln!("{line}");
        }
    });
    let _ = store.remove_own_temp();
    let pulled = outcome.map_err(|e| Failure::Build(e.into()))?;
    // As `docker pull` ends: the full name of what was pulled.
    println!("{}", reference.full());
    if !quiet {
        eprintln!("image id: {}", pulled.image.config_digest);
    }
    Ok(())
}
