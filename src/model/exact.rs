//! Exact, positional serde forms of model values, for binary scene state (postcard).
//!
//! The event JSON leaves empty optional fields out (`skip_serializing_if`); a format
//! without field names cannot read such a value back. These forms write every field, in
//! order, and convert by destructuring, so a field added to a model type is a compile
//! error here rather than a value silently lost from checkpoints. Use them with
//! `#[serde(with = "crate::model::exact::risk")]` and the like.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{FrameInfo, Level, Reason, Risk, SceneObject, WorldPos};

#[derive(Serialize, Deserialize)]
struct ReasonForm {
    rule: String,
    kind: String,
    zone: Option<String>,
    track_ids: Vec<u64>,
    score: f64,
    detail: String,
    class: Option<String>,
    near_track_ids: Vec<u64>,
    near_class: Option<String>,
    dwell_s: Option<f64>,
    distance_m: Option<f64>,
    speed_mps: Option<f64>,
    limit: Option<f64>,
    not_observed: Option<(String, String)>,
}

impl From<Reason> for ReasonForm {
    fn from(r: Reason) -> Self {
        let Reason { rule, kind, zone, track_ids, score, detail, class, near_track_ids, near_class, dwell_s, distance_m, speed_mps, limit, not_observed } = r;
        let not_observed = not_observed.map(|u| (u.from, u.to));
        Self { rule, kind, zone, track_ids, score, detail, class, near_track_ids, near_class, dwell_s, distance_m, speed_mps, limit, not_observed }
    }
}

impl From<ReasonForm> for Reason {
    fn from(r: ReasonForm) -> Self {
        let ReasonForm { rule, kind, zone, track_ids, score, detail, class, near_track_ids, near_class, dwell_s, distance_m, speed_mps, limit, not_observed } =
            r;
        let not_observed = not_observed.map(|(from, to)| super::Unobserved { from, to });
        Self { rule, kind, zone, track_ids, score, detail, class, near_track_ids, near_class, dwell_s, distance_m, speed_mps, limit, not_observed }
    }
}

#[derive(Serialize, Deserialize)]
struct RiskForm {
    score: f64,
    level: Level,
    priority: u8,
    reasons: Vec<ReasonForm>,
}

#[derive(Serialize, Deserialize)]
struct WorldForm {
    x_m: f64,
    y_m: f64,
    lat: Option<f64>,
    lon: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct ObjectForm {
    track_id: Option<u64>,
    class: Arc<str>,
    confidence: f32,
    bbox: [f32; 4],
    world: Option<WorldForm>,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    zones: Vec<String>,
}

impl From<SceneObject> for ObjectForm {
    fn from(o: SceneObject) -> Self {
        let SceneObject { track_id, class, confidence, bbox, world, speed_mps, heading_deg, zones } = o;
        let world = world.map(|WorldPos { x_m, y_m, lat, lon }| WorldForm { x_m, y_m, lat, lon });
        Self { track_id, class, confidence, bbox, world, speed_mps, heading_deg, zones }
    }
}

impl From<ObjectForm> for SceneObject {
    fn from(o: ObjectForm) -> Self {
        let ObjectForm { track_id, class, confidence, bbox, world, speed_mps, heading_deg, zones } = o;
        let world = world.map(|WorldForm { x_m, y_m, lat, lon }| WorldPos { x_m, y_m, lat, lon });
        Self { track_id, class, confidence, bbox, world, speed_mps, heading_deg, zones }
    }
}

#[derive(Serialize, Deserialize)]
struct FrameInfoForm {
    seq: u64,
    width: u32,
    height: u32,
    time_source: Option<String>,
}

/// `Risk`, every field written.
pub mod risk {
    use super::*;

    pub fn serialize<S: Serializer>(r: &Risk, s: S) -> Result<S::Ok, S::Error> {
        let Risk { score, level, priority, reasons } = r.clone();
        RiskForm { score, level, priority, reasons: reasons.into_iter().map(ReasonForm::from).collect() }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Risk, D::Error> {
        let RiskForm { score, level, priority, reasons } = RiskForm::deserialize(d)?;
        Ok(Risk { score, level, priority, reasons: reasons.into_iter().map(Reason::from).collect() })
    }
}

/// `Vec<SceneObject>`, every field written.
pub mod objects {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[SceneObject], s: S) -> Result<S::Ok, S::Error> {
        let forms: Vec<ObjectForm> = v.iter().cloned().map(ObjectForm::from).collect();
        forms.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SceneObject>, D::Error> {
        Ok(Vec::<ObjectForm>::deserialize(d)?.into_iter().map(SceneObject::from).collect())
    }
}

/// `FrameInfo`, every field written.
pub mod frame_info {
    use super::*;

    pub fn serialize<S: Serializer>(f: &FrameInfo, s: S) -> Result<S::Ok, S::Error> {
        let FrameInfo { seq, width, height, time_source } = f.clone();
        FrameInfoForm { seq, width, height, time_source }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FrameInfo, D::Error> {
        let FrameInfoForm { seq, width, height, time_source } = FrameInfoForm::deserialize(d)?;
        Ok(FrameInfo { seq, width, height, time_source })
    }
}
