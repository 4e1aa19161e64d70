//! `[sinks]` in `argus.toml`: which sinks run. A new sink adds its field here, its
//! checks to [`validate`] and its line to the registry (`sinks::build`).

use serde::{Deserialize, Serialize};

use super::jsonl::JsonlSinkConfig;
use super::kafka::config::KafkaSinkConfig;
use super::stdout::StdoutSinkConfig;
use crate::clients::clickhouse::ClickHouseConfig;
use crate::model::Issues;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    pub stdout: StdoutSinkConfig,
    pub jsonl: JsonlSinkConfig,
    pub clickhouse: ClickHouseConfig,
    pub kafka: KafkaSinkConfig,
}

/// `sinks.*` keys of every sink.
pub fn validate(s: &SinksConfig, iss: &mut Issues) {
    crate::clients::clickhouse::validate(&s.clickhouse, iss);
    super::kafka::config::validate(&s.kafka, iss);
    super::jsonl::validate(&s.jsonl, iss);
    // Each spool deletes what its sink delivered: a shared directory loses events (and
    // the second sink's spool would be refused at start: its lock is held).
    if s.kafka.enabled && s.clickhouse.enabled && same_dir(&s.kafka.spool_dir, &s.clickhouse.spool_dir) {
        iss.add(
            "sinks.clickhouse.spool_dir",
            format!("{} is also sinks.kafka.spool_dir", s.clickhouse.spool_dir.display()),
            "give each sink its own spool directory, e.g. var/spool/clickhouse and var/spool/kafka",
        );
    }
}

fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    let norm = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.components().collect());
    norm(a) == norm(b)
}
