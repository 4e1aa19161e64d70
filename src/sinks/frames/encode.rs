//! A decoded frame as the Kafka source reads it back: value = JPEG, key = camera id,
//! headers `camera_id`, `captured_at` (RFC 3339, microseconds) and `telemetry` (the
//! drone pose as JSON) when the frame has one.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::model::Frame;

/// One frame ready for the producer.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub camera_id: Arc<str>,
    pub seq: u64,
    pub captured_at: OffsetDateTime,
    pub jpeg: Vec<u8>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// RFC 3339 in UTC with microseconds (the source accepts any RFC 3339).
pub fn captured_at_header(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second(), t.microsecond())
}

/// JPEG-encodes `frame` at `quality` (1–100).
pub fn encode(frame: &Frame, quality: u8) -> Result<EncodedFrame, String> {
    let img = &frame.image;
    let expected = img.width as usize * img.height as usize * 3;
    if img.pixels.len() != expected {
        return Err(format!("{}x{} frame with {} bytes instead of {expected}", img.width, img.height, img.pixels.len()));
    }
    let (Ok(w), Ok(h)) = (u16::try_from(img.width), u16::try_from(img.height)) else {
        return Err(format!("{}x{} is larger than JPEG allows (65535 per side)", img.width, img.height));
    };
    // JPEG compresses photos about 10:1 at quality 85: one allocation, rarely grown.
    let mut jpeg = Vec::with_capacity(expected / 8);
    // jpeg-encoder (AVX2 when the CPU has it): ~5x faster than the image crate's encoder
    // on a 768x576 frame, which made encoding the ingest tier's bottleneck.
    jpeg_encoder::Encoder::new(&mut jpeg, quality.clamp(1, 100)).encode(&img.pixels, w, h, jpeg_encoder::ColorType::Rgb).map_err(|e| e.to_string())?;
    let mut headers = vec![("camera_id", frame.camera_id.as_bytes().to_vec()), ("captured_at", captured_at_header(frame.captured_at).into_bytes())];
    if let Some(t) = &frame.telemetry {
        headers.push(("telemetry", serde_json::to_vec(t.as_ref()).map_err(|e| e.to_string())?));
    }
    Ok(EncodedFrame { camera_id: frame.camera_id.clone(), seq: frame.seq, captured_at: frame.captured_at, jpeg, headers })
}

/// Encodes `frames` on up to `threads` threads, results in the frames' order (so a
/// camera's frames reach the topic in the order they were captured).
pub fn encode_all(frames: &[Frame], quality: u8, threads: usize) -> Vec<Result<EncodedFrame, String>> {
    let threads = threads.clamp(1, frames.len().max(1));
    if threads == 1 {
        return frames.iter().map(|f| encode(f, quality)).collect();
    }
    let chunk = frames.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = frames.chunks(chunk).map(|c| s.spawn(move || c.iter().map(|f| encode(f, quality)).collect::<Vec<_>>())).collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| vec![Err("the JPEG encoder panicked".into())])).collect()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{RgbImage, Telemetry};

    pub(crate) fn frame(camera: &str, seq: u64, w: u32, h: u32) -> Frame {
        let pixels = (0..w * h * 3).map(|i| ((i * 7 + seq as u32) % 251) as u8).collect();
        Frame {
            camera_id: Arc::from(camera),
            seq,
            pts_ns: None,
            captured_at: OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_789).unwrap(),
            time_source: "arrival",
            received: std::time::Instant::now(),
            image: Arc::new(RgbImage { width: w, height: h, pixels }),
            ack: None,
            telemetry: None,
            position: None,
        }
    }

    #[test]
    fn a_frame_encodes_to_what_the_kafka_source_decodes() {
        let mut f = frame("cam-1", 3, 64, 48);
        f.telemetry = Some(Arc::new(Telemetry { lat: 52.0, lon: 4.0, alt_m: 80.0, yaw: 10.0, pitch: -60.0, roll: 0.0, hfov: 70.0 }));
        let e = encode(&f, 85).unwrap();
        let back = image::load_from_memory_with_format(&e.jpeg, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (64, 48));
        let h = |k: &str| e.headers.iter().find(|(n, _)| *n == k).map(|(_, v)| String::from_utf8(v.clone()).unwrap());
        assert_eq!(h("camera_id").as_deref(), Some("cam-1"));
        assert_eq!(h("captured_at").as_deref(), Some("2025-11-24T16:00:00.123456Z"));
        let parsed = crate::model::parse_time(&h("captured_at").unwrap()).unwrap();
        assert_eq!(parsed.unix_timestamp_nanos() / 1000, f.captured_at.unix_timestamp_nanos() / 1000);
        let t: Telemetry = serde_json::from_str(&h("telemetry").unwrap()).unwrap();
        assert_eq!(t, *f.telemetry.clone().unwrap());
        assert!(encode(&frame("cam-1", 0, 8, 8), 85).unwrap().headers.iter().all(|(k, _)| *k != "telemetry"));
    }

    #[test]
    fn quality_trades_size_and_a_torn_frame_is_an_error() {
        let f = frame("c", 0, 160, 120);
        assert!(encode(&f, 30).unwrap().jpeg.len() < encode(&f, 95).unwrap().jpeg.len());
        let mut bad = f.clone();
        bad.image = Arc::new(RgbImage { width: 160, height: 120, pixels: vec![0; 10] });
        assert!(encode(&bad, 85).unwrap_err().contains("160x120 frame with 10 bytes"));
    }

    #[test]
    fn parallel_encoding_keeps_the_frames_order() {
        let frames: Vec<Frame> = (0..7).map(|i| frame(if i % 2 == 0 { "a" } else { "b" }, i, 32, 24)).collect();
        for threads in [1, 2, 3, 16] {
            let out = encode_all(&frames, 80, threads);
            let seqs: Vec<u64> = out.iter().map(|e| e.as_ref().unwrap().seq).collect();
            assert_eq!(seqs, (0..7).collect::<Vec<_>>(), "{threads} threads");
        }
        assert!(encode_all(&[], 80, 4).is_empty());
    }
}
