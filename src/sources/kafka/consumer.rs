//! Frames from a Kafka topic: one consumer-group member per pipeline, dispatching each
//! message by its `camera_id` header to that camera's lane.
//!
//! At-least-once end to end: offsets are stored and committed only for messages whose
//! frame is fully processed and whose events (if any) are durable in every sink (the
//! `Durability` watermark; see `crate::model::FrameAck`). A full lane pauses the
//! assigned partitions instead of dropping. A bad message (no or unknown `camera_id`,
//! bad `captured_at` or `telemetry`, oversized, undecodable image) is counted, logged
//! with topic/partition/offset, sent to the dead-letter topic with a `reason` header,
//! and skipped; it never stops the source.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use time::OffsetDateTime;

use crate::model::{Frame, FrameAck, Telemetry};
use crate::pipeline::bus::Durability;
use crate::pipeline::hub::{LaneSender, Pushed};
use crate::sources::kafka::config::KafkaSourceConfig;
use crate::telemetry::health::{Health, SourceState};
use crate::telemetry::metrics::Metrics;

const COMMIT_EVERY: Duration = Duration::from_millis(250);

/// Which messages of each partition are done, and when they are committable.
#[derive(Default)]
pub struct OffsetTracker {
    /// partition → offset → `Some(events published when the frame was done)`, or
    /// `None` while the frame is still being processed.
    pending: HashMap<i32, BTreeMap<i64, Option<u64>>>,
}

impl OffsetTracker {
    pub fn started(&mut self, partition: i32, offset: i64) {
        self.pending.entry(partition).or_default().insert(offset, None);
    }

    pub fn done(&mut self, partition: i32, offset: i64, published: u64) {
        if let Some(slot) = self.pending.get_mut(&partition).and_then(|p| p.get_mut(&offset)) {
            *slot = Some(published);
        }
    }

    /// Per partition, the offset to commit (one past the last message that is done and
    /// whose events are durable, with every earlier message also so); removes those.
    pub fn committable(&mut self, durable: u64) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (p, offsets) in &mut self.pending {
            let mut last = None;
            while let Some((&o, &mark)) = offsets.first_key_value() {
                match mark {
                    Some(m) if m <= durable => {
                        offsets.pop_first();
                        last = Some(o);
                    }
                    _ => break,
                }
            }
            if let Some(o) = last {
                out.push((*p, o + 1));
            }
        }
        out.sort_unstable();
        out
    }

    pub fn in_flight(&self) -> usize {
        self.pending.values().map(BTreeMap::len).sum()
    }
}

/// Why a message was rejected (the `reason` header on the dead-letter topic).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Rejected {
    #[error("missing_camera_id: no camera_id header")]
    MissingCamera,
    #[error("unknown_camera: camera_id `{0}` is not a kafka camera of this pipeline")]
    UnknownCamera(String),
    #[error("bad_captured_at: `{0}` is neither RFC 3339 nor Unix milliseconds")]
    BadCapturedAt(String),
    #[error("bad_telemetry: {0}")]
    BadTelemetry(String),
    #[error("oversized: {0} bytes is more than max_message_bytes {1}")]
    Oversized(usize, usize),
    #[error("empty: no image bytes")]
    Empty,
    #[error("undecodable: {0}")]
    Undecodable(String),
}

impl Rejected {
    /// The metric label and header value: the part before the colon.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingCamera => "missing_camera_id",
            Self::UnknownCamera(_) => "unknown_camera",
            Self::BadCapturedAt(_) => "bad_captured_at",
            Self::BadTelemetry(_) => "bad_telemetry",
            Self::Oversized(..) => "oversized",
            Self::Empty => "empty",
            Self::Undecodable(_) => "undecodable",
        }
    }
}

/// `captured_at`: RFC 3339, or Unix epoch milliseconds.
pub fn parse_captured_at(v: &str) -> Result<OffsetDateTime, Rejected> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).map_err(|_| Rejected::BadCapturedAt(v.into()));
    }
    crate::model::parse_time(v).map_err(|_| Rejected::BadCapturedAt(v.into()))
}

pub fn parse_telemetry(v: &[u8]) -> Result<Telemetry, Rejected> {
    let t: Telemetry = serde_json::from_slice(v).map_err(|e| Rejected::BadTelemetry(e.to_string()))?;
    let ok = (-90.0..=90.0).contains(&t.lat) && (-180.0..=180.0).contains(&t.lon) && t.alt_m.is_finite() && t.hfov > 0.0 && t.hfov < 180.0;
    if !ok || ![t.yaw, t.pitch, t.roll].iter().all(|a| a.is_finite()) {
        return Err(Rejected::BadTelemetry("values out of range (lat ±90, lon ±180, 0 < hfov < 180)".into()));
    }
    Ok(t)
}

pub struct KafkaSource {
    pub pipeline: String,
    pub cfg: KafkaSourceConfig,
    pub lanes: HashMap<Arc<str>, LaneSender>,
}

impl crate::sources::Source for KafkaSource {
    fn name(&self) -> String {
        format!("kafka-{}", self.pipeline)
    }

    fn run(self: Box<Self>, cx: crate::sources::SourceContext) {
        let span = tracing::info_span!("kafka_source", pipeline = %self.pipeline, topic = %self.cfg.topic);
        let _g = span.enter();
        if let Err(e) = run(*self, cx.durability, &cx.stop, &cx.metrics, &cx.health) {
            tracing::error!(error = %e, "Kafka source failed");
        }
    }
}

fn header<'a>(m: &'a BorrowedMessage<'_>, key: &str) -> Option<&'a [u8]> {
    m.headers().and_then(|h| h.iter().find(|x| x.key == key).and_then(|x| x.value))
}

struct Parsed {
    camera: Arc<str>,
    captured_at: OffsetDateTime,
    image: crate::model::RgbImage,
    telemetry: Option<Telemetry>,
}

fn parse(m: &BorrowedMessage<'_>, cfg: &KafkaSourceConfig, lanes: &HashMap<Arc<str>, LaneSender>) -> Result<Parsed, Rejected> {
    let camera = header(m, "camera_id").map(|v| String::from_utf8_lossy(v).into_owned()).ok_or(Rejected::MissingCamera)?;
    let camera = match lanes.get_key_value(camera.as_str()) {
        Some((id, _)) => id.clone(),
        None => return Err(Rejected::UnknownCamera(camera)),
    };
    let captured_at = match header(m, "captured_at") {
        Some(v) => parse_captured_at(&String::from_utf8_lossy(v))?,
        None => return Err(Rejected::BadCapturedAt("(missing)".into())),
    };
    let telemetry = header(m, "telemetry").map(parse_telemetry).transpose()?;
    let payload = m.payload().unwrap_or_default();
    if payload.is_empty() {
        return Err(Rejected::Empty);
    }
    if payload.len() > cfg.max_message_bytes {
        return Err(Rejected::Oversized(payload.len(), cfg.max_message_bytes));
    }
    let image = crate::model::decode_image(payload).map_err(|e| Rejected::Undecodable(e.to_string()))?;
    Ok(Parsed { camera, captured_at, image, telemetry })
}

fn consumer_config(cfg: &KafkaSourceConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        // A paused consumer still polls, but a slow pipeline must not cost the group.
        .set("max.poll.interval.ms", "600000")
        .set("fetch.message.max.bytes", (cfg.max_message_bytes + 65_536).to_string());
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    c
}

struct DeadLetters {
    producer: BaseProducer,
    topic: String,
}

impl DeadLetters {
    fn send(&self, m: &BorrowedMessage<'_>, why: &Rejected) {
        let (p, o) = (m.partition().to_string(), m.offset().to_string());
        let reason = why.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "reason", value: Some(reason.as_str()) })
            .insert(Header { key: "source_topic", value: Some(m.topic()) })
            .insert(Header { key: "source_partition", value: Some(p.as_str()) })
            .insert(Header { key: "source_offset", value: Some(o.as_str()) });
        let payload = m.payload().unwrap_or_default();
        let mut rec = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(payload).headers(headers);
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Err((e, _)) = self.producer.send(rec) {
            tracing::error!(error = %e, partition = m.partition(), offset = m.offset(), "cannot send to the dead-letter topic");
            return;
        }
        // Rare: wait for it, so a crash right after does not lose the evidence.
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            tracing::error!(error = %e, "dead-letter topic did not confirm");
        }
    }
}

fn run(src: KafkaSource, durability: Durability, stop: &AtomicBool, metrics: &Metrics, health: &Health) -> Result<(), String> {
    let KafkaSource { cfg, lanes, .. } = src;
    let consumer: BaseConsumer = consumer_config(&cfg).create().map_err(|e| format!("consumer: {e}"))?;
    consumer.subscribe(&[&cfg.topic]).map_err(|e| format!("subscribe {}: {e}", cfg.topic))?;
    let dlq = match &cfg.dead_letter_topic {
        Some(t) => {
            let producer: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &cfg.brokers)
                .set("message.max.bytes", (cfg.max_message_bytes.max(1_000_000) + 65_536).to_string())
                .create()
                .map_err(|e| format!("dead-letter producer: {e}"))?;
            Some(DeadLetters { producer, topic: t.clone() })
        }
        None => None,
    };
    tracing::info!(brokers = %cfg.brokers, group = %cfg.group_id, cameras = lanes.len(), "Kafka frame source started");
    for cam in lanes.keys() {
        health.update_source(cam, |s| s.state = SourceState::Connecting);
    }
    let (ack_tx, ack_rx) = unbounded::<(i32, i64, u64)>();
    let mut tracker = OffsetTracker::default();
    let mut seq: HashMap<Arc<str>, u64> = HashMap::new();
    let mut last_commit = Instant::now();
    let consumed = metrics.kafka_messages_consumed.with_label_values(&[&cfg.topic]);

    while !stop.load(Ordering::Relaxed) {
        drain_acks(&ack_rx, &mut tracker);
        if last_commit.elapsed() >= COMMIT_EVERY {
            commit(&consumer, &cfg.topic, &mut tracker, &durability, metrics);
            last_commit = Instant::now();
        }
        let m = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "Kafka consumer error");
                continue;
            }
            Some(Ok(m)) => m,
        };
        consumed.inc();
        let (p, o) = (m.partition(), m.offset());
        tracker.started(p, o);
        let parsed = match parse(&m, &cfg, &lanes) {
            Ok(x) => x,
            Err(why) => {
                metrics.kafka_messages_rejected.with_label_values(&[why.code()]).inc();
                tracing::warn!(topic = %cfg.topic, partition = p, offset = o, reason = %why, "bad frame message; dead-lettered and skipped");
                if let Some(d) = &dlq {
                    d.send(&m, &why);
                }
                tracker.done(p, o, 0);
                continue;
            }
        };
        let n = seq.entry(parsed.camera.clone()).or_insert(0);
        let (w, h) = (parsed.image.width, parsed.image.height);
        let frame = Frame {
            camera_id: parsed.camera.clone(),
            seq: *n,
            pts_ns: None,
            captured_at: parsed.captured_at,
            time_source: "header",
            received: Instant::now(),
            image: Arc::new(parsed.image),
            ack: Some(Arc::new(FrameAck { partition: p, offset: o, published: durability.published.clone(), done: ack_tx.clone() })),
            telemetry: parsed.telemetry.map(Arc::new),
            position: None,
        };
        *n += 1;
        let frames_in = *n;
        drop(m);
        let lane = &lanes[&parsed.camera];
        metrics.frames_received.with_label_values(&[&parsed.camera]).inc();
        // Backpressure: stop fetching while this camera's lane is full.
        let paused = if lane.has_room() {
            None
        } else {
            let assignment = consumer.assignment().ok();
            if let Some(a) = &assignment {
                let _ = consumer.pause(a);
                metrics.kafka_pauses.with_label_values(&[&cfg.topic]).inc();
            }
            assignment
        };
        let pushed = lane.push(frame);
        if let Some(a) = paused {
            let _ = consumer.resume(&a);
        }
        if pushed == Pushed::Closed {
            break;
        }
        health.update_source(&parsed.camera, |s| {
            s.state = SourceState::Streaming;
            s.detail = None;
            s.time_source = Some("header");
            s.rate_in.tick();
            s.frames_received = frames_in;
            s.last_frame_at = Some(parsed.captured_at);
            s.width = Some(w);
            s.height = Some(h);
        });
    }
    // Stopping: give the frames in flight a moment to finish, commit what is durable.
    let until = Instant::now() + Duration::from_secs(5);
    while tracker.in_flight() > 0 && Instant::now() < until {
        drain_acks(&ack_rx, &mut tracker);
        commit(&consumer, &cfg.topic, &mut tracker, &durability, metrics);
        std::thread::sleep(Duration::from_millis(50));
    }
    commit(&consumer, &cfg.topic, &mut tracker, &durability, metrics);
    consumer.unsubscribe();
    tracing::info!(uncommitted = tracker.in_flight(), "Kafka frame source stopped");
    Ok(())
}

fn drain_acks(rx: &Receiver<(i32, i64, u64)>, tracker: &mut OffsetTracker) {
    while let Ok((p, o, mark)) = rx.try_recv() {
        tracker.done(p, o, mark);
    }
}

fn commit(consumer: &BaseConsumer, topic: &str, tracker: &mut OffsetTracker, durability: &Durability, metrics: &Metrics) {
    let offsets = tracker.committable(durability.durable());
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &offsets {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => metrics.kafka_offsets_committed.with_label_values(&[topic]).inc_by(offsets.len() as u64),
        // After a rebalance the partition may be someone else's: they re-read from the
        // last commit (at least once).
        Err(e) => tracing::warn!(error = %e, ?offsets, "offset commit failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_contiguous_durable_offsets() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.started(0, o);
        }
        t.started(1, 3);
        t.done(0, 10, 5);
        t.done(0, 11, 7);
        t.done(0, 13, 7); // 12 still in flight
        t.done(1, 3, 0);
        assert_eq!(t.committable(6), vec![(0, 11), (1, 4)], "11's events are not durable yet");
        assert_eq!(t.committable(7), vec![(0, 12)]);
        t.done(0, 12, 8);
        assert_eq!(t.committable(8), vec![(0, 14)]);
        assert_eq!(t.in_flight(), 1);
        assert!(t.committable(100).is_empty());
    }

    #[test]
    fn header_values_are_checked() {
        assert_eq!(parse_captured_at("1763884800123").unwrap().unix_timestamp(), 1_763_884_800);
        assert!(parse_captured_at("2026-11-23T08:00:00.5Z").is_ok());
        assert_eq!(parse_captured_at("yesterday").unwrap_err().code(), "bad_captured_at");
        let good = br#"{"lat":51.4,"lon":-0.9,"alt_m":100,"yaw":90,"pitch":-45,"roll":0,"hfov":70}"#;
        assert_eq!(parse_telemetry(good).unwrap().alt_m, 100.0);
        assert_eq!(parse_telemetry(br#"{"lat":91,"lon":0,"alt_m":1,"yaw":0,"pitch":0,"roll":0,"hfov":70}"#).unwrap_err().code(), "bad_telemetry");
        assert_eq!(parse_telemetry(b"{").unwrap_err().code(), "bad_telemetry");
    }
}
