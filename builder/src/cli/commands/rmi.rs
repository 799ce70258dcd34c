//! `rbuild rmi [-f] IMAGE…`: untag images, and remove those left without a
//! tag, as `docker rmi` does; their content nothing else uses goes too.

use anyhow::anyhow;
use clap::Parser;
use rbuild_store::listing::Removal;

use super::common::{open_store, parse_args};
use crate::cli::failure::Failure;

/// Remove one or more images.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild rmi",
    override_usage = "rbuild rmi [OPTIONS] IMAGE [IMAGE...]"
)]
pub struct RmiArgs {
    /// Images: tags or image ids (prefixes)
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,

    /// Remove an image by id even when several tags name it (all of them go)
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<RmiArgs>(args)? else {
        return Ok(());
    };
    let store = open_store()?;
    // Like Docker, one failure does not stop the others; each is reported in
    // turn, and the last one becomes the command's failure.
    let mut failure: Option<Failure> = None;
    for name in &args.images {
        match store.remove_image(name, args.force) {
            Ok((removals, _)) => {
                for removal in removals {
                    match removal {
                        Removal::Untagged(tag) => println!("Untagged: {}", tag.familiar()),
                        Removal::Deleted(id) => println!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => {
                if let Some(previous) = failure.take() {
                    previous.report();
                }
                failure = Some(Failure::Build(anyhow!(e)));
            }
        }
    }
    failure.map_or(Ok(()), Err)
}
