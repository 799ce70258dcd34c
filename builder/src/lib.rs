//! The rbuild builder: reads the build context, executes the build graph that the
//! frontend lowered, and hands layers and images to the store.

pub mod context;
pub mod fileops;
