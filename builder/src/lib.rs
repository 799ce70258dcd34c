//! rbuild's builder: two layers, each importing only the one below it.
//!
//! - [`cli`]: the command line. Parses arguments (clap), turns them into the engine's
//!   settings, renders progress events and errors for people and tools, and writes to
//!   stdout. Nothing below it prints or sees a clap type.
//! - [`engine`]: builds. Plans the Dockerfile's graph (the frontend lowers it), schedules
//!   its steps, keys them in the step cache, runs file operations and RUN steps, and hands
//!   layers and images to the store. It reports what happens as typed events
//!   ([`engine::events::Progress`]) and returns typed errors.
//!
//! Below both: `rbuild-frontend` (Dockerfile → graph), `rbuild-store` (blobs, snapshots,
//! images, archives, registries) and `rbuild-sandbox` (run one command over a stack of
//! layers and give back its changes).

pub mod cli;
pub mod engine;
