//! One-shot analysis of a still image: detect → `frame.analyzed` event (`argus analyze`
//! and the analysis pool behind `POST /v1/analyze`).

use std::time::Instant;

use time::OffsetDateTime;

use crate::caption;
use crate::detect::Detector;
use crate::model::{DecodeError, RgbImage};
use crate::model::{Event, EventKind, FrameInfo, Models, SCHEMA, derive_id};
use crate::model::{Risk, SceneObject};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Image(#[from] DecodeError),
    #[error("unknown camera `{0}`: use an id from GET /v1/cameras")]
    UnknownCamera(String),
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
    /// The worker could not load its detector (the request is answered 503).
    #[error("the analysis detector is not ready: the model failed to load: {0}")]
    ModelUnavailable(String),
}

/// Analyses one decoded image; `source` names it in the event (file name, upload id).
pub fn analyze_image(detector: &mut dyn Detector, image: &RgbImage, source: &str) -> Result<Event, AnalyzeError> {
    let received = Instant::now();
    let captured_at = OffsetDateTime::now_utc();
    let detections = detector.detect(&[image])?.pop().unwrap_or_default();
    let objects: Vec<SceneObject> = detections
        .into_iter()
        .map(|d| SceneObject {
            track_id: None,
            class: d.class,
            confidence: (d.score * 1000.0).round() / 1000.0,
            bbox: d.bbox.map(|v| (v * 10.0).round() / 10.0),
            world: None,
            speed_mps: None,
            heading_deg: None,
            zones: Vec::new(),
        })
        .collect();
    let risk = Risk::none();
    let caption = caption::describe(EventKind::FrameAnalyzed, &objects, &risk, None);
    let kind = EventKind::FrameAnalyzed;
    let event_id = derive_id(&[source.as_bytes(), &captured_at.unix_timestamp_nanos().to_le_bytes(), kind.as_str().as_bytes()]);
    Ok(Event {
        schema: SCHEMA.into(),
        event_id,
        kind,
        incident_id: None,
        pipeline: "analyze".into(),
        camera_id: source.to_string(),
        captured_at,
        processed_at: OffsetDateTime::now_utc(),
        latency_ms: (received.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
        frame: FrameInfo { seq: 0, width: image.width, height: image.height, time_source: Some("upload".into()) },
        risk,
        objects,
        caption,
        model_caption: None,
        evidence: None,
        action: None,
        models: Models { detector: detector.info().model_id.clone(), captioner: crate::model::SCENE_CAPTIONER.into() },
    })
}
