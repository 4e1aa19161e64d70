//! The ClickHouse sink: batched inserts into `events` and `objects`; a bounded on-disk
//! spool while the server is down, replayed oldest first when it returns.
//!
//! A batch is acknowledged once it is in ClickHouse or fsync'd in the spool. While the
//! spool holds anything, new events go behind it (order is kept), and the server is
//! retried with exponential backoff (0.5 s → 30 s). A full spool is an alarm: the
//! write fails, the sink queue fills and the pipeline waits; nothing is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Conn, insert_events, migrate};
use crate::config::ClickHouseSinkConfig;
use crate::event::Event;
use crate::health::{Health, State};
use crate::metrics::Metrics;
use crate::sinks::{Batching, Sink, SinkError};
use crate::spool::{Spool, SpoolError};
use crate::store::StoreError;

const NAME: &str = "clickhouse";
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long `finish` keeps trying to empty the spool at shutdown.
const FINISH_GRACE: Duration = Duration::from_secs(10);

pub struct ClickHouseSink {
    conn: Conn,
    spool: Spool,
    max_rows: usize,
    max_wait: Duration,
    retention_days: u32,
    migrated: bool,
    backoff: Duration,
    next_try: Instant,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl ClickHouseSink {
    /// Opens the spool and tries the migrations once; a server that is down now is not
    /// an error (events spool until it is up).
    pub fn open(cfg: &ClickHouseSinkConfig, metrics: Arc<Metrics>, health: Arc<Health>) -> Result<Self, SinkError> {
        let conn = Conn::new(cfg).map_err(|e| SinkError(e.to_string()))?;
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_mb.saturating_mul(1 << 20)).map_err(|e| SinkError(format!("sinks.clickhouse.spool_dir: {e}")))?;
        if !spool.is_empty() {
            tracing::info!(events = spool.len(), dir = %cfg.spool_dir.display(), "ClickHouse spool has events from an earlier run; replaying when the server is up");
        }
        let mut sink = Self {
            conn,
            spool,
            max_rows: cfg.max_rows,
            max_wait: Duration::from_millis(cfg.max_wait_ms),
            retention_days: cfg.retention_days,
            migrated: false,
            backoff: MIN_BACKOFF,
            next_try: Instant::now(),
            metrics,
            health,
        };
        if let Err(e) = sink.ensure_schema() {
            tracing::warn!(url = sink.conn.url(), error = %e, "ClickHouse is not reachable yet; events will spool until it is");
            sink.failed(&e);
        }
        sink.report();
        Ok(sink)
    }

    fn ensure_schema(&mut self) -> Result<(), StoreError> {
        if !self.migrated {
            migrate(&self.conn, self.retention_days)?;
            self.migrated = true;
        }
        Ok(())
    }

    fn insert(&mut self, events: &[Arc<Event>]) -> Result<(), StoreError> {
        self.ensure_schema()?;
        match insert_events(&self.conn, events, true) {
            Ok((events, objects)) => {
                let m = &self.metrics;
                m.clickhouse_rows_written.with_label_values(&["events"]).inc_by(events as u64);
                m.clickhouse_rows_written.with_label_values(&["objects"]).inc_by(objects as u64);
                m.clickhouse_batches_written.with_label_values(&["events"]).inc();
                if objects > 0 {
                    m.clickhouse_batches_written.with_label_values(&["objects"]).inc();
                }
                Ok(())
            }
            Err(e) => {
                self.metrics.clickhouse_inserts_failed.with_label_values(&["events"]).inc();
                Err(e)
            }
        }
    }

    fn failed(&mut self, e: &StoreError) {
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        if matches!(e, StoreError::ClickHouse(m) if m.contains("Code: ")) {
            // The server answered with an error: the schema may have been dropped.
            self.migrated = false;
        }
    }

    fn succeeded(&mut self) {
        self.backoff = MIN_BACKOFF;
        self.next_try = Instant::now();
    }

    /// Replays the spool oldest first; true once it is empty.
    fn replay(&mut self) -> bool {
        while !self.spool.is_empty() {
            if Instant::now() < self.next_try {
                return false;
            }
            let (records, pos) = match self.spool.peek(self.max_rows) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the ClickHouse spool");
                    self.next_try = Instant::now() + MAX_BACKOFF;
                    return false;
                }
            };
            let mut events = Vec::with_capacity(records.len());
            for r in &records {
                match serde_json::from_slice::<Event>(r) {
                    Ok(ev) => events.push(Arc::new(ev)),
                    Err(e) => tracing::error!(error = %e, "unreadable event in the ClickHouse spool; skipped"),
                }
            }
            if let Err(e) = self.insert(&events) {
                tracing::warn!(error = %e, spooled = self.spool.len(), retry_in_ms = self.backoff.as_millis() as u64, "ClickHouse still unavailable");
                self.failed(&e);
                self.report();
                return false;
            }
            if let Err(e) = self.spool.ack(pos, records.len()) {
                // The rows are in ClickHouse; a replay of them later is harmless.
                tracing::error!(error = %e, "cannot advance the ClickHouse spool");
                self.next_try = Instant::now() + MAX_BACKOFF;
                return false;
            }
            self.succeeded();
            self.metrics.spool_events_replayed.with_label_values(&[NAME]).inc_by(records.len() as u64);
            if self.spool.is_empty() {
                tracing::info!("ClickHouse is back; the spool is replayed");
            }
            self.report();
        }
        true
    }

    fn spool_events(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        let lines: Vec<String> = events.iter().map(|e| serde_json::to_string(&**e).expect("events serialise")).collect();
        match self.spool.push(&lines) {
            Ok(()) => {
                self.metrics.spool_events_spooled.with_label_values(&[NAME]).inc_by(events.len() as u64);
                self.report();
                Ok(())
            }
            Err(e @ SpoolError::Full { .. }) => {
                self.metrics.spool_full.with_label_values(&[NAME]).inc();
                tracing::error!(error = %e, "ALARM: the ClickHouse spool is full; the pipeline waits until ClickHouse is back");
                self.health.set_sink(NAME, State::Error, Some(format!("ClickHouse unreachable and the spool is full ({} events)", self.spool.len())));
                // Give replay its chance on the next try even if the backoff is long.
                self.next_try = self.next_try.min(Instant::now() + Duration::from_secs(1));
                Err(SinkError(e.to_string()))
            }
            Err(e) => Err(SinkError(e.to_string())),
        }
    }

    /// Spool gauges and the sink's health detail.
    fn report(&self) {
        let m = &self.metrics;
        m.spool_events.with_label_values(&[NAME]).set(self.spool.len() as i64);
        m.spool_bytes.with_label_values(&[NAME]).set(self.spool.bytes() as i64);
        if self.spool.is_empty() {
            self.health.set_sink(NAME, State::Running, None);
        } else {
            let detail = format!(
                "ClickHouse unavailable; {} events spooled ({:.1} of {} MiB)",
                self.spool.len(),
                self.spool.bytes() as f64 / (1 << 20) as f64,
                self.spool.max_bytes() >> 20
            );
            // Spooling is degraded, not failed: every event is durable and will arrive.
            self.health.set_sink(NAME, State::Running, Some(detail));
        }
    }
}

impl Sink for ClickHouseSink {
    fn name(&self) -> &str {
        NAME
    }

    fn batching(&self) -> Batching {
        Batching { max_events: self.max_rows, max_wait: self.max_wait }
    }

    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        if self.replay() && Instant::now() >= self.next_try {
            match self.insert(events) {
                Ok(()) => {
                    self.succeeded();
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, events = events.len(), "ClickHouse insert failed; spooling");
                    self.failed(&e);
                }
            }
        }
        self.spool_events(events)
    }

    fn idle(&mut self) {
        self.replay();
    }

    fn finish(&mut self) {
        let until = Instant::now() + FINISH_GRACE;
        while !self.replay() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200).min(self.next_try.saturating_duration_since(Instant::now()).max(Duration::from_millis(50))));
        }
        if !self.spool.is_empty() {
            tracing::warn!(events = self.spool.len(), "stopping with events in the ClickHouse spool; they are replayed on the next start");
        }
    }
}
