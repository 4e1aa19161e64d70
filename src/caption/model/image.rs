//! The captioner's input image: an optional crop of the frame, area-averaged down (or
//! up) to a square `size`, RGB in 0..1, CHW. Area averaging is what keeps a 1080p frame
//! meaningful at 64×64; the arithmetic (integer sums, one f64 division, then f32) is
//! exact so the numpy reference in scripts/make-tiny-captioner.py gives the same bits.

use crate::model::RgbImage;
use crate::model::SceneObject;

/// Pixel rectangle `[x0, y0, x1, y1)` inside an image.
pub type Rect = [u32; 4];

/// CHW float input for the model, `3 * size * size` values.
pub fn prepare(img: &RgbImage, crop: Option<Rect>, size: u32) -> Vec<f32> {
    let [x0, y0, x1, y1] = crop.map(|r| clamp_rect(r, img.width, img.height)).unwrap_or([0, 0, img.width, img.height]);
    let (w, h, s) = ((x1 - x0) as usize, (y1 - y0) as usize, size as usize);
    let stride = img.width as usize * 3;
    let plane = s * s;
    let mut out = vec![0f32; 3 * plane];
    for dy in 0..s {
        let (sy0, sy1) = span(dy, h, s);
        for dx in 0..s {
            let (sx0, sx1) = span(dx, w, s);
            let mut sums = [0u64; 3];
            for y in sy0..sy1 {
                let row = (y0 as usize + y) * stride;
                for x in sx0..sx1 {
                    let p = row + (x0 as usize + x) * 3;
                    for c in 0..3 {
                        sums[c] += img.pixels[p + c] as u64;
                    }
                }
            }
            let n = ((sy1 - sy0) * (sx1 - sx0)) as f64;
            for c in 0..3 {
                out[c * plane + dy * s + dx] = (sums[c] as f64 / n / 255.0) as f32;
            }
        }
    }
    out
}

/// Source rows (or columns) `[a, b)` that output cell `d` of `dst` averages over `src`:
/// every source pixel it overlaps, at least one.
fn span(d: usize, src: usize, dst: usize) -> (usize, usize) {
    let a = d * src / dst;
    let b = ((d + 1) * src).div_ceil(dst).max(a + 1);
    (a, b)
}

/// `r` inside the image and at least one pixel wide and high.
fn clamp_rect(r: Rect, width: u32, height: u32) -> Rect {
    let x0 = r[0].min(width - 1);
    let y0 = r[1].min(height - 1);
    let x1 = r[2].clamp(x0 + 1, width);
    let y1 = r[3].clamp(y0 + 1, height);
    [x0, y0, x1, y1]
}

/// The region around `objects` (those with a track in `track_ids` when it is not empty,
/// else all): their boxes' union grown by `margin` of its size on each side, made no
/// smaller than `min_side` pixels, inside the image. `None` when there is nothing to
/// frame (the whole frame is used).
pub fn objects_rect(objects: &[SceneObject], track_ids: &[u64], width: u32, height: u32, margin: f32, min_side: u32) -> Option<Rect> {
    let chosen: Vec<&SceneObject> =
        if track_ids.is_empty() { objects.iter().collect() } else { objects.iter().filter(|o| o.track_id.is_some_and(|t| track_ids.contains(&t))).collect() };
    let first = chosen.first()?;
    let mut b = first.bbox;
    for o in &chosen[1..] {
        b = [b[0].min(o.bbox[0]), b[1].min(o.bbox[1]), b[2].max(o.bbox[2]), b[3].max(o.bbox[3])];
    }
    if !b.iter().all(|v| v.is_finite()) {
        return None;
    }
    let grow = |lo: f32, hi: f32, limit: u32| -> (u32, u32) {
        let pad = (hi - lo).max(0.0) * margin;
        let side = (hi - lo + 2.0 * pad).max(min_side as f32).min(limit as f32);
        let centre = (lo + hi) / 2.0;
        let a = (centre - side / 2.0).clamp(0.0, limit as f32 - side);
        (a.floor() as u32, ((a + side).ceil() as u32).min(limit))
    };
    let (x0, x1) = grow(b[0], b[2], width);
    let (y0, y1) = grow(b[1], b[3], height);
    Some(clamp_rect([x0, y0, x1, y1], width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> RgbImage {
        let mut px = Vec::new();
        for y in 0..h {
            for x in 0..w {
                px.extend(f(x, y));
            }
        }
        RgbImage::new(w, h, px).unwrap()
    }

    #[test]
    fn area_average_downscales_and_keeps_channels_apart() {
        // 4x2 → 2x2... square output: 4x4 image of 2x2 blocks → 2x2.
        let img = image(4, 4, |x, y| {
            if x < 2 && y < 2 {
                [255, 0, 0]
            } else if x >= 2 && y < 2 {
                [0, 255, 0]
            } else {
                [0, 0, (x * 10 + y) as u8]
            }
        });
        let t = prepare(&img, None, 2);
        assert_eq!(&t[0..4], &[1.0, 0.0, 0.0, 0.0]); // R plane
        assert_eq!(&t[4..8], &[0.0, 1.0, 0.0, 0.0]); // G plane
        // B, bottom-left block: pixels (0,2),(1,2),(0,3),(1,3) → 2+12+3+13 = 30 / 4.
        assert_eq!(t[8 + 2], (30.0f64 / 4.0 / 255.0) as f32);
        // Upscaling repeats pixels; a crop takes only its rectangle.
        let t = prepare(&img, Some([2, 0, 4, 2]), 4);
        assert!(t[0..16].iter().all(|&v| v == 0.0) && t[16..32].iter().all(|&v| v == 1.0));
        // Output cells never average over nothing, whatever the ratio.
        let odd = image(7, 3, |x, _| [(x * 30) as u8, 0, 0]);
        let t = prepare(&odd, None, 5);
        assert_eq!(t.len(), 75);
        assert!(t.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn spans_cover_the_source() {
        for (src, dst) in [(10, 3), (3, 10), (1920, 64), (7, 7)] {
            assert_eq!(span(0, src, dst).0, 0);
            assert_eq!(span(dst - 1, src, dst).1, src);
            for d in 0..dst {
                let (a, b) = span(d, src, dst);
                assert!(a < b && b <= src);
            }
        }
    }

    fn obj(track: u64, bbox: [f32; 4]) -> SceneObject {
        SceneObject { track_id: Some(track), class: "person".into(), confidence: 0.9, bbox, world: None, speed_mps: None, heading_deg: None, zones: vec![] }
    }

    #[test]
    fn object_region_frames_the_members_with_margin() {
        let objs = [obj(1, [100.0, 100.0, 140.0, 200.0]), obj(2, [300.0, 50.0, 320.0, 80.0])];
        // Only track 1: 40x100 box, 10% margin each side → 48x120, centred.
        assert_eq!(objects_rect(&objs, &[1], 640, 480, 0.1, 16), Some([96, 90, 144, 210]));
        // All objects when no tracks are named: the union.
        let r = objects_rect(&objs, &[], 640, 480, 0.0, 16).unwrap();
        assert_eq!(r, [100, 50, 320, 200]);
        // A tiny box grows to the minimum side; a box at the edge stays inside.
        assert_eq!(objects_rect(&[obj(1, [0.0, 470.0, 2.0, 480.0])], &[], 640, 480, 0.0, 32), Some([0, 448, 32, 480]));
        assert_eq!(objects_rect(&objs, &[9], 640, 480, 0.1, 16), None);
        assert_eq!(objects_rect(&[obj(1, [f32::NAN, 0.0, 1.0, 1.0])], &[], 640, 480, 0.1, 16), None);
        // Larger than the image: the whole image.
        assert_eq!(objects_rect(&[obj(1, [0.0, 0.0, 640.0, 480.0])], &[], 640, 480, 0.5, 16), Some([0, 0, 640, 480]));
    }
}
