//! Versioned migrations. Each statement is idempotent (`IF NOT EXISTS`), and a version
//! is recorded in `argus_migrations` only after all its statements ran, so a crash in
//! the middle simply runs that version again.

use time::OffsetDateTime;

use super::{Conn, ch_err};
use crate::store::StoreError;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub steps: &'static [Step],
}

/// One change to the schema, written once and rendered for the layout in use
/// ([`Layout`]): a table on one server, or replicated locals plus a distributed table
/// on a cluster. (A later `ADD COLUMN` becomes a step too: on a cluster it alters the
/// locals and the distributed table `ON CLUSTER`.)
pub enum Step {
    Table(Table),
    /// A column's new type, e.g. an `Enum8` with more values (ClickHouse changes only
    /// the metadata for that); the same type again is a no-op, so it is idempotent.
    ModifyColumn {
        table: &'static str,
        column: &'static str,
        to: &'static str,
    },
}

/// A `ReplacingMergeTree` table: replayed rows (same sorting key) replace themselves.
pub struct Table {
    pub name: &'static str,
    pub columns: &'static str,
    pub partition_by: &'static str,
    pub order_by: &'static str,
    /// The distributed table's sharding key: one camera's rows live on one shard, so
    /// `FINAL` (run per shard) still collapses every replay of an event.
    pub shard_by: &'static str,
}

/// Where the tables live.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// One server: the tables themselves.
    Single,
    /// `sinks.clickhouse.cluster`: `<table>_local` (`ReplicatedReplacingMergeTree`, on
    /// every host, created `ON CLUSTER`) and `<table>` (`Distributed` over them), which
    /// the sink inserts into and the API and analysts read. The servers' config supplies
    /// the `{shard}` and `{replica}` macros and the cluster in `<remote_servers>`.
    Cluster { cluster: String, database: String },
}

/// The name the sink writes and the API reads; on a cluster, the distributed table.
pub const LOCAL_SUFFIX: &str = "_local";

impl Table {
    /// The statements that create this table in `layout` (each idempotent).
    pub fn create(&self, layout: &Layout) -> Vec<String> {
        let (name, columns, partition, order) = (self.name, self.columns, self.partition_by, self.order_by);
        match layout {
            Layout::Single => {
                vec![format!("CREATE TABLE IF NOT EXISTS {name} ({columns}) ENGINE = ReplacingMergeTree PARTITION BY {partition} ORDER BY {order}")]
            }
            // Fully qualified: an `ON CLUSTER` query runs on each host in that host's
            // default database otherwise.
            Layout::Cluster { cluster, database: db } => vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {db}.{name}{LOCAL_SUFFIX} ON CLUSTER {cluster} ({columns}) \
                     ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{db}/{name}', '{{replica}}') \
                     PARTITION BY {partition} ORDER BY {order}"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {db}.{name} ON CLUSTER {cluster} AS {db}.{name}{LOCAL_SUFFIX} \
                     ENGINE = Distributed({cluster}, {db}, {name}{LOCAL_SUFFIX}, {shard})",
                    shard = self.shard_by
                ),
            ],
        }
    }
}

impl Step {
    pub fn statements(&self, layout: &Layout) -> Vec<String> {
        match self {
            Step::Table(t) => t.create(layout),
            Step::ModifyColumn { table, column, to } => match layout {
                Layout::Single => vec![format!("ALTER TABLE {table} MODIFY COLUMN {column} {to}")],
                // The replicated locals hold the data: the ALTER runs once per shard and
                // reaches the other replicas through ZooKeeper. A distributed table takes
                // no ALTER `ON CLUSTER` on a replicated cluster (Code 371), and holds no
                // data (inserts are synchronous): it is made again with the new columns,
                // listed rather than copied from a local that a replica may not have
                // altered yet.
                Layout::Cluster { cluster, database: db } => {
                    let t = table_def(table);
                    let columns = altered_columns(t.columns, column, to);
                    vec![
                        format!("ALTER TABLE {db}.{table}{LOCAL_SUFFIX} ON CLUSTER {cluster} MODIFY COLUMN {column} {to}"),
                        format!("DROP TABLE IF EXISTS {db}.{table} ON CLUSTER {cluster}"),
                        format!(
                            "CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {cluster} ({columns}) \
                             ENGINE = Distributed({cluster}, {db}, {table}{LOCAL_SUFFIX}, {shard})",
                            shard = t.shard_by
                        ),
                    ]
                }
            },
        }
    }
}

impl Migration {
    pub fn statements(&self, layout: &Layout) -> Vec<String> {
        self.steps.iter().flat_map(|s| s.statements(layout)).collect()
    }
}

/// Every event kind by its code (`rows::kind_code`). Migration 1 creates `kind` with
/// all of them (a replica created late, from its DDL queue, then already matches the
/// altered tables in ZooKeeper); migration 2 brings tables made before the operators'
/// actions (codes 5 to 7) to the same type, and is a no-op on the others.
macro_rules! kinds_enum {
    () => {
        "Enum8('incident.opened' = 1, 'incident.updated' = 2, 'incident.closed' = 3, 'frame.analyzed' = 4, \
         'incident.acknowledged' = 5, 'incident.assigned' = 6, 'incident.noted' = 7)"
    };
}
/// Runs on ClickHouse 18.16 and on current releases alike (see the module docs).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events and objects",
        steps: &[
            Step::Table(Table {
                name: "events",
                columns: concat!(
                    "
            event_id      UUID,
            kind          ",
                    kinds_enum!(),
                    ",
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
            payload       String"
                ),
                partition_by: "toYYYYMMDD(ts)",
                order_by: "(camera_id, ts_ms, event_id)",
                shard_by: "cityHash64(camera_id)",
            }),
            Step::Table(Table {
                name: "objects",
                columns: concat!(
                    "
            event_id      UUID,
            camera_id     String,
            ts            DateTime('UTC'),
            ts_ms         UInt64,
            kind          ",
                    kinds_enum!(),
                    ",
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
            zones         Array(String)"
                ),
                partition_by: "toYYYYMMDD(ts)",
                order_by: "(camera_id, ts_ms, event_id, idx)",
                shard_by: "cityHash64(camera_id)",
            }),
        ],
    },
    Migration {
        version: 2,
        name: "operator actions (incident.acknowledged, .assigned, .noted)",
        steps: &[Step::ModifyColumn { table: "events", column: "kind", to: KINDS_V2 }, Step::ModifyColumn { table: "objects", column: "kind", to: KINDS_V2 }],
    },
];

/// The table `name` as migration 1 created it.
fn table_def(name: &str) -> &'static Table {
    MIGRATIONS
        .iter()
        .flat_map(|m| m.steps.iter())
        .find_map(|s| match s {
            Step::Table(t) if t.name == name => Some(t),
            _ => None,
        })
        .expect("a column is modified in a table the migrations create")
}

/// `columns` (a CREATE's column list) with `column`'s type replaced by `to`.
fn altered_columns(columns: &str, column: &str, to: &str) -> String {
    columns
        .split(",\n")
        .map(|c| {
            let trimmed = c.trim_start();
            match trimmed.split_once(char::is_whitespace) {
                Some((name, _)) if name == column => format!("{}{column} {to}", &c[..c.len() - trimmed.len()]),
                _ => c.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",\n")
}

const KINDS_V2: &str = kinds_enum!();

const MIGRATIONS_COLUMNS: &str = "version UInt32, name String, applied_at DateTime('UTC')";

/// The table that records applied versions. On a cluster it is replicated (every
/// replica of a shard sees one record) but not distributed: each shard's own record.
fn migrations_table(layout: &Layout) -> String {
    match layout {
        Layout::Single => format!("CREATE TABLE IF NOT EXISTS argus_migrations ({MIGRATIONS_COLUMNS}) ENGINE = ReplacingMergeTree ORDER BY version"),
        Layout::Cluster { cluster, database: db } => format!(
            "CREATE TABLE IF NOT EXISTS {db}.argus_migrations ON CLUSTER {cluster} ({MIGRATIONS_COLUMNS}) \
             ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{db}/argus_migrations', '{{replica}}') ORDER BY version"
        ),
    }
}

/// Every table the layout needs on the server Argus talks to.
fn tables_needed(layout: &Layout) -> Vec<String> {
    let mut out = vec!["argus_migrations".to_string()];
    for m in MIGRATIONS {
        for t in m.steps.iter().filter_map(|s| if let Step::Table(t) = s { Some(t) } else { None }) {
            out.push(t.name.to_string());
            if matches!(layout, Layout::Cluster { .. }) {
                out.push(format!("{}{LOCAL_SUFFIX}", t.name));
            }
        }
    }
    out
}

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
///
/// On a cluster every statement runs `ON CLUSTER`. A host that is down does not hold
/// Argus up: the server gives up waiting for it after `distributed_ddl_task_timeout`
/// (Code 159, set below the request timeout), the host runs the queued statement when
/// it is back, and the version is recorded once the tables exist on this server.
pub fn migrate(conn: &Conn, retention_days: u32) -> Result<Vec<u32>, StoreError> {
    let db = conn.database();
    let layout = conn.layout();
    let c = conn.client();
    // Fast path: every member of a fleet runs this at each start; on a cluster each
    // run would queue DDL for every host.
    let done: Option<Vec<u32>> = conn.block_on(c.query("SELECT version FROM argus_migrations FINAL").fetch_all::<u32>()).ok();
    let mut applied = Vec::new();
    if done.as_ref().is_none_or(|d| MIGRATIONS.iter().any(|m| !d.contains(&m.version))) {
        // The database name is a validated identifier from the configuration.
        let create_db = match layout {
            Layout::Single => format!("CREATE DATABASE IF NOT EXISTS {db}"),
            Layout::Cluster { cluster, .. } => format!("CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {cluster}"),
        };
        run_ddl(conn, &conn.server, &create_db)?;
        run_ddl(conn, c, &migrations_table(layout))?;
        let done: Vec<u32> = conn.block_on(c.query("SELECT version FROM argus_migrations FINAL").fetch_all::<u32>()).map_err(ch_err)?;
        for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
            for stmt in m.statements(layout) {
                run_ddl(conn, c, &stmt).map_err(|e| StoreError::ClickHouse(format!("migration {} ({}): {e}", m.version, m.name)))?;
            }
            check_tables(conn, layout)?;
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
    }
    let version = conn.server_version()?;
    if retention_days > 0 {
        // TTL exists from ClickHouse 19.6 on; older servers keep everything.
        if major_version(&version).is_some_and(|v| v >= 20) {
            for table in ["events", "objects"] {
                let sql = match layout {
                    Layout::Single => format!("ALTER TABLE {table} MODIFY TTL ts + INTERVAL {retention_days} DAY"),
                    Layout::Cluster { cluster, .. } => {
                        format!("ALTER TABLE {db}.{table}{LOCAL_SUFFIX} ON CLUSTER {cluster} MODIFY TTL ts + INTERVAL {retention_days} DAY")
                    }
                };
                run_ddl(conn, c, &sql)?;
            }
            tracing::info!(retention_days, "ClickHouse TTL set");
        } else {
            tracing::warn!(server = %version, retention_days, "this ClickHouse has no TTL; events are kept until you drop partitions");
        }
    }
    let cluster = match layout {
        Layout::Single => "",
        Layout::Cluster { cluster, .. } => cluster.as_str(),
    };
    tracing::info!(url = conn.url(), database = db, cluster, server = %version, "ClickHouse schema ready");
    Ok(applied)
}

/// One DDL statement. `ON CLUSTER`, the server waits for every host; Code 159 means
/// some did not answer in time and will run it when back (see [`migrate`]).
fn run_ddl(conn: &Conn, client: &clickhouse::Client, sql: &str) -> Result<(), StoreError> {
    let mut q = client.query(sql);
    if let Layout::Cluster { .. } = conn.layout() {
        q = q.with_setting("distributed_ddl_task_timeout", conn.ddl_wait_s().to_string());
    }
    match conn.block_on(q.execute()).map_err(ch_err) {
        Err(StoreError::ClickHouse(e)) if matches!(conn.layout(), Layout::Cluster { .. }) && super::error_code(&e) == Some(159) => {
            tracing::warn!(error = %e, "some ClickHouse cluster hosts did not run the statement in time; they run it when they are back");
            Ok(())
        }
        other => other,
    }
}

/// After a migration's statements: the tables exist on this server (on a cluster, a
/// statement this host has not run yet is an error here, retried later).
fn check_tables(conn: &Conn, layout: &Layout) -> Result<(), StoreError> {
    let missing: Vec<String> = conn
        .block_on(conn.client().query("SELECT name FROM system.tables WHERE database = ?").bind(conn.database()).fetch_all::<String>())
        .map_err(ch_err)
        .map(|have| tables_needed(layout).into_iter().filter(|t| !have.contains(t)).collect())?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::ClickHouse(format!(
            "tables {} are missing in database {} after the migration (a cluster host that was busy runs its DDL queue later; retried)",
            missing.join(", "),
            conn.database()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_gets_replicated_locals_and_a_distributed_table_per_table() {
        let cluster = Layout::Cluster { cluster: "argus".into(), database: "argus".into() };
        let one = MIGRATIONS[0].statements(&Layout::Single);
        assert_eq!(one.len(), 2);
        assert!(one.iter().all(|s| s.contains("ENGINE = ReplacingMergeTree") && !s.contains("ON CLUSTER")));
        let many = MIGRATIONS[0].statements(&cluster);
        assert_eq!(many.len(), 4);
        assert!(many[0].starts_with("CREATE TABLE IF NOT EXISTS argus.events_local ON CLUSTER argus"), "{}", many[0]);
        assert!(many[0].contains("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/argus/events', '{replica}')"), "{}", many[0]);
        assert!(
            many[1].contains("argus.events ON CLUSTER argus AS argus.events_local ENGINE = Distributed(argus, argus, events_local, cityHash64(camera_id))"),
            "{}",
            many[1]
        );
        assert!(migrations_table(&cluster).contains("ReplicatedReplacingMergeTree"));
        assert_eq!(tables_needed(&cluster), ["argus_migrations", "events", "events_local", "objects", "objects_local"]);
        assert_eq!(tables_needed(&Layout::Single), ["argus_migrations", "events", "objects"]);
    }

    #[test]
    fn on_a_cluster_the_kind_change_alters_the_locals_and_remakes_the_distributed_tables() {
        let layout = Layout::Cluster { cluster: "c".into(), database: "db".into() };
        let stmts = MIGRATIONS[1].statements(&layout);
        assert_eq!(stmts.len(), 6);
        assert!(stmts[0].starts_with("ALTER TABLE db.events_local ON CLUSTER c MODIFY COLUMN kind Enum8("), "{}", stmts[0]);
        assert_eq!(stmts[1], "DROP TABLE IF EXISTS db.events ON CLUSTER c");
        assert!(
            stmts[2].contains("'incident.noted' = 7") && stmts[2].contains("ENGINE = Distributed(c, db, events_local, cityHash64(camera_id))"),
            "{}",
            stmts[2]
        );
        assert!(!stmts[2].contains("'frame.analyzed' = 4)"), "the old enum is gone: {}", stmts[2]);
        assert_eq!(stmts[2].matches(",\n").count(), table_def("events").columns.matches(",\n").count(), "every column kept");
        assert!(MIGRATIONS[1].statements(&Layout::Single).iter().all(|s| s.starts_with("ALTER TABLE ")));
    }

    #[test]
    fn the_kinds_enum_has_every_kind_by_its_code() {
        for k in crate::model::EventKind::ALL {
            assert!(KINDS_V2.contains(&format!("'{}' = {}", k.as_str(), super::super::kind_code(k))), "{k:?}");
        }
    }

    #[test]
    fn versions_are_increasing_and_major_parses() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(major_version("18.16.1"), Some(18));
        assert_eq!(major_version("26.9.1.1"), Some(26));
        assert_eq!(major_version("x"), None);
    }
}
