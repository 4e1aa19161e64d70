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

/// Creates a compacted topic (`cleanup.policy=compact`) when it is missing; an existing
/// one is left as it is. Blocks (admin calls are async in rdkafka): never call it on a
/// tokio worker.
#[cfg(feature = "kafka")]
pub fn create_compacted_topic(config: &rdkafka::ClientConfig, topic: &str, partitions: i32) -> Result<bool, String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = config.create().map_err(|e| format!("admin client: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    let opts = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(10)));
    let results = rt.block_on(admin.create_topics([&new], &opts)).map_err(|e| format!("create topic {topic}: {e}"))?;
    for r in results {
        match r {
            Ok(_) => return Ok(true),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("create topic {t}: {e}")),
        }
    }
    Ok(false)
}
