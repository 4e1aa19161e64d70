//! Image → model input tensor: resize (letterbox or stretch), channel order, normalisation.
//!
//! Pure Rust so that every backend sees bit-identical input, which is what makes the
//! backend parity test meaningful.

use crate::model::RgbImage;

/// How the image is fitted into the model's square input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resize {
    /// Keep the aspect ratio, centre on a canvas filled with `pad` (raw pixel value).
    Letterbox { pad: u8 },
    /// Scale each axis independently to the input size.
    Stretch,
}

/// Channel order the model expects in plane 0, 1, 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// Everything needed to turn an RGB image into the model's input planes.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    pub resize: Resize,
    pub order: ChannelOrder,
    /// Per model-channel mean, in the model's channel order, on the 0..255 scale.
    pub mean: [f32; 3],
    /// Per model-channel divisor, in the model's channel order.
    pub std: [f32; 3],
}

/// The mapping from model-input pixels back to original image pixels:
/// `x_orig = (x_input - ox) / sx`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputTransform {
    pub sx: f32,
    pub sy: f32,
    pub ox: f32,
    pub oy: f32,
    pub orig_width: u32,
    pub orig_height: u32,
}

impl InputTransform {
    /// Maps a box from model-input pixels to original pixels, clipped to the image.
    pub fn to_original(&self, b: [f32; 4]) -> [f32; 4] {
        let w = self.orig_width as f32;
        let h = self.orig_height as f32;
        [
            ((b[0] - self.ox) / self.sx).clamp(0.0, w),
            ((b[1] - self.oy) / self.sy).clamp(0.0, h),
            ((b[2] - self.ox) / self.sx).clamp(0.0, w),
            ((b[3] - self.oy) / self.sy).clamp(0.0, h),
        ]
    }
}

/// Writes one image as `3 × height × width` f32 planes into `out` (which must have exactly
/// that length) and returns the transform back to original pixels.
pub fn preprocess_into(img: &RgbImage, spec: &InputSpec, out: &mut [f32]) -> InputTransform {
    let (iw, ih) = (spec.width as usize, spec.height as usize);
    assert_eq!(out.len(), 3 * iw * ih, "input tensor slice has the wrong length");
    let (w, h) = (img.width as usize, img.height as usize);
    let (nw, nh, ox, oy, sx, sy) = match spec.resize {
        Resize::Letterbox { .. } => {
            let s = (iw as f32 / w as f32).min(ih as f32 / h as f32);
            let nw = ((w as f32 * s).round() as usize).clamp(1, iw);
            let nh = ((h as f32 * s).round() as usize).clamp(1, ih);
            let ox = (iw - nw) / 2;
            let oy = (ih - nh) / 2;
            (nw, nh, ox, oy, s, s)
        }
        Resize::Stretch => (iw, ih, 0, 0, iw as f32 / w as f32, ih as f32 / h as f32),
    };

    // Padding value per model channel, normalised like every other pixel.
    let pad = match spec.resize {
        Resize::Letterbox { pad } => pad as f32,
        Resize::Stretch => 0.0,
    };
    let plane = iw * ih;
    // Which RGB byte feeds model channel c.
    let src_channel: [usize; 3] = match spec.order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let inv_std = spec.std.map(|s| 1.0 / s);
    let (p0, rest) = out.split_at_mut(plane);
    let (p1, p2) = rest.split_at_mut(plane);
    let mut planes = [p0, p1, p2];

    // Padding: only where the image does not go (the rest is written once, below).
    for (c, p) in planes.iter_mut().enumerate() {
        let v = (pad - spec.mean[c]) * inv_std[c];
        p[..oy * iw].fill(v);
        p[(oy + nh) * iw..].fill(v);
        for row in p[oy * iw..(oy + nh) * iw].chunks_exact_mut(iw) {
            row[..ox].fill(v);
            row[ox + nw..].fill(v);
        }
    }

    // Bilinear resize with half-pixel centres (OpenCV INTER_LINEAR's convention). The
    // arithmetic is the same per value as ever (bit-identical input for every backend);
    // the loop reads each tap's three bytes once and writes the three planes' rows.
    let x_taps: Vec<(usize, usize, f32)> = linear_taps(w, nw).into_iter().map(|(x0, x1, fx)| (x0 * 3, x1 * 3, fx)).collect();
    let y_taps = linear_taps(h, nh);
    let stride = w * 3;
    let px = &img.pixels;
    let [m0, m1, m2] = spec.mean;
    let [s0, s1, s2] = inv_std;
    let [c0, c1, c2] = src_channel;
    for (dy, &(y0, y1, fy)) in y_taps.iter().enumerate() {
        let row0 = &px[y0 * stride..y0 * stride + stride];
        let row1 = &px[y1 * stride..y1 * stride + stride];
        let base = (oy + dy) * iw + ox;
        let [p0, p1, p2] = &mut planes;
        let (d0, d1, d2) = (&mut p0[base..base + nw], &mut p1[base..base + nw], &mut p2[base..base + nw]);
        for (dx, &(x0, x1, fx)) in x_taps.iter().enumerate() {
            let (a, b) = (&row0[x0..x0 + 3], &row0[x1..x1 + 3]);
            let (cc, d) = (&row1[x0..x0 + 3], &row1[x1..x1 + 3]);
            let lerp = |k: usize| {
                let top = a[k] as f32 + (b[k] as f32 - a[k] as f32) * fx;
                let bottom = cc[k] as f32 + (d[k] as f32 - cc[k] as f32) * fx;
                top + (bottom - top) * fy
            };
            let v = [lerp(0), lerp(1), lerp(2)];
            d0[dx] = (v[c0] - m0) * s0;
            d1[dx] = (v[c1] - m1) * s1;
            d2[dx] = (v[c2] - m2) * s2;
        }
    }
    InputTransform { sx, sy, ox: ox as f32, oy: oy as f32, orig_width: img.width, orig_height: img.height }
}

/// For each destination index: (left source index, right source index, weight of right).
fn linear_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|d| {
            let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(src - 1);
            let i1 = (i0 + 1).min(src - 1);
            (i0, i1, s - i0 as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resize: Resize, order: ChannelOrder) -> InputSpec {
        InputSpec { width: 8, height: 8, resize, order, mean: [0.0; 3], std: [1.0; 3] }
    }

    fn solid(w: u32, h: u32, rgb: [u8; 3]) -> RgbImage {
        RgbImage::new(w, h, rgb.iter().copied().cycle().take((w * h * 3) as usize).collect()).unwrap()
    }

    #[test]
    fn letterbox_centres_wide_image_and_pads() {
        let img = solid(16, 8, [10, 20, 30]);
        let mut out = vec![0.0; 3 * 64];
        let t = preprocess_into(&img, &spec(Resize::Letterbox { pad: 7 }, ChannelOrder::Rgb), &mut out);
        assert_eq!((t.sx, t.ox, t.oy), (0.5, 0.0, 2.0));
        // Row 0 is padding, row 2 is image.
        assert_eq!(out[0], 7.0);
        assert_eq!(out[2 * 8], 10.0);
        assert_eq!(out[64 + 2 * 8], 20.0);
        assert_eq!(out[128 + 7 * 8], 7.0);
    }

    #[test]
    fn bgr_order_and_normalisation() {
        let img = solid(8, 8, [10, 20, 30]);
        let mut s = spec(Resize::Stretch, ChannelOrder::Bgr);
        s.mean = [30.0, 20.0, 10.0];
        s.std = [2.0, 4.0, 5.0];
        let mut out = vec![1.0; 3 * 64];
        preprocess_into(&img, &s, &mut out);
        assert!(out.iter().all(|v| *v == 0.0), "B,G,R minus their means is zero");
        s.mean = [0.0; 3];
        preprocess_into(&img, &s, &mut out);
        assert_eq!((out[0], out[64], out[128]), (15.0, 5.0, 2.0));
    }

    #[test]
    fn boxes_map_back_to_original_pixels() {
        let img = solid(16, 8, [0, 0, 0]);
        let mut out = vec![0.0; 3 * 64];
        let t = preprocess_into(&img, &spec(Resize::Letterbox { pad: 0 }, ChannelOrder::Rgb), &mut out);
        assert_eq!(t.to_original([0.0, 2.0, 8.0, 6.0]), [0.0, 0.0, 16.0, 8.0]);
        assert_eq!(t.to_original([-5.0, 0.0, 100.0, 100.0]), [0.0, 0.0, 16.0, 8.0]);
    }

    /// The reference: the straightforward per-channel loop the fast one replaced. Both
    /// must give bit-identical tensors (backend parity and golden detections rely on it).
    fn reference(img: &RgbImage, spec: &InputSpec, out: &mut [f32]) {
        let (iw, ih) = (spec.width as usize, spec.height as usize);
        let (w, h) = (img.width as usize, img.height as usize);
        let s = (iw as f32 / w as f32).min(ih as f32 / h as f32);
        let (nw, nh) = (((w as f32 * s).round() as usize).clamp(1, iw), ((h as f32 * s).round() as usize).clamp(1, ih));
        let (ox, oy) = ((iw - nw) / 2, (ih - nh) / 2);
        let Resize::Letterbox { pad } = spec.resize else { unreachable!() };
        let src = match spec.order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let plane = iw * ih;
        for c in 0..3 {
            out[c * plane..(c + 1) * plane].fill((pad as f32 - spec.mean[c]) * (1.0 / spec.std[c]));
        }
        let (xt, yt) = (linear_taps(w, nw), linear_taps(h, nh));
        for (dy, &(y0, y1, fy)) in yt.iter().enumerate() {
            for (dx, &(x0, x1, fx)) in xt.iter().enumerate() {
                for c in 0..3 {
                    let p = |x: usize, y: usize| img.pixels[(y * w + x) * 3 + src[c]] as f32;
                    let top = p(x0, y0) + (p(x1, y0) - p(x0, y0)) * fx;
                    let bottom = p(x0, y1) + (p(x1, y1) - p(x0, y1)) * fx;
                    let v = top + (bottom - top) * fy;
                    out[c * plane + (oy + dy) * iw + ox + dx] = (v - spec.mean[c]) * (1.0 / spec.std[c]);
                }
            }
        }
    }

    #[test]
    fn matches_the_reference_loop_bit_for_bit() {
        // A noisy 37x23 image into a 16x16 letterbox (odd sizes, both pad bands), BGR.
        let pixels: Vec<u8> = (0..37 * 23 * 3u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let img = RgbImage::new(37, 23, pixels).unwrap();
        for (w, h) in [(16, 16), (16, 24), (24, 16)] {
            let s = InputSpec {
                width: w,
                height: h,
                resize: Resize::Letterbox { pad: 114 },
                order: ChannelOrder::Bgr,
                mean: [103.5, 116.3, 123.7],
                std: [57.4, 57.1, 58.4],
            };
            let (mut fast, mut slow) = (vec![f32::NAN; 3 * (w * h) as usize], vec![0.0; 3 * (w * h) as usize]);
            preprocess_into(&img, &s, &mut fast);
            reference(&img, &s, &mut slow);
            let same = fast.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{w}x{h}: the tensors differ");
        }
    }

    #[test]
    fn bilinear_interpolates_a_ramp() {
        // A 2-pixel ramp upscaled to 4 follows OpenCV: 0, 0.25, 0.75, 1 of the range.
        let img = RgbImage::new(2, 1, vec![0, 0, 0, 100, 100, 100]).unwrap();
        let s = InputSpec { width: 4, height: 1, ..spec(Resize::Stretch, ChannelOrder::Rgb) };
        let mut out = vec![0.0; 12];
        preprocess_into(&img, &s, &mut out);
        assert_eq!(&out[0..4], &[0.0, 25.0, 75.0, 100.0]);
    }
}
