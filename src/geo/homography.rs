//! Plane-to-plane homography (image pixels → ground metres), pure Rust.
//!
//! `fit_dlt` is the normalised direct linear transform over all pairs; `fit_ransac`
//! rejects outlying pairs around it. With the `opencv` feature, start-up fitting uses
//! OpenCV's RANSAC instead and these serve as the reference and the fallback.

/// Row-major 3×3 matrix mapping homogeneous image points to world points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography(pub [f64; 9]);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("need at least 4 point pairs, got {0}")]
    TooFewPoints(usize),
    #[error("image and world point lists differ in length ({0} vs {1})")]
    LengthMismatch(usize, usize),
    #[error("points are degenerate (three or more collinear, or repeated); spread them over the ground plane")]
    Degenerate,
}

/// How well a homography reproduces its calibration points, in world units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reprojection {
    pub mean: f64,
    pub max: f64,
}

impl Homography {
    pub const IDENTITY: Self = Self([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);

    /// Maps a point; `None` when it lies on the horizon (w ≈ 0) or behind it.
    pub fn apply(&self, p: [f64; 2]) -> Option<[f64; 2]> {
        let h = &self.0;
        let w = h[6] * p[0] + h[7] * p[1] + h[8];
        if w.abs() < 1e-12 || !w.is_finite() {
            return None;
        }
        let x = (h[0] * p[0] + h[1] * p[1] + h[2]) / w;
        let y = (h[3] * p[0] + h[4] * p[1] + h[5]) / w;
        (x.is_finite() && y.is_finite()).then_some([x, y])
    }

    /// The inverse mapping (world → image), if the matrix is invertible.
    pub fn inverse(&self) -> Option<Self> {
        let m = &self.0;
        let det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
        if det.abs() < 1e-15 {
            return None;
        }
        let inv = [
            (m[4] * m[8] - m[5] * m[7]) / det,
            (m[2] * m[7] - m[1] * m[8]) / det,
            (m[1] * m[5] - m[2] * m[4]) / det,
            (m[5] * m[6] - m[3] * m[8]) / det,
            (m[0] * m[8] - m[2] * m[6]) / det,
            (m[2] * m[3] - m[0] * m[5]) / det,
            (m[3] * m[7] - m[4] * m[6]) / det,
            (m[1] * m[6] - m[0] * m[7]) / det,
            (m[0] * m[4] - m[1] * m[3]) / det,
        ];
        Some(Self(inv).normalized())
    }

    /// Scales so that h[8] = 1 (when possible), for stable printing and comparison.
    pub fn normalized(self) -> Self {
        let s = self.0[8];
        if s.abs() > 1e-12 { Self(self.0.map(|v| v / s)) } else { self }
    }

    /// Error of mapping each image point onto its world point.
    pub fn reprojection(&self, image: &[[f64; 2]], world: &[[f64; 2]]) -> Reprojection {
        let mut sum = 0.0;
        let mut max: f64 = 0.0;
        for (i, w) in image.iter().zip(world) {
            let e = match self.apply(*i) {
                Some(p) => ((p[0] - w[0]).powi(2) + (p[1] - w[1]).powi(2)).sqrt(),
                None => f64::INFINITY,
            };
            sum += e;
            max = max.max(e);
        }
        Reprojection { mean: sum / image.len().max(1) as f64, max }
    }

    /// Normalised DLT over all pairs.
    pub fn fit_dlt(image: &[[f64; 2]], world: &[[f64; 2]]) -> Result<Self, FitError> {
        if image.len() != world.len() {
            return Err(FitError::LengthMismatch(image.len(), world.len()));
        }
        if image.len() < 4 {
            return Err(FitError::TooFewPoints(image.len()));
        }
        let (ti, ni) = normalize(image).ok_or(FitError::Degenerate)?;
        let (tw, nw) = normalize(world).ok_or(FitError::Degenerate)?;
        // AᵀA accumulated directly (9×9), then its eigenvector of least eigenvalue.
        let mut ata = [[0.0f64; 9]; 9];
        for (p, q) in ni.iter().zip(&nw) {
            let (x, y, u, v) = (p[0], p[1], q[0], q[1]);
            let r1 = [-x, -y, -1.0, 0.0, 0.0, 0.0, u * x, u * y, u];
            let r2 = [0.0, 0.0, 0.0, -x, -y, -1.0, v * x, v * y, v];
            for r in [r1, r2] {
                for a in 0..9 {
                    for b in 0..9 {
                        ata[a][b] += r[a] * r[b];
                    }
                }
            }
        }
        let (vals, vecs) = jacobi_eigen(ata);
        let (mut best, mut second) = (0, 1);
        if vals[second] < vals[best] {
            std::mem::swap(&mut best, &mut second);
        }
        for i in 2..9 {
            if vals[i] < vals[best] {
                second = best;
                best = i;
            } else if vals[i] < vals[second] {
                second = i;
            }
        }
        // A second (near-)zero eigenvalue means the solution is not unique.
        if vals[second].abs() < 1e-10 * vals.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300) {
            return Err(FitError::Degenerate);
        }
        let h: [f64; 9] = std::array::from_fn(|k| vecs[k][best]);
        // Denormalise: H = Tw⁻¹ · Hn · Ti.
        let hn = Self(h);
        let tw_inv = tw.inverse().ok_or(FitError::Degenerate)?;
        let full = mul(&mul(&tw_inv, &hn), &ti).normalized();
        if full.0.iter().any(|v| !v.is_finite()) || full.inverse().is_none() {
            return Err(FitError::Degenerate);
        }
        Ok(full)
    }
}

/// Every 4-subset is tried when there are at most this many; else random ones.
const RANSAC_MAX_SUBSETS: usize = 2000;

/// Pure-Rust RANSAC: the homography of the 4-point subset that most pairs agree with
/// (within `threshold` world units), refitted by DLT on those pairs. Small point sets
/// (hand-measured calibrations) are searched exhaustively, so the result is
/// deterministic. Returns the homography and which pairs it kept.
pub fn fit_ransac(image: &[[f64; 2]], world: &[[f64; 2]], threshold: f64) -> Result<(Homography, Vec<bool>), FitError> {
    // Validates count, lengths and degeneracy of the whole set.
    let all = Homography::fit_dlt(image, world)?;
    let n = image.len();
    let errors = |h: &Homography| -> Vec<f64> {
        image.iter().zip(world).map(|(i, w)| h.apply(*i).map_or(f64::INFINITY, |p| (p[0] - w[0]).hypot(p[1] - w[1]))).collect()
    };
    // Score: more inliers first, then a smaller summed inlier error.
    let score = |e: &[f64]| -> (usize, f64) {
        let inl: Vec<f64> = e.iter().copied().filter(|e| *e <= threshold).collect();
        (inl.len(), inl.iter().sum())
    };
    let better = |a: (usize, f64), b: (usize, f64)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
    let mut best = (all, score(&errors(&all)));
    let try_subset = |idx: [usize; 4], best: &mut (Homography, (usize, f64))| {
        let si: Vec<[f64; 2]> = idx.iter().map(|&k| image[k]).collect();
        let sw: Vec<[f64; 2]> = idx.iter().map(|&k| world[k]).collect();
        if let Ok(h) = Homography::fit_dlt(&si, &sw) {
            let sc = score(&errors(&h));
            if better(sc, best.1) {
                *best = (h, sc);
            }
        }
    };
    let subsets = n * (n - 1) * (n - 2) * (n - 3) / 24;
    if subsets <= RANSAC_MAX_SUBSETS {
        for a in 0..n {
            for b in a + 1..n {
                for c in b + 1..n {
                    for d in c + 1..n {
                        try_subset([a, b, c, d], &mut best);
                    }
                }
            }
        }
    } else {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |m: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as usize) % m
        };
        for _ in 0..RANSAC_MAX_SUBSETS {
            let mut idx = [0usize; 4];
            let mut k = 0;
            while k < 4 {
                let v = next(n);
                if !idx[..k].contains(&v) {
                    idx[k] = v;
                    k += 1;
                }
            }
            try_subset(idx, &mut best);
        }
    }
    Ok(refine_consensus(image, world, best.0, threshold))
}

/// Refits by DLT on the pairs within `threshold` of `h`, then re-evaluates which pairs
/// are within it, until that stops changing: a minimal-sample model passes exactly
/// through its 4 pairs, so their noise alone can push good pairs out of its consensus.
pub fn refine_consensus(image: &[[f64; 2]], world: &[[f64; 2]], h: Homography, threshold: f64) -> (Homography, Vec<bool>) {
    let errors = |h: &Homography| -> Vec<f64> {
        image.iter().zip(world).map(|(i, w)| h.apply(*i).map_or(f64::INFINITY, |p| (p[0] - w[0]).hypot(p[1] - w[1]))).collect()
    };
    let mut h = h;
    let mut keep: Vec<bool> = errors(&h).iter().map(|e| *e <= threshold).collect();
    for _ in 0..5 {
        let (ki, kw): (Vec<[f64; 2]>, Vec<[f64; 2]>) = image.iter().zip(world).zip(&keep).filter(|(_, k)| **k).map(|((i, w), _)| (*i, *w)).unzip();
        let Ok(refit) = Homography::fit_dlt(&ki, &kw) else { break };
        let next_keep: Vec<bool> = errors(&refit).iter().map(|e| *e <= threshold).collect();
        if next_keep.iter().filter(|k| **k).count() < keep.iter().filter(|k| **k).count() {
            break;
        }
        h = refit;
        if next_keep == keep {
            break;
        }
        keep = next_keep;
    }
    (h, keep)
}

fn mul(a: &Homography, b: &Homography) -> Homography {
    let (a, b) = (&a.0, &b.0);
    Homography(std::array::from_fn(|k| {
        let (r, c) = (k / 3, k % 3);
        (0..3).map(|i| a[r * 3 + i] * b[i * 3 + c]).sum()
    }))
}

/// Hartley normalisation: centroid to origin, mean distance √2.
fn normalize(pts: &[[f64; 2]]) -> Option<(Homography, Vec<[f64; 2]>)> {
    let n = pts.len() as f64;
    let cx = pts.iter().map(|p| p[0]).sum::<f64>() / n;
    let cy = pts.iter().map(|p| p[1]).sum::<f64>() / n;
    let d = pts.iter().map(|p| ((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt()).sum::<f64>() / n;
    if !(d > 1e-12) {
        return None;
    }
    let s = std::f64::consts::SQRT_2 / d;
    let t = Homography([s, 0.0, -s * cx, 0.0, s, -s * cy, 0.0, 0.0, 1.0]);
    Some((t, pts.iter().map(|p| [s * (p[0] - cx), s * (p[1] - cy)]).collect()))
}

/// Eigen-decomposition of a symmetric 9×9 matrix by cyclic Jacobi rotations.
/// Returns eigenvalues and the matrix whose columns are eigenvectors.
fn jacobi_eigen(mut a: [[f64; 9]; 9]) -> ([f64; 9], [[f64; 9]; 9]) {
    let mut v = [[0.0; 9]; 9];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..9).flat_map(|p| ((p + 1)..9).map(move |q| (p, q))).map(|(p, q)| a[p][q] * a[p][q]).sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..9 {
            for q in (p + 1)..9 {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..9 {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..9 {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    (std::array::from_fn(|i| a[i][i]), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth() -> Homography {
        Homography([0.05, 0.01, -3.0, 0.002, -0.08, 40.0, 0.0001, 0.002, 1.0])
    }

    fn pairs(h: &Homography, img: &[[f64; 2]]) -> Vec<[f64; 2]> {
        img.iter().map(|p| h.apply(*p).unwrap()).collect()
    }

    #[test]
    fn recovers_a_known_homography_from_exact_points() {
        let img = [[10.0, 20.0], [700.0, 30.0], [650.0, 500.0], [40.0, 560.0], [300.0, 300.0]];
        let world = pairs(&truth(), &img);
        let h = Homography::fit_dlt(&img, &world).unwrap();
        let r = h.reprojection(&img, &world);
        assert!(r.max < 1e-6, "{r:?}");
        let p = h.apply([123.0, 456.0]).unwrap();
        let q = truth().apply([123.0, 456.0]).unwrap();
        assert!((p[0] - q[0]).abs() < 1e-6 && (p[1] - q[1]).abs() < 1e-6);
    }

    #[test]
    fn inverse_round_trips() {
        let h = truth();
        let inv = h.inverse().unwrap();
        let p = inv.apply(h.apply([321.0, 100.0]).unwrap()).unwrap();
        assert!((p[0] - 321.0).abs() < 1e-6 && (p[1] - 100.0).abs() < 1e-6);
    }

    #[test]
    fn refuses_too_few_mismatched_or_collinear_points() {
        let four = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        assert_eq!(Homography::fit_dlt(&four[..3], &four[..3]), Err(FitError::TooFewPoints(3)));
        assert_eq!(Homography::fit_dlt(&four, &four[..3]), Err(FitError::LengthMismatch(4, 3)));
        let line = [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]];
        assert_eq!(Homography::fit_dlt(&line, &four), Err(FitError::Degenerate));
    }

    #[test]
    fn ransac_finds_the_mistyped_pairs() {
        let img: Vec<[f64; 2]> = (0..12).map(|i| [(50 + (i % 4) * 200 + i * 37 % 50) as f64, (40 + (i / 4) * 200 + i * 53 % 60) as f64]).collect();
        let mut world = pairs(&truth(), &img);
        world[3][0] += 5.0;
        world[8] = [world[8][1], world[8][0]];
        let (h, keep) = fit_ransac(&img, &world, 0.2).unwrap();
        let out: Vec<usize> = keep.iter().enumerate().filter(|(_, k)| !**k).map(|(i, _)| i).collect();
        assert_eq!(out, vec![3, 8]);
        let p = h.apply([123.0, 456.0]).unwrap();
        let q = truth().apply([123.0, 456.0]).unwrap();
        assert!((p[0] - q[0]).hypot(p[1] - q[1]) < 1e-6);
        // Clean points: all kept.
        let (_, keep) = fit_ransac(&img, &pairs(&truth(), &img), 0.2).unwrap();
        assert!(keep.iter().all(|k| *k));
    }

    #[test]
    fn noisy_points_give_small_error() {
        let img: Vec<[f64; 2]> = (0..20).map(|i| [(i * 37 % 700) as f64, (i * 53 % 500) as f64]).collect();
        let mut world = pairs(&truth(), &img);
        for (i, w) in world.iter_mut().enumerate() {
            w[0] += if i % 2 == 0 { 0.01 } else { -0.01 };
        }
        let h = Homography::fit_dlt(&img, &world).unwrap();
        assert!(h.reprojection(&img, &world).mean < 0.02);
    }
}
