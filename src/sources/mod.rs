//! Frame sources. GStreamer (`gstreamer` feature) reads files and RTSP cameras; every
//! source pushes into its camera's lane of the `FrameHub`.

#[cfg(feature = "gstreamer")]
pub mod gst;
#[cfg(feature = "kafka")]
pub mod kafka;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use crate::config::CameraConfig;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

/// A camera source turned into what GStreamer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub camera_id: Arc<str>,
    pub pipeline: String,
    /// A GStreamer URI (`file:///abs/path`, `rtsp://…`).
    pub uri: String,
    pub live: bool,
    pub realtime: bool,
    pub fps_cap: f64,
    /// Stop after this many frames (tests, benchmarks); `None` = until the end.
    pub max_frames: Option<u64>,
    pub rtsp_transport: crate::config::RtspTransport,
    pub rtsp_latency_ms: u32,
    /// No frame for this long → rebuild (live) or fail (files get at least 60 s).
    pub stall_timeout: std::time::Duration,
}

impl SourceSpec {
    pub fn from_camera(cam: &CameraConfig, pipeline: &str, max_frames: Option<u64>) -> Self {
        let (scheme, rest) = cam.source.split_once("://").unwrap_or(("file", cam.source.as_str()));
        let uri = if cam.source == "kafka" {
            "kafka".to_string()
        } else if scheme == "file" {
            let p = std::path::Path::new(rest);
            let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()) };
            format!("file://{}", abs.display())
        } else {
            cam.source.clone()
        };
        let is_file = scheme == "file" && cam.source != "kafka";
        // Kafka frames are never dropped: backpressure pauses the consumer instead.
        let is_kafka = cam.source == "kafka";
        Self {
            camera_id: Arc::from(cam.id.as_str()),
            pipeline: pipeline.to_string(),
            uri,
            live: !is_kafka && cam.live.unwrap_or(!is_file),
            realtime: cam.realtime,
            fps_cap: cam.fps_cap,
            max_frames,
            rtsp_transport: cam.rtsp_transport,
            rtsp_latency_ms: cam.rtsp_latency_ms,
            stall_timeout: std::time::Duration::from_secs_f64(if is_file { cam.stall_timeout_s.max(60.0) } else { cam.stall_timeout_s }),
        }
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

/// Starts the source thread for one camera.
pub fn spawn(
    spec: SourceSpec,
    lane: crate::pipeline::hub::LaneSender,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<JoinHandle<()>> {
    let name = format!("src-{}", spec.camera_id);
    std::thread::Builder::new().name(name).spawn(move || {
        #[cfg(feature = "gstreamer")]
        gst::run(spec, lane, stop, metrics, health);
        #[cfg(not(feature = "gstreamer"))]
        {
            let _ = (lane, stop, metrics);
            tracing::error!(camera = %spec.camera_id, "video sources need the `gstreamer` feature; this build has none");
            health.update_source(&spec.camera_id, |s| {
                s.state = crate::telemetry::health::SourceState::Failed;
                s.detail = Some("built without the gstreamer feature".into());
            });
        }
    })
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
    fn file_paths_become_absolute_uris_and_files_are_not_live() {
        let cam: CameraConfig = toml::from_str("id = \"a\"\nsource = \"/tmp/x.avi\"").unwrap();
        let s = SourceSpec::from_camera(&cam, "p", None);
        assert_eq!(s.uri, "file:///tmp/x.avi");
        assert!(!s.live);
        let cam: CameraConfig = toml::from_str("id = \"a\"\nsource = \"rtsp://h/x\"").unwrap();
        assert!(SourceSpec::from_camera(&cam, "p", None).live);
    }
}
