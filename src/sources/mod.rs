//! Frame sources: each is a [`Source`] run on its own thread with a [`SourceContext`],
//! pushing into its cameras' lanes of the `FrameHub`. GStreamer (`gst`, `gstreamer`
//! feature) reads files and RTSP cameras, one source per camera; Kafka (`kafka`, `kafka`
//! feature) reads encoded frames for every `source = "kafka"` camera of a pipeline.
//!
//! Adding a source: a folder here with its `config.rs` (the table users write, parsed in
//! every build) and a type implementing [`Source`]; a [`SourceKind`] when cameras name it
//! in `source`; the app starts it.

pub mod clock;
pub mod config;
#[cfg(feature = "gstreamer")]
pub mod gst;
pub mod kafka;
pub mod probe;
pub mod reconnect;
pub mod shard;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use crate::pipeline::bus::Durability;
use crate::pipeline::hub::LaneSender;
use crate::sources::config::CameraConfig;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

/// Everything a running source shares with the rest of Argus. Adding a handle here never
/// changes a source's signature.
#[derive(Clone)]
pub struct SourceContext {
    /// Set when the source must stop (Argus stopping, the camera removed or changed).
    pub stop: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// How far the sinks got: sources that commit their input (Kafka) commit only what
    /// is durable.
    pub durability: Durability,
}

/// A producer of frames. `run` owns the thread until the source ends or `cx.stop` is set.
pub trait Source: Send + 'static {
    /// The source's thread name.
    fn name(&self) -> String;
    fn run(self: Box<Self>, cx: SourceContext);
}

/// Starts a source on its own thread (supervised: a panic is reported and stops Argus).
pub fn spawn(source: Box<dyn Source>, cx: SourceContext) -> std::io::Result<JoinHandle<()>> {
    let sup = crate::telemetry::supervise::Supervisor { health: cx.health.clone(), metrics: cx.metrics.clone() };
    sup.spawn(source.name(), move || source.run(cx))
}

/// The `source` of a camera whose frames come from its pipeline's `[kafka]` topic.
pub const KAFKA_SOURCE: &str = "kafka";

/// Where a camera's frames come from, as its `source` key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A video file (`file://…` or a plain path), read through GStreamer.
    File,
    /// A stream URL (`rtsp://`, `rtsps://`, `http(s)://`), read through GStreamer.
    Stream,
    /// `source = "kafka"`: frames from the pipeline's `[kafka]` topic.
    Kafka,
}

impl SourceKind {
    pub fn of(source: &str) -> Self {
        match source.split_once("://") {
            _ if source == KAFKA_SOURCE => Self::Kafka,
            None | Some(("file", _)) => Self::File,
            Some(_) => Self::Stream,
        }
    }
}

/// A camera source turned into what GStreamer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub camera_id: Arc<str>,
    pub pipeline: String,
    pub kind: SourceKind,
    /// A GStreamer URI (`file:///abs/path`, `rtsp://…`); `kafka` for Kafka cameras.
    pub uri: String,
    pub live: bool,
    pub realtime: bool,
    pub fps_cap: f64,
    /// Stop after this many frames (tests, benchmarks); `None` = until the end.
    pub max_frames: Option<u64>,
    pub rtsp_transport: crate::sources::config::RtspTransport,
    pub rtsp_latency_ms: u32,
    /// No frame for this long → rebuild (live) or fail (files get at least 60 s).
    pub stall_timeout: std::time::Duration,
    /// Recordings: when their first frame was captured.
    pub start_time: crate::sources::config::StartTime,
    /// Recordings: continue after this frame when the file is still the same one (from
    /// the camera's scene state checkpoint).
    pub resume: Option<crate::model::FilePosition>,
    /// `limits.max_frame_pixels`: a camera whose frames are larger fails with a clear
    /// reason instead of feeding them on.
    pub max_pixels: u64,
}

impl SourceSpec {
    pub fn from_camera(cam: &CameraConfig, pipeline: &str, max_frames: Option<u64>) -> Self {
        let (scheme, rest) = cam.source.split_once("://").unwrap_or(("file", cam.source.as_str()));
        let kind = SourceKind::of(&cam.source);
        let uri = if kind == SourceKind::Kafka {
            "kafka".to_string()
        } else if scheme == "file" {
            let p = std::path::Path::new(rest);
            let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()) };
            format!("file://{}", abs.display())
        } else {
            cam.source.clone()
        };
        let is_file = kind == SourceKind::File;
        // Kafka frames are never dropped: backpressure pauses the consumer instead.
        let is_kafka = kind == SourceKind::Kafka;
        Self {
            camera_id: Arc::from(cam.id.as_str()),
            pipeline: pipeline.to_string(),
            kind,
            uri,
            live: !is_kafka && cam.live.unwrap_or(!is_file),
            realtime: cam.realtime,
            fps_cap: cam.fps_cap,
            max_frames,
            rtsp_transport: cam.rtsp_transport,
            rtsp_latency_ms: cam.rtsp_latency_ms,
            stall_timeout: std::time::Duration::from_secs_f64(if is_file { cam.stall_timeout_s.max(60.0) } else { cam.stall_timeout_s }),
            start_time: cam.start_time,
            resume: None,
            max_pixels: crate::model::ImageLimits::DEFAULT_MAX_PIXELS,
        }
    }

    /// The file of a recording (a file camera that is not live): its frames have
    /// deterministic capture times and it can resume from a checkpoint.
    pub fn recording_path(&self) -> Option<std::path::PathBuf> {
        (self.kind == SourceKind::File && !self.live).then(|| self.uri.strip_prefix("file://").map(std::path::PathBuf::from)).flatten()
    }

    pub fn redacted(&self) -> String {
        crate::telemetry::redact::redact_url(&self.uri)
    }
}

/// Passes frames at most `fps_cap` per second of stream time.
#[derive(Debug, Clone)]
pub struct FpsGate {
    min_gap_ns: u64,
    next_ns: Option<u64>,
}

impl FpsGate {
    pub fn new(fps_cap: f64) -> Self {
        let min_gap_ns = if fps_cap > 0.0 { (1e9 / fps_cap) as u64 } else { 0 };
        Self { min_gap_ns, next_ns: None }
    }

    /// A gate that continues where another stood (`next_due` after its last frame).
    pub fn resumed(fps_cap: f64, next_ns: Option<u64>) -> Self {
        Self { next_ns, ..Self::new(fps_cap) }
    }

    /// The stream time from which the next frame is admitted (`None`: the next one).
    pub fn next_due(&self) -> Option<u64> {
        self.next_ns
    }

    /// True when the frame at `t_ns` should be processed.
    pub fn admit(&mut self, t_ns: u64) -> bool {
        if self.min_gap_ns == 0 {
            return true;
        }
        match self.next_ns {
            Some(next) if t_ns < next => false,
            _ => {
                // Schedule from the ideal grid, not from t, so the rate does not drift low.
                let base = self.next_ns.filter(|n| t_ns - n < self.min_gap_ns).unwrap_or(t_ns);
                self.next_ns = Some(base + self.min_gap_ns);
                true
            }
        }
    }
}

/// A camera whose frames come from a video file or stream through GStreamer. Without
/// the `gstreamer` feature it fails at once, visibly (`argus check` refuses it first).
pub struct CameraSource {
    pub spec: SourceSpec,
    pub lane: LaneSender,
}

impl Source for CameraSource {
    fn name(&self) -> String {
        format!("src-{}", self.spec.camera_id)
    }

    fn run(self: Box<Self>, cx: SourceContext) {
        #[cfg(feature = "gstreamer")]
        gst::run(self.spec, self.lane, cx);
        #[cfg(not(feature = "gstreamer"))]
        {
            tracing::error!(camera = %self.spec.camera_id, "video sources need the `gstreamer` feature; this build has none");
            cx.health.update_source(&self.spec.camera_id, |s| {
                s.state = crate::telemetry::health::SourceState::Failed;
                s.detail = Some("built without the gstreamer feature".into());
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_gate_caps_rate_without_drifting() {
        let mut g = FpsGate::new(5.0);
        // 30 fps for 2 s → 10 frames admitted.
        let n = (0..60).filter(|i| g.admit(i * 33_333_333)).count();
        assert_eq!(n, 10);
        let mut all = FpsGate::new(0.0);
        assert!((0..10).all(|i| all.admit(i)));
    }

    #[test]
    fn a_gate_resumed_after_any_frame_admits_what_the_uninterrupted_gate_admits() {
        // 30 fps sampled at 7 fps: an uneven pattern, so a fresh gate would differ.
        let times: Vec<u64> = (0..90).map(|i| i * 33_333_333).collect();
        let mut g = FpsGate::new(7.0);
        let uninterrupted: Vec<bool> = times.iter().map(|&t| g.admit(t)).collect();
        for k in 0..times.len() {
            let mut g = FpsGate::new(7.0);
            let mut got: Vec<bool> = times[..=k].iter().map(|&t| g.admit(t)).collect();
            let mut resumed = FpsGate::resumed(7.0, g.next_due());
            got.extend(times[k + 1..].iter().map(|&t| resumed.admit(t)));
            assert_eq!(got, uninterrupted, "resumed after frame {k}");
        }
        // The negative control: a fresh gate after frame 3 admits frame 4, which the
        // uninterrupted gate drops.
        let mut fresh = FpsGate::new(7.0);
        assert!(fresh.admit(times[4]) && !uninterrupted[4]);
    }

    #[test]
    fn start_time_is_the_files_own_by_default_an_rfc3339_time_or_now() {
        use config::StartTime;
        let cam: CameraConfig = toml::from_str("id = \"a\"\nsource = \"/tmp/x.avi\"").unwrap();
        assert_eq!(cam.start_time, StartTime::FileModified);
        let cam: CameraConfig = toml::from_str("id = \"a\"\nsource = \"/tmp/x.avi\"\nstart_time = \"2026-11-23T08:00:00Z\"").unwrap();
        assert_eq!(cam.start_time, StartTime::At(time::macros::datetime!(2026-11-23 08:00:00 UTC)));
        let cam: CameraConfig = toml::from_str("id = \"a\"\nsource = \"/tmp/x.avi\"\nstart_time = \"now\"").unwrap();
        assert_eq!(cam.start_time, StartTime::Now);
        let e = toml::from_str::<CameraConfig>("id = \"a\"\nsource = \"/tmp/x.avi\"\nstart_time = \"yesterday\"").unwrap_err().to_string();
        assert!(e.contains("start_time \"yesterday\" is not") && e.contains("RFC 3339"), "{e}");
        let file = std::path::Path::new("p.toml");
        let mut iss = crate::model::Issues::new(file);
        let cam: CameraConfig = toml::from_str("id = \"a\"\nsource = \"rtsp://h/x\"\nstart_time = \"now\"").unwrap();
        cam.validate_source_keys("cameras[0]", &mut iss);
        let keys: Vec<String> = iss.into_vec().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["cameras[0].start_time"]);
    }

    #[test]
    fn file_paths_become_absolute_uris_and_files_are_not_live() {
        let cam: CameraConfig = toml::from_str("id = \"a\"\nsource = \"/tmp/x.avi\"").unwrap();
        let s = SourceSpec::from_camera(&cam, "p", None);
        assert_eq!(s.uri, "file:///tmp/x.avi");
        assert!(!s.live);
        let cam: CameraConfig = toml::from_str("id = \"a\"\nsource = \"rtsp://h/x\"").unwrap();
        assert!(SourceSpec::from_camera(&cam, "p", None).live);
    }
}
