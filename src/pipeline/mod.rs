//! Wiring: sources → FrameHub → detect stage → scene stage → EventBus → sinks.
//! Every stage is a plain thread; edges are bounded; shutdown drains every edge.

pub mod scene;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

use crate::config::LoadedConfig;
use crate::detect::Detector;
use crate::detect::stage::DetectedFrame;
use crate::event::Models;
use crate::geo::{CalibrationError, CameraGeometry};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::risk::Zone;
use crate::sinks::EventBus;
use crate::sources::{self, FrameHub, Overflow, SourceSpec};
use scene::{CameraScene, SceneSettings};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{file}: cameras `{camera}` calibration: {source}")]
    Calibration { file: String, camera: String, source: CalibrationError },
    #[error("cannot start thread: {0}")]
    Thread(#[from] std::io::Error),
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
}

pub fn build_scenes(cfg: &LoadedConfig, opts: &RunOptions) -> Result<Scenes, PipelineError> {
    let mut scenes = HashMap::new();
    let mut sources = Vec::new();
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
                    },
                ),
            );
            sources.push(SourceSpec::from_camera(cam, &p.name, opts.max_frames));
        }
    }
    Ok(Scenes { scenes, sources })
}

/// A started pipeline.
pub struct Running {
    stop: Arc<AtomicBool>,
    hub: Arc<FrameHub>,
    source_threads: Vec<JoinHandle<()>>,
    stage_threads: Vec<JoinHandle<()>>,
    done: Receiver<()>,
}

pub fn start(
    cfg: &LoadedConfig,
    scenes: Scenes,
    detector: Box<dyn Detector>,
    bus: EventBus,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> Result<Running, PipelineError> {
    let limits = &cfg.argus.limits;
    let det_cfg = &cfg.argus.detector;
    let models = Models { detector: detector.info().model_id.clone(), captioner: crate::caption::CAPTIONER.into() };
    let hub = FrameHub::new();
    let stop = Arc::new(AtomicBool::new(false));

    // Every lane is open before the detect stage starts: a hub with no open lane reads
    // as "all sources ended".
    let lanes: Vec<_> = scenes
        .sources
        .into_iter()
        .map(|spec| {
            health.register_source(&spec.camera_id, &spec.pipeline, &spec.redacted(), spec.live);
            let overflow = if spec.live { Overflow::DropOldest } else { Overflow::Block };
            let lane = hub.lane(spec.camera_id.clone(), limits.frame_queue, overflow);
            (spec, lane)
        })
        .collect();

    let (det_tx, det_rx) = bounded::<DetectedFrame>(limits.frame_queue.max(1) * 2);
    let (done_tx, done) = bounded::<()>(1);
    let mut stage_threads = Vec::new();
    {
        let (hub, m) = (hub.clone(), metrics.clone());
        let (max_batch, max_wait) = (det_cfg.max_batch, Duration::from_millis(det_cfg.max_wait_ms));
        stage_threads.push(
            std::thread::Builder::new()
                .name("stage-detect".into())
                .spawn(move || crate::detect::stage::run(detector, hub, det_tx, max_batch, max_wait, m))?,
        );
    }
    {
        let (m, h) = (metrics.clone(), health.clone());
        let mut scene_map = scenes.scenes;
        stage_threads.push(std::thread::Builder::new().name("stage-scene".into()).spawn(move || {
            run_scene_stage(&mut scene_map, det_rx, &bus, &models, &m, &h);
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

    let mut source_threads = Vec::new();
    for (spec, lane) in lanes {
        tracing::info!(camera = %spec.camera_id, source = %spec.redacted(), live = spec.live, "starting source");
        source_threads.push(sources::spawn(spec, lane, stop.clone(), metrics.clone(), health.clone())?);
    }
    Ok(Running { stop, hub, source_threads, stage_threads, done })
}

fn run_scene_stage(scenes: &mut HashMap<Arc<str>, CameraScene>, rx: Receiver<DetectedFrame>, bus: &EventBus, models: &Models, metrics: &Metrics, health: &Health) {
    let hist = metrics.stage_seconds.with_label_values(&["scene"]);
    for DetectedFrame { frame, detections } in rx {
        let _span = tracing::debug_span!("frame", camera = %frame.camera_id, seq = frame.seq).entered();
        let Some(scene) = scenes.get_mut(&frame.camera_id) else {
            tracing::error!(camera = %frame.camera_id, "frame from an unknown camera");
            continue;
        };
        let t0 = Instant::now();
        let events = scene.process(&frame, detections, models);
        hist.observe(t0.elapsed().as_secs_f64());
        metrics.frames_processed.with_label_values(&[&frame.camera_id]).inc();
        health.frame_processed(&frame.camera_id);
        metrics.frame_latency_seconds.observe(frame.received.elapsed().as_secs_f64());
        for ev in events {
            bus.publish(ev);
        }
        metrics.incidents_open.set(scenes.values().map(|s| s.open_incidents() as i64).sum());
    }
}

impl Running {
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
        self.stop.store(true, Ordering::Relaxed);
        for h in self.source_threads {
            let _ = h.join();
        }
        for h in self.stage_threads {
            let _ = h.join();
        }
    }
}
