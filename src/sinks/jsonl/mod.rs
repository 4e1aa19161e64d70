//! Events appended to a JSON-lines file, fsync'd per batch. Every line is one whole
//! event: a batch whose write fails (disk full, I/O or fsync error) is cut off again at
//! once, and a torn last line a crash left behind (SIGKILL mid-write) is cut when the
//! file is opened, so the next event never gets glued onto half of one.
//!
//! The file is rotated before it would pass `max_bytes` (renamed to
//! `NAME.YYYYMMDDTHHMMSSZ`, so `cat NAME.* NAME` reads in order), and rotated files
//! beyond `keep_files` or older than `max_age_days` are deleted: the disk the spools
//! need is not filled by an ever-growing log.

mod retention;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
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
    /// Rotate before the file would grow past this (bytes); 0: never.
    pub max_bytes: u64,
    /// Rotated files kept (the oldest beyond are deleted).
    pub keep_files: usize,
    /// Rotated files older than this are deleted (days); 0: no age limit.
    pub max_age_days: f64,
}

impl Default for JsonlSinkConfig {
    fn default() -> Self {
        Self { enabled: true, path: PathBuf::from("var/events.jsonl"), max_bytes: 256 << 20, keep_files: 8, max_age_days: 30.0 }
    }
}

/// `sinks.jsonl.*` keys.
pub fn validate(c: &JsonlSinkConfig, iss: &mut crate::model::Issues) {
    if c.enabled && c.path.as_os_str().is_empty() {
        iss.add("sinks.jsonl.path", "empty path", "set a file path or enabled = false");
    }
    if c.max_bytes != 0 && c.max_bytes < 64 << 10 {
        iss.add(
            "sinks.jsonl.max_bytes",
            format!("{} bytes would rotate after a few events", c.max_bytes),
            "use e.g. 268435456 (256 MiB), or 0 to never rotate",
        );
    }
    if !(0.0..=36_500.0).contains(&c.max_age_days) {
        iss.add("sinks.jsonl.max_age_days", format!("{} days", c.max_age_days), "use 0 (no limit) or up to 36500 days, e.g. 30");
    }
}

pub struct JsonlSink {
    path: PathBuf,
    file: Option<File>,
    policy: retention::Policy,
    metrics: Option<Arc<crate::telemetry::metrics::Metrics>>,
    /// Age pruning runs at most this often (a directory listing per batch is waste).
    last_prune: Option<std::time::Instant>,
}

impl JsonlSink {
    /// Opens (creating directories) or fails with a message naming the path; never
    /// rotates.
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        Self::with_config(&JsonlSinkConfig { path: path.to_path_buf(), max_bytes: 0, max_age_days: 0.0, ..Default::default() }, None)
    }

    pub fn with_config(c: &JsonlSinkConfig, metrics: Option<Arc<crate::telemetry::metrics::Metrics>>) -> Result<Self, SinkError> {
        let policy = retention::Policy {
            max_bytes: c.max_bytes,
            keep_files: c.keep_files,
            max_age: (c.max_age_days > 0.0).then(|| std::time::Duration::from_secs_f64(c.max_age_days * 86_400.0)),
        };
        let mut s = Self { path: c.path.clone(), file: None, policy, metrics, last_prune: None };
        s.reopen()?;
        s.prune();
        Ok(s)
    }

    /// Deletes rotated files beyond the count or age limits.
    fn prune(&mut self) {
        self.last_prune = Some(std::time::Instant::now());
        match retention::prune(&self.path, &self.policy, std::time::SystemTime::now()) {
            Ok(deleted) if deleted > 0 => {
                tracing::info!(deleted, file = %self.path.display(), "deleted old rotated event files");
                if let Some(m) = &self.metrics {
                    m.retention_deleted.with_label_values(&["jsonl"]).inc_by(deleted);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, file = %self.path.display(), "cannot prune rotated event files"),
        }
    }

    /// Renames the current file aside and starts a new one.
    fn rotate(&mut self) -> Result<(), SinkError> {
        self.file = None;
        let to = retention::rotate(&self.path, time::OffsetDateTime::now_utc()).map_err(|e| SinkError(format!("rotating {}: {e}", self.path.display())))?;
        tracing::info!(file = %self.path.display(), to = %to.display(), "events file rotated");
        if let Some(m) = &self.metrics {
            m.jsonl_files_rotated.inc();
        }
        self.reopen()?;
        self.prune();
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| SinkError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(|e| SinkError(format!("cannot open {}: {e}", self.path.display())))?;
        cut_torn_tail(&f).map_err(|e| SinkError(format!("repairing {}: {e}", self.path.display())))?;
        self.file = Some(f);
        Ok(())
    }
}

/// Cuts a last line without its newline (a write that a crash interrupted): the events
/// of that batch were never reported written, so they come again.
fn cut_torn_tail(f: &File) -> std::io::Result<()> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Scan back from the end in blocks for the last newline.
    let mut r = f;
    let mut end = len;
    let mut block = vec![0u8; 64 << 10];
    let keep = loop {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        r.seek(SeekFrom::Start(start))?;
        r.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    if keep < len {
        tracing::warn!(torn_bytes = len - keep, "events file: cutting a torn last line (an interrupted write)");
        f.set_len(keep)?;
        f.sync_data()?;
    }
    Ok(())
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        if self.file.is_none() {
            self.reopen()?;
        }
        // Build the whole batch first so a failure never leaves half a line behind
        // from this batch (append writes are atomic per call on local filesystems).
        let mut buf = Vec::with_capacity(events.len() * 1024);
        for ev in events {
            serde_json::to_writer(&mut buf, &**ev).map_err(|e| SinkError(e.to_string()))?;
            buf.push(b'\n');
        }
        let size = self.file.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
        if self.policy.max_bytes > 0 && size > 0 && size + buf.len() as u64 > self.policy.max_bytes {
            self.rotate()?;
        } else if self.last_prune.is_none_or(|t| t.elapsed() >= retention::PRUNE_EVERY) {
            self.prune();
        }
        let file = self.file.as_mut().expect("opened above");
        let before = file.metadata().map_err(|e| SinkError(format!("writing {}: {e}", self.path.display())))?.len();
        let res = {
            let mut w = BufWriter::with_capacity(buf.len().max(1), &*file);
            w.write_all(&buf).and_then(|_| w.flush())
        }
        .and_then(|_| file.sync_data());
        if let Err(e) = res {
            // Roll the partial batch back; the batch is retried whole.
            if let Err(cut) = file.set_len(before) {
                tracing::error!(error = %cut, "events file: cannot roll back a failed write; the torn line is cut on reopen");
            }
            self.file = None; // reopen (and repair) on the next try
            return Err(SinkError(format!("writing {}: {e}", self.path.display())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_strictly(path: &Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "ends with a whole line");
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON value per line: {l:?}: {e}"))).collect()
    }

    #[test]
    fn a_torn_last_line_is_cut_on_open_so_the_next_event_stands_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let whole = "{\"id\":\"a\"}\n".repeat(5000); // more than one scan block
        std::fs::write(&path, format!("{whole}{{\"id\":\"torn")).unwrap();
        let f = OpenOptions::new().append(true).read(true).open(&path).unwrap();
        cut_torn_tail(&f).unwrap();
        drop(f);
        assert_eq!(lines_strictly(&path).len(), 5000);
        // A file that is one torn line, and an empty one.
        std::fs::write(&path, "{\"id\":").unwrap();
        let f = OpenOptions::new().append(true).read(true).open(&path).unwrap();
        cut_torn_tail(&f).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        cut_torn_tail(&f).unwrap();
    }

    #[test]
    fn the_sink_repairs_the_file_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, "{\"id\":\"a\"}\n{\"id\":\"b").unwrap();
        let mut sink = JsonlSink::open(&path).unwrap();
        let ev = Arc::new(crate::model::sample_event("cam", 1_700_000_000_000, crate::model::EventKind::FrameAnalyzed));
        sink.write_batch(&[ev.clone(), ev]).unwrap();
        let lines = lines_strictly(&path);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["id"], "a");
    }

    #[test]
    fn the_file_rotates_before_max_bytes_and_old_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let cfg = JsonlSinkConfig { path: path.clone(), max_bytes: 8 << 10, keep_files: 3, max_age_days: 0.0, ..Default::default() };
        let metrics = Arc::new(crate::telemetry::metrics::Metrics::new());
        let mut sink = JsonlSink::with_config(&cfg, Some(metrics.clone())).unwrap();
        let ev = Arc::new(crate::model::sample_event("cam", 1_700_000_000_000, crate::model::EventKind::FrameAnalyzed));
        let one = serde_json::to_vec(&*ev).unwrap().len() as u64 + 1;
        let mut written = 0u64;
        for _ in 0..40 {
            sink.write_batch(&[ev.clone(), ev.clone()]).unwrap();
            written += 2;
            assert!(std::fs::metadata(&path).unwrap().len() <= cfg.max_bytes.max(2 * one), "never past max_bytes");
        }
        let rotated = retention::rotated(&path).unwrap();
        assert_eq!(rotated.len(), 3, "{rotated:?}");
        let rotations = metrics.jsonl_files_rotated.get();
        assert!(rotations > 3, "{rotations}");
        assert_eq!(metrics.retention_deleted.with_label_values(&["jsonl"]).get(), rotations - 3);
        // What is kept parses strictly, and the newest files hold the newest events.
        let kept: usize = rotated.iter().chain([&path]).map(|f| lines_strictly(f).len()).sum();
        let per_file = ((cfg.max_bytes - 2 * one) / one) as usize;
        assert!(kept as u64 <= written && kept >= 3 * per_file, "{kept} of {written} ({per_file} per full file)");
    }
}
