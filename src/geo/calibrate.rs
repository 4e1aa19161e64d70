//! `argus calibrate`: the fit of one calibration as text an operator reads (homography,
//! each point's error in metres) and a `[cameras.calibration]` snippet to paste.
//!
//! Point pairs come from a pipeline camera or from a stand-alone points file: the keys of
//! `[cameras.calibration]` at the top level, plus an optional `[origin]` table.

use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use super::{CalibrationError, CalibrationFit};
use crate::geo::config::{CalibrationConfig, OriginConfig};

/// A stand-alone points file (`argus calibrate --points pts.toml`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PointsFile {
    pub image_points: Vec<[f64; 2]>,
    pub world_points: Vec<[f64; 2]>,
    /// When absent, the fit is judged against the default limit and the snippet suggests
    /// one from the errors measured.
    pub max_error_m: Option<f64>,
    #[serde(default)]
    pub max_outliers: usize,
    pub camera_matrix: Option<Vec<f64>>,
    pub distortion: Option<Vec<f64>>,
    pub origin: Option<OriginConfig>,
}

/// The default `max_error_m` of `[cameras.calibration]`.
pub const DEFAULT_MAX_ERROR_M: f64 = 0.5;

impl PointsFile {
    /// Parses the file's text; errors name the file, the line and the key.
    pub fn parse(file: &Path, text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            format!(
                "{}{at}: {} (fix: a points file holds image_points = [[x, y], ...] and world_points = [[east_m, north_m], ...], optionally max_error_m, camera_matrix, distortion and an [origin] table with lat, lon)",
                file.display(),
                e.message().trim()
            )
        })
    }

    pub fn calibration(&self) -> CalibrationConfig {
        CalibrationConfig {
            image_points: self.image_points.clone(),
            world_points: self.world_points.clone(),
            max_error_m: self.max_error_m.unwrap_or(DEFAULT_MAX_ERROR_M),
            max_outliers: self.max_outliers,
            camera_matrix: self.camera_matrix.clone(),
            distortion: self.distortion.clone(),
        }
    }
}

/// A limit with headroom over the measured mean: twice it, rounded up to 5 cm, at least
/// 10 cm (metres).
pub fn suggested_max_error_m(fit: &CalibrationFit) -> f64 {
    ((2.0 * fit.fit.mean) / 0.05).ceil().max(2.0) * 0.05
}

fn num(v: f64) -> String {
    // `{:?}` keeps a decimal point (40.0, not 40), so TOML reads a float either way.
    format!("{v:?}")
}

fn pairs(v: &[[f64; 2]]) -> String {
    let items: Vec<String> = v.iter().map(|p| format!("[{}, {}]", num(p[0]), num(p[1]))).collect();
    format!("[{}]", items.join(", "))
}

fn list(v: &[f64]) -> String {
    format!("[{}]", v.iter().map(|x| num(*x)).collect::<Vec<_>>().join(", "))
}

/// The fit as text (headed by `label`, e.g. "camera plaza"): method, homography, error
/// summary and one line per point pair.
/// `verdict` is the outcome of [`CalibrationFit::check`].
pub fn report(label: &str, cal: &CalibrationConfig, fit: &CalibrationFit, verdict: &Result<(), CalibrationError>) -> String {
    let mut s = String::new();
    let h = fit.homography.0;
    let _ = writeln!(s, "{label}: {} fit, {} of {} point pairs kept", fit.method, fit.inliers(), fit.inlier.len());
    let what = if fit.lens.is_some() { "undistorted image px" } else { "image px" };
    let _ = writeln!(s, "  homography ({what} → world m, row by row):");
    for r in 0..3 {
        let _ = writeln!(s, "    [{:>14.6e}, {:>14.6e}, {:>14.6e}]", h[3 * r], h[3 * r + 1], h[3 * r + 2]);
    }
    let status = match verdict {
        Ok(()) => "accepted".to_string(),
        Err(e) => format!("REFUSED: {e}"),
    };
    let _ = writeln!(
        s,
        "  reprojection error over kept pairs: mean {:.4} m, max {:.4} m; limit max_error_m = {} m: {status}",
        fit.fit.mean, fit.fit.max, cal.max_error_m
    );
    if fit.inlier.len() == 4 {
        let _ = writeln!(s, "  note: 4 pairs always fit exactly, so the error says nothing; measure 6 or more");
    }
    let _ = writeln!(s, "  {:>3}  {:<20}  {:<22}  {:<22}  {:>8}", "#", "image px", "→ world m (fit)", "world m (measured)", "error m");
    for (i, ((img, w), e)) in cal.image_points.iter().zip(&cal.world_points).zip(&fit.errors).enumerate() {
        let mapped = fit.homography.apply(fit.undistorted[i]).unwrap_or([f64::NAN; 2]);
        let flag = if fit.inlier[i] { "" } else { "  outlier (not used)" };
        let _ = writeln!(
            s,
            "  {i:>3}  ({:>8.1}, {:>8.1})  ({:>9.3}, {:>9.3})  ({:>9.3}, {:>9.3})  {e:>8.3}{flag}",
            img[0], img[1], mapped[0], mapped[1], w[0], w[1]
        );
    }
    s
}

/// A `[cameras.calibration]` table (and `[cameras.origin]` when known) to paste under the
/// camera's `[[cameras]]` table: the pairs the fit kept, the intrinsics, and
/// `max_error_m` (the given one, else [`suggested_max_error_m`]).
pub fn snippet(cal: &CalibrationConfig, fit: &CalibrationFit, max_error_m: Option<f64>, origin: Option<&OriginConfig>) -> String {
    let keep = |v: &[[f64; 2]]| -> Vec<[f64; 2]> { v.iter().zip(&fit.inlier).filter(|(_, k)| **k).map(|(p, _)| *p).collect() };
    let mut s = String::new();
    let _ = writeln!(s, "# argus calibrate: {} fit, mean error {:.3} m, max {:.3} m.", fit.method, fit.fit.mean, fit.fit.max);
    let dropped: Vec<usize> = fit.inlier.iter().enumerate().filter(|(_, k)| !**k).map(|(i, _)| i).collect();
    if !dropped.is_empty() {
        let _ = writeln!(s, "# Left out as outliers: pairs {dropped:?}.");
    }
    let _ = writeln!(s, "# Paste under the camera's [[cameras]] table.");
    let _ = writeln!(s, "[cameras.calibration]");
    let _ = writeln!(s, "image_points = {}", pairs(&keep(&cal.image_points)));
    let _ = writeln!(s, "world_points = {}", pairs(&keep(&cal.world_points)));
    let _ = writeln!(s, "max_error_m = {}", num(max_error_m.unwrap_or_else(|| suggested_max_error_m(fit))));
    if cal.max_outliers > 0 {
        let _ = writeln!(s, "max_outliers = {}", cal.max_outliers);
    }
    if let Some(m) = &cal.camera_matrix {
        let _ = writeln!(s, "camera_matrix = {}", list(m));
    }
    if let Some(d) = &cal.distortion {
        let _ = writeln!(s, "distortion = {}", list(d));
    }
    if let Some(o) = origin {
        let _ = writeln!(s, "\n[cameras.origin]\nlat = {}\nlon = {}", num(o.lat), num(o.lon));
    }
    s
}
