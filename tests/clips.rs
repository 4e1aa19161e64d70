//! Incident clips (`[evidence.clip]`): the GStreamer encoder's files decode back to the
//! frames given, and the demo through the binary gives every opening a clip served with
//! range requests, whose frames span the pre-roll and post-roll.
#![cfg(all(feature = "gstreamer", feature = "onnx", feature = "opencv"))]

#[path = "common/demo_config.rs"]
mod demo_config;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argus::evidence::clip::{ClipEncoder, ClipFrame};
use argus::model::RgbImage;
use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::Value;
use sha2::Digest;

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Decodes an MP4 with GStreamer: (frames, width, height).
fn decode(path: &Path) -> (usize, i32, i32) {
    gst::init().unwrap();
    let p = gst::parse::launch(&format!("filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! appsink name=out sync=false", path.display()))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = p.by_name("out").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let (mut n, mut w, mut h) = (0, 0, 0);
    while let Ok(sample) = sink.pull_sample() {
        let s = sample.caps().unwrap().structure(0).unwrap().to_owned();
        (w, h) = (s.get::<i32>("width").unwrap(), s.get::<i32>("height").unwrap());
        n += 1;
    }
    p.set_state(gst::State::Null).unwrap();
    (n, w, h)
}

#[test]
fn the_encoder_writes_an_mp4_that_decodes_to_the_frames_given() {
    let dir = tempfile::tempdir().unwrap();
    // An odd width (GStreamer pads RGB rows to 4 bytes) and a size scaled down.
    let (w, h) = (801u32, 601u32);
    let frames: Vec<ClipFrame> = (0..12u8)
        .map(|i| ClipFrame {
            captured_at: time::OffsetDateTime::UNIX_EPOCH,
            image: Arc::new(RgbImage { width: w, height: h, pixels: (0..w * h * 3).map(|p| (p as u8).wrapping_add(i * 20)).collect() }),
        })
        .collect();
    let out = dir.path().join("clip.mp4");
    let mut enc = argus::sources::gst::clip::GstClipEncoder;
    let mut writer = enc.begin(w, h, 5.0, 640, &out).unwrap();
    for (i, f) in frames.iter().enumerate() {
        writer.push(&f.image, i as u64).unwrap();
    }
    let size = writer.finish().unwrap();
    assert_eq!(size, (640, 480));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[4..8], b"ftyp", "an MP4");
    let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "faststart: the index before the media");
    assert_eq!(decode(&out), (12, 640, 480), "every frame, at the scaled size");

    // Dropped half-way (a clip abandoned): no hang, the pipeline goes back to Null.
    let mut writer = enc.begin(w, h, 5.0, 640, &dir.path().join("dropped.mp4")).unwrap();
    writer.push(&frames[0].image, 0).unwrap();
    drop(writer);
}

fn get(url: &str, range: Option<&str>) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(10));
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.headers().clone(), r.bytes().unwrap().to_vec())
}

fn json(url: &str) -> Value {
    let (code, _, body) = get(url, None);
    assert_eq!(code, 200, "{url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn the_demo_gives_every_opening_a_clip_served_with_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = demo_config::write_config(dir.path(), port);
    let t0 = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--max-frames", "400", "--config"])
        .arg(&cfg)
        .env("ARGUS_EVIDENCE__CLIP__ENABLED", "true")
        .env("ARGUS_EVIDENCE__CLIP__PRE_S", "2.0")
        .env("ARGUS_EVIDENCE__CLIP__POST_S", "3.0")
        .env("ARGUS_SINKS__STDOUT__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    loop {
        assert!(t0.elapsed() < Duration::from_secs(240), "the demo did not finish in time");
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("argus exited early: {status}\n{}", std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default());
        }
        if reqwest::blocking::get(format!("{base}/readyz")).ok().and_then(|r| r.json::<Value>().ok()).is_some_and(|r| r["pipeline"]["state"] == "ended") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let events: Vec<Value> = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let openings: Vec<&Value> = events.iter().filter(|e| e["kind"] == "incident.opened").collect();
    assert!(openings.len() >= 3, "the demo's first 400 frames open incidents: {}", openings.len());
    let mut sizes = Vec::new();
    for ev in &openings {
        let incident = ev["incident_id"].as_str().unwrap();
        let clip = &ev["evidence"]["clip"];
        assert_eq!(clip["url"], format!("/v1/incidents/{incident}/clip.mp4"), "{ev}");
        let at = time::OffsetDateTime::parse(ev["captured_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        let t = |v: &Value| time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(t(&clip["from"]), at - time::Duration::seconds(2));
        assert_eq!(t(&clip["to"]), at + time::Duration::seconds(3));

        let detail = json(&format!("{base}/v1/incidents/{incident}"));
        let info = &detail["clip"];
        let (code, headers, body) = get(&format!("{base}{}", clip["url"].as_str().unwrap()), None);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["content-type"], "video/mp4");
        assert_eq!(headers["accept-ranges"], "bytes");
        let sha = hex::encode(sha2::Sha256::digest(&body));
        assert_eq!(info["sha256"], sha.as_str(), "the detail's digest is the file's");
        assert_eq!(headers["etag"], format!("\"{sha}\"").as_str());
        assert_eq!(info["bytes"], body.len());
        let path = dir.path().join("clip.mp4");
        std::fs::write(&path, &body).unwrap();
        let (frames, w, h) = decode(&path);
        assert_eq!(frames as u64, info["frames"].as_u64().unwrap(), "{info}");
        assert_eq!((w, h), (640, 480), "768x576 scaled to max_side 640");
        // 2 s before and 3 s after at 5 fps: 25 frames and one, fewer when the camera
        // ended first or the incident opened less than 2 s into the video.
        let into_video = ev["frame"]["seq"].as_u64().unwrap() as f64 / 10.0;
        let pre = into_video.min(2.0);
        assert!(frames as f64 <= (pre + 3.0) * 5.0 + 1.0 && frames as f64 >= pre * 5.0, "{frames} frames for {info}");

        // Ranges: a prefix, a suffix, and one past the end.
        let (code, headers, part) = get(&format!("{base}{}", clip["url"].as_str().unwrap()), Some("bytes=0-99"));
        assert_eq!((code, part.as_slice()), (206, &body[..100]));
        assert_eq!(headers["content-range"], format!("bytes 0-99/{}", body.len()).as_str());
        let (code, _, part) = get(&format!("{base}{}", clip["url"].as_str().unwrap()), Some("bytes=-10"));
        assert_eq!((code, part.as_slice()), (206, &body[body.len() - 10..]));
        let (code, headers, _) = get(&format!("{base}{}", clip["url"].as_str().unwrap()), Some(&format!("bytes={}-", body.len())));
        assert_eq!(code, 416);
        assert_eq!(headers["content-range"], format!("bytes */{}", body.len()).as_str());
        sizes.push((frames, body.len()));
    }
    // An incident without a clip, and nonsense.
    let (code, _, body) = get(&format!("{base}/v1/incidents/00000000-0000-4000-8000-000000000000/clip.mp4"), None);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((code, err["details"]["state"].as_str()), (404, Some("none")), "{err}");
    let (code, _, _) = get(&format!("{base}/v1/incidents/..%2F..%2Fetc/clip.mp4"), None);
    assert_eq!(code, 400);
    let metrics = reqwest::blocking::get(format!("{base}/metrics")).unwrap().text().unwrap();
    let written = metrics.lines().find_map(|l| l.strip_prefix("argus_clips_finished_total{outcome=\"written\"} ")).unwrap_or("0");
    assert_eq!(written, openings.len().to_string(), "one clip per opening");
    let (frames, bytes): (usize, usize) = sizes.iter().fold((0, 0), |a, s| (a.0 + s.0, a.1 + s.1));
    eprintln!(
        "clips: {} written, {frames} frames, {bytes} bytes ({} bytes per clip), demo of 400 frames in {:.1} s",
        sizes.len(),
        bytes / sizes.len(),
        t0.elapsed().as_secs_f64()
    );
}
