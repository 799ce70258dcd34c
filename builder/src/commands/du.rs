//! `rbuild du`: the store's disk usage by kind, laid out like `docker system
//! df`. ACTIVE counts what a plain `rbuild prune` keeps (tagged images, and
//! whatever running rbuild processes use); RECLAIMABLE is what it would free.

use clap::{Parser, ValueEnum};
use rbuild_store::usage::DiskUsage;
use serde_json::json;

use super::common::{open_store, parse_args};
use super::human;
use super::table::Table;
use crate::failure::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DuFormat {
    Table,
    /// One JSON object per line, sizes also in bytes
    Json,
}

/// Show the disk usage of rbuild's store.
#[derive(Debug, Parser)]
#[command(name = "rbuild du", override_usage = "rbuild du [OPTIONS]")]
pub struct DuArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = DuFormat::Table)]
    pub format: DuFormat,
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<DuArgs>(args)? else {
        return Ok(());
    };
    let store = open_store()?;
    let usage = store.disk_usage().map_err(|e| Failure::Build(e.into()))?;
    match args.format {
        DuFormat::Table => print!("{}", table(&usage, &store.root().display().to_string())),
        DuFormat::Json => {
            for row in &usage.rows {
                let line = json!({
                    "Type": row.kind.label(),
                    "TotalCount": row.count,
                    "Active": row.active,
                    "Size": human::size(row.size, 4),
                    "SizeBytes": row.size,
                    "Reclaimable": human::size(row.reclaimable, 4),
                    "ReclaimableBytes": row.reclaimable,
                });
                println!("{line}");
            }
            println!(
                "{}",
                json!({"Type": "Total", "Size": human::size(usage.total, 4), "SizeBytes": usage.total})
            );
        }
    }
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
