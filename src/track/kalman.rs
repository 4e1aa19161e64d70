//! Constant-velocity Kalman filter over `(cx, cy, aspect, height)`, as in SORT/ByteTrack.
//! Noise scales with the box height so that near and far objects behave alike.

const STD_POS: f64 = 1.0 / 20.0;
const STD_VEL: f64 = 1.0 / 160.0;

type M8 = [[f64; 8]; 8];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BoxKalman {
    /// `[cx, cy, a, h, vcx, vcy, va, vh]`
    pub x: [f64; 8],
    p: M8,
}

/// `[x1, y1, x2, y2]` → `[cx, cy, w/h, h]`.
pub fn to_xyah(b: &[f32; 4]) -> [f64; 4] {
    let w = (b[2] - b[0]).max(1e-3) as f64;
    let h = (b[3] - b[1]).max(1e-3) as f64;
    [b[0] as f64 + w / 2.0, b[1] as f64 + h / 2.0, w / h, h]
}

/// `[cx, cy, w/h, h]` → `[x1, y1, x2, y2]`.
pub fn to_xyxy(m: &[f64]) -> [f32; 4] {
    let h = m[3].max(1e-3);
    let w = m[2] * h;
    [(m[0] - w / 2.0) as f32, (m[1] - h / 2.0) as f32, (m[0] + w / 2.0) as f32, (m[1] + h / 2.0) as f32]
}

impl BoxKalman {
    pub fn new(bbox: &[f32; 4]) -> Self {
        let z = to_xyah(bbox);
        let h = z[3];
        let std = [2.0 * STD_POS * h, 2.0 * STD_POS * h, 1e-2, 2.0 * STD_POS * h, 10.0 * STD_VEL * h, 10.0 * STD_VEL * h, 1e-5, 10.0 * STD_VEL * h];
        let mut p = [[0.0; 8]; 8];
        for i in 0..8 {
            p[i][i] = std[i] * std[i];
        }
        Self { x: [z[0], z[1], z[2], z[3], 0.0, 0.0, 0.0, 0.0], p }
    }

    /// Advances one step.
    pub fn predict(&mut self) {
        let h = self.x[3].max(1e-3);
        for i in 0..4 {
            self.x[i] += self.x[i + 4];
        }
        // P = F P Fᵀ with F = [[I, I], [0, I]].
        let p = self.p;
        let mut fp = [[0.0; 8]; 8];
        for i in 0..8 {
            for j in 0..8 {
                fp[i][j] = p[i][j] + if i < 4 { p[i + 4][j] } else { 0.0 };
            }
        }
        for i in 0..8 {
            for j in 0..8 {
                self.p[i][j] = fp[i][j] + if j < 4 { fp[i][j + 4] } else { 0.0 };
            }
        }
        let q = [STD_POS * h, STD_POS * h, 1e-2, STD_POS * h, STD_VEL * h, STD_VEL * h, 1e-5, STD_VEL * h];
        for i in 0..8 {
            self.p[i][i] += q[i] * q[i];
        }
    }

    /// Corrects with a measured box.
    pub fn update(&mut self, bbox: &[f32; 4]) {
        let z = to_xyah(bbox);
        let h = self.x[3].max(1e-3);
        let r = [STD_POS * h, STD_POS * h, 1e-1, STD_POS * h];
        // S = H P Hᵀ + R (top-left 4×4 of P).
        let mut s = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = self.p[i][j];
            }
            s[i][i] += r[i] * r[i];
        }
        let Some(si) = invert4(&s) else { return };
        // K = P Hᵀ S⁻¹ (8×4).
        let mut k = [[0.0; 4]; 8];
        for i in 0..8 {
            for j in 0..4 {
                k[i][j] = (0..4).map(|m| self.p[i][m] * si[m][j]).sum();
            }
        }
        let y: [f64; 4] = std::array::from_fn(|i| z[i] - self.x[i]);
        for i in 0..8 {
            self.x[i] += (0..4).map(|j| k[i][j] * y[j]).sum::<f64>();
        }
        // P = (I - K H) P.
        let p = self.p;
        for i in 0..8 {
            for j in 0..8 {
                self.p[i][j] = p[i][j] - (0..4).map(|m| k[i][m] * p[m][j]).sum::<f64>();
            }
        }
    }

    pub fn bbox(&self) -> [f32; 4] {
        to_xyxy(&self.x[..4])
    }
}

/// Gauss-Jordan inverse of a 4×4 matrix with partial pivoting.
fn invert4(m: &[[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut a = *m;
    let mut inv = [[0.0; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for c in 0..4 {
        let piv = (c..4).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[piv][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, piv);
        inv.swap(c, piv);
        let d = a[c][c];
        for j in 0..4 {
            a[c][j] /= d;
            inv[c][j] /= d;
        }
        for r in 0..4 {
            if r != c {
                let f = a[r][c];
                for j in 0..4 {
                    a[r][j] -= f * a[c][j];
                    inv[r][j] -= f * inv[c][j];
                }
            }
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_constant_velocity() {
        let mut kf = BoxKalman::new(&[0.0, 0.0, 10.0, 20.0]);
        for t in 1..30 {
            kf.predict();
            let dx = 3.0 * t as f32;
            kf.update(&[dx, 0.0, dx + 10.0, 20.0]);
        }
        kf.predict();
        let b = kf.bbox();
        assert!((b[0] - 90.0).abs() < 1.0, "{b:?}");
        assert!((kf.x[4] - 3.0).abs() < 0.2, "velocity {}", kf.x[4]);
    }

    #[test]
    fn xyah_round_trip() {
        let b = [10.0, 20.0, 30.0, 60.0];
        assert_eq!(to_xyxy(&to_xyah(&b)), b);
    }

    #[test]
    fn inverts() {
        let m = [[4.0, 1.0, 0.0, 0.0], [1.0, 3.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 5.0]];
        let i = invert4(&m).unwrap();
        for r in 0..4 {
            for c in 0..4 {
                let v: f64 = (0..4).map(|k| m[r][k] * i[k][c]).sum();
                assert!((v - if r == c { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }
}
