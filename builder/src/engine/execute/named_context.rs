//! Directories named with `--build-context NAME=DIR`, which `COPY --from=NAME`
//! reads like the build context (its own `.dockerignore` applies, as buildx
//! applies it). Each is opened by the first step that reads it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::engine::context::BuildContext;
use crate::engine::error::BuildError;

/// The named directories of one build.
#[derive(Default)]
pub struct NamedContexts {
    dirs: BTreeMap<String, (PathBuf, OnceLock<Result<BuildContext, String>>)>,
}

impl NamedContexts {
    pub fn new(dirs: &BTreeMap<String, PathBuf>) -> NamedContexts {
        NamedContexts {
            dirs: dirs.iter().map(|(name, dir)| (name.clone(), (dir.clone(), OnceLock::new()))).collect(),
        }
    }
}

impl NamedContexts {
    /// The directory context `name`, opened on first use.
    pub fn open(&self, name: &str) -> Result<&BuildContext, BuildError> {
        let (dir, opened) = self.dirs.get(name).ok_or_else(|| {
            BuildError::Context(format!("{name}: no --build-context of that name was given"))
        })?;
        let opened = opened.get_or_init(|| {
            BuildContext::open(dir, None).map_err(|e| format!("{name} ({}): {e}", dir.display()))
        });
        opened.as_ref().map_err(|e| BuildError::Context(e.clone()))
    }
}
