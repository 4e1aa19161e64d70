//! `argus bench`: detector latency per backend and end-to-end throughput on the demo
//! video, each printed with its ratio to a baseline measured in the same run.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Args;

use argus::config;
use argus::detect;
use argus::detect::config::BackendKind;
use argus::model::Event;
use argus::sinks::{Sink, SinkError};
use argus::telemetry::health::Health;
use argus::telemetry::metrics::Metrics;

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Timed detector calls per backend (after 3 warm-up calls).
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    /// Image used for the detector latency runs.
    #[arg(long, default_value = "/usr/share/darknet/data/person.jpg")]
    image: PathBuf,
    /// Frames of the demo pipeline for the end-to-end run (0 = skip it).
    #[arg(long, default_value_t = 200)]
    frames: u64,
    /// Backends to compare; the first (with the first model) is the baseline.
    #[arg(long, value_delimiter = ',', default_value = "ort,tch")]
    backends: Vec<BackendKind>,
    /// Models to compare.
    #[arg(long, value_delimiter = ',', default_value = "nanodet,yolov3-tiny")]
    models: Vec<String>,
    /// Also measure scene state checkpoints (bytes, µs per camera) on the first model's
    /// end-to-end objects and on synthetic crowds.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    scene_state: bool,
    /// Also measure JPEG encoding of frames for `argus ingest` against the image crate.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    encode: bool,
    /// Camera counts for the end-to-end runs (the demo video as that many file cameras).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    cameras: Vec<usize>,
    /// Also run the plain Python loop (scripts/bench/python_loop.py: OpenCV decode + ONNX
    /// Runtime + NMS, same video and model) as the end-to-end baseline.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    python: bool,
}

struct Stats {
    median_ms: f64,
    p90_ms: f64,
    mean_ms: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Stats { median_ms: at(0.5), p90_ms: at(0.9), mean_ms: v.iter().sum::<f64>() / v.len() as f64 }
}

/// Counts events and the people in per-frame summaries, and discards them: measures the
/// pipeline, not the disk.
struct CountingSink {
    events: Arc<AtomicU64>,
    people: Arc<AtomicU64>,
    summaries: Arc<AtomicU64>,
    /// The summaries themselves, when kept (the scene state section replays them).
    kept: Option<Arc<parking_lot::Mutex<Vec<Arc<Event>>>>>,
}

impl Sink for CountingSink {
    fn name(&self) -> &str {
        "bench"
    }
    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        self.events.fetch_add(events.len() as u64, Ordering::Relaxed);
        for e in events.iter().filter(|e| e.kind == argus::model::EventKind::FrameAnalyzed) {
            self.summaries.fetch_add(1, Ordering::Relaxed);
            if let Some(k) = &self.kept {
                k.lock().push(e.clone());
            }
            self.people.fetch_add(e.objects.iter().filter(|o| &*o.class == "person").count() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let cfg = config::load(args.config.as_deref()).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    let bytes = std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let image = argus::model::decode_image(&bytes)?;
    let det_cfg = &cfg.argus.detector;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // The cores the pipeline's detector uses (on CPU): the bound is one call on all of them.
    let workers = det_cfg.workers.resolve("cpu", det_cfg.threads, cores);
    let detector_threads = workers * det_cfg.threads;
    println!(
        "argus bench: image {} ({}x{}), {} iterations after 3 warm-up; {cores} cores; the pipeline runs {workers} model worker{} x {} thread{} (detector.workers = {:?}); single calls below use all {detector_threads} thread{}",
        args.image.display(),
        image.width,
        image.height,
        args.iterations,
        if workers == 1 { "" } else { "s" },
        det_cfg.threads,
        if det_cfg.threads == 1 { "" } else { "s" },
        det_cfg.workers,
        if detector_threads == 1 { "" } else { "s" },
    );
    println!("{:<12} {:<8} {:>10} {:>10} {:>10} {:>10} {:>9}", "model", "backend", "median ms", "p90 ms", "mean ms", "frames/s", "vs base");
    let mut baseline: Option<f64> = None;
    let mut detector_fps = std::collections::HashMap::new();
    for model in &args.models {
        for backend in &args.backends {
            let mut d = cfg.argus.detector.clone();
            d.backend = *backend;
            d.model = model.clone();
            d.threads = detector_threads;
            let mut det = match detect::build_detector(&d) {
                Ok(det) => det,
                Err(e) => {
                    println!("{model:<12} {:<8} unavailable: {e}", backend.as_str());
                    continue;
                }
            };
            for _ in 0..3 {
                det.detect(&[&image])?;
            }
            let mut times = Vec::with_capacity(args.iterations);
            for _ in 0..args.iterations.max(1) {
                let t0 = Instant::now();
                det.detect(&[&image])?;
                times.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            let s = stats(times);
            let base = *baseline.get_or_insert(s.median_ms);
            println!(
                "{model:<12} {:<8} {:>10.2} {:>10.2} {:>10.2} {:>10.1} {:>8.2}x",
                backend.as_str(),
                s.median_ms,
                s.p90_ms,
                s.mean_ms,
                1000.0 / s.median_ms,
                base / s.median_ms
            );
            drop(det);
            // The bound: the engine's run on one prepared tensor, nothing else.
            let alone = engine_alone(&d, &image, args.iterations)?;
            println!(
                "{:<12} {:<8} {:>10.2} {:>10.2} {:>10.2} {:>10.1} {:>8.2}x  (model alone: the engine on a prepared tensor)",
                "",
                backend.as_str(),
                alone.median_ms,
                alone.p90_ms,
                alone.mean_ms,
                1000.0 / alone.median_ms,
                base / alone.median_ms
            );
            detector_fps.entry(model.clone()).or_insert(1000.0 / alone.median_ms);
            if workers > 1 {
                let mut layout = d.clone();
                layout.threads = det_cfg.threads;
                let fps = engines_at_once(&layout, &image, workers, args.iterations)?;
                println!(
                    "{:<12} {:<8} {:>43.1} {:>8.2}x  (model alone, the pipeline's layout: {workers} engines x {} thread{} at once)",
                    "",
                    backend.as_str(),
                    fps,
                    fps * base / 1000.0,
                    det_cfg.threads,
                    if det_cfg.threads == 1 { "" } else { "s" }
                );
            }
        }
    }

    if args.encode {
        super::encode::run(&image, args.iterations, cfg.argus.ingest.jpeg_quality)?;
    }
    if args.frames == 0 {
        return if args.scene_state { super::scene_state::run(&cfg, None) } else { Ok(()) };
    }
    let mut replay: Option<(Vec<Arc<Event>>, f64)> = None;
    let backend = args.backends.first().copied().unwrap_or(BackendKind::Ort);
    println!("end to end on the demo pipeline ({} backend, {} frames per camera, sinks: a counter; bound = the model alone):", backend.as_str(), args.frames);
    let python = if args.python && backend == BackendKind::Ort { python_baseline(&cfg, args.frames, detector_threads) } else { None };
    for model in &args.models {
        let Some(bound_fps) = detector_fps.get(model).copied() else { continue };
        for &cameras in &args.cameras {
            let keep = args.scene_state && replay.is_none() && cameras == 1;
            let run = end_to_end(&cfg, model, backend, args.frames, keep, None, cameras)?;
            let vs_python = match (&python, model.as_str(), cameras) {
                (Some(p), "nanodet", 1) => format!(", {:.2}x the python loop", run.fps / p),
                _ => String::new(),
            };
            println!(
                "  {model:<12} {cameras} camera{} {} frames in {:.2} s = {:.1} fps ({:.2}x of the bound {bound_fps:.1} fps{vs_python}), {:.1} people per frame, {} events",
                if cameras == 1 { " " } else { "s" },
                run.frames,
                run.elapsed,
                run.fps,
                run.fps / bound_fps,
                run.people_per_frame,
                run.events
            );
            if keep {
                replay = Some((run.kept, run.fps));
            }
        }
    }
    if args.scene_state
        && let Some(model) = args.models.iter().find(|m| detector_fps.contains_key(*m))
    {
        checkpoint_cost(&cfg, model, backend, args.frames)?;
    }
    if args.scene_state {
        // The first model's objects through fresh scenes of the same cameras (the real
        // configuration: its summaries every 5 s, not the benchmark's every frame).
        super::scene_state::run(&cfg, replay.as_ref().map(|(e, fps)| (e.as_slice(), *fps)))?;
    }
    Ok(())
}

/// One end-to-end run's figures.
struct EndToEnd {
    frames: u64,
    elapsed: f64,
    fps: f64,
    people_per_frame: f64,
    events: u64,
    /// The summaries, when asked for (the scene state section replays them).
    kept: Vec<Arc<Event>>,
}

/// The demo pipeline over `frames` frames with `model`, its first camera repeated
/// `cameras` times, into a counting sink; with scene state checkpoints into `state` when
/// given.
fn end_to_end(
    cfg: &config::LoadedConfig,
    model: &str,
    backend: BackendKind,
    frames: u64,
    keep: bool,
    state: Option<Arc<dyn argus::pipeline::scene_state::StateStore>>,
    cameras: usize,
) -> Result<EndToEnd> {
    let mut cfg = cfg.clone();
    cfg.argus.detector.model = model.to_string();
    cfg.argus.detector.backend = backend;
    if cameras > 1
        && let Some((_, p)) = cfg.pipelines.first_mut()
        && let Some(first) = p.cameras.first().cloned()
    {
        p.cameras = (1..=cameras).map(|i| argus::sources::config::CameraConfig { id: format!("{}-{i}", first.id), ..first.clone() }).collect();
        cfg.pipelines.truncate(1);
    }
    // A summary per frame, to count what the model finds on every frame.
    for (_, p) in &mut cfg.pipelines {
        p.events.frame_summary_every_s = 1e-6;
    }
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let detector = detect::build_detector(&cfg.argus.detector)?;
    let mut scenes = argus::app::build_scenes(&cfg, &Default::default(), &argus::app::RunOptions { max_frames: Some(frames) })?;
    if let Some(store) = state {
        let on = argus::pipeline::scene_state::SceneStateConfig { enabled: true, ..cfg.argus.scene_state.clone() };
        scenes = scenes.with_state_store(&on, store);
    }
    let kept = keep.then(Arc::default);
    let sink = CountingSink { events: Arc::default(), people: Arc::default(), summaries: Arc::default(), kept: kept.clone() };
    let (events, people, summaries) = (sink.events.clone(), sink.people.clone(), sink.summaries.clone());
    let (bus, sinks) = argus::sinks::start(vec![Box::new(sink)], 1024, metrics.clone(), health.clone());
    let t0 = Instant::now();
    let running = argus::app::start(&cfg, scenes, detector, bus, argus::pipeline::StageContext::new(metrics.clone(), health))?;
    while !running.wait_done(Duration::from_millis(100)) {}
    running.stop();
    sinks.drain(Duration::from_secs(60));
    let elapsed = t0.elapsed().as_secs_f64();
    let frames: u64 = cfg.pipelines.iter().flat_map(|(_, p)| &p.cameras).map(|c| metrics.frames_processed.with_label_values(&[&c.id]).get()).sum();
    Ok(EndToEnd {
        frames,
        elapsed,
        fps: frames as f64 / elapsed,
        people_per_frame: people.load(Ordering::Relaxed) as f64 / summaries.load(Ordering::Relaxed).max(1) as f64,
        events: events.load(Ordering::Relaxed),
        kept: kept.map(|k| std::mem::take(&mut *k.lock())).unwrap_or_default(),
    })
}

/// The engine alone on the image's prepared tensor: median, p90 and mean of its runs.
fn engine_alone(d: &argus::detect::config::DetectorConfig, image: &argus::model::RgbImage, iterations: usize) -> Result<Stats> {
    let (spec, mut engine) = detect::build_engine(d)?;
    let (w, h) = (spec.input.width as usize, spec.input.height as usize);
    let mut input = vec![0f32; 3 * w * h];
    argus::detect::preprocess::preprocess_into(image, &spec.input, &mut input);
    for _ in 0..3 {
        engine.infer(&input, 1, h, w)?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations.max(1) {
        let t0 = Instant::now();
        engine.infer(&input, 1, h, w)?;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(stats(times))
}

/// `engines` engines of `d`'s model running calls on one prepared tensor each at once,
/// `iterations` calls each after 3 warm-up calls: their frames per second together.
fn engines_at_once(d: &argus::detect::config::DetectorConfig, image: &argus::model::RgbImage, engines: usize, iterations: usize) -> Result<f64> {
    let loaded: Vec<_> = (0..engines).map(|_| detect::build_engine(d)).collect::<Result<_, _>>()?;
    let start = std::sync::Barrier::new(engines + 1);
    let (start, iterations) = (&start, iterations.max(1));
    let elapsed = std::thread::scope(|s| -> Result<f64> {
        let running: Vec<_> = loaded
            .into_iter()
            .map(|(spec, mut engine)| {
                s.spawn(move || -> Result<()> {
                    let (w, h) = (spec.input.width as usize, spec.input.height as usize);
                    let mut input = vec![0f32; 3 * w * h];
                    argus::detect::preprocess::preprocess_into(image, &spec.input, &mut input);
                    let warm = (0..3).try_for_each(|_| engine.infer(&input, 1, h, w).map(drop));
                    // Waits even after a failure: the others (and the timer) wait for this one.
                    start.wait();
                    warm?;
                    for _ in 0..iterations {
                        engine.infer(&input, 1, h, w)?;
                    }
                    Ok(())
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for r in running {
            r.join().map_err(|_| anyhow!("an engine thread panicked"))??;
        }
        Ok(t0.elapsed().as_secs_f64())
    })?;
    Ok((engines * iterations) as f64 / elapsed)
}

/// The plain Python loop's frames per second over the same video and model (NanoDet),
/// or `None` (with the reason printed) where Python lacks its packages.
fn python_baseline(cfg: &config::LoadedConfig, frames: u64, threads: usize) -> Option<f64> {
    let video = cfg.pipelines.first().and_then(|(_, p)| p.cameras.first()).map(|c| c.source.trim_start_matches("file://").to_string())?;
    let mut cmd = super::memory::python_loop(&super::memory::python(), &video, threads, frames);
    cmd.arg("--threshold").arg(cfg.argus.detector.score_threshold.to_string());
    match cmd.stderr(std::process::Stdio::null()).output() {
        Ok(out) if out.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let fps = v["fps"].as_f64()?;
            println!(
                "  python loop  1 camera  {} frames at {fps:.1} fps (baseline: OpenCV decode + onnxruntime {} on {threads} thread{} + NMS, nanodet)",
                v["frames"],
                v["onnxruntime"].as_str().unwrap_or("?"),
                if threads == 1 { "" } else { "s" }
            );
            Some(fps)
        }
        Ok(out) => {
            println!(
                "  python loop: not measured ({}); run scripts/setup for .deps/pyenv",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("failed")
            );
            None
        }
        Err(e) => {
            println!("  python loop: not measured ({e}); run scripts/setup for .deps/pyenv");
            None
        }
    }
}

/// End-to-end fps with scene state checkpoints (into a SQLite store, as `argus run`
/// keeps them) against without, alternating so that drift on a shared machine hits both;
/// the best of each.
fn checkpoint_cost(cfg: &config::LoadedConfig, model: &str, backend: BackendKind, frames: u64) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("argus-bench-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store: Arc<dyn argus::pipeline::scene_state::StateStore> = Arc::new(argus::store::sqlite::SqliteStore::open(&dir.join("state.db"))?);
    let (mut off, mut on) = (0.0f64, 0.0f64);
    for _ in 0..2 {
        off = off.max(end_to_end(cfg, model, backend, frames, false, None, 1)?.fps);
        on = on.max(end_to_end(cfg, model, backend, frames, false, Some(store.clone()), 1)?.fps);
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "  {model:<12} scene state checkpoints every {} s (SQLite): {on:.1} fps with, {off:.1} fps without (baseline) = {:.2}x, cost {:.1} %",
        cfg.argus.scene_state.checkpoint_every_s,
        on / off,
        (1.0 - on / off) * 100.0
    );
    Ok(())
}
