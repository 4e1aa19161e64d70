//! A camera's place in the world: `[cameras.calibration]` (fixed cameras),
//! `[cameras.drone]` (placed per frame from telemetry) and `[cameras.origin]`.

use serde::{Deserialize, Serialize};

use super::CalibrationFit;
use crate::model::Issues;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationConfig {
    /// Pixel coordinates `[x, y]` of reference points in the image.
    pub image_points: Vec<[f64; 2]>,
    /// The same points on the ground, `[x_east_m, y_north_m]` in world metres.
    pub world_points: Vec<[f64; 2]>,
    /// Refuse the calibration when the mean reprojection error exceeds this (metres).
    #[serde(default = "default_max_error_m")]
    pub max_error_m: f64,
    /// Pairs RANSAC may leave out (further than 2 × max_error_m from the fit of the
    /// others) before the calibration is refused: 0 makes every mistyped pair an error
    /// that names it. Never more than half the pairs.
    #[serde(default)]
    pub max_outliers: usize,
    /// Intrinsics in pixels, `[fx, fy, cx, cy]` or the 3×3 matrix as 9 values row by row:
    /// with `distortion`, image points are undistorted before the homography.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_matrix: Option<Vec<f64>>,
    /// OpenCV distortion coefficients `[k1, k2, p1, p2]`, `[k1, k2, p1, p2, k3]` or
    /// `[k1, k2, p1, p2, k3, k4, k5, k6]` (needs `camera_matrix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distortion: Option<Vec<f64>>,
}

/// `[cameras.drone]`: the camera flies; each frame's `telemetry` (Kafka header) gives
/// its pose, and the ground is taken as flat. See `crate::model::Telemetry` for the
/// angle conventions.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DroneConfig {
    /// Altitude of the ground in the telemetry's `alt_m` reference: 0 when `alt_m` is
    /// height above ground; the site's elevation when it is above sea level.
    pub ground_alt_m: f64,
    /// Points further than this from the point below the drone are placed nowhere
    /// (near the horizon a pixel spans hundreds of metres).
    pub max_range_m: f64,
    /// Lens distortion, OpenCV coefficients as in `[cameras.calibration]`, with the
    /// intrinsics of each frame taken from `hfov` and the image size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distortion: Option<Vec<f64>>,
}

impl Default for DroneConfig {
    fn default() -> Self {
        Self { ground_alt_m: 0.0, max_range_m: 1000.0, distortion: None }
    }
}

fn default_max_error_m() -> f64 {
    0.5
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    pub lat: f64,
    pub lon: f64,
}

/// The same fit and judgement as start-up, so `argus check` refuses what `argus run`
/// would; the accepted fit is handed to the build, which does not fit again.
pub fn validate_calibration(cal: &CalibrationConfig, ck: &str, iss: &mut Issues) -> Option<CalibrationFit> {
    if !(cal.max_error_m > 0.0 && cal.max_error_m.is_finite()) {
        iss.add(format!("{ck}.max_error_m"), format!("{} is not > 0", cal.max_error_m), "use e.g. 0.5 (metres)");
        return None;
    }
    if let Some((i, _)) = cal.image_points.iter().chain(&cal.world_points).enumerate().find(|(_, p)| !(p[0].is_finite() && p[1].is_finite())) {
        let (k, i) = if i < cal.image_points.len() { ("image_points", i) } else { ("world_points", i - cal.image_points.len()) };
        iss.add(format!("{ck}.{k}"), format!("point {i} is not a pair of finite numbers"), "write each point as [x, y]");
        return None;
    }
    if cal.image_points.len() != cal.world_points.len() {
        iss.add(
            format!("{ck}.world_points"),
            format!("{} image points but {} world points", cal.image_points.len(), cal.world_points.len()),
            "list the same reference points in both, in the same order",
        );
        return None;
    }
    if cal.image_points.len() < 4 {
        iss.add(
            format!("{ck}.image_points"),
            format!("{} point pairs; a homography needs at least 4", cal.image_points.len()),
            "measure at least 4 ground points (6+ is better)",
        );
        return None;
    }
    match super::fit_calibration(cal) {
        Ok(fit) => Some(fit),
        Err(e) => {
            iss.add(format!("{ck}.{}", e.key()), e.to_string(), e.fix());
            None
        }
    }
}

/// `[cameras.drone]` keys (`dk` = `cameras[i].drone`).
pub fn validate_drone(d: &DroneConfig, dk: &str, iss: &mut Issues) {
    if !d.ground_alt_m.is_finite() {
        iss.add(
            format!("{dk}.ground_alt_m"),
            format!("{} is not a number", d.ground_alt_m),
            "use 0 when telemetry alt_m is height above ground, else the ground's altitude in metres",
        );
    }
    if let Some(coeffs) = &d.distortion {
        // Shape and values as for a fixed camera (the intrinsics come from hfov per frame).
        if let Err(e) = super::Lens::from_config(Some(&[1000.0, 1000.0, 500.0, 500.0]), Some(coeffs)) {
            iss.add(format!("{dk}.distortion"), e.to_string(), e.fix());
        }
    }
    if !(d.max_range_m > 0.0 && d.max_range_m.is_finite()) {
        iss.add(format!("{dk}.max_range_m"), format!("{} is not > 0", d.max_range_m), "use e.g. 1000 (metres)");
    }
}

/// `[cameras.origin]` (`key` = `cameras[i]`).
pub fn validate_origin(o: &OriginConfig, key: &str, iss: &mut Issues) {
    if !(-90.0..=90.0).contains(&o.lat) || !(-180.0..=180.0).contains(&o.lon) {
        iss.add(format!("{key}.origin"), format!("({}, {}) is not a latitude/longitude", o.lat, o.lon), "lat in -90..90, lon in -180..180, decimal degrees");
    }
}
