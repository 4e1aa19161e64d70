//! The benchmark subcommands: each prints its figures next to a baseline measured in
//! the same run (timings are never asserted in tests).

#[cfg(feature = "clickhouse")]
pub mod clickhouse;
pub mod detector;
mod encode;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
mod scene_state;
#[cfg(any(feature = "clickhouse", feature = "kafka"))]
mod util;
