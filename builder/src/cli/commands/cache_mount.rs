//! `rbuild cache-mount ls|export|import|rm`: the directories of `RUN --mount=type=cache`, in the
//! store or in a `--cache-mount-dir`. An export is a tar another runner imports, so a CI system
//! that can only keep files carries the caches of a build from one runner to the next.

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use super::common::{open_store, parse_args};
use super::human;
use super::table::Table;
use crate::cli::failure::Failure;
use crate::engine::cache_mounts::CacheMounts;
use crate::engine::output::{write_output, Destination};

/// Manage the cache mounts of RUN --mount=type=cache.
#[derive(Debug, Parser)]
#[command(name = "rbuild cache-mount", override_usage = "rbuild cache-mount COMMAND [OPTIONS]")]
pub struct CacheMountArgs {
    #[command(subcommand)]
    pub command: CacheMountCommand,
}

#[derive(Debug, Args)]
pub struct Where {
    /// The directory the builds keep cache mounts in (default: the store)
    #[arg(long, value_name = "DIR", env = "RBUILD_CACHE_MOUNT_DIR", global = true)]
    pub cache_mount_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CacheMountCommand {
    /// List the cache mounts: id, size, last use
    Ls {
        #[command(flatten)]
        place: Where,
        /// Only the ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write cache mounts (all when no ID is given) to a tar
    Export {
        #[command(flatten)]
        place: Where,
        #[arg(value_name = "ID")]
        ids: Vec<String>,
        /// The tar to write (`-` or none: stdout)
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read cache mounts from a tar an export wrote, replacing those of the same ids
    Import {
        #[command(flatten)]
        place: Where,
        /// The tar (`-` or none: stdin)
        #[arg(value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// Remove cache mounts
    Rm {
        #[command(flatten)]
        place: Where,
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
}

pub fn run(args: Vec<String>) -> Result<(), Failure> {
    let Some(args) = parse_args::<CacheMountArgs>(args)? else {
        return Ok(());
    };
    let store = open_store()?;
    let place = match &args.command {
        CacheMountCommand::Ls { place, .. }
        | CacheMountCommand::Export { place, .. }
        | CacheMountCommand::Import { place, .. }
        | CacheMountCommand::Rm { place, .. } => place,
    };
    let mounts = CacheMounts::of(place.cache_mount_dir.as_deref(), store.root());
    let failed = |e: io::Error| Failure::Build(anyhow::Error::new(e));
    match &args.command {
        CacheMountCommand::Ls { quiet, .. } => {
            let listed = mounts.list().map_err(failed)?;
            if *quiet {
                listed.iter().for_each(|m| println!("{}", m.id));
                return Ok(());
            }
            let now = std::time::SystemTime::now();
            let mut table = Table::new(&["CACHE ID", "SIZE", "LAST USED"]);
            for mount in &listed {
                let used = mount
                    .last_used
                    .and_then(|t| now.duration_since(t).ok())
                    .map_or_else(|| "never".to_string(), |d| format!("{} ago", human::duration(d.as_secs() as i64)));
                table.row(vec![mount.id.clone(), human::size(mount.size, 4), used]);
            }
            print!("{}", table.render());
        }
        CacheMountCommand::Export { ids, output, .. } => {
            let dest = match output.clone().filter(|p| p.as_os_str() != "-") {
                Some(path) => Destination::File(path),
                None if io::stdout().is_terminal() => {
                    return Err(Failure::Usage("cowardly refusing to write a tar to a terminal: use -o FILE or redirect".into()))
                }
                None => Destination::Stdout,
            };
            write_output(&dest, false, &mut io::stdout(), |out| mounts.export(ids, out))
                .with_context(|| format!("exporting cache mounts to {dest}"))?;
        }
        CacheMountCommand::Import { input, .. } => {
            // On the cache mounts' own filesystem, so what is imported is renamed into place.
            std::fs::create_dir_all(mounts.root()).with_context(|| format!("creating {}", mounts.root().display()))?;
            let scratch = tempfile::Builder::new()
                .prefix(".import-")
                .tempdir_in(mounts.root())
                .context("making room for the import")?;
            let imported = match input.clone().filter(|p| p.as_os_str() != "-") {
                Some(path) => {
                    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                    mounts.import(io::BufReader::new(file), scratch.path())
                }
                None => mounts.import(io::stdin().lock(), scratch.path()),
            }
            .context("importing cache mounts")?;
            imported.iter().for_each(|id| println!("Imported: {id}"));
        }
        CacheMountCommand::Rm { ids, .. } => {
            for id in ids {
                match mounts.remove(id).map_err(failed)? {
                    true => println!("Removed: {id}"),
                    false => return Err(Failure::Build(anyhow::anyhow!("no cache mount {id:?}"))),
                }
            }
        }
    }
    Ok(())
}
