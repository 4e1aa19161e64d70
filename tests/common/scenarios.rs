//! Shared by the scenario tests (`tests/scenarios.rs`) and the scene state property test
//! (`tests/scene_state.rs`): scripted actors and situations for every rule kind, and an
//! image-space camera (a calibrated yard) to run them through the whole scene stage.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Instant;

use argus::config::PipelineConfig;
use argus::geo::CameraGeometry;
use argus::model::SceneObject;
use argus::model::WorldPos;
use argus::model::{Frame, RgbImage};
use argus::pipeline::scene::{CameraScene, SceneSettings};
use argus::risk::Zone;
use time::OffsetDateTime;

pub const FPS: f64 = 10.0;

/// `t → Some((x, y, speed))` while visible.
pub type Path = Box<dyn Fn(f64) -> Option<(f64, f64, f64)>>;

/// One scripted object: where it is (and how fast it goes) at time t, or absent.
pub struct Actor {
    pub id: u64,
    pub class: &'static str,
    pub path: Path,
}

pub fn actor(id: u64, class: &'static str, path: impl Fn(f64) -> Option<(f64, f64, f64)> + 'static) -> Actor {
    Actor { id, class, path: Box::new(path) }
}

/// Linear walk from `a` to `b` between `t0` and `t1`, standing at the ends.
pub fn walk(a: (f64, f64), b: (f64, f64), t0: f64, t1: f64) -> impl Fn(f64) -> Option<(f64, f64, f64)> {
    move |t| {
        let f = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
        let moving = t > t0 && t < t1;
        let v = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt() / (t1 - t0);
        Some((a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f, if moving { v } else { 0.0 }))
    }
}

pub fn zones() -> Vec<Zone> {
    vec![
        Zone { id: "gate".into(), polygon: vec![[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]] },
        Zone { id: "bench".into(), polygon: vec![[20.0, 0.0], [24.0, 0.0], [24.0, 4.0], [20.0, 4.0]] },
    ]
}

pub fn objects_at(t: f64, actors: &[Actor], zones: &[Zone], switch: Option<&Switch>) -> Vec<SceneObject> {
    actors
        .iter()
        .filter_map(|a| {
            let (x, y, v) = (a.path)(t)?;
            let mut id = a.id;
            if let Some(s) = switch.filter(|s| s.from == a.id) {
                if t >= s.at && t < s.at + s.gap_s {
                    return None; // the tracker lost it…
                }
                if t >= s.at + s.gap_s {
                    id = s.to; // …and found it again under a new id
                }
            }
            Some(SceneObject {
                track_id: Some(id),
                class: Arc::from(a.class),
                confidence: 0.9,
                bbox: [0.0; 4],
                world: Some(WorldPos { x_m: x, y_m: y, lat: None, lon: None }),
                speed_mps: Some(v),
                heading_deg: None,
                zones: zones.iter().filter(|z| z.contains([x, y])).map(|z| z.id.clone()).collect(),
            })
        })
        .collect()
}

/// A simulated tracker id switch: track `from` vanishes at `at` for `gap_s` and comes
/// back as `to`.
pub struct Switch {
    pub from: u64,
    pub to: u64,
    pub at: f64,
    pub gap_s: f64,
}

pub struct Scenario {
    pub name: &'static str,
    pub rules: &'static str,
    pub actors: fn() -> Vec<Actor>,
    pub duration_s: f64,
    /// `(kind, time, caption)` of every incident event, in order.
    pub expected: &'static [(&'static str, f64, &'static str)],
    /// The switch to replay the scenario with.
    pub switch: Switch,
}

pub fn rules(toml_text: &str) -> Vec<argus::risk::config::RuleConfig> {
    let text = format!("name = \"s\"\n{toml_text}");
    let p: PipelineConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    p.rules
}

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "intrusion: a person crosses the gate past a moving truck",
            rules: r#"
[[rules]]
kind = "intrusion"
id = "no-entry"
zone = "gate"
min_dwell_s = 1.0
update_every_s = 0
"#,
            actors: || vec![actor(1, "person", walk((-4.0, 5.0), (14.0, 5.0), 0.0, 18.0)), actor(2, "truck", walk((0.0, 12.0), (20.0, 12.0), 0.0, 20.0))],
            duration_s: 22.0,
            expected: &[
                ("opened", 5.0, "A person has been inside restricted zone gate for 1 s, 8 m from a moving truck."),
                ("closed", 15.9, "Restricted zone gate is clear again after 11 s."),
            ],
            switch: Switch { from: 1, to: 101, at: 9.0, gap_s: 0.3 },
        },
        Scenario {
            name: "loitering: a person lingers on the bench, out of sight for 1.5 s",
            rules: r#"
[[rules]]
kind = "loitering"
id = "bench-loiter"
zone = "bench"
min_dwell_s = 20
max_gap_s = 2.0
update_every_s = 0
"#,
            actors: || {
                vec![actor(1, "person", |t: f64| {
                    if (15.0..16.5).contains(&t) {
                        return None;
                    }
                    if t < 40.0 { Some((22.0 + 0.3 * (t / 5.0).sin(), 2.0, 0.1)) } else { Some((22.0 + (t - 40.0) * 1.2, 2.0, 1.2)) }
                })]
            },
            duration_s: 50.0,
            expected: &[
                // The score grows with the dwell: 0.6 at 20 s, reported again once it has
                // risen by 0.1 (and held for 1 s), critical (≥ 0.85) at 41.4 + 1 s.
                ("opened", 20.0, "A person has been loitering in zone bench for 20 s."),
                ("updated", 27.3, "A person has been loitering in zone bench for 27 s."),
                ("updated", 37.7, "A person has been loitering in zone bench for 38 s."),
                ("updated", 42.4, "A person has been loitering in zone bench for 42 s."),
                // Leaves the bench at 41.6 s: held for max_gap_s (2 s), then clear_after_s (2 s).
                ("closed", 45.6, "Nobody is loitering in zone bench any more; the incident lasted 26 s."),
            ],
            switch: Switch { from: 1, to: 101, at: 30.0, gap_s: 0.5 },
        },
        Scenario {
            name: "proximity: a person passes a parked truck",
            rules: r#"
[[rules]]
kind = "proximity"
id = "person-near-truck"
classes = ["person"]
near_classes = ["truck"]
distance_m = 3.0
update_every_s = 0
"#,
            actors: || vec![actor(1, "person", walk((30.0, 2.0), (50.0, 2.0), 0.0, 20.0)), actor(2, "truck", |_| Some((40.0, 0.0, 0.0)))],
            duration_s: 25.0,
            expected: &[
                ("opened", 7.8, "A person is 3.0 m from a truck."),
                ("updated", 10.0, "A person is 2.0 m from a truck."),
                ("closed", 14.2, "No person is within 3 m of a truck any more; the incident lasted 6 s."),
            ],
            switch: Switch { from: 1, to: 101, at: 10.0, gap_s: 0.2 },
        },
        Scenario {
            name: "proximity between people: two people meet and part",
            rules: r#"
[[rules]]
kind = "proximity"
id = "distance"
classes = ["person"]
near_classes = ["person"]
distance_m = 1.0
min_duration_s = 1.0
update_every_s = 0
"#,
            actors: || {
                vec![
                    actor(1, "person", |t: f64| {
                        walk((30.0, 20.0), (34.6, 20.0), 0.0, 4.0)(t).map(|p| if t > 12.0 { (34.6 - (t - 12.0), 20.0, 1.0) } else { p })
                    }),
                    actor(2, "person", |t: f64| {
                        walk((40.0, 20.0), (35.4, 20.0), 0.0, 4.0)(t).map(|p| if t > 12.0 { (35.4 + (t - 12.0), 20.0, 1.0) } else { p })
                    }),
                ]
            },
            duration_s: 20.0,
            expected: &[
                // Within 1 m from 4.0 s, for min_duration_s = 1 s.
                ("opened", 5.0, "Two people are within 1 m of each other, the closest 0.8 m apart."),
                ("closed", 14.1, "People are no longer within 1 m of each other; the incident lasted 9 s."),
            ],
            switch: Switch { from: 2, to: 102, at: 8.0, gap_s: 0.3 },
        },
        Scenario {
            name: "crowding: four people gather within 2 m, then disperse",
            rules: r#"
[[rules]]
kind = "crowding"
id = "huddle"
min_count = 3
radius_m = 2.0
update_every_s = 0
"#,
            actors: || {
                (0..4)
                    .map(|k| {
                        let a = k as f64 * std::f64::consts::FRAC_PI_2;
                        let far = (50.0 + 10.0 * a.cos(), 50.0 + 10.0 * a.sin());
                        let near = (50.0 + 0.8 * a.cos(), 50.0 + 0.8 * a.sin());
                        actor(k + 1, "person", move |t: f64| if t < 20.0 { walk(far, near, 0.0, 8.0)(t) } else { walk(near, far, 20.0, 28.0)(t) })
                    })
                    .collect()
            },
            duration_s: 32.0,
            expected: &[
                // Neighbours 90° apart are r·√2 apart: ≤ 2 m once r ≤ 1.41 m (t = 7.5 s).
                ("opened", 7.5, "Four people have gathered within 2 m of each other."),
                ("closed", 22.5, "The crowd has dispersed; the incident lasted 15 s."),
            ],
            switch: Switch { from: 3, to: 103, at: 14.0, gap_s: 0.2 },
        },
        Scenario {
            name: "crowding in a zone: three people in the gate",
            rules: r#"
[[rules]]
kind = "crowding"
id = "gate-full"
zone = "gate"
min_count = 3
min_duration_s = 2.0
update_every_s = 0
"#,
            actors: || {
                vec![
                    actor(1, "person", |_| Some((2.0, 2.0, 0.0))),
                    actor(2, "person", |_| Some((8.0, 8.0, 0.0))),
                    actor(3, "person", walk((5.0, -6.0), (5.0, 16.0), 0.0, 22.0)),
                ]
            },
            duration_s: 25.0,
            expected: &[
                ("opened", 8.0, "Three people have been gathered in zone gate for 2 s."),
                ("closed", 17.9, "The crowd in zone gate has dispersed; the incident lasted 10 s."),
            ],
            switch: Switch { from: 1, to: 101, at: 12.0, gap_s: 0.2 },
        },
        Scenario {
            name: "speed: a person runs through the gate",
            rules: r#"
[[rules]]
kind = "speed"
id = "running"
zone = "gate"
max_speed_mps = 2.5
update_every_s = 0
"#,
            actors: || {
                vec![
                    actor(1, "person", |t: f64| {
                        // Walks (1.2 m/s) to x = 2, runs (3.5 m/s) to x = 9, walks on.
                        let t_run = (2.0 + 2.0) / 1.2;
                        let t_walk = t_run + 7.0 / 3.5;
                        if t < t_run {
                            Some((-2.0 + 1.2 * t, 5.0, 1.2))
                        } else if t < t_walk {
                            Some((2.0 + 3.5 * (t - t_run), 5.0, 3.5))
                        } else {
                            Some((9.0 + 1.2 * (t - t_walk), 5.0, 1.2))
                        }
                    }),
                    actor(2, "person", |_| Some((5.0, 5.0, 0.0))),
                ]
            },
            duration_s: 12.0,
            expected: &[
                // Runs from 3.33 s to 5.33 s; counts after min_duration_s = 0.5 s.
                ("opened", 3.9, "A person is moving at 3.5 m/s in zone gate, above the 2.5 m/s limit."),
                ("closed", 7.3, "No person is moving faster than 2.5 m/s in zone gate any more; the incident lasted 3 s."),
            ],
            switch: Switch { from: 1, to: 101, at: 4.0, gap_s: 0.1 },
        },
    ]
}

// ---------------------------------------------------------------------------------------
// Image space: boxes → tracker → homography → zones → speeds → rules → events.

/// 1 px = 2 cm on the ground, image y down = world north down: a camera looking
/// straight down on a 20 m × 20 m yard, 1000 × 1000 px.
pub fn geometry() -> CameraGeometry {
    // Parsed like a pipeline file's [cameras.calibration], so optional keys keep defaults.
    let cal: argus::geo::config::CalibrationConfig = toml::from_str(
        "image_points = [[0, 0], [1000, 0], [0, 1000], [1000, 1000], [500, 500]]\n\
         world_points = [[0, 20], [20, 20], [0, 0], [20, 0], [10, 10]]\n\
         max_error_m = 0.05\n",
    )
    .unwrap();
    CameraGeometry::from_config(&cal, None).expect("a clean calibration")
}

/// A person's box whose foot point stands on world `(x, y)`.
pub fn person_box(x: f64, y: f64) -> [f32; 4] {
    let (u, v) = ((x * 50.0) as f32, (1000.0 - y * 50.0) as f32);
    [u - 15.0, v - 80.0, u + 15.0, v]
}

pub fn scene(pipeline_toml: &str) -> CameraScene {
    let p: PipelineConfig = toml::from_str(&format!("name = \"img\"\n{pipeline_toml}")).unwrap();
    CameraScene::new(
        "cam".into(),
        SceneSettings {
            pipeline: "img".into(),
            geometry: Some(geometry()),
            zones: Arc::new(p.zones.iter().map(|z| Zone { id: z.id.clone(), polygon: z.polygon.clone() }).collect()),
            rules: p.rules.clone(),
            classes: vec![],
            summary_every_s: 0.0,
            tracker: p.tracker.clone(),
            risk: p.risk.clone(),
        },
    )
}

pub fn frame(seq: u64, t: f64) -> Frame {
    Frame {
        camera_id: "cam".into(),
        seq,
        pts_ns: None,
        captured_at: OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_000_000_000 + (t * 1e9) as i128).unwrap(),
        time_source: "stream",
        received: Instant::now(),
        image: Arc::new(RgbImage::new(4, 4, vec![0; 48]).unwrap()),
        ack: None,
        telemetry: None,
        position: None,
    }
}

pub const IMAGE_PIPELINE: &str = r#"
[[zones]]
id = "gate"
polygon = [[8, 8], [12, 8], [12, 12], [8, 12]]

[[rules]]
kind = "intrusion"
id = "no-entry"
zone = "gate"
min_dwell_s = 1.0
update_every_s = 0

[[rules]]
kind = "speed"
id = "running"
max_speed_mps = 2.5
update_every_s = 0

[tracker]
max_lost = 3
"#;

/// A person walks east through the gate at 1 m/s, a second runs along the bottom.
pub fn walker(t: f64) -> (f64, f64) {
    (4.0 + t, 10.0)
}
pub fn runner(t: f64) -> Option<(f64, f64)> {
    (t < 5.0).then_some((1.0 + 3.5 * t, 3.0))
}
