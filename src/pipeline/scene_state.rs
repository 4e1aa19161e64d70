//! A camera scene's state as one versioned value: everything [`CameraScene`] carries from
//! frame to frame (tracks with their Kalman state, presence and dwell, each rule's own
//! state, motion history, open incidents, the summary timer, the last frame, a drone's
//! origin), without its configuration, which comes from the config at restore.
//!
//! **Bytes.** postcard (varints, no field names) followed by 8 bytes of SHA-256 over the
//! body: compact, and exact (an `f64` is its 8 bytes, infinities included), which the
//! restore-equals-uninterrupted property needs. The version is the first field, read on
//! its own before the rest, so a state of another layout is refused as such.
//!
//! **Never restored blindly.** A state carries its camera id and a fingerprint of the
//! configuration that shaped it (calibration, zones, rules, tracker, risk settings,
//! classes, drone settings); [`CameraScene::restore`] refuses any other, with the reason.
//!
//! [`CameraScene`]: super::scene::CameraScene
//! [`CameraScene::restore`]: super::scene::CameraScene::restore

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::geo::drone::DroneState;
use crate::geo::motion::MotionState;
use crate::model::{FileIdentity, FrameInfo, SceneObject, SourcePosition};
use crate::risk::RiskState;
use crate::track::TrackerState;

/// The layout of [`SceneState`]; a state of another version is refused, never guessed at.
pub const STATE_VERSION: u32 = 2;

/// Length of the checksum after the body.
const CHECKSUM_LEN: usize = 8;

/// One camera's scene state. Made by [`CameraScene::checkpoint`], continued from by
/// [`CameraScene::restore`].
///
/// [`CameraScene::checkpoint`]: super::scene::CameraScene::checkpoint
/// [`CameraScene::restore`]: super::scene::CameraScene::restore
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneState {
    /// Always first: read alone to refuse other layouts.
    pub state_version: u32,
    pub camera_id: String,
    /// SHA-256 (hex) of the configuration the state belongs to.
    pub fingerprint: String,
    pub(crate) tracker: TrackerState,
    pub(crate) motion: MotionState,
    pub(crate) risk: RiskState,
    pub(crate) last_summary_t: Option<f64>,
    pub(crate) last: Option<LastFrame>,
    pub(crate) drone: Option<DroneState>,
    /// Where the camera's source stood after the last frame (files resume from it).
    pub(crate) position: Option<SourcePosition>,
}

/// The last processed frame: closing events (source ended, …) are stamped with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastFrame {
    /// `captured_at` as Unix nanoseconds and UTC offset (seconds): exact.
    pub(crate) at_unix_ns: i128,
    pub(crate) at_offset_s: i32,
    #[serde(with = "crate::model::exact::frame_info")]
    pub(crate) info: FrameInfo,
    #[serde(with = "crate::model::exact::objects")]
    pub(crate) objects: Vec<SceneObject>,
}

impl LastFrame {
    pub(crate) fn new(at: OffsetDateTime, info: &FrameInfo, objects: &[SceneObject]) -> Self {
        Self { at_unix_ns: at.unix_timestamp_nanos(), at_offset_s: at.offset().whole_seconds(), info: info.clone(), objects: objects.to_vec() }
    }

    pub(crate) fn at(&self) -> Result<OffsetDateTime, RestoreError> {
        let at = OffsetDateTime::from_unix_timestamp_nanos(self.at_unix_ns).map_err(|e| RestoreError::Corrupt(format!("last frame time: {e}")))?;
        let offset = time::UtcOffset::from_whole_seconds(self.at_offset_s).map_err(|e| RestoreError::Corrupt(format!("last frame offset: {e}")))?;
        Ok(at.to_offset(offset))
    }
}

/// Why a state was not restored. Nothing of the scene changes when restore fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestoreError {
    #[error("scene state version {found}; this build reads version {expected}")]
    Version { found: u32, expected: u32 },
    #[error("scene state does not fit this camera: {why}")]
    Incompatible { why: String },
    #[error("scene state is corrupt: {0}")]
    Corrupt(String),
    #[error("scene state reflects another recording: {} ({} bytes, modified {}), the camera now reads {} ({} bytes, modified {})", was.path, was.size, was.modified(), now.path, now.size, now.modified())]
    SourceChanged { was: FileIdentity, now: FileIdentity },
}

impl RestoreError {
    /// `version`, `incompatible` or `corrupt` (metric labels, logs).
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Version { .. } => "version",
            Self::Incompatible { .. } | Self::SourceChanged { .. } => "incompatible",
            Self::Corrupt(_) => "corrupt",
        }
    }

    /// Why the state's open incidents close (`incident.closed`'s reason).
    pub fn close_reason(&self) -> &'static str {
        match self {
            Self::SourceChanged { .. } => "the recording changed",
            _ => "configuration changed",
        }
    }
}

impl SceneState {
    /// Open incidents in this state.
    pub fn open_incidents(&self) -> usize {
        self.risk.open_incidents()
    }

    /// When the last frame the state reflects was captured (`None` before any frame).
    pub fn last_captured_at(&self) -> Option<OffsetDateTime> {
        self.last.as_ref().and_then(|l| l.at().ok())
    }

    /// Where the camera's source stood after the last frame the state reflects.
    pub fn position(&self) -> Option<&SourcePosition> {
        self.position.as_ref()
    }

    /// Live tracks in this state.
    pub fn tracks(&self) -> usize {
        self.tracker.len()
    }

    /// The bytes to store: postcard body, then its checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = postcard::to_allocvec(self).expect("scene state serialises");
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum[..CHECKSUM_LEN]);
        out
    }

    /// Reads [`SceneState::to_bytes`]' output: refused when the checksum does not match
    /// (`Corrupt`), when the version is another (`Version`), or when the body does not
    /// decode exactly (`Corrupt`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RestoreError> {
        if bytes.len() < CHECKSUM_LEN + 1 {
            return Err(RestoreError::Corrupt(format!("{} bytes is too short for a scene state", bytes.len())));
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if Sha256::digest(body)[..CHECKSUM_LEN] != *sum {
            return Err(RestoreError::Corrupt("checksum mismatch".into()));
        }
        let (version, _) = postcard::take_from_bytes::<u32>(body).map_err(|e| RestoreError::Corrupt(format!("version: {e}")))?;
        if version != STATE_VERSION {
            return Err(RestoreError::Version { found: version, expected: STATE_VERSION });
        }
        let (state, rest) = postcard::take_from_bytes::<Self>(body).map_err(|e| RestoreError::Corrupt(e.to_string()))?;
        if !rest.is_empty() {
            return Err(RestoreError::Corrupt(format!("{} bytes after the state", rest.len())));
        }
        Ok(state)
    }
}

/// Where a camera's checkpoints go: the embedded store for file and RTSP cameras, the
/// state topic for Kafka cameras (`crate::sources::kafka`).
pub trait StateWriter: Send + Sync {
    /// Replaces the camera's state; `saved_at_ms`: wall clock, Unix milliseconds;
    /// `position`: where the camera's source stood after the last frame it reflects.
    fn save_state(&self, camera_id: &str, saved_at_ms: i64, bytes: &[u8], position: Option<&SourcePosition>) -> Result<(), String>;
    /// Forgets the camera's state (its source ended: nothing to continue).
    fn delete_state(&self, camera_id: &str) -> Result<(), String>;
}

/// Where scene states are kept between runs: one per camera, the newest wins.
pub trait StateStore: StateWriter {
    /// The camera's state and when it was saved.
    fn load_state(&self, camera_id: &str) -> Result<Option<(i64, Vec<u8>)>, String>;
    /// The camera's incidents that the stored events leave open (opened, never closed):
    /// a start closes those its scene does not continue, so that none stays open
    /// forever, whatever happened to the checkpoint. Stores without events have none.
    fn open_incidents(&self, _camera_id: &str) -> Result<Vec<StoredIncident>, String> {
        Ok(Vec::new())
    }
}

/// An incident the event store holds open: when it opened and its latest event.
#[derive(Debug, Clone)]
pub struct StoredIncident {
    pub opened_at: OffsetDateTime,
    pub last: crate::model::Event,
}

/// `[scene_state]` in argus.toml: checkpoints of every camera's scene in the embedded
/// store, and what a start does with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SceneStateConfig {
    /// Checkpoint and restore at all (file and RTSP cameras in the embedded store, Kafka
    /// cameras in their source's state topic).
    pub enabled: bool,
    /// Seconds between two checkpoints of one camera (and one more at shutdown).
    pub checkpoint_every_s: f64,
    /// A checkpoint at most this old (seconds, wall clock) at start is continued from;
    /// an older one's open incidents are closed ("not observed from … to …").
    pub max_gap_s: f64,
}

impl Default for SceneStateConfig {
    fn default() -> Self {
        Self { enabled: true, checkpoint_every_s: 1.0, max_gap_s: 10.0 }
    }
}

/// `scene_state.*` keys.
pub fn validate(c: &SceneStateConfig, iss: &mut crate::model::Issues) {
    if !(c.checkpoint_every_s > 0.0 && c.checkpoint_every_s <= 3600.0) {
        iss.add(
            "scene_state.checkpoint_every_s",
            format!("{} is outside (0, 3600]", c.checkpoint_every_s),
            "use e.g. 1.0 (seconds between two checkpoints of a camera)",
        );
    }
    if !(c.max_gap_s >= 0.0 && c.max_gap_s.is_finite()) {
        iss.add("scene_state.max_gap_s", format!("{} is not a finite number >= 0", c.max_gap_s), "use e.g. 10 (seconds a camera may be down and continue)");
    } else if c.max_gap_s < c.checkpoint_every_s {
        iss.add(
            "scene_state.max_gap_s",
            format!(
                "{} s is shorter than checkpoint_every_s = {} s: even a quick restart would find its checkpoint too old",
                c.max_gap_s, c.checkpoint_every_s
            ),
            "make max_gap_s a few checkpoint intervals, e.g. 10 with checkpoint_every_s = 1",
        );
    }
}

/// What a camera's start found in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// Continued from the checkpoint: same tracks, same incidents.
    Restored,
    /// Older than `max_gap_s`: its open incidents closed, started fresh.
    TooOld,
    /// Another version or another configuration: its open incidents closed (when it
    /// could be read), started fresh.
    Incompatible,
    /// Unreadable: started fresh.
    Corrupt,
    /// No checkpoint.
    None,
}

impl ResumeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restored => "restored",
            Self::TooOld => "too_old",
            Self::Incompatible => "incompatible",
            Self::Corrupt => "corrupt",
            Self::None => "none",
        }
    }
}

/// RFC 3339 to the second, for "not observed from … to …".
pub fn wall_time(unix_ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| unix_ms.to_string())
}

/// Marks closing events as not observed from `from_ms` to `to_ms` (wall clock, Unix ms):
/// `reasons[].not_observed` in the event.
pub fn mark_unobserved(events: &mut [crate::model::Event], from_ms: i64, to_ms: i64) {
    let gap = crate::model::Unobserved { from: wall_time(from_ms), to: wall_time(to_ms) };
    for r in events.iter_mut().flat_map(|e| e.risk.reasons.iter_mut()) {
        r.not_observed = Some(gap.clone());
    }
}

/// Why a too-old checkpoint's incidents close.
pub fn not_observed(from_ms: i64, to_ms: i64) -> String {
    format!("not observed from {} to {}", wall_time(from_ms), wall_time(to_ms))
}

/// SHA-256 (hex) of the parts of a configuration a state depends on.
pub(crate) fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_bit_or_a_cut_is_corrupt_and_another_version_is_refused() {
        let state = SceneState {
            state_version: STATE_VERSION,
            camera_id: "cam".into(),
            fingerprint: "f".into(),
            tracker: crate::track::Tracker::new(Default::default()).state(),
            motion: crate::geo::MotionEstimator::default().state(),
            risk: crate::risk::RiskEngine::new("cam".into(), &[]).state(),
            last_summary_t: Some(f64::NEG_INFINITY),
            last: None,
            drone: None,
            position: None,
        };
        let bytes = state.to_bytes();
        assert_eq!(SceneState::from_bytes(&bytes).unwrap(), state);
        let mut flipped = bytes.clone();
        flipped[3] ^= 0x10;
        assert!(matches!(SceneState::from_bytes(&flipped), Err(RestoreError::Corrupt(_))));
        assert!(matches!(SceneState::from_bytes(&bytes[..bytes.len() - 1]), Err(RestoreError::Corrupt(_))));
        assert!(matches!(SceneState::from_bytes(&[]), Err(RestoreError::Corrupt(_))));
        let old = SceneState { state_version: 0, ..state }.to_bytes();
        assert_eq!(SceneState::from_bytes(&old), Err(RestoreError::Version { found: 0, expected: STATE_VERSION }));
    }
}
