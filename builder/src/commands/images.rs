//! `rbuild images [REPOSITORY[:TAG]]`: the images in the store, as `docker
//! images` lists them: a row per tag (`<none>` for an untagged image), newest
//! first. SIZE is the sum of the image's layer sizes counted as Docker's
//! overlay2 driver counts them (the files' sizes), so both show the same.

use clap::Parser;
use rbuild_store::listing::ImageSummary;
use rbuild_store::Reference;

use super::common::{open_store, parse_args};
use super::human;
use super::table::Table;
use crate::failure::Failure;
use crate::timefmt::now_unix;

/// List the images in rbuild's store.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild images",
    override_usage = "rbuild images [OPTIONS] [REPOSITORY[:TAG]]"
)]
pub struct ImagesArgs {
    /// Only images of this repository (and tag)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub filter: Option<String>,

    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,

    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<ImagesArgs>(args)? else {
        return Ok(());
    };
    let filter = args.filter.as_deref().map(Filter::parse).transpose()?;
    let store = open_store()?;
    let list = store.list_images().map_err(|e| Failure::Build(e.into()))?;
    for broken in &list.broken {
        eprintln!("warning: cannot read image {broken}");
    }
    let mut images = list.images;
    images.sort_by_key(|i| std::cmp::Reverse(created(i)));
    let now = now_unix();
    let mut table = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    let mut ids = String::new();
    for image in &images {
        let id = match args.no_trunc {
            true => image.image.id().to_string(),
            false => image.image.id().short().to_string(),
        };
        let names: Vec<(String, String)> = match image.tags.is_empty() {
            true => vec![("<none>".into(), "<none>".into())],
            false => image
                .tags
                .iter()
                .map(|t| {
                    (
                        t.familiar_repository(),
                        t.tag().unwrap_or("<none>").to_string(),
                    )
                })
                .collect(),
        };
        for (repository, tag) in names {
            if let Some(filter) = &filter {
                if !filter.matches(&repository, &tag) {
                    continue;
                }
            }
            ids.push_str(&id);
            ids.push('\n');
            table.row(vec![
                repository,
                tag,
                id.clone(),
                human::since(image.image.config.created.as_deref(), now),
                human::size(image.size, 3),
            ]);
        }
    }
    print!("{}", if args.quiet { ids } else { table.render() });
    Ok(())
}

fn created(image: &ImageSummary) -> i64 {
    image
        .image
        .config
        .created
        .as_deref()
        .and_then(human::parse_rfc3339)
        .unwrap_or(i64::MIN)
}

/// `app` (every tag of it) or `app:1.0`, compared as Docker shows names.
struct Filter {
    repository: String,
    tag: Option<String>,
}

impl Filter {
    fn parse(text: &str) -> Result<Filter, Failure> {
        let reference = Reference::parse(text)
            .map_err(|e| Failure::Usage(format!("invalid reference format: {e}")))?;
        // Parsing adds `:latest`; only a tag the user wrote filters by tag.
        let last = text.rsplit('/').next().unwrap_or(text);
        let tag = last
            .contains(':')
            .then(|| reference.tag().unwrap_or_default().to_string());
        Ok(Filter {
            repository: reference.familiar_repository(),
            tag,
        })
    }

    fn matches(&self, repository: &str, tag: &str) -> bool {
        repository == self.repository && self.tag.as_deref().is_none_or(|t| t == tag)
    }
}
