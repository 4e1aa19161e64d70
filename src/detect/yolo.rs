//! YOLO-family head decode for exported models whose graph already contains the box
//! decode (what `export.py`/`ultralytics export` and Argus's YOLOv3-tiny converter give):
//!
//! - **v5 layout** `[1, N, 5 + C]`: `cx, cy, w, h, objectness, C class probabilities`;
//!   score = objectness × class probability (YOLOv3/v5/v7 exports).
//! - **v8 layout** `[1, 4 + C, N]`: `cx, cy, w, h, C class scores`, no objectness
//!   (YOLOv8/v11 exports).
//!
//! Coordinates are in model-input pixels.

use super::{Candidate, DetectError, OutputTensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YoloLayout {
    V5,
    V8,
}

impl YoloLayout {
    /// Picks the layout from the output shape for `num_classes` classes, or explains why
    /// the shape fits no known head.
    pub fn infer(shape: &[usize], num_classes: usize) -> Result<Self, DetectError> {
        let dims = match shape {
            [1, a, b] | [a, b] => (*a, *b),
            _ => {
                return Err(DetectError::OutputShape(format!(
                    "YOLO output has shape {shape:?}; expected [1, N, {}] (YOLOv5 layout) or [1, {}, N] (YOLOv8/v11 layout)",
                    num_classes + 5,
                    num_classes + 4
                )));
            }
        };
        let v5 = dims.1 == num_classes + 5;
        let v8 = dims.0 == num_classes + 4;
        match (v5, v8) {
            (true, false) => Ok(Self::V5),
            (false, true) => Ok(Self::V8),
            (true, true) => Err(DetectError::OutputShape(format!("YOLO output shape {shape:?} fits both the v5 and v8 layouts; set detector.head explicitly"))),
            (false, false) => Err(DetectError::OutputShape(format!(
                "YOLO output has shape {shape:?}, which fits no known head for {num_classes} classes: expected [1, N, {}] (YOLOv5 layout) or [1, {}, N] (YOLOv8/v11 layout); check detector.num_classes or the model export",
                num_classes + 5,
                num_classes + 4
            ))),
        }
    }
}

/// Decodes one image's single YOLO output into candidates above `threshold`.
pub fn decode(out: &OutputTensor, layout: YoloLayout, num_classes: usize, threshold: f32) -> Result<Vec<Candidate>, DetectError> {
    let inferred_ok = YoloLayout::infer(&out.shape, num_classes);
    // An explicit layout must at least match the tensor's dimensions.
    let n = match (layout, out.shape.as_slice()) {
        (YoloLayout::V5, [1, n, w] | [n, w]) if *w == num_classes + 5 => *n,
        (YoloLayout::V8, [1, h, n] | [h, n]) if *h == num_classes + 4 => *n,
        _ => {
            return Err(inferred_ok
                .err()
                .unwrap_or_else(|| DetectError::OutputShape(format!("YOLO output shape {:?} does not match the configured {layout:?} layout", out.shape))));
        }
    };
    let d = &out.data;
    let mut cands = Vec::new();
    match layout {
        YoloLayout::V5 => {
            let w = num_classes + 5;
            for i in 0..n {
                let row = &d[i * w..(i + 1) * w];
                let obj = row[4];
                if obj <= threshold {
                    continue; // score = obj × p ≤ obj
                }
                for (class_id, &p) in row[5..].iter().enumerate() {
                    let score = obj * p;
                    if score > threshold {
                        cands.push(Candidate { class_id, score, bbox: xywh_to_xyxy(row[0], row[1], row[2], row[3]) });
                    }
                }
            }
        }
        YoloLayout::V8 => {
            let at = |row: usize, i: usize| d[row * n + i];
            for i in 0..n {
                for class_id in 0..num_classes {
                    let score = at(4 + class_id, i);
                    if score > threshold {
                        let bbox = xywh_to_xyxy(at(0, i), at(1, i), at(2, i), at(3, i));
                        cands.push(Candidate { class_id, score, bbox });
                    }
                }
            }
        }
    }
    Ok(cands)
}

fn xywh_to_xyxy(cx: f32, cy: f32, w: f32, h: f32) -> [f32; 4] {
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_layouts_and_refuses_unknown_shapes() {
        assert_eq!(YoloLayout::infer(&[1, 2535, 85], 80).unwrap(), YoloLayout::V5);
        assert_eq!(YoloLayout::infer(&[1, 84, 8400], 80).unwrap(), YoloLayout::V8);
        let err = YoloLayout::infer(&[1, 100, 7], 80).unwrap_err().to_string();
        assert!(err.contains("fits no known head"), "{err}");
        assert!(YoloLayout::infer(&[1, 2, 3, 4], 80).is_err());
    }

    #[test]
    fn v5_score_is_objectness_times_class() {
        let mut data = vec![0.0; 2 * 7];
        data[..7].copy_from_slice(&[50.0, 40.0, 20.0, 10.0, 0.8, 0.5, 0.9]);
        data[7..].copy_from_slice(&[10.0, 10.0, 4.0, 4.0, 0.2, 0.9, 0.9]);
        let t = OutputTensor { shape: vec![1, 2, 7], data };
        let c = decode(&t, YoloLayout::V5, 2, 0.3).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].bbox, [40.0, 35.0, 60.0, 45.0]);
        assert!((c[0].score - 0.4).abs() < 1e-6 && c[0].class_id == 0);
        assert!((c[1].score - 0.72).abs() < 1e-6 && c[1].class_id == 1);
    }

    #[test]
    fn v8_reads_transposed_layout() {
        // 2 classes, 3 boxes: rows cx, cy, w, h, c0, c1.
        let data = vec![
            10.0, 20.0, 30.0, // cx
            10.0, 20.0, 30.0, // cy
            2.0, 2.0, 2.0, // w
            4.0, 4.0, 4.0, // h
            0.1, 0.9, 0.2, // class 0
            0.6, 0.1, 0.2, // class 1
        ];
        let t = OutputTensor { shape: vec![1, 6, 3], data };
        let c = decode(&t, YoloLayout::V8, 2, 0.5).unwrap();
        let got: Vec<(usize, [f32; 4])> = c.iter().map(|c| (c.class_id, c.bbox)).collect();
        assert_eq!(got, vec![(1, [9.0, 8.0, 11.0, 12.0]), (0, [19.0, 18.0, 21.0, 22.0])]);
    }

    #[test]
    fn configured_layout_must_match_shape() {
        let t = OutputTensor { shape: vec![1, 84, 10], data: vec![0.0; 840] };
        assert!(decode(&t, YoloLayout::V5, 80, 0.3).is_err());
        assert!(decode(&t, YoloLayout::V8, 80, 0.3).is_ok());
    }
}
