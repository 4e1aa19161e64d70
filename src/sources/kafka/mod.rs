//! Frames from a Kafka topic (`kafka` feature for the consumer; the `[kafka]` table
//! parses and validates in every build, so a build without it says so by key).

pub mod config;
#[cfg(feature = "kafka")]
mod consumer;
#[cfg(feature = "kafka")]
pub mod state;

#[cfg(feature = "kafka")]
pub use consumer::*;
