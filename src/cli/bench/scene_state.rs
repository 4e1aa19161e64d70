//! `argus bench`'s scene state section: bytes and µs per camera to checkpoint a scene
//! (state + encode) and to restore one (decode + restore into a scene of the same
//! configuration), on the demo run's own objects replayed through the demo cameras'
//! scenes (when the end-to-end run ran) and on synthetic crowds of 1, 10 and 50 people.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use argus::config::LoadedConfig;
use argus::model::{Detection, Event, Frame, Models, RgbImage};
use argus::pipeline::scene::CameraScene;
use argus::pipeline::scene_state::SceneState;

/// What one replayed camera measured.
#[derive(Default)]
struct Costs {
    bytes: Vec<f64>,
    save_us: Vec<f64>,
    load_us: Vec<f64>,
    tracks: Vec<f64>,
}

impl Costs {
    /// Checkpoints `scene` and restores the bytes into `spare` (same configuration).
    fn measure(&mut self, scene: &CameraScene, spare: &mut CameraScene) -> Result<()> {
        let t0 = Instant::now();
        let bytes = scene.checkpoint().to_bytes();
        let t1 = Instant::now();
        let state = SceneState::from_bytes(&bytes)?;
        let tracks = state.tracks();
        spare.restore(state)?;
        let t2 = Instant::now();
        self.bytes.push(bytes.len() as f64);
        self.save_us.push((t1 - t0).as_secs_f64() * 1e6);
        self.load_us.push((t2 - t1).as_secs_f64() * 1e6);
        self.tracks.push(tracks as f64);
        Ok(())
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn print_row(what: &str, c: &Costs, fps: Option<f64>) {
    let save = median(&c.save_us);
    let load = median(&c.load_us);
    // At the default interval (1 s) one camera's checkpoint costs `save` µs per second.
    let per_second = save / 1e6 * 100.0;
    let vs_frame = fps.map(|f| format!(", {:.3} % of a frame at {f:.1} fps", save * f / 1e6 * 100.0)).unwrap_or_default();
    println!(
        "  {what:<34} {:>6.1} tracks {:>8.0} B (max {:>6.0}) checkpoint+encode {:>7.1} µs  decode+restore {:>7.1} µs  every 1 s: {per_second:.4} % of a core{vs_frame}",
        mean(&c.tracks),
        mean(&c.bytes),
        max(&c.bytes),
        save,
        load
    );
}

fn frame(camera: &Arc<str>, seq: u64, at: time::OffsetDateTime) -> Frame {
    Frame {
        camera_id: camera.clone(),
        seq,
        pts_ns: None,
        captured_at: at,
        time_source: "stream",
        received: Instant::now(),
        image: Arc::new(RgbImage::new(1, 1, vec![0; 3]).expect("1x1")),
        ack: None,
        telemetry: None,
        position: None,
    }
}

fn class_ids(classes: &mut HashMap<Arc<str>, usize>, class: &Arc<str>) -> usize {
    let n = classes.len();
    *classes.entry(class.clone()).or_insert(n)
}

/// Fresh scenes of the configuration's cameras (no state).
fn fresh_scenes(cfg: &LoadedConfig) -> Result<HashMap<Arc<str>, CameraScene>> {
    Ok(argus::app::build_scenes(cfg, &Default::default(), &Default::default())?.into_scenes())
}

/// Prints the section. `recorded`: the end-to-end run's per-frame summaries (their
/// objects are replayed as detections), with its fps.
pub fn run(cfg: &LoadedConfig, recorded: Option<(&[Arc<Event>], f64)>) -> Result<()> {
    println!("scene state per camera (median over checkpoints after every frame; state = tracks, dwell, motion, incidents, timers):");
    let models = Models { detector: "replay".into(), captioner: "scene".into() };
    let fps = recorded.map(|r| r.1);
    if let Some((events, _)) = recorded {
        let mut scenes = fresh_scenes(cfg)?;
        let mut spares = fresh_scenes(cfg)?;
        let mut classes = HashMap::new();
        let mut all = Costs::default();
        for e in events {
            let id: Arc<str> = Arc::from(e.camera_id.as_str());
            let (Some(scene), Some(spare)) = (scenes.get_mut(&id), spares.get_mut(&id)) else { continue };
            let dets = e
                .objects
                .iter()
                .map(|o| Detection { class_id: class_ids(&mut classes, &o.class), class: o.class.clone(), score: o.confidence, bbox: o.bbox })
                .collect();
            scene.process(&frame(&id, e.frame.seq, e.captured_at), dets, &models);
            all.measure(scene, spare)?;
        }
        print_row(&format!("demo replay ({} frames)", all.bytes.len()), &all, fps);
    }
    // Synthetic crowds: people walking across a 1280x720 view on the first camera's scene.
    let Some(camera) = cfg.pipelines.iter().flat_map(|(_, p)| &p.cameras).next().map(|c| Arc::<str>::from(c.id.as_str())) else { return Ok(()) };
    let person: Arc<str> = Arc::from("person");
    for people in [1usize, 10, 50] {
        let mut scenes = fresh_scenes(cfg)?;
        let mut spares = fresh_scenes(cfg)?;
        let (Some(mut scene), Some(mut spare)) = (scenes.remove(&camera), spares.remove(&camera)) else { return Ok(()) };
        let mut costs = Costs::default();
        let start = time::OffsetDateTime::from_unix_timestamp(1_800_000_000)?;
        for seq in 0..300u64 {
            let t = seq as f64 / 10.0;
            let dets = (0..people)
                .map(|k| {
                    let x = ((40.0 * k as f64 + 15.0 * t) % 1240.0) as f32;
                    let y = (100 + (k % 10) * 60) as f32;
                    Detection { class_id: 0, class: person.clone(), score: 0.9, bbox: [x, y, x + 30.0, y + 80.0] }
                })
                .collect();
            scene.process(&frame(&camera, seq, start + time::Duration::seconds_f64(t)), dets, &models);
            costs.measure(&scene, &mut spare)?;
        }
        print_row(&format!("crowd of {people} walking on {camera}"), &costs, fps);
    }
    Ok(())
}
