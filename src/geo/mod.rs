//! World geometry: image pixels → (undistorted pixels) → ground metres (homography) →
//! latitude/longitude. Fixed cameras are calibrated from point pairs (`calibration`);
//! drones get a homography per frame from their telemetry (`drone`). Motion (speed,
//! heading) is estimated from tracks in world space (`motion`).

pub mod calibrate;
pub mod config;
pub mod drone;
pub mod homography;
pub mod lens;
pub mod motion;
#[cfg(feature = "opencv")]
pub mod opencv_fit;
pub mod wgs84;

use crate::geo::config::{CalibrationConfig, OriginConfig};
use crate::model::WorldPos;
pub use drone::{DroneGeometry, DroneView};
pub use homography::{FitError, Homography, Reprojection};
pub use lens::{Lens, LensError};
pub use motion::{Motion, MotionEstimator};
pub use wgs84::GeoOrigin;

/// Where a detected box stands on the ground, in image pixels: its bottom centre.
pub fn foot_point(bbox: &[f32; 4]) -> [f64; 2] {
    [((bbox[0] + bbox[2]) / 2.0) as f64, bbox[3] as f64]
}

/// A fixed camera's calibrated view of the ground.
#[derive(Debug, Clone)]
pub struct CameraGeometry {
    /// Undistorted pixels → world metres.
    pub homography: Homography,
    /// Intrinsics and distortion: pixels are undistorted before the homography.
    pub lens: Option<Lens>,
    pub origin: Option<GeoOrigin>,
    /// Error over the points the fit kept.
    pub fit: Reprojection,
    /// `opencv-ransac` or `ransac` (pure Rust).
    pub method: &'static str,
    pub inliers: usize,
    /// Sign of the homography's w on the calibrated ground: pixels with the other sign
    /// are above the horizon and map to the ground "behind" the camera.
    ground_sign: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error(transparent)]
    Fit(#[from] FitError),
    #[error(transparent)]
    Lens(#[from] LensError),
    #[error("image point {index} {px:?} lies where the lens model does not invert (far outside the calibrated field of view)")]
    NotUndistortable { index: usize, px: [f64; 2] },
    #[error("mean reprojection error {mean:.3} m exceeds max_error_m = {limit} m (worst point {max:.3} m)")]
    TooInaccurate { mean: f64, max: f64, limit: f64 },
    #[error(
        "only {kept} of {total} point pairs agree with one homography within {threshold:.2} m (2 × max_error_m): the pairs are too noisy or too many are mistyped"
    )]
    NoConsensus { kept: usize, total: usize, threshold: f64 },
    #[error("{} of {total} point pairs do not fit the homography of the others (max_outliers = {allowed}): {}", outliers.len(), describe_outliers(outliers))]
    TooManyOutliers { total: usize, allowed: usize, outliers: Vec<(usize, f64)> },
    #[error("OpenCV could not fit a homography: {0}")]
    OpenCv(String),
}

fn describe_outliers(o: &[(usize, f64)]) -> String {
    o.iter().map(|(i, e)| format!("pair {i} is {e:.2} m off")).collect::<Vec<_>>().join(", ")
}

impl CalibrationError {
    /// The `[cameras.calibration]` key to look at.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Fit(FitError::LengthMismatch(..)) | Self::TooManyOutliers { .. } | Self::NoConsensus { .. } => "world_points",
            Self::Fit(_) | Self::OpenCv(_) => "image_points",
            Self::Lens(e) => e.key(),
            Self::NotUndistortable { .. } => "distortion",
            Self::TooInaccurate { .. } => "max_error_m",
        }
    }

    /// What to do about it.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::Fit(FitError::TooFewPoints(_)) => "measure at least 4 ground points (6 or more, spread over the view, is better)",
            Self::Fit(FitError::LengthMismatch(..)) => "list the same reference points in image_points and world_points, in the same order",
            Self::Fit(FitError::Degenerate) | Self::OpenCv(_) => "use points spread over the ground, no three on one line",
            Self::Lens(e) => e.fix(),
            Self::NotUndistortable { .. } => "check that camera_matrix and distortion belong to this camera at this resolution",
            Self::TooInaccurate { .. } => {
                "run `argus calibrate` to see each point's error: re-measure the worst (a pair is probably swapped or mistyped), or raise max_error_m"
            }
            Self::NoConsensus { .. } => {
                "run `argus calibrate` to see each pair's error; re-measure the points (same order in both lists, east then north), or raise max_error_m if the ground truth is coarse"
            }
            Self::TooManyOutliers { .. } => {
                "re-measure those pairs (counted from 0; a swapped or mistyped coordinate?) or remove them; `argus calibrate` shows every pair's error"
            }
        }
    }
}

/// A homography fitted to a calibration, with each point's error; not yet judged
/// against `max_error_m` (so that `argus calibrate` can show a bad fit before refusing it).
#[derive(Debug, Clone)]
pub struct CalibrationFit {
    pub homography: Homography,
    pub lens: Option<Lens>,
    /// `opencv-ransac` or `ransac` (pure Rust).
    pub method: &'static str,
    /// Image points after undistortion (as given without a lens).
    pub undistorted: Vec<[f64; 2]>,
    /// Whether the fit kept each pair (RANSAC inlier).
    pub inlier: Vec<bool>,
    /// World distance between where each image point maps and its world point (metres).
    pub errors: Vec<f64>,
    /// Mean and max over the kept pairs.
    pub fit: Reprojection,
}

impl CalibrationFit {
    pub fn inliers(&self) -> usize {
        self.inlier.iter().filter(|k| **k).count()
    }

    /// Refused when no majority of the pairs agrees on one homography, when more than
    /// `max_outliers` pairs were left out, or when the mean error over the kept ones
    /// exceeds `limit`.
    pub fn check(&self, limit: f64, max_outliers: usize) -> Result<(), CalibrationError> {
        let (kept, total) = (self.inliers(), self.inlier.len());
        if kept < 4 || kept * 2 < total {
            return Err(CalibrationError::NoConsensus { kept, total, threshold: ransac_threshold(limit) });
        }
        if total - kept > max_outliers {
            let outliers = self.inlier.iter().enumerate().filter(|(_, k)| !**k).map(|(i, _)| (i, self.errors[i])).collect();
            return Err(CalibrationError::TooManyOutliers { total, allowed: max_outliers, outliers });
        }
        if !(self.fit.mean <= limit) {
            return Err(CalibrationError::TooInaccurate { mean: self.fit.mean, max: self.fit.max, limit });
        }
        Ok(())
    }
}

/// A pair further than this from the fit is an outlier: twice the mean error allowed.
fn ransac_threshold(max_error_m: f64) -> f64 {
    2.0 * max_error_m.max(0.005)
}

/// Undistorts the image points and fits the homography by RANSAC (inlier distance
/// 2 × `max_error_m` in world metres): OpenCV's when built with `opencv`, else
/// [`homography::fit_ransac`].
pub fn fit_points(cal: &CalibrationConfig) -> Result<CalibrationFit, CalibrationError> {
    let lens = Lens::from_config(cal.camera_matrix.as_deref(), cal.distortion.as_deref())?;
    let undistorted: Vec<[f64; 2]> = match &lens {
        Some(l) => l
            .undistort_points(&cal.image_points)
            .into_iter()
            .enumerate()
            .map(|(index, p)| p.ok_or(CalibrationError::NotUndistortable { index, px: cal.image_points[index] }))
            .collect::<Result<_, _>>()?,
        None => cal.image_points.clone(),
    };
    let world = &cal.world_points;
    // The DLT also validates the point set (count, degeneracy) for both paths.
    let dlt = Homography::fit_dlt(&undistorted, world)?;
    #[cfg(feature = "opencv")]
    let (homography, method, inlier) = {
        let threshold = ransac_threshold(cal.max_error_m);
        let (h, _) = opencv_fit::find_homography_ransac(&undistorted, world, threshold).map_err(CalibrationError::OpenCv)?;
        // Like the pure-Rust RANSAC, the least-squares fit of all pairs is a candidate
        // too: when noise is near the threshold it keeps more pairs than any exact
        // 4-point model, and both builds should judge a calibration alike.
        let ransac = homography::refine_consensus(&undistorted, world, h, threshold);
        let all = homography::refine_consensus(&undistorted, world, dlt, threshold);
        let count = |k: &[bool]| k.iter().filter(|k| **k).count();
        let (h, keep) = if count(&all.1) > count(&ransac.1) { all } else { ransac };
        (h, "opencv-ransac", keep)
    };
    #[cfg(not(feature = "opencv"))]
    let (homography, method, inlier) = {
        let _ = dlt;
        let (h, keep) = homography::fit_ransac(&undistorted, world, ransac_threshold(cal.max_error_m))?;
        (h, "ransac", keep)
    };
    let errors: Vec<f64> =
        undistorted.iter().zip(world).map(|(i, w)| homography.apply(*i).map_or(f64::INFINITY, |p| (p[0] - w[0]).hypot(p[1] - w[1]))).collect();
    let kept: Vec<f64> = errors.iter().zip(&inlier).filter(|(_, k)| **k).map(|(e, _)| *e).collect();
    let fit = Reprojection { mean: kept.iter().sum::<f64>() / kept.len().max(1) as f64, max: kept.iter().fold(0.0, |m, e| m.max(*e)) };
    Ok(CalibrationFit { homography, lens, method, undistorted, inlier, errors, fit })
}

/// Fits and judges a calibration, as start-up and `argus check` do.
pub fn fit_calibration(cal: &CalibrationConfig) -> Result<CalibrationFit, CalibrationError> {
    let f = fit_points(cal)?;
    f.check(cal.max_error_m, cal.max_outliers)?;
    Ok(f)
}

impl CameraGeometry {
    pub fn from_config(cal: &CalibrationConfig, origin: Option<&OriginConfig>) -> Result<Self, CalibrationError> {
        let f = fit_calibration(cal)?;
        Ok(Self::from_fit(&f, origin))
    }

    /// A geometry from a known homography (pixels → metres, no lens), e.g. in tests;
    /// pixels where its w is positive are on the ground.
    pub fn from_homography(homography: Homography, origin: Option<GeoOrigin>) -> Self {
        Self { homography, lens: None, origin, fit: Reprojection { mean: 0.0, max: 0.0 }, method: "given", inliers: 0, ground_sign: 1.0 }
    }

    pub fn from_fit(f: &CalibrationFit, origin: Option<&OriginConfig>) -> Self {
        let h = &f.homography.0;
        let w_sum: f64 = f.undistorted.iter().zip(&f.inlier).filter(|(_, k)| **k).map(|(p, _)| h[6] * p[0] + h[7] * p[1] + h[8]).sum();
        Self {
            ground_sign: if w_sum < 0.0 { -1.0 } else { 1.0 },
            homography: f.homography,
            lens: f.lens,
            origin: origin.map(|o| GeoOrigin::new(o.lat, o.lon)),
            fit: f.fit,
            method: f.method,
            inliers: f.inliers(),
        }
    }

    /// Where a detected box stands on the ground: its foot point (bottom centre).
    pub fn locate_box(&self, bbox: &[f32; 4]) -> Option<WorldPos> {
        self.locate_point(foot_point(bbox))
    }

    /// Every box's ground position (undistorting all foot points in one call).
    pub fn locate_boxes(&self, boxes: &[[f32; 4]]) -> Vec<Option<WorldPos>> {
        let feet: Vec<[f64; 2]> = boxes.iter().map(foot_point).collect();
        match &self.lens {
            Some(l) => l.undistort_points(&feet).into_iter().map(|p| p.and_then(|p| self.locate_undistorted(p))).collect(),
            None => feet.into_iter().map(|p| self.locate_undistorted(p)).collect(),
        }
    }

    /// A pixel as the camera saw it (distorted) → the ground.
    pub fn locate_point(&self, px: [f64; 2]) -> Option<WorldPos> {
        let px = match &self.lens {
            Some(l) => l.undistort_points(&[px]).pop().flatten()?,
            None => px,
        };
        self.locate_undistorted(px)
    }

    fn locate_undistorted(&self, px: [f64; 2]) -> Option<WorldPos> {
        let h = &self.homography.0;
        if !((h[6] * px[0] + h[7] * px[1] + h[8]) * self.ground_sign > 0.0) {
            return None;
        }
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
