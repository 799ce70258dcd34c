//! rbuild's Dockerfile frontend: text → syntax tree → typed instructions → build graph.
//!
//! The layers depend on each other one way only: [`parser`] knows nothing of
//! instruction semantics, [`shell`] expands words against any variable source,
//! [`instructions`] types the parsed nodes, and [`lower`] turns the stages into
//! the [`graph::BuildGraph`] that the builder executes. Nothing here touches
//! files, processes or the image store.

pub mod checks;
pub mod dockerignore;
pub mod excerpt;
pub mod graph;
pub mod image;
pub mod instructions;
pub mod lower;
pub mod parser;
pub mod shell;
pub mod suggest;
