//! What the Kafka sink and the Kafka source share: how brokers and topics are checked.

use crate::model::Issues;

pub fn check_brokers(iss: &mut Issues, key: &str, brokers: &str) {
    if brokers.trim().is_empty() || brokers.split(',').any(|b| !b.trim().contains(':')) {
        iss.add(key, format!("`{brokers}` is not a host:port list"), "write it like \"kafka-1:9092,kafka-2:9092\"");
    }
}

pub fn check_topic(iss: &mut Issues, key: &str, topic: &str) {
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        iss.add(key, format!("`{topic}` is not a valid Kafka topic name"), "use letters, digits, `.`, `_`, `-` (at most 249)");
    }
}
