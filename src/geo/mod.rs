//! World geometry: image pixels → ground metres (homography) → latitude/longitude.

pub mod homography;
#[cfg(feature = "opencv")]
pub mod opencv_fit;
pub mod wgs84;

use serde::{Deserialize, Serialize};

use crate::config::{CalibrationConfig, OriginConfig};
pub use homography::{FitError, Homography, Reprojection};
pub use wgs84::GeoOrigin;

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

/// A camera's calibrated view of the ground.
#[derive(Debug, Clone)]
pub struct CameraGeometry {
    pub homography: Homography,
    pub origin: Option<GeoOrigin>,
    pub fit: Reprojection,
    /// `opencv-ransac` or `dlt`.
    pub method: &'static str,
    pub inliers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error(transparent)]
    Fit(#[from] FitError),
    #[error("mean reprojection error {mean:.3} m exceeds max_error_m = {limit} m (worst point {max:.3} m)")]
    TooInaccurate { mean: f64, max: f64, limit: f64 },
    #[error("OpenCV could not fit a homography: {0}")]
    OpenCv(String),
}

/// Fits the homography for a calibration: OpenCV RANSAC when built with `opencv`,
/// else the normalised DLT. Refused when the mean error over the points the fit kept
/// (RANSAC inliers; all points for the DLT) exceeds `max_error_m`, or when fewer than
/// four points survive.
pub fn fit_calibration(cal: &CalibrationConfig) -> Result<(Homography, Reprojection, &'static str, usize), CalibrationError> {
    let (img, world) = (&cal.image_points, &cal.world_points);
    // The DLT also validates the point set (count, degeneracy) for both paths.
    let dlt = Homography::fit_dlt(img, world)?;
    #[cfg(feature = "opencv")]
    let (h, method, keep) = {
        let (h, keep) = opencv_fit::find_homography_ransac(img, world, 2.0 * cal.max_error_m.max(0.01))
            .map_err(CalibrationError::OpenCv)?;
        (h, "opencv-ransac", keep)
    };
    #[cfg(not(feature = "opencv"))]
    let (h, method, keep) = (dlt, "dlt", vec![true; img.len()]);
    let _ = dlt;
    let inliers = keep.iter().filter(|k| **k).count();
    if inliers < 4 {
        return Err(CalibrationError::Fit(FitError::TooFewPoints(inliers)));
    }
    let (ki, kw): (Vec<[f64; 2]>, Vec<[f64; 2]>) =
        img.iter().zip(world).zip(&keep).filter(|(_, k)| **k).map(|((i, w), _)| (*i, *w)).unzip();
    let fit = h.reprojection(&ki, &kw);
    if !(fit.mean <= cal.max_error_m) {
        return Err(CalibrationError::TooInaccurate { mean: fit.mean, max: fit.max, limit: cal.max_error_m });
    }
    Ok((h, fit, method, inliers))
}

impl CameraGeometry {
    pub fn from_config(cal: &CalibrationConfig, origin: Option<&OriginConfig>) -> Result<Self, CalibrationError> {
        let (homography, fit, method, inliers) = fit_calibration(cal)?;
        Ok(Self { homography, origin: origin.map(|o| GeoOrigin::new(o.lat, o.lon)), fit, method, inliers })
    }

    /// Where a detected box stands on the ground: its foot point (bottom centre).
    pub fn locate_box(&self, bbox: &[f32; 4]) -> Option<WorldPos> {
        let foot = [((bbox[0] + bbox[2]) / 2.0) as f64, bbox[3] as f64];
        self.locate_point(foot)
    }

    pub fn locate_point(&self, px: [f64; 2]) -> Option<WorldPos> {
        let [x, y] = self.homography.apply(px)?;
        let (lat, lon) = match &self.origin {
            Some(o) => {
                let (lat, lon) = o.to_lat_lon(x, y);
                (Some(lat), Some(lon))
            }
            None => (None, None),
        };
        Some(WorldPos { x_m: x, y_m: y, lat, lon })
    }
}
