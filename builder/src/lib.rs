//! The rbuild builder: reads the build context, executes the build graph that the
//! frontend lowered, and hands layers and images to the store.

pub mod build_command;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod context;
pub mod disk_full;
pub mod dot;
pub mod error;
pub mod execute;
pub mod failure;
pub mod fileops;
pub mod image_meta;
pub mod named_contexts;
pub mod output;
pub mod plan;
pub mod progress;
pub mod progress_tty;
pub mod pulling;
pub mod resolver;
pub mod sandbox;
pub mod snippet;
pub mod timefmt;
pub mod timings;
