//! The embedded store as a sink, and its retention: events stored longer ago than
//! `store.retention_days` are deleted, checked at the first batch and every 10 minutes
//! after, on this sink's thread (never on the pipeline's).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Sink, SinkError};
use crate::model::Event;
use crate::store::EventStore;
use crate::telemetry::metrics::Metrics;

/// How often retention runs.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

pub struct StoreSink {
    store: Arc<dyn EventStore>,
    /// Keep events this long; `None`: for ever.
    retention: Option<Duration>,
    metrics: Arc<Metrics>,
    last_prune: Option<Instant>,
}

impl StoreSink {
    pub fn new(store: Arc<dyn EventStore>, retention_days: f64, metrics: Arc<Metrics>) -> Self {
        let retention = (retention_days > 0.0).then(|| Duration::from_secs_f64(retention_days * 86_400.0));
        Self { store, retention, metrics, last_prune: None }
    }

    /// Deletes what is past retention (a failure is logged; the events stay).
    pub fn prune(&mut self) -> u64 {
        self.last_prune = Some(Instant::now());
        let Some(keep) = self.retention else { return 0 };
        let cutoff = time::OffsetDateTime::now_utc() - keep;
        match self.store.prune(cutoff) {
            Ok(n) => {
                if n >= crate::store::PRUNE_MAX_PER_CALL {
                    // More to delete: go on at the next batch instead of in 10 minutes.
                    self.last_prune = None;
                }
                if n > 0 {
                    tracing::info!(deleted = n, retention_days = keep.as_secs_f64() / 86_400.0, "store: deleted events past retention");
                    self.metrics.retention_deleted.with_label_values(&["store"]).inc_by(n);
                }
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "store: retention failed; will retry");
                0
            }
        }
    }
}

impl Sink for StoreSink {
    fn name(&self) -> &str {
        "store"
    }

    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        if self.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            self.prune();
        }
        self.store.insert(events).map_err(|e| SinkError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn events_past_retention_are_deleted_by_when_they_were_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let metrics = Arc::new(Metrics::new());
        // Captured in 2023, stored now: within a 1-day retention.
        let old_capture: Vec<_> =
            (0..12_000).map(|i| Arc::new(crate::model::sample_event("cam", 1_700_000_000_000 + i, crate::model::EventKind::FrameAnalyzed))).collect();
        let mut sink = StoreSink::new(store.clone(), 1.0, metrics.clone());
        sink.write_batch(&old_capture).unwrap();
        assert_eq!(sink.prune(), 0);
        assert_eq!(store.count().unwrap(), 12_000);
        // Two days on (the cutoff moved past them): all go, in slices.
        assert_eq!(store.prune(time::OffsetDateTime::now_utc() + time::Duration::days(2)).unwrap(), 12_000);
        assert_eq!(store.count().unwrap(), 0);
        // Retention 0 keeps everything.
        let mut keep_all = StoreSink::new(store.clone(), 0.0, metrics.clone());
        keep_all.write_batch(&old_capture[..10]).unwrap();
        assert_eq!(keep_all.prune(), 0);
        assert_eq!(store.count().unwrap(), 10);
    }

    #[test]
    fn an_older_store_gets_the_column_and_keeps_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE events (event_id TEXT PRIMARY KEY, captured_ms INTEGER NOT NULL, camera_id TEXT NOT NULL, pipeline TEXT NOT NULL,
                 kind TEXT NOT NULL, incident_id TEXT, level_rank INTEGER NOT NULL, priority INTEGER NOT NULL, score REAL NOT NULL,
                 classes TEXT NOT NULL, zones TEXT NOT NULL, payload TEXT NOT NULL);
                 INSERT INTO events VALUES ('e1', 1, 'cam', 'p', 'frame.analyzed', NULL, 0, 0, 0.0, ',', ',', '{}');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.prune(time::OffsetDateTime::now_utc() - time::Duration::hours(1)).unwrap(), 0, "counted as stored at the upgrade");
        assert_eq!(store.count().unwrap(), 1);
        drop(store);
        SqliteStore::open(&path).unwrap(); // the migration runs once
    }
}
