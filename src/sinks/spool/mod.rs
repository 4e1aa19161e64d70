//! A sink for a remote server (ClickHouse, Kafka) that must lose nothing while the
//! server is down: batches go to the server through a `Delivery`; when that fails they
//! are fsync'd into a bounded on-disk spool (`segments`) and replayed oldest first
//! once the server answers again.
//!
//! A batch counts as written once the server confirmed it or it is in the spool. While
//! the spool holds anything, new batches queue behind it (order is kept) and the server
//! is retried with exponential backoff (0.5 s → 30 s). A full spool is an alarm
//! (`argus_spool_full_total`, an error log, `/readyz` unready): the write fails, the
//! sink's queue fills and the pipeline waits; nothing is dropped. A replay may repeat
//! events the server already had (a lost acknowledgement); event ids are deterministic,
//! so consumers and ReplacingMergeTree tables see the same id twice, never a new one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::Event;
use crate::sinks::{Batching, Sink, SinkError};
use crate::telemetry::health::{Health, State};
use crate::telemetry::metrics::Metrics;
pub mod segments;

use segments::{Spool, SpoolError};

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long `finish` keeps trying to empty the spool at shutdown.
const FINISH_GRACE: Duration = Duration::from_secs(10);
/// File in the spool directory for records that cannot be read back as events.
pub const DEAD_LETTERS: &str = "dead-letters.jsonl";

/// Sends events to one server, all or nothing.
pub trait Delivery: Send {
    /// Sink name in metrics, health and logs.
    fn name(&self) -> &'static str;
    /// The server, for logs (no credentials).
    fn target(&self) -> String;
    /// Gets the server ready (connect, migrate…); called before each delivery until it
    /// succeeds once.
    fn prepare(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Delivers every event durably, or fails as a whole.
    fn deliver(&mut self, events: &[Arc<Event>]) -> Result<(), String>;
    /// The server answered with an error that may mean it lost its state (e.g. a
    /// dropped table): `prepare` runs again before the next delivery.
    fn needs_prepare_after(&self, _error: &str) -> bool {
        false
    }
}

pub struct SpooledSink<D: Delivery> {
    delivery: D,
    spool: Spool,
    /// Where records that cannot be read back as events are moved: the spool
    /// directory's `dead-letters.jsonl`.
    dead_letters: PathBuf,
    batching: Batching,
    prepared: bool,
    backoff: Duration,
    next_try: Instant,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl<D: Delivery> SpooledSink<D> {
    /// Opens the spool and tries to prepare the server once; a server that is down now
    /// is not an error (events spool until it is up).
    pub fn open(
        mut delivery: D,
        spool_dir: &Path,
        spool_max_bytes: u64,
        batching: Batching,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Self, SinkError> {
        let name = delivery.name();
        let spool = Spool::open(spool_dir, spool_max_bytes).map_err(|e| SinkError(format!("sinks.{name}.spool_dir: {e}")))?;
        if !spool.is_empty() {
            tracing::info!(sink = name, events = spool.len(), dir = %spool_dir.display(), "spool has events from an earlier run; replaying when the server is up");
        }
        let prepared = match delivery.prepare() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(sink = name, target = %delivery.target(), error = %e, "server not reachable yet; events will spool until it is");
                false
            }
        };
        let mut sink = Self {
            delivery,
            spool,
            dead_letters: spool_dir.join(DEAD_LETTERS),
            batching,
            prepared,
            backoff: MIN_BACKOFF,
            next_try: Instant::now(),
            metrics,
            health,
        };
        if !prepared {
            sink.failed();
        }
        sink.report();
        Ok(sink)
    }

    fn send(&mut self, events: &[Arc<Event>]) -> Result<(), String> {
        if !self.prepared {
            self.delivery.prepare()?;
            self.prepared = true;
        }
        self.delivery.deliver(events).inspect_err(|e| {
            if self.delivery.needs_prepare_after(e) {
                self.prepared = false;
            }
        })
    }

    fn failed(&mut self) {
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn succeeded(&mut self) {
        self.backoff = MIN_BACKOFF;
        self.next_try = Instant::now();
    }

    /// Replays the spool oldest first; true once it is empty.
    fn replay(&mut self) -> bool {
        let name = self.delivery.name();
        while !self.spool.is_empty() {
            if Instant::now() < self.next_try {
                return false;
            }
            let (records, pos) = match self.spool.peek(self.batching.max_events) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(sink = name, error = %e, "cannot read the spool");
                    self.next_try = Instant::now() + MAX_BACKOFF;
                    return false;
                }
            };
            let mut events = Vec::with_capacity(records.len());
            let mut unreadable = Vec::new();
            for r in &records {
                match serde_json::from_slice::<Event>(r) {
                    Ok(ev) => events.push(Arc::new(ev)),
                    Err(e) => unreadable.push((r, e)),
                }
            }
            // Kept before the spool moves past them: a record that cannot be read is
            // never acknowledged silently.
            if !unreadable.is_empty()
                && let Err(e) = self.dead_letter(&unreadable)
            {
                tracing::error!(sink = name, error = %e, file = %self.dead_letters.display(), "cannot keep unreadable spool records; the spool waits");
                self.next_try = Instant::now() + MAX_BACKOFF;
                return false;
            }
            if !events.is_empty()
                && let Err(e) = self.send(&events)
            {
                tracing::warn!(sink = name, error = %e, spooled = self.spool.len(), retry_in_ms = self.backoff.as_millis() as u64, "server still unavailable");
                self.failed();
                self.report();
                return false;
            }
            if let Err(e) = self.spool.ack(pos) {
                // Delivered; replaying them again later is harmless (same ids).
                tracing::error!(sink = name, error = %e, "cannot advance the spool");
                self.next_try = Instant::now() + MAX_BACKOFF;
                return false;
            }
            self.succeeded();
            self.metrics.spool_events_replayed.with_label_values(&[name]).inc_by(events.len() as u64);
            if self.spool.is_empty() {
                tracing::info!(sink = name, "server is back; the spool is replayed");
            }
            self.report();
        }
        true
    }

    /// Appends unreadable records to the dead-letters file (fsync'd), counts and logs them.
    fn dead_letter(&self, records: &[(&Vec<u8>, serde_json::Error)]) -> std::io::Result<()> {
        let name = self.delivery.name();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.dead_letters)?;
        let mut buf = Vec::new();
        for (r, _) in records {
            buf.extend_from_slice(r);
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        f.sync_data()?;
        for (r, e) in records {
            tracing::error!(sink = name, error = %e, bytes = r.len(), file = %self.dead_letters.display(), "unreadable event in the spool; moved to the dead letters");
        }
        self.metrics.spool_dead_letters.with_label_values(&[name]).inc_by(records.len() as u64);
        Ok(())
    }

    fn spool_events(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        let name = self.delivery.name();
        let lines: Vec<String> = events.iter().map(|e| serde_json::to_string(&**e).expect("events serialise")).collect();
        match self.spool.push(&lines) {
            Ok(()) => {
                self.metrics.spool_events_spooled.with_label_values(&[name]).inc_by(events.len() as u64);
                self.report();
                Ok(())
            }
            Err(e @ SpoolError::Full { .. }) => {
                self.metrics.spool_full.with_label_values(&[name]).inc();
                tracing::error!(sink = name, error = %e, "ALARM: the spool is full; the pipeline waits until the server is back");
                self.health.set_sink(
                    name,
                    State::Error,
                    Some(format!("{} unreachable and the spool is full ({} events)", self.delivery.target(), self.spool.len())),
                );
                // Let replay try again soon even if the backoff is long.
                self.next_try = self.next_try.min(Instant::now() + Duration::from_secs(1));
                Err(SinkError(e.to_string()))
            }
            Err(e) => Err(SinkError(e.to_string())),
        }
    }

    /// Spool gauges and the sink's health detail.
    fn report(&self) {
        let name = self.delivery.name();
        let m = &self.metrics;
        m.spool_events.with_label_values(&[name]).set(self.spool.len() as i64);
        m.spool_bytes.with_label_values(&[name]).set(self.spool.bytes() as i64);
        if self.spool.is_empty() {
            self.health.set_sink(name, State::Running, None);
        } else {
            let detail = format!(
                "{} unavailable; {} events spooled ({:.1} of {} MiB)",
                self.delivery.target(),
                self.spool.len(),
                self.spool.bytes() as f64 / (1 << 20) as f64,
                self.spool.max_bytes() >> 20
            );
            // Degraded, not failed: every event is durable and will arrive.
            self.health.set_sink(name, State::Running, Some(detail));
        }
    }
}

impl<D: Delivery> Sink for SpooledSink<D> {
    fn name(&self) -> &str {
        self.delivery.name()
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        if self.replay() && Instant::now() >= self.next_try {
            match self.send(events) {
                Ok(()) => {
                    self.succeeded();
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(sink = self.delivery.name(), error = %e, events = events.len(), "delivery failed; spooling");
                    self.failed();
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
            let wait = self.next_try.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(50), Duration::from_millis(200));
            std::thread::sleep(wait);
        }
        if !self.spool.is_empty() {
            tracing::warn!(sink = self.delivery.name(), events = self.spool.len(), "stopping with events in the spool; they are replayed on the next start");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// A server that is down while `down` is set, recording what it received.
    struct Fake {
        down: Arc<Mutex<bool>>,
        got: Arc<Mutex<Vec<String>>>,
    }

    impl Delivery for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn target(&self) -> String {
            "fake server".into()
        }
        fn deliver(&mut self, events: &[Arc<Event>]) -> Result<(), String> {
            if *self.down.lock() {
                return Err("connection refused".into());
            }
            self.got.lock().extend(events.iter().map(|e| e.event_id.clone()));
            Ok(())
        }
    }

    fn ev(i: i64) -> Arc<Event> {
        Arc::new(crate::model::sample_event("cam", 1_700_000_000_000 + i * 1000, crate::model::EventKind::FrameAnalyzed))
    }

    #[test]
    fn spools_while_down_and_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (down, got) = (Arc::new(Mutex::new(false)), Arc::new(Mutex::new(Vec::new())));
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let batching = Batching { max_events: 100, max_wait: Duration::ZERO };
        let mut sink =
            SpooledSink::open(Fake { down: down.clone(), got: got.clone() }, dir.path(), 1 << 20, batching, metrics.clone(), health.clone()).unwrap();
        let all: Vec<_> = (0..9).map(ev).collect();
        sink.write_batch(&all[0..3]).unwrap();
        *down.lock() = true;
        sink.write_batch(&all[3..6]).unwrap(); // fails → spooled, still Ok
        assert_eq!(metrics.spool_events.with_label_values(&["fake"]).get(), 3);
        assert_eq!(health.readiness().sinks["fake"].state, State::Running, "spooling is degraded, not down");
        *down.lock() = false;
        sink.write_batch(&all[6..9]).unwrap(); // in backoff → behind the spool
        std::thread::sleep(MIN_BACKOFF + Duration::from_millis(50));
        sink.idle();
        let want: Vec<String> = all.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(*got.lock(), want, "every event once, in order");
        assert_eq!(metrics.spool_events_replayed.with_label_values(&["fake"]).get(), 6);
        assert_eq!(metrics.spool_events.with_label_values(&["fake"]).get(), 0);
    }

    #[test]
    fn a_full_spool_is_an_error_and_an_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let down = Arc::new(Mutex::new(true));
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let batching = Batching { max_events: 100, max_wait: Duration::ZERO };
        let mut sink = SpooledSink::open(Fake { down, got: Arc::default() }, dir.path(), 4096, batching, metrics.clone(), health.clone()).unwrap();
        let mut failed = false;
        for i in 0..20 {
            if sink.write_batch(&[ev(i)]).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "a 4 KiB spool cannot hold 20 events");
        assert_eq!(metrics.spool_full.with_label_values(&["fake"]).get(), 1);
        assert_eq!(health.readiness().sinks["fake"].state, State::Error);
        assert!(health.readiness().reasons.iter().any(|r| r.contains("fake")), "{:?}", health.readiness().reasons);
    }

    /// A record the replay cannot parse is neither sent nor dropped silently: it goes to
    /// the dead-letters file, is counted, and the readable records around it are sent.
    #[test]
    fn an_unreadable_spool_record_becomes_a_counted_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(Metrics::new());
        let batching = Batching { max_events: 100, max_wait: Duration::ZERO };
        let (a, b) = (ev(1), ev(2));
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            let lines = [serde_json::to_string(&*a).unwrap(), "{\"schema\":\"argus.event.v1\",\"event_id\":".into(), serde_json::to_string(&*b).unwrap()];
            spool.push(&lines).unwrap();
        }
        let fake = Fake { down: Arc::new(Mutex::new(false)), got: got.clone() };
        let mut sink = SpooledSink::open(fake, dir.path(), 1 << 20, batching, metrics.clone(), Arc::new(Health::default())).unwrap();
        sink.idle();
        assert_eq!(*got.lock(), vec![a.event_id.clone(), b.event_id.clone()], "the readable records, in order");
        assert_eq!(metrics.spool_dead_letters.with_label_values(&["fake"]).get(), 1);
        assert_eq!(metrics.spool_events_replayed.with_label_values(&["fake"]).get(), 2, "replayed: the events sent");
        assert_eq!(metrics.spool_events.with_label_values(&["fake"]).get(), 0);
        let kept = std::fs::read_to_string(dir.path().join(DEAD_LETTERS)).unwrap();
        assert_eq!(kept, "{\"schema\":\"argus.event.v1\",\"event_id\":\n", "the record, byte for byte");
    }

    #[test]
    fn the_spool_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let batching = Batching { max_events: 100, max_wait: Duration::ZERO };
        {
            let fake = Fake { down: Arc::new(Mutex::new(true)), got: got.clone() };
            let mut sink = SpooledSink::open(fake, dir.path(), 1 << 20, batching, Arc::new(Metrics::new()), Arc::new(Health::default())).unwrap();
            sink.write_batch(&[ev(1), ev(2)]).unwrap();
        }
        let fake = Fake { down: Arc::new(Mutex::new(false)), got: got.clone() };
        let mut sink = SpooledSink::open(fake, dir.path(), 1 << 20, batching, Arc::new(Metrics::new()), Arc::new(Health::default())).unwrap();
        sink.idle();
        assert_eq!(got.lock().len(), 2);
    }
}
