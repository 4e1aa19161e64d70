//! What /readyz and /v1/cameras report: the state of the model, every source and sink.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use serde::Serialize;
use time::OffsetDateTime;

/// State of the model, a sink, or the pipeline as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    /// Finished normally (the pipeline after every source ended).
    Ended,
    Error,
}

/// State of one camera source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Building the pipeline / waiting for the first frame.
    Connecting,
    /// Frames are arriving.
    Streaming,
    /// No frame within the stall timeout: the pipeline is being torn down.
    Stalled,
    /// Waiting before the next rebuild of the pipeline (the server answers).
    BackingOff,
    /// The server does not answer (refused, unreachable, frozen, not serving the
    /// stream): probed every second, rebuilt the moment it answers.
    Offline,
    /// A finite source (file) reached its end, or its frame limit.
    Ended,
    /// A non-live source failed; it is not retried.
    Failed,
}

/// Exponentially weighted frame rate from inter-frame gaps.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateMeter {
    last: Option<std::time::Instant>,
    /// Smoothed seconds between ticks. Averaging intervals (not 1/interval) keeps
    /// bursts honest: a batch of 4 frames done at once every 0.25 s is 16 fps.
    interval_s: f64,
}

impl RateMeter {
    pub fn tick(&mut self) {
        self.tick_at(std::time::Instant::now());
    }

    fn tick_at(&mut self, now: std::time::Instant) {
        if let Some(last) = self.last {
            let dt = now.duration_since(last).as_secs_f64();
            self.interval_s = if self.interval_s == 0.0 { dt.max(1e-3) } else { 0.9 * self.interval_s + 0.1 * dt };
        }
        self.last = Some(now);
    }

    /// Current rate; 0 when frames stopped for a while.
    pub fn fps(&self) -> f64 {
        match self.last {
            Some(l) if l.elapsed().as_secs_f64() < 5.0 && self.interval_s > 0.0 => (10.0 / self.interval_s).round() / 10.0,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod rate_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn bursts_average_to_the_true_rate() {
        let mut m = RateMeter::default();
        let t0 = Instant::now();
        // Batches of 4 at once, every 250 ms, for 10 s: 16 frames/s.
        for b in 0..40u64 {
            for _ in 0..4 {
                m.tick_at(t0 + Duration::from_millis(250 * b));
            }
        }
        m.last = Some(Instant::now());
        // The smoothed interval swings with the burst phase (13.7–18.9 here), around
        // the true 16; an average of instantaneous rates would read in the thousands.
        assert!((12.0..=20.0).contains(&m.fps()), "{}", m.fps());
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub since: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub pipeline: String,
    /// The source URL with any credentials removed.
    pub source: String,
    pub live: bool,
    pub state: SourceState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The last error, kept after recovery (credentials redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub frames_received: u64,
    pub frames_dropped: u64,
    pub frames_processed: u64,
    /// `argus ingest`: frames the broker confirmed.
    #[serde(skip_serializing_if = "is_zero")]
    pub frames_published: u64,
    /// `frames_dropped` by reason (`queue_full`, `fps_cap`; for `argus ingest` also
    /// `expired`, `too_large`, `rejected`, `encode_failed`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub drops: BTreeMap<&'static str, u64>,
    pub fps_in: f64,
    pub fps_processed: f64,
    pub restarts: u64,
    /// Liveness probes of the camera's server since start (`argus_source_probes_total`).
    pub probes: u64,
    /// Between attempts: when the next probe (`offline`) or rebuild (`backing_off`) is due.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Why the last run ended, or why the server is not used now (the probe's finding),
    /// in words; kept after recovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The RTSP transport of the current or last session (`udp` or `tcp`), once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<&'static str>,
    /// Where capture times come from: `ntp` (RTCP sender reports), `arrival`, or `stream`
    /// (file time stamps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub last_frame_at: Option<OffsetDateTime>,
    /// Steps of the capture clock (camera NTP or this machine's clock) of more than 2 s,
    /// re-anchored (`argus_source_clock_jumps_total`), and the last one in words.
    pub clock_jumps: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_clock_jump: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// The video decoder GStreamer picked (e.g. `avdec_h264`, `nvh264dec`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoder: Option<String>,
    /// Where the camera's scene state came from at its start (`[scene_state]`): the
    /// outcome (`restored`, `too_old`, `incompatible`, `corrupt`, `none`) and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene_state: Option<String>,
    #[serde(skip)]
    pub rate_in: RateMeter,
    #[serde(skip)]
    pub rate_processed: RateMeter,
}

mod opt_time {
    use serde::Serializer;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&crate::model::format_time(*t)),
            None => s.serialize_none(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    pipeline: Option<ComponentStatus>,
    detector: Option<ComponentStatus>,
    sources: BTreeMap<String, SourceStatus>,
    sinks: BTreeMap<String, ComponentStatus>,
    /// Threads that panicked ("thread NAME panicked: MESSAGE"), oldest first.
    panics: Vec<String>,
    /// Directories whose filesystem is low on space, with the finding.
    disk_low: BTreeMap<String, String>,
    /// Kafka sources: per topic, the partitions assigned to this member and their
    /// consumer lag (messages behind the high watermark) once the client measured it.
    partitions: BTreeMap<String, BTreeMap<i32, Option<i64>>>,
}

#[derive(Debug, Default)]
pub struct Health {
    inner: RwLock<Inner>,
}

#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub reasons: Vec<String>,
    /// `running`, or `ended` once every source ended and every event reached every sink.
    pub pipeline: Option<ComponentStatus>,
    pub detector: Option<ComponentStatus>,
    pub sources: BTreeMap<String, SourceStatus>,
    pub sinks: BTreeMap<String, ComponentStatus>,
}

fn status(state: State, detail: Option<String>) -> ComponentStatus {
    ComponentStatus { state, detail, since: Some(OffsetDateTime::now_utc()) }
}

impl Health {
    pub fn set_pipeline(&self, state: State, detail: Option<String>) {
        self.inner.write().pipeline = Some(status(state, detail));
    }

    pub fn set_detector(&self, state: State, detail: Option<String>) {
        self.inner.write().detector = Some(status(state, detail));
    }

    /// A supervised thread panicked: Argus is not ready, and stops.
    pub fn thread_panicked(&self, thread: &str, message: &str) {
        self.inner.write().panics.push(format!("thread {thread} panicked: {message}"));
    }

    /// A directory's filesystem fell below (`Some(finding)`) or is back above (`None`)
    /// the free-space minimum. Low is a readiness reason: the spools fail next.
    pub fn set_disk_low(&self, dir: &str, finding: Option<String>) {
        let mut g = self.inner.write();
        match finding {
            Some(f) => g.disk_low.insert(dir.to_string(), f),
            None => g.disk_low.remove(dir),
        };
    }

    /// Partitions of `topic` newly assigned to this member.
    pub fn partitions_assigned(&self, topic: &str, partitions: &[i32]) {
        let mut g = self.inner.write();
        let t = g.partitions.entry(topic.to_string()).or_default();
        for p in partitions {
            t.entry(*p).or_insert(None);
        }
    }

    /// Partitions of `topic` taken away from this member.
    pub fn partitions_revoked(&self, topic: &str, partitions: &[i32]) {
        let mut g = self.inner.write();
        if let Some(t) = g.partitions.get_mut(topic) {
            for p in partitions {
                t.remove(p);
            }
        }
    }

    /// The consumer lag of an assigned partition (ignored when it is not assigned).
    pub fn partition_lag(&self, topic: &str, partition: i32, lag: i64) {
        if let Some(l) = self.inner.write().partitions.get_mut(topic).and_then(|t| t.get_mut(&partition)) {
            *l = Some(lag);
        }
    }

    /// Per topic, the assigned partitions and their lag.
    pub fn partitions(&self) -> BTreeMap<String, BTreeMap<i32, Option<i64>>> {
        self.inner.read().partitions.clone()
    }

    /// The first panic, once a supervised thread panicked.
    pub fn panicked(&self) -> Option<String> {
        self.inner.read().panics.first().cloned()
    }

    pub fn set_sink(&self, name: &str, state: State, detail: Option<String>) {
        let mut g = self.inner.write();
        let changed = g.sinks.get(name).is_none_or(|s| s.state != state || s.detail != detail);
        if changed {
            g.sinks.insert(name.to_string(), status(state, detail));
        }
    }

    pub fn register_source(&self, camera: &str, pipeline: &str, source: &str, live: bool) {
        self.inner.write().sources.insert(
            camera.to_string(),
            SourceStatus {
                pipeline: pipeline.into(),
                source: source.into(),
                live,
                state: SourceState::Connecting,
                detail: None,
                last_error: None,
                frames_received: 0,
                frames_dropped: 0,
                frames_processed: 0,
                frames_published: 0,
                drops: BTreeMap::new(),
                fps_in: 0.0,
                fps_processed: 0.0,
                restarts: 0,
                probes: 0,
                next_attempt_at: None,
                failure_reason: None,
                transport: None,
                time_source: None,
                last_frame_at: None,
                clock_jumps: 0,
                last_clock_jump: None,
                width: None,
                height: None,
                decoder: None,
                scene_state: None,
                rate_in: RateMeter::default(),
                rate_processed: RateMeter::default(),
            },
        );
    }

    pub fn update_source(&self, camera: &str, f: impl FnOnce(&mut SourceStatus)) {
        if let Some(s) = self.inner.write().sources.get_mut(camera) {
            f(s);
        }
    }

    /// Every camera's status, with rates as of now.
    pub fn sources(&self) -> BTreeMap<String, SourceStatus> {
        let mut out = self.inner.read().sources.clone();
        for s in out.values_mut() {
            s.fps_in = s.rate_in.fps();
            s.fps_processed = s.rate_processed.fps();
        }
        out
    }

    pub fn remove_source(&self, camera: &str) {
        self.inner.write().sources.remove(camera);
    }

    /// Counts one analysed frame of `camera`.
    pub fn frame_processed(&self, camera: &str) {
        if let Some(s) = self.inner.write().sources.get_mut(camera) {
            s.frames_processed += 1;
            s.rate_processed.tick();
        }
    }

    pub fn readiness(&self) -> Readiness {
        let g = self.inner.read();
        let mut reasons = Vec::new();
        match &g.detector {
            Some(d) if d.state == State::Running => {}
            Some(d) => reasons.push(format!("detector is {:?}{}", d.state, d.detail.as_deref().map(|x| format!(": {x}")).unwrap_or_default())),
            None => reasons.push("detector not loaded yet".into()),
        }
        // One camera down is that camera's problem (see /v1/cameras), not the process's:
        // Argus is unready only when no camera delivers at all.
        let delivering = g.sources.values().any(|s| matches!(s.state, SourceState::Streaming | SourceState::Ended));
        if !g.sources.is_empty() && !delivering {
            for (cam, s) in &g.sources {
                reasons.push(format!("camera {cam} is {:?}{}", s.state, s.detail.as_deref().map(|x| format!(": {x}")).unwrap_or_default()));
            }
        }
        for (name, s) in &g.sinks {
            if s.state == State::Error {
                reasons.push(format!("sink {name} is failing{}", s.detail.as_deref().map(|x| format!(": {x}")).unwrap_or_default()));
            }
        }
        reasons.extend(g.panics.iter().cloned());
        reasons.extend(g.disk_low.values().cloned());
        let (pipeline, detector, sinks) = (g.pipeline.clone(), g.detector.clone(), g.sinks.clone());
        drop(g);
        Readiness { ready: reasons.is_empty(), reasons, pipeline, detector, sources: self.sources(), sinks }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
