//! Encoded frames into each camera's Kafka topic: key = camera id (so one camera's
//! frames stay in one partition, in order), an idempotent producer per broker list, at
//! most `ingest.max_in_flight` frames unconfirmed. A delivery report counts the frame
//! published or dropped by reason; nothing is retried after `message_timeout_ms`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use time::OffsetDateTime;

use super::config::IngestConfig;
use super::encode::EncodedFrame;
use super::forward::{FramePublisher, Offer, Route, Tally};

/// What a delivery report needs to count its frame.
pub struct Sent {
    camera: Arc<str>,
    captured_at: OffsetDateTime,
}

struct Reports {
    tally: Tally,
    /// Set by a report that says this producer will never deliver again.
    renew: Arc<AtomicBool>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        match result {
            Ok(_) => self.tally.published(&sent.camera, sent.captured_at),
            Err((e, _)) => {
                let reason = drop_reason(e);
                tracing::debug!(camera = %sent.camera, error = %e, reason, "frame not delivered");
                if is_dead_producer(e) {
                    self.renew.store(true, Ordering::Relaxed);
                }
                self.tally.dropped(&sent.camera, reason);
            }
        }
    }
}

/// The drop reason of a failed delivery.
fn drop_reason(e: &KafkaError) -> &'static str {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => "expired",
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => "too_large",
        Some(RDKafkaErrorCode::PurgeQueue) | Some(RDKafkaErrorCode::PurgeInflight) => "stopping",
        _ => "rejected",
    }
}

/// Refusals after which this producer's id or epoch is no good: after frames timed out
/// (a frozen or restarted broker), the broker may fence it for good without librdkafka
/// raising a fatal error (seen with tansu), so every later frame would be refused.
fn is_dead_producer(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::InvalidProducerIdMapping
        )
    )
}

/// One producer for one broker list.
struct Link {
    brokers: String,
    producer: BaseProducer<Reports>,
    renew: Arc<AtomicBool>,
    /// When the last fatal error was logged (a fenced producer is replaced at once;
    /// one that cannot be created is retried, logged at most every 10 s).
    last_fatal_log: Option<Instant>,
}

pub struct KafkaFramePublisher {
    cfg: IngestConfig,
    tally: Tally,
    links: Vec<Link>,
    /// camera → (link, topic)
    routes: HashMap<Arc<str>, (usize, String)>,
}

impl KafkaFramePublisher {
    pub fn new(cfg: &IngestConfig, routes: HashMap<Arc<str>, Route>, tally: Tally) -> Result<Self, String> {
        let mut p = Self { cfg: cfg.clone(), tally, links: Vec::new(), routes: HashMap::new() };
        for (camera, route) in routes {
            let link = match p.links.iter().position(|l| l.brokers == route.brokers) {
                Some(i) => i,
                None => {
                    let (producer, renew) = p.producer(&route.brokers)?;
                    p.links.push(Link { brokers: route.brokers.clone(), producer, renew, last_fatal_log: None });
                    p.links.len() - 1
                }
            };
            p.routes.insert(camera, (link, route.topic));
        }
        Ok(p)
    }

    fn producer(&self, brokers: &str) -> Result<(BaseProducer<Reports>, Arc<AtomicBool>), String> {
        let c = &self.cfg;
        let mut conf = rdkafka::ClientConfig::new();
        conf.set("bootstrap.servers", brokers)
            .set("client.id", &c.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", c.message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", c.max_in_flight.to_string())
            // A frame must fit; the batch limit is the broker's to enforce.
            .set("message.max.bytes", (c.max_message_bytes + 64 * 1024).max(1_000_000).to_string())
            .set("linger.ms", "2")
            // Kafka's own (Java) partitioner: a camera's partition is the same whichever
            // client produces it.
            .set("partitioner", "murmur2_random");
        for (k, v) in &c.options {
            conf.set(k, v);
        }
        let renew = Arc::new(AtomicBool::new(false));
        let reports = Reports { tally: self.tally.clone(), renew: renew.clone() };
        let producer = conf.create_with_context(reports).map_err(|e| format!("cannot create the Kafka producer for {brokers}: {e}"))?;
        Ok((producer, renew))
    }

    /// An idempotent producer can fail for good (fenced after timeouts, a broker that
    /// lost its producer ids): it never delivers again, so it is replaced.
    fn renew_dead(&mut self) {
        for i in 0..self.links.len() {
            let link = &self.links[i];
            let why = match link.producer.client().fatal_error() {
                Some((code, reason)) => format!("{code:?}: {reason}"),
                None if link.renew.load(Ordering::Relaxed) => "the broker fenced its producer id".to_string(),
                None => continue,
            };
            let brokers = link.brokers.clone();
            match self.producer(&brokers) {
                Ok((p, renew)) => {
                    tracing::warn!(%brokers, error = %why, "the frame producer can deliver no more; replaced (its unconfirmed frames are dropped)");
                    // Dropping the old one purges what it held (reported as `stopping`).
                    self.links[i].producer = p;
                    self.links[i].renew = renew;
                }
                Err(e) => {
                    let link = &mut self.links[i];
                    if link.last_fatal_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::error!(error = %e, "cannot replace the failed frame producer");
                        link.last_fatal_log = Some(Instant::now());
                    }
                }
            }
        }
    }
}

impl FramePublisher for KafkaFramePublisher {
    fn offer(&mut self, frame: EncodedFrame) -> Offer {
        let Some((link, topic)) = self.routes.get(&frame.camera_id) else { return Offer::Refused("no_route") };
        let mut headers = OwnedHeaders::new_with_capacity(frame.headers.len());
        for (k, v) in &frame.headers {
            headers = headers.insert(Header { key: k, value: Some(v.as_slice()) });
        }
        let sent = Box::new(Sent { camera: frame.camera_id.clone(), captured_at: frame.captured_at });
        let record = BaseRecord::with_opaque_to(topic, sent).key(frame.camera_id.as_bytes()).payload(&frame.jpeg).headers(headers);
        match self.links[*link].producer.send(record) {
            Ok(()) => Offer::Accepted,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Offer::Full(frame),
            Err((e, _)) => {
                tracing::warn!(camera = %frame.camera_id, error = %e, "the producer refused the frame");
                Offer::Refused(drop_reason(&e))
            }
        }
    }

    fn poll(&mut self, wait: Duration) {
        let Some((first, rest)) = self.links.split_first() else { return };
        first.producer.poll(wait);
        for l in rest {
            l.producer.poll(Duration::ZERO);
        }
        self.renew_dead();
    }

    fn flush(&mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        for l in &self.links {
            let _ = l.producer.flush(deadline.saturating_duration_since(Instant::now()));
        }
        self.links.iter().map(|l| l.producer.in_flight_count().max(0) as usize).sum()
    }
}
