//! Incident clips (`[evidence.clip]`, off by default): a few seconds before an incident
//! opened and after, from a bounded per-camera ring of recent frames, encoded to MP4
//! (H.264) by a [`ClipEncoder`] (GStreamer's, in `crate::sources::gst::clip`) and kept
//! under `evidence.dir/clips/<incident_id>.mp4`, served with range requests at
//! `GET /v1/incidents/{id}/clip.mp4`.
//!
//! A clip is named by its incident, not by its content: the `incident.opened` event
//! carries its URL before the post-roll has happened. Each clip is written under a
//! temporary name, synced and renamed, then its facts (`<id>.json`: digest, size, frames,
//! span, encode time) the same way, so a crash leaves a clip whole or absent. Retention:
//! `max_mb` in all (oldest first) and `evidence.max_age_days`, never the clip of an
//! incident that is still open.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{Issues, RgbImage};

/// `[evidence.clip]` in argus.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClipConfig {
    /// Record a clip around every incident's opening (needs the `gstreamer` feature).
    pub enabled: bool,
    /// Seconds before the opening.
    pub pre_s: f64,
    /// Seconds after the opening.
    pub post_s: f64,
    /// Frames per second kept in the ring and encoded (at most the camera's).
    pub fps: f64,
    /// Longest side of the encoded video in pixels (scaled down, never up).
    pub max_side: u32,
    /// Per camera, the most the ring of recent frames may hold (MiB); beyond, the
    /// pre-roll is shorter.
    pub ring_mb: u64,
    /// Clips waiting to be encoded, in all; beyond, a clip is dropped and counted.
    pub queue: usize,
    /// Total size of the clips kept (MiB); beyond, the oldest go first. 0: no limit.
    pub max_mb: u64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self { enabled: false, pre_s: 5.0, post_s: 10.0, fps: 5.0, max_side: 640, ring_mb: 64, queue: 4, max_mb: 1024 }
    }
}

/// `evidence.clip.*` keys.
pub fn validate(c: &ClipConfig, iss: &mut Issues) {
    if !(0.0..=60.0).contains(&c.pre_s) {
        iss.add("evidence.clip.pre_s", format!("{} s", c.pre_s), "use 0 to 60 seconds, e.g. 5");
    }
    if !(0.0..=120.0).contains(&c.post_s) {
        iss.add("evidence.clip.post_s", format!("{} s", c.post_s), "use 0 to 120 seconds, e.g. 10");
    }
    if c.pre_s + c.post_s <= 0.0 {
        iss.add("evidence.clip", "a clip of no length", "give pre_s or post_s some seconds, or enabled = false");
    }
    if !(0.5..=30.0).contains(&c.fps) {
        iss.add("evidence.clip.fps", format!("{}", c.fps), "use 0.5 to 30 frames per second, e.g. 5");
    }
    if !(64..=4096).contains(&c.max_side) {
        iss.add("evidence.clip.max_side", format!("{} px", c.max_side), "use 64 to 4096 pixels, e.g. 640");
    }
    if !(1..=4096).contains(&c.ring_mb) {
        iss.add("evidence.clip.ring_mb", format!("{} MiB", c.ring_mb), "use 1 to 4096 MiB per camera, e.g. 64");
    }
    if !(1..=256).contains(&c.queue) {
        iss.add("evidence.clip.queue", format!("{}", c.queue), "use 1 to 256 clips, e.g. 4");
    }
    if c.max_mb > 1 << 30 {
        iss.add("evidence.clip.max_mb", format!("{} MiB", c.max_mb), "use 0 (no limit) or MiB, e.g. 1024");
    }
}

/// One frame of a clip: shared pixels (the ring holds the decoded frame itself, no copy).
#[derive(Clone)]
pub struct ClipFrame {
    pub captured_at: OffsetDateTime,
    pub image: Arc<RgbImage>,
}

/// Starts MP4 files (H.264 that browsers play, the index at the front so playback starts
/// before the whole file is read), fed frame by frame: a clip is encoded while it is
/// recorded, so no clip's frames pile up in memory.
pub trait ClipEncoder: Send {
    /// A file at `out` for frames of `width`×`height` at `fps`, scaled so that the
    /// longer side is at most `max_side`.
    fn begin(&mut self, width: u32, height: u32, fps: f64, max_side: u32, out: &Path) -> Result<Box<dyn ClipWriter>, String>;
    /// For logs and the clip's facts, e.g. `x264enc`.
    fn name(&self) -> &'static str;
}

/// One clip being written.
pub trait ClipWriter: Send {
    /// The next frame (the `index`-th: its time is `index / fps`).
    fn push(&mut self, frame: &RgbImage, index: u64) -> Result<(), String>;
    /// Ends the stream and waits until the file is complete; returns its size (w, h).
    fn finish(self: Box<Self>) -> Result<(u32, u32), String>;
}

/// The API path of an incident's clip.
pub fn url_of(incident_id: &str) -> String {
    format!("/v1/incidents/{incident_id}/clip.mp4")
}

/// What is known of a stored clip (`<id>.json` next to it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipInfo {
    pub url: String,
    pub sha256: String,
    pub bytes: u64,
    pub frames: u32,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    #[serde(with = "crate::model::rfc3339_ms")]
    pub from: OffsetDateTime,
    #[serde(with = "crate::model::rfc3339_ms")]
    pub to: OffsetDateTime,
    /// Seconds of video.
    pub duration_s: f64,
    pub encoder: String,
}

/// What a retention pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub files: u64,
    pub bytes_kept: u64,
}

pub struct ClipStore {
    dir: PathBuf,
    max_bytes: u64,
    max_age: Option<Duration>,
    /// Incidents open now: their clips are kept whatever their age or the total size.
    open: Mutex<HashSet<String>>,
    /// Clips being recorded or encoded now (their URL answers "recording").
    recording: Mutex<HashSet<String>>,
}

/// An incident id as this store takes it: a UUID's 36 characters (so an id from a
/// request never becomes an arbitrary path).
fn is_incident_id(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

impl ClipStore {
    /// `DIR/clips` (created; temporaries a crash left deleted).
    pub fn open(evidence_dir: &Path, cfg: &ClipConfig, max_age_days: f64) -> std::io::Result<Self> {
        let dir = evidence_dir.join("clips");
        std::fs::create_dir_all(&dir)?;
        for f in std::fs::read_dir(&dir)? {
            let f = f?;
            if f.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(f.path());
            }
        }
        let max_age = (max_age_days > 0.0).then(|| Duration::from_secs_f64(max_age_days * 86_400.0));
        Ok(Self { dir, max_bytes: cfg.max_mb << 20, max_age, open: Mutex::default(), recording: Mutex::default() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The clip file of `incident` (`None` for anything that is not an incident id).
    pub fn path_of(&self, incident: &str) -> Option<PathBuf> {
        is_incident_id(incident).then(|| self.dir.join(format!("{incident}.mp4")))
    }

    /// A temporary path to encode into (renamed by [`Self::put`]).
    pub fn temp_path(&self, incident: &str) -> PathBuf {
        self.dir.join(format!(".{incident}.{}.mp4.tmp", std::process::id()))
    }

    /// The stored clip's facts; `None` while there is none (not recorded, still
    /// recording, or deleted by retention).
    pub fn info(&self, incident: &str) -> Option<ClipInfo> {
        let path = self.path_of(incident)?;
        let text = std::fs::read_to_string(path.with_extension("json")).ok()?;
        serde_json::from_str(&text).ok().filter(|_| path.exists())
    }

    /// Moves the encoded `tmp` into place as `incident`'s clip, then its facts.
    pub fn put(&self, incident: &str, tmp: &Path, info: &ClipInfo) -> std::io::Result<()> {
        let path = self.path_of(incident).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an incident id"))?;
        std::fs::File::open(tmp)?.sync_all()?;
        std::fs::rename(tmp, &path)?;
        let json_tmp = self.dir.join(format!(".{incident}.{}.json.tmp", std::process::id()));
        let written = (|| {
            let mut f = std::fs::File::create(&json_tmp)?;
            f.write_all(&serde_json::to_vec(info).expect("serialisable"))?;
            f.sync_all()?;
            std::fs::rename(&json_tmp, path.with_extension("json"))?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&json_tmp);
        }
        written
    }

    /// `incident`'s clip is being recorded (or no longer: written, failed or dropped).
    pub fn set_recording(&self, incident: &str, recording: bool) {
        mark(&self.recording, incident, recording);
    }

    pub fn is_recording(&self, incident: &str) -> bool {
        self.recording.lock().contains(incident)
    }

    /// `incident` is open (its clip is kept) or closed (retention as any other).
    pub fn set_open(&self, incident: &str, open: bool) {
        mark(&self.open, incident, open);
    }

    /// Deletes, oldest first, clips past the size cap or the age limit at `now`, never
    /// an open incident's.
    pub fn prune(&self, now: SystemTime) -> Pruned {
        let mut clips: Vec<(SystemTime, String, u64)> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|f| {
                    let name = f.file_name().to_string_lossy().into_owned();
                    let id = name.strip_suffix(".mp4").filter(|id| is_incident_id(id))?.to_string();
                    let meta = f.metadata().ok()?;
                    Some((meta.modified().ok()?, id, meta.len()))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot list the clips for retention");
                return Pruned::default();
            }
        };
        clips.sort();
        let mut total: u64 = clips.iter().map(|c| c.2).sum();
        let cutoff = self.max_age.and_then(|a| now.checked_sub(a));
        let open = self.open.lock().clone();
        let mut deleted = 0;
        for (at, id, bytes) in clips {
            let too_old = cutoff.is_some_and(|c| at < c);
            let too_big = self.max_bytes > 0 && total > self.max_bytes;
            if !too_old && !too_big {
                break;
            }
            if open.contains(&id) {
                continue;
            }
            let path = self.dir.join(format!("{id}.mp4"));
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(path.with_extension("json"));
                    deleted += 1;
                    total -= bytes;
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot delete an old clip"),
            }
        }
        Pruned { files: deleted, bytes_kept: total }
    }
}

/// Puts `id` in `set` or takes it out.
fn mark(set: &Mutex<HashSet<String>>, id: &str, on: bool) {
    let mut s = set.lock();
    if on {
        s.insert(id.to_string());
    } else {
        s.remove(id);
    }
}

/// One range of a `Range: bytes=…` header against a file of `len` bytes, as
/// `start..end` (end exclusive): `Ok(None)` without a usable single range (serve it
/// whole), `Err(())` for a range past the end (416).
#[allow(clippy::result_unit_err)]
pub fn byte_range(header: Option<&str>, len: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None); // several ranges: the whole file is a valid answer
    }
    let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(start), end) if a.len() == a.trim().len() => {
            if start >= len {
                return Err(());
            }
            let end = end.map(|e| e.min(len - 1)).unwrap_or(len - 1);
            if end < start {
                return Ok(None);
            }
            start..end + 1
        }
        (None, Some(suffix)) if a.is_empty() => {
            if suffix == 0 {
                return Err(());
            }
            len.saturating_sub(suffix)..len
        }
        _ => return Ok(None),
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0a0a0a0a-0000-4000-8000-000000000001";
    const B: &str = "0b0b0b0b-0000-4000-8000-000000000002";

    fn info(id: &str) -> ClipInfo {
        let t = OffsetDateTime::UNIX_EPOCH;
        ClipInfo {
            url: url_of(id),
            sha256: "0".repeat(64),
            bytes: 4,
            frames: 1,
            fps: 5.0,
            width: 2,
            height: 2,
            from: t,
            to: t,
            duration_s: 0.2,
            encoder: "test".into(),
        }
    }

    #[test]
    fn ranges_as_browsers_ask_for_them() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-"), 100), Ok(Some(0..100)));
        assert_eq!(byte_range(Some("bytes=10-19"), 100), Ok(Some(10..20)));
        assert_eq!(byte_range(Some("bytes=90-500"), 100), Ok(Some(90..100)), "an end past the file is clipped");
        assert_eq!(byte_range(Some("bytes=-30"), 100), Ok(Some(70..100)), "a suffix");
        assert_eq!(byte_range(Some("bytes=-300"), 100), Ok(Some(0..100)));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Err(()), "past the end: 416");
        assert_eq!(byte_range(Some("bytes=-0"), 100), Err(()));
        for whole in ["bytes=0-1,5-6", "items=0-1", "bytes=x-1", "bytes=5-2", "bytes="] {
            assert_eq!(byte_range(Some(whole), 100), Ok(None), "{whole}");
        }
    }

    #[test]
    fn clips_are_put_whole_found_by_incident_and_only_ids_are_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = ClipStore::open(dir.path(), &ClipConfig::default(), 30.0).unwrap();
        assert!(store.path_of("../../etc/passwd").is_none());
        assert!(store.info(A).is_none());
        let tmp = store.temp_path(A);
        std::fs::write(&tmp, b"mp4!").unwrap();
        store.put(A, &tmp, &info(A)).unwrap();
        assert!(!tmp.exists());
        assert_eq!(store.info(A), Some(info(A)));
        assert_eq!(std::fs::read(store.path_of(A).unwrap()).unwrap(), b"mp4!");
        // A crash's leftovers are gone at the next start.
        std::fs::write(store.temp_path(B), b"half").unwrap();
        let again = ClipStore::open(dir.path(), &ClipConfig::default(), 30.0).unwrap();
        assert_eq!(std::fs::read_dir(again.dir()).unwrap().count(), 2, "the clip and its facts");
    }

    #[test]
    fn past_the_cap_the_oldest_go_but_never_an_open_incidents() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ClipConfig { max_mb: 1, ..Default::default() };
        let store = ClipStore::open(dir.path(), &cfg, 0.0).unwrap();
        for id in [A, B] {
            let tmp = store.temp_path(id);
            std::fs::write(&tmp, vec![0u8; 700 << 10]).unwrap();
            store.put(id, &tmp, &info(id)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        store.set_open(A, true);
        let p = store.prune(SystemTime::now());
        assert_eq!((p.files, p.bytes_kept), (1, 700 << 10));
        assert!(store.info(A).is_some(), "the open incident's clip is kept, though oldest");
        assert!(store.info(B).is_none() && !store.path_of(B).unwrap().with_extension("json").exists());
        store.set_open(A, false);
        let old = ClipStore::open(dir.path(), &ClipConfig { max_mb: 0, ..Default::default() }, 1e-9).unwrap();
        assert_eq!(old.prune(SystemTime::now() + Duration::from_secs(1)).files, 1, "past the age limit");
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut iss = Issues::new(Path::new("argus.toml"));
        validate(&ClipConfig { pre_s: -1.0, fps: 0.0, max_side: 10, queue: 0, ..Default::default() }, &mut iss);
        let keys: Vec<String> = iss.into_vec().into_iter().map(|i| i.key).collect();
        for k in ["evidence.clip.pre_s", "evidence.clip.fps", "evidence.clip.max_side", "evidence.clip.queue"] {
            assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
        }
        let mut ok = Issues::new(Path::new("argus.toml"));
        validate(&ClipConfig::default(), &mut ok);
        assert!(ok.is_empty());
    }
}
