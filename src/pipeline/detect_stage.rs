//! The detect stage: one thread, one detector shared by every camera, batching frames
//! across cameras (up to `max_batch`, waiting at most `max_wait` to fill a batch).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::detect::Detector;
use crate::model::Detection;
use crate::model::{Frame, RgbImage};
use crate::pipeline::hub::FrameHub;
use crate::telemetry::metrics::Metrics;

/// A frame with its detections, on its way to the scene stage.
#[derive(Debug)]
pub struct DetectedFrame {
    pub frame: Frame,
    pub detections: Vec<Detection>,
}

/// What the scene stage receives, in order.
// Nearly every message is a frame: boxing it would allocate per frame for the sake of
// the rare end marker.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Detected {
    Frame(DetectedFrame),
    /// The camera's source ended by itself and every frame of it came before this.
    SourceEnded(Arc<str>),
}

pub fn run(mut detector: Box<dyn Detector>, hub: Arc<FrameHub>, out: Sender<Detected>, max_batch: usize, max_wait: Duration, metrics: Arc<Metrics>) {
    let hist = metrics.stage_seconds.with_label_values(&["detect"]);
    loop {
        let batch = hub.take_batch(max_batch, max_wait);
        // Taken after the batch: a camera reported here has no frame left in the hub.
        let ended = hub.take_ended();
        if batch.is_empty() && ended.is_empty() {
            break;
        }
        let gone = detect(&mut *detector, batch, &out, &metrics, &hist) || ended.into_iter().any(|c| out.send(Detected::SourceEnded(c)).is_err());
        if gone {
            return; // the scene stage is gone: shutting down
        }
    }
    tracing::debug!("detect stage drained and stopped");
}

/// Detects `batch` and sends its frames on; true when the scene stage is gone.
fn detect(detector: &mut dyn Detector, batch: Vec<Frame>, out: &Sender<Detected>, metrics: &Metrics, hist: &prometheus::Histogram) -> bool {
    if batch.is_empty() {
        return false;
    }
    metrics.batch_size.observe(batch.len() as f64);
    let images: Vec<&RgbImage> = batch.iter().map(|f| &*f.image).collect();
    let t0 = Instant::now();
    let result = detector.detect(&images);
    hist.observe(t0.elapsed().as_secs_f64());
    match result {
        Ok(per_frame) => {
            for (frame, detections) in batch.into_iter().zip(per_frame) {
                if out.send(Detected::Frame(DetectedFrame { frame, detections })).is_err() {
                    return true;
                }
            }
        }
        Err(e) => {
            // No fake "nothing detected" results: these frames are counted as failed.
            for f in &batch {
                metrics.frames_failed.with_label_values(&[&f.camera_id, "detect"]).inc();
            }
            tracing::error!(error = %e, frames = batch.len(), "detection failed; frames skipped");
        }
    }
    false
}
