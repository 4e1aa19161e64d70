//! Events to a Kafka topic for control rooms (`kafka` feature for the producer; the
//! `[sinks.kafka]` table parses and validates in every build).

pub mod config;
#[cfg(feature = "kafka")]
mod delivery;
#[cfg(feature = "kafka")]
mod sink;

#[cfg(feature = "kafka")]
pub use delivery::KafkaDelivery;
#[cfg(feature = "kafka")]
pub use sink::*;
