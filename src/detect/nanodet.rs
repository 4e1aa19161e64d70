//! NanoDet (v0.x) GFL head decode: per-level class scores (already sigmoid) and
//! per-side box distributions over `reg_max + 1` bins.

use super::{Candidate, DetectError, OutputTensor};

#[derive(Debug, Clone, PartialEq)]
pub struct GflHead {
    pub strides: Vec<u32>,
    pub reg_max: usize,
    pub num_classes: usize,
    /// Cell-centre offset in cells (0.5 in NanoDet v0.x).
    pub center_offset: f32,
}

impl GflHead {
    /// Decodes one image's outputs, ordered `cls_s*` for every stride, then `reg_s*`.
    /// Boxes are in model-input pixels, clipped to the input.
    pub fn decode(&self, outputs: &[OutputTensor], input_w: u32, input_h: u32, threshold: f32) -> Result<Vec<Candidate>, DetectError> {
        let levels = self.strides.len();
        if outputs.len() != 2 * levels {
            return Err(DetectError::OutputShape(format!(
                "GFL head expects {} outputs (cls and reg per stride), the model gave {}",
                2 * levels,
                outputs.len()
            )));
        }
        let bins = self.reg_max + 1;
        let mut out = Vec::new();
        let mut probs = vec![0.0f32; bins];
        for (l, &stride) in self.strides.iter().enumerate() {
            let (cls, reg) = (&outputs[l], &outputs[levels + l]);
            let wl = input_w.div_ceil(stride) as usize;
            let hl = input_h.div_ceil(stride) as usize;
            let cells = wl * hl;
            check_shape(cls, cells, self.num_classes, "cls", stride)?;
            check_shape(reg, cells, 4 * bins, "reg", stride)?;
            for n in 0..cells {
                let scores = &cls.data[n * self.num_classes..(n + 1) * self.num_classes];
                if !scores.iter().any(|&s| s > threshold) {
                    continue;
                }
                let row = (n / wl) as f32;
                let col = (n % wl) as f32;
                let cx = (col + self.center_offset) * stride as f32;
                let cy = (row + self.center_offset) * stride as f32;
                let logits = &reg.data[n * 4 * bins..(n + 1) * 4 * bins];
                let mut d = [0.0f32; 4];
                for (k, dk) in d.iter_mut().enumerate() {
                    *dk = stride as f32 * softmax_expectation(&logits[k * bins..(k + 1) * bins], &mut probs);
                }
                let bbox = [
                    (cx - d[0]).clamp(0.0, input_w as f32),
                    (cy - d[1]).clamp(0.0, input_h as f32),
                    (cx + d[2]).clamp(0.0, input_w as f32),
                    (cy + d[3]).clamp(0.0, input_h as f32),
                ];
                for (class_id, &score) in scores.iter().enumerate() {
                    if score > threshold {
                        out.push(Candidate { class_id, score, bbox });
                    }
                }
            }
        }
        Ok(out)
    }
}

fn check_shape(t: &OutputTensor, cells: usize, width: usize, what: &str, stride: u32) -> Result<(), DetectError> {
    if t.data.len() != cells * width {
        return Err(DetectError::OutputShape(format!("GFL {what} output for stride {stride} has shape {:?}; expected [1, {cells}, {width}]", t.shape)));
    }
    Ok(())
}

/// Σ i·softmax(logits)_i, numerically stable.
fn softmax_expectation(logits: &[f32], scratch: &mut [f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (p, &l) in scratch.iter_mut().zip(logits) {
        *p = (l - max).exp();
        sum += *p;
    }
    scratch.iter().enumerate().map(|(i, p)| i as f32 * p).sum::<f32>() / sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> GflHead {
        GflHead { strides: vec![8, 16], reg_max: 3, num_classes: 2, center_offset: 0.5 }
    }

    fn tensor(rows: usize, cols: usize, fill: f32) -> OutputTensor {
        OutputTensor { shape: vec![1, rows, cols], data: vec![fill; rows * cols] }
    }

    #[test]
    fn decodes_one_confident_cell() {
        // 32x32 input: stride 8 → 4x4 = 16 cells, stride 16 → 2x2 = 4 cells.
        let mut cls8 = tensor(16, 2, 0.0);
        let cls16 = tensor(4, 2, 0.0);
        let mut reg8 = tensor(16, 16, -50.0);
        let reg16 = tensor(4, 16, 0.0);
        // Cell n=5 → row 1, col 1 → centre (12, 12). Class 1 score 0.9.
        cls8.data[5 * 2 + 1] = 0.9;
        // Distances in bins: left 1, top 2, right 3, bottom 0 (× stride 8).
        for (k, bin) in [1usize, 2, 3, 0].iter().enumerate() {
            reg8.data[5 * 16 + k * 4 + bin] = 50.0;
        }
        let out = head().decode(&[cls8, cls16, reg8, reg16], 32, 32, 0.5).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 1);
        let b = out[0].bbox;
        let want = [4.0, 0.0, 32.0, 12.0];
        for i in 0..4 {
            assert!((b[i] - want[i]).abs() < 1e-3, "{b:?} vs {want:?}");
        }
    }

    #[test]
    fn uniform_distribution_expects_the_middle_bin() {
        let mut s = [0.0; 4];
        assert!((softmax_expectation(&[0.0; 4], &mut s) - 1.5).abs() < 1e-6);
    }

    #[test]
    fn wrong_output_count_or_shape_is_an_error() {
        let h = head();
        assert!(h.decode(&[tensor(16, 2, 0.0)], 32, 32, 0.5).is_err());
        let bad = [tensor(15, 2, 0.0), tensor(4, 2, 0.0), tensor(16, 16, 0.0), tensor(4, 16, 0.0)];
        let err = h.decode(&bad, 32, 32, 0.5).unwrap_err().to_string();
        assert!(err.contains("stride 8"), "{err}");
    }
}
