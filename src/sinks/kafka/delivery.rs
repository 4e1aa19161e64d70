//! Events into a Kafka topic, all or nothing per batch (the spool keeps what fails).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::config::KafkaSinkConfig;
use crate::model::{Event, SCHEMA};
use crate::sinks::spool::Delivery;

/// How often a batch's delivery reports are collected while it waits for them.
const REPORT_POLL: Duration = Duration::from_micros(250);

/// Counts delivery reports; remembers the first failure of a batch.
#[derive(Default)]
struct Reports {
    ok: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

struct Context(Arc<Reports>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.ok.fetch_add(1, Ordering::SeqCst);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::SeqCst);
                self.0.first_error.lock().get_or_insert_with(|| e.to_string());
            }
        }
    }
}

pub struct KafkaDelivery {
    cfg: KafkaSinkConfig,
    producer: BaseProducer<Context>,
    reports: Arc<Reports>,
    topic: String,
    brokers: String,
    /// Longer than librdkafka's own `message.timeout.ms`, so every message reports.
    flush_timeout: Duration,
}

impl KafkaDelivery {
    pub fn new(cfg: &KafkaSinkConfig) -> Result<Self, String> {
        let reports = Arc::new(Reports::default());
        let producer = Self::producer(cfg, &reports)?;
        Ok(Self {
            cfg: cfg.clone(),
            producer,
            reports,
            topic: cfg.topic.clone(),
            brokers: cfg.brokers.clone(),
            flush_timeout: Duration::from_millis(cfg.message_timeout_ms + 2000),
        })
    }
}

impl KafkaDelivery {
    fn producer(cfg: &KafkaSinkConfig, reports: &Arc<Reports>) -> Result<BaseProducer<Context>, String> {
        super::sink::client_config(cfg).create_with_context(Context(reports.clone())).map_err(|e| format!("cannot create the Kafka producer: {e}"))
    }

    /// After a failed batch the producer may never work again: an idempotent
    /// producer whose messages timed out can be fenced (a fatal error), and one whose
    /// broker was replaced keeps a producer id the new cluster does not know. A new
    /// producer (new id, new connections, its own delivery counters, so late reports
    /// of the old one count nowhere) starts clean; the spool replays the batch.
    fn renew(&mut self, error: &str) {
        let fatal = self.producer.client().fatal_error().map(|(code, reason)| format!("{code:?}: {reason}"));
        let reason = fatal.unwrap_or_else(|| error.to_string());
        let reports = Arc::new(Reports::default());
        match Self::producer(&self.cfg, &reports) {
            Ok(p) => {
                tracing::info!(%reason, "replacing the Kafka producer after a failed batch");
                // The old one is dropped here: librdkafka purges what it still held.
                self.producer = p;
                self.reports = reports;
            }
            Err(e) => tracing::error!(error = %e, "cannot replace the Kafka producer"),
        }
    }
}

impl Delivery for KafkaDelivery {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn target(&self) -> String {
        format!("Kafka {} topic {}", self.brokers, self.topic)
    }

    /// The topic must exist (Argus does not create topics: partitions and retention
    /// are the operator's choice).
    fn prepare(&mut self) -> Result<(), String> {
        let md = self.producer.client().fetch_metadata(Some(&self.topic), Duration::from_secs(5)).map_err(|e| format!("cannot reach {}: {e}", self.brokers))?;
        let t = md.topics().iter().find(|t| t.name() == self.topic).ok_or_else(|| format!("topic {} not in the metadata", self.topic))?;
        if let Some(e) = t.error() {
            return Err(format!(
                "topic {}: {:?} (create it, e.g. `tansu topic create {}` or kafka-topics.sh --create)",
                self.topic,
                RDKafkaErrorCode::from(e),
                self.topic
            ));
        }
        if t.partitions().is_empty() {
            return Err(format!("topic {} has no partitions", self.topic));
        }
        tracing::info!(topic = %self.topic, partitions = t.partitions().len(), brokers = %self.brokers, "Kafka events topic ready");
        Ok(())
    }

    fn deliver(&mut self, events: &[Arc<Event>]) -> Result<(), String> {
        let r = &self.reports;
        r.ok.store(0, Ordering::SeqCst);
        r.failed.store(0, Ordering::SeqCst);
        *r.first_error.lock() = None;
        for ev in events {
            let payload = serde_json::to_vec(&**ev).map_err(|e| e.to_string())?;
            let headers = OwnedHeaders::new()
                .insert(Header { key: "schema", value: Some(SCHEMA) })
                .insert(Header { key: "kind", value: Some(ev.kind.as_str()) })
                .insert(Header { key: "event_id", value: Some(ev.event_id.as_str()) })
                .insert(Header { key: "camera_id", value: Some(ev.camera_id.as_str()) });
            let mut record = BaseRecord::to(&self.topic).key(ev.camera_id.as_str()).payload(&payload).headers(headers);
            let give_up = Instant::now() + self.flush_timeout;
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) if Instant::now() < give_up => {
                        record = back;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => {
                        let e = format!("producing event {}: {e}", ev.event_id);
                        self.renew(&e);
                        return Err(e);
                    }
                }
            }
            self.producer.poll(Duration::ZERO);
        }
        // Waits for every report with non-blocking polls and short sleeps, not with
        // `flush` or `poll(t)`: those run until their whole timeout even once the reports
        // are in (100 ms in flush, which made every confirmed batch take 100 ms however
        // small: bench-kafka 0.12x a bare producer at 1000 a batch, 0.03x at 100), and
        // spin on the clock through their last millisecond.
        // Wakes the broker threads to send what lingers now (flush with no wait), so the
        // batch's last records do not wait out `linger.ms`.
        let _ = self.producer.flush(Duration::ZERO);
        let deadline = Instant::now() + self.flush_timeout;
        let reported = || r.ok.load(Ordering::SeqCst) + r.failed.load(Ordering::SeqCst);
        loop {
            self.producer.poll(Duration::ZERO);
            if reported() >= events.len() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(REPORT_POLL);
        }
        let (ok, failed) = (r.ok.load(Ordering::SeqCst), r.failed.load(Ordering::SeqCst));
        if ok == events.len() {
            return Ok(());
        }
        let why = r.first_error.lock().clone().unwrap_or_else(|| format!("no delivery report within {} ms", self.flush_timeout.as_millis()));
        self.renew(&why);
        Err(format!("{ok} of {} events confirmed ({failed} failed): {why}", events.len()))
    }

    fn needs_prepare_after(&self, error: &str) -> bool {
        error.contains("Unknown topic") || error.contains("UnknownTopic")
    }

    /// The broker refused the record itself: larger than the topic accepts, or a
    /// record it cannot store. Anything else (timeouts, brokers down) is an outage.
    fn is_rejection(&self, error: &str) -> bool {
        ["MessageSizeTooLarge", "Message size too large", "InvalidRecord", "RecordListTooLarge", "InvalidMessageSize"].iter().any(|s| error.contains(s))
    }
}
