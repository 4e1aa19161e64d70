//! The detect stage: frames from the hub (batched across cameras, up to `max_batch`,
//! waiting at most `max_wait` to fill a batch) through the detector, in order, to the
//! scene stage.
//!
//! A detector that comes apart (`Detector::into_parts`) runs pipelined (`pipelined`): its
//! pre- and post-processing on their own threads, so that the model call is the only
//! work on the model's threads and the next input is ready when a call ends. One that
//! does not (tests' fakes) runs whole on one thread.

mod pipelined;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::detect::{DetectError, Detector, DetectorParts};
use crate::model::Detection;
use crate::model::{Frame, RgbImage};
use crate::pipeline::hub::FrameHub;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::supervise::Supervisor;

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

/// How the detect stage fills a detector call.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Frames per call, at most.
    pub max: usize,
    /// Frames of one camera per call, at most.
    pub per_camera: usize,
    /// How long to wait for other cameras' frames once the batch has one.
    pub max_wait: Duration,
}

/// How many of each of the stage's threads run (`detector.workers`, `detector.threads`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// Model instances running calls at once, each on its own thread.
    pub workers: crate::detect::config::Workers,
    /// Intra-op threads of each model instance (already set in the engines; logged here).
    pub threads_per_worker: usize,
}

/// Runs the stage on this thread (and, pipelined, the threads it starts) until the hub
/// is drained and closed, or the scene stage is gone.
pub fn run(detector: Box<dyn Detector>, hub: Arc<FrameHub>, out: Sender<Detected>, batching: Batching, layout: Layout, sup: &Supervisor) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = layout.workers.resolve(&detector.info().device, layout.threads_per_worker, cores);
    match detector.into_parts(workers) {
        DetectorParts::Split { codec, engines } => pipelined::run(codec, engines, hub, out, batching, layout, sup),
        DetectorParts::Whole(detector) => {
            tracing::info!(workers = 1, "detect stage: the detector runs whole on one thread");
            run_whole(detector, hub, out, batching, sup.metrics.clone())
        }
    }
}

fn run_whole(mut detector: Box<dyn Detector>, hub: Arc<FrameHub>, out: Sender<Detected>, batching: Batching, metrics: Arc<Metrics>) {
    let hist = metrics.stage_seconds.with_label_values(&["detect"]);
    loop {
        let batch = hub.take_batch_per_camera(batching.max, batching.per_camera, batching.max_wait);
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
        Err(e) if batch.len() > 1 => {
            // One bad frame (or a batch too large for the device) must not cost the
            // others: each is tried alone.
            tracing::warn!(error = %e, frames = batch.len(), "batch detection failed; trying each frame alone");
            for f in batch {
                if detect(detector, vec![f], out, metrics, hist) {
                    return true;
                }
            }
        }
        Err(e) => {
            for f in &batch {
                fail_frame(f, &e, metrics);
            }
        }
    }
    false
}

/// No fake "nothing detected" result: the frame is counted as failed, and a source that
/// commits (Kafka) is told, so it dead-letters the frame instead of committing it as
/// analysed.
fn fail_frame(f: &Frame, e: &DetectError, metrics: &Metrics) {
    metrics.frames_failed.with_label_values(&[&f.camera_id, "detect"]).inc();
    tracing::error!(camera = %f.camera_id, seq = f.seq, error = %e, "detection failed; frame skipped");
    if let Some(ack) = &f.ack {
        ack.fail(format!("detection failed: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectorInfo;
    use crate::model::{AckReport, FrameAck};

    /// Fails every batch that holds a 13-pixel-wide image.
    struct Picky(DetectorInfo);

    impl Detector for Picky {
        fn detect(&mut self, images: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, DetectError> {
            if images.iter().any(|i| i.width == 13) {
                return Err(DetectError::Engine { engine: "picky", reason: "cannot run this input".into() });
            }
            Ok(images.iter().map(|_| Vec::new()).collect())
        }
        fn info(&self) -> &DetectorInfo {
            &self.0
        }
        fn into_parts(self: Box<Self>, _workers: usize) -> DetectorParts {
            DetectorParts::Whole(self)
        }
    }

    fn frame(seq: u64, width: u32, acks: &crossbeam_channel::Sender<AckReport>) -> Frame {
        Frame {
            camera_id: Arc::from("cam"),
            seq,
            pts_ns: None,
            captured_at: time::OffsetDateTime::UNIX_EPOCH,
            time_source: "header",
            received: Instant::now(),
            image: Arc::new(RgbImage::new(width, 1, vec![0; width as usize * 3]).unwrap()),
            ack: Some(Arc::new(FrameAck::new(0, seq as i64, Arc::default(), acks.clone()))),
            telemetry: None,
            position: None,
        }
    }

    /// A batch that fails is tried frame by frame: the good frames are analysed, and
    /// only the frame that fails alone is counted failed and reported failed to its
    /// source (which must not commit it as analysed).
    #[test]
    fn a_failing_frame_costs_only_itself_and_is_reported_failed() {
        let info = DetectorInfo {
            model: "picky".into(),
            model_id: "picky".into(),
            backend: "test",
            device: "cpu".into(),
            input_size: [32, 32],
            score_threshold: 0.5,
            nms_iou: 0.5,
            max_engine_batch: 8,
        };
        let mut det = Picky(info);
        let (acks_tx, acks) = crossbeam_channel::unbounded();
        let (out_tx, out) = crossbeam_channel::unbounded();
        let metrics = Metrics::new();
        let hist = metrics.stage_seconds.with_label_values(&["detect"]);
        let batch = vec![frame(0, 8, &acks_tx), frame(1, 13, &acks_tx), frame(2, 8, &acks_tx)];
        assert!(!detect(&mut det, batch, &out_tx, &metrics, &hist));
        let passed: Vec<u64> = out
            .try_iter()
            .map(|d| match d {
                Detected::Frame(f) => f.frame.seq,
                Detected::SourceEnded(_) => unreachable!(),
            })
            .collect();
        assert_eq!(passed, vec![0, 2], "the good frames go on, in order");
        let mut reports: Vec<AckReport> = acks.try_iter().collect();
        reports.sort_by_key(|r| r.offset);
        assert_eq!(reports.len(), 3, "every frame reported once (the good ones when dropped above)");
        assert_eq!(reports[0].failure, None);
        assert!(reports[1].failure.as_deref().is_some_and(|f| f.contains("detection failed") && f.contains("cannot run this input")), "{reports:?}");
        assert_eq!(reports[2].failure, None);
        assert_eq!(metrics.frames_failed.with_label_values(&["cam", "detect"]).get(), 1);
    }
}
