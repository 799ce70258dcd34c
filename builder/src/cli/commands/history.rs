//! `rbuild history IMAGE`: the image's history, newest first, as `docker
//! history` shows it: each history entry with the size of the layer it made
//! (0B for entries that made none); only the newest row carries the image id,
//! the others `<missing>`, as for any image Docker did not build step by step.
//! `--format` gives the rows as JSON or through a template (see [`super::format`]).

use anyhow::anyhow;
use clap::{ArgAction, Parser};
use rbuild_store::{Store, StoredImage};

use super::common::{find_image, open_store, parse_args};
use super::format::{field, Field, Format, Row as FormatRow};
use super::human;
use super::table::{ellipsis, Table};
use crate::cli::failure::Failure;
use crate::engine::timefmt::{now_unix, rfc3339};

/// The fields of a row for `--format`, with their column names.
const FIELDS: &[Field] = &[
    field("ID", "IMAGE"),
    field("CreatedAt", "CREATED AT"),
    field("CreatedSince", "CREATED"),
    field("CreatedBy", "CREATED BY"),
    field("Size", "SIZE"),
    field("Comment", "COMMENT"),
];

/// Show the history of an image.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild history",
    override_usage = "rbuild history [OPTIONS] IMAGE"
)]
pub struct HistoryArgs {
    /// The image: a tag or an image id (prefix)
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,

    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,

    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,

    /// Output format: table, json (an object per line), or a template such
    /// as '{{.CreatedBy}}' ('table ' before it adds a header)
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: String,
}

/// One row of the history.
struct Row {
    id: String,
    created: Option<String>,
    created_by: String,
    size: u64,
    comment: String,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<HistoryArgs>(args)? else {
        return Ok(());
    };
    let format = Format::parse(&args.format, FIELDS)?;
    let store = open_store()?;
    let image = find_image(&store, &args.image).map_err(Failure::Build)?;
    let rows = rows(&store, &image, args.no_trunc)?;
    if args.quiet {
        for row in &rows {
            println!("{}", row.id);
        }
        return Ok(());
    }
    let created_header = if args.human { "CREATED" } else { "CREATED AT" };
    let mut table = Table::new(&["IMAGE", created_header, "CREATED BY", "SIZE", "COMMENT"]);
    let mut formatted = Vec::new();
    let now = now_unix();
    for row in rows {
        let created_at = row
            .created
            .as_deref()
            .and_then(human::parse_rfc3339)
            .map_or_else(|| "N/A".to_string(), rfc3339);
        // As Docker's: without -H, CREATED (and CreatedSince) is the time itself.
        let created = match args.human {
            true => human::since(row.created.as_deref(), now),
            false => created_at.clone(),
        };
        let created_by = row.created_by.replace('\t', " ");
        let created_by = match args.no_trunc {
            true => created_by,
            false => ellipsis(&created_by, 45),
        };
        let size = match args.human {
            true => human::size(row.size, 3),
            false => row.size.to_string(),
        };
        formatted.push(
            FormatRow::new()
                .with("ID", row.id.clone())
                .with("CreatedAt", created_at)
                .with("CreatedSince", created.clone())
                .with("CreatedBy", created_by.clone())
                .with("Size", size.clone())
                .with("Comment", row.comment.clone())
                .sorted(),
        );
        table.row(vec![row.id, created, created_by, size, row.comment]);
    }
    let text = format.render(&formatted, || table.render());
    print!("{text}");
    Ok(())
}

/// The history entries, newest first, each non-empty one with its layer.
fn rows(store: &Store, image: &StoredImage, no_trunc: bool) -> Result<Vec<Row>, Failure> {
    let mut layers = image.layers.iter();
    let mut rows = Vec::new();
    for entry in &image.config.history {
        let size = match entry.empty_layer {
            true => 0,
            false => {
                let layer = layers.next().ok_or_else(|| {
                    Failure::Build(anyhow!(
                        "image {}: its history names more layers than it has ({})",
                        image.id(),
                        image.layers.len()
                    ))
                })?;
                store
                    .layer_size(layer)
                    .map_err(|e| Failure::Build(e.into()))?
            }
        };
        rows.push(Row {
            id: "<missing>".to_string(),
            created: entry.created.clone(),
            created_by: entry.created_by.clone().unwrap_or_default(),
            size,
            comment: entry.comment.clone().unwrap_or_default(),
        });
    }
    rows.reverse();
    if let Some(newest) = rows.first_mut() {
        newest.id = match no_trunc {
            true => image.id().to_string(),
            false => image.id().short().to_string(),
        };
    }
    Ok(rows)
}
