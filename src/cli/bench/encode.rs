//! `argus bench`, frame encoding for `argus ingest`: the JPEG encoder the ingest tier
//! uses next to the image crate's (the baseline), on one frame, single-threaded.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use argus::model::{Frame, RgbImage};

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(image: &RgbImage, iterations: usize, quality: u8) -> Result<()> {
    let frame = Frame {
        camera_id: Arc::from("bench"),
        seq: 0,
        pts_ns: None,
        captured_at: time::OffsetDateTime::now_utc(),
        time_source: "arrival",
        received: Instant::now(),
        image: Arc::new(image.clone()),
        ack: None,
        telemetry: None,
        position: None,
    };
    let iterations = iterations.max(1);
    let time = |f: &dyn Fn() -> usize| {
        let _ = f();
        let mut ms = Vec::with_capacity(iterations);
        let mut bytes = 0;
        for _ in 0..iterations {
            let t0 = Instant::now();
            bytes = f();
            ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        (median_ms(ms), bytes)
    };
    let (base_ms, base_bytes) = time(&|| {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .encode(&image.pixels, image.width, image.height, image::ExtendedColorType::Rgb8)
            .map(|()| out.len())
            .unwrap_or(0)
    });
    let (ms, bytes) = time(&|| argus::sinks::frames::encode::encode(&frame, quality).map(|e| e.jpeg.len()).unwrap_or(0));
    println!();
    println!("frame encoding for argus ingest ({}x{}, JPEG quality {quality}, one thread, median of {iterations}):", image.width, image.height);
    println!("{:<22} {:>10} {:>14} {:>10} {:>9}", "encoder", "median ms", "frames/s/core", "bytes", "vs base");
    println!("{:<22} {:>10.2} {:>14.0} {:>10} {:>8.2}x", "image crate (base)", base_ms, 1000.0 / base_ms, base_bytes, 1.0);
    println!("{:<22} {:>10.2} {:>14.0} {:>10} {:>8.2}x", "ingest (jpeg-encoder)", ms, 1000.0 / ms, bytes, base_ms / ms);
    Ok(())
}
