//! Class-aware non-maximum suppression.

use super::Candidate;

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (0 when either is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area_a = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
    let area_b = (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let union = area_a + area_b - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Keeps, per class, the highest-scoring boxes that overlap no kept box of the same class
/// by more than `iou_threshold`; returns at most `max_det` boxes, best first.
pub fn nms_per_class(mut cands: Vec<Candidate>, iou_threshold: f32, max_det: usize) -> Vec<Candidate> {
    // Score descending; ties broken by class then position so results are deterministic.
    cands.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then(a.class_id.cmp(&b.class_id)).then(a.bbox[0].total_cmp(&b.bbox[0])).then(a.bbox[1].total_cmp(&b.bbox[1]))
    });
    let mut kept: Vec<Candidate> = Vec::new();
    for c in cands {
        if kept.len() >= max_det {
            break;
        }
        let suppressed = kept.iter().any(|k| k.class_id == c.class_id && iou(&k.bbox, &c.bbox) > iou_threshold);
        if !suppressed {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(class_id: usize, score: f32, bbox: [f32; 4]) -> Candidate {
        Candidate { class_id, score, bbox }
    }

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        let third = iou(&a, &[5.0, 0.0, 15.0, 10.0]);
        assert!((third - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn suppresses_only_within_a_class() {
        let out = nms_per_class(
            vec![
                cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
                cand(0, 0.8, [1.0, 0.0, 11.0, 10.0]),
                cand(1, 0.7, [1.0, 0.0, 11.0, 10.0]),
                cand(0, 0.6, [50.0, 50.0, 60.0, 60.0]),
            ],
            0.5,
            100,
        );
        let got: Vec<(usize, f32)> = out.iter().map(|c| (c.class_id, c.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (1, 0.7), (0, 0.6)]);
    }

    #[test]
    fn respects_max_det() {
        let cands = (0..10).map(|i| cand(0, i as f32 / 10.0, [i as f32 * 20.0, 0.0, i as f32 * 20.0 + 10.0, 10.0])).collect();
        assert_eq!(nms_per_class(cands, 0.5, 3).len(), 3);
    }
}
