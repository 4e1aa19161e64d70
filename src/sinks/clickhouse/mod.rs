//! The ClickHouse sink: batched inserts into `events` and `objects`, behind
//! `SpooledSink` (bounded on-disk spool while the server is down, replayed in order).

use std::sync::Arc;
use std::time::Duration;

use crate::clients::clickhouse::ClickHouseConfig;
use crate::store::clickhouse::{Conn, insert_events, migrate};

use crate::model::Event;
use crate::sinks::spool::{Delivery, SpooledSink};
use crate::sinks::{Batching, SinkError};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

pub struct ClickHouseDelivery {
    conn: Conn,
    retention_days: u32,
    metrics: Arc<Metrics>,
}

/// The sink the pipeline runs: ClickHouse behind a spool.
pub type ClickHouseSink = SpooledSink;

/// Opens the ClickHouse sink (a server that is down now is not an error).
pub fn open_sink(cfg: &ClickHouseConfig, metrics: Arc<Metrics>, health: Arc<Health>) -> Result<ClickHouseSink, SinkError> {
    let conn = Conn::new(cfg).map_err(|e| SinkError(e.to_string()))?;
    let delivery = ClickHouseDelivery { conn, retention_days: cfg.retention_days, metrics: metrics.clone() };
    let batching = Batching { max_events: cfg.max_rows, max_wait: Duration::from_millis(cfg.max_wait_ms) };
    SpooledSink::open(delivery, &cfg.spool_dir, cfg.spool_settings(), batching, metrics, health)
}

impl Delivery for ClickHouseDelivery {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    fn target(&self) -> String {
        format!("ClickHouse {}", self.conn.url())
    }

    fn prepare(&mut self) -> Result<(), String> {
        migrate(&self.conn, self.retention_days).map(|_| ()).map_err(|e| e.to_string())
    }

    fn deliver(&mut self, events: &[Arc<Event>]) -> Result<(), String> {
        let m = &self.metrics;
        match insert_events(&self.conn, events, true) {
            Ok((events, objects)) => {
                m.clickhouse_rows_written.with_label_values(&["events"]).inc_by(events as u64);
                m.clickhouse_rows_written.with_label_values(&["objects"]).inc_by(objects as u64);
                m.clickhouse_batches_written.with_label_values(&["events"]).inc();
                if objects > 0 {
                    m.clickhouse_batches_written.with_label_values(&["objects"]).inc();
                }
                Ok(())
            }
            Err(e) => {
                m.clickhouse_inserts_failed.with_label_values(&["events"]).inc();
                Err(e.to_string())
            }
        }
    }

    /// The server answered with an error (`Code: N`): the schema may be gone (a dropped
    /// table, a fresh server), so migrate again before the next insert.
    fn needs_prepare_after(&self, error: &str) -> bool {
        crate::store::clickhouse::error_code(error).is_some()
    }

    fn is_rejection(&self, error: &str) -> bool {
        crate::store::clickhouse::is_rejection(error)
    }
}
