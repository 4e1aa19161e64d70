//! Events as JSON lines on standard output (logs go to standard error).

use std::io::Write;
use std::sync::Arc;

use super::{Sink, SinkError};
use crate::model::Event;

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
