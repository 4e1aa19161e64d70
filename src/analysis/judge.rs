//! Judging one still image as a configured camera sees it: its class filter,
//! calibration (world metres, lat/lon), zones and rules. A still has no time, so each
//! detection is its own object and the rules see a single instant: what needs a
//! duration (dwell, loitering, speed) cannot fire on one image.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::caption;
use crate::geo::CameraGeometry;
use crate::model::Risk;
use crate::model::{Event, EventKind};
use crate::risk::config::{RiskConfig, RuleConfig};
use crate::risk::{RiskEngine, Zone};

pub struct CameraContext {
    pub id: String,
    pub pipeline: String,
    pub geometry: Option<CameraGeometry>,
    pub zones: Arc<Vec<Zone>>,
    pub rules: Vec<RuleConfig>,
    /// The pipeline's level thresholds.
    pub risk: RiskConfig,
    pub classes: Option<HashSet<String>>,
}

#[derive(Default)]
pub struct CameraContexts(HashMap<String, CameraContext>);

impl CameraContexts {
    /// Every configured camera whose calibration fits (the pipeline refuses the others
    /// at start-up, so none is skipped in a running Argus).
    pub fn insert(&mut self, c: CameraContext) {
        self.0.insert(c.id.clone(), c);
    }

    pub fn get(&self, id: &str) -> Option<&CameraContext> {
        self.0.get(id)
    }
}

/// Places, zones and judges an analysed image's objects as `cam` would.
pub fn judge(event: &mut Event, cam: &CameraContext) {
    if let Some(keep) = &cam.classes {
        event.objects.retain(|o| keep.contains(&*o.class));
    }
    for (i, o) in event.objects.iter_mut().enumerate() {
        o.track_id = Some(i as u64 + 1);
        o.world = cam.geometry.as_ref().and_then(|g| g.locate_box(&o.bbox)).map(crate::model::WorldPos::rounded);
        o.zones = match &o.world {
            Some(w) => cam.zones.iter().filter(|z| z.contains([w.x_m, w.y_m])).map(|z| z.id.clone()).collect(),
            None => Vec::new(),
        };
    }
    let mut engine = RiskEngine::with_settings(Arc::from(cam.id.as_str()), &cam.rules, cam.risk.clone());
    let t = event.captured_at.unix_timestamp_nanos() as f64 / 1e9;
    let reasons: Vec<_> = engine.evaluate(t, &event.objects).into_iter().flat_map(|c| c.risk.reasons).collect();
    event.risk = if reasons.is_empty() { Risk::none() } else { Risk::from_reasons_with(reasons, &cam.risk.thresholds()) };
    event.pipeline = cam.pipeline.clone();
    event.caption = caption::describe(EventKind::FrameAnalyzed, &event.objects, &event.risk, None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{GeoOrigin, Homography};
    use crate::model::{Level, SceneObject};
    use crate::risk::config::IntrusionRule;

    fn person(bbox: [f32; 4]) -> SceneObject {
        SceneObject { track_id: None, class: Arc::from("person"), confidence: 0.9, bbox, world: None, speed_mps: None, heading_deg: None, zones: vec![] }
    }

    #[test]
    fn a_person_in_a_zone_is_judged_as_the_camera_would() {
        // 1 px = 0.1 m, world = pixel / 10.
        let geometry = CameraGeometry::from_homography(Homography([0.1, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 1.0]), Some(GeoOrigin::new(51.0, 0.0)));
        let cam = CameraContext {
            id: "gate".into(),
            pipeline: "p".into(),
            geometry: Some(geometry),
            zones: Arc::new(vec![Zone { id: "yard".into(), polygon: vec![[0.0, 0.0], [5.0, 0.0], [5.0, 5.0], [0.0, 5.0]] }]),
            rules: vec![RuleConfig::Intrusion(IntrusionRule {
                id: "no-entry".into(),
                zone: "yard".into(),
                classes: vec!["person".into()],
                severity: 0.7,
                min_dwell_s: 0.0,
                clear_after_s: 1.0,
                update_every_s: 5.0,
            })],
            risk: RiskConfig::default(),
            classes: Some(["person".to_string()].into_iter().collect()),
        };
        let mut ev = crate::model::sample_event("upload", 1_700_000_000_000, EventKind::FrameAnalyzed);
        let mut car = person([0.0, 0.0, 10.0, 10.0]);
        car.class = Arc::from("car");
        ev.objects = vec![person([10.0, 10.0, 20.0, 30.0]), person([100.0, 100.0, 120.0, 160.0]), car];
        judge(&mut ev, &cam);
        assert_eq!(ev.objects.len(), 2, "the camera's class filter applies");
        assert_eq!(ev.objects[0].zones, vec!["yard".to_string()]);
        let w = ev.objects[0].world.unwrap();
        assert_eq!((w.x_m, w.y_m), (1.5, 3.0));
        assert!(w.lat.is_some());
        assert!(ev.objects[1].zones.is_empty());
        assert_eq!(ev.risk.level, Level::High);
        assert_eq!(ev.risk.reasons[0].track_ids, vec![1]);
        assert!(ev.caption.contains("yard") || ev.caption.contains("restricted"), "{}", ev.caption);
    }
}
