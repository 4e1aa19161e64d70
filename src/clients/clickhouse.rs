//! `[sinks.clickhouse]`: the connection the ClickHouse sink writes through and the
//! ClickHouse store (behind the API, with `serve_api`) reads through.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::clients::{ReplayOrder, SpoolSettings, WhenFull};
use crate::model::Issues;

/// Events (and one row per object) into ClickHouse for analysts (`clickhouse` feature).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    pub enabled: bool,
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub user: String,
    /// Prefer `ARGUS_SINKS__CLICKHOUSE__PASSWORD` to writing it here.
    pub password: String,
    /// An insert is sent when this many rows are waiting…
    pub max_rows: usize,
    /// …or the oldest has waited this long.
    pub max_wait_ms: u64,
    /// Events wait here (fsync'd) while ClickHouse is down, replayed in order on return.
    pub spool_dir: PathBuf,
    /// How large the spool may grow.
    pub spool_max_mb: u64,
    /// A full spool: `"shed"` (default: this sink drops new events, counted and
    /// alarmed, so an analysts' database down for days never stops control-room
    /// delivery) or `"wait"` (the whole pipeline waits; nothing is dropped anywhere).
    pub when_full: WhenFull,
    /// While a backlog replays: `"live_first"` (default) or `"in_order"`.
    pub replay: ReplayOrder,
    /// Refusals of one event by the server (a `Code:` error that is not an outage)
    /// before it is dead-lettered.
    pub max_rejections: u32,
    /// Each query (migrations, API reads), connecting included, gives up after this.
    pub request_timeout_ms: u64,
    /// Each insert, connecting and the server's answer included, gives up after this;
    /// the batch then goes to the spool.
    pub insert_timeout_ms: u64,
    /// The HTTP API answers event queries from ClickHouse instead of the embedded store.
    pub serve_api: bool,
    /// The cluster (`<remote_servers>` in the servers' config) the tables live on;
    /// empty = one server. Set, migrations run `ON CLUSTER`, each table is a
    /// `ReplicatedReplacingMergeTree` `<table>_local` on every host plus a `Distributed`
    /// `<table>` sharded by camera, which the sink inserts into (synchronously) and the
    /// API reads. The servers need the `{shard}` and `{replica}` macros and ZooKeeper.
    pub cluster: String,
    /// Drop partitions older than this many days (TTL; only on servers that support
    /// it, ClickHouse ≥ 20; 0 = keep forever).
    pub retention_days: u32,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "http://127.0.0.1:8123".into(),
            database: "argus".into(),
            user: "default".into(),
            password: String::new(),
            max_rows: 10_000,
            max_wait_ms: 1000,
            spool_dir: PathBuf::from("var/spool/clickhouse"),
            spool_max_mb: 1024,
            when_full: WhenFull::Shed,
            replay: ReplayOrder::LiveFirst,
            max_rejections: 5,
            request_timeout_ms: 10_000,
            insert_timeout_ms: 30_000,
            serve_api: true,
            cluster: String::new(),
            retention_days: 0,
        }
    }
}

impl ClickHouseConfig {
    pub fn spool_settings(&self) -> SpoolSettings {
        SpoolSettings::from_keys(self.spool_max_mb, self.when_full, self.replay, self.max_rejections)
    }
}

/// `sinks.clickhouse.*` keys.
pub fn validate(ch: &ClickHouseConfig, iss: &mut Issues) {
    if ch.enabled {
        if !cfg!(feature = "clickhouse") {
            iss.add(
                "sinks.clickhouse.enabled",
                "this build has no ClickHouse support",
                "build with `--features clickhouse` (on by default) or set enabled = false",
            );
        }
        if !(ch.url.starts_with("http://") || ch.url.starts_with("https://")) {
            iss.add("sinks.clickhouse.url", format!("`{}` is not an http(s) URL", ch.url), "use the HTTP interface, e.g. \"http://127.0.0.1:8123\"");
        }
        let ident = |s: &str| {
            !s.is_empty() && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !ident(&ch.database) {
            iss.add("sinks.clickhouse.database", format!("`{}` is not a plain identifier", ch.database), "use letters, digits and _, e.g. \"argus\"");
        }
        if !ch.cluster.is_empty() && !ident(&ch.cluster) {
            iss.add(
                "sinks.clickhouse.cluster",
                format!("`{}` is not a plain identifier", ch.cluster),
                "use the cluster's name from the servers' <remote_servers> (letters, digits and _), or \"\" for one server",
            );
        }
        crate::clients::check_batching_and_spool(iss, "clickhouse", ("max_rows", ch.max_rows, 1_000_000, 10_000), ch.max_wait_ms, ch.spool_max_mb);
        crate::clients::check_policy(iss, "clickhouse", ch.max_rejections);
        for (key, ms) in [("request_timeout_ms", ch.request_timeout_ms), ("insert_timeout_ms", ch.insert_timeout_ms)] {
            if !(100..=600_000).contains(&ms) {
                iss.add(format!("sinks.clickhouse.{key}"), format!("{ms} ms"), "use 100..=600000, e.g. 10000");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ch: &ClickHouseConfig) -> Vec<String> {
        let path = std::path::Path::new("argus.toml");
        let mut iss = Issues::new(path);
        validate(ch, &mut iss);
        iss.into_vec().into_iter().map(|i| i.key).collect()
    }

    #[test]
    fn a_cluster_name_is_a_plain_identifier_or_empty() {
        let base = ClickHouseConfig { enabled: true, ..Default::default() };
        let ok = |c: &str| keys(&ClickHouseConfig { cluster: c.into(), ..base.clone() }).iter().all(|k| k != "sinks.clickhouse.cluster");
        assert!(ok(""));
        assert!(ok("argus_cluster"));
        assert!(!ok("argus cluster"));
        assert!(!ok("x; DROP TABLE events"));
        assert!(!ok("1st"));
    }
}
