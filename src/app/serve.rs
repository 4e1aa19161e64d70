//! `argus run`: builds the store, detector, captioner, sinks, pipelines and the HTTP API
//! from a validated configuration, then runs until every source ended (or forever with
//! the API) and a signal says stop. SIGHUP reloads cameras, zones and rules.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::info::{compiled_features, pipeline_docs, pipeline_summaries};
use super::running::{Running, start};
use super::scenes::{build_scenes, camera_contexts};
use super::{AppError, RunOptions};
use crate::api;
use crate::config::ValidConfig;
use crate::model::SCENE_CAPTIONER;
use crate::pipeline::snapshot::SnapshotBoard;
use crate::sinks::SinkContext;
use crate::store::EventStore;
use crate::store::sqlite::SqliteStore;
use crate::telemetry::health::{Health, State};
use crate::telemetry::metrics::Metrics;

/// How `argus run` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The configuration file (None: the default or embedded one); SIGHUP re-reads it.
    pub config: Option<PathBuf>,
    /// Exit once every source has ended and all events are written (default: keep
    /// serving the API until a signal).
    pub exit_when_done: bool,
    pub run: RunOptions,
    /// `--worker`: every camera from its pipeline's `[kafka]` topic (see
    /// `LoadedConfig::as_worker`); SIGHUP reloads the same way.
    pub worker: bool,
}

impl ServeOptions {
    /// The role in `/v1/info` and the fleet view.
    pub fn role(&self) -> &'static str {
        if self.worker { "worker" } else { "run" }
    }
}

/// Loads and validates; every problem in one error.
pub fn load_valid(path: Option<&Path>) -> Result<ValidConfig, AppError> {
    load_valid_as(path, false)
}

/// Like [`load_valid`]; with `worker`, as `argus run --worker` sees it.
pub fn load_valid_as(path: Option<&Path>, worker: bool) -> Result<ValidConfig, AppError> {
    let cfg = crate::config::load(path).map_err(|e| AppError::Config(format!("invalid configuration:\n{e}")))?;
    let cfg = if worker { cfg.as_worker().map_err(|issues| invalid(&issues))? } else { cfg };
    crate::config::validated(cfg).map_err(|issues| invalid(&issues))
}

fn invalid(issues: &[crate::model::ConfigIssue]) -> AppError {
    let text: Vec<String> = issues.iter().map(|i| format!("  {i}")).collect();
    AppError::Config(format!("invalid configuration ({} problem(s)):\n{}", issues.len(), text.join("\n")))
}

/// SIGHUP: re-reads the configuration the process started with and applies its
/// cameras. A configuration that does not load or validate is logged and ignored: the
/// running cameras keep going on the old one.
fn reload(opts: &ServeOptions, cfg: &ValidConfig, running: &mut Running, info: &RwLock<api::Info>) {
    tracing::info!(config = %cfg.file.display(), "SIGHUP: reloading the configuration");
    let new = match load_valid_as(opts.config.as_deref(), opts.worker) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(config = %cfg.file.display(), error = %e, "reload rejected; the running configuration stays");
            return;
        }
    };
    if new.argus != cfg.argus {
        tracing::warn!(
            "settings in the argus section (detector, sinks, server, limits) changed; they take effect after a restart, only cameras, zones and rules reload"
        );
    }
    match running.reload(&new, &new.validated, &opts.run) {
        Ok(s) => {
            let mut info = info.write().unwrap_or_else(|e| e.into_inner());
            info.pipelines = pipeline_summaries(&new);
            info.pipeline_docs = pipeline_docs(&new, &new.validated);
            drop(info);
            tracing::info!(added = ?s.added, removed = ?s.removed, restarted = ?s.restarted, unchanged = ?s.unchanged, needs_restart = ?s.needs_restart, "configuration reloaded");
        }
        Err(e) => tracing::error!(error = %e, "reload failed"),
    }
}

/// What the API is built from besides the configuration.
struct ApiParts {
    keys: api::auth::ApiKeys,
    store: Arc<dyn EventStore>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    info: Arc<RwLock<api::Info>>,
    live: Arc<api::live::LiveHub>,
    board: Arc<SnapshotBoard>,
    evidence: Option<Arc<crate::evidence::EvidenceStore>>,
    clips: Option<Arc<crate::evidence::clip::ClipStore>>,
}

/// Incident clips, when `[evidence.clip]` is on (validation refused it without
/// evidence or without GStreamer).
fn clip_setup(cfg: &ValidConfig, evidence_on: bool) -> Result<Option<crate::pipeline::ClipSetup>, AppError> {
    let e = &cfg.argus.evidence;
    if !e.clip.enabled || !evidence_on {
        return Ok(None);
    }
    let store = crate::evidence::clip::ClipStore::open(&e.dir, &e.clip, e.max_age_days).map_err(|err| {
        AppError::Config(format!(
            "{}: evidence.dir {}/clips: {err} (make it writable, or set [evidence.clip] enabled = false)",
            cfg.file.display(),
            e.dir.display()
        ))
    })?;
    #[cfg(feature = "gstreamer")]
    {
        let encoder: Arc<dyn Fn() -> Box<dyn crate::evidence::clip::ClipEncoder> + Send + Sync> =
            Arc::new(|| Box::new(crate::sources::gst::clip::GstClipEncoder));
        Ok(Some(crate::pipeline::ClipSetup { cfg: e.clip.clone(), store: Arc::new(store), encoder }))
    }
    #[cfg(not(feature = "gstreamer"))]
    {
        drop(store);
        Err(AppError::Config("evidence.clip.enabled: clips are encoded with GStreamer, and this build has no `gstreamer` feature".into()))
    }
}

/// The directories Argus writes: the store, the events file, the enabled spools.
fn written_dirs(cfg: &ValidConfig) -> Vec<std::path::PathBuf> {
    let parent = |p: &std::path::Path| p.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let s = &cfg.argus.sinks;
    let mut dirs = vec![parent(&cfg.argus.store.path)];
    if s.jsonl.enabled {
        dirs.push(parent(&s.jsonl.path));
    }
    if s.kafka.enabled {
        dirs.push(s.kafka.spool_dir.clone());
    }
    if s.clickhouse.enabled {
        dirs.push(s.clickhouse.spool_dir.clone());
    }
    if cfg.argus.evidence.enabled {
        dirs.push(cfg.argus.evidence.dir.clone());
    }
    dirs
}

/// The API keys (config and `ARGUS_API_KEYS`), checked before anything heavy starts: a
/// short key or webhook secret from the environment, or an API open to the network
/// without keys, is refused at once with the fix.
pub(super) fn api_keys(cfg: &ValidConfig) -> Result<api::auth::ApiKeys, AppError> {
    let s = &cfg.argus.server;
    let keys = api::auth::ApiKeys::from_env_and(&s.api_keys, &s.named_api_keys, s.protect_metrics).map_err(AppError::Config)?;
    let listen: std::net::SocketAddr = s.listen.parse().map_err(|e| AppError::Config(format!("server.listen: {e}")))?;
    if !s.enabled {
        return Ok(keys);
    }
    if std::env::var("ARGUS_WEBHOOK_SECRET").is_ok_and(|v| !v.is_empty() && v.len() < api::config::MIN_SECRET_LEN) {
        return Err(AppError::Config(format!(
            "ARGUS_WEBHOOK_SECRET is shorter than {} characters (fix: generate one, e.g. `openssl rand -hex 32`)",
            api::config::MIN_SECRET_LEN
        )));
    }
    if keys.enabled() {
        tracing::info!(keys = keys.len(), protect_metrics = s.protect_metrics, "API keys required");
    } else if listen.ip().is_loopback() {
        tracing::info!("no API keys configured: the API is open to this machine only ({})", s.listen);
    } else if s.allow_open_network {
        tracing::warn!(
            "no API keys configured and server.listen = {} is not loopback: anyone who reaches it can use the API (server.allow_open_network = true)",
            s.listen
        );
    } else {
        return Err(AppError::Config(format!(
            "{}: server.listen = {} is not loopback and no API keys are set, so anyone on the network could use the API \
             (fix: set server.api_keys or ARGUS_API_KEYS; or listen on 127.0.0.1; or, on a network you trust, server.allow_open_network = true)",
            cfg.file.display(),
            s.listen
        )));
    }
    Ok(keys)
}

/// The API's state: keys, limits, snapshots and the analysis workers (each loads its own
/// detector in the background; the analyse routes answer 503 until one is ready).
fn api_state(cfg: &ValidConfig, rt: &tokio::runtime::Runtime, parts: ApiParts) -> Result<api::AppState, AppError> {
    let s = &cfg.argus.server;
    let keys = parts.keys;
    let listen: std::net::SocketAddr = s.listen.parse().map_err(|e| AppError::Config(format!("server.listen: {e}")))?;
    let det_cfg = cfg.argus.detector.clone();
    let factory: crate::analysis::DetectorFactory = Arc::new(move || crate::detect::build_detector(&det_cfg).map_err(|e| e.to_string()));
    let cameras = Arc::new(camera_contexts(cfg, &cfg.validated));
    let pool = crate::analysis::AnalysisPool::start(
        crate::analysis::PoolSettings {
            workers: s.analyze_workers,
            queue: s.analyze_queue,
            max_side: s.max_image_side,
            max_pixels: cfg.argus.limits.max_frame_pixels,
            preload: s.analyze_preload,
            max_queued_bytes: (s.analyze_queue_mb * 1024.0 * 1024.0) as usize,
        },
        factory,
        cameras.clone(),
    )
    .map_err(AppError::Thread)?;
    let secret = std::env::var("ARGUS_WEBHOOK_SECRET").ok().filter(|v| !v.is_empty()).or_else(|| s.webhook_secret.clone());
    let destinations =
        Arc::new(api::destination::DestinationPolicy::new(&s.webhook_allow).map_err(|e| AppError::Config(format!("server.webhook_allow: {e}")))?);
    let client = {
        let _guard = rt.enter();
        api::webhook::client(&destinations).map_err(|e| AppError::Api(format!("building the webhook HTTP client: {e}")))?
    };
    let analysis = api::analysis::AnalysisApi {
        pool,
        cameras,
        tasks: Arc::new(crate::analysis::tasks::TaskStore::new(s.tasks_kept)),
        webhook: Arc::new(api::webhook::WebhookSettings {
            secret,
            destinations,
            attempts: s.webhook_attempts,
            timeout: Duration::from_secs_f64(s.webhook_timeout_s),
            first_backoff: Duration::from_secs(1),
        }),
        client,
        timeout: Duration::from_secs_f64(s.analyze_timeout_s),
        batch_max_items: s.batch_max_items,
    };
    let mut state = api::AppState::new(parts.store, parts.health, parts.metrics, parts.info, parts.live);
    state.snapshots = parts.board;
    state.evidence = parts.evidence;
    state.clips = parts.clips;
    state.analysis = Some(Arc::new(analysis));
    state.keys = Arc::new(keys);
    state.limits = api_limits(&cfg.argus.server, listen);
    Ok(state)
}

pub(super) fn api_limits(s: &api::config::ServerConfig, listen: std::net::SocketAddr) -> api::Limits {
    api::Limits {
        max_body_bytes: s.max_body_bytes,
        cors_origins: s.cors_origins.clone(),
        hosts: api::guard::HostPolicy::new(listen, &s.allowed_hosts),
        request_timeout: Duration::from_secs_f64(s.request_timeout_s),
    }
}

/// Binds `server.listen` and serves `state` until `shutdown` turns true.
pub(super) fn start_server(
    cfg: &ValidConfig,
    rt: &tokio::runtime::Runtime,
    state: api::AppState,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, AppError> {
    let addr: std::net::SocketAddr = cfg.argus.server.listen.parse().map_err(|e| AppError::Config(format!("server.listen: {e}")))?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).map_err(|source| AppError::Listen { addr: addr.to_string(), source })?;
    tracing::info!(%addr, "HTTP API listening");
    let limits = api::server::ConnectionLimits::from_config(&cfg.argus.server);
    Ok(rt.spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|v| *v).await;
        };
        if let Err(e) = api::server::serve(listener, api::router(state), limits, metrics, stop).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }))
}

/// Beyond the sinks' drain deadline, how long stopping may take: the stages' own bounded
/// waits (a Kafka hand-over up to 30 s, the last scene checkpoints up to 10 s), the API,
/// and a margin.
pub(super) const STOP_MARGIN: Duration = Duration::from_secs(60);

/// Flags the signal handlers set: stop (SIGINT, SIGTERM) and reload (SIGHUP).
pub(super) struct Signals {
    pub(super) interrupted: Arc<AtomicBool>,
    pub(super) reload: Arc<AtomicBool>,
}

pub(super) fn install_signals(rt: &tokio::runtime::Runtime) -> Signals {
    let s = Signals { interrupted: Arc::new(AtomicBool::new(false)), reload: Arc::new(AtomicBool::new(false)) };
    let flag = s.reload.clone();
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
    let flag = s.interrupted.clone();
    rt.spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stop requested; draining (a second SIGINT or SIGTERM exits at once)");
        flag.store(true, Ordering::SeqCst);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        // Whatever the drain was waiting for (a sink that cannot write, a pipe nobody
        // reads): the operator asked twice. Spools and offsets stay as they are, so the
        // next start re-delivers what was not durable yet.
        tracing::warn!("second stop request: exiting without finishing the drain");
        std::process::exit(130);
    });
    s
}

pub fn run(cfg: ValidConfig, opts: ServeOptions) -> Result<(), AppError> {
    tracing::info!(config = %cfg.file.display(), pipelines = cfg.pipelines.len(), "starting argus {}", env!("CARGO_PKG_VERSION"));
    let keys = api_keys(&cfg)?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());

    let sqlite = Arc::new(SqliteStore::open(&cfg.argus.store.path).map_err(AppError::Store)?);
    let store: Arc<dyn EventStore> = sqlite.clone();
    health.set_detector(State::Starting, None);
    let detector = match crate::detect::build_detector(&cfg.argus.detector) {
        Ok(d) => d,
        Err(e) => {
            health.set_detector(State::Error, Some(e.to_string()));
            return Err(AppError::Detector(e));
        }
    };
    let det_info = detector.info().clone();
    health.set_detector(State::Running, Some(format!("{} on {} ({})", det_info.model_id, det_info.backend, det_info.device)));

    let captioner = crate::caption::model::build(&cfg.argus.captioner, &cfg.argus.detector)
        .map_err(|source| AppError::Captioner { file: cfg.file.display().to_string(), source })?;
    let captioner_info = captioner.as_ref().map_or_else(|| SCENE_CAPTIONER.to_string(), |c| c.description().to_string());
    let scenes = build_scenes(&cfg, &cfg.validated, &opts.run)?.with_captioner(captioner).with_state_store(&cfg.argus.scene_state, sqlite);

    let sinks = crate::sinks::build(
        &cfg.argus.sinks,
        &SinkContext { metrics: metrics.clone(), health: health.clone(), store: store.clone(), retention_days: cfg.argus.store.retention_days },
    )
    .map_err(AppError::Sink)?;
    let api_store = crate::store::api_store(&cfg.argus.sinks.clickhouse)
        .map_err(|e| AppError::Sink(crate::sinks::SinkError(format!("sinks.clickhouse: {e}"))))?
        .unwrap_or_else(|| store.clone());
    tracing::info!(store = %api_store.describe(), "the API answers event queries from this store");
    let (mut bus, sink_threads) = crate::sinks::start(sinks, cfg.argus.limits.sink_queue, metrics.clone(), health.clone());
    let live_limits = api::live::LiveLimits { total: cfg.argus.server.max_live_clients, per_key: cfg.argus.server.max_live_clients_per_key };
    let live = api::live::LiveHub::with_limits(api::live::CLIENT_BUFFER, live_limits, metrics.clone());
    let board = Arc::new(SnapshotBoard::default());
    let evidence = crate::evidence::EvidenceStore::open(&cfg.argus.evidence)
        .map_err(|e| {
            AppError::Config(format!(
                "{}: evidence.dir {}: {e} (make it writable, or set [evidence] enabled = false)",
                cfg.file.display(),
                cfg.argus.evidence.dir.display()
            ))
        })?
        .map(Arc::new);
    let clips = clip_setup(&cfg, evidence.is_some())?;
    {
        let live = live.clone();
        bus.add_listener(move |ev| live.publish(ev));
    }

    let info = Arc::new(RwLock::new(api::Info {
        name: "argus",
        role: opts.role(),
        shard: None,
        fleet: None,
        version: env!("CARGO_PKG_VERSION"),
        schema: crate::model::SCHEMA,
        detector: Some(det_info),
        captioner: captioner_info,
        pipelines: pipeline_summaries(&cfg),
        features: compiled_features(),
        pipeline_docs: pipeline_docs(&cfg, &cfg.validated),
    }));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("argus-api").build().map_err(AppError::Thread)?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let fleet = super::fleet::start(&cfg, opts.role(), None, &health, &metrics)?;
    info.write().unwrap_or_else(|e| e.into_inner()).fleet = fleet.as_ref().map(|f| f.member.clone());
    let mut actions = None;
    let signals = install_signals(&rt);
    let server = if cfg.argus.server.enabled {
        let parts = ApiParts {
            keys,
            store: api_store,
            health: health.clone(),
            metrics: metrics.clone(),
            info: info.clone(),
            live,
            board: board.clone(),
            evidence: evidence.clone(),
            clips: clips.as_ref().map(|c| c.store.clone()),
        };
        let mut state = api_state(&cfg, &rt, parts)?;
        state.fleet = fleet.as_ref().map(|f| f.view.clone());
        state.pipeline_editor =
            Some(Arc::new(super::editor::FileEditor::new(opts.config.clone(), opts.worker, cfg.argus.server.pipeline_editors.clone(), signals.reload.clone())));
        actions = Some(state.actions.clone());
        Some(start_server(&cfg, &rt, state, metrics.clone(), shutdown_rx.clone())?)
    } else {
        None
    };

    let disk_stop = Arc::new(AtomicBool::new(false));
    if cfg.argus.limits.min_free_disk_mb > 0 {
        crate::telemetry::disk::spawn(written_dirs(&cfg), cfg.argus.limits.min_free_disk_mb, health.clone(), metrics.clone(), disk_stop.clone())
            .map_err(AppError::Thread)?;
    }
    let cx = crate::pipeline::StageContext { metrics: metrics.clone(), health: health.clone(), board, evidence, clips };
    let mut running = start(&cfg, scenes, detector, bus, cx)?;
    // Operators' actions go through the pipeline; the bus outlives the scenes while the
    // API serves, and is closed before the sinks are drained.
    let outlet = actions.as_ref().map(|slot| {
        let outlet = running.outlet();
        *slot.write() = Some(Arc::new(outlet.clone()) as Arc<dyn api::incidents::ActionOutlet>);
        outlet
    });
    health.set_pipeline(State::Running, None);
    let drain = Duration::from_secs_f64(cfg.argus.limits.drain_timeout_s);
    let mut sink_threads = Some(sink_threads);
    let mut finished = false;
    let mut panicked = None;
    while !signals.interrupted.load(Ordering::SeqCst) {
        if let Some(why) = health.panicked() {
            tracing::error!(reason = %why, "a thread panicked; stopping Argus");
            health.set_pipeline(State::Error, Some(why.clone()));
            panicked = Some(why);
            break;
        }
        if signals.reload.swap(false, Ordering::SeqCst) {
            reload(&opts, &cfg, &mut running, &info);
        }
        if !finished && running.wait_done(Duration::from_millis(200)) {
            finished = true;
            let keep_serving = !opts.exit_when_done && server.is_some();
            match (&outlet, keep_serving) {
                // The bus stays for operators' actions: wait until what was published
                // is written (the sinks go on running, idle).
                (Some(o), true) => {
                    let deadline = std::time::Instant::now() + drain;
                    while !o.all_durable() && std::time::Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                // The bus is gone, so each sink thread ends once its queue is written.
                _ => {
                    if let Some(o) = &outlet {
                        o.close();
                    }
                    if let Some(t) = sink_threads.take() {
                        t.drain(drain);
                    }
                }
            }
            health.set_pipeline(State::Ended, Some("every source ended; every event is stored".into()));
            tracing::info!(events = store.count().unwrap_or(0), "all sources ended; every event written");
            if !keep_serving {
                break;
            }
            tracing::info!("the API keeps serving the stored events (and takes operators' actions on incidents); Ctrl-C to exit");
        } else if finished {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Whatever the stop waits for (a stage that died, a source blocked on it), it ends
    // within the drain deadline plus a margin: then the process exits anyway.
    let watchdog_after = drain + STOP_MARGIN;
    std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(move || {
            std::thread::sleep(watchdog_after);
            tracing::error!(
                after_s = watchdog_after.as_secs_f64(),
                "stopping took longer than limits.drain_timeout_s allows; exiting now (spools and offsets re-deliver what was in flight)"
            );
            std::process::exit(1);
        })
        .map_err(AppError::Thread)?;
    running.stop();
    if let Some(o) = &outlet {
        o.close();
    }
    if let Some(t) = sink_threads {
        let stuck = t.drain(drain);
        if !stuck.is_empty() {
            tracing::error!(sinks = ?stuck, "sinks still busy at the drain deadline");
        }
    }
    let _ = shutdown_tx.send(true);
    disk_stop.store(true, Ordering::Relaxed);
    if let Some(f) = fleet {
        f.stop();
    }
    if let Some(s) = server {
        let _ = rt.block_on(async { tokio::time::timeout(api::server::DRAIN + Duration::from_secs(1), s).await });
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    tracing::info!(stored_events = store.count().unwrap_or(0), "argus stopped");
    match panicked {
        Some(why) => Err(AppError::Panicked(why)),
        None => Ok(()),
    }
}
