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
    /// Files only: when the recording's first frame was captured, so that a frame's
    /// `captured_at` is this plus its stream time: `"file"` (default: the file's
    /// modification time), an RFC 3339 time, or `"now"` (the wall clock at start:
    /// re-processing the file then yields other event ids).
    #[serde(default, skip_serializing_if = "StartTime::is_default")]
    pub start_time: StartTime,
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

/// When a recording starts (`start_time`): deterministic by default, so that
/// re-processing the same file yields the same capture times and event ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum StartTime {
    /// The file's modification time.
    #[default]
    FileModified,
    /// The wall clock when the source starts.
    Now,
    At(time::OffsetDateTime),
}

impl StartTime {
    pub fn is_default(&self) -> bool {
        *self == Self::FileModified
    }
}

impl TryFrom<String> for StartTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "file" => Ok(Self::FileModified),
            "now" => Ok(Self::Now),
            t => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map(Self::At)
                .map_err(|e| format!("start_time {t:?} is not \"file\", \"now\" or an RFC 3339 time such as 2026-11-23T08:00:00Z ({e})")),
        }
    }
}

impl From<StartTime> for String {
    fn from(s: StartTime) -> String {
        match s {
            StartTime::FileModified => "file".into(),
            StartTime::Now => "now".into(),
            StartTime::At(t) => t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        }
    }
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
        let is_recording = self.kind() == super::SourceKind::File && self.live != Some(true);
        if !self.start_time.is_default() && !is_recording {
            iss.add(
                format!("{key}.start_time"),
                "start_time applies to recordings (file cameras that are not live); this camera's frames carry their own capture times",
                "remove start_time from this camera",
            );
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
