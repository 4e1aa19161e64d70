//! The Kafka sink (`kafka` feature, rdkafka with its bundled librdkafka):
//! `argus.event.v1` events to a topic for control rooms, keyed by camera id (per-camera
//! order), headers `schema`, `kind`, `event_id`, `camera_id`; idempotent producer with
//! `acks=all`; an event counts as published only once the broker confirmed it. While the
//! broker is down or slow, events go to the bounded on-disk spool and are replayed in
//! order (`crate::sinks::spool`).

use std::sync::Arc;
use std::time::Duration;

use super::KafkaDelivery;
use super::config::KafkaSinkConfig;

use crate::sinks::spool::SpooledSink;
use crate::sinks::{Batching, SinkError};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

/// The sink the pipeline runs: Kafka behind a spool.
pub type KafkaSink = SpooledSink;

/// Opens the Kafka sink (a broker that is down now is not an error).
pub fn open_sink(cfg: &KafkaSinkConfig, metrics: Arc<Metrics>, health: Arc<Health>) -> Result<KafkaSink, SinkError> {
    let delivery = KafkaDelivery::new(cfg).map_err(SinkError)?;
    let batching = Batching { max_events: cfg.max_events, max_wait: Duration::from_millis(cfg.max_wait_ms) };
    SpooledSink::open(delivery, &cfg.spool_dir, cfg.spool_settings(), batching, metrics, health)
}

/// librdkafka settings from the sink's configuration: the fixed ones that make
/// delivery safe, then the user's `options` (security, tuning) on top.
pub fn client_config(cfg: &KafkaSinkConfig) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
        .set("linger.ms", "5")
        .set("compression.type", "lz4");
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    c
}
