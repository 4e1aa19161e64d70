//! The pipelined detect stage. Three kinds of thread, joined by bounded channels:
//!
//! ```text
//! hub ─▶ prepare (this thread) ─▶ jobs ─▶ model worker × N ─▶ done ─▶ finish ─▶ scene
//!          take a batch, letterbox     one engine call            in ticket order:
//!          into a pooled tensor        each, nothing else         decode, NMS, send
//! ```
//!
//! Every batch (and every "source ended" report) gets a ticket in the order it left the
//! hub; `finish` sends on strictly in ticket order, so the scene stage sees each camera's
//! frames in order however many workers run and whichever finishes first.
//!
//! The jobs channel holds one prepared batch per worker: a worker that finishes a call
//! finds its next input ready, while nothing prepares far ahead of the model (each
//! prepared batch holds its frames and a tensor, 2 MB at 416x416).
//!
//! Shutdown runs downstream: the hub closes, prepare stops and drops the jobs channel,
//! the workers finish what they hold and drop theirs, finish drains. If the scene stage
//! goes, it runs upstream: finish's send fails, it returns, the workers' sends fail, then
//! prepare's. A panic in any thread is reported under its own name and unwinds the same
//! way (its channel ends drop).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{Batching, Detected, DetectedFrame, Layout, fail_frame};
use crate::detect::preprocess::InputTransform;
use crate::detect::{Codec, DetectError, InferenceEngine, OutputTensor};
use crate::model::{Frame, RgbImage};
use crate::pipeline::hub::FrameHub;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::supervise::Supervisor;

/// A prepared batch on its way to a model worker.
struct Job {
    ticket: u64,
    frames: Vec<Frame>,
    transforms: Vec<InputTransform>,
    /// `[n, 3, h, w]`, back to the pool once the call is done.
    tensor: Vec<f32>,
}

/// What reaches `finish`, each with its ticket.
enum Done {
    Inferred { ticket: u64, frames: Vec<Frame>, transforms: Vec<InputTransform>, outputs: Vec<Result<Vec<OutputTensor>, DetectError>> },
    Ended { ticket: u64, cameras: Vec<Arc<str>> },
}

impl Done {
    fn ticket(&self) -> u64 {
        match self {
            Done::Inferred { ticket, .. } | Done::Ended { ticket, .. } => *ticket,
        }
    }
}

pub(super) fn run(
    codec: Arc<Codec>,
    engines: Vec<Box<dyn InferenceEngine>>,
    hub: Arc<FrameHub>,
    out: Sender<Detected>,
    batching: Batching,
    layout: Layout,
    sup: &Supervisor,
) {
    let workers = engines.len();
    // A call carries what the engine takes at once: with a fixed-batch model, frames of
    // several cameras go to several workers instead of one worker's loop.
    let per_job = batching.max.min(codec.info().max_engine_batch.max(1));
    tracing::info!(
        workers,
        configured = ?layout.workers,
        threads_per_worker = layout.threads_per_worker,
        prepare_threads = 1,
        finish_threads = 1,
        frames_per_call = per_job,
        cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "detect stage: pipelined (letterbox and decode beside the model calls)"
    );
    let (jobs_tx, jobs_rx) = bounded::<Job>(workers);
    let (done_tx, done_rx) = bounded::<Done>(workers * 2 + 2);
    // Spare tensors: at most one per job in flight or waiting, plus the one in hand.
    let (spare_tx, spare_rx) = bounded::<Vec<f32>>(workers * 2 + 1);
    std::thread::scope(|s| {
        for (i, engine) in engines.into_iter().enumerate() {
            let (jobs, done, spare, codec) = (jobs_rx.clone(), done_tx.clone(), spare_tx.clone(), codec.clone());
            let name = format!("detect-model-{i}");
            let spawned = std::thread::Builder::new()
                .name(name.clone())
                .spawn_scoped(s, move || sup.run(&name, || model_worker(engine, &codec, jobs, done, spare, &sup.metrics)));
            if let Err(e) = spawned {
                tracing::error!(error = %e, worker = i, "cannot start a detector worker thread");
            }
        }
        drop(jobs_rx);
        let finish_done = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("detect-finish".into())
            .spawn_scoped(s, || sup.run("detect-finish", || finish(&codec, done_rx, out, &sup.metrics)));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the detect stage's finish thread");
            return;
        }
        drop(done_tx);
        prepare(&codec, &hub, batching, per_job, jobs_tx, finish_done, spare_rx, &sup.metrics);
    });
    tracing::debug!("detect stage drained and stopped");
}

/// Takes batches from the hub in order, tickets them and prepares their input tensors.
#[allow(clippy::too_many_arguments)]
fn prepare(
    codec: &Codec,
    hub: &FrameHub,
    batching: Batching,
    per_job: usize,
    jobs: Sender<Job>,
    done: Sender<Done>,
    spare: Receiver<Vec<f32>>,
    metrics: &Metrics,
) {
    let hist = metrics.stage_seconds.with_label_values(&["detect_prepare"]);
    let mut ticket = 0u64;
    loop {
        let frames = hub.take_batch_per_camera(per_job, batching.per_camera, batching.max_wait);
        // Taken after the batch: a camera reported here has no frame left in the hub.
        let ended = hub.take_ended();
        if frames.is_empty() && ended.is_empty() {
            return;
        }
        if !frames.is_empty() {
            metrics.batch_size.observe(frames.len() as f64);
            let t0 = Instant::now();
            let mut tensor = spare.try_recv().unwrap_or_default();
            let images: Vec<&RgbImage> = frames.iter().map(|f| &*f.image).collect();
            let transforms = codec.prepare(&images, &mut tensor);
            hist.observe(t0.elapsed().as_secs_f64());
            if jobs.send(Job { ticket, frames, transforms, tensor }).is_err() {
                return; // every worker is gone: shutting down
            }
            ticket += 1;
        }
        if !ended.is_empty() {
            if done.send(Done::Ended { ticket, cameras: ended }).is_err() {
                return;
            }
            ticket += 1;
        }
    }
}

/// Runs one engine call per job; a failed batch is retried frame by frame, so that one
/// bad frame (or a batch too large for the device) costs only itself.
fn model_worker(mut engine: Box<dyn InferenceEngine>, codec: &Codec, jobs: Receiver<Job>, done: Sender<Done>, spare: Sender<Vec<f32>>, metrics: &Metrics) {
    let hist = metrics.stage_seconds.with_label_values(&["detect"]);
    let (h, w) = codec.input_hw();
    let per = codec.tensor_len();
    while let Ok(job) = jobs.recv() {
        let n = job.frames.len();
        let mut call = |input: &[f32], n: usize| {
            let t0 = Instant::now();
            let result = engine
                .infer(input, n, h, w)
                .and_then(|o| if o.len() == n { Ok(o) } else { Err(DetectError::OutputShape(format!("engine returned {} results for {n} images", o.len()))) });
            hist.observe(t0.elapsed().as_secs_f64());
            result
        };
        let outputs = match call(&job.tensor, n) {
            Ok(o) => o.into_iter().map(Ok).collect(),
            Err(e) if n > 1 => {
                tracing::warn!(error = %e, frames = n, "batch detection failed; trying each frame alone");
                job.tensor.chunks(per).map(|one| call(one, 1).map(|mut o| o.remove(0))).collect()
            }
            Err(e) => vec![Err(e)],
        };
        let _ = spare.try_send(job.tensor);
        if done.send(Done::Inferred { ticket: job.ticket, frames: job.frames, transforms: job.transforms, outputs }).is_err() {
            return; // finish is gone: shutting down
        }
    }
}

/// Puts results back in ticket order, decodes them and sends them on.
fn finish(codec: &Codec, done: Receiver<Done>, out: Sender<Detected>, metrics: &Metrics) {
    let hist = metrics.stage_seconds.with_label_values(&["detect_finish"]);
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
    while let Ok(d) = done.recv() {
        waiting.insert(d.ticket(), d);
        while let Some(d) = waiting.remove(&next) {
            next += 1;
            if !send_on(codec, d, &out, metrics, &hist) {
                return; // the scene stage is gone: shutting down
            }
        }
    }
    // Every sender is gone; a gap means a thread died with its tickets (its panic is
    // reported): what is left still goes on, in order.
    for (_, d) in waiting {
        if !send_on(codec, d, &out, metrics, &hist) {
            return;
        }
    }
}

/// Decodes and sends one ticket's frames (or end reports); false when the scene stage
/// is gone.
fn send_on(codec: &Codec, d: Done, out: &Sender<Detected>, metrics: &Metrics, hist: &prometheus::Histogram) -> bool {
    match d {
        Done::Ended { cameras, .. } => cameras.into_iter().all(|c| out.send(Detected::SourceEnded(c)).is_ok()),
        Done::Inferred { frames, transforms, mut outputs, .. } => {
            // The worker gives one result per frame (a failed batch was retried alone);
            // were one missing, its frame must still be reported, never dropped unacked.
            while outputs.len() < frames.len() {
                outputs.push(Err(DetectError::OutputShape("the engine gave no output for this frame".into())));
            }
            for ((frame, t), output) in frames.into_iter().zip(&transforms).zip(outputs) {
                let result = output.and_then(|o| {
                    let t0 = Instant::now();
                    let r = codec.finish(&o, t);
                    hist.observe(t0.elapsed().as_secs_f64());
                    r
                });
                match result {
                    Ok(detections) => {
                        if out.send(Detected::Frame(DetectedFrame { frame, detections })).is_err() {
                            return false;
                        }
                    }
                    Err(e) => fail_frame(&frame, &e, metrics),
                }
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::detect::model::ModelSpec;
    use crate::detect::{Detector, DetectorParts, EngineDetector, EngineLoader};
    use crate::model::{AckReport, FrameAck};
    use crate::pipeline::hub::Overflow;
    use crate::telemetry::health::Health;

    /// An engine whose calls take a few milliseconds chosen by the input (so that workers
    /// finish out of order), that fails on images whose first pixel is 13, and that
    /// returns one box per image whose left edge is the image's first pixel value (mod
    /// 24): each result shows which frame it was computed from.
    struct Jittery;

    impl InferenceEngine for Jittery {
        fn name(&self) -> &'static str {
            "jittery"
        }
        fn device(&self) -> String {
            "cpu".into()
        }
        fn max_batch(&self) -> usize {
            1
        }
        fn infer(&mut self, input: &[f32], n: usize, _h: usize, _w: usize) -> Result<Vec<Vec<OutputTensor>>, DetectError> {
            // Normalised as value / 255 (custom YOLO specs).
            let value = (input[0] * 255.0).round();
            if value == 13.0 {
                return Err(DetectError::Engine { engine: "jittery", reason: "cannot run this input".into() });
            }
            std::thread::sleep(Duration::from_millis((value as u64 * 7) % 5));
            // YOLOv5 layout, one class: centre x, centre y, w, h, objectness, class score.
            // Inside the 32-pixel image, or the box would be clipped away.
            let (x0, w) = (value % 24.0, 4.0);
            Ok(vec![vec![OutputTensor { shape: vec![1, 1, 6], data: vec![x0 + w / 2.0, 16.0, w, 4.0, 0.9, 0.9] }]; n])
        }
    }

    /// A `Jittery` detector taken apart with `workers` engines.
    fn jittery_parts(workers: usize) -> (Arc<Codec>, Vec<Box<dyn InferenceEngine>>) {
        let loader: EngineLoader = Arc::new(|| Ok(Box::new(Jittery) as Box<dyn InferenceEngine>));
        let detector =
            EngineDetector::new(ModelSpec::custom_yolo(32, vec!["thing".into()], None), Box::new(Jittery), "jittery".into(), 0.5, None, 10).with_loader(loader);
        let DetectorParts::Split { codec, engines } = Box::new(detector).into_parts(workers) else { panic!("an engine detector comes apart") };
        (codec, engines)
    }

    fn frame(camera: &str, seq: u64, value: u8, acks: &crossbeam_channel::Sender<AckReport>) -> Frame {
        Frame {
            camera_id: Arc::from(camera),
            seq,
            pts_ns: None,
            captured_at: time::OffsetDateTime::UNIX_EPOCH,
            time_source: "header",
            received: Instant::now(),
            image: Arc::new(RgbImage::new(32, 32, vec![value; 32 * 32 * 3]).unwrap()),
            ack: Some(Arc::new(FrameAck::new(0, seq as i64, Arc::default(), acks.clone()))),
            telemetry: None,
            position: None,
        }
    }

    /// Three workers finishing out of order: every camera's frames reach the scene stage
    /// in order, each with its own detections, the failing frame alone is reported failed
    /// (never dropped unreported), and a camera's end comes after all of its frames.
    #[test]
    fn several_workers_keep_each_cameras_order_and_report_failures() {
        let (codec, engines) = jittery_parts(3);
        assert_eq!(engines.len(), 3);

        let hub = FrameHub::new();
        let (acks_tx, acks) = crossbeam_channel::unbounded();
        let lanes = [hub.lane(Arc::from("a"), 64, Overflow::Block), hub.lane(Arc::from("b"), 64, Overflow::Block)];
        // Camera a: 20 frames, value = seq + 1 (seq 12 has value 13: fails); b: 20 frames.
        for seq in 0..20u64 {
            lanes[0].push(frame("a", seq, seq as u8 + 1, &acks_tx));
            lanes[1].push(frame("b", seq, 100 + seq as u8, &acks_tx));
        }
        lanes[0].end();
        drop(lanes);

        let (out_tx, out) = crossbeam_channel::unbounded();
        let metrics = Arc::new(crate::telemetry::metrics::Metrics::new());
        let sup = Supervisor { health: Arc::new(Health::default()), metrics: metrics.clone() };
        let batching = Batching { max: 4, per_camera: 1, max_wait: Duration::from_millis(1) };
        let layout = Layout { workers: crate::detect::config::Workers::Count(3), threads_per_worker: 1 };
        run(codec, engines, hub, out_tx, batching, layout, &sup);

        let mut seen: std::collections::HashMap<String, Vec<u64>> = Default::default();
        let mut a_ended_after = None;
        for d in out.try_iter() {
            match d {
                Detected::Frame(f) => {
                    let value = (f.frame.image.pixels[0] % 24) as f32;
                    assert_eq!(f.detections.len(), 1, "{:?}", f.detections);
                    assert_eq!(f.detections[0].bbox[0], value, "camera {} seq {} got another frame's result", f.frame.camera_id, f.frame.seq);
                    seen.entry(f.frame.camera_id.to_string()).or_default().push(f.frame.seq);
                }
                Detected::SourceEnded(c) => {
                    assert_eq!(&*c, "a");
                    a_ended_after = Some(seen.get("a").map_or(0, Vec::len));
                }
            }
        }
        let a_expected: Vec<u64> = (0..20).filter(|s| *s != 12).collect();
        assert_eq!(seen["a"], a_expected, "camera a in order, without the failed frame");
        assert_eq!(seen["b"], (0..20).collect::<Vec<u64>>(), "camera b in order");
        assert_eq!(a_ended_after, Some(19), "a's end after all of a's frames");
        let failed: Vec<AckReport> = acks.try_iter().filter(|r| r.failure.is_some()).collect();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].offset, 12);
        assert!(failed[0].failure.as_deref().is_some_and(|f| f.contains("cannot run this input")));
        assert_eq!(metrics.frames_failed.with_label_values(&["a", "detect"]).get(), 1);
    }

    /// When the scene stage is gone, every thread of the stage stops (no hang).
    #[test]
    fn the_stage_stops_when_the_scene_stage_is_gone() {
        let (codec, engines) = jittery_parts(2);
        let hub = FrameHub::new();
        let (acks_tx, _acks) = crossbeam_channel::unbounded();
        let lane = hub.lane(Arc::from("a"), 8, Overflow::Block);
        let feeder = std::thread::spawn(move || {
            // Pushes until the hub shuts down; never ends by itself.
            for seq in 0.. {
                if matches!(lane.push(frame("a", seq, 1, &acks_tx)), crate::pipeline::hub::Pushed::Closed) {
                    return;
                }
            }
        });
        let (out_tx, out) = crossbeam_channel::bounded(1);
        drop(out);
        let metrics = Arc::new(crate::telemetry::metrics::Metrics::new());
        let sup = Supervisor { health: Arc::new(Health::default()), metrics };
        let batching = Batching { max: 1, per_camera: 1, max_wait: Duration::from_millis(1) };
        let layout = Layout { workers: crate::detect::config::Workers::Count(2), threads_per_worker: 1 };
        run(codec, engines, hub.clone(), out_tx, batching, layout, &sup);
        hub.shutdown();
        feeder.join().unwrap();
    }
}
