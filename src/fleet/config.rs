//! `[fleet]` in argus.toml: the status topic every member publishes to and reads.

use serde::{Deserialize, Serialize};

use crate::model::Issues;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    pub enabled: bool,
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Compacted (`cleanup.policy=compact`), one partition is plenty; created when
    /// missing.
    pub topic: String,
    /// Unique per member, stable across its restarts; `{hostname}` and `{role}` (`run`
    /// or `ingest`) are filled in.
    pub member_id: String,
    pub publish_every_s: f64,
    /// A member without a record for this long is shown stale.
    pub stale_after_s: f64,
    /// Extra librdkafka settings for the fleet's producer and reader (security).
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: "127.0.0.1:9092".into(),
            topic: "argus.fleet".into(),
            member_id: "{hostname}-{role}".into(),
            publish_every_s: 5.0,
            stale_after_s: 20.0,
            options: Default::default(),
        }
    }
}

impl FleetConfig {
    /// `member_id` with `{hostname}` and `{role}` filled in.
    pub fn member(&self, role: &str) -> String {
        let id = self.member_id.replace("{role}", role);
        if id.contains("{hostname}") { id.replace("{hostname}", &crate::sources::kafka::config::hostname()) } else { id }
    }
}

/// `fleet.*` keys.
pub fn validate(c: &FleetConfig, iss: &mut Issues) {
    if !c.enabled {
        return;
    }
    if !cfg!(feature = "kafka") {
        iss.add("fleet.enabled", "this build has no Kafka support", "build with `--features kafka` (on by default) or set enabled = false");
    }
    crate::clients::kafka::check_brokers(iss, "fleet.brokers", &c.brokers);
    crate::clients::kafka::check_topic(iss, "fleet.topic", &c.topic);
    if c.member_id.trim().is_empty() {
        iss.add("fleet.member_id", "empty", "use e.g. \"{hostname}-{role}\" (unique per member, stable across restarts)");
    }
    if !(0.2..=300.0).contains(&c.publish_every_s) {
        iss.add("fleet.publish_every_s", format!("{} s", c.publish_every_s), "use 0.2..=300, e.g. 5");
    }
    if !(c.stale_after_s >= 2.0 * c.publish_every_s && c.stale_after_s <= 86_400.0) {
        iss.add("fleet.stale_after_s", format!("{} s", c.stale_after_s), "use at least twice publish_every_s (a record can be late), e.g. 20");
    }
}
