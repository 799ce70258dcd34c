//! `rbuild images [REPOSITORY[:TAG]]`: the images in the store, as `docker
//! images` lists them: a row per tag (`<none>` for an untagged image), newest
//! first. SIZE is the sum of the image's layer sizes counted as Docker's
//! overlay2 driver counts them (the files' sizes), so both show the same.
//! `--format` gives the rows as JSON or through a template (see [`super::format`]).

use clap::Parser;
use rbuild_store::indexes::image_platform;
use rbuild_store::listing::ImageSummary;
use rbuild_store::Reference;

use super::common::{open_store, parse_args};
use super::format::{field, Field, Format, Row};
use super::human;
use super::table::Table;
use crate::cli::failure::Failure;
use crate::engine::timefmt::{now_unix, rfc3339};

/// The fields of a row for `--format`, with their column names.
const FIELDS: &[Field] = &[
    field("Repository", "REPOSITORY"),
    field("Tag", "TAG"),
    field("ID", "IMAGE ID"),
    field("CreatedAt", "CREATED AT"),
    field("CreatedSince", "CREATED"),
    field("Size", "SIZE"),
    field("Platform", "PLATFORM"),
];

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

    /// Output format: table, json (an object per line), or a template such
    /// as '{{.Repository}}:{{.Tag}}' ('table ' before it adds a header)
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: String,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<ImagesArgs>(args)? else {
        return Ok(());
    };
    let filter = args.filter.as_deref().map(Filter::parse).transpose()?;
    let format = Format::parse(&args.format, FIELDS)?;
    let store = open_store()?;
    let list = store.list_images().map_err(|e| Failure::Build(e.into()))?;
    for broken in &list.broken {
        eprintln!("warning: cannot read image {broken}");
    }
    let mut images = list.images;
    images.sort_by_key(|i| std::cmp::Reverse(created(i)));
    let now = now_unix();
    let mut table = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "PLATFORM"]);
    let mut ids = String::new();
    let mut rows = Vec::new();
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
            let since = human::since(image.image.config.created.as_deref(), now);
            let size = human::size(image.size, 3);
            // A multi-platform tag is listed once per platform it names.
            let platform = image_platform(&image.image).to_string();
            rows.push(
                Row::new()
                    .with("Repository", repository.clone())
                    .with("Tag", tag.clone())
                    .with("ID", id.clone())
                    .with("CreatedAt", created_at(image))
                    .with("CreatedSince", since.clone())
                    .with("Size", size.clone())
                    .with("Platform", platform.clone())
                    .sorted(),
            );
            table.row(vec![repository, tag, id.clone(), since, size, platform]);
        }
    }
    let text = match args.quiet {
        true => ids,
        false => format.render(&rows, || table.render()),
    };
    print!("{text}");
    Ok(())
}

/// The creation time in RFC 3339 (UTC), `N/A` when the config has none.
fn created_at(image: &ImageSummary) -> String {
    match created(image) {
        i64::MIN => "N/A".to_string(),
        time => rfc3339(time),
    }
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
