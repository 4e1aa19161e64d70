//! Kafka cameras' scene states in a state topic, the way Kafka Streams backs a state
//! store with a compacted changelog topic.
//!
//! - **Layout.** One record per checkpoint: key = camera id, value = the scene state's
//!   bytes (`crate::pipeline::scene_state`), which record the frames-topic position they
//!   reflect (`SourcePosition::Kafka`: partition, offset, seq); headers repeat it for
//!   people (`frames_topic`, `frames_partition`, `frames_offset`, `saved_at_ms`) and name
//!   the consumer group (`group_id`): a reader skips records of another group, so two
//!   groups given one state topic by mistake do not continue each other's scenes. A camera's
//!   state goes to the state topic's partition of the same number as the frames partition
//!   its frames come from, so a member assigned frames partition P reads state partition
//!   P, and nothing else, to take over every camera of P. The newest record per key wins,
//!   which is what compaction keeps (`cleanup.policy=compact`).
//! - **Confirmed.** A checkpoint counts once the broker confirmed it: the consumer then
//!   may commit the frames it covers (`StateTopic::covers`).
//! - **Read.** From the partition's beginning to its end (`enable.partition.eof`), last
//!   value per key. Every state record is a batch of its own (`linger.ms=0`,
//!   `batch.num.messages=1`), so the end is found even on brokers whose high watermark
//!   points at the start of the last batch (tansu's memory storage).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::model::{KafkaPosition, SourcePosition};
use crate::pipeline::scene_state::{SceneState, StateWriter};
use crate::sources::kafka::config::KafkaSourceConfig;

/// How long one state record may take to be confirmed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long reading one state partition may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A camera's latest checkpoint in the state topic.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub bytes: Vec<u8>,
    /// Where in the state topic it is (for logs and `/v1/cameras`).
    pub state_offset: i64,
    /// The frames-topic message it reflects (`None`: its bytes do not decode; the scene
    /// stage says why and starts the camera fresh).
    pub position: Option<KafkaPosition>,
}

/// The last delivery report of the state producer (one record at a time).
#[derive(Default)]
struct Report(Mutex<Option<Result<(), String>>>);

struct Context(Arc<Report>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        *self.0.0.lock() = Some(result.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string()));
    }
}

/// A reader's context: the end of a partition is what it waits for, not an error to log.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::warn!(%error, reason, "state topic reader");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// The state topic of one Kafka source: writes checkpoints, knows which are confirmed.
pub struct StateTopic {
    pub topic: String,
    frames_topic: String,
    group_id: String,
    brokers: String,
    options: std::collections::BTreeMap<String, String>,
    producer: BaseProducer<Context>,
    report: Arc<Report>,
    /// camera → the frames message its newest confirmed checkpoint reflects.
    confirmed: Mutex<HashMap<String, (i32, i64)>>,
}

impl StateTopic {
    pub fn new(cfg: &KafkaSourceConfig) -> Result<Self, String> {
        let report = Arc::new(Report::default());
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &cfg.brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .set("message.timeout.ms", (DELIVERY_TIMEOUT.as_millis() as u64 - 1000).to_string())
            .set("message.max.bytes", "16777216");
        for (k, v) in security_options(&cfg.options) {
            c.set(k, v);
        }
        let producer = c.create_with_context(Context(report.clone())).map_err(|e| format!("state topic producer: {e}"))?;
        Ok(Self {
            topic: cfg.state_topic(),
            frames_topic: cfg.topic.clone(),
            group_id: cfg.group_id.clone(),
            brokers: cfg.brokers.clone(),
            options: cfg.options.clone(),
            producer,
            report,
            confirmed: Mutex::default(),
        })
    }

    /// Marks `camera`'s checkpoint at frames `partition`/`offset` as in the topic (a
    /// loaded one); `None`: the camera has none.
    pub fn set_confirmed(&self, camera: &str, at: Option<(i32, i64)>) {
        let mut c = self.confirmed.lock();
        match at {
            Some(x) => c.insert(camera.to_string(), x),
            None => c.remove(camera),
        };
    }

    /// True when a confirmed checkpoint of `camera` reflects frames message
    /// `partition`/`offset` (or a later one of that partition).
    pub fn covers(&self, camera: &str, partition: i32, offset: i64) -> bool {
        self.confirmed.lock().get(camera).is_some_and(|&(p, o)| p == partition && o >= offset)
    }

    /// Creates the state topic when it is missing (compacted, as many partitions as the
    /// frames topic); refuses one with fewer partitions than the frames topic.
    pub fn ensure(&self, frames_partitions: usize) -> Result<(), String> {
        let probe: BaseConsumer = self.client_config().create().map_err(|e| format!("metadata client: {e}"))?;
        let have = partitions_of(&probe, &self.topic)?;
        match have {
            Some(n) if n >= frames_partitions => return Ok(()),
            Some(n) => {
                return Err(format!(
                    "state topic {} has {n} partitions, the frames topic {} has {frames_partitions}: a camera's state lives in the partition of its frames, \
                     so the state topic needs at least as many (add partitions to it, or name a new one in kafka.state_topic)",
                    self.topic, self.frames_topic
                ));
            }
            None => {}
        }
        if crate::clients::kafka::create_compacted_topic(&self.client_config(), &self.topic, frames_partitions as i32)
            .map_err(|e| format!("state topic: {e}"))?
        {
            tracing::info!(topic = %self.topic, partitions = frames_partitions, "state topic created (cleanup.policy=compact)");
        }
        Ok(())
    }

    /// Every camera's newest checkpoint in each of the state partitions `partitions`
    /// (all read at once, each to its end).
    pub fn read_partitions(&self, partitions: &[i32]) -> Result<HashMap<i32, HashMap<String, Loaded>>, String> {
        let mut out: HashMap<i32, HashMap<String, Loaded>> = partitions.iter().map(|p| (*p, HashMap::new())).collect();
        if partitions.is_empty() {
            return Ok(out);
        }
        let mut c = self.client_config();
        c.set("group.id", format!("argus-state-reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "100")
            .set("fetch.message.max.bytes", "16777216");
        let consumer: BaseConsumer<QuietEof> = c.create_with_context(QuietEof).map_err(|e| format!("state reader: {e}"))?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(&self.topic, *p, Offset::Beginning).map_err(|e| e.to_string())?;
        }
        consumer.assign(&tpl).map_err(|e| format!("assign {} {partitions:?}: {e}", self.topic))?;
        let mut open: std::collections::HashSet<i32> = partitions.iter().copied().collect();
        let (started, mut foreign) = (Instant::now(), 0usize);
        while !open.is_empty() {
            if started.elapsed() > READ_TIMEOUT {
                return Err(format!("reading {} {open:?} took more than {} s", self.topic, READ_TIMEOUT.as_secs()));
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(Err(e)) => return Err(format!("reading {}: {e}", self.topic)),
                Some(Ok(m)) => {
                    let Some(key) = m.key().map(|k| String::from_utf8_lossy(k).into_owned()) else { continue };
                    let group = m.headers().and_then(|h| h.iter().find(|x| x.key == "group_id").and_then(|x| x.value)).map(String::from_utf8_lossy);
                    if group.as_deref().is_some_and(|g| g != self.group_id) {
                        foreign += 1;
                        continue;
                    }
                    let states = out.entry(m.partition()).or_default();
                    match m.payload() {
                        // A tombstone: the camera's state was deleted.
                        None => {
                            states.remove(&key);
                        }
                        // Decoded below, once per camera: a topic not compacted yet holds
                        // many older checkpoints of each.
                        Some(bytes) => {
                            states.insert(key, Loaded { bytes: bytes.to_vec(), state_offset: m.offset(), position: None });
                        }
                    }
                }
            }
        }
        for l in out.values_mut().flat_map(HashMap::values_mut) {
            l.position = match SceneState::from_bytes(&l.bytes).map(|s| s.position().cloned()) {
                Ok(Some(SourcePosition::Kafka(p))) => Some(p),
                _ => None,
            };
        }
        if foreign > 0 {
            tracing::warn!(topic = %self.topic, records = foreign, group = %self.group_id, "the state topic holds other consumer groups' checkpoints (skipped): give each group its own kafka.state_topic");
        }
        Ok(out)
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in security_options(&self.options) {
            c.set(k, v);
        }
        c
    }
}

/// The source's extra options that any client of the same cluster needs (security),
/// not the consumer's tuning.
fn security_options(options: &std::collections::BTreeMap<String, String>) -> impl Iterator<Item = (&String, &String)> {
    options.iter().filter(|(k, _)| k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") || k.starts_with("client."))
}

/// How many partitions `topic` has (`None`: no such topic).
pub fn partitions_of<C: rdkafka::consumer::ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str) -> Result<Option<usize>, String> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| format!("metadata of {topic}: {e}"))?;
    Ok(md.topics().iter().find(|t| t.name() == topic).filter(|t| t.error().is_none() && !t.partitions().is_empty()).map(|t| t.partitions().len()))
}

impl StateWriter for StateTopic {
    fn save_state(&self, camera_id: &str, saved_at_ms: i64, bytes: &[u8], position: Option<&SourcePosition>) -> Result<(), String> {
        // Nothing processed since the camera was assigned: what the topic has stands.
        let Some(SourcePosition::Kafka(at)) = position else { return Ok(()) };
        let (partition, offset, saved) = (at.partition.to_string(), at.offset.to_string(), saved_at_ms.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header { key: "frames_topic", value: Some(at.topic.as_str()) })
            .insert(Header { key: "frames_partition", value: Some(partition.as_str()) })
            .insert(Header { key: "frames_offset", value: Some(offset.as_str()) })
            .insert(Header { key: "saved_at_ms", value: Some(saved.as_str()) })
            .insert(Header { key: "group_id", value: Some(self.group_id.as_str()) });
        *self.report.0.lock() = None;
        let rec = BaseRecord::<str, [u8]>::to(&self.topic).partition(at.partition).key(camera_id).payload(bytes).headers(headers);
        self.producer.send(rec).map_err(|(e, _)| format!("state topic {}: {e}", self.topic))?;
        let until = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            self.producer.poll(Duration::from_millis(20));
            if let Some(r) = self.report.0.lock().take() {
                r.map_err(|e| format!("state topic {} did not take the checkpoint: {e}", self.topic))?;
                break;
            }
            if Instant::now() > until {
                return Err(format!("state topic {}: no delivery report in {} s", self.topic, DELIVERY_TIMEOUT.as_secs()));
            }
        }
        self.set_confirmed(camera_id, Some((at.partition, at.offset)));
        Ok(())
    }

    /// Kafka cameras' states are never forgotten: their source does not end (the topic
    /// keeps its frames), and a compacted topic keeps one record per camera anyway.
    fn delete_state(&self, _camera_id: &str) -> Result<(), String> {
        Ok(())
    }
}

impl Drop for StateTopic {
    fn drop(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}
