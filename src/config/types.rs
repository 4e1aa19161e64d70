//! The configuration as typed data. Every key is documented in config/README.md;
//! unknown keys are rejected (`deny_unknown_fields`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::detect::yolo::YoloLayout;

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
    pub limits: LimitsConfig,
    pub log: LogConfig,
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
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub enabled: bool,
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Bearer API keys accepted on every route except /healthz, /readyz, /metrics and
    /// the static pages; `ARGUS_API_KEYS` (comma-separated) adds more. Empty: no auth.
    pub api_keys: Vec<String>,
    /// Also require a key for /metrics.
    pub protect_metrics: bool,
    /// Origins allowed by CORS (`["*"]`: any). Empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Largest request body (bytes), uploads included: beyond it 413.
    pub max_body_bytes: usize,
    /// Largest image side (pixels) `POST /v1/analyze` accepts: beyond it 422.
    pub max_image_side: u32,
    /// Analysis workers (each with its own detector): requests analysed at once.
    pub analyze_workers: usize,
    /// Analysis requests waiting for a worker: beyond it 429 with Retry-After.
    pub analyze_queue: usize,
    /// A synchronous analysis waiting longer than this answers 503 (seconds).
    pub analyze_timeout_s: f64,
    /// Images per `POST /v1/analyze/batch`.
    pub batch_max_items: usize,
    /// Finished asynchronous tasks kept for `GET /v1/tasks/{id}` (most recent).
    pub tasks_kept: usize,
    /// Secret for webhook signatures (HMAC-SHA256); `ARGUS_WEBHOOK_SECRET` overrides.
    /// Without one, webhooks are refused (422).
    pub webhook_secret: Option<String>,
    /// Delivery attempts per webhook (backoff 1 s, 2 s, 4 s, …).
    pub webhook_attempts: u32,
    /// Per-attempt timeout (seconds).
    pub webhook_timeout_s: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            protect_metrics: false,
            cors_origins: Vec::new(),
            max_body_bytes: 10 << 20,
            max_image_side: 4096,
            analyze_workers: 1,
            analyze_queue: 8,
            analyze_timeout_s: 30.0,
            batch_max_items: 16,
            tasks_kept: 1000,
            webhook_secret: None,
            webhook_attempts: 5,
            webhook_timeout_s: 10.0,
        }
    }
}


#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// ONNX Runtime (`onnx` feature): fast on CPU.
    Ort,
    /// libtorch via tch (`torch` feature): TorchScript, CUDA when present.
    Tch,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ort" => Ok(Self::Ort),
            "tch" => Ok(Self::Tch),
            other => Err(format!("unknown backend `{other}`; expected \"ort\" or \"tch\"")),
        }
    }
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ort => "ort",
            Self::Tch => "tch",
        }
    }
}

/// Which part of the frame the captioning model sees.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CaptionRegion {
    /// The whole frame.
    Frame,
    /// The event's objects (an incident's member tracks), with a margin.
    Objects,
}

/// `[captioner]`: the optional captioning model (docs/captioner.md). Every event keeps
/// its deterministic `caption`; events at or above `min_level` also get `model_caption`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptionerConfig {
    pub enabled: bool,
    /// ONNX model (image + tokens → next-token logits).
    pub model: Option<PathBuf>,
    /// Vocabulary file (`argus.tokenizer.v1` JSON).
    pub tokenizer: Option<PathBuf>,
    pub prompt: String,
    /// Events at or above this risk level get a model caption.
    pub min_level: crate::model::Level,
    /// Most tokens generated per caption.
    pub max_tokens: usize,
    /// Side of the square image the model takes.
    pub input_size: u32,
    pub region: CaptionRegion,
    /// Intra-op CPU threads for the model.
    pub threads: usize,
}

impl Default for CaptionerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            model: None,
            tokenizer: None,
            prompt: "describe the scene.".into(),
            min_level: crate::model::Level::High,
            max_tokens: 24,
            input_size: 64,
            region: CaptionRegion::Frame,
            threads: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DevicePreference {
    /// CUDA when the backend sees a GPU, else CPU.
    Auto,
    Cpu,
    /// CUDA or refuse to start.
    Cuda,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Built-in model name (`nanodet`) or `yolo` for your own export (needs `path`).
    pub model: String,
    pub backend: BackendKind,
    pub device: DevicePreference,
    /// Weights file; default: the built-in model's file under `models/`.
    pub path: Option<PathBuf>,
    /// ONNX Runtime shared library; default: ORT_DYLIB_PATH, then `.deps/onnxruntime`.
    pub ort_library: Option<PathBuf>,
    /// Minimum score for a detection.
    pub score_threshold: f32,
    /// Class-aware NMS IoU threshold; default: the model's own.
    pub nms_iou: Option<f32>,
    pub max_detections: usize,
    /// Intra-op CPU threads for the engine.
    pub threads: usize,
    /// Frames from all cameras batched into one detector call, at most.
    pub max_batch: usize,
    /// How long the batcher waits to fill a batch once it has one frame.
    pub max_wait_ms: u64,
    /// `yolo` only: square input size (default 640).
    pub input_size: Option<u32>,
    /// `yolo` only: class names in output order (default COCO-80).
    pub class_names: Option<Vec<String>>,
    /// `yolo` only: `v5` or `v8` output layout (default: inferred from the output shape).
    pub yolo_layout: Option<YoloLayout>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            model: "nanodet".into(),
            backend: BackendKind::Ort,
            device: DevicePreference::Auto,
            path: None,
            ort_library: None,
            score_threshold: 0.35,
            nms_iou: None,
            max_detections: 100,
            threads: 2,
            max_batch: 4,
            max_wait_ms: 5,
            input_size: None,
            class_names: None,
            yolo_layout: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    pub stdout: StdoutSinkConfig,
    pub jsonl: JsonlSinkConfig,
    pub clickhouse: ClickHouseSinkConfig,
    pub kafka: KafkaSinkConfig,
}

/// `argus.event.v1` events to a Kafka topic for control rooms (`kafka` feature).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSinkConfig {
    pub enabled: bool,
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Must exist: partitions and retention are the operator's choice.
    pub topic: String,
    pub client_id: String,
    /// librdkafka's delivery timeout; a batch not confirmed by then goes to the spool.
    pub message_timeout_ms: u64,
    /// Events per produce batch, and how long the first waits for company.
    pub max_events: usize,
    pub max_wait_ms: u64,
    /// Events wait here (fsync'd) while the broker is down, replayed in order.
    pub spool_dir: PathBuf,
    /// A full spool makes the pipeline wait (and raises an alarm); nothing is dropped.
    pub spool_max_mb: u64,
    /// Extra librdkafka settings, e.g. `"security.protocol" = "SASL_SSL"`.
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaSinkConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: "127.0.0.1:9092".into(),
            topic: "argus.events".into(),
            client_id: "argus".into(),
            message_timeout_ms: 10_000,
            max_events: 1000,
            max_wait_ms: 50,
            spool_dir: PathBuf::from("var/spool/kafka"),
            spool_max_mb: 1024,
            options: Default::default(),
        }
    }
}

/// Events (and one row per object) into ClickHouse for analysts (`clickhouse` feature).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseSinkConfig {
    pub enabled: bool,
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub user: String,
    /// Prefer `ARGUS_SINKS__CLICKHOUSE__PASSWORD` to writing it here.
    pub password: String,
    /// An insert is sent when this many rows are waiting…
    pub max_rows: usize,
    /// …or the oldest has waited this long.
    pub max_wait_ms: u64,
    /// Events wait here (fsync'd) while ClickHouse is down, replayed in order on return.
    pub spool_dir: PathBuf,
    /// A full spool makes the pipeline wait (and raises an alarm); nothing is dropped.
    pub spool_max_mb: u64,
    /// The HTTP API answers event queries from ClickHouse instead of the embedded store.
    pub serve_api: bool,
    /// Drop partitions older than this many days (TTL; only on servers that support
    /// it, ClickHouse ≥ 20; 0 = keep forever).
    pub retention_days: u32,
}

impl Default for ClickHouseSinkConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "http://127.0.0.1:8123".into(),
            database: "argus".into(),
            user: "default".into(),
            password: String::new(),
            max_rows: 10_000,
            max_wait_ms: 1000,
            spool_dir: PathBuf::from("var/spool/clickhouse"),
            spool_max_mb: 1024,
            serve_api: true,
            retention_days: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutSinkConfig {
    pub enabled: bool,
}

impl Default for StdoutSinkConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlSinkConfig {
    pub enabled: bool,
    /// Appended to, one event per line; fsync'd per batch.
    pub path: PathBuf,
}

impl Default for JsonlSinkConfig {
    fn default() -> Self {
        Self { enabled: true, path: PathBuf::from("var/events.jsonl") }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Embedded SQLite event store (survives restarts); serves /v1/events.
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { path: PathBuf::from("var/argus.db") }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Frames queued per camera between its source and the detector.
    pub frame_queue: usize,
    /// Events queued per sink before the pipeline waits for it.
    pub sink_queue: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { frame_queue: 4, sink_queue: 1024 }
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
    pub tracker: TrackerSettings,
    /// Risk levels and incident update pacing.
    #[serde(default)]
    pub risk: RiskSettings,
    /// Frames from a Kafka topic, for the cameras whose `source = "kafka"`.
    pub kafka: Option<KafkaSourceConfig>,
}

/// A consumer-group source of encoded frames (`kafka` feature). Each message: value =
/// JPEG or PNG bytes; headers `camera_id` (one of this pipeline's `source = "kafka"`
/// cameras), `captured_at` (RFC 3339 or Unix ms), optional `telemetry` (drone pose JSON).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    /// Bad messages go here with a `reason` header (none: counted and logged only).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Larger messages are rejected (dead-lettered) without decoding.
    #[serde(default = "default_max_frame_bytes")]
    pub max_message_bytes: usize,
    /// Extra librdkafka consumer settings (security, tuning).
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

fn default_max_frame_bytes() -> usize {
    8 << 20
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub id: String,
    /// `file:///path`, a plain path, or `rtsp://host/stream`.
    pub source: String,
    /// Keep only the newest frames when the detector falls behind. Default: true for
    /// rtsp://, false for files.
    pub live: Option<bool>,
    /// Files only: decode at the file's own frame rate instead of as fast as possible.
    #[serde(default)]
    pub realtime: bool,
    /// Process at most this many frames per second (0 = every frame), sampled evenly.
    #[serde(default)]
    pub fps_cap: f64,
    /// RTSP transport: `tcp` (default: works through NAT and firewalls), `udp`, or
    /// `auto` (UDP, falling back to TCP).
    #[serde(default)]
    pub rtsp_transport: RtspTransport,
    /// RTSP jitter-buffer latency in milliseconds.
    #[serde(default = "default_rtsp_latency")]
    pub rtsp_latency_ms: u32,
    /// Live sources: no frame for this long → tear down and reconnect (seconds).
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout_s: f64,
    /// Classes this camera reports (default: all the model knows).
    #[serde(default)]
    pub classes: Vec<String>,
    pub calibration: Option<CalibrationConfig>,
    /// Geodetic position of the world origin (0, 0): enables lat/lon in events. For a
    /// drone camera, default: the first telemetry position seen.
    pub origin: Option<OriginConfig>,
    /// A moving camera placed by each frame's telemetry (instead of `calibration`).
    pub drone: Option<DroneConfig>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
    Auto,
}

fn default_rtsp_latency() -> u32 {
    200
}

fn default_stall_timeout() -> f64 {
    5.0
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationConfig {
    /// Pixel coordinates `[x, y]` of reference points in the image.
    pub image_points: Vec<[f64; 2]>,
    /// The same points on the ground, `[x_east_m, y_north_m]` in world metres.
    pub world_points: Vec<[f64; 2]>,
    /// Refuse the calibration when the mean reprojection error exceeds this (metres).
    #[serde(default = "default_max_error_m")]
    pub max_error_m: f64,
    /// Pairs RANSAC may leave out (further than 2 × max_error_m from the fit of the
    /// others) before the calibration is refused: 0 makes every mistyped pair an error
    /// that names it. Never more than half the pairs.
    #[serde(default)]
    pub max_outliers: usize,
    /// Intrinsics in pixels, `[fx, fy, cx, cy]` or the 3×3 matrix as 9 values row by row:
    /// with `distortion`, image points are undistorted before the homography.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_matrix: Option<Vec<f64>>,
    /// OpenCV distortion coefficients `[k1, k2, p1, p2]`, `[k1, k2, p1, p2, k3]` or
    /// `[k1, k2, p1, p2, k3, k4, k5, k6]` (needs `camera_matrix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distortion: Option<Vec<f64>>,
}

/// `[cameras.drone]`: the camera flies; each frame's `telemetry` (Kafka header) gives
/// its pose, and the ground is taken as flat. See `crate::model::Telemetry` for the
/// angle conventions.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DroneConfig {
    /// Altitude of the ground in the telemetry's `alt_m` reference: 0 when `alt_m` is
    /// height above ground; the site's elevation when it is above sea level.
    pub ground_alt_m: f64,
    /// Points further than this from the point below the drone are placed nowhere
    /// (near the horizon a pixel spans hundreds of metres).
    pub max_range_m: f64,
    /// Lens distortion, OpenCV coefficients as in `[cameras.calibration]`, with the
    /// intrinsics of each frame taken from `hfov` and the image size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distortion: Option<Vec<f64>>,
}

impl Default for DroneConfig {
    fn default() -> Self {
        Self { ground_alt_m: 0.0, max_range_m: 1000.0, distortion: None }
    }
}

fn default_max_error_m() -> f64 {
    0.5
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub id: String,
    /// World-space polygon `[[x, y], ...]` in metres (at least 3 corners).
    pub polygon: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum RuleConfig {
    /// Objects of `classes` inside `zone`.
    Intrusion(IntrusionRule),
    /// Objects of `classes` within `distance_m` of objects of `near_classes`.
    Proximity(ProximityRule),
    /// At least `min_count` objects within `radius_m` of one of them, or inside `zone`.
    Crowding(CrowdingRule),
    /// Objects of `classes` staying in `zone` longer than `min_dwell_s`.
    Loitering(LoiteringRule),
    /// Objects of `classes` faster than `max_speed_mps` (optionally only in `zone`).
    Speed(SpeedRule),
}

impl RuleConfig {
    pub fn id(&self) -> &str {
        self.common().id
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Intrusion(_) => "intrusion",
            Self::Proximity(_) => "proximity",
            Self::Crowding(_) => "crowding",
            Self::Loitering(_) => "loitering",
            Self::Speed(_) => "speed",
        }
    }
    /// The keys every rule kind has.
    pub fn common(&self) -> RuleCommon<'_> {
        let (id, classes, severity, clear_after_s, update_every_s) = match self {
            Self::Intrusion(r) => (&r.id, &r.classes, r.severity, r.clear_after_s, r.update_every_s),
            Self::Proximity(r) => (&r.id, &r.classes, r.severity, r.clear_after_s, r.update_every_s),
            Self::Crowding(r) => (&r.id, &r.classes, r.severity, r.clear_after_s, r.update_every_s),
            Self::Loitering(r) => (&r.id, &r.classes, r.severity, r.clear_after_s, r.update_every_s),
            Self::Speed(r) => (&r.id, &r.classes, r.severity, r.clear_after_s, r.update_every_s),
        };
        RuleCommon { id, classes, severity, clear_after_s, update_every_s }
    }
    /// The zone the rule watches, if it has one.
    pub fn zone(&self) -> Option<&str> {
        match self {
            Self::Intrusion(r) => Some(&r.zone),
            Self::Loitering(r) => Some(&r.zone),
            Self::Proximity(r) => r.zone.as_deref(),
            Self::Crowding(r) => r.zone.as_deref(),
            Self::Speed(r) => r.zone.as_deref(),
        }
    }
}

/// Borrowed view of the keys shared by all rule kinds.
#[derive(Debug, Clone, Copy)]
pub struct RuleCommon<'a> {
    pub id: &'a String,
    pub classes: &'a Vec<String>,
    pub severity: f64,
    pub clear_after_s: f64,
    pub update_every_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntrusionRule {
    pub id: String,
    pub zone: String,
    #[serde(default = "default_person")]
    pub classes: Vec<String>,
    /// Score of one object inside the zone, 0..1; more objects raise it towards 1.
    #[serde(default = "default_severity")]
    pub severity: f64,
    /// An object must be inside this long before it counts (seconds).
    #[serde(default)]
    pub min_dwell_s: f64,
    /// The incident closes after the zone has been clear this long (seconds).
    #[serde(default = "default_clear_after")]
    pub clear_after_s: f64,
    /// An open incident reports `incident.updated` at least this often (seconds, 0 =
    /// only on material changes), and when its level or object set changes.
    #[serde(default = "default_update_every")]
    pub update_every_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProximityRule {
    pub id: String,
    /// The objects at risk (A), e.g. `["person"]`.
    #[serde(default = "default_person")]
    pub classes: Vec<String>,
    /// The objects they must keep away from (B), e.g. `["truck", "car"]`. Same as
    /// `classes` for "people too close to each other".
    pub near_classes: Vec<String>,
    /// A and B closer than this (metres, ground distance) is the situation.
    pub distance_m: f64,
    /// Only A objects inside this zone count (default: everywhere).
    #[serde(default)]
    pub zone: Option<String>,
    /// Score of one A object too close; more objects raise it towards 1, closer ones too.
    #[serde(default = "default_severity")]
    pub severity: f64,
    /// A must stay that close this long before it counts (seconds).
    #[serde(default)]
    pub min_duration_s: f64,
    #[serde(default = "default_clear_after")]
    pub clear_after_s: f64,
    #[serde(default = "default_update_every")]
    pub update_every_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CrowdingRule {
    pub id: String,
    #[serde(default = "default_person")]
    pub classes: Vec<String>,
    /// At least this many objects make a crowd (≥ 2).
    pub min_count: usize,
    /// Objects within this many metres of one member count together. Without it, every
    /// object inside `zone` counts.
    #[serde(default)]
    pub radius_m: Option<f64>,
    /// Only objects inside this zone count.
    #[serde(default)]
    pub zone: Option<String>,
    /// Score of a crowd of exactly `min_count`; larger crowds score higher.
    #[serde(default = "default_severity")]
    pub severity: f64,
    /// The crowd must persist this long before it counts (seconds).
    #[serde(default)]
    pub min_duration_s: f64,
    #[serde(default = "default_clear_after")]
    pub clear_after_s: f64,
    #[serde(default = "default_update_every")]
    pub update_every_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoiteringRule {
    pub id: String,
    pub zone: String,
    #[serde(default = "default_person")]
    pub classes: Vec<String>,
    /// An object inside longer than this is loitering (seconds).
    #[serde(default = "default_loiter_dwell")]
    pub min_dwell_s: f64,
    /// Absences (occlusion, leaving the zone briefly, a tracker id switch) shorter than
    /// this keep the object's dwell running (seconds).
    #[serde(default = "default_max_gap")]
    pub max_gap_s: f64,
    #[serde(default = "default_severity")]
    pub severity: f64,
    #[serde(default = "default_clear_after")]
    pub clear_after_s: f64,
    #[serde(default = "default_update_every")]
    pub update_every_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpeedRule {
    pub id: String,
    #[serde(default = "default_person")]
    pub classes: Vec<String>,
    /// Faster than this (metres per second, smoothed ground speed) is the situation.
    pub max_speed_mps: f64,
    /// Only objects inside this zone count (default: everywhere).
    #[serde(default)]
    pub zone: Option<String>,
    /// Score of one object at exactly the limit; faster and more objects score higher.
    #[serde(default = "default_severity")]
    pub severity: f64,
    /// The object must stay above the limit this long before it counts (seconds).
    #[serde(default = "default_speed_duration")]
    pub min_duration_s: f64,
    #[serde(default = "default_clear_after")]
    pub clear_after_s: f64,
    #[serde(default = "default_update_every")]
    pub update_every_s: f64,
}

fn default_person() -> Vec<String> {
    vec!["person".into()]
}
fn default_severity() -> f64 {
    0.6
}
fn default_clear_after() -> f64 {
    2.0
}
fn default_update_every() -> f64 {
    5.0
}
fn default_loiter_dwell() -> f64 {
    30.0
}
fn default_max_gap() -> f64 {
    2.0
}
fn default_speed_duration() -> f64 {
    0.5
}

/// `[tracker]` in a pipeline file: the per-camera multi-object tracker.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSettings {
    /// Detections at or above this score start tracks and match first; weaker ones only
    /// keep existing tracks alive.
    pub high_score: f32,
    /// Minimum IoU for a match of a confident detection.
    pub match_iou: f32,
    /// Minimum IoU for a match of a weak detection (second pass).
    pub low_match_iou: f32,
    /// Consecutive frames with a match before a track gets an id (birth).
    pub min_hits: u32,
    /// Frames a track survives without a match before it ends (death).
    pub max_lost: u32,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        Self { high_score: 0.4, match_iou: 0.2, low_match_iou: 0.4, min_hits: 2, max_lost: 30 }
    }
}

/// `[risk]` in a pipeline file: score → level thresholds and incident update pacing.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RiskSettings {
    /// Lowest score of each level; below `medium` is `low`.
    pub medium: f64,
    pub high: f64,
    pub critical: f64,
    /// A material change (level, score by ≥ `score_step`, number of objects) must hold
    /// this long before it is reported, so a flicker or a tracker id switch is silent.
    pub settle_s: f64,
    /// Two `incident.updated` of one incident are at least this far apart (seconds).
    pub min_update_gap_s: f64,
    /// Score change that counts as material.
    pub score_step: f64,
}

impl RiskSettings {
    /// The level thresholds of this table.
    pub fn thresholds(&self) -> crate::model::LevelThresholds {
        crate::model::LevelThresholds { medium: self.medium, high: self.high, critical: self.critical }
    }
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self { medium: 0.3, high: 0.6, critical: 0.85, settle_s: 1.0, min_update_gap_s: 2.0, score_step: 0.1 }
    }
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
