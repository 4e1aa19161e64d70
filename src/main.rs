//! The `argus` command line: run, analyze, check, calibrate, bench.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};

use argus::config::{self, BackendKind, LoadedConfig, LogFormat};
use argus::telemetry::health::{Health, State};
use argus::telemetry::metrics::Metrics;
use argus::sinks::{Sink, jsonl::JsonlSink, stdout::StdoutSink, store::StoreSink};
use argus::store::{EventStore, sqlite::SqliteStore};
use argus::{api, detect, pipeline};

mod bench;
#[cfg(feature = "clickhouse")]
mod bench_clickhouse;
#[cfg(feature = "kafka")]
mod bench_kafka;
#[cfg(any(feature = "clickhouse", feature = "kafka"))]
mod bench_util;
mod soak;

#[derive(Parser)]
#[command(name = "argus", version, about = "Event-driven stream processor for camera and drone frames")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines and the HTTP API (default config: config/argus.toml, or the
    /// embedded demo when that file is absent).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Exit once every source has ended and all events are written (default: keep
        /// serving the API until Ctrl-C).
        #[arg(long)]
        exit_when_done: bool,
        /// Stop each source after this many frames.
        #[arg(long)]
        max_frames: Option<u64>,
    },
    /// Detect objects in still images and print one argus.event.v1 JSON per image.
    Analyze {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override detector.backend.
        #[arg(long)]
        backend: Option<BackendKind>,
        /// Override detector.model.
        #[arg(long)]
        model: Option<String>,
        /// Override detector.score_threshold.
        #[arg(long)]
        threshold: Option<f32>,
        /// Pretty-print the JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// Validate the config and pipelines without running anything.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Fit and print each camera's homography, each point's error in metres and a
    /// [cameras.calibration] snippet to paste (from the config, or from a points file).
    Calibrate {
        #[arg(long, short, conflicts_with = "points")]
        config: Option<PathBuf>,
        /// Only this camera.
        #[arg(long, conflicts_with = "points")]
        camera: Option<String>,
        /// A points file instead of the config: image_points, world_points and optionally
        /// max_error_m, camera_matrix, distortion and an [origin] table.
        #[arg(long)]
        points: Option<PathBuf>,
    },
    /// Measure detector latency per backend and end-to-end throughput on the demo video.
    Bench(bench::BenchArgs),
    /// Run N live RTSP test cameras for a while; print per-camera rates and RSS growth.
    Soak(soak::SoakArgs),
    /// Rows/s into ClickHouse through the sink's code path, next to clickhouse-client.
    #[cfg(feature = "clickhouse")]
    BenchClickhouse(bench_clickhouse::BenchClickHouseArgs),
    /// Events/s into Kafka through the sink's code path, next to a raw producer.
    #[cfg(feature = "kafka")]
    BenchKafka(bench_kafka::BenchKafkaArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, exit_when_done, max_frames } => run(config, exit_when_done, max_frames),
        Command::Analyze { images, config, backend, model, threshold, pretty } => analyze(images, config, backend, model, threshold, pretty),
        Command::Check { config } => return check(config),
        Command::Calibrate { config, camera, points } => match points {
            Some(p) => calibrate_points(&p),
            None => calibrate(config, camera),
        },
        Command::Bench(args) => bench::run(args),
        Command::Soak(args) => soak::run(args),
        #[cfg(feature = "clickhouse")]
        Command::BenchClickhouse(args) => bench_clickhouse::run(args),
        #[cfg(feature = "kafka")]
        Command::BenchKafka(args) => bench_kafka::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("argus: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads and validates; prints every issue and fails when there is one.
/// SIGHUP: re-reads the configuration the process started with and applies its
/// cameras. A configuration that does not load or validate is logged and ignored:
/// the running cameras keep going on the old one.
fn reload(path: Option<&std::path::Path>, cfg: &LoadedConfig, running: &mut pipeline::Running, info: &std::sync::RwLock<api::Info>, max_frames: Option<u64>) {
    tracing::info!(config = %cfg.file.display(), "SIGHUP: reloading the configuration");
    let new = match load_valid(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(config = %cfg.file.display(), error = %format!("{e:#}"), "reload rejected; the running configuration stays");
            return;
        }
    };
    if new.argus != cfg.argus {
        tracing::warn!("settings in the argus section (detector, sinks, server, limits) changed; they take effect after a restart, only cameras, zones and rules reload");
    }
    match running.reload(&new, &pipeline::RunOptions { max_frames }) {
        Ok(s) => {
            info.write().unwrap_or_else(|e| e.into_inner()).pipelines = pipeline_summaries(&new);
            tracing::info!(added = ?s.added, removed = ?s.removed, restarted = ?s.restarted, unchanged = s.unchanged, "configuration reloaded");
        }
        Err(e) => tracing::error!(error = %e, "reload failed"),
    }
}

/// Adds the ClickHouse sink when configured; returns the store the API should query
/// (ClickHouse with `serve_api`, else none: the embedded store).
#[cfg(feature = "clickhouse")]
fn clickhouse_sink(cfg: &LoadedConfig, sinks: &mut Vec<Box<dyn Sink>>, metrics: &Arc<Metrics>, health: &Arc<Health>) -> Result<Option<Arc<dyn EventStore>>> {
    let ch = &cfg.argus.sinks.clickhouse;
    if !ch.enabled {
        return Ok(None);
    }
    let sink = argus::store::clickhouse::open_sink(ch, metrics.clone(), health.clone()).map_err(|e| anyhow!("sinks.clickhouse: {e}"))?;
    sinks.push(Box::new(sink));
    if !ch.serve_api {
        return Ok(None);
    }
    let store = argus::store::clickhouse::ClickHouseStore::new(ch).map_err(|e| anyhow!("sinks.clickhouse: {e}"))?;
    Ok(Some(Arc::new(store)))
}

#[cfg(not(feature = "clickhouse"))]
fn clickhouse_sink(_: &LoadedConfig, _: &mut Vec<Box<dyn Sink>>, _: &Arc<Metrics>, _: &Arc<Health>) -> Result<Option<Arc<dyn EventStore>>> {
    // `argus check` already refuses `enabled = true` in this build.
    Ok(None)
}

#[cfg(feature = "kafka")]
fn kafka_sink(cfg: &LoadedConfig, sinks: &mut Vec<Box<dyn Sink>>, metrics: &Arc<Metrics>, health: &Arc<Health>) -> Result<()> {
    let k = &cfg.argus.sinks.kafka;
    if k.enabled {
        sinks.push(Box::new(argus::sinks::kafka::open_sink(k, metrics.clone(), health.clone()).map_err(|e| anyhow!("sinks.kafka: {e}"))?));
    }
    Ok(())
}

#[cfg(not(feature = "kafka"))]
fn kafka_sink(_: &LoadedConfig, _: &mut Vec<Box<dyn Sink>>, _: &Arc<Metrics>, _: &Arc<Health>) -> Result<()> {
    // `argus check` already refuses `enabled = true` in this build.
    Ok(())
}

fn pipeline_summaries(cfg: &LoadedConfig) -> Vec<api::PipelineSummary> {
    cfg.pipelines
        .iter()
        .map(|(f, p)| api::PipelineSummary {
            name: p.name.clone(),
            file: f.display().to_string(),
            cameras: p.cameras.iter().map(|c| c.id.clone()).collect(),
            zones: p.zones.iter().map(|z| z.id.clone()).collect(),
            rules: p.rules.iter().map(|r| format!("{}:{}", r.kind(), r.id())).collect(),
        })
        .collect()
}

fn load_valid(path: Option<&std::path::Path>) -> Result<LoadedConfig> {
    let cfg = config::load(path).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    let issues = config::validate(&cfg);
    if !issues.is_empty() {
        let text: Vec<String> = issues.iter().map(|i| format!("  {i}")).collect();
        return Err(anyhow!("invalid configuration ({} problem(s)):\n{}", issues.len(), text.join("\n")));
    }
    Ok(cfg)
}

fn init_logging(cfg: &LoadedConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.argus.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.argus.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn check(path: Option<PathBuf>) -> ExitCode {
    match config::load(path.as_deref()) {
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Ok(cfg) => {
            let issues = config::validate(&cfg);
            if issues.is_empty() {
                let cams: usize = cfg.pipelines.iter().map(|(_, p)| p.cameras.len()).sum();
                println!(
                    "{}: OK ({} pipeline(s), {cams} camera(s), detector {} on {})",
                    cfg.file.display(),
                    cfg.pipelines.len(),
                    cfg.argus.detector.model,
                    cfg.argus.detector.backend.as_str()
                );
                ExitCode::SUCCESS
            } else {
                for i in &issues {
                    eprintln!("{i}");
                }
                eprintln!("{} problem(s) found", issues.len());
                ExitCode::from(2)
            }
        }
    }
}

fn calibrate(path: Option<PathBuf>, only: Option<String>) -> Result<()> {
    // Not `load_valid`: a calibration that validation refuses is exactly what this
    // command must show point by point.
    let cfg = config::load(path.as_deref()).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    let mut found = false;
    let mut refused = Vec::new();
    for (file, p) in &cfg.pipelines {
        for cam in &p.cameras {
            if only.as_deref().is_some_and(|c| c != cam.id) {
                continue;
            }
            found = true;
            let Some(cal) = &cam.calibration else {
                let how = if cam.drone.is_some() { "a drone, placed per frame from telemetry" } else { "no calibration" };
                println!("camera {} ({}): {how}\n", cam.id, file.display());
                continue;
            };
            let label = format!("camera {} ({})", cam.id, file.display());
            if let Err(e) = calibrate_one(&label, cal, Some(cal.max_error_m), cam.origin.as_ref()) {
                refused.push(format!("{}: camera `{}`: cameras.calibration.{}: {e} (fix: {})", file.display(), cam.id, e.key(), e.fix()));
            }
        }
    }
    if !found {
        return Err(anyhow!("no camera {:?} in the configured pipelines", only.unwrap_or_default()));
    }
    if !refused.is_empty() {
        return Err(anyhow!("{} calibration(s) refused:\n  {}", refused.len(), refused.join("\n  ")));
    }
    Ok(())
}

fn calibrate_points(path: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let pts = argus::geo::calibrate::PointsFile::parse(path, &text).map_err(|e| anyhow!(e))?;
    calibrate_one(&format!("points file {}", path.display()), &pts.calibration(), pts.max_error_m, pts.origin.as_ref())
        .map_err(|e| anyhow!("{}: {}: {e} (fix: {})", path.display(), e.key(), e.fix()))
}

/// Prints the fit of one calibration and, when it is accepted, the snippet to paste.
fn calibrate_one(label: &str, cal: &config::CalibrationConfig, max_error_m: Option<f64>, origin: Option<&config::OriginConfig>) -> Result<(), argus::geo::CalibrationError> {
    use argus::geo::calibrate;
    let fit = argus::geo::fit_points(cal)?;
    let verdict = fit.check(cal.max_error_m, cal.max_outliers);
    print!("{}", calibrate::report(label, cal, &fit, &verdict));
    if verdict.is_ok() {
        println!("\n{}", calibrate::snippet(cal, &fit, max_error_m, origin));
    } else {
        println!();
    }
    verdict
}

fn analyze(images: Vec<PathBuf>, path: Option<PathBuf>, backend: Option<BackendKind>, model: Option<String>, threshold: Option<f32>, pretty: bool) -> Result<()> {
    let cfg = config::load(path.as_deref()).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    init_logging(&cfg);
    let mut d = cfg.argus.detector.clone();
    if let Some(b) = backend {
        d.backend = b;
    }
    if let Some(m) = model {
        d.model = m;
    }
    if let Some(t) = threshold {
        d.score_threshold = t;
    }
    let mut detector = detect::build_detector(&d).context("loading the detector")?;
    let mut failed = 0;
    for img in &images {
        let name = img.display().to_string();
        let result = std::fs::read(img)
            .map_err(|e| anyhow!("{name}: {e}"))
            .and_then(|bytes| argus::model::decode_image(&bytes).map_err(|e| anyhow!("{name}: {e}")))
            .and_then(|rgb| argus::analysis::analyze_image(detector.as_mut(), &rgb, &name).map_err(|e| anyhow!("{name}: {e}")));
        match result {
            Ok(ev) => {
                let s = if pretty { serde_json::to_string_pretty(&ev)? } else { serde_json::to_string(&ev)? };
                println!("{s}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("argus: {e}");
            }
        }
    }
    if failed > 0 {
        return Err(anyhow!("{failed} of {} image(s) could not be analysed", images.len()));
    }
    Ok(())
}

/// The API's state: keys, limits, snapshots and the analysis workers (each loads its own
/// detector in the background; the analyse routes answer 503 until one is ready).
#[allow(clippy::too_many_arguments)]
fn api_state(
    cfg: &config::LoadedConfig,
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn EventStore>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    info: Arc<std::sync::RwLock<api::Info>>,
    live: Arc<api::live::LiveHub>,
    board: Arc<argus::pipeline::snapshot::SnapshotBoard>,
) -> Result<api::AppState> {
    let s = &cfg.argus.server;
    let keys = api::auth::ApiKeys::from_env_and(&s.api_keys, s.protect_metrics);
    if keys.enabled() {
        tracing::info!(keys = keys.len(), protect_metrics = s.protect_metrics, "API keys required");
    } else {
        let loopback = s.listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
        if loopback {
            tracing::info!("no API keys configured: the API is open to this machine only ({})", s.listen);
        } else {
            tracing::warn!("no API keys configured and server.listen = {} is not loopback: anyone who reaches it can use the API (set server.api_keys or ARGUS_API_KEYS)", s.listen);
        }
    }
    let det_cfg = cfg.argus.detector.clone();
    let factory: argus::analysis::DetectorFactory = Arc::new(move || detect::build_detector(&det_cfg).map_err(|e| e.to_string()));
    let cameras = Arc::new(argus::analysis::CameraContexts::from_config(cfg));
    let pool = argus::analysis::AnalysisPool::start(
        argus::analysis::PoolSettings { workers: s.analyze_workers, queue: s.analyze_queue, max_side: s.max_image_side },
        factory,
        cameras.clone(),
    )?;
    let secret = std::env::var("ARGUS_WEBHOOK_SECRET").ok().filter(|v| !v.is_empty()).or_else(|| s.webhook_secret.clone());
    let client = {
        let _guard = rt.enter();
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().context("building the webhook HTTP client")?
    };
    let analysis = api::analyze::AnalysisApi {
        pool,
        cameras,
        tasks: Arc::new(argus::analysis::tasks::TaskStore::new(s.tasks_kept)),
        webhook: Arc::new(api::webhook::WebhookSettings {
            secret,
            attempts: s.webhook_attempts,
            timeout: Duration::from_secs_f64(s.webhook_timeout_s),
            first_backoff: Duration::from_secs(1),
        }),
        client,
        timeout: Duration::from_secs_f64(s.analyze_timeout_s),
        batch_max_items: s.batch_max_items,
    };
    let mut state = api::AppState::new(store, health, metrics, info, live);
    state.snapshots = board;
    state.analysis = Some(Arc::new(analysis));
    state.keys = Arc::new(keys);
    state.limits = api::Limits { max_body_bytes: s.max_body_bytes, cors_origins: s.cors_origins.clone() };
    Ok(state)
}

fn run(path: Option<PathBuf>, exit_when_done: bool, max_frames: Option<u64>) -> Result<()> {
    let cfg = load_valid(path.as_deref())?;
    init_logging(&cfg);
    tracing::info!(config = %cfg.file.display(), pipelines = cfg.pipelines.len(), "starting argus {}", env!("CARGO_PKG_VERSION"));
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());

    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&cfg.argus.store.path).with_context(|| "opening the event store")?);
    health.set_detector(State::Starting, None);
    let detector = match detect::build_detector(&cfg.argus.detector) {
        Ok(d) => d,
        Err(e) => {
            health.set_detector(State::Error, Some(e.to_string()));
            return Err(anyhow!(e).context("loading the detector"));
        }
    };
    let det_info = detector.info().clone();
    health.set_detector(State::Running, Some(format!("{} on {} ({})", det_info.model_id, det_info.backend, det_info.device)));

    let captioner = argus::caption::model::build(&cfg.argus.captioner, &cfg.argus.detector)
        .with_context(|| format!("{}: loading the captioning model ([captioner])", cfg.file.display()))?;
    let captioner_info = captioner.as_ref().map_or_else(|| argus::model::SCENE_CAPTIONER.to_string(), |c| c.description().to_string());
    let scenes = pipeline::build_scenes(&cfg, &pipeline::RunOptions { max_frames })?.with_captioner(captioner);

    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if cfg.argus.sinks.stdout.enabled {
        sinks.push(Box::new(StdoutSink));
    }
    if cfg.argus.sinks.jsonl.enabled {
        sinks.push(Box::new(JsonlSink::open(&cfg.argus.sinks.jsonl.path).map_err(|e| anyhow!("sinks.jsonl: {e}"))?));
    }
    sinks.push(Box::new(StoreSink { store: store.clone() }));
    kafka_sink(&cfg, &mut sinks, &metrics, &health)?;
    let api_store = clickhouse_sink(&cfg, &mut sinks, &metrics, &health)?.unwrap_or_else(|| store.clone());
    tracing::info!(store = %api_store.describe(), "the API answers event queries from this store");
    let (mut bus, sink_threads) = argus::sinks::start(sinks, cfg.argus.limits.sink_queue, metrics.clone(), health.clone());
    let live = api::live::LiveHub::new(api::live::CLIENT_BUFFER, metrics.clone());
    let board = Arc::new(argus::pipeline::snapshot::SnapshotBoard::default());
    {
        let live = live.clone();
        bus.add_listener(move |ev| live.publish(ev));
    }

    let info = Arc::new(std::sync::RwLock::new(api::Info {
        name: "argus",
        version: env!("CARGO_PKG_VERSION"),
        schema: argus::model::SCHEMA,
        detector: Some(det_info),
        captioner: captioner_info,
        pipelines: pipeline_summaries(&cfg),
        features: api::build_features(),
    }));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("argus-api").build()?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let server = if cfg.argus.server.enabled {
        let addr: std::net::SocketAddr = cfg.argus.server.listen.parse().context("server.listen")?;
        let state = api_state(&cfg, &rt, api_store, health.clone(), metrics.clone(), info.clone(), live, board.clone())?;
        let mut rx = shutdown_rx.clone();
        let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
        tracing::info!(%addr, "HTTP API listening");
        Some(rt.spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, api::router(state)).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }))
    } else {
        None
    };

    let interrupted = Arc::new(AtomicBool::new(false));
    let reload_requested = Arc::new(AtomicBool::new(false));
    {
        let flag = reload_requested.clone();
        rt.spawn(async move {
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGHUP handler; configuration reload is unavailable");
                    return;
                }
            };
            while hup.recv().await.is_some() {
                flag.store(true, Ordering::SeqCst);
            }
        });
    }
    {
        let flag = interrupted.clone();
        rt.spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stop requested; draining");
            flag.store(true, Ordering::SeqCst);
        });
    }

    let mut running = pipeline::start(&cfg, scenes, detector, bus, metrics.clone(), health.clone(), board)?;
    health.set_pipeline(State::Running, None);
    let mut sink_threads = Some(sink_threads);
    let mut finished = false;
    while !interrupted.load(Ordering::SeqCst) {
        if reload_requested.swap(false, Ordering::SeqCst) {
            reload(path.as_deref(), &cfg, &mut running, &info, max_frames);
        }
        if !finished && running.wait_done(Duration::from_millis(200)) {
            finished = true;
            // The bus is gone, so each sink thread ends once its queue is written.
            for h in sink_threads.take().into_iter().flatten() {
                let _ = h.join();
            }
            health.set_pipeline(State::Ended, Some("every source ended; every event is stored".into()));
            tracing::info!(events = store.count().unwrap_or(0), "all sources ended; every event written");
            if exit_when_done || server.is_none() {
                break;
            }
            tracing::info!("the API keeps serving the stored events; Ctrl-C to exit");
        } else if finished {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    running.stop();
    for h in sink_threads.into_iter().flatten() {
        let _ = h.join();
    }
    let _ = shutdown_tx.send(true);
    if let Some(s) = server {
        let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), s).await });
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    tracing::info!(stored_events = store.count().unwrap_or(0), "argus stopped");
    Ok(())
}
