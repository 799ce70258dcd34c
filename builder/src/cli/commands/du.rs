//! `rbuild du`: the store's disk usage by kind, laid out like `docker system
//! df`. ACTIVE counts what a plain `rbuild prune` keeps (tagged images, and
//! whatever running rbuild processes use); RECLAIMABLE is what it would free.
//! `--format json` prints a JSON object per kind, sizes also in bytes, then a
//! `Total` one; a template (see [`super::format`]) formats the kinds' rows.

use clap::Parser;
use rbuild_store::usage::{DiskUsage, UsageKind, UsageRow};
use serde_json::json;

use super::common::{open_store, parse_args};
use super::format::{field, json_lines, Field, Format, Row};
use super::human;
use super::table::Table;
use crate::cli::failure::Failure;
use crate::engine::cache_mounts::CacheMounts;

/// The fields of a row for `--format`, with their column names.
const FIELDS: &[Field] = &[
    field("Type", "TYPE"),
    field("TotalCount", "TOTAL"),
    field("Active", "ACTIVE"),
    field("Size", "SIZE"),
    field("SizeBytes", "SIZE BYTES"),
    field("Reclaimable", "RECLAIMABLE"),
    field("ReclaimableBytes", "RECLAIMABLE BYTES"),
];

/// Show the disk usage of rbuild's store.
#[derive(Debug, Parser)]
#[command(name = "rbuild du", override_usage = "rbuild du [OPTIONS]")]
pub struct DuArgs {
    /// Output format: table, json (an object per line, sizes also in bytes),
    /// or a template such as '{{.Type}}: {{.SizeBytes}}' ('table ' before it
    /// adds a header)
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: String,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<DuArgs>(args)? else {
        return Ok(());
    };
    let format = Format::parse(&args.format, FIELDS)?;
    let store = open_store()?;
    let mut usage = store.disk_usage().map_err(|e| Failure::Build(e.into()))?;
    // Cache mounts (`RUN --mount=type=cache`) are the builder's; they live in the store's root.
    let cache_mounts = CacheMounts::new(store.root().join("cache-mounts"))
        .list()
        .map_err(|e| Failure::Build(anyhow::anyhow!("listing cache mounts: {e}")))?;
    let size = cache_mounts.iter().map(|m| m.size).sum();
    usage.rows.push(UsageRow { kind: UsageKind::CacheMounts, count: cache_mounts.len(), active: 0, size, reclaimable: size });
    let rows: Vec<Row> = usage
        .rows
        .iter()
        .map(|row| {
            Row::new()
                .with("Type", row.kind.label())
                .with("TotalCount", row.count)
                .with("Active", row.active)
                .with("Size", human::size(row.size, 4))
                .with("SizeBytes", row.size)
                .with("Reclaimable", human::size(row.reclaimable, 4))
                .with("ReclaimableBytes", row.reclaimable)
                .sorted()
        })
        .collect();
    let text = match format {
        // After the kinds, a `Total` object that templates (rows of kinds) do not get.
        Format::Json => {
            let total = json!({"Type": "Total", "Size": human::size(usage.total, 4), "SizeBytes": usage.total});
            format!("{}{total}\n", json_lines(&rows))
        }
        other => other.render(&rows, || table(&usage, &store.root().display().to_string())),
    };
    print!("{text}");
    Ok(())
}

fn table(usage: &DiskUsage, root: &str) -> String {
    let mut table = Table::new(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    for row in &usage.rows {
        let mut reclaimable = human::size(row.reclaimable, 4);
        if let Some(percent) = (row.reclaimable * 100).checked_div(row.size) {
            reclaimable.push_str(&format!(" ({percent}%)"));
        }
        table.row(vec![
            row.kind.label().to_string(),
            row.count.to_string(),
            row.active.to_string(),
            human::size(row.size, 4),
            reclaimable,
        ]);
    }
    let mut text = table.render();
    text.push_str(&format!(
        "\nTotal: {} in {root}\n",
        human::size(usage.total, 4)
    ));
    if usage.processes > 0 {
        text.push_str(&format!(
            "{} other rbuild process(es) are using the store; what they use counts as active.\n",
            usage.processes
        ));
    }
    text
}
