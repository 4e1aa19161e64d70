//! OpenCV's RANSAC homography (`opencv` feature).

use opencv::calib3d;
use opencv::core::{Mat, Point2d, Vector};
use opencv::prelude::*;

use super::Homography;

/// Fits image → world with RANSAC; `threshold` is the inlier distance in world units.
/// Returns the homography and which pairs RANSAC kept as inliers.
pub fn find_homography_ransac(image: &[[f64; 2]], world: &[[f64; 2]], threshold: f64) -> Result<(Homography, Vec<bool>), String> {
    let src: Vector<Point2d> = image.iter().map(|p| Point2d::new(p[0], p[1])).collect();
    let dst: Vector<Point2d> = world.iter().map(|p| Point2d::new(p[0], p[1])).collect();
    let mut mask = Mat::default();
    let h = calib3d::find_homography(&src, &dst, &mut mask, calib3d::RANSAC, threshold).map_err(|e| e.to_string())?;
    if h.empty() || h.rows() != 3 || h.cols() != 3 {
        return Err("no homography found (points degenerate or too many outliers)".into());
    }
    let mut m = [0.0f64; 9];
    for (k, v) in m.iter_mut().enumerate() {
        *v = *h.at_2d::<f64>((k / 3) as i32, (k % 3) as i32).map_err(|e| e.to_string())?;
    }
    let inliers = (0..image.len()).map(|i| mask.at::<u8>(i as i32).map(|v| *v != 0).unwrap_or(false)).collect();
    Ok((Homography(m).normalized(), inliers))
}
