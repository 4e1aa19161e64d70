//! The latest frame of each camera with what Argus made of it, for
//! `GET /v1/cameras/{id}/snapshot.jpg`: boxes, track ids, zones and the risk level drawn
//! on the image. The scene stage only stores references (the frame is shared, the
//! objects are few); drawing and JPEG encoding happen when someone asks.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use time::OffsetDateTime;

use crate::geo::Homography;
use crate::model::RgbImage;
use crate::model::{Level, SceneObject};
use crate::risk::Zone;

#[derive(Clone)]
pub struct Snapshot {
    pub image: Arc<RgbImage>,
    pub seq: u64,
    pub captured_at: OffsetDateTime,
    pub objects: Vec<SceneObject>,
    /// World polygons, drawn through `world_to_image` when the camera is calibrated.
    pub zones: Arc<Vec<Zone>>,
    pub world_to_image: Option<Homography>,
    /// The highest level among the camera's open incidents.
    pub level: Option<Level>,
}

#[derive(Default)]
pub struct SnapshotBoard {
    latest: Mutex<HashMap<Arc<str>, Snapshot>>,
}

impl SnapshotBoard {
    pub fn update(&self, camera: &Arc<str>, s: Snapshot) {
        self.latest.lock().insert(camera.clone(), s);
    }

    pub fn get(&self, camera: &str) -> Option<Snapshot> {
        self.latest.lock().get(camera).cloned()
    }

    pub fn remove(&self, camera: &str) {
        self.latest.lock().remove(camera);
    }
}

type Rgb = [u8; 3];
const ZONE: Rgb = [255, 210, 0];
const BOX: Rgb = [0, 200, 255];
const BOX_IN_ZONE: Rgb = [255, 60, 60];
const TEXT: Rgb = [255, 255, 255];
const LABEL_BG: Rgb = [20, 20, 20];

pub fn level_colour(level: Option<Level>) -> Rgb {
    match level {
        None => [60, 60, 60],
        Some(Level::Low) => [40, 140, 70],
        Some(Level::Medium) => [230, 160, 0],
        Some(Level::High) => [240, 100, 20],
        Some(Level::Critical) => [210, 20, 20],
    }
}

/// Draws the overlay and encodes a JPEG.
pub fn render_jpeg(s: &Snapshot, camera: &str, quality: u8) -> Result<Vec<u8>, image::ImageError> {
    let mut c = Canvas { w: s.image.width as i64, h: s.image.height as i64, px: s.image.pixels.clone() };
    if let Some(h) = &s.world_to_image {
        for z in s.zones.iter() {
            let pts: Vec<Option<[f64; 2]>> = z.polygon.iter().map(|p| h.apply(*p)).collect();
            for i in 0..pts.len() {
                if let (Some(a), Some(b)) = (pts[i], pts[(i + 1) % pts.len()]) {
                    c.line(a, b, ZONE, 2);
                }
            }
            if let Some(Some(first)) = pts.first() {
                c.label(first[0] as i64, first[1] as i64 - 10, &z.id.to_uppercase(), ZONE, LABEL_BG);
            }
        }
    }
    for o in &s.objects {
        let colour = if o.zones.is_empty() { BOX } else { BOX_IN_ZONE };
        let [x1, y1, x2, y2] = o.bbox.map(|v| v as i64);
        c.rect(x1, y1, x2, y2, colour, 2);
        let mut label = match o.track_id {
            Some(id) => format!("#{id} {}", o.class),
            None => o.class.to_string(),
        };
        if let Some(v) = o.speed_mps {
            label.push_str(&format!(" {v:.1}M/S"));
        }
        c.label(x1, (y1 - 10).max(0), &label.to_uppercase(), TEXT, colour);
    }
    let banner = format!(
        "{}  {}  #{}  {}",
        camera.to_uppercase(),
        s.level.map(|l| l.as_str().to_uppercase()).unwrap_or_else(|| "NO INCIDENT".into()),
        s.seq,
        s.captured_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default().to_uppercase()
    );
    c.fill(0, 0, c.w, 14, level_colour(s.level));
    c.text(4, 3, &banner, TEXT);
    let img = image::RgbImage::from_raw(s.image.width, s.image.height, c.px).expect("same size as the frame");
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode_image(&img)?;
    Ok(out)
}

struct Canvas {
    w: i64,
    h: i64,
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && x < self.w && y < self.h {
            let i = ((y * self.w + x) * 3) as usize;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn fill(&mut self, x1: i64, y1: i64, x2: i64, y2: i64, c: Rgb) {
        for y in y1.max(0)..y2.min(self.h) {
            for x in x1.max(0)..x2.min(self.w) {
                self.set(x, y, c);
            }
        }
    }

    fn rect(&mut self, x1: i64, y1: i64, x2: i64, y2: i64, c: Rgb, t: i64) {
        self.fill(x1, y1, x2, y1 + t, c);
        self.fill(x1, y2 - t, x2, y2, c);
        self.fill(x1, y1, x1 + t, y2, c);
        self.fill(x2 - t, y1, x2, y2, c);
    }

    /// Bresenham with a square pen; endpoints far outside are clamped to keep it bounded.
    fn line(&mut self, a: [f64; 2], b: [f64; 2], c: Rgb, t: i64) {
        let lim = 4.0 * (self.w.max(self.h) as f64);
        let cl = |v: f64| v.clamp(-lim, lim) as i64;
        let (mut x0, mut y0, x1, y1) = (cl(a[0]), cl(a[1]), cl(b[0]), cl(b[1]));
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.fill(x0 - t / 2, y0 - t / 2, x0 - t / 2 + t, y0 - t / 2 + t, c);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb) {
        for (i, ch) in s.chars().enumerate() {
            let Some(rows) = glyph(ch) else { continue };
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0b10000 >> col) != 0 {
                        self.set(x + i as i64 * 6 + col, y + r as i64, c);
                    }
                }
            }
        }
    }

    fn label(&mut self, x: i64, y: i64, s: &str, fg: Rgb, bg: Rgb) {
        let w = s.chars().count() as i64 * 6 + 3;
        self.fill(x, y, x + w, y + 10, bg);
        self.text(x + 2, y + 2, s, fg);
    }
}

/// 5×7 glyphs (upper case, digits, a little punctuation); other characters are skipped.
fn glyph(ch: char) -> Option<&'static [u8; 7]> {
    let ch = ch.to_ascii_uppercase();
    FONT.iter().find(|(c, _)| *c == ch).map(|(_, g)| g)
}

const FONT: &[(char, [u8; 7])] = &[
    ('0', [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110]),
    ('1', [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('2', [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111]),
    ('3', [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110]),
    ('4', [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010]),
    ('5', [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110]),
    ('6', [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110]),
    ('7', [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000]),
    ('8', [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110]),
    ('9', [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100]),
    ('A', [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001]),
    ('B', [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110]),
    ('C', [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110]),
    ('D', [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100]),
    ('E', [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111]),
    ('F', [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000]),
    ('G', [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111]),
    ('H', [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001]),
    ('I', [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110]),
    ('J', [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100]),
    ('K', [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001]),
    ('L', [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111]),
    ('M', [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001]),
    ('N', [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001]),
    ('O', [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110]),
    ('P', [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000]),
    ('Q', [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101]),
    ('R', [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001]),
    ('S', [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110]),
    ('T', [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100]),
    ('U', [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110]),
    ('V', [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100]),
    ('W', [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010]),
    ('X', [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001]),
    ('Y', [0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100]),
    ('Z', [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111]),
    ('#', [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010]),
    (':', [0b00000, 0b00100, 0b00100, 0b00000, 0b00100, 0b00100, 0b00000]),
    ('.', [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100]),
    ('-', [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000]),
    ('/', [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000]),
    ('%', [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011]),
    ('_', [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111]),
    ('(', [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010]),
    (')', [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000]),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let image = Arc::new(RgbImage::new(64, 48, vec![0; 64 * 48 * 3]).unwrap());
        let o = SceneObject {
            track_id: Some(7),
            class: Arc::from("person"),
            confidence: 0.9,
            bbox: [10.0, 20.0, 30.0, 40.0],
            world: None,
            speed_mps: Some(1.2),
            heading_deg: None,
            zones: vec!["yard".into()],
        };
        Snapshot {
            image,
            seq: 3,
            captured_at: OffsetDateTime::UNIX_EPOCH,
            objects: vec![o],
            zones: Arc::new(vec![Zone { id: "yard".into(), polygon: vec![[0.0, 0.0], [50.0, 0.0], [50.0, 40.0]] }]),
            world_to_image: Some(Homography::IDENTITY),
            level: Some(Level::High),
        }
    }

    #[test]
    fn draws_boxes_zones_and_the_level_then_encodes_a_jpeg() {
        let s = snapshot();
        let jpeg = render_jpeg(&s, "gate", 85).unwrap();
        let back = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (64, 48));
        // The banner is the level's colour, the box edge is red (in a zone): JPEG is lossy,
        // so compare loosely.
        let near = |p: &image::Rgb<u8>, c: Rgb| p.0.iter().zip(c).all(|(a, b)| (*a as i32 - b as i32).abs() < 60);
        assert!(near(back.get_pixel(40, 12), level_colour(Some(Level::High))), "{:?}", back.get_pixel(40, 12));
        assert!(near(back.get_pixel(10, 35), BOX_IN_ZONE), "{:?}", back.get_pixel(10, 35));
        assert!(near(back.get_pixel(0, 0), level_colour(Some(Level::High))));
        // Untouched pixels stay black.
        assert!(near(back.get_pixel(60, 45), [0, 0, 0]));
    }

    #[test]
    fn every_glyph_is_known_for_labels() {
        for ch in "#7 PERSON 1.2M/S YARD NO INCIDENT 2026-01-01T00:00:00Z".chars().filter(|c| *c != ' ') {
            assert!(glyph(ch).is_some(), "{ch}");
        }
    }

    #[test]
    fn board_keeps_the_latest_per_camera() {
        let b = SnapshotBoard::default();
        let cam: Arc<str> = Arc::from("a");
        b.update(&cam, snapshot());
        let mut s = snapshot();
        s.seq = 9;
        b.update(&cam, s);
        assert_eq!(b.get("a").unwrap().seq, 9);
        b.remove("a");
        assert!(b.get("a").is_none());
    }
}
