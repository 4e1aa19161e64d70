//! An object as events carry it: a tracked detection placed on the ground.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One object in one frame, as the scene stage sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneObject {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    pub class: Arc<str>,
    pub confidence: f32,
    pub bbox: [f32; 4],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world: Option<WorldPos>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    #[serde(default)]
    pub zones: Vec<String>,
}

/// A ground position in the camera's world frame, with lat/lon when geo-referenced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WorldPos {
    pub x_m: f64,
    pub y_m: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
}

impl WorldPos {
    /// Rounded for events: centimetres, and 1e-7° (about 1 cm) for lat/lon.
    pub fn rounded(self) -> Self {
        let r = |v: f64, s: f64| (v * s).round() / s;
        Self { x_m: r(self.x_m, 100.0), y_m: r(self.y_m, 100.0), lat: self.lat.map(|v| r(v, 1e7)), lon: self.lon.map(|v| r(v, 1e7)) }
    }
}
