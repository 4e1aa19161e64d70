//! Events appended to a JSON-lines file, fsync'd per batch.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Sink, SinkError};
use crate::model::Event;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlSinkConfig {
    pub enabled: bool,
    /// Appended to, one event per line; fsync'd per batch.
    pub path: PathBuf,
}

impl Default for JsonlSinkConfig {
    fn default() -> Self {
        Self { enabled: true, path: PathBuf::from("var/events.jsonl") }
    }
}

/// `sinks.jsonl.*` keys.
pub fn validate(c: &JsonlSinkConfig, iss: &mut crate::model::Issues) {
    if c.enabled && c.path.as_os_str().is_empty() {
        iss.add("sinks.jsonl.path", "empty path", "set a file path or enabled = false");
    }
}

pub struct JsonlSink {
    path: PathBuf,
    file: Option<File>,
}

impl JsonlSink {
    /// Opens (creating directories) or fails with a message naming the path.
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        let mut s = Self { path: path.to_path_buf(), file: None };
        s.reopen()?;
        Ok(s)
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| SinkError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let f = OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| SinkError(format!("cannot open {}: {e}", self.path.display())))?;
        self.file = Some(f);
        Ok(())
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        if self.file.is_none() {
            self.reopen()?;
        }
        let file = self.file.as_mut().expect("opened above");
        // Build the whole batch first so a failure never leaves half a line behind
        // from this batch (append writes are atomic per call on local filesystems).
        let mut buf = Vec::with_capacity(events.len() * 1024);
        for ev in events {
            serde_json::to_writer(&mut buf, &**ev).map_err(|e| SinkError(e.to_string()))?;
            buf.push(b'\n');
        }
        let res = {
            let mut w = BufWriter::with_capacity(buf.len().max(1), &*file);
            w.write_all(&buf).and_then(|_| w.flush())
        }
        .and_then(|_| file.sync_data());
        res.map_err(|e| {
            self.file = None; // reopen on the next try
            SinkError(format!("writing {}: {e}", self.path.display()))
        })
    }
}
