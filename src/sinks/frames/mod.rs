//! Frames, not events: what `argus ingest` publishes for the analysis workers. Each
//! sampled frame of a camera is JPEG-encoded (`encode`) and handed to the Kafka topic of
//! its pipeline's `[kafka]` table (`kafka`, `kafka` feature) by the ingest loop
//! (`forward`), which keeps frames perishable: nothing waits on the broker for long and
//! nothing grows without bound.

pub mod config;
pub mod encode;
pub mod forward;
#[cfg(feature = "kafka")]
pub mod kafka;
