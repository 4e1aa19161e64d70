//! Still-image analysis for the API (`POST /v1/analyze`): a fixed pool of worker
//! threads, each with its own detector, fed by a bounded queue. Decoding, detection,
//! placing and judging run on the workers, never on the async runtime; a full queue is
//! refused at once (the caller answers 429 with a wait estimate) instead of growing.
//!
//! A worker loads its detector when its first request arrives (`server.analyze_preload`
//! loads at start instead): a pipeline that nobody sends images to does not hold a second
//! model and its engine's buffers (≈ 40 MB for NanoDet on ONNX Runtime).

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
    /// No detector loaded yet: the first request loads one (and waits for it).
    Idle,
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
    /// The images already waiting hold the queue's byte budget (`server.analyze_queue_mb`).
    #[error("the images waiting for analysis hold {queued_mb:.1} MiB (limit {limit_mb:.1} MiB); retry in about {retry_after_s} s")]
    BusyBytes { queued_mb: f64, limit_mb: f64, retry_after_s: u64 },
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
    /// Encoded image bytes of the requests in flight, and their budget.
    queued_bytes: Arc<AtomicUsize>,
    max_queued_bytes: usize,
}

pub struct PoolSettings {
    pub workers: usize,
    pub queue: usize,
    pub max_side: u32,
    /// `limits.max_frame_pixels`.
    pub max_pixels: u64,
    /// Load every worker's detector at start rather than at its first request.
    pub preload: bool,
    /// Encoded image bytes accepted and not finished, at most (one request larger than
    /// this is still taken when nothing else waits): a count alone lets 8 uploads of
    /// 10 MB each sit in memory.
    pub max_queued_bytes: usize,
}

impl AnalysisPool {
    /// Starts the workers. Each loads its detector at its first request, or at once
    /// with `preload` (the pool is then `Loading` until the first one is ready).
    pub fn start(settings: PoolSettings, factory: DetectorFactory, cameras: Arc<CameraContexts>) -> std::io::Result<Self> {
        let workers = settings.workers.max(1);
        // `in_flight` enforces queue + workers; the channel is as large so that a job a
        // worker has not picked up yet never makes a free slot look full.
        let (tx, rx) = bounded::<Job>(settings.queue.max(1) + workers);
        let state = Arc::new(RwLock::new(if settings.preload { PoolState::Loading } else { PoolState::Idle }));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let avg_us = Arc::new(AtomicU64::new(200_000));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        for i in 0..workers {
            let worker = Worker {
                queued_bytes: queued_bytes.clone(),
                index: i,
                factory: factory.clone(),
                state: state.clone(),
                in_flight: in_flight.clone(),
                avg_us: avg_us.clone(),
                cameras: cameras.clone(),
                limits: crate::model::ImageLimits { max_side: settings.max_side, max_pixels: settings.max_pixels },
            };
            let (rx, preload) = (rx.clone(), settings.preload);
            std::thread::Builder::new().name(format!("argus-analyze-{i}")).spawn(move || worker.run(rx, preload))?;
        }
        Ok(Self { tx, queue_limit: settings.queue.max(1), workers, state, in_flight, avg_us, queued_bytes, max_queued_bytes: settings.max_queued_bytes.max(1) })
    }

    pub fn state(&self) -> PoolState {
        self.state.read().clone()
    }

    /// Requests accepted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Encoded image bytes of the requests accepted and not finished.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::SeqCst)
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
        // A job accepted before the detector is loaded waits in the queue for the load
        // (bounded by the caller's timeout), rather than being refused: under load-on-
        // first-use, requests racing the first one would otherwise get 503s.
        if let PoolState::Failed(e) = self.state() {
            return Err(SubmitError::NotReady(format!("the model failed to load: {e}")));
        }
        // Reserve a slot atomically: two requests racing for the last one get one each.
        let cap = self.queue_limit + self.workers;
        if self.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < cap).then_some(n + 1)).is_err() {
            return Err(self.busy());
        }
        let size = req.bytes.len();
        let max = self.max_queued_bytes;
        if self.queued_bytes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| (b == 0 || b + size <= max).then_some(b + size)).is_err() {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
            return Err(SubmitError::BusyBytes { queued_mb: mib(self.queued_bytes()), limit_mb: mib(max), retry_after_s: self.retry_after_s() });
        }
        match self.tx.try_send(Job { req, on_start, on_done }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.queued_bytes.fetch_sub(size, Ordering::SeqCst);
                Err(self.busy())
            }
        }
    }

    fn busy(&self) -> SubmitError {
        SubmitError::Busy { queued: self.tx.len(), limit: self.queue_limit, retry_after_s: self.retry_after_s() }
    }
}

/// One worker thread: its detector (once loaded) and what it reports to the pool.
struct Worker {
    index: usize,
    factory: DetectorFactory,
    state: Arc<RwLock<PoolState>>,
    in_flight: Arc<AtomicUsize>,
    queued_bytes: Arc<AtomicUsize>,
    avg_us: Arc<AtomicU64>,
    cameras: Arc<CameraContexts>,
    limits: crate::model::ImageLimits,
}

impl Worker {
    fn run(self, rx: crossbeam_channel::Receiver<Job>, preload: bool) {
        let mut detector = None;
        let mut failed: Option<String> = None;
        if preload {
            self.load(&mut detector, &mut failed);
        }
        for job in rx.iter() {
            (job.on_start)();
            if detector.is_none() && failed.is_none() {
                self.load(&mut detector, &mut failed);
            }
            let t0 = Instant::now();
            let result = match (&mut detector, &failed) {
                (Some(d), _) => analyse(d.as_mut(), &job.req, self.limits, &self.cameras),
                // Jobs already queued when the load failed are answered, never dropped.
                (None, why) => Err(AnalyzeError::ModelUnavailable(why.clone().unwrap_or_default())),
            };
            if detector.is_some() {
                let us = t0.elapsed().as_micros() as u64;
                let old = self.avg_us.load(Ordering::Relaxed);
                self.avg_us.store((old * 7 + us) / 8, Ordering::Relaxed);
            }
            self.queued_bytes.fetch_sub(job.req.bytes.len(), Ordering::SeqCst);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            (job.on_done)(result);
        }
    }

    fn load(&self, detector: &mut Option<Box<dyn Detector>>, failed: &mut Option<String>) {
        {
            let mut s = self.state.write();
            if *s == PoolState::Idle {
                *s = PoolState::Loading;
            }
        }
        let t0 = Instant::now();
        match (self.factory)() {
            Ok(d) => {
                tracing::info!(worker = self.index, ms = t0.elapsed().as_millis() as u64, "analysis worker loaded its detector");
                *self.state.write() = PoolState::Ready;
                *detector = Some(d);
            }
            Err(e) => {
                tracing::error!(worker = self.index, error = %e, "analysis worker could not load its detector");
                let mut s = self.state.write();
                if *s != PoolState::Ready {
                    *s = PoolState::Failed(e.clone());
                }
                *failed = Some(e);
            }
        }
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
    use crate::detect::{DetectError, DetectorInfo, DetectorParts};
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
        fn into_parts(self: Box<Self>, _workers: usize) -> DetectorParts {
            DetectorParts::Whole(self)
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
        counted_pool(delay_ms, queue, factory_fails, true, Arc::new(AtomicUsize::new(0)))
    }

    /// A pool whose factory counts the detectors it made.
    fn counted_pool(delay_ms: u64, queue: usize, factory_fails: bool, preload: bool, made: Arc<AtomicUsize>) -> AnalysisPool {
        let factory: DetectorFactory = Arc::new(move || {
            made.fetch_add(1, Ordering::SeqCst);
            if factory_fails { Err("no weights".into()) } else { Ok(Box::new(SlowFake(Duration::from_millis(delay_ms))) as Box<dyn Detector>) }
        });
        AnalysisPool::start(
            PoolSettings { workers: 1, queue, max_side: 64, max_pixels: 64 * 64, preload, max_queued_bytes: 64 << 20 },
            factory,
            Arc::new(CameraContexts::default()),
        )
        .unwrap()
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

    #[test]
    fn a_lazy_pool_loads_its_detector_at_the_first_request_only() {
        let made = Arc::new(AtomicUsize::new(0));
        let p = counted_pool(0, 2, false, false, made.clone());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!((p.state(), made.load(Ordering::SeqCst)), (PoolState::Idle, 0), "nothing loaded before a request");
        let (tx, rx) = crossbeam_channel::unbounded();
        for _ in 0..3 {
            let tx = tx.clone();
            p.submit(req(png(16, 8)), Box::new(|| {}), Box::new(move |r| tx.send(r).unwrap())).unwrap();
            let ev = rx.recv_timeout(Duration::from_secs(5)).unwrap().expect("the first request waits for the load, then is analysed");
            assert_eq!(ev.objects.len(), 1);
        }
        assert_eq!((p.state(), made.load(Ordering::SeqCst)), (PoolState::Ready, 1), "loaded once");
    }

    #[test]
    fn a_lazy_pool_whose_model_fails_answers_every_queued_request_then_refuses() {
        let made = Arc::new(AtomicUsize::new(0));
        let p = counted_pool(0, 4, true, false, made.clone());
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut accepted = 0;
        for _ in 0..3 {
            let tx = tx.clone();
            if p.submit(req(png(8, 8)), Box::new(|| {}), Box::new(move |r| tx.send(r).unwrap())).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted >= 1, "the first request is accepted and triggers the load");
        for _ in 0..accepted {
            match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                Err(AnalyzeError::ModelUnavailable(why)) => assert!(why.contains("no weights"), "{why}"),
                other => panic!("expected ModelUnavailable, got {other:?}"),
            }
        }
        assert_eq!(p.in_flight(), 0, "every accepted request was answered");
        match p.submit(req(png(8, 8)), Box::new(|| {}), Box::new(|_| {})) {
            Err(SubmitError::NotReady(why)) => assert!(why.contains("no weights"), "{why}"),
            other => panic!("expected NotReady, got {other:?}"),
        }
        assert_eq!(made.load(Ordering::SeqCst), 1, "a failed load is not retried per request");
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_as_well_as_requests() {
        // Real images (the fake detector then takes 300 ms each, so they stay queued).
        let noisy = |w: u32, h: u32| {
            let mut seed = 0x2545_f491_u32;
            let img = image::RgbImage::from_fn(w, h, |_, _| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                image::Rgb([(seed >> 24) as u8, (seed >> 16) as u8, (seed >> 8) as u8])
            });
            let mut out = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
            out
        };
        let (big, small) = (noisy(64, 64), noisy(8, 8));
        let budget = big.len() + big.len() / 2;
        assert!(small.len() <= big.len() / 2, "{} vs {}", small.len(), big.len());
        let factory: DetectorFactory = Arc::new(|| Ok(Box::new(SlowFake(Duration::from_millis(300))) as Box<dyn Detector>));
        let p = AnalysisPool::start(
            PoolSettings { workers: 1, queue: 8, max_side: 4096, max_pixels: 1 << 24, preload: true, max_queued_bytes: budget },
            factory,
            Arc::new(CameraContexts::default()),
        )
        .unwrap();
        wait_ready(&p);
        let (tx, rx) = crossbeam_channel::unbounded();
        let t = tx.clone();
        p.submit(req(big.clone()), Box::new(|| {}), Box::new(move |r| t.send(r.is_ok()).unwrap())).unwrap();
        assert_eq!(p.queued_bytes(), big.len());
        // A second large one would exceed the budget: refused at once, with 8 slots free.
        match p.submit(req(big.clone()), Box::new(|| {}), Box::new(|_| {})) {
            Err(SubmitError::BusyBytes { limit_mb, retry_after_s, .. }) => assert!(limit_mb > 0.0 && retry_after_s >= 1),
            other => panic!("expected BusyBytes, got {other:?}"),
        }
        assert_eq!(p.in_flight(), 1, "the refused request holds no slot");
        // A small one still fits; once both finish, the budget is free again.
        let t = tx.clone();
        p.submit(req(small), Box::new(|| {}), Box::new(move |r| t.send(r.is_ok()).unwrap())).unwrap();
        for _ in 0..2 {
            assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "analysed");
        }
        assert_eq!((p.queued_bytes(), p.in_flight()), (0, 0));
        p.submit(req(big), Box::new(|| {}), Box::new(|_| {})).unwrap();
    }

    #[test]
    fn requests_racing_a_load_wait_for_it_instead_of_being_refused() {
        let factory: DetectorFactory = Arc::new(|| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(Box::new(SlowFake(Duration::ZERO)) as Box<dyn Detector>)
        });
        for preload in [true, false] {
            let p = AnalysisPool::start(
                PoolSettings { workers: 1, queue: 4, max_side: 64, max_pixels: 64 * 64, preload, max_queued_bytes: 1 << 20 },
                factory.clone(),
                Arc::new(CameraContexts::default()),
            )
            .unwrap();
            let (tx, rx) = crossbeam_channel::unbounded();
            for _ in 0..3 {
                let tx = tx.clone();
                p.submit(req(png(8, 8)), Box::new(|| {}), Box::new(move |r| tx.send(r.is_ok()).unwrap())).expect("accepted while loading");
            }
            for _ in 0..3 {
                assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "analysed once loaded (preload {preload})");
            }
        }
    }
}
