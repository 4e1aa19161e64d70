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
pub mod frames;
pub mod jsonl;
pub mod kafka;
pub mod spool;
pub mod stdout;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

use crate::pipeline::bus::{BusLane, EventBus};

use crate::model::Event;
use crate::telemetry::health::{Health, State};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::supervise::Supervisor;

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
    /// `store.retention_days`.
    pub retention_days: f64,
}

/// The registry: every sink `[sinks]` enables, in delivery order (stdout, JSONL, the
/// embedded store, Kafka, ClickHouse). An error names the sink's table.
pub fn build(cfg: &config::SinksConfig, cx: &SinkContext) -> Result<Vec<Box<dyn Sink>>, SinkError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if cfg.stdout.enabled {
        sinks.push(Box::new(stdout::StdoutSink::default()));
    }
    if cfg.jsonl.enabled {
        sinks.push(Box::new(jsonl::JsonlSink::with_config(&cfg.jsonl, Some(cx.metrics.clone())).map_err(|e| named("jsonl", e))?));
    }
    sinks.push(Box::new(store::StoreSink::new(cx.store.clone(), cx.retention_days, cx.metrics.clone())));
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
    /// Called once after the last batch, before the sink thread ends; whatever it does
    /// (e.g. emptying a spool) ends by `deadline`.
    fn finish(&mut self, _deadline: Instant) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub max_events: usize,
    pub max_wait: Duration,
}

/// The sink threads, and the drain deadline they share at shutdown.
pub struct SinkThreads {
    threads: Vec<(String, JoinHandle<()>)>,
    drain: Arc<OnceLock<Instant>>,
}

impl SinkThreads {
    /// Lets every sink write what it holds (the bus must be gone, so each thread ends
    /// once its queue is written) for at most `timeout`. Past it a sink stops retrying:
    /// it spools what it can, counts what it could not (`argus_sink_events_abandoned_total`)
    /// and ends. Returns the sinks still running after a grace second (stuck in a call
    /// that does not return; they are left behind).
    pub fn drain(self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let _ = self.drain.set(deadline);
        let mut stuck = Vec::new();
        for (name, t) in self.threads {
            while !t.is_finished() && Instant::now() < deadline + DRAIN_GRACE {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::error!(sink = %name, "sink did not end by the drain deadline; leaving it (what it holds is re-delivered from the sources' offsets and the spools on the next start)");
                stuck.push(name);
            }
        }
        stuck
    }
}

/// After the drain deadline, how long a sink may take to spool and end.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Starts one thread per sink (supervised: a panic is reported and stops Argus);
/// dropping the bus (all senders) lets them drain and stop.
pub fn start(sinks: Vec<Box<dyn Sink>>, queue: usize, metrics: Arc<Metrics>, health: Arc<Health>) -> (EventBus, SinkThreads) {
    let mut lanes = Vec::new();
    let mut threads = Vec::new();
    let drain: Arc<OnceLock<Instant>> = Arc::default();
    let sup = Supervisor { health: health.clone(), metrics: metrics.clone() };
    for sink in sinks {
        let (tx, rx) = bounded(queue.max(1));
        let name = sink.name().to_string();
        health.set_sink(&name, State::Running, None);
        let written = Arc::new(AtomicU64::new(0));
        let lane = SinkLane { rx, written: written.clone(), metrics: metrics.clone(), health: health.clone(), drain: drain.clone() };
        let handle = sup.spawn(format!("sink-{name}"), move || run_sink(sink, lane)).expect("spawn sink thread");
        lanes.push(BusLane { name: name.clone(), queue: tx, written });
        threads.push((name, handle));
    }
    (EventBus::new(lanes, metrics.clone()), SinkThreads { threads, drain })
}

const IDLE_TICK: Duration = Duration::from_secs(1);

/// What a sink's thread works with besides the sink.
struct SinkLane {
    rx: Receiver<Arc<Event>>,
    written: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    drain: Arc<OnceLock<Instant>>,
}

impl SinkLane {
    fn past_deadline(&self) -> bool {
        self.drain.get().is_some_and(|d| Instant::now() >= *d)
    }
}

fn run_sink(mut sink: Box<dyn Sink>, lane: SinkLane) {
    let name = sink.name().to_string();
    let Batching { max_events, max_wait } = sink.batching();
    let max_events = max_events.max(1);
    let mut batch = Vec::with_capacity(max_events.min(4096));
    let (rx, metrics, health) = (&lane.rx, &lane.metrics, &lane.health);
    let mut abandoned = 0u64;
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
        let deadline = Instant::now() + max_wait;
        while batch.len() < max_events {
            let next = match deadline.checked_duration_since(Instant::now()) {
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
                    lane.written.fetch_add(batch.len() as u64, Ordering::SeqCst);
                    metrics.events_published.with_label_values(&[&name]).inc_by(batch.len() as u64);
                    health.set_sink(&name, State::Running, None);
                    break;
                }
                Err(e) if lane.past_deadline() => {
                    // Shutting down and out of time: what this sink could not write is
                    // reported, not retried forever.
                    abandoned += batch.len() as u64;
                    metrics.sink_events_abandoned.with_label_values(&[&name]).inc_by(batch.len() as u64);
                    tracing::error!(sink = %name, error = %e, events = batch.len(), "drain deadline passed: events not written by this sink");
                    break;
                }
                Err(e) => {
                    metrics.sink_writes_failed.with_label_values(&[&name]).inc();
                    health.set_sink(&name, State::Error, Some(e.to_string()));
                    tracing::warn!(sink = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, events = batch.len(), "sink write failed; retrying");
                    sleep_unless_draining(backoff, &lane);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        metrics.sink_queue_depth.with_label_values(&[&name]).set(rx.len() as i64);
        batch.clear();
    }
    // Without a deadline (the pipeline finished on its own) the spool gets the default.
    let until = lane.drain.get().copied().unwrap_or_else(|| Instant::now() + DEFAULT_FINISH);
    sink.finish(until);
    if abandoned > 0 {
        tracing::error!(sink = %name, abandoned, "sink stopped; these events did not reach it (sources that commit offsets re-deliver them on the next start)");
    }
    tracing::debug!(sink = %name, "sink drained and stopped");
}

/// How long `finish` may take when the pipeline ended by itself (no drain deadline).
const DEFAULT_FINISH: Duration = Duration::from_secs(10);

/// Sleeps `d`, waking early once the drain deadline passes.
fn sleep_unless_draining(d: Duration, lane: &SinkLane) {
    let until = Instant::now() + d;
    while Instant::now() < until && !lane.past_deadline() {
        std::thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())));
    }
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
        assert!(handles.drain(Duration::from_secs(10)).is_empty());
        assert_eq!(seen.lock().len(), 20);
        assert_eq!(metrics.sink_writes_failed.with_label_values(&["flaky"]).get(), 2);
        assert_eq!(metrics.events_published.with_label_values(&["flaky"]).get(), 20);
    }

    /// Never succeeds: a server that is gone for good, a full disk.
    struct Broken;

    impl Sink for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn write_batch(&mut self, _: &[Arc<Event>]) -> Result<(), SinkError> {
            Err(SinkError("no space left on device".into()))
        }
    }

    /// At shutdown a sink that cannot write stops retrying at the drain deadline,
    /// counts what it could not write and ends: the process can exit.
    #[test]
    fn a_sink_that_cannot_write_ends_at_the_drain_deadline() {
        let metrics = Arc::new(Metrics::new());
        let (bus, threads) = start(vec![Box::new(Broken)], 64, metrics.clone(), Arc::new(Health::default()));
        for i in 0..10 {
            bus.publish(crate::model::sample_event("cam", i * 1000, crate::model::EventKind::FrameAnalyzed));
        }
        drop(bus);
        let started = Instant::now();
        assert!(threads.drain(Duration::from_millis(300)).is_empty(), "the thread ended");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert_eq!(metrics.sink_events_abandoned.with_label_values(&["broken"]).get(), 10);
        assert_eq!(metrics.events_published.with_label_values(&["broken"]).get(), 0);
    }

    struct Panicky;

    impl Sink for Panicky {
        fn name(&self) -> &str {
            "panicky"
        }
        fn write_batch(&mut self, _: &[Arc<Event>]) -> Result<(), SinkError> {
            panic!("bug in the sink")
        }
    }

    #[test]
    fn a_panicking_sink_is_reported() {
        let (metrics, health) = (Arc::new(Metrics::new()), Arc::new(Health::default()));
        let (bus, threads) = start(vec![Box::new(Panicky)], 4, metrics.clone(), health.clone());
        bus.publish(crate::model::sample_event("cam", 0, crate::model::EventKind::FrameAnalyzed));
        drop(bus);
        assert!(threads.drain(Duration::from_secs(5)).is_empty());
        assert_eq!(health.panicked().as_deref(), Some("thread sink-panicky panicked: bug in the sink"));
        assert_eq!(metrics.thread_panics.with_label_values(&["sink-panicky"]).get(), 1);
    }
}
