//! `rbuild inspect IMAGE…`: what the store knows of images, as a JSON array
//! with an object per image in the shape of `docker image inspect` where it
//! applies (`Id`, `RepoTags`, `RepoDigests`, `Created`, `Architecture`,
//! `Os`, `Variant`, `Config`, `RootFS`, `Size`), plus rbuild's own
//! `ManifestDigest` and `Layers`. `RepoDigests` are the registry digests a
//! pull pinned to the image (see `pins` in the store), under each of its
//! repositories. An unknown image is reported and the others still printed;
//! `--format` formats each object with a template (see [`super::format`]).

use std::collections::BTreeSet;

use anyhow::Context as _;
use clap::Parser;
use rbuild_store::{Store, StoredImage};
use serde::Serialize;
use serde_json::{json, Value};

use super::common::{find_image, open_store, parse_args};
use super::format::{field, Field, Format, Row};
use crate::cli::failure::Failure;

/// The fields of an object for `--format`, with their column names.
const FIELDS: &[Field] = &[
    field("Id", "ID"),
    field("RepoTags", "REPO TAGS"),
    field("RepoDigests", "REPO DIGESTS"),
    field("Created", "CREATED"),
    field("Architecture", "ARCHITECTURE"),
    field("Os", "OS"),
    field("Variant", "VARIANT"),
    field("Config", "CONFIG"),
    field("RootFS", "ROOTFS"),
    field("Size", "SIZE"),
    field("ManifestDigest", "MANIFEST DIGEST"),
    field("Layers", "LAYERS"),
];

/// Show what rbuild's store knows of images, as JSON.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild inspect",
    override_usage = "rbuild inspect [OPTIONS] IMAGE [IMAGE...]"
)]
pub struct InspectArgs {
    /// Images: tags, image ids (prefixes) or NAME@DIGEST
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,

    /// Format each image with a template such as '{{.Id}}' or
    /// '{{json .Config}}' (json, the default, prints the array)
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<InspectArgs>(args)? else {
        return Ok(());
    };
    let format = match args.format.as_deref() {
        None => Format::Json,
        Some(text) => Format::parse(text, FIELDS)?,
    };
    if let Format::Table = format {
        return Err(Failure::Usage(
            "--format table: inspect prints objects, not rows; give json or a template such as '{{.Id}}'".into(),
        ));
    }
    let store = open_store()?;
    // Like Docker, an unknown image does not stop the others; each failure is
    // reported in turn, and the last one becomes the command's failure.
    let mut objects = Vec::new();
    let mut failure: Option<Failure> = None;
    for name in &args.images {
        let found = find_image(&store, name)
            .and_then(|image| object(&store, &image).with_context(|| format!("inspecting {name}")));
        match found {
            Ok(object) => objects.push(object),
            Err(e) => {
                if let Some(previous) = failure.take() {
                    previous.report();
                }
                failure = Some(Failure::Build(e));
            }
        }
    }
    let text = match format {
        Format::Template(template) => template.render(&objects),
        Format::Json | Format::Table => pretty(&objects),
    };
    print!("{text}");
    failure.map_or(Ok(()), Err)
}

/// The array indented as Docker indents it (four spaces).
fn pretty(objects: &[Row]) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    objects.serialize(&mut serializer).expect("rows always serialise");
    String::from_utf8(out).expect("JSON is UTF-8") + "\n"
}

/// One image's object.
fn object(store: &Store, image: &StoredImage) -> anyhow::Result<Row> {
    let config = &image.config;
    let tags = store.image_tags(image.id())?;
    let repositories: BTreeSet<String> = tags.iter().map(|t| t.familiar_repository()).collect();
    let repo_digests: Vec<String> = store
        .pinned_digests(&image.manifest_digest)?
        .iter()
        .flat_map(|digest| repositories.iter().map(move |r| format!("{r}@{digest}")))
        .collect();
    // `Config` as the config blob has it, not as rbuild would write it.
    let stored: Value = serde_json::from_slice(&store.read_blob(image.id())?)
        .with_context(|| format!("reading the image config {}", image.id()))?;
    let layers: Vec<Value> = image
        .layers
        .iter()
        .map(|layer| {
            json!({
                "Digest": layer.digest.to_string(),
                "DiffID": layer.diff_id.to_string(),
                "MediaType": layer.media_type,
                "Size": layer.size,
            })
        })
        .collect();
    let diff_ids: Vec<String> = config.rootfs.diff_ids.iter().map(ToString::to_string).collect();
    let mut row = Row::new()
        .with("Id", image.id().to_string())
        .with("RepoTags", tags.iter().map(|t| t.familiar()).collect::<Vec<_>>())
        .with("RepoDigests", repo_digests)
        .with("Created", config.created.clone())
        .with("Architecture", config.architecture.clone())
        .with("Os", config.os.clone());
    if let Some(variant) = &config.variant {
        row = row.with("Variant", variant.clone());
    }
    Ok(row
        .with("Config", stored.get("config").cloned().unwrap_or(Value::Null))
        .with("RootFS", json!({"Type": "layers", "Layers": diff_ids}))
        .with("Size", store.image_size(image)?)
        .with("ManifestDigest", image.manifest_digest.to_string())
        .with("Layers", layers))
}
