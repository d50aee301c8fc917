//! What Skiff's benchmark programs share: starting real `skiff` processes and writing
//! their figures into `docs/benchmarks.md` sections.

pub mod args;
pub mod sections;
pub mod server;
