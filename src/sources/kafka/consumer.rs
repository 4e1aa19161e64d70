//! Frames from a Kafka topic: one consumer-group member per pipeline, dispatching each
//! message by its `camera_id` header to that camera's lane.
//!
//! At-least-once end to end: offsets are stored and committed only for messages whose
//! frame is fully processed and whose events (if any) are durable in every sink (the
//! `Durability` watermark; see `crate::model::FrameAck`). A full lane holds the
//! source (consumption) until there is room, instead of dropping. A bad message (no or
//! unknown `camera_id`, bad `captured_at` or `telemetry`, oversized, undecodable image)
//! is counted, logged with topic/partition/offset, sent to the dead-letter topic with a
//! `reason` header, and skipped; it never stops the source.
//!
//! **Scene state handoff** (`[scene_state]` enabled): a camera's scene follows its
//! partition. On assignment the member reads the partition's checkpoints from the state
//! topic (`super::state`) before analysing any of its frames, continues each camera from
//! its checkpoint and skips the messages it already reflects; a message is committed only
//! once a confirmed checkpoint of its camera covers it. On revocation (and at shutdown)
//! the member lets the partition's frames in flight finish, checkpoints its cameras one
//! last time, commits, and drops their later frames. A lost partition (session timed
//! out: another member owns it already) is given up without a checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, Rebalance};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use time::OffsetDateTime;

use super::state::{Loaded, StateTopic};
use crate::model::{AckReport, Frame, FrameAck, KafkaPosition, SourcePosition, Telemetry};
use crate::pipeline::SceneHandoff;
use crate::pipeline::bus::Durability;
use crate::pipeline::hub::{LaneSender, Pushed};
use crate::pipeline::scene_stage::Assignment;
use crate::pipeline::scene_state::StateWriter;
use crate::sources::kafka::config::KafkaSourceConfig;
use crate::telemetry::health::{Health, SourceState};
use crate::telemetry::metrics::Metrics;

const COMMIT_EVERY: Duration = Duration::from_millis(250);

/// Which messages of each partition are done, and when they are committable.
#[derive(Default)]
pub struct OffsetTracker {
    /// partition → offset → the message.
    pending: HashMap<i32, BTreeMap<i64, Pending>>,
    /// Frames whose analysis failed, not dead-lettered yet: never committable (their
    /// partition's commits stop there), and not "processing" either.
    failed: std::collections::BTreeSet<(i32, i64)>,
}

/// A message's camera (none for a rejected one) and `Some(events published when the
/// frame was done)`, or `None` while the frame is still being processed.
type Pending = (Option<Arc<str>>, Option<u64>);

impl OffsetTracker {
    pub fn started(&mut self, partition: i32, offset: i64, camera: Option<Arc<str>>) {
        self.pending.entry(partition).or_default().insert(offset, (camera, None));
    }

    pub fn done(&mut self, partition: i32, offset: i64, published: u64) {
        self.failed.remove(&(partition, offset));
        if let Some(slot) = self.pending.get_mut(&partition).and_then(|p| p.get_mut(&offset)) {
            slot.1 = Some(published);
        }
    }

    /// Per partition, the offset to commit: one past the last message that is done,
    /// whose events are durable and whose camera's state is checkpointed at or after it
    /// (`covered`), with every earlier message also so; removes those.
    pub fn committable(&mut self, durable: u64, covered: &dyn Fn(&str, i32, i64) -> bool) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (p, offsets) in &mut self.pending {
            let mut last = None;
            while let Some((&o, (camera, mark))) = offsets.first_key_value() {
                match mark {
                    Some(m) if *m <= durable && camera.as_ref().is_none_or(|c| covered(c, *p, o)) => {
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

    /// Frames of `partition` still being processed.
    pub fn processing(&self, partition: i32) -> usize {
        let failed = self.failed.range((partition, i64::MIN)..=(partition, i64::MAX)).count();
        self.pending.get(&partition).map_or(0, |p| p.values().filter(|(_, m)| m.is_none()).count()) - failed
    }

    /// The frame's analysis failed: it stays uncommitted until `done` (after it was
    /// dead-lettered).
    pub fn failed(&mut self, partition: i32, offset: i64) {
        if self.pending.get(&partition).is_some_and(|p| p.get(&offset).is_some_and(|(_, m)| m.is_none())) {
            self.failed.insert((partition, offset));
        }
    }

    /// Failed frames not dead-lettered yet.
    pub fn failures(&self) -> usize {
        self.failed.len()
    }

    /// Forgets a partition given up (its new owner re-reads from the last commit).
    pub fn forget(&mut self, partition: i32) {
        self.pending.remove(&partition);
        self.failed.retain(|(p, _)| *p != partition);
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
    #[error("too_large: {0}")]
    TooLarge(String),
    #[error("detect_failed: {0}")]
    DetectFailed(String),
    #[error("future_captured_at: `{0}` is more than 5 minutes ahead of this machine's clock, and so is the message's own time stamp")]
    FutureCapturedAt(String),
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
            Self::TooLarge(_) => "too_large",
            Self::DetectFailed(_) => "detect_failed",
            Self::FutureCapturedAt(_) => "future_captured_at",
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

/// A frame may be dated at most this far ahead of this machine's clock.
pub const MAX_FUTURE: time::Duration = time::Duration::minutes(5);

/// A `captured_at` far in the future (a producer's clock gone wrong) would hold the
/// camera's scene there: every later frame would look older, and time-based rules and
/// summaries would wait for the clock to catch up. Such a frame is re-dated with the
/// message's Kafka time stamp, which replays the same (so event ids stay the same);
/// when that is in the future too, the frame is rejected. Returns the time to use and,
/// when re-dated, the original.
pub fn check_future(
    captured_at: OffsetDateTime,
    message_time: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, Option<OffsetDateTime>), Rejected> {
    if captured_at <= now + MAX_FUTURE {
        return Ok((captured_at, None));
    }
    match message_time.filter(|t| *t <= now + MAX_FUTURE) {
        Some(t) => Ok((t, Some(captured_at))),
        None => Err(Rejected::FutureCapturedAt(crate::model::format_time(captured_at))),
    }
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
    /// `limits.max_frame_pixels`.
    pub max_pixels: u64,
    pub lanes: HashMap<Arc<str>, LaneSender>,
    /// Scene state handoff between members (`[scene_state]` enabled): cameras' states
    /// follow their partitions through the state topic.
    pub handoff: Option<SceneHandoff>,
}

impl crate::sources::Source for KafkaSource {
    fn name(&self) -> String {
        format!("kafka-{}", self.pipeline)
    }

    fn run(self: Box<Self>, cx: crate::sources::SourceContext) {
        let span = tracing::info_span!("kafka_source", pipeline = %self.pipeline, topic = %self.cfg.topic);
        let _g = span.enter();
        if let Err(e) = run(*self, cx.durability, cx.stop.clone(), cx.metrics.clone(), &cx.health) {
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
    /// The header's time when it was in the future and the message time is used.
    redated_from: Option<OffsetDateTime>,
    image: crate::model::RgbImage,
    telemetry: Option<Telemetry>,
}

fn parse(m: &BorrowedMessage<'_>, cfg: &KafkaSourceConfig, max_pixels: u64, lanes: &HashMap<Arc<str>, LaneSender>) -> Result<Parsed, Rejected> {
    let camera = header(m, "camera_id").map(|v| String::from_utf8_lossy(v).into_owned()).ok_or(Rejected::MissingCamera)?;
    let camera = match lanes.get_key_value(camera.as_str()) {
        Some((id, _)) => id.clone(),
        None => return Err(Rejected::UnknownCamera(camera)),
    };
    let captured_at = match header(m, "captured_at") {
        Some(v) => parse_captured_at(&String::from_utf8_lossy(v))?,
        None => return Err(Rejected::BadCapturedAt("(missing)".into())),
    };
    let message_time = m.timestamp().to_millis().and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok());
    let (captured_at, redated_from) = check_future(captured_at, message_time, OffsetDateTime::now_utc())?;
    let telemetry = header(m, "telemetry").map(parse_telemetry).transpose()?;
    let payload = m.payload().unwrap_or_default();
    if payload.is_empty() {
        return Err(Rejected::Empty);
    }
    if payload.len() > cfg.max_message_bytes {
        return Err(Rejected::Oversized(payload.len(), cfg.max_message_bytes));
    }
    let image = crate::model::decode_image_limited(payload, crate::model::ImageLimits::pixels(max_pixels)).map_err(|e| match e {
        crate::model::DecodeError::Decode(_) => Rejected::Undecodable(e.to_string()),
        _ => Rejected::TooLarge(e.to_string()),
    })?;
    Ok(Parsed { camera, captured_at, redated_from, image, telemetry })
}

fn consumer_config(cfg: &KafkaSourceConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        // A rebalance moves only the partitions that change owner: the others keep
        // being analysed (and their scenes stay where they are).
        .set("partition.assignment.strategy", "cooperative-sticky")
        // A paused consumer still polls, but a slow pipeline must not cost the group.
        .set("max.poll.interval.ms", "600000")
        .set("fetch.message.max.bytes", (cfg.max_message_bytes + 65_536).to_string())
        // Per-partition lag for the metrics and the fleet view.
        .set("statistics.interval.ms", "5000")
        // Frames are live: a fetch waits at most 100 ms for company (librdkafka's 500 ms
        // default added ~75 ms to the median capture → event latency, measured).
        .set("fetch.wait.max.ms", "100");
    if let Some(id) = cfg.instance_id() {
        c.set("group.instance.id", id);
    }
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
    fn send<M: Message>(&self, m: &M, why: &Rejected) -> bool {
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
            return false;
        }
        // Rare: wait for it, so a crash right after does not lose the evidence.
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            tracing::error!(error = %e, "dead-letter topic did not confirm");
            return false;
        }
        true
    }
}

/// Frames the detector could not analyse. They are never committed as if analysed: with
/// a `dead_letter_topic` each is fetched again by offset (a short-lived consumer outside
/// the group, so the group's position does not move) and dead-lettered with the reason
/// `detect_failed: …`, then committed; without one it stays uncommitted, so it is
/// analysed again after a restart (the partition's commits wait for it).
#[derive(Default)]
struct FailedFrames {
    /// Reported already (without a dead-letter topic): logged once each.
    reported: std::collections::HashSet<(i32, i64)>,
    next_try: Option<Instant>,
}

const REFETCH_TIMEOUT: Duration = Duration::from_secs(10);
const REFETCH_RETRY: Duration = Duration::from_secs(10);

impl FailedFrames {
    fn handle(&mut self, ctx: &FrameContext, cfg: &KafkaSourceConfig, dlq: Option<&DeadLetters>, metrics: &Metrics) {
        let failed = std::mem::take(&mut ctx.shared.lock().failed);
        if failed.is_empty() {
            return;
        }
        let Some(dlq) = dlq else {
            for (p, o, why) in &failed {
                if self.reported.insert((*p, *o)) {
                    metrics.kafka_messages_rejected.with_label_values(&["detect_failed"]).inc();
                    tracing::error!(topic = %cfg.topic, partition = p, offset = o, reason = %why, "frame not analysed and not committed: it is analysed again after a restart (set kafka.dead_letter_topic to move such frames aside)");
                }
            }
            return;
        };
        if self.next_try.is_some_and(|t| Instant::now() < t) {
            ctx.shared.lock().failed.extend(failed);
            return;
        }
        let mut left = Vec::new();
        for (p, o, why) in failed {
            match refetch(cfg, p, o).map(|m| dlq.send(&m, &Rejected::DetectFailed(why.clone()))) {
                Ok(true) => {
                    metrics.kafka_messages_rejected.with_label_values(&["detect_failed"]).inc();
                    tracing::warn!(topic = %cfg.topic, partition = p, offset = o, reason = %why, "frame not analysed; dead-lettered");
                    ctx.shared.lock().tracker.done(p, o, 0);
                }
                Ok(false) => left.push((p, o, why)),
                Err(e) => {
                    tracing::error!(topic = %cfg.topic, partition = p, offset = o, error = %e, "cannot fetch a failed frame again to dead-letter it; retrying (it stays uncommitted)");
                    left.push((p, o, why));
                }
            }
        }
        self.next_try = (!left.is_empty()).then(|| Instant::now() + REFETCH_RETRY);
        ctx.shared.lock().failed.extend(left);
    }
}

/// The message at `offset` of `partition`, read by a consumer of its own (assigned, not
/// subscribed, never committing).
fn refetch(cfg: &KafkaSourceConfig, partition: i32, offset: i64) -> Result<rdkafka::message::OwnedMessage, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", format!("{}-refetch", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    let consumer: BaseConsumer = c.create().map_err(|e| format!("consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&cfg.topic, partition, Offset::Offset(offset)).map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    let until = Instant::now() + REFETCH_TIMEOUT;
    while Instant::now() < until {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.partition() == partition && m.offset() == offset => return Ok(m.detach()),
            Some(Ok(m)) if m.offset() > offset => return Err(format!("offset {offset} is gone (the topic's retention removed it)")),
            Some(Err(e)) => tracing::debug!(error = %e, "refetch"),
            _ => {}
        }
    }
    Err(format!("no message at offset {offset} within {REFETCH_TIMEOUT:?}"))
}

/// How long a revocation waits for the revoked partitions' frames in flight.
const REVOKE_DRAIN: Duration = Duration::from_secs(10);

/// How long a revocation waits for the released cameras' last checkpoints.
const RELEASE_WAIT: Duration = Duration::from_secs(20);

/// What the poll loop and the rebalance callbacks share (the callbacks run inside
/// `poll`, on the same thread, so the lock is never contended).
struct Shared {
    tracker: OffsetTracker,
    acks: Receiver<AckReport>,
    /// Frames whose analysis failed, waiting to be dead-lettered: (partition, offset, why).
    failed: Vec<(i32, i64, String)>,
    /// Kafka cameras this member analyses now, and the partition their frames come from.
    owned: HashMap<Arc<str>, i32>,
    /// Per assigned partition, the state topic's checkpoints of cameras not taken over yet.
    loaded: HashMap<i32, HashMap<String, Loaded>>,
    /// A camera's messages up to this one (partition, offset) are in its checkpoint: skipped.
    covered: HashMap<Arc<str>, (i32, i64)>,
    /// Next frame number per camera (continued from the checkpoint on a takeover).
    seq: HashMap<Arc<str>, u64>,
    /// Cameras already warned about for arriving on a second partition.
    split_warned: std::collections::HashSet<Arc<str>>,
}

impl Shared {
    fn drain_acks(&mut self) {
        while let Ok(r) = self.acks.try_recv() {
            match r.failure {
                None => self.tracker.done(r.partition, r.offset, r.published),
                Some(why) => {
                    self.tracker.failed(r.partition, r.offset);
                    self.failed.push((r.partition, r.offset, why));
                }
            }
        }
    }
}

/// The state handoff: the scene stage's side and the state topic.
struct Handoff {
    scenes: SceneHandoff,
    state: Arc<StateTopic>,
}

/// The consumer's context: rebalance callbacks that move cameras' scenes with their
/// partitions.
struct FrameContext {
    topic: String,
    shared: Mutex<Shared>,
    handoff: Option<Handoff>,
    durability: Durability,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
}

impl rdkafka::ClientContext for FrameContext {
    /// librdkafka's statistics (`statistics.interval.ms`): each assigned partition's lag.
    fn stats(&self, stats: rdkafka::Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else { return };
        for (id, p) in &topic.partitions {
            // -1: not measured yet (or not assigned); the internal partition -1 is no partition.
            if *id >= 0 && p.consumer_lag >= 0 {
                self.metrics.kafka_consumer_lag.with_label_values(&[&self.topic, &id.to_string()]).set(p.consumer_lag);
                self.health.partition_lag(&self.topic, *id, p.consumer_lag);
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for FrameContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = partitions_in(tpl, &self.topic);
            self.give_up(consumer, &partitions, consumer.assignment_lost());
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = partitions_in(tpl, &self.topic);
                tracing::info!(?partitions, "partitions assigned");
                self.metrics.kafka_rebalances.with_label_values(&[&self.topic, "assigned"]).inc();
                self.health.partitions_assigned(&self.topic, &partitions);
                self.take(&partitions);
            }
            Rebalance::Revoke(tpl) => {
                let partitions = partitions_in(tpl, &self.topic);
                tracing::info!(?partitions, "partitions revoked");
                self.metrics.kafka_rebalances.with_label_values(&[&self.topic, "revoked"]).inc();
                self.health.partitions_revoked(&self.topic, &partitions);
                for p in &partitions {
                    let _ = self.metrics.kafka_consumer_lag.remove_label_values(&[&self.topic, &p.to_string()]);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

fn partitions_in(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements().iter().filter(|e| e.topic() == topic).map(|e| e.partition()).collect()
}

impl FrameContext {
    /// Newly assigned partitions: reads their cameras' checkpoints from the state topic
    /// before any of their frames is analysed. A state topic that cannot be read is
    /// retried: analysing without the checkpoint would reopen incidents under new ids.
    fn take(&self, partitions: &[i32]) {
        let Some(h) = &self.handoff else { return };
        let mut delay = Duration::from_millis(500);
        loop {
            match h.state.read_partitions(partitions) {
                Ok(states) => {
                    let cameras: usize = states.values().map(HashMap::len).sum();
                    tracing::info!(?partitions, cameras, state_topic = %h.state.topic, "checkpoints read");
                    self.shared.lock().loaded.extend(states);
                    return;
                }
                Err(e) if !self.stop.load(Ordering::Relaxed) => {
                    tracing::warn!(?partitions, error = %e, "cannot read the state topic; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    tracing::warn!(?partitions, error = %e, "cannot read the state topic while stopping");
                    return;
                }
            }
        }
    }

    /// Partitions this member gives up (revoked, or Argus is stopping): waits a bounded
    /// time for their frames in flight, checkpoints their cameras (not when `lost`: the
    /// group already gave them to another member, whose state must not be overwritten),
    /// commits what is done and checkpointed, and forgets them.
    fn give_up(&self, consumer: &BaseConsumer<Self>, partitions: &[i32], lost: bool) {
        if partitions.is_empty() {
            return;
        }
        let mut sh = self.shared.lock();
        let until = Instant::now() + REVOKE_DRAIN;
        while !lost && partitions.iter().any(|&p| sh.tracker.processing(p) > 0) && Instant::now() < until {
            sh.drain_acks();
            std::thread::sleep(Duration::from_millis(10));
        }
        let cameras: Vec<Arc<str>> = sh.owned.iter().filter(|(_, p)| partitions.contains(p)).map(|(c, _)| c.clone()).collect();
        if let Some(h) = &self.handoff {
            let done = h.scenes.release(cameras.clone(), !lost);
            if done.recv_timeout(RELEASE_WAIT).is_err() {
                tracing::warn!(?cameras, "the released cameras' last checkpoints were not written in time: their new owner re-analyses from the previous ones");
            }
        }
        sh.drain_acks();
        if !lost {
            let only: Vec<(i32, i64)> = {
                let covered = self.covered_fn();
                sh.tracker.committable(self.durability.durable(), &covered).into_iter().filter(|(p, _)| partitions.contains(p)).collect()
            };
            commit_offsets(consumer, &self.topic, &only, &self.metrics);
        }
        for p in partitions {
            sh.tracker.forget(*p);
            sh.loaded.remove(p);
        }
        for c in &cameras {
            sh.owned.remove(c);
            sh.covered.remove(c);
        }
        tracing::info!(?partitions, ?cameras, lost, "partitions given up");
    }

    /// Whether a camera's checkpoint covers a message (always, without state keeping).
    fn covered_fn(&self) -> impl Fn(&str, i32, i64) -> bool + '_ {
        move |camera: &str, p: i32, o: i64| self.handoff.as_ref().is_none_or(|h| h.state.covers(camera, p, o))
    }

    /// Commits every partition's done, durable and checkpointed messages.
    fn commit(&self, consumer: &BaseConsumer<Self>) {
        let offsets = {
            let covered = self.covered_fn();
            let mut sh = self.shared.lock();
            sh.drain_acks();
            sh.tracker.committable(self.durability.durable(), &covered)
        };
        commit_offsets(consumer, &self.topic, &offsets, &self.metrics);
    }
}

fn run(src: KafkaSource, durability: Durability, stop: Arc<AtomicBool>, metrics: Arc<Metrics>, health: &Arc<Health>) -> Result<(), String> {
    let KafkaSource { cfg, lanes, handoff, max_pixels, .. } = src;
    let handoff = match handoff {
        Some(scenes) => {
            let state = Arc::new(StateTopic::new(&cfg)?);
            Some(Handoff { scenes, state })
        }
        None => None,
    };
    let (ack_tx, ack_rx) = unbounded::<AckReport>();
    let shared = Shared {
        tracker: OffsetTracker::default(),
        acks: ack_rx,
        failed: Vec::new(),
        owned: HashMap::new(),
        loaded: HashMap::new(),
        covered: HashMap::new(),
        seq: HashMap::new(),
        split_warned: Default::default(),
    };
    let context = FrameContext {
        topic: cfg.topic.clone(),
        shared: Mutex::new(shared),
        handoff,
        durability: durability.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        stop: stop.clone(),
    };
    let consumer: BaseConsumer<FrameContext> = consumer_config(&cfg).create_with_context(context).map_err(|e| format!("consumer: {e}"))?;
    if let Some(h) = &consumer.context().handoff {
        ensure_state_topic(&consumer, &cfg, &h.state, &stop)?;
    }
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
    let state_topic = consumer.context().handoff.as_ref().map(|h| h.state.topic.clone());
    tracing::info!(brokers = %cfg.brokers, group = %cfg.group_id, instance = ?cfg.instance_id(), cameras = lanes.len(), ?state_topic, "Kafka frame source started");
    for cam in lanes.keys() {
        health.update_source(cam, |s| s.state = SourceState::Connecting);
    }
    let mut last_commit = Instant::now();
    let consumed = metrics.kafka_messages_consumed.with_label_values(&[&cfg.topic]);
    let skipped = metrics.kafka_messages_skipped.with_label_values(&[&cfg.topic]);
    let ctx = consumer.context();

    let mut failures = FailedFrames::default();
    while !stop.load(Ordering::Relaxed) {
        if last_commit.elapsed() >= COMMIT_EVERY {
            failures.handle(ctx, &cfg, dlq.as_ref(), &metrics);
            ctx.commit(&consumer);
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
        let mut sh = ctx.shared.lock();
        sh.drain_acks();
        let parsed = match parse(&m, &cfg, max_pixels, &lanes) {
            Ok(x) => x,
            Err(why) => {
                metrics.kafka_messages_rejected.with_label_values(&[why.code()]).inc();
                tracing::warn!(topic = %cfg.topic, partition = p, offset = o, reason = %why, "bad frame message; dead-lettered and skipped");
                if let Some(d) = &dlq {
                    d.send(&m, &why);
                }
                sh.tracker.started(p, o, None);
                sh.tracker.done(p, o, 0);
                continue;
            }
        };
        let camera = parsed.camera.clone();
        sh.tracker.started(p, o, Some(camera.clone()));
        if let Some(h) = &ctx.handoff {
            take_over(&mut sh, h, &camera, p, &cfg.topic);
        }
        // Already in the camera's checkpoint: analysed before the takeover.
        if sh.covered.get(&camera).is_some_and(|&(cp, co)| cp == p && o <= co) {
            sh.tracker.done(p, o, 0);
            skipped.inc();
            continue;
        }
        let n = sh.seq.entry(camera.clone()).or_insert(0);
        let seq = *n;
        *n += 1;
        drop(sh);
        let (w, h) = (parsed.image.width, parsed.image.height);
        let frame = Frame {
            camera_id: camera.clone(),
            seq,
            pts_ns: None,
            captured_at: parsed.captured_at,
            time_source: "header",
            received: Instant::now(),
            image: Arc::new(parsed.image),
            ack: Some(Arc::new(FrameAck::new(p, o, durability.published.clone(), ack_tx.clone()))),
            telemetry: parsed.telemetry.map(Arc::new),
            position: Some(SourcePosition::Kafka(KafkaPosition { topic: cfg.topic.clone(), partition: p, offset: o, seq })),
        };
        drop(m);
        let lane = &lanes[&camera];
        metrics.frames_received.with_label_values(&[&camera]).inc();
        // Backpressure: a full lane blocks here, and with it consumption (librdkafka's
        // prefetch stays bounded by `queued.max.messages.kbytes`). Not pause/resume:
        // every resume drops the prefetched messages and fetches them again, which cost
        // 5x the throughput (1200 frames in 145 s instead of 30 s, same run).
        if !lane.has_room() {
            metrics.kafka_pauses.with_label_values(&[&cfg.topic]).inc();
        }
        let pushed = lane.push(frame);
        if pushed == Pushed::Closed {
            break;
        }
        let redated = parsed.redated_from.map(|from| {
            metrics.source_clock_jumps.with_label_values(&[&camera, "future"]).inc();
            let what = format!(
                "captured_at {} was in the future; re-dated with the message time {}",
                crate::model::format_time(from),
                crate::model::format_time(parsed.captured_at)
            );
            tracing::warn!(camera = %camera, partition = p, offset = o, "{what}");
            what
        });
        health.update_source(&camera, |s| {
            if let Some(what) = redated {
                s.clock_jumps += 1;
                s.last_clock_jump = Some(what);
            }
            s.state = SourceState::Streaming;
            s.detail = None;
            s.time_source = Some("header");
            s.rate_in.tick();
            s.frames_received = seq + 1;
            s.last_frame_at = Some(parsed.captured_at);
            s.width = Some(w);
            s.height = Some(h);
        });
    }
    // Stopping: hand every partition's cameras over as a revocation would (frames in
    // flight finish, last checkpoints, commit), then leave the group. A static member
    // does not leave: it comes back to the same partitions without a rebalance.
    let assigned = consumer.assignment().map(|a| partitions_in(&a, &cfg.topic)).unwrap_or_default();
    ctx.give_up(&consumer, &assigned, false);
    failures.next_try = None;
    failures.handle(ctx, &cfg, dlq.as_ref(), &metrics);
    ctx.commit(&consumer);
    if cfg.instance_id().is_none() {
        consumer.unsubscribe();
    }
    tracing::info!(uncommitted = ctx.shared.lock().tracker.in_flight(), "Kafka frame source stopped");
    Ok(())
}

/// The first frame of a camera not analysed here yet: the scene stage takes it over from
/// the checkpoint its partition's state records (or afresh), and the messages that
/// checkpoint covers are skipped.
fn take_over(sh: &mut Shared, h: &Handoff, camera: &Arc<str>, partition: i32, topic: &str) {
    if let Some(&owned) = sh.owned.get(camera) {
        if owned != partition && sh.split_warned.insert(camera.clone()) {
            tracing::warn!(%camera, partitions = ?[owned, partition], "a camera's frames arrive on two partitions: key its frames by camera id, or two members may analyse it at once");
        }
        return;
    }
    let loaded = sh.loaded.get_mut(&partition).and_then(|m| m.remove(&**camera));
    let at = loaded.as_ref().and_then(|l| l.position.as_ref()).filter(|p| p.topic == topic && p.partition == partition);
    match at {
        Some(pos) => {
            sh.covered.insert(camera.clone(), (partition, pos.offset));
            sh.seq.insert(camera.clone(), pos.seq + 1);
            h.state.set_confirmed(camera, Some((partition, pos.offset)));
        }
        None => {
            sh.covered.remove(camera);
            sh.seq.remove(camera);
            h.state.set_confirmed(camera, None);
        }
    }
    let from = match (&loaded, at) {
        (Some(l), Some(pos)) => format!("state topic {} [{partition}] @{}: frames up to offset {}", h.state.topic, l.state_offset, pos.offset),
        (Some(l), None) => format!("state topic {} [{partition}] @{}", h.state.topic, l.state_offset),
        (None, _) => format!("no checkpoint in state topic {} [{partition}]", h.state.topic),
    };
    let writer: Arc<dyn StateWriter> = h.state.clone();
    h.scenes.assign(Assignment { camera: camera.clone(), state: loaded.map(|l| l.bytes), from, writer });
    sh.owned.insert(camera.clone(), partition);
}

/// Waits until the frames topic exists (it may be created after Argus starts), then
/// makes sure the state topic does.
fn ensure_state_topic(consumer: &BaseConsumer<FrameContext>, cfg: &KafkaSourceConfig, state: &StateTopic, stop: &AtomicBool) -> Result<(), String> {
    let mut warned = false;
    loop {
        match super::state::partitions_of(consumer, &cfg.topic) {
            Ok(Some(n)) => return state.ensure(n),
            Ok(None) | Err(_) if stop.load(Ordering::Relaxed) => return Ok(()),
            other => {
                if !warned {
                    tracing::warn!(topic = %cfg.topic, result = ?other, "the frames topic is not there yet; waiting for it");
                    warned = true;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }
}

fn commit_offsets<C: rdkafka::consumer::ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, offsets: &[(i32, i64)], metrics: &Metrics) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
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
    fn future_frames_are_redated_with_the_message_time_or_rejected() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let soon = now + time::Duration::minutes(4);
        assert_eq!(check_future(soon, None, now), Ok((soon, None)));
        let far = now + time::Duration::days(365);
        assert_eq!(check_future(far, Some(now), now), Ok((now, Some(far))));
        assert_eq!(check_future(far, Some(far), now).unwrap_err().code(), "future_captured_at");
        assert_eq!(check_future(far, None, now).unwrap_err().code(), "future_captured_at");
        // The past is not this check's business (older frames replay after a restart).
        let old = now - time::Duration::days(365);
        assert_eq!(check_future(old, Some(now), now), Ok((old, None)));
    }

    #[test]
    fn commits_only_contiguous_durable_offsets() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.started(0, o, None);
        }
        t.started(1, 3, None);
        t.done(0, 10, 5);
        t.done(0, 11, 7);
        t.done(0, 13, 7); // 12 still in flight
        t.done(1, 3, 0);
        assert_eq!(t.committable(6, &|_, _, _| true), vec![(0, 11), (1, 4)], "11's events are not durable yet");
        assert_eq!(t.committable(7, &|_, _, _| true), vec![(0, 12)]);
        t.done(0, 12, 8);
        assert_eq!(t.committable(8, &|_, _, _| true), vec![(0, 14)]);
        assert_eq!(t.in_flight(), 1);
        assert!(t.committable(100, &|_, _, _| true).is_empty());
    }

    #[test]
    fn a_frame_is_committed_only_once_its_cameras_checkpoint_covers_it() {
        let mut t = OffsetTracker::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        t.started(0, 0, Some(a.clone()));
        t.started(0, 1, Some(b.clone()));
        t.started(0, 2, None); // a rejected message
        t.started(0, 3, Some(a.clone()));
        for o in 0..4 {
            t.done(0, o, 0);
        }
        // a's checkpoint reflects offset 0, b's none yet.
        let covered = |c: &str, p: i32, o: i64| p == 0 && ((c == "a" && o <= 0) || (c == "b" && o <= 1));
        let none_for_b = |c: &str, p: i32, o: i64| p == 0 && c == "a" && o <= 0;
        assert_eq!(t.committable(0, &none_for_b), vec![(0, 1)], "b's frame 1 waits for b's checkpoint");
        assert_eq!(t.committable(0, &covered), vec![(0, 3)], "the rejected message needs none; a's frame 3 waits for a's next");
        assert_eq!(t.processing(0), 0);
        t.forget(0);
        assert_eq!(t.in_flight(), 0);
    }

    /// A frame the detector failed on is neither committed nor counted as processing
    /// (a revocation does not wait for it) until it is dead-lettered.
    #[test]
    fn a_failed_frame_holds_its_partitions_commits_until_dead_lettered() {
        let mut t = OffsetTracker::default();
        let cam: Arc<str> = "a".into();
        for o in 0..3 {
            t.started(0, o, Some(cam.clone()));
        }
        t.done(0, 0, 0);
        t.failed(0, 1);
        t.done(0, 2, 0);
        let all = |_: &str, _: i32, _: i64| true;
        assert_eq!(t.committable(0, &all), vec![(0, 1)], "only the frame before the failed one");
        assert_eq!(t.processing(0), 0);
        assert_eq!(t.failures(), 1);
        t.done(0, 1, 0); // dead-lettered
        assert_eq!(t.committable(0, &all), vec![(0, 3)]);
        assert_eq!(t.failures(), 0);
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
