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

/// Prints events to standard output until its reader goes away.
#[derive(Default)]
pub struct StdoutSink {
    /// The reader closed the pipe (`argus run | head -1`): nobody reads what this sink
    /// would print, so it prints nothing more. Retrying a broken pipe would hold every
    /// later event, and the shutdown, forever; the events are in the other sinks.
    closed: bool,
}

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }

    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        if self.closed {
            return Ok(());
        }
        match write_lines(&mut std::io::stdout().lock(), events) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::warn!("standard output was closed by its reader: events are no longer printed (the other sinks still get them)");
                self.closed = true;
                Ok(())
            }
            r => r.map_err(|e| SinkError(format!("stdout: {e}"))),
        }
    }
}

fn write_lines(out: &mut impl Write, events: &[Arc<Event>]) -> std::io::Result<()> {
    for ev in events {
        serde_json::to_writer(&mut *out, &**ev)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
