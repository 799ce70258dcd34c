//! `rbuild tag SOURCE TARGET`: another name for an image in the store.

use clap::Parser;
use rbuild_store::Reference;

use super::common::{find_image, open_store, parse_args};
use crate::cli::failure::Failure;

/// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild tag",
    override_usage = "rbuild tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]"
)]
pub struct TagArgs {
    /// The image: a tag or an image id (prefix)
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    /// The new name
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<TagArgs>(args)? else {
        return Ok(());
    };
    let target = Reference::parse(&args.target)
        .map_err(|e| Failure::Usage(format!("invalid reference format: {e}")))?;
    if target.digest().is_some() {
        return Err(Failure::Usage(format!(
            "refusing to create a tag with a digest reference: {}",
            args.target
        )));
    }
    let store = open_store()?;
    let image = find_image(&store, &args.source).map_err(Failure::Build)?;
    store.tag(&target, &image.manifest_digest).map_err(|e| {
        Failure::Build(anyhow::Error::new(e).context(format!(
            "tagging {} as {}",
            args.source,
            target.familiar()
        )))
    })
}
