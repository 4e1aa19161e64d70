//! From a validated configuration to what the stages run: one scene per camera (its
//! geometry from validation's calibration fit, its zones, rules, tracker and risk
//! settings), the source of each camera, and a fingerprint per camera for reloads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{AppError, RunOptions};
use crate::analysis::{CameraContext, CameraContexts};
use crate::caption::model::Captioner;
use crate::config::{LoadedConfig, PipelineConfig, Validated};
use crate::geo::{CameraGeometry, DroneGeometry};
use crate::pipeline::scene::{CameraScene, SceneSettings};
use crate::pipeline::scene_stage::StateKeeping;
use crate::pipeline::scene_state::{SceneStateConfig, StateStore};
use crate::risk::Zone;
use crate::sources::SourceSpec;
use crate::sources::config::CameraConfig;

/// The per-camera scene state, built (and calibration-checked) before anything starts.
pub struct Scenes {
    pub(crate) scenes: HashMap<Arc<str>, CameraScene>,
    pub(crate) sources: Vec<SourceSpec>,
    /// Everything that shapes a camera's processing, serialised: a reload restarts a
    /// camera only when its fingerprint changes.
    pub(crate) fingerprints: HashMap<Arc<str>, String>,
    /// The optional captioning model; runs on the scene stage's thread.
    pub(crate) captioner: Option<Captioner>,
    /// Scene state checkpoints (`[scene_state]`), when enabled.
    pub(crate) state: Option<StateKeeping>,
}

impl Scenes {
    /// Checkpoints every camera's scene to `store` and continues from them at start.
    /// Kafka cameras are left out: their state must follow the frames topic's offsets.
    pub fn with_state_store(mut self, cfg: &SceneStateConfig, store: Arc<dyn StateStore>) -> Self {
        let kafka = self.sources.iter().filter(|s| s.kind == crate::sources::SourceKind::Kafka).map(|s| s.camera_id.clone());
        let kafka: Vec<Arc<str>> = kafka.collect();
        self.state =
            cfg.enabled.then(|| StateKeeping::new(store, Duration::from_secs_f64(cfg.checkpoint_every_s), cfg.max_gap_s, Arc::default()).excluding(kafka));
        self
    }

    /// Every camera's scene, by camera id (benchmarks run them by hand).
    pub fn into_scenes(self) -> HashMap<Arc<str>, CameraScene> {
        self.scenes
    }

    /// Adds model captions to events at or above the captioner's level.
    pub fn with_captioner(mut self, captioner: Option<Captioner>) -> Self {
        self.captioner = captioner;
        self
    }
}

fn zones_of(p: &PipelineConfig) -> Arc<Vec<Zone>> {
    Arc::new(p.zones.iter().map(|z| Zone { id: z.id.clone(), polygon: z.polygon.clone() }).collect())
}

/// A camera's ground geometry: validation's accepted fit when there is one, else fitted
/// now (configurations built in code, e.g. by benchmarks and tests, skip validation).
fn geometry(file: &std::path::Path, cam: &CameraConfig, validated: &Validated) -> Result<Option<CameraGeometry>, AppError> {
    let Some(cal) = &cam.calibration else { return Ok(None) };
    let g = match validated.fits.get(&cam.id) {
        Some(fit) => CameraGeometry::from_fit(fit, cam.origin.as_ref()),
        None => CameraGeometry::from_config(cal, cam.origin.as_ref()).map_err(|source| AppError::Calibration {
            file: file.display().to_string(),
            camera: cam.id.clone(),
            source,
        })?,
    };
    tracing::info!(camera = %cam.id, method = g.method, inliers = g.inliers, mean_error_m = g.fit.mean, max_error_m = g.fit.max, "calibration accepted");
    Ok(Some(g))
}

pub fn build_scenes(cfg: &LoadedConfig, validated: &Validated, opts: &RunOptions) -> Result<Scenes, AppError> {
    let mut scenes = HashMap::new();
    let mut sources = Vec::new();
    let mut fingerprints = HashMap::new();
    for (file, p) in &cfg.pipelines {
        let zones = zones_of(p);
        for cam in &p.cameras {
            let geometry = geometry(file, cam, validated)?;
            let id: Arc<str> = Arc::from(cam.id.as_str());
            // A Kafka camera also depends on its pipeline's consumer (`[kafka]`).
            let consumer = (crate::sources::SourceKind::of(&cam.source) == crate::sources::SourceKind::Kafka).then_some(&p.kafka);
            let fp = serde_json::to_string(&(&p.name, cam, &p.zones, &p.rules, &p.events, opts.max_frames, (&p.tracker, &p.risk), consumer))
                .expect("config serialises");
            fingerprints.insert(id.clone(), fp);
            let settings = SceneSettings {
                pipeline: p.name.clone(),
                geometry,
                zones: zones.clone(),
                rules: p.rules.clone(),
                classes: cam.classes.clone(),
                summary_every_s: p.events.frame_summary_every_s,
                tracker: p.tracker.clone(),
                risk: p.risk.clone(),
            };
            let drone = cam.drone.as_ref().map(|d| DroneGeometry::new(&cam.id, d, cam.origin.as_ref()));
            // A scene state belongs to the calibration as configured, not to the last
            // bits of its fit (which may differ between builds and machines).
            let calibration_key = serde_json::to_string(&(&cam.calibration, &cam.origin)).expect("calibration serialises");
            let mut spec = SourceSpec::from_camera(cam, &p.name, opts.max_frames);
            spec.max_pixels = cfg.argus.limits.max_frame_pixels;
            // A recording's state reflects one file; another file (size, time) starts over.
            let file = spec.recording_path().and_then(|p| crate::model::FileIdentity::of(&p).ok());
            scenes.insert(id.clone(), CameraScene::new(id, settings).with_drone(drone).with_calibration_key(calibration_key).with_source_file(file));
            sources.push(spec);
        }
    }
    Ok(Scenes { scenes, sources, fingerprints, captioner: None, state: None })
}

/// How `POST /v1/analyze` judges an image "as camera X sees it": the same calibration
/// (validation's fit), zones and rules as the pipeline. A camera whose calibration does
/// not fit is analysed without a ground position.
pub fn camera_contexts(cfg: &LoadedConfig, validated: &Validated) -> CameraContexts {
    let mut out = CameraContexts::default();
    for (file, p) in &cfg.pipelines {
        let zones = zones_of(p);
        for cam in &p.cameras {
            out.insert(CameraContext {
                id: cam.id.clone(),
                pipeline: p.name.clone(),
                geometry: geometry(file, cam, validated).ok().flatten(),
                zones: zones.clone(),
                rules: p.rules.clone(),
                risk: p.risk.clone(),
                classes: (!cam.classes.is_empty()).then(|| cam.classes.iter().cloned().collect()),
            });
        }
    }
    out
}
