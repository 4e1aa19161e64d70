//! Connection settings shared by a source, a sink and a store of one system (Kafka,
//! ClickHouse), and the checks of keys every spooling sink has.

pub mod clickhouse;
pub mod kafka;

use serde::{Deserialize, Serialize};

use crate::model::Issues;

/// The keys every spooling sink shares: `(name, value, max, example)` of its batch size,
/// `max_wait_ms`, `spool_max_mb`.
pub fn check_batching_and_spool(iss: &mut Issues, sink: &str, (name, n, max, example): (&str, usize, usize, usize), max_wait_ms: u64, spool_max_mb: u64) {
    if n == 0 || n > max {
        iss.add(format!("sinks.{sink}.{name}"), format!("{n} is outside 1..={max}"), format!("use e.g. {example}"));
    }
    if max_wait_ms > 60_000 {
        iss.add(format!("sinks.{sink}.max_wait_ms"), format!("{max_wait_ms} ms"), "use 0..=60000, e.g. 1000");
    }
    if spool_max_mb == 0 {
        iss.add(format!("sinks.{sink}.spool_max_mb"), "must be at least 1", "use e.g. 1024");
    }
}

/// The spool policies every spooling sink shares (`sinks.<sink>.when_full`, `.replay`,
/// `.max_rejections`; see `crate::sinks::spool`).
/// What a sink does while its spool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// The write fails and the pipeline waits (nothing is dropped anywhere).
    Wait,
    /// This sink drops new events (counted, alarmed); the other sinks carry on.
    Shed,
}

/// Which goes to the server first while a backlog replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReplayOrder {
    /// New batches first, the backlog in between and when idle.
    #[default]
    LiveFirst,
    /// Strictly oldest first: new batches wait behind the backlog.
    InOrder,
}

/// A spooling sink's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolSettings {
    pub max_bytes: u64,
    pub when_full: WhenFull,
    pub replay: ReplayOrder,
    /// Refusals of one event in a row before it is dead-lettered.
    pub max_rejections: u32,
}

impl SpoolSettings {
    /// From a sink's `spool_max_mb`, `when_full`, `replay` and `max_rejections` keys.
    pub fn from_keys(spool_max_mb: u64, when_full: WhenFull, replay: ReplayOrder, max_rejections: u32) -> Self {
        Self { max_bytes: spool_max_mb.saturating_mul(1 << 20), when_full, replay, max_rejections }
    }
}

/// The spool policy keys every spooling sink shares (`sinks.<sink>.…`).
pub fn check_policy(iss: &mut Issues, sink: &str, max_rejections: u32) {
    if !(1..=1000).contains(&max_rejections) {
        iss.add(format!("sinks.{sink}.max_rejections"), format!("{max_rejections} is outside 1..=1000"), "use e.g. 5");
    }
}
