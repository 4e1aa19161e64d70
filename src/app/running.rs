//! A started pipeline: the stages plus every camera's source, and the reload that adds,
//! removes and restarts cameras while the rest keep running.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::scenes::{Scenes, build_scenes};
use super::{AppError, RunOptions};
use crate::config::{LoadedConfig, Validated};
use crate::detect::Detector;
use crate::model::{FilePosition, SourcePosition};
use crate::pipeline::bus::{Durability, EventBus};
use crate::pipeline::hub::LaneSender;
use crate::pipeline::scene_state::{SceneState, StateStore};
use crate::pipeline::{StageContext, StageSettings, Stages};
use crate::sources::{self, CameraSource, SourceContext, SourceKind, SourceSpec};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

struct SourceHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

struct CameraHandle {
    source: SourceHandle,
    fingerprint: String,
}

/// What a reload changed: camera ids, each list sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    /// The cameras the reload left running untouched.
    pub unchanged: Vec<String>,
    /// Kafka cameras added, removed or changed in the new configuration: a pipeline's
    /// consumer and its cameras are applied only by a restart (said in the log).
    pub needs_restart: Vec<String>,
}

/// A started pipeline.
pub struct Running {
    stages: Stages,
    /// GStreamer cameras, one source each.
    cameras: HashMap<Arc<str>, CameraHandle>,
    /// One consumer per pipeline with a `[kafka]` table (restart Argus to change it).
    kafka_sources: Vec<SourceHandle>,
    /// The Kafka cameras' fingerprints at start: what a reload compares against.
    kafka_cameras: HashMap<Arc<str>, String>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    durability: Durability,
    /// Where scene states are checkpointed (`[scene_state]` enabled): recordings resume
    /// from the position their camera's checkpoint reflects.
    state_store: Option<Arc<dyn StateStore>>,
}

/// Starts the stages, then every camera's source.
pub fn start(cfg: &LoadedConfig, scenes: Scenes, detector: Box<dyn Detector>, bus: EventBus, cx: StageContext) -> Result<Running, AppError> {
    let (metrics, health) = (cx.metrics.clone(), cx.health.clone());
    let limits = &cfg.argus.limits;
    let det = &cfg.argus.detector;
    let settings = StageSettings {
        frame_queue: limits.frame_queue,
        frame_queue_bytes: (limits.frame_queue_mb * 1024.0 * 1024.0) as usize,
        max_batch: det.max_batch,
        max_batch_per_camera: det.max_batch_per_camera,
        max_wait: Duration::from_millis(det.max_wait_ms),
        detect_layout: crate::pipeline::detect_stage::Layout { workers: det.workers, threads_per_worker: det.threads },
        camera_down_after: Some(Duration::from_secs_f64(cfg.argus.scene_state.max_gap_s)),
    };
    let durability = bus.durability();
    let Scenes { mut scenes, sources, mut fingerprints, captioner, state } = scenes;
    let state_store = state.as_ref().map(|k| k.store.clone());
    let mut cameras = Vec::new();
    for spec in &sources {
        health.register_source(&spec.camera_id, &spec.pipeline, &spec.redacted(), spec.live);
        let scene = scenes.remove(&spec.camera_id).expect("a scene per source");
        cameras.push((spec.camera_id.clone(), scene, spec.live));
    }
    let (stages, mut lanes) = crate::pipeline::start(cameras, captioner, detector, bus, settings, cx, state).map_err(AppError::Thread)?;
    let mut running =
        Running { stages, cameras: HashMap::new(), kafka_sources: Vec::new(), kafka_cameras: HashMap::new(), metrics, health, durability, state_store };
    // Cameras fed by a pipeline's Kafka topic share one consumer per pipeline.
    let mut kafka_lanes: HashMap<String, HashMap<Arc<str>, LaneSender>> = HashMap::new();
    for spec in sources {
        let lane = lanes.remove(&spec.camera_id).expect("a lane per source");
        if spec.kind == SourceKind::Kafka {
            running.kafka_cameras.insert(spec.camera_id.clone(), fingerprints.remove(&spec.camera_id).unwrap_or_default());
            kafka_lanes.entry(spec.pipeline.clone()).or_default().insert(spec.camera_id.clone(), lane);
        } else {
            let fp = fingerprints.remove(&spec.camera_id).unwrap_or_default();
            running.spawn_camera(spec, lane, fp)?;
        }
    }
    for (pipeline, lanes) in kafka_lanes {
        running.spawn_kafka(cfg, pipeline, lanes)?;
    }
    Ok(running)
}

/// Where the camera's checkpoint says its recording stood (the source checks that the
/// file is still the same one). A checkpoint it cannot read starts the file over.
fn recording_position(store: &dyn StateStore, camera: &str) -> Option<FilePosition> {
    let (_, bytes) = store.load_state(camera).ok().flatten()?;
    let state = SceneState::from_bytes(&bytes).ok()?;
    let Some(SourcePosition::File(p)) = state.position() else { return None };
    Some(p.clone())
}

impl Running {
    /// Where operators' actions are published (through the scene stage).
    pub fn outlet(&self) -> crate::pipeline::EventOutlet {
        self.stages.outlet()
    }

    fn context(&self) -> SourceContext {
        SourceContext {
            stop: Arc::new(AtomicBool::new(false)),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            durability: self.durability.clone(),
        }
    }

    fn spawn_camera(&mut self, mut spec: SourceSpec, lane: LaneSender, fingerprint: String) -> Result<(), AppError> {
        tracing::info!(camera = %spec.camera_id, source = %spec.redacted(), live = spec.live, "starting source");
        if let (Some(store), Some(_)) = (&self.state_store, spec.recording_path()) {
            spec.resume = recording_position(store.as_ref(), &spec.camera_id);
        }
        let cx = self.context();
        let stop = cx.stop.clone();
        let id = spec.camera_id.clone();
        let thread = sources::spawn(Box::new(CameraSource { spec, lane }), cx).map_err(AppError::Thread)?;
        self.cameras.insert(id, CameraHandle { source: SourceHandle { stop, thread }, fingerprint });
        Ok(())
    }

    #[cfg(feature = "kafka")]
    fn spawn_kafka(&mut self, cfg: &LoadedConfig, pipeline: String, lanes: HashMap<Arc<str>, LaneSender>) -> Result<(), AppError> {
        let kcfg = cfg
            .pipelines
            .iter()
            .find(|(_, p)| p.name == pipeline)
            .and_then(|(_, p)| p.kafka.clone())
            .expect("validated: a kafka camera's pipeline has [kafka]");
        let cx = self.context();
        let stop = cx.stop.clone();
        let handoff = self.stages.handoff();
        let thread =
            sources::spawn(Box::new(sources::kafka::KafkaSource { pipeline, cfg: kcfg, max_pixels: cfg.argus.limits.max_frame_pixels, lanes, handoff }), cx)
                .map_err(AppError::Thread)?;
        self.kafka_sources.push(SourceHandle { stop, thread });
        Ok(())
    }

    #[cfg(not(feature = "kafka"))]
    fn spawn_kafka(&mut self, _: &LoadedConfig, _: String, _: HashMap<Arc<str>, LaneSender>) -> Result<(), AppError> {
        // `argus check` refuses kafka cameras in this build.
        Ok(())
    }

    fn remove_camera(&mut self, id: &Arc<str>, why: &'static str) {
        if let Some(h) = self.cameras.remove(id) {
            h.source.stop.store(true, Ordering::Relaxed);
            let _ = h.source.thread.join();
            // The scene stage drops its snapshot and, when removed for good, its
            // metric series.
            self.stages.remove_camera(id, why);
            self.health.remove_source(id);
            tracing::info!(camera = %id, "camera removed");
        }
    }

    /// Applies a new configuration's cameras: adds new ones, removes dropped ones,
    /// restarts changed ones; cameras whose settings did not change keep running
    /// untouched. The caller validates `cfg` first (`validated` holds its fits).
    /// Detector and sink settings need a restart of Argus.
    pub fn reload(&mut self, cfg: &LoadedConfig, validated: &Validated, opts: &RunOptions) -> Result<ReloadSummary, AppError> {
        if self.stages.finished() {
            return Err(AppError::Finished);
        }
        let mut new = build_scenes(cfg, validated, opts)?;
        let needs_restart = self.kafka_changes(&new);
        let guard = self.stages.hold_open();
        let mut summary = ReloadSummary::default();
        let mut old: Vec<Arc<str>> = self.cameras.keys().cloned().collect();
        old.sort();
        for id in old {
            match new.fingerprints.get(&id) {
                None => {
                    self.remove_camera(&id, crate::pipeline::scene_stage::REMOVED);
                    summary.removed.push(id.to_string());
                }
                Some(fp) if *fp != self.cameras[&id].fingerprint => {
                    self.remove_camera(&id, "configuration changed");
                    summary.restarted.push(id.to_string());
                }
                Some(_) => summary.unchanged.push(id.to_string()),
            }
        }
        for spec in new.sources {
            // Kafka cameras follow their pipeline's consumer, which a reload keeps.
            if self.cameras.contains_key(&spec.camera_id) || spec.kind == SourceKind::Kafka {
                continue;
            }
            let id = spec.camera_id.clone();
            let scene = new.scenes.remove(&id).expect("a scene per source");
            self.health.register_source(&id, &spec.pipeline, &spec.redacted(), spec.live);
            let lane = self.stages.add_camera(id.clone(), scene, spec.live);
            let fp = new.fingerprints.remove(&id).unwrap_or_default();
            self.spawn_camera(spec, lane, fp)?;
            if !summary.restarted.iter().any(|r| **r == *id) {
                summary.added.push(id.to_string());
            }
        }
        drop(guard);
        summary.added.sort();
        summary.needs_restart = needs_restart;
        if !summary.needs_restart.is_empty() {
            tracing::warn!(
                cameras = ?summary.needs_restart,
                "Kafka cameras were added, removed or changed: a pipeline's Kafka consumer and its cameras are not reloaded by SIGHUP; restart Argus to apply them (the other cameras were reloaded)"
            );
        }
        Ok(summary)
    }

    /// Kafka cameras that differ between the running pipeline and `new`, sorted.
    fn kafka_changes(&self, new: &Scenes) -> Vec<String> {
        let now: HashMap<&Arc<str>, &String> =
            new.sources.iter().filter(|s| s.kind == SourceKind::Kafka).map(|s| (&s.camera_id, &new.fingerprints[&s.camera_id])).collect();
        let mut out: Vec<String> = self.kafka_cameras.iter().filter(|(id, fp)| now.get(id) != Some(fp)).map(|(id, _)| id.to_string()).collect();
        out.extend(now.keys().filter(|id| !self.kafka_cameras.contains_key(**id)).map(|id| id.to_string()));
        out.sort();
        out
    }

    /// Waits up to `timeout` for every source to end and every event to reach the
    /// sinks' queues. Returns true once (then the pipeline is finished).
    pub fn wait_done(&self, timeout: Duration) -> bool {
        self.stages.wait_done(timeout)
    }

    /// Frames waiting for the detector right now.
    pub fn queued_frames(&self) -> usize {
        self.stages.queued_frames()
    }

    /// Stops the sources and drains the stages (no event is lost).
    pub fn stop(self) {
        self.stages.begin_shutdown();
        let all = || self.cameras.values().map(|c| &c.source).chain(&self.kafka_sources);
        for s in all() {
            s.stop.store(true, Ordering::Relaxed);
        }
        for s in self.kafka_sources {
            let _ = s.thread.join();
        }
        for (_, c) in self.cameras {
            let _ = c.source.thread.join();
        }
        self.stages.join();
    }
}
