//! What /readyz and /v1/cameras report: the state of the model, every source and sink.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    /// A finite source (file) reached its end normally.
    Ended,
    /// Retrying after an error (live sources).
    Reconnecting,
    Error,
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
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub frames_received: u64,
    pub frames_dropped: u64,
    pub restarts: u64,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub last_frame_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

mod opt_time {
    use serde::Serializer;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&crate::event::format_time(*t)),
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
                state: State::Starting,
                detail: None,
                frames_received: 0,
                frames_dropped: 0,
                restarts: 0,
                last_frame_at: None,
                width: None,
                height: None,
            },
        );
    }

    pub fn update_source(&self, camera: &str, f: impl FnOnce(&mut SourceStatus)) {
        if let Some(s) = self.inner.write().sources.get_mut(camera) {
            f(s);
        }
    }

    pub fn sources(&self) -> BTreeMap<String, SourceStatus> {
        self.inner.read().sources.clone()
    }

    pub fn readiness(&self) -> Readiness {
        let g = self.inner.read();
        let mut reasons = Vec::new();
        match &g.detector {
            Some(d) if d.state == State::Running => {}
            Some(d) => reasons.push(format!("detector is {:?}{}", d.state, d.detail.as_deref().map(|x| format!(": {x}")).unwrap_or_default())),
            None => reasons.push("detector not loaded yet".into()),
        }
        for (cam, s) in &g.sources {
            if matches!(s.state, State::Error | State::Starting | State::Reconnecting) {
                reasons.push(format!("camera {cam} is {:?}{}", s.state, s.detail.as_deref().map(|x| format!(": {x}")).unwrap_or_default()));
            }
        }
        for (name, s) in &g.sinks {
            if s.state == State::Error {
                reasons.push(format!("sink {name} is failing{}", s.detail.as_deref().map(|x| format!(": {x}")).unwrap_or_default()));
            }
        }
        Readiness { ready: reasons.is_empty(), reasons, pipeline: g.pipeline.clone(), detector: g.detector.clone(), sources: g.sources.clone(), sinks: g.sinks.clone() }
    }
}
