//! ClickHouse (`clickhouse` feature): the analysts' copy of every event. This module
//! owns the data layout; the sink (`crate::sinks::clickhouse`) writes through it.
//!
//! - `schema`: versioned, idempotent migrations run at start-up (database, `events`,
//!   `objects`), plus modern-only extras when `SELECT version()` allows them.
//! - `rows` and [`insert_events`]: an event and its objects as rows; the sink inserts
//!   in batches and spools (`crate::sinks::spool`) while the server is down.
//! - `store`: the `EventStore` the HTTP API queries when ClickHouse is configured.
//!
//! One schema runs unchanged on Debian's ClickHouse 18.16 and on current releases:
//! `DateTime('UTC')` plus a `UInt64` milliseconds column (no DateTime64), no
//! LowCardinality, TTL, codecs or Map. Tables are `ReplacingMergeTree` keyed by
//! (camera, time, event id), so a replayed event replaces itself; read with `FINAL`.
//! The `clickhouse` crate runs with validation off (18.16 lacks
//! RowBinaryWithNamesAndTypes), so a test round-trips a full row against the server.
//! Everything a caller supplies is bound with `?`, never spliced into SQL.

pub mod rows;
pub mod schema;
mod store;

use std::future::Future;

pub use rows::{EventRow, ObjectRow, event_rows, kind_code};
pub use schema::{Layout, MIGRATIONS, migrate};
pub use store::ClickHouseStore;

use crate::clients::clickhouse::ClickHouseConfig;
use crate::store::StoreError;

/// A client plus the small tokio runtime that drives it. Sinks and stores call it from
/// their own threads (never from tokio workers), blocking on each request.
pub struct Conn {
    /// Always `Some` until dropped.
    rt: Option<tokio::runtime::Runtime>,
    /// Bound to the database.
    client: clickhouse::Client,
    /// For `CREATE DATABASE` (the database may not exist yet).
    server: clickhouse::Client,
    database: String,
    url: String,
    /// Every query gives up after this (connecting included)…
    request_timeout: std::time::Duration,
    /// …and every insert after this.
    insert_timeout: std::time::Duration,
    layout: schema::Layout,
}

impl Conn {
    pub fn new(cfg: &ClickHouseConfig) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("argus-clickhouse")
            .enable_all()
            .build()
            .map_err(|e| StoreError::ClickHouse(format!("cannot start the client runtime: {e}")))?;
        let server = clickhouse::Client::default()
            .with_url(cfg.url.trim_end_matches('/'))
            .with_user(cfg.user.clone())
            .with_password(cfg.password.clone())
            .with_validation(false);
        let layout = if cfg.cluster.is_empty() {
            schema::Layout::Single
        } else {
            schema::Layout::Cluster { cluster: cfg.cluster.clone(), database: cfg.database.clone() }
        };
        let mut client = server.clone().with_database(cfg.database.clone());
        if !cfg.cluster.is_empty() {
            // An insert into a distributed table returns once a replica of each shard it
            // touched has the rows, not when this server queued them for later: the spool
            // (and the Kafka offsets behind it) let go of events only once they are there.
            client = client.with_setting("insert_distributed_sync", "1");
        }
        Ok(Self {
            rt: Some(rt),
            client,
            server,
            database: cfg.database.clone(),
            url: crate::telemetry::redact::redact_url(&cfg.url),
            request_timeout: std::time::Duration::from_millis(cfg.request_timeout_ms),
            insert_timeout: std::time::Duration::from_millis(cfg.insert_timeout_ms),
            layout,
        })
    }

    /// Runs one query to its end, or gives up after `request_timeout_ms`: a server that
    /// accepts the connection and never answers is an error, never a hang.
    pub fn block_on<T>(&self, f: impl Future<Output = Result<T, clickhouse::error::Error>>) -> Result<T, clickhouse::error::Error> {
        self.within(self.request_timeout, f)
    }

    /// Like `block_on`, with `insert_timeout_ms`.
    pub fn block_on_insert<T>(&self, f: impl Future<Output = Result<T, clickhouse::error::Error>>) -> Result<T, clickhouse::error::Error> {
        self.within(self.insert_timeout, f)
    }

    fn within<T>(&self, limit: std::time::Duration, f: impl Future<Output = Result<T, clickhouse::error::Error>>) -> Result<T, clickhouse::error::Error> {
        let rt = self.rt.as_ref().expect("runtime lives as long as the connection");
        rt.block_on(async { tokio::time::timeout(limit, f).await.unwrap_or(Err(clickhouse::error::Error::TimedOut)) })
    }

    /// One server, or a cluster (`sinks.clickhouse.cluster`).
    pub fn layout(&self) -> &schema::Layout {
        &self.layout
    }

    /// How long the server waits for every host of an `ON CLUSTER` statement: well
    /// inside the request timeout, so the server's answer (Code 159) comes first.
    fn ddl_wait_s(&self) -> u64 {
        (self.request_timeout.as_secs() / 2).max(1)
    }

    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The server URL without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `SELECT version()`, e.g. `18.16.1`.
    pub fn server_version(&self) -> Result<String, StoreError> {
        self.block_on(self.server.query("SELECT version()").fetch_one::<String>()).map_err(ch_err)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The API's store is dropped on a tokio thread, where a blocking shutdown panics.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Inserts events: one insert into `objects`, then one into `events` (an event row is
/// the sign that its objects are in). Events that cannot be represented (a capture
/// time outside 1970..2106) are an error, or with `skip_unrepresentable` logged and
/// left out, since retrying could never store them. Returns (event rows, object rows).
pub fn insert_events(conn: &Conn, events: &[std::sync::Arc<crate::model::Event>], skip_unrepresentable: bool) -> Result<(usize, usize), StoreError> {
    let c = conn.client();
    // Rows are built while the objects insert streams: the server parses one chunk while
    // the next is built (building was a third of a batch's time, bench-clickhouse). The
    // objects still go in before their events, and a batch that fails part-way is
    // aborted whole (an `Insert` dropped before `end` is).
    let mut unrepresentable: Option<StoreError> = None;
    let inserted = conn.block_on_insert(async {
        let mut rows = Vec::with_capacity(events.len());
        let mut objects: Option<clickhouse::insert::Insert<ObjectRow>> = None;
        let mut object_rows = 0;
        for ev in events {
            match event_rows(ev) {
                Ok((r, o)) => {
                    rows.push(r);
                    for row in &o {
                        let ins = match &mut objects {
                            Some(ins) => ins,
                            None => objects.insert(c.insert::<ObjectRow>("objects").await?),
                        };
                        ins.write(row).await?;
                    }
                    object_rows += o.len();
                }
                Err(e) if skip_unrepresentable => {
                    tracing::error!(event_id = %ev.event_id, error = %e, "event cannot be stored in ClickHouse; left out there (other sinks have it)")
                }
                Err(e) => {
                    unrepresentable = Some(e);
                    return Ok((0, 0)); // `objects` is dropped unfinished: aborted
                }
            }
        }
        if let Some(ins) = objects {
            ins.end().await?;
        }
        if !rows.is_empty() {
            let mut ins = c.insert::<EventRow>("events").await?;
            for r in &rows {
                ins.write(r).await?;
            }
            ins.end().await?;
        }
        Ok((rows.len(), object_rows))
    });
    if let Some(e) = unrepresentable {
        return Err(e);
    }
    inserted.map_err(ch_err)
}

/// ClickHouse errors, keeping the server's `Code: N` (the only stable part across
/// versions) and never the password.
pub fn ch_err(e: clickhouse::error::Error) -> StoreError {
    StoreError::ClickHouse(crate::telemetry::redact::redact_text(&e.to_string()))
}

/// Server error codes that mean "not now" rather than "not this data": timeouts,
/// network, memory, too many parts or queries, read-only replicas, the coordination
/// service (225, 999), every replica of a shard unreachable (279), missing tables or
/// databases (the sink migrates again). Any other `Code:`
/// refuses the data itself.
const TRANSIENT_CODES: &[u32] = &[3, 60, 81, 159, 164, 202, 203, 209, 210, 225, 236, 241, 242, 252, 279, 285, 319, 394, 425, 439, 999];

/// The server answered and refused the data itself (see `TRANSIENT_CODES`).
pub fn is_rejection(message: &str) -> bool {
    error_code(message).is_some_and(|c| !TRANSIENT_CODES.contains(&c))
}

/// The server's error code (`Code: N`) in an error message, if any.
pub fn error_code(message: &str) -> Option<u32> {
    let at = message.find("Code: ")? + "Code: ".len();
    let digits: String = message[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_from_old_and_new_servers() {
        assert_eq!(error_code("Code: 60, e.displayText() = DB::Exception: Table argus.x doesn't exist., e.what() = DB::Exception"), Some(60));
        assert_eq!(error_code("Code: 60. DB::Exception: Unknown table expression identifier 'x'. (UNKNOWN_TABLE)"), Some(60));
        assert_eq!(error_code("connection refused"), None);
    }

    #[test]
    fn refusals_are_told_from_outages() {
        assert!(is_rejection("Code: 16, e.displayText() = DB::Exception: No such column zone in table argus.events"));
        assert!(is_rejection("Code: 27. DB::Exception: Cannot parse input"));
        assert!(!is_rejection("Code: 241. DB::Exception: Memory limit (total) exceeded"));
        assert!(!is_rejection("Code: 252. DB::Exception: Too many parts"));
        assert!(!is_rejection("Code: 60. DB::Exception: Table argus.events doesn't exist"));
        assert!(!is_rejection("timeout expired"));
        assert!(!is_rejection("network error: connection refused"));
    }
}
