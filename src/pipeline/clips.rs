//! Incident clips on the scene stage (`[evidence.clip]`): a ring of each camera's recent
//! frames (sampled at `fps`, bounded in seconds and bytes; the decoded frames themselves,
//! shared, never copied), and for each incident that opens, a recording from the ring's
//! pre-roll until the post-roll has passed, streamed to one encoder thread
//! ([`ClipWorker`]) frame by frame, so a clip's frames never pile up in memory.
//!
//! The stage never waits for the encoder: a message that does not fit the bounded
//! queue abandons that clip (`argus_clips_total{outcome="dropped"}`), and the incident
//! goes on without it. The `incident.opened` event carries the clip's URL and span at
//! once (`evidence.clip`); the file appears once encoded.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use sha2::{Digest, Sha256};
use time::{Duration as TimeSpan, OffsetDateTime};

use crate::evidence::clip::{ClipConfig, ClipEncoder, ClipFrame, ClipInfo, ClipStore, ClipWriter, url_of};
use crate::model::{ClipRef, Event, EventKind, RgbImage};
use crate::telemetry::metrics::Metrics;

/// What the stage tells the encoder thread.
enum ClipMsg {
    Start {
        incident: String,
        pre: Vec<ClipFrame>,
        from: OffsetDateTime,
        to: OffsetDateTime,
    },
    Frame {
        incidents: Vec<String>,
        frame: ClipFrame,
    },
    /// `keep`: write the clip; otherwise abandon it (frames were lost).
    End {
        incident: String,
        keep: bool,
    },
}

/// Each camera's recent frames.
#[derive(Default)]
struct Ring {
    frames: VecDeque<ClipFrame>,
    bytes: u64,
}

/// The stage's side: rings and which incidents are recording until when.
pub struct ClipRecorder {
    cfg: ClipConfig,
    rings: HashMap<Arc<str>, Ring>,
    /// Incident → (camera, end of its post-roll).
    recording: HashMap<String, (Arc<str>, OffsetDateTime)>,
    /// Ends that did not fit the queue, sent before anything else.
    pending_ends: Vec<(String, bool)>,
    tx: Option<Sender<ClipMsg>>,
    store: Arc<ClipStore>,
    metrics: Arc<Metrics>,
    worker: Option<JoinHandle<()>>,
}

impl ClipRecorder {
    /// The recorder and its encoder thread.
    pub fn start(cfg: ClipConfig, store: Arc<ClipStore>, encoder: Box<dyn ClipEncoder>, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        // Frames of every recording go through one queue: each clip slot has room for its
        // pre-roll (sent at once) and 2 s more. Frames are shared with the ring, but a
        // queued frame outlives it, so the queue is what bounds the memory clips take.
        let capacity = cfg.queue * ((cfg.fps * (cfg.pre_s + 2.0)).ceil() as usize + 2);
        let (tx, rx) = bounded(capacity.max(8));
        let worker = ClipWorker { rx, store: store.clone(), encoder, metrics: metrics.clone(), fps: cfg.fps, max_side: cfg.max_side, active: HashMap::new() };
        let handle = std::thread::Builder::new().name("clip-encoder".into()).spawn(move || worker.run())?;
        tracing::info!(pre_s = cfg.pre_s, post_s = cfg.post_s, fps = cfg.fps, max_side = cfg.max_side, dir = %store.dir().display(), "incident clips on");
        Ok(Self { cfg, rings: HashMap::new(), recording: HashMap::new(), pending_ends: Vec::new(), tx: Some(tx), store, metrics, worker: Some(handle) })
    }

    fn send(&mut self, msg: ClipMsg) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => {
                self.tx = None;
                false
            }
        }
    }

    fn flush_ends(&mut self) {
        while let Some((incident, keep)) = self.pending_ends.pop() {
            if !self.send(ClipMsg::End { incident: incident.clone(), keep }) {
                self.pending_ends.push((incident, keep));
                return;
            }
        }
    }

    /// A processed frame of `camera`: kept in its ring when due at `fps`, and sent to its
    /// incidents' recordings; recordings whose post-roll has passed end.
    pub fn frame(&mut self, camera: &Arc<str>, captured_at: OffsetDateTime, image: &Arc<RgbImage>) {
        self.flush_ends();
        let ended: Vec<String> = self.recording.iter().filter(|(_, (c, to))| c == camera && captured_at > *to).map(|(i, _)| i.clone()).collect();
        for incident in ended {
            self.end(&incident, true);
        }
        let ring = self.rings.entry(camera.clone()).or_default();
        let step = TimeSpan::seconds_f64(0.95 / self.cfg.fps);
        if ring.frames.back().is_some_and(|last| captured_at >= last.captured_at && captured_at - last.captured_at < step) {
            return;
        }
        let frame = ClipFrame { captured_at, image: image.clone() };
        ring.frames.push_back(frame.clone());
        ring.bytes += image.pixels.len() as u64;
        // The pre-roll's seconds and the ring's bytes; the newest frame always stays.
        let oldest = captured_at - TimeSpan::seconds_f64(self.cfg.pre_s);
        while ring.frames.len() > 1 && (ring.frames[0].captured_at < oldest || ring.bytes > self.cfg.ring_mb << 20) {
            let f = ring.frames.pop_front().expect("more than one");
            ring.bytes -= f.image.pixels.len() as u64;
        }
        let incidents: Vec<String> = self.recording.iter().filter(|(_, (c, _))| c == camera).map(|(i, _)| i.clone()).collect();
        if !incidents.is_empty() && !self.send(ClipMsg::Frame { incidents: incidents.clone(), frame }) {
            for incident in incidents {
                self.metrics.clips_finished.with_label_values(&["dropped"]).inc();
                tracing::warn!(incident = %incident, camera = %camera, "clip abandoned: the clip encoder is behind");
                self.end(&incident, false);
            }
        }
    }

    /// After the frame's events are made: an opening starts its recording and its event
    /// gets `evidence.clip`; a closing lets its clip follow retention.
    pub fn events(&mut self, events: &mut [Event]) {
        for ev in events.iter_mut() {
            let Some(incident) = ev.incident_id.clone() else { continue };
            match ev.kind {
                EventKind::IncidentOpened => {
                    let camera: Arc<str> = Arc::from(ev.camera_id.as_str());
                    let from = ev.captured_at - TimeSpan::seconds_f64(self.cfg.pre_s);
                    let to = ev.captured_at + TimeSpan::seconds_f64(self.cfg.post_s);
                    let pre: Vec<ClipFrame> =
                        self.rings.get(&camera).map(|r| r.frames.iter().filter(|f| f.captured_at >= from).cloned().collect()).unwrap_or_default();
                    if pre.is_empty() {
                        continue; // no frame of this camera yet
                    }
                    if !self.send(ClipMsg::Start { incident: incident.clone(), pre, from, to }) {
                        self.metrics.clips_finished.with_label_values(&["dropped"]).inc();
                        tracing::warn!(incident = %incident, camera = %camera, "no clip: the clip encoder is behind");
                        continue;
                    }
                    self.store.set_open(&incident, true);
                    self.store.set_recording(&incident, true);
                    self.recording.insert(incident.clone(), (camera, to));
                    if let Some(e) = ev.evidence.as_mut() {
                        e.clip = Some(ClipRef { url: url_of(&incident), from, to });
                    }
                }
                EventKind::IncidentClosed => self.store.set_open(&incident, false),
                _ => {}
            }
        }
    }

    fn end(&mut self, incident: &str, keep: bool) {
        if self.recording.remove(incident).is_some() && !self.send(ClipMsg::End { incident: incident.to_string(), keep }) {
            self.pending_ends.push((incident.to_string(), keep));
        }
    }

    /// `camera` ended or was removed: its recordings end with what they have.
    pub fn camera_ended(&mut self, camera: &str) {
        let ended: Vec<String> = self.recording.iter().filter(|(_, (c, _))| &**c == camera).map(|(i, _)| i.clone()).collect();
        for incident in ended {
            self.end(&incident, true);
        }
        self.rings.remove(camera);
    }

    /// The stage ends: every recording ends with what it has, and the encoder thread
    /// finishes them before this returns.
    pub fn finish(mut self) {
        let all: Vec<String> = self.recording.keys().cloned().collect();
        for incident in all {
            self.end(&incident, true);
        }
        if let Some(tx) = self.tx.take() {
            for (incident, keep) in std::mem::take(&mut self.pending_ends) {
                let _ = tx.send(ClipMsg::End { incident, keep });
            }
        }
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// A clip being encoded.
struct Active {
    writer: Box<dyn ClipWriter>,
    tmp: PathBuf,
    frames: u32,
    size: (u32, u32),
    from: OffsetDateTime,
    to: OffsetDateTime,
}

/// The encoder thread: one writer per recording, fed as frames come.
struct ClipWorker {
    rx: Receiver<ClipMsg>,
    store: Arc<ClipStore>,
    encoder: Box<dyn ClipEncoder>,
    metrics: Arc<Metrics>,
    fps: f64,
    max_side: u32,
    active: HashMap<String, Active>,
}

impl ClipWorker {
    fn run(mut self) {
        while let Ok(msg) = self.rx.recv() {
            match msg {
                ClipMsg::Start { incident, pre, from, to } => self.start(incident, pre, from, to),
                ClipMsg::Frame { incidents, frame } => {
                    for incident in incidents {
                        self.push(&incident, &frame);
                    }
                }
                ClipMsg::End { incident, keep } => self.end(&incident, keep),
            }
        }
        // The stage is gone: what is still recording is written with what it has.
        let left: Vec<String> = self.active.keys().cloned().collect();
        for incident in left {
            self.end(&incident, true);
        }
    }

    fn start(&mut self, incident: String, pre: Vec<ClipFrame>, from: OffsetDateTime, to: OffsetDateTime) {
        let first = &pre[0].image;
        let tmp = self.store.temp_path(&incident);
        let t0 = Instant::now();
        match self.encoder.begin(first.width, first.height, self.fps, self.max_side, &tmp) {
            Ok(writer) => {
                self.active.insert(incident.clone(), Active { writer, tmp, frames: 0, size: (first.width, first.height), from, to });
                for f in &pre {
                    self.push(&incident, f);
                }
            }
            Err(e) => self.failed(&incident, &tmp, &e),
        }
        self.metrics.stage_seconds.with_label_values(&["clip"]).observe(t0.elapsed().as_secs_f64());
    }

    fn push(&mut self, incident: &str, frame: &ClipFrame) {
        let Some(a) = self.active.get_mut(incident) else { return };
        if (frame.image.width, frame.image.height) != a.size {
            return; // the camera changed its resolution mid-clip: the clip keeps the first
        }
        let t0 = Instant::now();
        let pushed = a.writer.push(&frame.image, a.frames as u64);
        self.metrics.stage_seconds.with_label_values(&["clip"]).observe(t0.elapsed().as_secs_f64());
        match pushed {
            Ok(()) => a.frames += 1,
            Err(e) => {
                let a = self.active.remove(incident).expect("active");
                drop(a.writer);
                self.failed(incident, &a.tmp, &e);
            }
        }
    }

    fn end(&mut self, incident: &str, keep: bool) {
        let Some(a) = self.active.remove(incident) else { return };
        self.finish_one(incident, a, keep);
        self.store.set_recording(incident, false);
    }

    fn finish_one(&mut self, incident: &str, a: Active, keep: bool) {
        if !keep {
            drop(a.writer);
            let _ = std::fs::remove_file(&a.tmp);
            return;
        }
        let t0 = Instant::now();
        let finished = a.writer.finish();
        self.metrics.stage_seconds.with_label_values(&["clip"]).observe(t0.elapsed().as_secs_f64());
        let written = finished.and_then(|(width, height)| {
            let bytes = std::fs::read(&a.tmp).map_err(|e| e.to_string())?;
            let info = ClipInfo {
                url: url_of(incident),
                sha256: hex::encode(Sha256::digest(&bytes)),
                bytes: bytes.len() as u64,
                frames: a.frames,
                fps: self.fps,
                width,
                height,
                from: a.from,
                to: a.to,
                duration_s: a.frames as f64 / self.fps,
                encoder: self.encoder.name().into(),
            };
            self.store.put(incident, &a.tmp, &info).map_err(|e| e.to_string())?;
            Ok(info)
        });
        match written {
            Ok(info) => {
                self.metrics.clips_finished.with_label_values(&["written"]).inc();
                self.metrics.clip_bytes_written.inc_by(info.bytes);
                tracing::info!(incident, frames = info.frames, bytes = info.bytes, duration_s = info.duration_s, "incident clip written");
                let pruned = self.store.prune(std::time::SystemTime::now());
                if pruned.files > 0 {
                    self.metrics.retention_deleted.with_label_values(&["clips"]).inc_by(pruned.files);
                }
            }
            Err(e) => self.failed(incident, &a.tmp, &e),
        }
    }

    fn failed(&self, incident: &str, tmp: &std::path::Path, why: &str) {
        let _ = std::fs::remove_file(tmp);
        self.store.set_recording(incident, false);
        self.metrics.clips_finished.with_label_values(&["failed"]).inc();
        tracing::warn!(incident, error = why, encoder = self.encoder.name(), "incident clip failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::clip::ClipWriter;
    use crate::model::sample_event;
    use std::path::Path;

    /// Records which frames (their first pixel) each clip got; writes them as the file.
    struct FakeEncoder;
    struct FakeWriter {
        out: PathBuf,
        got: Vec<u8>,
        size: (u32, u32),
    }
    impl ClipEncoder for FakeEncoder {
        fn begin(&mut self, width: u32, height: u32, _fps: f64, _max_side: u32, out: &Path) -> Result<Box<dyn ClipWriter>, String> {
            Ok(Box::new(FakeWriter { out: out.to_path_buf(), got: Vec::new(), size: (width, height) }))
        }
        fn name(&self) -> &'static str {
            "fake"
        }
    }
    impl ClipWriter for FakeWriter {
        fn push(&mut self, frame: &RgbImage, index: u64) -> Result<(), String> {
            assert_eq!(index, self.got.len() as u64, "frames numbered in order");
            self.got.push(frame.pixels[0]);
            Ok(())
        }
        fn finish(self: Box<Self>) -> Result<(u32, u32), String> {
            std::fs::write(&self.out, &self.got).map_err(|e| e.to_string())?;
            Ok(self.size)
        }
    }

    fn image(id: u8) -> Arc<RgbImage> {
        Arc::new(RgbImage { width: 2, height: 2, pixels: vec![id; 12] })
    }

    fn at(ms: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_000 + ms as i128 * 1_000_000).unwrap()
    }

    fn recorder(dir: &Path) -> (ClipRecorder, Arc<ClipStore>, Arc<Metrics>) {
        let cfg = ClipConfig { enabled: true, pre_s: 1.0, post_s: 1.0, fps: 5.0, ..Default::default() };
        let store = Arc::new(ClipStore::open(dir, &cfg, 0.0).unwrap());
        let metrics = Arc::new(Metrics::new());
        (ClipRecorder::start(cfg, store.clone(), Box::new(FakeEncoder), metrics.clone()).unwrap(), store, metrics)
    }

    #[test]
    fn a_clip_is_the_pre_roll_then_the_post_roll_at_the_clip_rate() {
        let dir = tempfile::tempdir().unwrap();
        let (mut rec, store, metrics) = recorder(dir.path());
        let cam: Arc<str> = Arc::from("cam");
        let mut opened = sample_event("cam", 0, EventKind::IncidentOpened);
        let incident = opened.incident_id.clone().unwrap();
        opened.captured_at = at(2000);
        opened.evidence = Some(crate::model::Evidence { url: "/v1/events/x/evidence.jpg".into(), sha256: "0".repeat(64), bytes: 1, clip: None });
        // A camera at 10 fps: frame n at n × 100 ms; the incident opens at frame 20.
        for n in 0..=40u8 {
            rec.frame(&cam, at(n as i64 * 100), &image(n));
            if n == 20 {
                let mut events = vec![opened.clone()];
                rec.events(&mut events);
                opened = events.pop().unwrap();
            }
        }
        let clip = opened.evidence.as_ref().unwrap().clip.clone().expect("the opening carries the clip");
        assert_eq!((clip.url, clip.from, clip.to), (url_of(&incident), at(1000), at(3000)));
        rec.finish();
        let info = store.info(&incident).expect("written");
        // Every second frame (5 of 10 per second): 10, 12 … 20 before, 22 … 30 after.
        let frames = std::fs::read(store.path_of(&incident).unwrap()).unwrap();
        assert_eq!(frames, [10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30]);
        assert_eq!((info.frames, info.duration_s, info.encoder.as_str()), (11, 11.0 / 5.0, "fake"));
        assert!(!store.is_recording(&incident));
        assert_eq!(metrics.clips_finished.with_label_values(&["written"]).get(), 1);
    }

    #[test]
    fn a_camera_that_ends_ends_its_clips_with_what_they_have_and_nothing_is_left_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut rec, store, _) = recorder(dir.path());
        let cam: Arc<str> = Arc::from("cam");
        let mut opened = sample_event("cam", 0, EventKind::IncidentOpened);
        opened.captured_at = at(0);
        let incident = opened.incident_id.clone().unwrap();
        rec.frame(&cam, at(0), &image(1));
        rec.events(std::slice::from_mut(&mut opened));
        assert!(store.is_recording(&incident));
        rec.frame(&cam, at(200), &image(2));
        rec.camera_ended("cam");
        rec.frame(&Arc::<str>::from("other"), at(400), &image(9));
        rec.finish();
        assert_eq!(std::fs::read(store.path_of(&incident).unwrap()).unwrap(), [1, 2]);
        // No evidence on the event (evidence off or failed): recorded, not referenced.
        assert!(opened.evidence.is_none());
        // A frame before any: no pre-roll, no clip.
        let dir = tempfile::tempdir().unwrap();
        let (mut rec, store, _) = recorder(dir.path());
        let mut ev = sample_event("cam", 0, EventKind::IncidentOpened);
        rec.events(std::slice::from_mut(&mut ev));
        rec.finish();
        assert!(store.info(ev.incident_id.as_deref().unwrap()).is_none());
    }
}
