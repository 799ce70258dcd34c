//! Tests of the file operations as the builder calls them: COPY/ADD requests
//! against contexts and snapshot stacks built in temporary directories.

mod add;
mod copy;
mod copy_from;
mod rootfs;

use std::path::{Path, PathBuf};

use rbuild_frontend::graph::{CopyOp, InlineFile};
use tempfile::TempDir;

use super::testutil::write_file;
use super::{copy_into, CopyFrom, CopyRequest, CopyStats, Result, Rootfs};
use crate::engine::context::BuildContext;

/// A build context in a temporary directory.
struct Ctx {
    dir: TempDir,
}

impl Ctx {
    fn new() -> Self {
        Ctx {
            dir: TempDir::new().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn file(&self, rel: &str, content: &str) -> PathBuf {
        write_file(&self.path(rel), content.as_bytes(), 0o644)
    }

    fn file_mode(&self, rel: &str, content: &str, mode: u32) -> PathBuf {
        write_file(&self.path(rel), content.as_bytes(), mode)
    }

    fn bytes(&self, rel: &str, content: &[u8]) -> PathBuf {
        write_file(&self.path(rel), content, 0o644)
    }

    fn dir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn symlink(&self, rel: &str, target: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    fn open(&self) -> BuildContext {
        BuildContext::open(self.dir.path(), None).unwrap()
    }
}

/// A COPY of `sources` to `dest` with everything else default.
fn request(sources: &[&str], dest: &str) -> CopyOp {
    CopyOp::plain(sources, dest)
}

/// Runs a COPY from the context into a fresh output directory.
fn copy_ctx<'a>(req: impl Into<CopyRequest<'a>>, ctx: &Ctx, target: &Rootfs) -> (TempDir, Result<CopyStats>) {
    let out = TempDir::new().unwrap();
    let result = copy_into(req.into(), CopyFrom::Context(&ctx.open()), target, out.path());
    (out, result)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
