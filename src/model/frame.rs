//! The unit of work that flows from sources through stages.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

/// A packed 8-bit RGB image (stride = width × 3).
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("image buffer has {got} bytes, a {width}x{height} RGB image needs {want}")]
pub struct BadImageSize {
    pub width: u32,
    pub height: u32,
    pub got: usize,
    pub want: usize,
}

impl RgbImage {
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, BadImageSize> {
        let want = width as usize * height as usize * 3;
        if pixels.len() != want || width == 0 || height == 0 {
            return Err(BadImageSize { width, height, got: pixels.len(), want });
        }
        Ok(Self { width, height, pixels })
    }
}

/// One decoded frame of one camera.
#[derive(Debug, Clone)]
pub struct Frame {
    pub camera_id: Arc<str>,
    /// Per-camera sequence number, from 0, counting every frame the source produced
    /// (dropped ones included, so gaps show drops).
    pub seq: u64,
    /// Presentation timestamp from the container or stream, when known.
    pub pts_ns: Option<u64>,
    pub captured_at: OffsetDateTime,
    /// Where `captured_at` comes from: `ntp` (RTCP sender reports), `arrival` (wall clock
    /// on arrival), `stream` (a recording's `start_time` plus its own time stamps).
    pub time_source: &'static str,
    /// When the frame entered Argus: the start of its processing latency.
    pub received: Instant,
    pub image: Arc<RgbImage>,
    /// For sources that must confirm each frame (Kafka): dropped with the last copy of
    /// the frame, after its events were published.
    pub ack: Option<Arc<FrameAck>>,
    /// The drone's pose when the frame was taken (Kafka `telemetry` header), for the
    /// geo stage of cameras without a fixed calibration.
    pub telemetry: Option<Arc<Telemetry>>,
    /// Where the source stands after this frame, for sources that can continue from a
    /// scene state's checkpoint (files, Kafka).
    pub position: Option<SourcePosition>,
}

/// Where a source stands after one frame: what it needs to continue right after it.
/// Carried in the camera's scene state, so a checkpoint and the source position it
/// reflects are always saved together.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourcePosition {
    File(FilePosition),
    Kafka(KafkaPosition),
}

/// A frame from the frames topic: the message it came in. A member that takes the
/// camera over skips the camera's messages up to it and numbers the next `seq + 1`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KafkaPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The frame's sequence number (per camera, across members).
    pub seq: u64,
}

/// A frame of a recording: which file, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilePosition {
    pub file: FileIdentity,
    /// The frame's presentation time; a resumed source continues with the first frame
    /// after it.
    pub pts_ns: u64,
    /// The frame's sequence number; the next frame is `seq + 1`.
    pub seq: u64,
    /// Frames delivered up to and including this one (what `--max-frames` counts).
    pub delivered: u64,
    /// The fps gate's next due stream time after this frame (`fps_cap`), so a resumed
    /// source samples the same frames as an uninterrupted one.
    pub gate_next_ns: Option<u64>,
}

/// A file as it was read: path, size and modification time. Another size or time is
/// another recording, which starts from its beginning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    pub path: String,
    pub size: u64,
    pub modified_unix_ns: i128,
}

impl FileIdentity {
    pub fn of(path: &std::path::Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self { path: path.display().to_string(), size: meta.len(), modified_unix_ns: modified_unix_ns(&meta)? })
    }

    /// The modification time as a UTC time.
    pub fn modified(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.modified_unix_ns).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

fn modified_unix_ns(meta: &std::fs::Metadata) -> std::io::Result<i128> {
    let t = meta.modified()?;
    Ok(match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    })
}

/// Drone pose when a frame was taken: the camera's (gimbal's) pose, not the airframe's.
///
/// - `lat`, `lon`: WGS84 degrees of the camera.
/// - `alt_m`: camera height above the ground plane in metres (or above another datum,
///   with `[cameras.drone] ground_alt_m` giving the ground's height in it).
/// - `yaw`: direction of the optical axis, degrees clockwise from true north (90 = east).
/// - `pitch`: elevation of the optical axis above the horizon, degrees: 0 = level,
///   negative = looking down, -90 = straight down (then the top of the image faces `yaw`).
/// - `roll`: rotation about the optical axis, degrees, positive = the camera's right side
///   down (the image content turns counter-clockwise).
/// - `hfov`: horizontal field of view across the full image width, degrees (square
///   pixels, principal point at the centre, no distortion).
///
/// Angles apply in the order yaw, pitch, roll (intrinsic Z-X-Y Tait–Bryan angles of the
/// camera whose axes are right, forward, up).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    pub lat: f64,
    pub lon: f64,
    pub alt_m: f64,
    pub yaw: f64,
    pub pitch: f64,
    pub roll: f64,
    pub hfov: f64,
}

/// Reports, when dropped, that a frame is fully processed: its events (if any) have been
/// handed to the sinks, so once the sinks have written `published` events, the frame's
/// source position can be committed. Dropping covers every path: analysed or
/// discarded. A frame whose analysis failed is marked with [`FrameAck::fail`] first, so
/// the source dead-letters it (or keeps it uncommitted) instead of committing it as if
/// it had been analysed.
pub struct FrameAck {
    pub partition: i32,
    pub offset: i64,
    /// Events published so far (the bus's counter).
    pub published: Arc<std::sync::atomic::AtomicU64>,
    pub done: crossbeam_channel::Sender<AckReport>,
    /// Why the frame's analysis failed, once it did.
    pub failure: parking_lot::Mutex<Option<String>>,
}

/// What a dropped [`FrameAck`] tells its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckReport {
    pub partition: i32,
    pub offset: i64,
    pub published: u64,
    /// `Some(why)` when the frame could not be analysed.
    pub failure: Option<String>,
}

impl FrameAck {
    pub fn new(partition: i32, offset: i64, published: Arc<std::sync::atomic::AtomicU64>, done: crossbeam_channel::Sender<AckReport>) -> Self {
        Self { partition, offset, published, done, failure: parking_lot::Mutex::new(None) }
    }

    /// The frame could not be analysed (the first reason is kept).
    pub fn fail(&self, why: impl Into<String>) {
        self.failure.lock().get_or_insert_with(|| why.into());
    }
}

impl std::fmt::Debug for FrameAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrameAck({}@{})", self.partition, self.offset)
    }
}

impl Drop for FrameAck {
    fn drop(&mut self) {
        let published = self.published.load(std::sync::atomic::Ordering::SeqCst);
        let failure = self.failure.lock().take();
        let _ = self.done.send(AckReport { partition: self.partition, offset: self.offset, published, failure });
    }
}
