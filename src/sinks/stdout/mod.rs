//! Events as JSON lines on standard output (logs go to standard error).

use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Sink, SinkError};
use crate::model::Event;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutSinkConfig {
    pub enabled: bool,
}

impl Default for StdoutSinkConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

pub struct StdoutSink;

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }

    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        let mut out = std::io::stdout().lock();
        for ev in events {
            serde_json::to_writer(&mut out, &**ev).map_err(|e| SinkError(e.to_string()))?;
            out.write_all(b"\n").map_err(|e| SinkError(e.to_string()))?;
        }
        out.flush().map_err(|e| SinkError(e.to_string()))
    }
}
