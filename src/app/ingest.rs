//! `argus ingest`: the fleet's front tier. Runs this shard's RTSP and file cameras of
//! the pipeline files without a detector and publishes each sampled frame (after
//! `fps_cap`) to its pipeline's `[kafka]` topic, where `argus run` workers analyse them.
//! The HTTP API answers health, metrics, `/v1/info` (with the shard) and `/v1/cameras`
//! (this shard's cameras only).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::AppError;
use super::info::{compiled_features, pipeline_summaries};
use super::serve::{STOP_MARGIN, api_keys, api_limits, install_signals, start_server};
use crate::api;
use crate::config::ValidConfig;
use crate::pipeline::hub::{FrameHub, Overflow};
use crate::sinks::frames::forward::{ForwardSettings, Route, Tally};
use crate::sources::shard::Shard;
use crate::sources::{self, CameraSource, SourceContext, SourceKind, SourceSpec};
use crate::telemetry::health::{Health, State};
use crate::telemetry::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub config: Option<PathBuf>,
    pub shard: Shard,
    /// Where the shard came from, for the log and `/v1/info`.
    pub shard_from: String,
    /// Exit once every source has ended and its frames are confirmed.
    pub exit_when_done: bool,
    pub max_frames: Option<u64>,
}

/// What this shard runs.
#[derive(Debug, Default)]
pub struct IngestPlan {
    pub cameras: Vec<(SourceSpec, Route)>,
    /// Cameras of other shards (counted, for the log).
    pub other_shards: usize,
    /// `source = "kafka"` cameras: already on a topic, nothing to ingest.
    pub kafka_cameras: usize,
}

/// This shard's cameras and where each one's frames go. A camera whose pipeline has no
/// `[kafka]` table has nowhere to go: refused, with the file and the fix.
pub fn plan(cfg: &ValidConfig, shard: Shard, max_frames: Option<u64>) -> Result<IngestPlan, AppError> {
    let mut out = IngestPlan::default();
    let mut homeless = Vec::new();
    for (file, p) in &cfg.pipelines {
        for cam in &p.cameras {
            if cam.kind() == SourceKind::Kafka {
                out.kafka_cameras += 1;
                continue;
            }
            let Some(k) = &p.kafka else {
                homeless.push(format!("{}: camera `{}`", file.display(), cam.id));
                continue;
            };
            if !shard.owns(&cam.id) {
                out.other_shards += 1;
                continue;
            }
            let mut spec = SourceSpec::from_camera(cam, &p.name, max_frames);
            spec.max_pixels = cfg.argus.limits.max_frame_pixels;
            out.cameras.push((spec, Route { brokers: k.brokers.clone(), topic: k.topic.clone() }));
        }
    }
    if !homeless.is_empty() {
        return Err(AppError::Config(format!(
            "argus ingest publishes each camera to its pipeline's [kafka] topic, but these pipelines have none:\n  {}\n(fix: add [kafka] with brokers, topic and group_id — the topic and consumer group of the analysis workers)",
            homeless.join("\n  ")
        )));
    }
    Ok(out)
}

pub fn run_ingest(cfg: ValidConfig, opts: IngestOptions) -> Result<(), AppError> {
    tracing::info!(config = %cfg.file.display(), shard = %opts.shard, shard_from = %opts.shard_from, "starting argus {} ingest", env!("CARGO_PKG_VERSION"));
    let keys = api_keys(&cfg)?;
    let plan = plan(&cfg, opts.shard, opts.max_frames)?;
    tracing::info!(cameras = plan.cameras.len(), other_shards = plan.other_shards, kafka_cameras = plan.kafka_cameras, "this shard's cameras");
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    // Nothing to load: readiness then depends on the cameras and the broker.
    health.set_detector(State::Running, Some("none: argus ingest publishes frames, the workers analyse them".into()));
    let tally = Tally { metrics: metrics.clone(), health: health.clone() };
    let ing = &cfg.argus.ingest;
    let routes: HashMap<Arc<str>, Route> = plan.cameras.iter().map(|(s, r)| (s.camera_id.clone(), r.clone())).collect();
    let mut publisher = publisher(ing, routes, tally.clone())?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("argus-api").build().map_err(AppError::Thread)?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mine: Vec<String> = plan.cameras.iter().map(|(s, _)| s.camera_id.to_string()).collect();
    let mut pipelines = pipeline_summaries(&cfg);
    for p in &mut pipelines {
        p.cameras.retain(|c| mine.contains(c));
    }
    let info = Arc::new(RwLock::new(api::Info {
        name: "argus",
        version: env!("CARGO_PKG_VERSION"),
        role: "ingest",
        fleet: None,
        shard: Some(api::ShardInfo { index: opts.shard.index, count: opts.shard.count, from: opts.shard_from.clone(), map: crate::sources::shard::MAP }),
        schema: crate::model::SCHEMA,
        detector: None,
        captioner: "none (argus ingest)".into(),
        pipelines,
        features: compiled_features(),
        pipeline_docs: super::info::pipeline_docs(&cfg, &cfg.validated),
    }));
    let fleet = super::fleet::start(&cfg, "ingest", Some(opts.shard.to_string()), &health, &metrics)?;
    info.write().unwrap_or_else(|e| e.into_inner()).fleet = fleet.as_ref().map(|f| f.member.clone());
    let server = if cfg.argus.server.enabled {
        // No events here: the API's event routes read the fleet's ClickHouse when one is
        // configured, else an empty in-memory store.
        let store = match crate::store::api_store(&cfg.argus.sinks.clickhouse).map_err(|e| AppError::Config(format!("sinks.clickhouse: {e}")))? {
            Some(s) => s,
            None => Arc::new(crate::store::sqlite::SqliteStore::open(std::path::Path::new(":memory:")).map_err(AppError::Store)?),
        };
        let live = api::live::LiveHub::with_limits(api::live::CLIENT_BUFFER, api::live::LiveLimits::default(), metrics.clone());
        let mut state = api::AppState::new(store, health.clone(), metrics.clone(), info, live);
        state.keys = Arc::new(keys);
        let listen = cfg.argus.server.listen.parse().map_err(|e| AppError::Config(format!("server.listen: {e}")))?;
        state.limits = api_limits(&cfg.argus.server, listen);
        state.fleet = fleet.as_ref().map(|f| f.view.clone());
        Some(start_server(&cfg, &rt, state, metrics.clone(), shutdown_rx)?)
    } else {
        None
    };
    let signals = install_signals(&rt);

    let hub = FrameHub::with_lane_bytes((cfg.argus.limits.frame_queue_mb * 1024.0 * 1024.0) as usize);
    let mut stops = Vec::new();
    let mut threads = Vec::new();
    for (spec, route) in plan.cameras {
        health.register_source(&spec.camera_id, &spec.pipeline, &spec.redacted(), spec.live);
        // Live cameras keep their newest frames while the broker is slow; recordings wait.
        let overflow = if spec.live { Overflow::DropOldest } else { Overflow::Block };
        let lane = hub.lane(spec.camera_id.clone(), cfg.argus.limits.frame_queue, overflow);
        tracing::info!(camera = %spec.camera_id, source = %spec.redacted(), topic = %route.topic, "ingesting");
        let cx = SourceContext { stop: Arc::new(AtomicBool::new(false)), metrics: metrics.clone(), health: health.clone(), durability: Default::default() };
        stops.push(cx.stop.clone());
        threads.push(sources::spawn(Box::new(CameraSource { spec, lane }), cx).map_err(AppError::Thread)?);
    }
    health.set_pipeline(State::Running, None);

    let settings = ForwardSettings {
        jpeg_quality: ing.jpeg_quality,
        max_message_bytes: ing.max_message_bytes,
        encode_threads: ing.encode_threads,
        max_batch: ing.encode_threads.max(1) * 2,
        flush_timeout: Duration::from_millis(ing.message_timeout_ms + 1000),
    };
    let forward_stop = Arc::new(AtomicBool::new(false));
    let forwarding = {
        let (hub, tally, stop) = (hub.clone(), tally.clone(), forward_stop.clone());
        crate::telemetry::supervise::Supervisor { health: health.clone(), metrics: metrics.clone() }
            .spawn("ingest-publish", move || {
                let done = crate::sinks::frames::forward::forward(&hub, publisher.as_mut(), &settings, &tally, &stop);
                tracing::info!(offered = done.offered, dropped = done.dropped, unconfirmed = done.unconfirmed, "ingest publisher stopped");
            })
            .map_err(AppError::Thread)?
    };

    if mine.is_empty() {
        tracing::warn!(shard = %opts.shard, "no camera maps to this shard; nothing to ingest");
    }
    let mut finished = false;
    let mut panicked = None;
    while !signals.interrupted.load(Ordering::SeqCst) {
        if let Some(why) = health.panicked() {
            tracing::error!(reason = %why, "a thread panicked; stopping");
            panicked = Some(why);
            break;
        }
        if signals.reload.swap(false, Ordering::SeqCst) {
            tracing::warn!("SIGHUP: argus ingest does not reload; restart it to apply a new configuration (other replicas keep their cameras)");
        }
        if !finished && forwarding.is_finished() {
            finished = true;
            health.set_pipeline(State::Ended, Some("every source ended; its frames are handed to the broker".into()));
            tracing::info!("every source ended");
            if opts.exit_when_done || server.is_none() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let drain = Duration::from_secs_f64(cfg.argus.limits.drain_timeout_s);
    let watchdog_after = drain + STOP_MARGIN;
    std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(move || {
            std::thread::sleep(watchdog_after);
            tracing::error!(after_s = watchdog_after.as_secs_f64(), "stopping took too long; exiting now");
            std::process::exit(1);
        })
        .map_err(AppError::Thread)?;
    // Frames are perishable: what is still queued is dropped, what the producer holds
    // gets until `message_timeout_ms` to be confirmed.
    forward_stop.store(true, Ordering::Relaxed);
    for s in &stops {
        s.store(true, Ordering::Relaxed);
    }
    for t in threads {
        let _ = t.join();
    }
    let _ = forwarding.join();
    if let Some(f) = fleet {
        f.stop();
    }
    let _ = shutdown_tx.send(true);
    if let Some(s) = server {
        let _ = rt.block_on(async { tokio::time::timeout(api::server::DRAIN + Duration::from_secs(1), s).await });
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("argus ingest stopped");
    match panicked {
        Some(why) => Err(AppError::Panicked(why)),
        None => Ok(()),
    }
}

#[cfg(feature = "kafka")]
fn publisher(
    cfg: &crate::sinks::frames::config::IngestConfig,
    routes: HashMap<Arc<str>, Route>,
    tally: Tally,
) -> Result<Box<dyn crate::sinks::frames::forward::FramePublisher>, AppError> {
    let p = crate::sinks::frames::kafka::KafkaFramePublisher::new(cfg, routes, tally).map_err(AppError::Config)?;
    Ok(Box::new(p))
}

#[cfg(not(feature = "kafka"))]
fn publisher(
    _: &crate::sinks::frames::config::IngestConfig,
    _: HashMap<Arc<str>, Route>,
    _: Tally,
) -> Result<Box<dyn crate::sinks::frames::forward::FramePublisher>, AppError> {
    Err(AppError::Config("argus ingest publishes to Kafka: this build has no Kafka support (build with `--features kafka`, on by default)".into()))
}
