//! `[ingest]`: how `argus ingest` publishes frames. Where they go is each pipeline's
//! `[kafka]` table (`brokers`, `topic`): the one the analysis workers read.

use serde::{Deserialize, Serialize};

use crate::model::Issues;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// JPEG quality of the published frames (1–100).
    pub jpeg_quality: u8,
    /// Frames handed to the producer and not yet confirmed by the broker. Beyond, the
    /// publisher waits and the live cameras' queues drop their oldest frames
    /// (`queue_full`): frames are perishable, nothing grows without bound.
    pub max_in_flight: usize,
    /// A frame not confirmed within this long is dropped (`expired`), never retried
    /// after it: a late frame is worth less than the next one.
    pub message_timeout_ms: u64,
    /// Encoded frames larger than this are dropped (`too_large`); keep it at or below
    /// the topic's `max.message.bytes` and the workers' `kafka.max_message_bytes`.
    pub max_message_bytes: usize,
    /// Threads that JPEG-encode a batch of frames in parallel.
    pub encode_threads: usize,
    pub client_id: String,
    /// Extra librdkafka producer settings, e.g. `"security.protocol" = "SASL_SSL"`.
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            jpeg_quality: 85,
            max_in_flight: 256,
            message_timeout_ms: 5000,
            max_message_bytes: 8 << 20,
            encode_threads: 2,
            client_id: "argus-ingest".into(),
            options: Default::default(),
        }
    }
}

/// Librdkafka settings Argus sets itself (delivery safety, or a key of its own).
pub const OWN_OPTIONS: [&str; 7] =
    ["bootstrap.servers", "enable.idempotence", "acks", "message.timeout.ms", "queue.buffering.max.messages", "message.max.bytes", "client.id"];

/// `ingest.*` keys.
pub fn validate(c: &IngestConfig, iss: &mut Issues) {
    if !(1..=100).contains(&c.jpeg_quality) {
        iss.add("ingest.jpeg_quality", format!("{}", c.jpeg_quality), "use 1..=100, e.g. 85");
    }
    if !(1..=100_000).contains(&c.max_in_flight) {
        iss.add("ingest.max_in_flight", format!("{}", c.max_in_flight), "use 1..=100000, e.g. 256");
    }
    if !(500..=600_000).contains(&c.message_timeout_ms) {
        iss.add("ingest.message_timeout_ms", format!("{} ms", c.message_timeout_ms), "use 500..=600000, e.g. 5000");
    }
    if !(1024..=(1 << 30)).contains(&c.max_message_bytes) {
        iss.add("ingest.max_message_bytes", format!("{} bytes", c.max_message_bytes), "use 1024..=1073741824, e.g. 8388608");
    }
    if !(1..=64).contains(&c.encode_threads) {
        iss.add("ingest.encode_threads", format!("{}", c.encode_threads), "use 1..=64, e.g. 2");
    }
    for key in OWN_OPTIONS.iter().filter(|k| c.options.contains_key(**k)) {
        iss.add(
            format!("ingest.options.\"{key}\""),
            "is set by Argus (delivery safety) or by its own key",
            "remove it (brokers come from the pipeline's [kafka] table)",
        );
    }
}
