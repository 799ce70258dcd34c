//! Where a blob is known to be: `sources/<blob hex>` holds, one a line, a
//! repository (`registry/path`) per registry that the blob was last pulled
//! from or pushed to, so that a push to another repository of the same
//! registry can ask for a cross-repository mount instead of uploading it. A
//! missing or stale entry only costs that upload: the registry checks the
//! mount itself.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::fs::write_atomically;

/// The blob sources of one store, under `dir` (`sources/`), staged in `tmp`.
#[derive(Clone, Debug)]
pub(crate) struct Sources {
    dir: PathBuf,
    tmp: PathBuf,
}

impl Sources {
    pub(crate) fn new(dir: PathBuf, tmp: PathBuf) -> Sources {
        Sources { dir, tmp }
    }

    /// Records that `blob` is in `repository` (`registry/path`), replacing
    /// what was recorded for the same registry.
    pub(crate) fn record(&self, blob: &Digest, repository: &str) -> Result<()> {
        let registry = registry_of(repository);
        let mut lines: Vec<String> = self.read(blob)?.into_iter().filter(|r| registry_of(r) != registry).collect();
        lines.push(repository.to_string());
        fs::create_dir_all(&self.dir).at("create directory", &self.dir)?;
        write_atomically(&self.tmp, &self.dir.join(blob.hex()), (lines.join("\n") + "\n").as_bytes())
    }

    /// The repository of `registry` that `blob` was last seen in, if any.
    pub(crate) fn source(&self, blob: &Digest, registry: &str) -> Result<Option<String>> {
        Ok(self.read(blob)?.into_iter().find(|r| registry_of(r) == registry))
    }

    /// Whether `blob` is recorded in any repository.
    pub(crate) fn any_source(&self, blob: &Digest) -> Result<bool> {
        Ok(!self.read(blob)?.is_empty())
    }

    fn read(&self, blob: &Digest) -> Result<Vec<String>> {
        let path = self.dir.join(blob.hex());
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(StoreError::io("read", &path, e)),
        }
    }
}

/// `registry` of `registry/path`.
fn registry_of(repository: &str) -> &str {
    repository.split('/').next().unwrap_or(repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_recorded_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sources = Sources::new(dir.path().join("sources"), dir.path().to_path_buf());
        let blob = Digest::of_bytes(b"layer");
        assert_eq!(sources.source(&blob, "127.0.0.1:5000").unwrap(), None);
        sources.record(&blob, "127.0.0.1:5000/a/base").unwrap();
        sources.record(&blob, "registry.example/c").unwrap();
        sources.record(&blob, "127.0.0.1:5000/b/base").unwrap();
        assert_eq!(sources.source(&blob, "127.0.0.1:5000").unwrap().as_deref(), Some("127.0.0.1:5000/b/base"));
        assert_eq!(sources.source(&blob, "registry.example").unwrap().as_deref(), Some("registry.example/c"));
        assert_eq!(sources.source(&blob, "127.0.0.1:5001").unwrap(), None);
    }
}
