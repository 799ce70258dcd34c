//! Maintenance: what works over a whole [`Store`](crate::Store). The records
//! that keep content alive, garbage collection (`prune`, the clean-up after
//! `rmi`), disk usage, and the image listing and removal built on them.

pub mod gc;
pub mod listing;
pub mod records;
pub mod usage;
pub(crate) mod view;
