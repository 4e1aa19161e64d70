//! A pipeline file's `[[cameras]]`: where frames come from and how they are read.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::geo::config::{CalibrationConfig, DroneConfig, OriginConfig};
use crate::model::Issues;

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

impl CameraConfig {
    /// Where its frames come from.
    pub fn kind(&self) -> super::SourceKind {
        super::SourceKind::of(&self.source)
    }

    /// The source's keys (`key` = `cameras[i]`), without the cross-checks of its pipeline.
    pub fn validate_source_keys(&self, key: &str, iss: &mut Issues) {
        if self.kind() != super::SourceKind::Kafka {
            validate_source(&self.source, &format!("{key}.source"), iss);
        }
        if !(self.fps_cap >= 0.0 && self.fps_cap.is_finite()) {
            iss.add(format!("{key}.fps_cap"), format!("{} is not ≥ 0", self.fps_cap), "use 0 for every frame, or e.g. 5");
        }
        if !(self.stall_timeout_s >= 0.5 && self.stall_timeout_s <= 600.0) {
            iss.add(format!("{key}.stall_timeout_s"), format!("{} is outside 0.5..=600 s", self.stall_timeout_s), "use a few seconds, e.g. 5");
        }
        if self.rtsp_latency_ms > 10_000 {
            iss.add(format!("{key}.rtsp_latency_ms"), format!("{} ms delays every frame", self.rtsp_latency_ms), "use 0..=10000, e.g. 200");
        }
    }
}

/// A camera's `source` (file path or URL; `kafka` is checked with its pipeline).
pub fn validate_source(source: &str, key: &str, iss: &mut Issues) {
    let (scheme, rest) = source.split_once("://").unwrap_or(("file", source));
    match scheme {
        "file" => {
            let path = Path::new(rest);
            if rest.is_empty() {
                iss.add(key, "empty source", "write file:///path/to/video.mp4 or rtsp://host/stream");
            } else if !path.is_file() {
                iss.add(key, format!("file {rest} does not exist"), "check the path (absolute, or relative to the working directory)");
            }
        }
        "rtsp" | "rtsps" | "http" | "https" => {
            if rest.is_empty() || rest.starts_with('/') {
                iss.add(key, format!("`{}` has no host", crate::telemetry::redact::redact_url(source)), "write rtsp://host[:port]/path");
            }
        }
        other => iss.add(key, format!("unsupported scheme `{other}`"), "use file://, rtsp://, rtsps://, http:// or https://"),
    }
}
