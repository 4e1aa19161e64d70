//! The scene stage: one thread that runs every camera's scene (track → place → judge →
//! caption), updates the snapshots and publishes the events. Cameras come and go
//! through [`SceneCtl`] messages (config reloads).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::bus::EventBus;
use super::detect_stage::DetectedFrame;
use super::scene::CameraScene;
use super::snapshot::{Snapshot, SnapshotBoard};
use crate::caption::model::Captioner;
use crate::model::{EventKind, Level, Models};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

/// Changes to the scene stage's set of cameras (config reload).
pub enum SceneCtl {
    Add(Arc<str>, Box<CameraScene>),
    Remove(Arc<str>),
}

/// Everything the scene stage's thread owns.
pub struct SceneStage {
    pub scenes: HashMap<Arc<str>, CameraScene>,
    pub input: Receiver<DetectedFrame>,
    pub ctl: Receiver<SceneCtl>,
    pub bus: EventBus,
    pub models: Models,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub board: Arc<SnapshotBoard>,
    /// The optional captioning model; runs on this thread.
    pub captioner: Option<Captioner>,
}

impl SceneStage {
    /// Runs until the detect stage's output closes (every source ended, or Argus is
    /// stopping), then closes every open incident and drops the bus, so the sinks drain
    /// and stop.
    pub fn run(mut self) {
        self.process_frames();
        for scene in self.scenes.values_mut() {
            for ev in scene.finish("source ended", &self.models) {
                self.bus.publish(ev);
            }
        }
        self.metrics.incidents_open.set(0);
    }

    fn apply(&mut self, ctl: SceneCtl) {
        match ctl {
            SceneCtl::Add(id, scene) => {
                self.scenes.insert(id, *scene);
            }
            SceneCtl::Remove(id) => {
                if let Some(mut scene) = self.scenes.remove(&id) {
                    for ev in scene.finish("camera removed", &self.models) {
                        self.bus.publish(ev);
                    }
                }
            }
        }
    }

    fn process_frames(&mut self) {
        let hist = self.metrics.stage_seconds.with_label_values(&["scene"]);
        // Open incidents' levels per camera, for the snapshot's banner.
        let mut open_levels: HashMap<Arc<str>, HashMap<String, Level>> = HashMap::new();
        loop {
            let DetectedFrame { frame, detections } = crossbeam_channel::select! {
                recv(self.input) -> msg => match msg {
                    Ok(f) => f,
                    Err(_) => break,
                },
                recv(self.ctl) -> msg => {
                    if let Ok(c) = msg {
                        if let SceneCtl::Remove(id) = &c {
                            self.board.remove(id);
                            open_levels.remove(id);
                        }
                        self.apply(c);
                    }
                    continue;
                }
            };
            let _span = tracing::debug_span!("frame", camera = %frame.camera_id, seq = frame.seq).entered();
            if !self.scenes.contains_key(&frame.camera_id) {
                // A camera just added: its Add may still be queued behind this frame.
                while let Ok(c) = self.ctl.try_recv() {
                    self.apply(c);
                }
            }
            let Some(scene) = self.scenes.get_mut(&frame.camera_id) else {
                // A camera just removed: its last frames are dropped.
                self.metrics.frames_dropped.with_label_values(&[&frame.camera_id, "camera_removed"]).inc();
                continue;
            };
            let t0 = Instant::now();
            let mut events = scene.process(&frame, detections, &self.models);
            hist.observe(t0.elapsed().as_secs_f64());
            if let Some(c) = self.captioner.as_mut() {
                // Off the API's tokio workers; timed as stage "caption", not "scene".
                c.annotate(&mut events, &frame.image, &self.metrics);
            }
            self.metrics.frames_processed.with_label_values(&[&frame.camera_id]).inc();
            self.health.frame_processed(&frame.camera_id);
            self.metrics.frame_latency_seconds.observe(frame.received.elapsed().as_secs_f64());
            let levels = open_levels.entry(frame.camera_id.clone()).or_default();
            for ev in &events {
                if let Some(id) = &ev.incident_id {
                    match ev.kind {
                        EventKind::IncidentClosed => levels.remove(id),
                        _ => levels.insert(id.clone(), ev.risk.level),
                    };
                }
            }
            self.board.update(
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
                self.bus.publish(ev);
            }
            self.metrics.incidents_open.set(self.scenes.values().map(|s| s.open_incidents() as i64).sum());
        }
    }
}
