//! File operations on image file systems: COPY, ADD, WORKDIR, and reading or
//! materializing an image's merged layers.
//!
//! An image file system is a stack of snapshot directories ([`Rootfs`]), one per
//! layer, holding that layer's diff in overlayfs form. A file operation never
//! changes a snapshot: it writes only its own diff into a fresh, empty output
//! directory, which becomes the new layer's snapshot.
//!
//! The pieces, bottom up:
//! - `imagepath`, `fsio`: paths inside a root, and non-following system calls;
//! - `tree`: the merged view of layer directories (and of the build context);
//! - `resolve`: symlink resolution that cannot leave the root;
//! - `output`: the output layer, written through confined descriptors;
//! - `sources`, `glob`, `patterns`, `chmod`, `owner`: the COPY rules;
//! - `selection`: what a COPY copies, for the step cache's key and the copier;
//! - `treecopy`: writing a selection into an output layer;
//! - `copy`, `extract`, `workdir`: the instructions themselves.

pub(crate) mod chmod;
mod copy;
mod error;
mod extract;
mod materialize;
pub(crate) mod fsio;
pub(crate) mod glob;
pub(crate) mod imagepath;
mod output;
mod owner;
pub(crate) mod patterns;
mod resolve;
mod rootfs;
pub(crate) mod selection;
pub(crate) mod sources;
pub(crate) mod tree;
mod treecopy;
mod workdir;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use copy::{copy_into, CopyFrom, CopyRequest};
pub(crate) use copy::{select_sources, select_sources_into};
pub use error::{FileOpError, Result};
pub use fsio::EntryKind;
pub use owner::resolve_owner;
pub use rootfs::{Entry, Rootfs};
pub use treecopy::CopyStats;
pub use workdir::make_workdir;
