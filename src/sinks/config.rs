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
}
