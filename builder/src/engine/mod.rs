//! The build engine: from a resolved request to a stored image. It never prints and never
//! sees the command line: progress goes out as [`events::Progress`] events and failures
//! as typed errors ([`error::BuildError`]).

pub mod build;
pub mod cache;
pub mod cache_mounts;
pub mod context;
pub mod debug_shell;
pub mod emulation;
pub mod error;
pub mod events;
pub mod execute;
pub mod fileops;
pub mod finish;
pub mod kept_failure;
pub mod named_contexts;
pub mod output;
pub mod plan;
pub mod platforms;
pub mod redact;
pub mod remote_cache;
pub mod pulling;
pub mod resolver;
pub mod secrets;
pub mod settings;
pub mod ssh_forward;
pub mod timefmt;
pub mod timings;
