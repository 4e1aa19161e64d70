//! `[sinks.kafka]`: events to a Kafka topic for control rooms.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::clients::{ReplayOrder, SpoolSettings, WhenFull};
use crate::model::Issues;

/// `argus.event.v1` events to a Kafka topic for control rooms (`kafka` feature).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSinkConfig {
    pub enabled: bool,
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Must exist: partitions and retention are the operator's choice.
    pub topic: String,
    pub client_id: String,
    /// librdkafka's delivery timeout; a batch not confirmed by then goes to the spool.
    pub message_timeout_ms: u64,
    /// Events per produce batch, and how long the first waits for company.
    pub max_events: usize,
    pub max_wait_ms: u64,
    /// Events wait here (fsync'd) while the broker is down, replayed in order.
    pub spool_dir: PathBuf,
    /// How large the spool may grow.
    pub spool_max_mb: u64,
    /// A full spool: `"wait"` (default: the pipeline waits, the control room loses
    /// nothing) or `"shed"` (this sink drops new events, counted; the others carry on).
    pub when_full: WhenFull,
    /// While a backlog replays: `"live_first"` (default: new events are not kept waiting
    /// behind it; a partition may then hold newer events before older ones) or
    /// `"in_order"` (strict order; new events wait).
    pub replay: ReplayOrder,
    /// Refusals of one event by the broker (e.g. too large) before it is dead-lettered.
    pub max_rejections: u32,
    /// Extra librdkafka settings, e.g. `"security.protocol" = "SASL_SSL"`.
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaSinkConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: "127.0.0.1:9092".into(),
            topic: "argus.events".into(),
            client_id: "argus".into(),
            message_timeout_ms: 10_000,
            max_events: 1000,
            max_wait_ms: 50,
            spool_dir: PathBuf::from("var/spool/kafka"),
            spool_max_mb: 1024,
            when_full: WhenFull::Wait,
            replay: ReplayOrder::LiveFirst,
            max_rejections: 5,
            options: Default::default(),
        }
    }
}

impl KafkaSinkConfig {
    pub fn spool_settings(&self) -> SpoolSettings {
        SpoolSettings::from_keys(self.spool_max_mb, self.when_full, self.replay, self.max_rejections)
    }
}

/// `sinks.kafka.*` keys.
pub fn validate(k: &KafkaSinkConfig, iss: &mut Issues) {
    if k.enabled {
        if !cfg!(feature = "kafka") {
            iss.add("sinks.kafka.enabled", "this build has no Kafka support", "build with `--features kafka` (on by default) or set enabled = false");
        }
        crate::clients::kafka::check_brokers(iss, "sinks.kafka.brokers", &k.brokers);
        crate::clients::kafka::check_topic(iss, "sinks.kafka.topic", &k.topic);
        if !(1000..=600_000).contains(&k.message_timeout_ms) {
            iss.add("sinks.kafka.message_timeout_ms", format!("{} ms", k.message_timeout_ms), "use 1000..=600000, e.g. 10000");
        }
        crate::clients::check_batching_and_spool(iss, "kafka", ("max_events", k.max_events, 100_000, 1000), k.max_wait_ms, k.spool_max_mb);
        crate::clients::check_policy(iss, "kafka", k.max_rejections);
        for key in ["bootstrap.servers", "enable.idempotence", "acks", "message.timeout.ms"] {
            if k.options.contains_key(key) {
                iss.add(
                    format!("sinks.kafka.options.\"{key}\""),
                    "is set by Argus (delivery safety) or by its own key",
                    "remove it (use `brokers` / `message_timeout_ms`)",
                );
            }
        }
    }
}
