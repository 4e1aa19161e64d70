//! `[kafka]` in a pipeline file: a consumer group reading encoded frames.

use serde::{Deserialize, Serialize};

use crate::clients::kafka::{check_brokers, check_topic};
use crate::model::Issues;

/// A consumer-group source of encoded frames (`kafka` feature). Each message: value =
/// JPEG or PNG bytes; headers `camera_id` (one of this pipeline's `source = "kafka"`
/// cameras), `captured_at` (RFC 3339 or Unix ms), optional `telemetry` (drone pose JSON).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    /// Bad messages go here with a `reason` header (none: counted and logged only).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Larger messages are rejected (dead-lettered) without decoding.
    #[serde(default = "default_max_frame_bytes")]
    pub max_message_bytes: usize,
    /// Extra librdkafka consumer settings (security, tuning).
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

fn default_max_frame_bytes() -> usize {
    8 << 20
}

/// `kafka.*` keys (`has_kafka_cameras`: some camera of the pipeline reads the topic).
pub fn validate(k: &KafkaSourceConfig, has_kafka_cameras: bool, iss: &mut Issues) {
    if !has_kafka_cameras {
        iss.add("kafka", "no camera has source = \"kafka\"", "set source = \"kafka\" on the cameras whose frames come from the topic, or remove [kafka]");
    }
    check_brokers(iss, "kafka.brokers", &k.brokers);
    check_topic(iss, "kafka.topic", &k.topic);
    if let Some(t) = &k.dead_letter_topic {
        check_topic(iss, "kafka.dead_letter_topic", t);
    }
    if k.group_id.trim().is_empty() {
        iss.add("kafka.group_id", "empty", "name the consumer group, e.g. \"argus-drones\"");
    }
    if k.max_message_bytes < 1024 {
        iss.add("kafka.max_message_bytes", format!("{} bytes", k.max_message_bytes), "use at least 1024, e.g. 8388608");
    }
}
