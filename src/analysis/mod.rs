//! Still-image analysis for the API (`POST /v1/analyze`): a fixed pool of worker
//! threads, each with its own detector, fed by a bounded queue. Decoding, detection,
//! placing and judging run on the workers, never on the async runtime; a full queue is
//! refused at once (the caller answers 429 with a wait estimate) instead of growing.

pub mod judge;
pub mod still;
pub mod tasks;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError, bounded};
use parking_lot::RwLock;

use crate::detect::Detector;
use crate::model::Event;
use crate::model::decode_image_limited;
pub use judge::{CameraContext, CameraContexts};
pub use still::{AnalyzeError, analyze_image};

/// What one request asks for.
#[derive(Debug, Clone)]
pub struct AnalysisRequest {
    /// Names the image in the event (`camera_id` when no camera is given).
    pub source: String,
    pub bytes: Vec<u8>,
    /// Judge the image as this camera sees it: its calibration, zones and rules.
    pub camera_id: Option<String>,
}

type OnStart = Box<dyn FnOnce() + Send>;
type OnDone = Box<dyn FnOnce(Result<Event, AnalyzeError>) + Send>;

struct Job {
    req: AnalysisRequest,
    on_start: OnStart,
    on_done: OnDone,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PoolState {
    Loading,
    Ready,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("the analysis detector is not ready: {0}")]
    NotReady(String),
    #[error("{queued} analysis requests are already waiting (limit {limit}); retry in about {retry_after_s} s")]
    Busy { queued: usize, limit: usize, retry_after_s: u64 },
}

/// Makes one detector per worker (each worker owns its own: detectors are not `Sync`).
pub type DetectorFactory = Arc<dyn Fn() -> Result<Box<dyn Detector>, String> + Send + Sync>;

pub struct AnalysisPool {
    tx: Sender<Job>,
    queue_limit: usize,
    workers: usize,
    state: Arc<RwLock<PoolState>>,
    /// Requests accepted and not finished (queued + running).
    in_flight: Arc<AtomicUsize>,
    /// Exponential average of one analysis, in microseconds (for Retry-After).
    avg_us: Arc<AtomicU64>,
}

pub struct PoolSettings {
    pub workers: usize,
    pub queue: usize,
    pub max_side: u32,
    /// `limits.max_frame_pixels`.
    pub max_pixels: u64,
}

impl AnalysisPool {
    /// Starts the workers; each loads its detector in the background (the pool is
    /// `Loading` until the first one is ready).
    pub fn start(settings: PoolSettings, factory: DetectorFactory, cameras: Arc<CameraContexts>) -> std::io::Result<Self> {
        let workers = settings.workers.max(1);
        // `in_flight` enforces queue + workers; the channel is as large so that a job a
        // worker has not picked up yet never makes a free slot look full.
        let (tx, rx) = bounded::<Job>(settings.queue.max(1) + workers);
        let state = Arc::new(RwLock::new(PoolState::Loading));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let avg_us = Arc::new(AtomicU64::new(200_000));
        for i in 0..workers {
            let (rx, state, in_flight, avg_us, factory, cameras) =
                (rx.clone(), state.clone(), in_flight.clone(), avg_us.clone(), factory.clone(), cameras.clone());
            let limits = crate::model::ImageLimits { max_side: settings.max_side, max_pixels: settings.max_pixels };
            std::thread::Builder::new().name(format!("argus-analyze-{i}")).spawn(move || {
                let mut detector = match factory() {
                    Ok(d) => {
                        *state.write() = PoolState::Ready;
                        d
                    }
                    Err(e) => {
                        tracing::error!(worker = i, error = %e, "analysis worker could not load its detector");
                        let mut s = state.write();
                        if *s != PoolState::Ready {
                            *s = PoolState::Failed(e);
                        }
                        return;
                    }
                };
                for job in rx.iter() {
                    (job.on_start)();
                    let t0 = Instant::now();
                    let result = analyse(detector.as_mut(), &job.req, limits, &cameras);
                    let us = t0.elapsed().as_micros() as u64;
                    let old = avg_us.load(Ordering::Relaxed);
                    avg_us.store((old * 7 + us) / 8, Ordering::Relaxed);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    (job.on_done)(result);
                }
            })?;
        }
        Ok(Self { tx, queue_limit: settings.queue.max(1), workers, state, in_flight, avg_us })
    }

    pub fn state(&self) -> PoolState {
        self.state.read().clone()
    }

    /// Requests accepted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Requests that can still be accepted right now.
    pub fn free_slots(&self) -> usize {
        (self.queue_limit + self.workers).saturating_sub(self.in_flight())
    }

    /// Seconds until a slot is likely free: the queue ahead divided among the workers.
    pub fn retry_after_s(&self) -> u64 {
        let per = self.avg_us.load(Ordering::Relaxed) as f64 / 1e6;
        ((self.in_flight() as f64 / self.workers as f64) * per).ceil().max(1.0) as u64
    }

    /// Queues a request without waiting. `on_start` runs when a worker picks it up,
    /// `on_done` with its result, both on the worker thread.
    pub fn submit(&self, req: AnalysisRequest, on_start: OnStart, on_done: OnDone) -> Result<(), SubmitError> {
        match self.state() {
            PoolState::Ready => {}
            PoolState::Loading => return Err(SubmitError::NotReady("the model is still loading".into())),
            PoolState::Failed(e) => return Err(SubmitError::NotReady(format!("the model failed to load: {e}"))),
        }
        // Reserve a slot atomically: two requests racing for the last one get one each.
        let cap = self.queue_limit + self.workers;
        if self.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < cap).then_some(n + 1)).is_err() {
            return Err(self.busy());
        }
        match self.tx.try_send(Job { req, on_start, on_done }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Err(self.busy())
            }
        }
    }

    fn busy(&self) -> SubmitError {
        SubmitError::Busy { queued: self.tx.len(), limit: self.queue_limit, retry_after_s: self.retry_after_s() }
    }
}

fn analyse(detector: &mut dyn Detector, req: &AnalysisRequest, limits: crate::model::ImageLimits, cameras: &CameraContexts) -> Result<Event, AnalyzeError> {
    let image = decode_image_limited(&req.bytes, limits)?;
    let camera = match &req.camera_id {
        Some(id) => Some(cameras.get(id).ok_or_else(|| AnalyzeError::UnknownCamera(id.clone()))?),
        None => None,
    };
    let mut event = crate::analysis::analyze_image(detector, &image, &req.source)?;
    if let Some(cam) = camera {
        judge::judge(&mut event, cam);
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{DetectError, DetectorInfo};
    use crate::model::Detection;
    use crate::model::RgbImage;
    use std::time::Duration;

    struct SlowFake(Duration);

    impl Detector for SlowFake {
        fn info(&self) -> &DetectorInfo {
            static INFO: std::sync::OnceLock<DetectorInfo> = std::sync::OnceLock::new();
            INFO.get_or_init(|| DetectorInfo {
                model: "fake".into(),
                model_id: "fake@sha256:0".into(),
                backend: "fake",
                device: "cpu".into(),
                input_size: [32, 32],
                score_threshold: 0.3,
                nms_iou: 0.5,
                max_engine_batch: 1,
            })
        }
        fn detect(&mut self, images: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, DetectError> {
            std::thread::sleep(self.0);
            Ok(images
                .iter()
                .map(|im| {
                    vec![Detection { class_id: 0, class: Arc::from("person"), score: 0.9, bbox: [1.0, 1.0, im.width as f32 - 1.0, im.height as f32 - 1.0] }]
                })
                .collect())
        }
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::new(w, h).write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    fn pool(delay_ms: u64, queue: usize, factory_fails: bool) -> AnalysisPool {
        let factory: DetectorFactory =
            Arc::new(
                move || if factory_fails { Err("no weights".into()) } else { Ok(Box::new(SlowFake(Duration::from_millis(delay_ms))) as Box<dyn Detector>) },
            );
        AnalysisPool::start(PoolSettings { workers: 1, queue, max_side: 64, max_pixels: 64 * 64 }, factory, Arc::new(CameraContexts::default())).unwrap()
    }

    fn wait_ready(p: &AnalysisPool) {
        for _ in 0..200 {
            if p.state() != PoolState::Loading {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn req(bytes: Vec<u8>) -> AnalysisRequest {
        AnalysisRequest { source: "upload".into(), bytes, camera_id: None }
    }

    #[test]
    fn analyses_and_reports_errors() {
        let p = pool(0, 2, false);
        wait_ready(&p);
        let (tx, rx) = crossbeam_channel::unbounded();
        for bytes in [png(16, 8), b"junk".to_vec(), png(100, 8)] {
            let tx = tx.clone();
            p.submit(req(bytes), Box::new(|| {}), Box::new(move |r| tx.send(r).unwrap())).unwrap();
            let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            match r {
                Ok(ev) => assert_eq!((ev.frame.width, ev.objects.len()), (16, 1)),
                Err(e) => assert!(matches!(e, AnalyzeError::Image(_)), "{e}"),
            }
        }
        let tx2 = tx.clone();
        let mut r = req(png(8, 8));
        r.camera_id = Some("nope".into());
        p.submit(r, Box::new(|| {}), Box::new(move |r| tx2.send(r).unwrap())).unwrap();
        assert!(matches!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Err(AnalyzeError::UnknownCamera(_))));
    }

    #[test]
    fn a_full_queue_is_refused_not_grown() {
        let p = pool(300, 1, false);
        wait_ready(&p);
        // One running + one queued fill it.
        for _ in 0..2 {
            p.submit(req(png(8, 8)), Box::new(|| {}), Box::new(|_| {})).unwrap();
        }
        match p.submit(req(png(8, 8)), Box::new(|| {}), Box::new(|_| {})) {
            Err(SubmitError::Busy { retry_after_s, .. }) => assert!(retry_after_s >= 1),
            other => panic!("expected Busy, got {other:?}"),
        }
        assert_eq!(p.free_slots(), 0);
    }

    #[test]
    fn a_failed_model_is_not_ready_with_the_reason() {
        let p = pool(0, 1, true);
        wait_ready(&p);
        match p.submit(req(png(8, 8)), Box::new(|| {}), Box::new(|_| {})) {
            Err(SubmitError::NotReady(why)) => assert!(why.contains("no weights"), "{why}"),
            other => panic!("expected NotReady, got {other:?}"),
        }
    }
}
