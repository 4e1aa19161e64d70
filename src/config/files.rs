//! The shapes of the two kinds of file: `argus.toml` (process-wide settings) and a
//! pipeline file (one site's cameras, zones and rules). Each component's own table is
//! defined beside the component; every key is documented in config/README.md and
//! unknown keys are rejected (`deny_unknown_fields`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::api::config::ServerConfig;
use crate::caption::model::config::CaptionerConfig;
use crate::detect::config::DetectorConfig;
use crate::fleet::config::FleetConfig;
use crate::pipeline::scene_state::SceneStateConfig;
use crate::risk::config::{RiskConfig, RuleConfig, ZoneConfig};
use crate::sinks::config::SinksConfig;
use crate::sinks::frames::config::IngestConfig;
use crate::sources::config::CameraConfig;
use crate::sources::kafka::config::KafkaSourceConfig;
use crate::store::StoreConfig;
use crate::track::config::TrackerConfig;

/// `config/argus.toml`: process-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ArgusConfig {
    /// Pipeline files to run, relative to the working directory.
    pub pipelines: Vec<PathBuf>,
    pub server: ServerConfig,
    pub detector: DetectorConfig,
    pub captioner: CaptionerConfig,
    pub sinks: SinksConfig,
    pub store: StoreConfig,
    /// The annotated frame of every incident event, as a JPEG under the data directory.
    pub evidence: crate::evidence::EvidenceConfig,
    /// Checkpoints of every camera's scene in the embedded store.
    pub scene_state: SceneStateConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    /// `argus ingest`: how frames are published to the pipelines' `[kafka]` topics.
    pub ingest: IngestConfig,
    /// Every member's status record on a compacted topic, for `GET /v1/fleet`.
    pub fleet: FleetConfig,
}

impl Default for ArgusConfig {
    fn default() -> Self {
        Self {
            pipelines: vec![PathBuf::from("pipelines/demo.toml")],
            server: ServerConfig::default(),
            detector: DetectorConfig::default(),
            captioner: CaptionerConfig::default(),
            sinks: SinksConfig::default(),
            store: StoreConfig::default(),
            evidence: Default::default(),
            scene_state: SceneStateConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            ingest: IngestConfig::default(),
            fleet: FleetConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Frames queued per camera between its source and the detector.
    pub frame_queue: usize,
    /// And at most this many MiB of their pixels per camera (one larger frame still
    /// goes through, alone): a count alone lets 4K cameras hold gigabytes.
    pub frame_queue_mb: f64,
    /// Events queued per sink before the pipeline waits for it.
    pub sink_queue: usize,
    /// At shutdown, how long the sinks may take to write (or spool) what they hold;
    /// past it they stop retrying, report what they could not write, and Argus exits.
    pub drain_timeout_s: f64,
    /// Largest frame, in pixels, accepted from any input (Kafka frames, cameras,
    /// uploads); checked on the image header before decoding.
    pub max_frame_pixels: u64,
    /// Free space (MiB) below which a directory Argus writes (store, events file,
    /// spools) raises an alarm: a readiness reason, a warning and
    /// `argus_disk_low_total`, before the spool itself fails; 0: no check.
    pub min_free_disk_mb: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            frame_queue: 4,
            frame_queue_mb: 32.0,
            sink_queue: 1024,
            drain_timeout_s: 30.0,
            max_frame_pixels: crate::model::ImageLimits::DEFAULT_MAX_PIXELS,
            min_free_disk_mb: 512,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info` or `argus=debug`; RUST_LOG wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// `pipelines/*.toml`: cameras, zones and rules of one site.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub name: String,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub events: EventsConfig,
    /// Tracker settings for every camera of this pipeline.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// Risk levels and incident update pacing.
    #[serde(default)]
    pub risk: RiskConfig,
    /// Frames from a Kafka topic, for the cameras whose `source = "kafka"`.
    pub kafka: Option<KafkaSourceConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Emit a `frame.analyzed` summary per camera at most this often (seconds; 0 = never).
    pub frame_summary_every_s: f64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { frame_summary_every_s: 0.0 }
    }
}
