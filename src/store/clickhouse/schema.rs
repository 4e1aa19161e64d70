//! Versioned migrations. Each statement is idempotent (`IF NOT EXISTS`), and a version
//! is recorded in `argus_migrations` only after all its statements ran, so a crash in
//! the middle simply runs that version again.

use time::OffsetDateTime;

use super::{Conn, ch_err};
use crate::store::StoreError;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: &'static [&'static str],
}

/// Runs on ClickHouse 18.16 and on current releases alike (see the module docs).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "events and objects",
    statements: &[
        "CREATE TABLE IF NOT EXISTS events (
            event_id      UUID,
            kind          Enum8('incident.opened' = 1, 'incident.updated' = 2, 'incident.closed' = 3, 'frame.analyzed' = 4),
            incident_id   String,
            pipeline      String,
            camera_id     String,
            ts            DateTime('UTC'),
            ts_ms         UInt64,
            processed_ms  UInt64,
            latency_ms    Float32,
            level         Enum8('low' = 0, 'medium' = 1, 'high' = 2, 'critical' = 3),
            priority      UInt8,
            score         Float32,
            classes       Array(String),
            zones         Array(String),
            rules         Array(String),
            object_count  UInt16,
            caption       String,
            payload       String
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMMDD(ts)
        ORDER BY (camera_id, ts_ms, event_id)",
        "CREATE TABLE IF NOT EXISTS objects (
            event_id      UUID,
            camera_id     String,
            ts            DateTime('UTC'),
            ts_ms         UInt64,
            kind          Enum8('incident.opened' = 1, 'incident.updated' = 2, 'incident.closed' = 3, 'frame.analyzed' = 4),
            incident_id   String,
            idx           UInt16,
            track_id      Nullable(UInt64),
            class         String,
            confidence    Float32,
            x1            Float32,
            y1            Float32,
            x2            Float32,
            y2            Float32,
            world_x       Nullable(Float64),
            world_y       Nullable(Float64),
            lat           Nullable(Float64),
            lon           Nullable(Float64),
            speed_mps     Nullable(Float64),
            heading_deg   Nullable(Float64),
            zones         Array(String)
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMMDD(ts)
        ORDER BY (camera_id, ts_ms, event_id, idx)",
    ],
}];

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS argus_migrations (
    version     UInt32,
    name        String,
    applied_at  DateTime('UTC')
) ENGINE = ReplacingMergeTree ORDER BY version";

#[derive(clickhouse::Row, serde::Serialize)]
struct Applied {
    version: u32,
    name: String,
    #[serde(with = "clickhouse::serde::time::datetime")]
    applied_at: OffsetDateTime,
}

/// The server's major version from `SELECT version()` (`18.16.1` → 18).
pub fn major_version(v: &str) -> Option<u32> {
    v.split('.').next()?.parse().ok()
}

/// Creates the database and applies every migration not applied yet, then the
/// modern-only extras the server supports. Returns the versions it applied now.
pub fn migrate(conn: &Conn, retention_days: u32) -> Result<Vec<u32>, StoreError> {
    let db = conn.database();
    // The database name is a validated identifier from the configuration.
    conn.block_on(conn.server.query(&format!("CREATE DATABASE IF NOT EXISTS {db}")).execute()).map_err(ch_err)?;
    let c = conn.client();
    conn.block_on(c.query(MIGRATIONS_TABLE).execute()).map_err(ch_err)?;
    let done: Vec<u32> = conn.block_on(c.query("SELECT version FROM argus_migrations FINAL").fetch_all::<u32>()).map_err(ch_err)?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        for stmt in m.statements {
            conn.block_on(c.query(stmt).execute()).map_err(|e| StoreError::ClickHouse(format!("migration {} ({}): {}", m.version, m.name, ch_err(e))))?;
        }
        let row = Applied { version: m.version, name: m.name.into(), applied_at: OffsetDateTime::now_utc().replace_nanosecond(0).expect("0 is valid") };
        conn.block_on(async {
            let mut ins = c.insert::<Applied>("argus_migrations").await?;
            ins.write(&row).await?;
            ins.end().await
        })
        .map_err(ch_err)?;
        tracing::info!(database = db, version = m.version, name = m.name, "ClickHouse migration applied");
        applied.push(m.version);
    }
    let version = conn.server_version()?;
    if retention_days > 0 {
        // TTL exists from ClickHouse 19.6 on; older servers keep everything.
        if major_version(&version).is_some_and(|v| v >= 20) {
            for table in ["events", "objects"] {
                let sql = format!("ALTER TABLE {table} MODIFY TTL ts + INTERVAL {retention_days} DAY");
                conn.block_on(c.query(&sql).execute()).map_err(ch_err)?;
            }
            tracing::info!(retention_days, "ClickHouse TTL set");
        } else {
            tracing::warn!(server = %version, retention_days, "this ClickHouse has no TTL; events are kept until you drop partitions");
        }
    }
    tracing::info!(url = conn.url(), database = db, server = %version, "ClickHouse schema ready");
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_major_parses() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(major_version("18.16.1"), Some(18));
        assert_eq!(major_version("26.9.1.1"), Some(26));
        assert_eq!(major_version("x"), None);
    }
}
