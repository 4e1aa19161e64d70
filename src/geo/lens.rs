//! Camera intrinsics and lens distortion (OpenCV's model), so that image points can be
//! undistorted before the homography: a plane maps to a plane by a homography only
//! through an ideal pinhole, and wide lenses bend straight lines by metres at the edges.
//!
//! The model is OpenCV's `calib3d` one: normalised `x = (u - cx) / fx`, `r² = x² + y²`,
//! radial `(1 + k1 r² + k2 r⁴ + k3 r⁶) / (1 + k4 r² + k5 r⁴ + k6 r⁶)`, tangential `p1, p2`.
//! Coefficients are given as OpenCV prints them: `[k1, k2, p1, p2]`, `[k1, k2, p1, p2, k3]`
//! or `[k1, k2, p1, p2, k3, k4, k5, k6]`, so the output of `cv::calibrateCamera` can be
//! pasted unchanged. With the `opencv` feature, undistortion is `cv::undistortPoints`;
//! without it, the same model is inverted here.

/// Focal lengths and principal point, in pixels (no skew).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intrinsics {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

/// A camera's intrinsics with its distortion coefficients
/// `[k1, k2, p1, p2, k3, k4, k5, k6]` (missing ones zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lens {
    pub k: Intrinsics,
    pub dist: [f64; 8],
    /// How many coefficients were given (4, 5 or 8; 0 = none): OpenCV is passed the same.
    pub n_dist: usize,
}

/// What is wrong with a `camera_matrix` / `distortion` pair; `key()` names the config key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LensError {
    #[error("has {0} values; write [fx, fy, cx, cy] or the 3×3 matrix as 9 values [fx, 0, cx, 0, fy, cy, 0, 0, 1]")]
    MatrixShape(usize),
    #[error("is not a pinhole camera matrix (skew must be 0 and the last row 0, 0, 1): {0:?}")]
    MatrixForm(Vec<f64>),
    #[error("focal lengths must be finite and > 0 and the principal point finite, got fx = {fx}, fy = {fy}, cx = {cx}, cy = {cy}")]
    MatrixValues { fx: f64, fy: f64, cx: f64, cy: f64 },
    #[error("has {0} coefficients; OpenCV's model takes [k1, k2, p1, p2], [k1, k2, p1, p2, k3] or [k1, k2, p1, p2, k3, k4, k5, k6]")]
    DistortionShape(usize),
    #[error("coefficient {index} is {value}, not a finite number")]
    DistortionValue { index: usize, value: f64 },
    #[error("is set without camera_matrix; distortion is defined in normalised coordinates, which need the intrinsics")]
    DistortionWithoutMatrix,
}

impl LensError {
    /// The `[cameras.calibration]` key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            Self::MatrixShape(_) | Self::MatrixForm(_) | Self::MatrixValues { .. } => "camera_matrix",
            _ => "distortion",
        }
    }

    pub fn fix(&self) -> &'static str {
        match self {
            Self::DistortionWithoutMatrix => "add camera_matrix = [fx, fy, cx, cy] from the same camera calibration, or remove distortion",
            Self::DistortionShape(_) | Self::DistortionValue { .. } => {
                "paste the coefficients as cv::calibrateCamera prints them, e.g. distortion = [-0.28, 0.07, 0.0, 0.0, 0.0]"
            }
            _ => "write camera_matrix = [fx, fy, cx, cy] in pixels, e.g. [800.0, 800.0, 640.0, 360.0]",
        }
    }
}

/// Fixed-point iterations before Newton polishing (OpenCV itself stops after 5 by default).
const FIXED_POINT_ITERS: usize = 20;
/// A point that does not re-distort to within this many pixels of where it was seen lies
/// where the model does not invert (far outside the calibrated field): placed nowhere.
const ROUND_TRIP_TOLERANCE_PX: f64 = 0.5;

impl Lens {
    /// From config values; `Ok(None)` when neither is given.
    pub fn from_config(camera_matrix: Option<&[f64]>, distortion: Option<&[f64]>) -> Result<Option<Self>, LensError> {
        let Some(m) = camera_matrix else {
            return match distortion {
                Some(_) => Err(LensError::DistortionWithoutMatrix),
                None => Ok(None),
            };
        };
        let (fx, fy, cx, cy) = match m.len() {
            4 => (m[0], m[1], m[2], m[3]),
            9 => {
                if m[1] != 0.0 || m[3] != 0.0 || m[6] != 0.0 || m[7] != 0.0 || m[8] != 1.0 {
                    return Err(LensError::MatrixForm(m.to_vec()));
                }
                (m[0], m[4], m[2], m[5])
            }
            n => return Err(LensError::MatrixShape(n)),
        };
        if !(fx > 0.0 && fy > 0.0 && fx.is_finite() && fy.is_finite() && cx.is_finite() && cy.is_finite()) {
            return Err(LensError::MatrixValues { fx, fy, cx, cy });
        }
        let coeffs = distortion.unwrap_or(&[]);
        if !matches!(coeffs.len(), 0 | 4 | 5 | 8) {
            return Err(LensError::DistortionShape(coeffs.len()));
        }
        if let Some((index, value)) = coeffs.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(LensError::DistortionValue { index, value: *value });
        }
        let mut dist = [0.0; 8];
        dist[..coeffs.len()].copy_from_slice(coeffs);
        Ok(Some(Self { k: Intrinsics { fx, fy, cx, cy }, dist, n_dist: coeffs.len() }))
    }

    /// An ideal pinhole with these intrinsics (no distortion).
    pub fn pinhole(k: Intrinsics) -> Self {
        Self { k, dist: [0.0; 8], n_dist: 0 }
    }

    pub fn has_distortion(&self) -> bool {
        self.dist.iter().any(|c| *c != 0.0)
    }

    /// Normalised ideal coordinates → normalised distorted ones (the forward model).
    fn distort_normalized(&self, x: f64, y: f64) -> [f64; 2] {
        let [k1, k2, p1, p2, k3, k4, k5, k6] = self.dist;
        let r2 = x * x + y * y;
        let radial = (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)));
        [x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x), y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y]
    }

    /// Where the lens images an ideal (undistorted) pixel: used by tests to synthesise
    /// distorted observations, and to check every undistortion by a round trip.
    pub fn distort(&self, ideal_px: [f64; 2]) -> [f64; 2] {
        let k = &self.k;
        let [xd, yd] = self.distort_normalized((ideal_px[0] - k.cx) / k.fx, (ideal_px[1] - k.cy) / k.fy);
        [xd * k.fx + k.cx, yd * k.fy + k.cy]
    }

    /// Inverts the model for one pixel, in pure Rust: OpenCV's fixed-point iteration, then
    /// Newton steps so that strong distortion converges too. `None` where it does not
    /// invert.
    pub fn undistort_point_pure(&self, px: [f64; 2]) -> Option<[f64; 2]> {
        let k = &self.k;
        let (x0, y0) = ((px[0] - k.cx) / k.fx, (px[1] - k.cy) / k.fy);
        if !self.has_distortion() {
            return Some(px);
        }
        let [k1, k2, p1, p2, k3, k4, k5, k6] = self.dist;
        let (mut x, mut y) = (x0, y0);
        for _ in 0..FIXED_POINT_ITERS {
            let r2 = x * x + y * y;
            let icdist = (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))) / (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3)));
            if !(icdist > 0.0) {
                break;
            }
            let dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x);
            let dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y;
            x = (x0 - dx) * icdist;
            y = (y0 - dy) * icdist;
        }
        // Newton on f(x, y) = distort(x, y) - (x0, y0), Jacobian by central differences.
        for _ in 0..10 {
            let [fx0, fy0] = self.distort_normalized(x, y);
            let (ex, ey) = (fx0 - x0, fy0 - y0);
            if ex.abs().max(ey.abs()) < 1e-14 {
                break;
            }
            let h = 1e-7 * (1.0 + x.abs().max(y.abs()));
            let [ax1, ay1] = self.distort_normalized(x + h, y);
            let [ax0, ay0] = self.distort_normalized(x - h, y);
            let [bx1, by1] = self.distort_normalized(x, y + h);
            let [bx0, by0] = self.distort_normalized(x, y - h);
            let (j11, j21) = ((ax1 - ax0) / (2.0 * h), (ay1 - ay0) / (2.0 * h));
            let (j12, j22) = ((bx1 - bx0) / (2.0 * h), (by1 - by0) / (2.0 * h));
            let det = j11 * j22 - j12 * j21;
            if !(det.abs() > 1e-12) {
                break;
            }
            x -= (j22 * ex - j12 * ey) / det;
            y -= (-j21 * ex + j11 * ey) / det;
        }
        let out = [x * k.fx + k.cx, y * k.fy + k.cy];
        self.round_trips(px, out).then_some(out)
    }

    /// True when `ideal` re-distorts onto the observed pixel: the inverse is the right one.
    fn round_trips(&self, observed: [f64; 2], ideal: [f64; 2]) -> bool {
        if !(ideal[0].is_finite() && ideal[1].is_finite()) {
            return false;
        }
        let back = self.distort(ideal);
        (back[0] - observed[0]).hypot(back[1] - observed[1]) <= ROUND_TRIP_TOLERANCE_PX
    }

    /// Undistorts pixels (ideal pinhole pixels with the same intrinsics out): OpenCV's
    /// `undistortPoints` with the `opencv` feature, else the pure-Rust inverse. A point
    /// the model cannot invert is `None`.
    pub fn undistort_points(&self, px: &[[f64; 2]]) -> Vec<Option<[f64; 2]>> {
        if !self.has_distortion() || px.is_empty() {
            return px.iter().map(|p| Some(*p)).collect();
        }
        #[cfg(feature = "opencv")]
        {
            match opencv_undistort(self, px) {
                Ok(out) => return px.iter().zip(out).map(|(p, q)| self.round_trips(*p, q).then_some(q)).collect(),
                Err(e) => tracing::warn!(error = %e, "cv::undistortPoints failed; using the pure-Rust inverse"),
            }
        }
        px.iter().map(|p| self.undistort_point_pure(*p)).collect()
    }
}

/// `cv::undistortPoints` with `P = K` (output in pixels of the same ideal camera) and a
/// tighter stop than its default of 5 iterations, which leaves pixels of error at the
/// edges of wide lenses.
#[cfg(feature = "opencv")]
pub fn opencv_undistort(lens: &Lens, px: &[[f64; 2]]) -> Result<Vec<[f64; 2]>, String> {
    use opencv::core::{Mat, Point2d, TermCriteria, TermCriteria_Type, Vector, no_array};
    let k = &lens.k;
    let km = Mat::from_slice_2d(&[[k.fx, 0.0, k.cx], [0.0, k.fy, k.cy], [0.0, 0.0, 1.0]]).map_err(|e| e.to_string())?;
    let d: Vector<f64> = lens.dist[..lens.n_dist.max(4)].iter().copied().collect();
    let src: Vector<Point2d> = px.iter().map(|p| Point2d::new(p[0], p[1])).collect();
    let mut dst: Vector<Point2d> = Vector::new();
    let criteria = TermCriteria::new(TermCriteria_Type::COUNT as i32 | TermCriteria_Type::EPS as i32, 100, 1e-9).map_err(|e| e.to_string())?;
    opencv::calib3d::undistort_points_iter(&src, &mut dst, &km, &d, &no_array(), &km, criteria).map_err(|e| e.to_string())?;
    if dst.len() != px.len() {
        return Err(format!("returned {} points for {}", dst.len(), px.len()));
    }
    Ok(dst.iter().map(|p| [p.x, p.y]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide() -> Lens {
        Lens::from_config(Some(&[800.0, 790.0, 640.0, 360.0]), Some(&[-0.28, 0.09, 0.001, -0.0005, -0.01])).unwrap().unwrap()
    }

    #[test]
    fn undistortion_inverts_distortion_over_the_image() {
        let lens = wide();
        for u in (0..=1280).step_by(160) {
            for v in (0..=720).step_by(120) {
                let ideal = [u as f64, v as f64];
                let seen = lens.distort(ideal);
                let back = lens.undistort_point_pure(seen).expect("inverts");
                assert!((back[0] - ideal[0]).abs() < 1e-6 && (back[1] - ideal[1]).abs() < 1e-6, "{ideal:?} → {seen:?} → {back:?}");
            }
        }
    }

    #[test]
    fn barrel_distortion_pulls_edges_inwards() {
        let lens = wide();
        let seen = lens.distort([1280.0, 360.0]);
        assert!(seen[0] < 1230.0, "{seen:?}");
        assert_eq!(lens.distort([640.0, 360.0]), [640.0, 360.0]);
    }

    #[test]
    fn rational_model_round_trips() {
        let lens = Lens::from_config(Some(&[900.0, 0.0, 600.0, 0.0, 900.0, 400.0, 0.0, 0.0, 1.0]), Some(&[0.1, -0.02, 0.0, 0.0, 0.001, 0.05, 0.0, 0.0]))
            .unwrap()
            .unwrap();
        let ideal = [1100.0, 50.0];
        let back = lens.undistort_point_pure(lens.distort(ideal)).unwrap();
        assert!((back[0] - ideal[0]).abs() < 1e-6 && (back[1] - ideal[1]).abs() < 1e-6, "{back:?}");
    }

    #[test]
    fn config_shapes_and_values_are_checked() {
        assert_eq!(Lens::from_config(None, None), Ok(None));
        assert_eq!(Lens::from_config(None, Some(&[0.1, 0.0, 0.0, 0.0])), Err(LensError::DistortionWithoutMatrix));
        assert_eq!(Lens::from_config(Some(&[1.0, 2.0, 3.0]), None), Err(LensError::MatrixShape(3)));
        assert!(matches!(Lens::from_config(Some(&[800.0, -1.0, 3.0, 4.0]), None), Err(LensError::MatrixValues { .. })));
        assert!(matches!(Lens::from_config(Some(&[800.0, 2.0, 640.0, 0.0, 800.0, 360.0, 0.0, 0.0, 1.0]), None), Err(LensError::MatrixForm(_))));
        let e = Lens::from_config(Some(&[800.0, 800.0, 640.0, 360.0]), Some(&[0.1, 0.2, 0.0])).unwrap_err();
        assert_eq!(e, LensError::DistortionShape(3));
        assert_eq!(e.key(), "distortion");
        assert!(matches!(
            Lens::from_config(Some(&[800.0, 800.0, 640.0, 360.0]), Some(&[0.1, f64::NAN, 0.0, 0.0])),
            Err(LensError::DistortionValue { index: 1, .. })
        ));
    }

    #[test]
    fn a_pixel_the_model_cannot_invert_is_placed_nowhere() {
        // Strong barrel distortion folds over beyond a radius (≈ 200 px here): no pixel
        // further out is the image of any ideal point.
        let lens = Lens::from_config(Some(&[500.0, 500.0, 320.0, 240.0]), Some(&[-0.9, 0.0, 0.0, 0.0])).unwrap().unwrap();
        assert!(lens.undistort_point_pure([5000.0, 4000.0]).is_none());
        assert!(lens.undistort_point_pure([330.0, 250.0]).is_some());
    }
}
