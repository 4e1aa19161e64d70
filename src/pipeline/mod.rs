//! Wiring: sources → FrameHub → detect stage → scene stage → EventBus → sinks.
//! Every stage is a plain thread; edges are bounded; shutdown drains every edge.

pub mod bus;
pub mod detect_stage;
pub mod hub;
pub mod scene;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

use crate::config::LoadedConfig;
use crate::detect::Detector;
use crate::pipeline::detect_stage::DetectedFrame;
use crate::model::{EventKind, Models};
use crate::geo::{CalibrationError, CameraGeometry};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;
use crate::model::Level;
use crate::risk::Zone;
use crate::pipeline::snapshot::{Snapshot, SnapshotBoard};
use crate::pipeline::bus::EventBus;
use crate::pipeline::hub::{FrameHub, Overflow};
use crate::sources::{self, SourceSpec};
use scene::{CameraScene, SceneSettings};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{file}: camera `{camera}`: cameras.calibration.{}: {source} (fix: {})", .source.key(), .source.fix())]
    Calibration { file: String, camera: String, source: CalibrationError },
    #[error("cannot start thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("every source has ended and the pipeline has finished; restart Argus to run new cameras")]
    Finished,
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop each source after this many frames.
    pub max_frames: Option<u64>,
}

/// The per-camera scene state, built (and calibration-checked) before anything starts.
pub struct Scenes {
    scenes: HashMap<Arc<str>, CameraScene>,
    sources: Vec<SourceSpec>,
    /// Everything that shapes a camera's processing, serialised: a reload restarts a
    /// camera only when its fingerprint changes.
    fingerprints: HashMap<Arc<str>, String>,
    /// The optional captioning model; runs on the scene stage's thread.
    captioner: Option<crate::caption::model::Captioner>,
}

impl Scenes {
    /// Adds model captions to events at or above the captioner's level.
    pub fn with_captioner(mut self, captioner: Option<crate::caption::model::Captioner>) -> Self {
        self.captioner = captioner;
        self
    }
}

pub fn build_scenes(cfg: &LoadedConfig, opts: &RunOptions) -> Result<Scenes, PipelineError> {
    let mut scenes = HashMap::new();
    let mut sources = Vec::new();
    let mut fingerprints = HashMap::new();
    for (file, p) in &cfg.pipelines {
        let zones: Arc<Vec<Zone>> = Arc::new(p.zones.iter().map(|z| Zone { id: z.id.clone(), polygon: z.polygon.clone() }).collect());
        for cam in &p.cameras {
            let geometry = match &cam.calibration {
                Some(cal) => {
                    let g = CameraGeometry::from_config(cal, cam.origin.as_ref()).map_err(|source| PipelineError::Calibration {
                        file: file.display().to_string(),
                        camera: cam.id.clone(),
                        source,
                    })?;
                    tracing::info!(camera = %cam.id, method = g.method, inliers = g.inliers, mean_error_m = g.fit.mean, max_error_m = g.fit.max, "calibration accepted");
                    Some(g)
                }
                None => None,
            };
            let id: Arc<str> = Arc::from(cam.id.as_str());
            let fp = serde_json::to_string(&(&p.name, cam, &p.zones, &p.rules, &p.events, opts.max_frames, (&p.tracker, &p.risk))).expect("config serialises");
            fingerprints.insert(id.clone(), fp);
            scenes.insert(
                id.clone(),
                CameraScene::new(
                    id,
                    SceneSettings {
                        pipeline: p.name.clone(),
                        geometry,
                        zones: zones.clone(),
                        rules: p.rules.clone(),
                        classes: cam.classes.clone(),
                        summary_every_s: p.events.frame_summary_every_s,
                        tracker: p.tracker.clone(),
                        risk: p.risk.clone(),
                    },
                )
                .with_drone(cam.drone.as_ref().map(|d| crate::geo::DroneGeometry::new(&cam.id, d, cam.origin.as_ref()))),
            );
            sources.push(SourceSpec::from_camera(cam, &p.name, opts.max_frames));
        }
    }
    Ok(Scenes { scenes, sources, fingerprints, captioner: None })
}

/// Changes to the scene stage's set of cameras (config reload).
enum SceneCtl {
    Add(Arc<str>, Box<CameraScene>),
    Remove(Arc<str>),
}

struct CameraHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    fingerprint: String,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: usize,
}

/// A started pipeline.
pub struct Running {
    hub: Arc<FrameHub>,
    cameras: HashMap<Arc<str>, CameraHandle>,
    stage_threads: Vec<JoinHandle<()>>,
    scene_ctl: crossbeam_channel::Sender<SceneCtl>,
    done: Receiver<()>,
    frame_queue: usize,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// One consumer thread per pipeline with a `[kafka]` table (restart Argus to change it).
    kafka_sources: Vec<(Arc<AtomicBool>, JoinHandle<()>)>,
}

pub fn start(
    cfg: &LoadedConfig,
    scenes: Scenes,
    detector: Box<dyn Detector>,
    bus: EventBus,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    board: Arc<SnapshotBoard>,
) -> Result<Running, PipelineError> {
    let limits = &cfg.argus.limits;
    let det_cfg = &cfg.argus.detector;
    let models = Models { detector: detector.info().model_id.clone(), captioner: crate::model::SCENE_CAPTIONER.into() };
    let hub = FrameHub::new();

    // Every lane is open before the detect stage starts: a hub with no open lane reads
    // as "all sources ended".
    let lanes: Vec<_> = scenes
        .sources
        .into_iter()
        .map(|spec| {
            health.register_source(&spec.camera_id, &spec.pipeline, &spec.redacted(), spec.live);
            let lane = open_lane(&hub, &spec, limits.frame_queue);
            (spec, lane)
        })
        .collect();
    // Cameras fed by a pipeline's Kafka topic share one consumer per pipeline.
    let (kafka_lanes, lanes): (Vec<_>, Vec<_>) = lanes.into_iter().partition(|(spec, _)| spec.uri == "kafka");
    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    let durability = bus.durability();
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<SceneCtl>();

    let (det_tx, det_rx) = bounded::<DetectedFrame>(limits.frame_queue.max(1) * 2);
    let (done_tx, done) = bounded::<()>(1);
    let mut stage_threads = Vec::new();
    {
        let (hub, m) = (hub.clone(), metrics.clone());
        let (max_batch, max_wait) = (det_cfg.max_batch, Duration::from_millis(det_cfg.max_wait_ms));
        stage_threads.push(
            std::thread::Builder::new()
                .name("stage-detect".into())
                .spawn(move || crate::pipeline::detect_stage::run(detector, hub, det_tx, max_batch, max_wait, m))?,
        );
    }
    {
        let (m, h) = (metrics.clone(), health.clone());
        let mut scene_map = scenes.scenes;
        let mut captioner = scenes.captioner;
        stage_threads.push(std::thread::Builder::new().name("stage-scene".into()).spawn(move || {
            run_scene_stage(&mut scene_map, det_rx, ctl_rx, &bus, &models, &m, &h, &board, captioner.as_mut());
            // Input closed: every source ended (or Argus is stopping). Close incidents,
            // then drop the bus so the sinks drain and stop.
            for scene in scene_map.values_mut() {
                for ev in scene.finish("source ended", &models) {
                    bus.publish(ev);
                }
            }
            m.incidents_open.set(0);
            drop(bus);
            let _ = done_tx.send(());
        })?);
    }

    let mut running = Running {
        hub,
        cameras: HashMap::new(),
        stage_threads,
        scene_ctl: ctl_tx,
        done,
        frame_queue: limits.frame_queue,
        metrics,
        health,
        kafka_sources: Vec::new(),
    };
    #[cfg(feature = "kafka")]
    {
        let mut by_pipeline: HashMap<String, HashMap<Arc<str>, crate::pipeline::hub::LaneSender>> = HashMap::new();
        for (spec, lane) in kafka_lanes {
            by_pipeline.entry(spec.pipeline.clone()).or_default().insert(spec.camera_id.clone(), lane);
        }
        for (pipeline, lanes) in by_pipeline {
            let kcfg = cfg.pipelines.iter().find(|(_, p)| p.name == pipeline).and_then(|(_, p)| p.kafka.clone()).expect("validated: a kafka camera's pipeline has [kafka]");
            let stop = Arc::new(AtomicBool::new(false));
            let src = crate::sources::kafka::KafkaSource { pipeline, cfg: kcfg, lanes };
            let thread = crate::sources::kafka::spawn(src, durability.clone(), stop.clone(), running.metrics.clone(), running.health.clone())?;
            running.kafka_sources.push((stop, thread));
        }
    }
    #[cfg(not(feature = "kafka"))]
    drop(kafka_lanes); // `argus check` refuses kafka cameras in this build
    let mut fingerprints = scenes.fingerprints;
    for (spec, lane) in lanes {
        let fp = fingerprints.remove(&spec.camera_id).unwrap_or_default();
        running.spawn_source(spec, lane, fp)?;
    }
    Ok(running)
}

fn open_lane(hub: &Arc<FrameHub>, spec: &SourceSpec, queue: usize) -> crate::pipeline::hub::LaneSender {
    let overflow = if spec.live { Overflow::DropOldest } else { Overflow::Block };
    hub.lane(spec.camera_id.clone(), queue, overflow)
}

fn apply_ctl(scenes: &mut HashMap<Arc<str>, CameraScene>, ctl: SceneCtl, bus: &EventBus, models: &Models) {
    match ctl {
        SceneCtl::Add(id, scene) => {
            scenes.insert(id, *scene);
        }
        SceneCtl::Remove(id) => {
            if let Some(mut scene) = scenes.remove(&id) {
                for ev in scene.finish("camera removed", models) {
                    bus.publish(ev);
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_scene_stage(
    scenes: &mut HashMap<Arc<str>, CameraScene>,
    rx: Receiver<DetectedFrame>,
    ctl: Receiver<SceneCtl>,
    bus: &EventBus,
    models: &Models,
    metrics: &Metrics,
    health: &Health,
    board: &SnapshotBoard,
    mut captioner: Option<&mut crate::caption::model::Captioner>,
) {
    let hist = metrics.stage_seconds.with_label_values(&["scene"]);
    // Open incidents' levels per camera, for the snapshot's banner.
    let mut open_levels: HashMap<Arc<str>, HashMap<String, Level>> = HashMap::new();
    loop {
        let DetectedFrame { frame, detections } = crossbeam_channel::select! {
            recv(rx) -> msg => match msg {
                Ok(f) => f,
                Err(_) => break,
            },
            recv(ctl) -> msg => {
                if let Ok(c) = msg {
                    if let SceneCtl::Remove(id) = &c {
                        board.remove(id);
                        open_levels.remove(id);
                    }
                    apply_ctl(scenes, c, bus, models);
                }
                continue;
            }
        };
        let _span = tracing::debug_span!("frame", camera = %frame.camera_id, seq = frame.seq).entered();
        if !scenes.contains_key(&frame.camera_id) {
            // A camera just added: its Add may still be queued behind this frame.
            while let Ok(c) = ctl.try_recv() {
                apply_ctl(scenes, c, bus, models);
            }
        }
        let Some(scene) = scenes.get_mut(&frame.camera_id) else {
            // A camera just removed: its last frames are dropped.
            metrics.frames_dropped.with_label_values(&[&frame.camera_id, "camera_removed"]).inc();
            continue;
        };
        let t0 = Instant::now();
        let mut events = scene.process(&frame, detections, models);
        hist.observe(t0.elapsed().as_secs_f64());
        if let Some(c) = captioner.as_deref_mut() {
            // Off the API's tokio workers; timed as stage "caption", not "scene".
            c.annotate(&mut events, &frame.image, metrics);
        }
        metrics.frames_processed.with_label_values(&[&frame.camera_id]).inc();
        health.frame_processed(&frame.camera_id);
        metrics.frame_latency_seconds.observe(frame.received.elapsed().as_secs_f64());
        let levels = open_levels.entry(frame.camera_id.clone()).or_default();
        for ev in &events {
            if let Some(id) = &ev.incident_id {
                match ev.kind {
                    EventKind::IncidentClosed => levels.remove(id),
                    _ => levels.insert(id.clone(), ev.risk.level),
                };
            }
        }
        board.update(
            &frame.camera_id,
            Snapshot {
                image: frame.image.clone(),
                seq: frame.seq,
                captured_at: frame.captured_at,
                objects: scene.last_objects().to_vec(),
                zones: scene.zones().clone(),
                world_to_image: scene.world_to_image(),
                level: levels.values().copied().max(),
            },
        );
        for ev in events {
            bus.publish(ev);
        }
        metrics.incidents_open.set(scenes.values().map(|s| s.open_incidents() as i64).sum());
    }
}

impl Running {
    fn spawn_source(&mut self, spec: SourceSpec, lane: crate::pipeline::hub::LaneSender, fingerprint: String) -> Result<(), PipelineError> {
        tracing::info!(camera = %spec.camera_id, source = %spec.redacted(), live = spec.live, "starting source");
        let stop = Arc::new(AtomicBool::new(false));
        let id = spec.camera_id.clone();
        let thread = sources::spawn(spec, lane, stop.clone(), self.metrics.clone(), self.health.clone())?;
        self.cameras.insert(id, CameraHandle { stop, thread, fingerprint });
        Ok(())
    }

    fn remove_camera(&mut self, id: &Arc<str>) {
        if let Some(h) = self.cameras.remove(id) {
            h.stop.store(true, Ordering::Relaxed);
            let _ = h.thread.join();
            let _ = self.scene_ctl.send(SceneCtl::Remove(id.clone()));
            self.health.remove_source(id);
            tracing::info!(camera = %id, "camera removed");
        }
    }

    /// Applies a new configuration's cameras: adds new ones, removes dropped ones,
    /// restarts changed ones; cameras whose settings did not change keep running
    /// untouched. The caller validates `cfg` first. Detector and sink settings need a
    /// restart of Argus.
    pub fn reload(&mut self, cfg: &LoadedConfig, opts: &RunOptions) -> Result<ReloadSummary, PipelineError> {
        if self.stage_threads.iter().any(|h| h.is_finished()) {
            return Err(PipelineError::Finished);
        }
        let mut new = build_scenes(cfg, opts)?;
        // Holds the hub open while lanes come and go, so the detect stage never sees
        // "every source ended" in the middle of a reload.
        let guard = self.hub.lane(Arc::from("(reload)"), 1, Overflow::Block);
        let mut summary = ReloadSummary::default();
        let old: Vec<Arc<str>> = self.cameras.keys().cloned().collect();
        for id in old {
            match new.fingerprints.get(&id) {
                None => {
                    self.remove_camera(&id);
                    summary.removed.push(id.to_string());
                }
                Some(fp) if *fp != self.cameras[&id].fingerprint => {
                    self.remove_camera(&id);
                    summary.restarted.push(id.to_string());
                }
                Some(_) => summary.unchanged += 1,
            }
        }
        for spec in new.sources {
            // Kafka cameras follow their pipeline's consumer, which a reload keeps.
            if self.cameras.contains_key(&spec.camera_id) || spec.uri == "kafka" {
                continue;
            }
            let id = spec.camera_id.clone();
            let scene = new.scenes.remove(&id).expect("a scene per source");
            let _ = self.scene_ctl.send(SceneCtl::Add(id.clone(), Box::new(scene)));
            self.health.register_source(&id, &spec.pipeline, &spec.redacted(), spec.live);
            let lane = open_lane(&self.hub, &spec, self.frame_queue);
            let fp = new.fingerprints.remove(&id).unwrap_or_default();
            self.spawn_source(spec, lane, fp)?;
            if !summary.restarted.iter().any(|r| **r == *id) {
                summary.added.push(id.to_string());
            }
        }
        drop(guard);
        Ok(summary)
    }

    /// Waits up to `timeout` for every source to end and every event to reach the
    /// sinks' queues. Returns true once (then the pipeline is finished).
    pub fn wait_done(&self, timeout: Duration) -> bool {
        self.done.recv_timeout(timeout).is_ok()
    }

    /// Frames waiting for the detector right now.
    pub fn queued_frames(&self) -> usize {
        self.hub.depth()
    }

    /// Stops the sources and drains the stages (no event is lost).
    pub fn stop(self) {
        for h in self.cameras.values() {
            h.stop.store(true, Ordering::Relaxed);
        }
        for (stop, _) in &self.kafka_sources {
            stop.store(true, Ordering::Relaxed);
        }
        for (_, t) in self.kafka_sources {
            let _ = t.join();
        }
        for (_, h) in self.cameras {
            let _ = h.thread.join();
        }
        drop(self.scene_ctl);
        for h in self.stage_threads {
            let _ = h.join();
        }
    }
}
