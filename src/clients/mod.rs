//! Connection settings shared by a source, a sink and a store of one system (Kafka,
//! ClickHouse), and the checks of keys every spooling sink has.

pub mod clickhouse;
pub mod kafka;

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
