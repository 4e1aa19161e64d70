//! One-shot analysis of a still image: decode → detect → `frame.analyzed` event.
//! Used by `argus analyze` and (later) the HTTP analyze endpoint.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

use crate::caption;
use crate::detect::Detector;
use crate::event::{Event, EventKind, FrameInfo, Models, SCHEMA, derive_id};
use crate::frame::RgbImage;
use crate::risk::{Risk, SceneObject};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("cannot decode image: {0} (JPEG and PNG are supported)")]
    Decode(String),
    #[error("image is {width}x{height}; the limit is {max} pixels on a side")]
    TooLarge { width: u32, height: u32, max: u32 },
    #[error("unknown camera `{0}`: use an id from GET /v1/cameras")]
    UnknownCamera(String),
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
}

/// Largest side accepted, to bound memory for a single request.
pub const MAX_SIDE: u32 = 8192;

/// Decodes JPEG/PNG bytes to RGB.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, AnalyzeError> {
    decode_image_within(bytes, MAX_SIDE)
}

/// Decodes JPEG/PNG bytes to RGB, refusing images with a side over `max_side` from their
/// header, before any pixel is decoded.
pub fn decode_image_within(bytes: &[u8], max_side: u32) -> Result<RgbImage, AnalyzeError> {
    let max_side = max_side.min(MAX_SIDE);
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| AnalyzeError::Decode(e.to_string()))?;
    let (w, h) = reader.into_dimensions().map_err(|e| AnalyzeError::Decode(e.to_string()))?;
    if w > max_side || h > max_side {
        return Err(AnalyzeError::TooLarge { width: w, height: h, max: max_side });
    }
    let img = image::load_from_memory(bytes).map_err(|e| AnalyzeError::Decode(e.to_string()))?.to_rgb8();
    let (w, h) = img.dimensions();
    RgbImage::new(w, h, img.into_raw()).map_err(|e| AnalyzeError::Decode(e.to_string()))
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
        models: Models { detector: detector.info().model_id.clone(), captioner: caption::CAPTIONER.into() },
    })
}

/// Shared handle type for callers that analyse from several threads.
pub type SharedDetector = Arc<parking_lot::Mutex<Box<dyn Detector>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_bytes_are_a_clear_error() {
        let e = decode_image(b"definitely not a jpeg").unwrap_err();
        assert!(e.to_string().contains("cannot decode image"), "{e}");
        let mut png = Vec::new();
        image::RgbImage::new(3, 2).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let img = decode_image(&png).unwrap();
        assert_eq!((img.width, img.height), (3, 2));
        let truncated = &png[..png.len() / 2];
        assert!(decode_image(truncated).is_err());
    }
}
