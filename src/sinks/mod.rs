//! Sinks: each runs on its own thread behind its own bounded queue. The pipeline blocks
//! (never drops) when a queue is full, so a stuck sink slows the pipeline down instead of
//! losing events; a failing write is retried with backoff until it succeeds or the
//! process stops.
//!
//! Every sink is a folder here; [`build`] is the registry, and the only place that knows
//! which sinks this build has. Adding a sink: a folder (its config struct with
//! `deny_unknown_fields` and `validate`, and the `Sink`), its field in
//! [`config::SinksConfig`] (and a line in its `validate`), one line in [`build`], and a
//! cargo feature when it needs a system library.

#[cfg(feature = "clickhouse")]
pub mod clickhouse;
pub mod config;
pub mod jsonl;
pub mod kafka;
pub mod spool;
pub mod stdout;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};

use crate::pipeline::bus::{BusLane, EventBus};

use crate::model::Event;
use crate::telemetry::health::{Health, State};
use crate::telemetry::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// What every sink may need to start: adding a handle here never changes a signature.
#[derive(Clone)]
pub struct SinkContext {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The embedded store (the `store` sink writes into it; the API reads it).
    pub store: Arc<dyn crate::store::EventStore>,
}

/// The registry: every sink `[sinks]` enables, in delivery order (stdout, JSONL, the
/// embedded store, Kafka, ClickHouse). An error names the sink's table.
pub fn build(cfg: &config::SinksConfig, cx: &SinkContext) -> Result<Vec<Box<dyn Sink>>, SinkError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if cfg.stdout.enabled {
        sinks.push(Box::new(stdout::StdoutSink::default()));
    }
    if cfg.jsonl.enabled {
        sinks.push(Box::new(jsonl::JsonlSink::open(&cfg.jsonl.path).map_err(|e| named("jsonl", e))?));
    }
    sinks.push(Box::new(store::StoreSink { store: cx.store.clone() }));
    #[cfg(feature = "kafka")]
    if cfg.kafka.enabled {
        sinks.push(Box::new(kafka::open_sink(&cfg.kafka, cx.metrics.clone(), cx.health.clone()).map_err(|e| named("kafka", e))?));
    }
    #[cfg(feature = "clickhouse")]
    if cfg.clickhouse.enabled {
        sinks.push(Box::new(clickhouse::open_sink(&cfg.clickhouse, cx.metrics.clone(), cx.health.clone()).map_err(|e| named("clickhouse", e))?));
    }
    // Without their features, `argus check` has already refused `enabled = true`.
    Ok(sinks)
}

fn named(table: &str, e: SinkError) -> SinkError {
    SinkError(format!("sinks.{table}: {e}"))
}

pub trait Sink: Send {
    fn name(&self) -> &str;
    /// Writes a batch durably (as durable as the sink can be) or fails as a whole.
    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError>;
    /// How many events to gather per write, and how long the first may wait for
    /// company. The default writes whatever is queued at once.
    fn batching(&self) -> Batching {
        Batching { max_events: 256, max_wait: Duration::ZERO }
    }
    /// Called about once a second while no events arrive (e.g. to replay a spool).
    fn idle(&mut self) {}
    /// Called once after the last batch, before the sink thread ends.
    fn finish(&mut self) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub max_events: usize,
    pub max_wait: Duration,
}

/// Starts one thread per sink; dropping the bus (all senders) lets them drain and stop.
pub fn start(sinks: Vec<Box<dyn Sink>>, queue: usize, metrics: Arc<Metrics>, health: Arc<Health>) -> (EventBus, Vec<JoinHandle<()>>) {
    let mut lanes = Vec::new();
    let mut handles = Vec::new();
    for sink in sinks {
        let (tx, rx) = bounded(queue.max(1));
        let name = sink.name().to_string();
        health.set_sink(&name, State::Running, None);
        let (m, h) = (metrics.clone(), health.clone());
        let written = Arc::new(AtomicU64::new(0));
        let handle = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn({
                let written = written.clone();
                move || run_sink(sink, rx, written, m, h)
            })
            .expect("spawn sink thread");
        lanes.push(BusLane { name, queue: tx, written });
        handles.push(handle);
    }
    (EventBus::new(lanes, metrics), handles)
}

const IDLE_TICK: Duration = Duration::from_secs(1);

fn run_sink(mut sink: Box<dyn Sink>, rx: Receiver<Arc<Event>>, written: Arc<AtomicU64>, metrics: Arc<Metrics>, health: Arc<Health>) {
    let name = sink.name().to_string();
    let Batching { max_events, max_wait } = sink.batching();
    let max_events = max_events.max(1);
    let mut batch = Vec::with_capacity(max_events.min(4096));
    loop {
        let first = match rx.recv_timeout(IDLE_TICK) {
            Ok(ev) => ev,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                sink.idle();
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        batch.push(first);
        let deadline = std::time::Instant::now() + max_wait;
        while batch.len() < max_events {
            let next = match deadline.checked_duration_since(std::time::Instant::now()) {
                Some(left) if !left.is_zero() => rx.recv_timeout(left).ok(),
                _ => rx.try_recv().ok(),
            };
            match next {
                Some(ev) => batch.push(ev),
                None => break,
            }
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match sink.write_batch(&batch) {
                Ok(()) => {
                    written.fetch_add(batch.len() as u64, Ordering::SeqCst);
                    metrics.events_published.with_label_values(&[&name]).inc_by(batch.len() as u64);
                    health.set_sink(&name, State::Running, None);
                    break;
                }
                Err(e) => {
                    metrics.sink_writes_failed.with_label_values(&[&name]).inc();
                    health.set_sink(&name, State::Error, Some(e.to_string()));
                    tracing::warn!(sink = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, events = batch.len(), "sink write failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        metrics.sink_queue_depth.with_label_values(&[&name]).set(rx.len() as i64);
        batch.clear();
    }
    sink.finish();
    tracing::debug!(sink = %name, "sink drained and stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// Fails its first two writes, then records.
    struct Flaky {
        fails: usize,
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl Sink for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
            if self.fails > 0 {
                self.fails -= 1;
                return Err(SinkError("disk on fire".into()));
            }
            self.seen.lock().extend(events.iter().map(|e| e.event_id.clone()));
            Ok(())
        }
    }

    #[test]
    fn failed_writes_are_retried_and_nothing_is_lost() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(Metrics::new());
        let (bus, handles) = start(vec![Box::new(Flaky { fails: 2, seen: seen.clone() })], 4, metrics.clone(), Arc::new(Health::default()));
        for i in 0..20 {
            bus.publish(crate::model::sample_event("cam", i * 1000, crate::model::EventKind::FrameAnalyzed));
        }
        drop(bus);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(seen.lock().len(), 20);
        assert_eq!(metrics.sink_writes_failed.with_label_values(&["flaky"]).get(), 2);
        assert_eq!(metrics.events_published.with_label_values(&["flaky"]).get(), 20);
    }
}
