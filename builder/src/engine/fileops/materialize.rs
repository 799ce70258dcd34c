//! An image's merged file system written out as plain files: what `-o type=local` and
//! `type=tar` export. It copies a selection of the whole image with COPY's own machinery, so
//! it sits above both the root file system and the copier.

use std::path::Path;

use rbuild_frontend::graph::CopyOp;

use super::error::Result;
use super::imagepath::ImagePath;
use super::output::OutputLayer;
use super::rootfs::Rootfs;
use super::selection::select;
use super::treecopy::{CopyOptions, TreeCopier};

impl Rootfs {
    /// Writes the merged file system into `dest`, an empty directory: ownership,
    /// modes, times, xattrs and hard links kept, whiteouts applied and dropped.
    pub fn materialize(&self, dest: &Path) -> Result<()> {
        let tree = self.tree();
        // Everything, as `COPY --from` of the whole image would select it.
        let selection = select(&tree, &CopyOp::plain(&["/"], "/"), false, &|_, e| e)?;
        let mut out = OutputLayer::new(&Rootfs::empty(), dest)?;
        let mut copier = TreeCopier::new(&tree, &mut out, CopyOptions::preserve());
        for item in &selection.items {
            copier.copy_item(&selection, item, &ImagePath::root())?;
        }
        out.finish()
    }
}
