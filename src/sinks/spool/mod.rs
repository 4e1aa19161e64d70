//! A sink for a remote server (ClickHouse, Kafka) that must lose nothing while the
//! server is down, and must not hold the pipeline up while the server is slow.
//!
//! Batches go to the server through a `Delivery` that runs on its own thread (the
//! `courier`); the sink's thread waits for its answer at most [`HAND_OFF`]. A batch the
//! server did not confirm by then (down, refusing, accepting but never answering) is
//! fsync'd into a bounded on-disk spool (`segments`) and replayed oldest first once
//! the server answers again. A batch counts as written once the server confirmed it or
//! it is in the spool.
//!
//! Policies, per sink (`SpoolSettings`, from the sink's config):
//! - `replay = "live_first"` (default): while a backlog replays, each new batch goes to
//!   the server before the next backlog batch, so a long outage's backlog never keeps
//!   the control room from seeing what happens now; the backlog gets one batch per live
//!   batch and all of the idle time. `"in_order"`: new batches queue behind the backlog
//!   (strict order per partition, at the price of current events waiting).
//! - `when_full = "wait"` (default for Kafka): a full spool is an alarm and the write
//!   fails, so the pipeline waits; nothing is dropped. `"shed"` (default for
//!   ClickHouse): this sink drops new events while its spool is full (counted in
//!   `argus_sink_events_shed_total`, alarmed, `/readyz` unready) and the other sinks
//!   carry on, so an analysts' database that is down for days cannot stop control-room
//!   delivery.
//! - `max_rejections`: a batch the server answers with a refusal (not an outage) is
//!   split in halves until the refused event is alone; one refused that many times in
//!   a row goes to the spool directory's `dead-letters.jsonl` (counted in
//!   `argus_sink_events_rejected_total`) instead of blocking the spool forever.
//!
//! A replay may repeat events the server already had (a lost acknowledgement, a batch
//! confirmed after it was spooled); event ids are deterministic, so consumers and
//! ReplacingMergeTree tables see the same id twice, never a new one.

pub mod courier;
pub mod segments;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::Event;
use crate::sinks::{Batching, Sink, SinkError};
use crate::telemetry::health::{Health, State};
use crate::telemetry::metrics::Metrics;
use courier::{Courier, CourierGone, Outcome};
use segments::{Spool, SpoolError, SpoolPos};

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long the sink's thread waits for the server's answer to a batch before it
/// spools the batch instead (the answer still counts when it comes).
pub const HAND_OFF: Duration = Duration::from_secs(1);
/// How long an idle tick may spend replaying.
const IDLE_REPLAY: Duration = Duration::from_millis(900);
/// File in the spool directory for records that cannot be read back as events or that
/// the server refused `max_rejections` times.
pub const DEAD_LETTERS: &str = "dead-letters.jsonl";

pub use crate::clients::{ReplayOrder, SpoolSettings, WhenFull, check_policy};

/// Sends events to one server, all or nothing. Runs on the sink's courier thread.
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
    /// Delivers every event durably, or fails as a whole. Must give up within the
    /// client's timeouts (a server that never answers is a failure, not a hang).
    fn deliver(&mut self, events: &[Arc<Event>]) -> Result<(), String>;
    /// The server answered with an error that may mean it lost its state (e.g. a
    /// dropped table): `prepare` runs again before the next delivery.
    fn needs_prepare_after(&self, _error: &str) -> bool {
        false
    }
    /// The server answered and refused the data itself (a retry of the same events
    /// fails the same way), as opposed to being unavailable.
    fn is_rejection(&self, _error: &str) -> bool {
        false
    }
}

/// At most this many ids of late-confirmed events are remembered to skip at replay;
/// beyond it they are replayed again (a harmless repeat).
const CONFIRMED_LATE_MAX: usize = 100_000;

/// The batch the courier has now.
enum InFlight {
    /// New events, not spooled: the sink's thread is waiting for this answer.
    Live,
    /// New events whose answer took longer than the hand-off, spooled meanwhile; when
    /// `at_head` they are the spool's first `events` records, so a late confirmation
    /// acknowledges them there instead of replaying them.
    LiveSpooled { ids: Vec<String>, at_head: bool },
    /// Records from the spool's head (raw, for a dead letter).
    Replay { pos: SpoolPos, records: Vec<Vec<u8>>, events: usize },
}

pub struct SpooledSink {
    name: &'static str,
    /// The server, for logs and health (no credentials).
    target: String,
    courier: Courier,
    in_flight: Option<InFlight>,
    /// When the batch in flight went out.
    sent_at: Instant,
    spool: Spool,
    /// The spool directory's `dead-letters.jsonl`.
    dead_letters: PathBuf,
    batching: Batching,
    settings: SpoolSettings,
    backoff: Duration,
    next_try: Instant,
    /// Records per replay batch: the sink's batch size, halved while the server
    /// refuses a batch (to find the refused event), grown back after each success.
    replay_size: usize,
    /// Refusals in a row of the spool's head record (once `replay_size` is 1).
    head_rejections: u32,
    /// Spooled events the server confirmed late (not at the spool's head): the replay
    /// skips them instead of sending them again.
    confirmed_late: std::collections::HashSet<String>,
    /// Events dropped since the spool filled (`when_full = "shed"`); 0 when not shedding.
    shedding: u64,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

fn gone(name: &str) -> ! {
    // The courier thread panicked inside the delivery: the thread supervisor reports
    // this sink as failed and stops Argus cleanly (the spool keeps what was not sent).
    panic!("the {name} sink's delivery thread panicked");
}

impl SpooledSink {
    /// Opens the spool and tries to prepare the server once; a server that is down now
    /// is not an error (events spool until it is up).
    pub fn open<D: Delivery + 'static>(
        mut delivery: D,
        spool_dir: &Path,
        settings: SpoolSettings,
        batching: Batching,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Self, SinkError> {
        let (name, target) = (delivery.name(), delivery.target());
        let spool = Spool::open(spool_dir, settings.max_bytes).map_err(|e| SinkError(format!("sinks.{name}.spool_dir: {e}")))?;
        if !spool.is_empty() {
            tracing::info!(sink = name, events = spool.len(), dir = %spool_dir.display(), "spool has events from an earlier run; replaying when the server is up");
        }
        let prepared = match delivery.prepare() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(sink = name, %target, error = %e, "server not reachable yet; events will spool until it is");
                false
            }
        };
        let courier = Courier::start(delivery, prepared).map_err(|e| SinkError(format!("sinks.{name}: cannot start its delivery thread: {e}")))?;
        let mut sink = Self {
            name,
            target,
            courier,
            in_flight: None,
            sent_at: Instant::now(),
            spool,
            dead_letters: spool_dir.join(DEAD_LETTERS),
            batching,
            settings,
            backoff: MIN_BACKOFF,
            next_try: Instant::now(),
            replay_size: batching.max_events.max(1),
            head_rejections: 0,
            confirmed_late: Default::default(),
            shedding: 0,
            metrics,
            health,
        };
        if !prepared {
            sink.failed();
        }
        sink.report();
        Ok(sink)
    }

    fn failed(&mut self) {
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn succeeded(&mut self) {
        self.backoff = MIN_BACKOFF;
        self.next_try = Instant::now();
    }

    fn may_try(&self) -> bool {
        Instant::now() >= self.next_try
    }

    /// Waits until `until` at most for the batch in flight and acts on its answer.
    /// True when the courier is free afterwards.
    fn settle(&mut self, until: Instant) -> bool {
        if self.in_flight.is_none() {
            return true;
        }
        let answer = match self.courier.answer(until.saturating_duration_since(Instant::now())) {
            Ok(Some(a)) => a,
            Ok(None) => return false,
            Err(CourierGone) => gone(self.name),
        };
        match self.in_flight.take().expect("checked above") {
            // The sink's thread takes a live answer itself (`send_live`).
            InFlight::Live => unreachable!("live answers are taken where they are sent"),
            InFlight::LiveSpooled { ids, at_head } => match answer {
                Outcome::Delivered => {
                    self.succeeded();
                    // Confirmed after all: counted as delivered from the spool.
                    self.metrics.spool_events_replayed.with_label_values(&[self.name]).inc_by(ids.len() as u64);
                    if at_head {
                        self.ack_head(ids.len());
                    } else if self.confirmed_late.len() + ids.len() <= CONFIRMED_LATE_MAX {
                        self.confirmed_late.extend(ids);
                    }
                }
                Outcome::Unavailable(e) | Outcome::Rejected(e) => {
                    tracing::warn!(sink = self.name, error = %e, events = ids.len(), "delivery failed after the batch was spooled; it replays from there");
                    self.failed();
                }
            },
            InFlight::Replay { pos, records, events } => self.replayed(answer, pos, records, events),
        }
        self.report();
        true
    }

    /// A late confirmation of the spool's first `n` records (spooled while the server
    /// was still answering): they leave the spool without a replay.
    fn ack_head(&mut self, n: usize) {
        match self.spool.peek(n) {
            Ok((records, pos)) if records.len() == n => {
                if let Err(e) = self.spool.ack(pos) {
                    tracing::error!(sink = self.name, error = %e, "cannot advance the spool (the events are replayed again; harmless)");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(sink = self.name, error = %e, "cannot read the spool"),
        }
    }

    fn replayed(&mut self, answer: Outcome, pos: SpoolPos, records: Vec<Vec<u8>>, events: usize) {
        let name = self.name;
        match answer {
            Outcome::Delivered => {
                if let Err(e) = self.spool.ack(pos) {
                    // Delivered; replaying them again later is harmless (same ids).
                    tracing::error!(sink = name, error = %e, "cannot advance the spool");
                    self.next_try = Instant::now() + MAX_BACKOFF;
                    return;
                }
                self.succeeded();
                self.head_rejections = 0;
                self.replay_size = (self.replay_size * 2).min(self.batching.max_events.max(1));
                self.metrics.spool_events_replayed.with_label_values(&[name]).inc_by(events as u64);
                if self.spool.is_empty() {
                    self.confirmed_late.clear();
                    tracing::info!(sink = name, "server is back; the spool is replayed");
                }
            }
            Outcome::Unavailable(e) => {
                tracing::warn!(sink = name, error = %e, spooled = self.spool.len(), retry_in_ms = self.backoff.as_millis() as u64, "server still unavailable");
                self.failed();
            }
            Outcome::Rejected(e) if records.len() > 1 => {
                // Find the refused event: the first half next, right away.
                self.replay_size = records.len() / 2;
                tracing::warn!(sink = name, error = %e, batch = records.len(), next = self.replay_size, "the server refused a batch; splitting it to find the refused event");
            }
            Outcome::Rejected(e) => {
                self.head_rejections += 1;
                if self.head_rejections < self.settings.max_rejections {
                    tracing::warn!(sink = name, error = %e, attempt = self.head_rejections, of = self.settings.max_rejections, "the server refused an event; retrying it");
                    self.failed();
                    return;
                }
                let reason = format!("refused {} times: {e}", self.head_rejections);
                let recs: Vec<(&Vec<u8>, String)> = records.iter().map(|r| (r, reason.clone())).collect();
                match self.dead_letter(&recs) {
                    Ok(()) => {
                        self.metrics.sink_events_rejected.with_label_values(&[name]).inc_by(recs.len() as u64);
                        if let Err(e) = self.spool.ack(pos) {
                            tracing::error!(sink = name, error = %e, "cannot advance the spool");
                        }
                        self.head_rejections = 0;
                        // Next record now, but the backoff keeps growing until something
                        // is delivered: when the server refuses everything (a broken
                        // schema), events are dead-lettered slowly, not in a flood.
                        self.next_try = Instant::now();
                    }
                    Err(e) => {
                        tracing::error!(sink = name, error = %e, file = %self.dead_letters.display(), "cannot keep a refused event; the spool waits");
                        self.next_try = Instant::now() + MAX_BACKOFF;
                    }
                }
            }
        }
    }

    /// Starts the next replay batch when the courier is free, the server may be tried
    /// and the spool holds something. True when a batch went out.
    fn start_replay(&mut self) -> bool {
        while self.in_flight.is_none() && !self.spool.is_empty() && self.may_try() {
            let (records, pos) = match self.spool.peek(self.replay_size) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(sink = self.name, error = %e, "cannot read the spool");
                    self.next_try = Instant::now() + MAX_BACKOFF;
                    return false;
                }
            };
            let mut events = Vec::with_capacity(records.len());
            let mut readable = Vec::with_capacity(records.len());
            let mut bad = Vec::new();
            for r in records {
                match serde_json::from_slice::<Event>(&r) {
                    // Confirmed late while it waited here: already delivered.
                    Ok(ev) if self.confirmed_late.remove(&ev.event_id) => {}
                    Ok(ev) => {
                        events.push(Arc::new(ev));
                        readable.push(r);
                    }
                    Err(e) => bad.push((r, format!("unreadable: {e}"))),
                }
            }
            let unreadable: Vec<(&Vec<u8>, String)> = bad.iter().map(|(r, why)| (r, why.clone())).collect();
            if !unreadable.is_empty() {
                // Kept before the spool moves past them: a record that cannot be read
                // is never acknowledged silently. Then the readable ones go on their own.
                if let Err(e) = self.dead_letter(&unreadable) {
                    tracing::error!(sink = self.name, error = %e, file = %self.dead_letters.display(), "cannot keep unreadable spool records; the spool waits");
                    self.next_try = Instant::now() + MAX_BACKOFF;
                    return false;
                }
                self.metrics.spool_dead_letters.with_label_values(&[self.name]).inc_by(unreadable.len() as u64);
            }
            if events.is_empty() {
                if let Err(e) = self.spool.ack(pos) {
                    tracing::error!(sink = self.name, error = %e, "cannot advance the spool");
                    self.next_try = Instant::now() + MAX_BACKOFF;
                    return false;
                }
                self.report();
                continue;
            }
            let n = events.len();
            if self.courier.submit(events).is_err() {
                gone(self.name);
            }
            self.in_flight = Some(InFlight::Replay { pos, records: readable, events: n });
            self.sent_at = Instant::now();
            return true;
        }
        false
    }

    /// Replays until `until` or until the spool is empty; true once it is.
    fn replay_until(&mut self, until: Instant) -> bool {
        loop {
            if !self.settle(until) {
                return false;
            }
            if self.spool.is_empty() {
                return true;
            }
            if !self.start_replay() {
                // Backing off (or the spool cannot be read): nothing to wait for.
                let wake = self.next_try.min(until);
                if Instant::now() >= until {
                    return false;
                }
                std::thread::sleep(wake.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(10), Duration::from_millis(200)));
            }
        }
    }

    /// Sends new events and waits up to `until` for the answer. `Ok(true)`: delivered;
    /// `Ok(false)`: not confirmed (spool them); `Err`: they are spooled already
    /// (the answer is late), with the spool's result.
    fn send_live(&mut self, events: &[Arc<Event>], until: Instant) -> Result<bool, Result<(), SinkError>> {
        let at_head = self.spool.is_empty();
        if self.courier.submit(events.to_vec()).is_err() {
            gone(self.name);
        }
        self.in_flight = Some(InFlight::Live);
        self.sent_at = Instant::now();
        match self.courier.answer(until.saturating_duration_since(Instant::now())) {
            Ok(Some(Outcome::Delivered)) => {
                self.in_flight = None;
                self.succeeded();
                if self.shedding > 0 {
                    tracing::warn!(sink = self.name, shed = self.shedding, "the server takes events again; no longer dropping events for this sink");
                    self.shedding = 0;
                }
                Ok(true)
            }
            Ok(Some(Outcome::Unavailable(e))) => {
                self.in_flight = None;
                tracing::warn!(sink = self.name, error = %e, events = events.len(), "delivery failed; spooling");
                self.failed();
                Ok(false)
            }
            Ok(Some(Outcome::Rejected(e))) => {
                // Spooled: the replay isolates the refused event and retries the rest.
                self.in_flight = None;
                tracing::warn!(sink = self.name, error = %e, events = events.len(), "the server refused a batch; spooling it");
                Ok(false)
            }
            Ok(None) => {
                tracing::warn!(sink = self.name, target = %self.target, waited_ms = HAND_OFF.as_millis() as u64, events = events.len(), "no answer yet; spooling the batch meanwhile");
                self.in_flight = Some(InFlight::LiveSpooled { ids: events.iter().map(|e| e.event_id.clone()).collect(), at_head });
                Err(self.spool_events(events))
            }
            Err(CourierGone) => gone(self.name),
        }
    }

    /// Appends unreadable or refused records, each with why, to the dead-letters file
    /// (fsync'd) and logs them. The record's line is kept byte for byte.
    fn dead_letter(&self, records: &[(&Vec<u8>, String)]) -> std::io::Result<()> {
        let name = self.name;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.dead_letters)?;
        let mut buf = Vec::new();
        for (r, _) in records {
            buf.extend_from_slice(r);
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        f.sync_data()?;
        for (r, why) in records {
            tracing::error!(sink = name, reason = %why, bytes = r.len(), file = %self.dead_letters.display(), "event moved to the dead letters");
        }
        Ok(())
    }

    fn spool_events(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        let name = self.name;
        let lines: Vec<String> = events.iter().map(|e| serde_json::to_string(&**e).expect("events serialise")).collect();
        match self.spool.push(&lines) {
            Ok(()) => {
                if self.shedding > 0 {
                    tracing::warn!(sink = name, shed = self.shedding, "the spool has room again; no longer dropping events for this sink");
                    self.shedding = 0;
                }
                self.metrics.spool_events_spooled.with_label_values(&[name]).inc_by(events.len() as u64);
                self.report();
                Ok(())
            }
            Err(e @ SpoolError::Full { .. }) => {
                // Let the replay try again soon even if the backoff is long.
                self.next_try = self.next_try.min(Instant::now() + Duration::from_secs(1));
                if self.settings.when_full == WhenFull::Shed {
                    if self.shedding == 0 {
                        self.metrics.spool_full.with_label_values(&[name]).inc();
                        tracing::error!(sink = name, error = %e, "ALARM: the spool is full; dropping new events for this sink (when_full = \"shed\") until it has room");
                    }
                    self.shedding += events.len() as u64;
                    self.metrics.sink_events_shed.with_label_values(&[name]).inc_by(events.len() as u64);
                    self.report();
                    return Ok(());
                }
                self.metrics.spool_full.with_label_values(&[name]).inc();
                tracing::error!(sink = name, error = %e, "ALARM: the spool is full; the pipeline waits until the server is back");
                self.health.set_sink(name, State::Error, Some(format!("{} unreachable and the spool is full ({} events)", self.target, self.spool.len())));
                Err(SinkError(e.to_string()))
            }
            Err(e) => Err(SinkError(e.to_string())),
        }
    }

    /// Spool gauges and the sink's health detail.
    fn report(&self) {
        let name = self.name;
        let m = &self.metrics;
        m.spool_events.with_label_values(&[name]).set(self.spool.len() as i64);
        m.spool_bytes.with_label_values(&[name]).set(self.spool.bytes() as i64);
        if self.shedding > 0 {
            let detail = format!("{} unavailable and the spool is full: {} new events dropped for this sink", self.target, self.shedding);
            self.health.set_sink(name, State::Error, Some(detail));
        } else if self.spool.is_empty() {
            self.health.set_sink(name, State::Running, None);
        } else {
            let detail = format!(
                "{} unavailable; {} events spooled ({:.1} of {} MiB)",
                self.target,
                self.spool.len(),
                self.spool.bytes() as f64 / (1 << 20) as f64,
                self.spool.max_bytes() >> 20
            );
            // Degraded, not failed: every event is durable and will arrive.
            self.health.set_sink(name, State::Running, Some(detail));
        }
    }
}

impl Sink for SpooledSink {
    fn name(&self) -> &str {
        self.name
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        let until = Instant::now() + HAND_OFF;
        // A batch in flight (a replay, a late live answer) may use what is left of its
        // hand-off time, so a new batch goes out right after it; one already past it
        // (a server that does not answer) is not waited for again.
        let free = self.settle(until.min(self.sent_at + HAND_OFF));
        let direct = free && self.may_try() && (self.spool.is_empty() || self.settings.replay == ReplayOrder::LiveFirst);
        if direct {
            match self.send_live(events, until) {
                Ok(true) => {
                    self.start_replay();
                    self.report();
                    return Ok(());
                }
                Ok(false) => {}
                Err(spooled) => return spooled,
            }
        }
        let r = self.spool_events(events);
        self.start_replay();
        r
    }

    fn idle(&mut self) {
        self.replay_until(Instant::now() + IDLE_REPLAY);
    }

    fn finish(&mut self, deadline: Instant) {
        self.replay_until(deadline);
        if !self.spool.is_empty() {
            tracing::warn!(sink = self.name, events = self.spool.len(), "stopping with events in the spool; they are replayed on the next start");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A server: down while `down` is set, silent (accepting, never answering) while
    /// `hang` is set, refusing any batch that holds an event id in `refuses`;
    /// recording what it received.
    #[derive(Clone, Default)]
    struct Fake {
        down: Arc<AtomicBool>,
        hang: Arc<AtomicBool>,
        refuses: Arc<Mutex<Vec<String>>>,
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
            while self.hang.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.down.load(Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            if events.iter().any(|e| self.refuses.lock().contains(&e.event_id)) {
                return Err("refused: bad row".into());
            }
            self.got.lock().extend(events.iter().map(|e| e.event_id.clone()));
            Ok(())
        }
        fn is_rejection(&self, error: &str) -> bool {
            error.starts_with("refused")
        }
    }

    fn ev(i: i64) -> Arc<Event> {
        Arc::new(crate::model::sample_event("cam", 1_700_000_000_000 + i * 1000, crate::model::EventKind::FrameAnalyzed))
    }

    fn ids(events: &[Arc<Event>]) -> Vec<String> {
        events.iter().map(|e| e.event_id.clone()).collect()
    }

    fn settings(max_bytes: u64) -> SpoolSettings {
        SpoolSettings { max_bytes, when_full: WhenFull::Wait, replay: ReplayOrder::LiveFirst, max_rejections: 3 }
    }

    struct Harness {
        fake: Fake,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        dir: tempfile::TempDir,
    }

    impl Harness {
        fn new() -> Self {
            Self { fake: Fake::default(), metrics: Arc::new(Metrics::new()), health: Arc::new(Health::default()), dir: tempfile::tempdir().unwrap() }
        }
        fn open(&self, settings: SpoolSettings, max_events: usize) -> SpooledSink {
            let batching = Batching { max_events, max_wait: Duration::ZERO };
            SpooledSink::open(self.fake.clone(), self.dir.path(), settings, batching, self.metrics.clone(), self.health.clone()).unwrap()
        }
        /// Spools `events` while the server is down, then brings it back.
        fn backlog(&self, sink: &mut SpooledSink, events: &[Arc<Event>]) {
            self.fake.down.store(true, Ordering::SeqCst);
            sink.write_batch(events).unwrap();
            self.fake.down.store(false, Ordering::SeqCst);
            assert_eq!(sink.spool.len(), events.len() as u64);
            std::thread::sleep(MIN_BACKOFF + Duration::from_millis(50));
        }
        fn got(&self) -> Vec<String> {
            self.fake.got.lock().clone()
        }
    }

    #[test]
    fn spools_while_down_and_replays_in_order() {
        let h = Harness::new();
        let mut sink = h.open(settings(1 << 20), 100);
        let all: Vec<_> = (0..9).map(ev).collect();
        sink.write_batch(&all[0..3]).unwrap();
        h.fake.down.store(true, Ordering::SeqCst);
        sink.write_batch(&all[3..6]).unwrap(); // fails → spooled, still Ok
        assert_eq!(h.metrics.spool_events.with_label_values(&["fake"]).get(), 3);
        assert_eq!(h.health.readiness().sinks["fake"].state, State::Running, "spooling is degraded, not down");
        h.fake.down.store(false, Ordering::SeqCst);
        sink.write_batch(&all[6..9]).unwrap(); // in backoff → behind the spool
        std::thread::sleep(MIN_BACKOFF + Duration::from_millis(50));
        sink.idle();
        assert_eq!(h.got(), ids(&all), "every event once, in order");
        assert_eq!(h.metrics.spool_events_replayed.with_label_values(&["fake"]).get(), 6);
        assert_eq!(h.metrics.spool_events.with_label_values(&["fake"]).get(), 0);
    }

    /// A server that accepts and never answers holds a write up for the hand-off time
    /// only; later writes spool at once; when it finally confirms, the confirmed batch
    /// leaves the spool without a replay and every event arrives exactly once.
    #[test]
    fn a_server_that_never_answers_does_not_stall_the_writer() {
        let h = Harness::new();
        let mut sink = h.open(settings(1 << 20), 100);
        let all: Vec<_> = (0..12).map(ev).collect();
        h.fake.hang.store(true, Ordering::SeqCst);
        let t = Instant::now();
        sink.write_batch(&all[0..3]).unwrap();
        assert!(t.elapsed() < HAND_OFF + Duration::from_secs(2), "waited {:?}", t.elapsed());
        let t = Instant::now();
        for chunk in all[3..].chunks(3) {
            sink.write_batch(chunk).unwrap();
        }
        assert!(t.elapsed() < HAND_OFF * 2, "later writes waited {:?} (one hand-off each would be 3 s)", t.elapsed());
        assert_eq!(sink.spool.len(), 12, "all durable meanwhile");
        assert!(h.got().is_empty());
        h.fake.hang.store(false, Ordering::SeqCst);
        sink.idle();
        assert_eq!(h.got(), ids(&all), "once each, in order (the late confirmation acknowledged its records)");
        assert_eq!(sink.spool.len(), 0);
        assert_eq!(h.metrics.spool_events_replayed.with_label_values(&["fake"]).get(), 12, "9 replayed, 3 confirmed late");
    }

    /// A new batch sent past a backlog (live_first) and confirmed only after it was
    /// spooled behind that backlog is not sent a second time by the replay.
    #[test]
    fn a_late_confirmation_behind_a_backlog_is_not_replayed() {
        let h = Harness::new();
        let mut sink = h.open(settings(1 << 20), 100);
        let old: Vec<_> = (0..4).map(ev).collect();
        let new = ev(10);
        h.backlog(&mut sink, &old);
        h.fake.hang.store(true, Ordering::SeqCst);
        sink.write_batch(std::slice::from_ref(&new)).unwrap();
        assert_eq!(sink.spool.len(), 5, "spooled behind the backlog meanwhile");
        h.fake.hang.store(false, Ordering::SeqCst);
        sink.idle();
        let want: Vec<String> = std::iter::once(&new).chain(&old).map(|e| e.event_id.clone()).collect();
        assert_eq!(h.got(), want, "each once");
        assert_eq!(sink.spool.len(), 0);
    }

    /// live_first: with a backlog, each new batch goes out before the next backlog batch.
    #[test]
    fn live_first_interleaves_new_batches_with_the_backlog() {
        let h = Harness::new();
        let mut sink = h.open(settings(1 << 20), 2);
        let old: Vec<_> = (0..6).map(ev).collect();
        let new: Vec<_> = (10..13).map(ev).collect();
        h.backlog(&mut sink, &old);
        for e in &new {
            sink.write_batch(std::slice::from_ref(e)).unwrap();
        }
        sink.idle();
        let want: Vec<String> = [&new[0], &old[0], &old[1], &new[1], &old[2], &old[3], &new[2], &old[4], &old[5]].iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(h.got(), want);
    }

    #[test]
    fn in_order_keeps_new_batches_behind_the_backlog() {
        let h = Harness::new();
        let mut sink = h.open(SpoolSettings { replay: ReplayOrder::InOrder, ..settings(1 << 20) }, 2);
        let old: Vec<_> = (0..6).map(ev).collect();
        let new: Vec<_> = (10..13).map(ev).collect();
        h.backlog(&mut sink, &old);
        for e in &new {
            sink.write_batch(std::slice::from_ref(e)).unwrap();
        }
        sink.idle();
        let want: Vec<String> = old.iter().chain(&new).map(|e| e.event_id.clone()).collect();
        assert_eq!(h.got(), want);
    }

    /// A batch the server refuses is split until the refused event is alone; refused
    /// max_rejections times it becomes a dead letter and everything else arrives.
    #[test]
    fn a_refused_event_is_isolated_and_dead_lettered() {
        let h = Harness::new();
        let mut sink = h.open(settings(1 << 20), 8);
        let all: Vec<_> = (0..8).map(ev).collect();
        h.fake.refuses.lock().push(all[5].event_id.clone());
        sink.write_batch(&all).unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while !sink.spool.is_empty() && Instant::now() < until {
            sink.idle();
        }
        let mut want = ids(&all);
        want.remove(5);
        assert_eq!(h.got(), want, "every other event, in order");
        assert_eq!(h.metrics.sink_events_rejected.with_label_values(&["fake"]).get(), 1);
        let kept = std::fs::read_to_string(h.dir.path().join(DEAD_LETTERS)).unwrap();
        assert_eq!(kept, format!("{}\n", serde_json::to_string(&*all[5]).unwrap()));
        sink.write_batch(&[ev(20)]).unwrap();
        assert_eq!(h.got().last(), Some(&ev(20).event_id), "the spool is not blocked");
    }

    #[test]
    fn a_full_spool_is_an_error_and_an_alarm() {
        let h = Harness::new();
        h.fake.down.store(true, Ordering::SeqCst);
        let mut sink = h.open(settings(4096), 100);
        let mut failed = false;
        for i in 0..20 {
            if sink.write_batch(&[ev(i)]).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "a 4 KiB spool cannot hold 20 events");
        assert_eq!(h.metrics.spool_full.with_label_values(&["fake"]).get(), 1);
        assert_eq!(h.health.readiness().sinks["fake"].state, State::Error);
        assert!(h.health.readiness().reasons.iter().any(|r| r.contains("fake")), "{:?}", h.health.readiness().reasons);
    }

    /// when_full = "shed": the write succeeds (the pipeline and the other sinks go on),
    /// the drop is counted and alarmed, and ends once the server takes events again.
    #[test]
    fn a_shedding_sink_drops_and_counts_when_full() {
        let h = Harness::new();
        h.fake.down.store(true, Ordering::SeqCst);
        let mut sink = h.open(SpoolSettings { when_full: WhenFull::Shed, ..settings(4096) }, 100);
        for i in 0..20 {
            sink.write_batch(&[ev(i)]).unwrap();
        }
        let kept = sink.spool.len();
        assert!(kept < 20);
        assert_eq!(h.metrics.sink_events_shed.with_label_values(&["fake"]).get(), 20 - kept);
        assert_eq!(h.metrics.spool_full.with_label_values(&["fake"]).get(), 1, "one alarm per episode");
        assert_eq!(h.health.readiness().sinks["fake"].state, State::Error);
        h.fake.down.store(false, Ordering::SeqCst);
        let until = Instant::now() + Duration::from_secs(40);
        while !sink.spool.is_empty() && Instant::now() < until {
            sink.idle();
        }
        sink.write_batch(&[ev(30)]).unwrap();
        assert_eq!(h.got().len() as u64, kept + 1, "what was spooled, then the new one");
        assert_eq!(h.health.readiness().sinks["fake"].state, State::Running);
    }

    /// A record the replay cannot parse is neither sent nor dropped silently: it goes to
    /// the dead-letters file, is counted, and the readable records around it are sent.
    #[test]
    fn an_unreadable_spool_record_becomes_a_counted_dead_letter() {
        let h = Harness::new();
        let (a, b) = (ev(1), ev(2));
        {
            let mut spool = Spool::open(h.dir.path(), 1 << 20).unwrap();
            let lines = [serde_json::to_string(&*a).unwrap(), "{\"schema\":\"argus.event.v1\",\"event_id\":".into(), serde_json::to_string(&*b).unwrap()];
            spool.push(&lines).unwrap();
        }
        let mut sink = h.open(settings(1 << 20), 100);
        sink.idle();
        assert_eq!(h.got(), vec![a.event_id.clone(), b.event_id.clone()], "the readable records, in order");
        assert_eq!(h.metrics.spool_dead_letters.with_label_values(&["fake"]).get(), 1);
        assert_eq!(h.metrics.spool_events_replayed.with_label_values(&["fake"]).get(), 2, "replayed: the events sent");
        assert_eq!(h.metrics.spool_events.with_label_values(&["fake"]).get(), 0);
        let kept = std::fs::read_to_string(h.dir.path().join(DEAD_LETTERS)).unwrap();
        assert_eq!(kept, "{\"schema\":\"argus.event.v1\",\"event_id\":\n", "the record, byte for byte");
    }

    #[test]
    fn the_spool_survives_a_restart() {
        let h = Harness::new();
        h.fake.down.store(true, Ordering::SeqCst);
        {
            let mut sink = h.open(settings(1 << 20), 100);
            sink.write_batch(&[ev(1), ev(2)]).unwrap();
        }
        h.fake.down.store(false, Ordering::SeqCst);
        let mut sink = h.open(settings(1 << 20), 100);
        sink.idle();
        assert_eq!(h.got().len(), 2);
    }

    /// finish() ends by its deadline even when the server never answers.
    #[test]
    fn finish_ends_by_its_deadline() {
        let h = Harness::new();
        let mut sink = h.open(settings(1 << 20), 100);
        h.fake.hang.store(true, Ordering::SeqCst);
        sink.write_batch(&[ev(1)]).unwrap();
        let t = Instant::now();
        sink.finish(Instant::now() + Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
        assert_eq!(sink.spool.len(), 1, "kept for the next start");
        h.fake.hang.store(false, Ordering::SeqCst);
    }
}
