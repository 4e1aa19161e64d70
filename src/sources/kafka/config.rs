//! `[kafka]` in a pipeline file: a consumer group reading encoded frames.

use serde::{Deserialize, Serialize};

use crate::clients::kafka::{check_brokers, check_topic};
use crate::model::Issues;

/// The pipeline's frames topic: where `argus ingest` publishes the frames of the
/// pipeline's RTSP and file cameras, and a consumer-group source of encoded frames
/// (`kafka` feature) for its `source = "kafka"` cameras (for every camera with
/// `argus run --worker`). Each message: value =
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
    /// Where this source's cameras' scene states go (`[scene_state]` enabled): a
    /// compacted topic, key = camera id, created when missing with as many partitions as
    /// `topic`. One per consumer group (two groups over one topic analyse the same
    /// cameras separately). Default: `<group_id>-<topic>-scene-state`.
    #[serde(default)]
    pub state_topic: Option<String>,
    /// Static group membership (`group.instance.id`): a member that restarts within
    /// the session timeout gets its partitions back without a rebalance. Unique per
    /// member and stable across its restarts, e.g. a StatefulSet pod's name;
    /// `"{hostname}"` in it is replaced by the machine's host name.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// Extra librdkafka consumer settings (security, tuning).
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

impl KafkaSourceConfig {
    pub fn state_topic(&self) -> String {
        self.state_topic.clone().unwrap_or_else(|| format!("{}-{}-scene-state", self.group_id, self.topic))
    }

    /// `group_instance_id` with `{hostname}` filled in.
    pub fn instance_id(&self) -> Option<String> {
        let id = self.group_instance_id.as_ref()?;
        Some(if id.contains("{hostname}") { id.replace("{hostname}", &hostname()) } else { id.clone() })
    }
}

/// `HOSTNAME`, else /etc/hostname, else "argus".
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "argus".into())
}

fn default_max_frame_bytes() -> usize {
    8 << 20
}

/// `kafka.*` keys. A table without `source = "kafka"` cameras is valid: it is where
/// `argus ingest` publishes the pipeline's camera frames and where `argus run --worker`
/// reads them.
pub fn validate(k: &KafkaSourceConfig, iss: &mut Issues) {
    check_brokers(iss, "kafka.brokers", &k.brokers);
    check_topic(iss, "kafka.topic", &k.topic);
    if let Some(t) = &k.dead_letter_topic {
        check_topic(iss, "kafka.dead_letter_topic", t);
    }
    if let Some(t) = &k.state_topic {
        check_topic(iss, "kafka.state_topic", t);
    }
    let state = k.state_topic();
    if state == k.topic || k.dead_letter_topic.as_deref() == Some(state.as_str()) {
        iss.add("kafka.state_topic", format!("`{state}` is also the frames or the dead-letter topic"), "name a topic of its own, e.g. \"frames-scene-state\"");
    }
    if k.group_instance_id.as_ref().is_some_and(|i| i.trim().is_empty()) {
        iss.add("kafka.group_instance_id", "empty", "remove it (dynamic membership) or set a stable unique name, e.g. \"{hostname}\"");
    }
    if k.group_id.trim().is_empty() {
        iss.add("kafka.group_id", "empty", "name the consumer group, e.g. \"argus-drones\"");
    }
    if k.max_message_bytes < 1024 {
        iss.add("kafka.max_message_bytes", format!("{} bytes", k.max_message_bytes), "use at least 1024, e.g. 8388608");
    }
}
