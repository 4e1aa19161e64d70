//! The walking skeleton end to end: `argus run` on the demo video (GStreamer → detector
//! → tracker → homography → rule → sinks), queried over HTTP while it runs, stopped with
//! SIGTERM, then restarted on the same store.
#![cfg(all(feature = "gstreamer", feature = "onnx", feature = "opencv"))]

#[path = "common/demo_config.rs"]
mod demo_config;
use demo_config::write_config;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use argus::store::EventStore;
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn get(url: &str) -> Option<(u16, Value)> {
    let r = reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(5)).send().ok()?;
    let code = r.status().as_u16();
    Some((code, r.json().ok()?))
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The operator API against the real detector: the demo's last annotated frame, and an
/// uploaded photo analysed alone and as the plaza camera would see it.
fn check_snapshot_and_analysis(base: &str) {
    let c = reqwest::blocking::Client::new();
    let r = c.get(format!("{base}/v1/cameras/plaza/snapshot.jpg")).send().unwrap();
    assert_eq!(r.status(), 200);
    let img = image::load_from_memory(&r.bytes().unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (768, 576), "vtest.avi's frame size");
    let dog = std::fs::read("/usr/share/darknet/data/dog.jpg").expect("darknet's sample images (scripts/setup)");
    let form = || {
        reqwest::blocking::multipart::Form::new()
            .part("image", reqwest::blocking::multipart::Part::bytes(dog.clone()).file_name("dog.jpg").mime_str("image/jpeg").unwrap())
    };
    let r = c.post(format!("{base}/v1/analyze")).multipart(form()).timeout(Duration::from_secs(60)).send().unwrap();
    assert_eq!(r.status(), 200);
    let ev: Value = r.json().unwrap();
    let classes: Vec<&str> = ev["objects"].as_array().unwrap().iter().map(|o| o["class"].as_str().unwrap()).collect();
    assert!(classes.contains(&"dog") && classes.contains(&"bicycle"), "{classes:?}");
    let r = c.post(format!("{base}/v1/analyze?camera_id=plaza")).multipart(form()).timeout(Duration::from_secs(60)).send().unwrap();
    let ev: Value = r.json().unwrap();
    assert_eq!(ev["camera_id"], "plaza");
    // The plaza camera keeps only its classes and places them on its ground plane.
    let objects = ev["objects"].as_array().unwrap();
    assert!(objects.iter().any(|o| o["class"] == "dog" && o["world"]["x_m"].is_number()), "{ev}");
    assert!(objects.iter().all(|o| ["person", "bicycle", "car", "truck", "dog"].contains(&o["class"].as_str().unwrap())), "{ev}");
}

/// `GET /v1/events/{id}/evidence.jpg`: an incident event's JPEG with its digest as the
/// ETag; a summary has none (404), a bad id is a 400.
fn check_evidence_route(base: &str, events: &[Value]) {
    let c = reqwest::blocking::Client::new();
    let opened = events.iter().find(|e| e["kind"] == "incident.opened").unwrap();
    let r = c.get(format!("{base}{}", opened["evidence"]["url"].as_str().unwrap())).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["etag"].to_str().unwrap(), format!("\"{}\"", opened["evidence"]["sha256"].as_str().unwrap()));
    let body = r.bytes().unwrap();
    assert_eq!(body.len() as u64, opened["evidence"]["bytes"].as_u64().unwrap());
    let summary = events.iter().find(|e| e["kind"] == "frame.analyzed").unwrap();
    let r = c.get(format!("{base}/v1/events/{}/evidence.jpg", summary["event_id"].as_str().unwrap())).send().unwrap();
    assert_eq!(r.status(), 404);
    let err: Value = r.json().unwrap();
    assert!(err["error"] == "NOT_FOUND" && err["message"].as_str().unwrap_or_default().contains("no evidence"), "{err}");
    assert_eq!(c.get(format!("{base}/v1/events/not-an-id/evidence.jpg")).send().unwrap().status(), 400);
}

/// The board lists exactly the demo's incidents, each summarised from its events (closed
/// at the run's end, its peak level, a thumbnail that is served), and each detail holds
/// its whole lifecycle in order.
fn check_incidents(base: &str, events: &[Value]) {
    let rank = |l: &Value| ["low", "medium", "high", "critical"].iter().position(|x| l == *x).unwrap();
    let (status, board) = get(&format!("{base}/v1/incidents?limit=200")).unwrap();
    assert_eq!(status, 200, "{board}");
    let listed = board["incidents"].as_array().unwrap();
    let want: std::collections::BTreeSet<&str> = events.iter().filter_map(|e| e["incident_id"].as_str()).collect();
    let got: std::collections::BTreeSet<&str> = listed.iter().map(|i| i["incident_id"].as_str().unwrap()).collect();
    assert_eq!(got, want, "the board lists every incident once");
    assert!(board.get("next_cursor").is_none());
    let c = reqwest::blocking::Client::new();
    for inc in listed {
        let id = inc["incident_id"].as_str().unwrap();
        let mut life: Vec<&Value> = events.iter().filter(|e| e["incident_id"] == id).collect();
        life.sort_by_key(|e| (e["captured_at"].as_str().unwrap().to_string(), e["event_id"].as_str().unwrap().to_string()));
        assert_eq!(inc["state"], "closed", "{inc}");
        assert_eq!(inc["events"].as_u64().unwrap() as usize, life.len(), "{inc}");
        assert_eq!(inc["opened_at"], life[0]["captured_at"]);
        let peak = life.iter().map(|e| rank(&e["risk"]["level"])).max().unwrap();
        assert_eq!(rank(&inc["peak_level"]), peak, "{inc}");
        let thumb = inc["thumbnail"]["url"].as_str().unwrap_or_else(|| panic!("no thumbnail: {inc}"));
        assert_eq!(c.get(format!("{base}{thumb}")).send().unwrap().status(), 200, "{thumb}");
        let (status, detail) = get(&format!("{base}/v1/incidents/{id}")).unwrap();
        assert_eq!(status, 200);
        let ids: Vec<&str> = detail["lifecycle"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
        assert_eq!(ids, life.iter().map(|e| e["event_id"].as_str().unwrap()).collect::<Vec<_>>(), "{id}: the lifecycle, oldest first");
    }
    eprintln!("incident board: {} incidents, {} events", listed.len(), events.iter().filter(|e| e["incident_id"].is_string()).count());
}

/// Every incident event has evidence, and only those: a JPEG named by its SHA-256, of the
/// frame's size, with a box in the box colours along the edges of each of the event's
/// objects (JPEG blurs colours, so most of each edge, not every pixel).
fn check_evidence_files(dir: &std::path::Path, events: &[Value]) {
    use sha2::Digest;
    let box_colours = [[0i32, 200, 255], [255, 60, 60]];
    let near = |p: &image::Rgb<u8>| box_colours.iter().any(|c| (0..3).map(|i| (p[i] as i32 - c[i]).pow(2)).sum::<i32>() < 90 * 90);
    let (mut checked, mut worst, mut inside, mut inside_total) = (0, 1.0f64, 0, 0);
    for ev in events {
        if ev["kind"] == "frame.analyzed" {
            assert!(ev.get("evidence").is_none(), "a summary with evidence: {ev}");
            continue;
        }
        let e = &ev["evidence"];
        let sha = e["sha256"].as_str().unwrap_or_else(|| panic!("an incident event without evidence: {ev}"));
        assert_eq!(e["url"], format!("/v1/events/{}/evidence.jpg", ev["event_id"].as_str().unwrap()));
        let bytes = std::fs::read(dir.join(&sha[..2]).join(format!("{sha}.jpg"))).unwrap();
        let digest: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, sha);
        assert_eq!(bytes.len() as u64, e["bytes"].as_u64().unwrap());
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!((img.width() as u64, img.height() as u64), (ev["frame"]["width"].as_u64().unwrap(), ev["frame"]["height"].as_u64().unwrap()));
        for o in ev["objects"].as_array().unwrap() {
            let b: Vec<i64> = o["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as i64).collect();
            let (x1, y1, x2, y2) = (b[0].max(0), b[1].max(0), b[2].min(img.width() as i64 - 1), b[3].min(img.height() as i64 - 1));
            // The 2-pixel stroke's inner half, on the left, right and bottom edges (the top
            // one carries the label).
            let mut edge: Vec<(i64, i64)> = (y1 + 2..y2 - 2).flat_map(|y| [(x1, y), (x2 - 1, y)]).collect();
            edge.extend((x1 + 2..x2 - 2).map(|x| (x, y2 - 1)));
            let hits = edge.iter().filter(|(x, y)| near(img.get_pixel(*x as u32, *y as u32))).count();
            assert!(hits * 10 >= edge.len() * 6, "event {} object {}: {hits} of {} edge pixels in a box colour", ev["event_id"], o["bbox"], edge.len());
            worst = worst.min(hits as f64 / edge.len().max(1) as f64);
            // Control: the same edges moved 6 px into the box are mostly not box-coloured.
            let inner: Vec<(i64, i64)> = (y1 + 8..y2 - 8).flat_map(|y| [(x1 + 6, y), (x2 - 7, y)]).collect();
            inside += inner.iter().filter(|(x, y)| near(img.get_pixel(*x as u32, *y as u32))).count();
            inside_total += inner.len();
        }
        checked += 1;
    }
    assert!(checked >= 18, "{checked} incident events checked");
    assert!(inside * 4 < inside_total, "{inside} of {inside_total} pixels inside the boxes look like box edges: the check cannot tell");
    eprintln!(
        "evidence boxes: the worst object had {:.0} % of its edge in a box colour, {:.0} % inside the boxes",
        worst * 100.0,
        inside as f64 * 100.0 / inside_total.max(1) as f64
    );
}

#[test]
fn demo_pipeline_produces_events_served_over_http_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), port);
    let stdout_path = dir.path().join("stdout.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--max-frames", "320", "--config"])
        .arg(&cfg)
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");

    // Wait for the pipeline to finish its 320 frames and write every event (the API stays
    // up after that).
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert!(Instant::now() < deadline, "the demo did not finish in time");
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("argus exited early: {status}");
        }
        if let Some((_, ready)) = get(&format!("{base}/readyz"))
            && ready["pipeline"]["state"] == "ended"
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let (code, ready) = get(&format!("{base}/readyz")).unwrap();
    assert_eq!(code, 200, "{ready}");
    let (_, cams) = get(&format!("{base}/v1/cameras")).unwrap();
    assert_eq!(cams["cameras"]["plaza"]["state"], "ended", "{cams}");
    assert_eq!(cams["cameras"]["plaza"]["frames_received"], 320, "{cams}");

    // Events over HTTP.
    let (code, page) = get(&format!("{base}/v1/events?limit=1000")).unwrap();
    assert_eq!(code, 200);
    let events = page["events"].as_array().unwrap().clone();
    // The demo is deterministic on CPU (NanoDet on ONNX Runtime, the file decoded frame by
    // frame, no frame dropped): its first 320 frames give exactly these events, per kind
    // and rule kind. A change here is a change in detection, tracking or the rules: look
    // at the events before pinning new numbers.
    let mut per_kind: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for e in &events {
        let rule = e["risk"]["reasons"][0]["kind"].as_str().unwrap_or("-");
        *per_kind.entry((e["kind"].as_str().unwrap().to_string(), rule.to_string())).or_default() += 1;
    }
    let want: std::collections::BTreeMap<(String, String), usize> = [
        ("frame.analyzed", "-", 7),
        ("incident.opened", "intrusion", 2),
        ("incident.opened", "crowding", 2),
        ("incident.opened", "loitering", 1),
        ("incident.opened", "speed", 1),
        ("incident.updated", "intrusion", 5),
        ("incident.updated", "loitering", 1),
        ("incident.closed", "intrusion", 2),
        ("incident.closed", "crowding", 2),
        ("incident.closed", "loitering", 1),
        ("incident.closed", "speed", 1),
    ]
    .into_iter()
    .map(|(k, r, n)| ((k.to_string(), r.to_string()), n))
    .collect();
    assert_eq!(per_kind, want, "the demo's events per (kind, rule kind)");
    assert_eq!(events.len(), 25);
    let opened: Vec<&Value> = events.iter().filter(|e| e["kind"] == "incident.opened").collect();
    let crossing: Vec<&Value> = opened.iter().copied().filter(|e| e["risk"]["reasons"][0]["rule"] == "no-entry-crossing").collect();
    assert_eq!(crossing.len(), 2, "people walk through the crossing zone: two incidents (frames 11 and 123)");
    for e in &crossing {
        assert_eq!(e["risk"]["reasons"][0]["zone"], "crossing");
        // The people the reason names are people inside the zone in that frame (others
        // may be in it too, not yet for min_dwell_s).
        let in_zone: std::collections::BTreeSet<u64> = e["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["class"] == "person" && o["zones"].as_array().unwrap().iter().any(|z| z == "crossing"))
            .map(|o| o["track_id"].as_u64().unwrap())
            .collect();
        let named: std::collections::BTreeSet<u64> = e["risk"]["reasons"][0]["track_ids"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
        assert_eq!(named.len(), 1, "one person opens each: {e}");
        assert!(named.is_subset(&in_zone), "named {named:?}, in the zone {in_zone:?}: {e}");
        let any = &e["objects"][0];
        assert!(any["world"]["lat"].as_f64().is_some_and(|l| (l - 51.44).abs() < 0.01), "geo-referenced: {any}");
    }
    // Frame 300 of vtest.avi has 7 people (NanoDet, threshold 0.35).
    let f300 = events.iter().find(|e| e["kind"] == "frame.analyzed" && e["frame"]["seq"] == 300).expect("a summary at frame 300 (every 5 s at 10 fps)");
    let people = f300["objects"].as_array().unwrap().iter().filter(|o| o["class"] == "person").count();
    assert_eq!(people, 7, "{}", f300["caption"]);
    // Closed incidents pair with opened ones.
    let closed = events.iter().filter(|e| e["kind"] == "incident.closed").count();
    assert_eq!(closed, opened.len(), "every incident closes (at the latest when the source ends)");
    // Every rule of the demo fires in these 320 frames, and every incident is one whole
    // lifecycle under one id: opened, then updates, then closed, in time order.
    for kind in ["intrusion", "loitering", "crowding", "speed"] {
        assert!(opened.iter().any(|e| e["risk"]["reasons"][0]["kind"] == kind), "no {kind} incident opened");
    }
    for o in &opened {
        let id = o["incident_id"].as_str().unwrap();
        let mut life: Vec<&Value> = events.iter().filter(|e| e["incident_id"] == id).collect();
        life.sort_by_key(|e| (e["captured_at"].as_str().unwrap().to_string(), e["kind"] != "incident.opened", e["kind"] == "incident.closed"));
        let kinds: Vec<&str> = life.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"incident.opened"), "{id}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"incident.closed"), "{id}: {kinds:?}");
        assert!(kinds[1..kinds.len() - 1].iter().all(|k| *k == "incident.updated"), "{id}: {kinds:?}");
        assert!(life.iter().all(|e| e["risk"]["reasons"][0]["rule"] == o["risk"]["reasons"][0]["rule"]), "one rule per incident");
        assert!(life.iter().all(|e| !e["caption"].as_str().unwrap().is_empty()));
    }
    // Loitering reports the dwell in the reason and in words.
    let loiter = opened.iter().find(|e| e["risk"]["reasons"][0]["kind"] == "loitering").unwrap();
    assert!(loiter["risk"]["reasons"][0]["dwell_s"].as_f64().is_some_and(|d| d >= 8.0), "{loiter}");
    assert!(loiter["caption"].as_str().unwrap().contains("loitering in zone bench for"), "{}", loiter["caption"]);
    // Tracks carry world speeds.
    assert!(events.iter().flat_map(|e| e["objects"].as_array().unwrap()).any(|o| o["track_id"].is_u64() && o["speed_mps"].is_f64()));
    // min_level=high: exactly the high and critical events (4 in these frames: intrusion
    // updates at frames 44 and 67, the crowd at 165 and the intrusion update at 181).
    let (_, only_high) = get(&format!("{base}/v1/events?min_level=high&camera=plaza")).unwrap();
    let ids = |evs: Vec<&Value>| evs.into_iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect::<std::collections::BTreeSet<_>>();
    let high = ids(only_high["events"].as_array().unwrap().iter().collect());
    let want_high = ids(events.iter().filter(|e| e["risk"]["level"] == "high" || e["risk"]["level"] == "critical").collect());
    assert_eq!(want_high.len(), 4);
    assert_eq!(high, want_high, "min_level=high returns the high and critical events, all of them");

    // Metrics count what happened.
    let metrics = reqwest::blocking::get(format!("{base}/metrics")).unwrap().text().unwrap();
    assert!(metrics.contains("argus_frames_processed_total{camera=\"plaza\"} 320"), "{metrics}");
    assert!(metrics.contains("argus_events_published_total{sink=\"store\"}"));
    // What evidence costs (printed for the notes): render + encode + fsync per incident event.
    let value = |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0);
    let (written, bytes) = (value("argus_evidence_written_total "), value("argus_evidence_bytes_written_total "));
    let (secs, count) = (value("argus_stage_duration_seconds_sum{stage=\"evidence\"} "), value("argus_stage_duration_seconds_count{stage=\"evidence\"} "));
    assert_eq!(value("argus_evidence_failed_total "), 0.0);
    assert!(written >= 18.0 && count == written, "{written} evidence files, {count} timed");
    eprintln!("evidence: {written} JPEGs, {:.1} ms and {:.0} KiB each", secs / count * 1000.0, bytes / written / 1024.0);
    check_snapshot_and_analysis(&base);
    check_evidence_route(&base, &events);
    check_incidents(&base, &events);

    // Graceful stop.
    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "argus did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");

    // Every sink got every event, and every event matches the schema.
    let schema: Value = serde_json::from_str(include_str!("../schema/argus.event.v1.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let jsonl = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    assert_eq!(jsonl, stdout, "stdout and the JSONL file carry the same events");
    let lines: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), events.len());
    for ev in &lines {
        let errors: Vec<String> = validator.iter_errors(ev).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{ev}");
    }

    check_evidence_files(&dir.path().join("evidence"), &lines);

    // Restart on the same store over the first 60 frames: the recording's frames carry
    // their own times (`start_time = "file"`), so re-processing them yields the same
    // event ids (the store keeps one copy), and the only new events are the closes at
    // this shorter run's end, of the incidents open at frame 59.
    let before: std::collections::BTreeMap<String, &Value> = lines.iter().map(|e| (e["event_id"].as_str().unwrap().to_string(), e)).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_argus")).args(["run", "--exit-when-done", "--max-frames", "60", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let new: Vec<&Value> = again.iter().filter(|e| !before.contains_key(e["event_id"].as_str().unwrap())).collect();
    let open_at_59 = opened
        .iter()
        .filter(|o| o["frame"]["seq"].as_u64().unwrap() <= 59)
        .filter(|o| events.iter().any(|e| e["incident_id"] == o["incident_id"] && e["kind"] == "incident.closed" && e["frame"]["seq"].as_u64().unwrap() > 59))
        .count();
    assert!(open_at_59 > 0, "incidents span frame 59 in the demo");
    assert_eq!(new.len(), open_at_59, "{:?}", new.iter().map(|e| (&e["kind"], &e["caption"])).collect::<Vec<_>>());
    assert!(
        new.iter().all(|e| e["kind"] == "incident.closed" && e["frame"]["seq"] == 59 && e["caption"].as_str().unwrap().ends_with("source ended.")),
        "{new:?}"
    );
    // Every other event of the second run is the first run's, field for field but for
    // when it was processed.
    let strip = |e: &Value| {
        let mut e = e.clone();
        e.as_object_mut().unwrap().retain(|k, _| k != "processed_at" && k != "latency_ms");
        e
    };
    for e in again.iter().filter(|e| before.contains_key(e["event_id"].as_str().unwrap())) {
        assert_eq!(strip(e), strip(before[e["event_id"].as_str().unwrap()]), "the same frame gave another event");
    }
    let store = argus::store::sqlite::SqliteStore::open(&dir.path().join("argus.db")).unwrap();
    assert_eq!(store.count().unwrap(), (lines.len() + new.len()) as u64, "the store survived the restart and kept one copy of each event");
}

/// SIGTERM in the middle of the demo, with a frame summary per frame so that events are
/// in every queue when it comes: Argus drains and exits 0, every event it wrote to the
/// JSONL is whole (strict parse) and in the embedded store, byte for byte, and the store
/// holds nothing else.
#[test]
fn sigterm_with_events_in_flight_loses_and_tears_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml")).unwrap();
    let demo = demo.replace("frame_summary_every_s = 5.0", "frame_summary_every_s = 0.000001");
    assert!(demo.contains("frame_summary_every_s = 0.000001") && demo.contains("realtime = false"), "pipelines/demo.toml changed: update this test");
    let pipeline = dir.path().join("demo.toml");
    std::fs::write(&pipeline, demo).unwrap();
    let cfg = write_config(dir.path(), port);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(&format!("{}/pipelines/demo.toml", env!("CARGO_MANIFEST_DIR")), &pipeline.display().to_string());
    std::fs::write(&cfg, text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("ARGUS_SINKS__STDOUT__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let jsonl = dir.path().join("events.jsonl");
    let base = format!("http://127.0.0.1:{port}");

    // Until 40 frames have their events (the detector is then busy with the next ones).
    let t0 = Instant::now();
    while std::fs::read_to_string(&jsonl).map(|t| t.lines().count()).unwrap_or(0) < 40 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no events from the demo");
        assert!(child.0.try_wait().unwrap().is_none(), "argus exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, cams) = get(&format!("{base}/v1/cameras")).unwrap();
    assert_ne!(cams["cameras"]["plaza"]["state"], "ended", "the SIGTERM must come while frames are processed: {cams}");
    // Frames the source had handed over by now: each must still get its event.
    let received = cams["cameras"]["plaza"]["frames_received"].as_u64().unwrap();
    let written_before = std::fs::read_to_string(&jsonl).unwrap().lines().count();
    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "argus did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");

    // The JSONL, strictly: ends with a newline, every line a whole event, no id twice.
    let text = std::fs::read_to_string(&jsonl).unwrap();
    assert!(text.ends_with('\n'), "a torn last line: {:?}", &text[text.len().saturating_sub(200)..]);
    let mut lines = std::collections::BTreeMap::new();
    for (n, l) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("events.jsonl line {}: {e}: {l}", n + 1));
        let id = v["event_id"].as_str().unwrap().to_string();
        assert!(lines.insert(id.clone(), l.to_string()).is_none(), "{id} written twice");
    }
    let seqs: std::collections::BTreeSet<u64> = lines
        .values()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "frame.analyzed")
        .map(|e| e["frame"]["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.len() < 795, "stopped before the end of the video ({} frames)", seqs.len());
    // A frame summary per processed frame, none skipped: frames 0..n, each once.
    assert_eq!(seqs.iter().copied().collect::<Vec<_>>(), (0..seqs.len() as u64).collect::<Vec<_>>(), "every frame up to the stop has its event");
    // Draining: every frame received before the SIGTERM was analysed and written, and
    // events were in flight then (written after it).
    assert!(seqs.len() as u64 >= received, "{received} frames received before the SIGTERM, {} with events after it", seqs.len());
    assert!(lines.len() > written_before, "no event was in flight at the SIGTERM ({written_before} written before, {} in all)", lines.len());

    // The store: exactly the JSONL's events, the same bytes.
    let db = rusqlite::Connection::open(dir.path().join("argus.db")).unwrap();
    let mut stmt = db.prepare("SELECT event_id, payload FROM events").unwrap();
    let stored: std::collections::BTreeMap<String, String> =
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap().map(|r| r.unwrap()).collect();
    let missing: Vec<&String> = lines.keys().filter(|id| !stored.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} of {} JSONL events not in the store, e.g. {:?}", missing.len(), lines.len(), missing.first());
    let extra: Vec<&String> = stored.keys().filter(|id| !lines.contains_key(*id)).collect();
    assert!(extra.is_empty(), "{} stored events not in the JSONL", extra.len());
    for (id, l) in &lines {
        assert_eq!(&stored[id], l, "{id}: the stored payload differs from the JSONL line");
    }
    eprintln!(
        "SIGTERM at {received} frames received, {written_before} events written; {} frames, {} events in both sinks after {:?}",
        seqs.len(),
        lines.len(),
        t0.elapsed()
    );
}

/// A camera whose frames are larger than `limits.max_frame_pixels` (the demo's 768x576
/// against a 100 000-pixel limit) fails with a reason that names the size, the limit
/// and the fix; no frame reaches the detector and Argus itself keeps going to its end.
#[test]
fn a_camera_over_the_pixel_limit_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--exit-when-done", "--max-frames", "20", "--config"])
        .arg(&cfg)
        .env("ARGUS_LIMITS__MAX_FRAME_PIXELS", "100000")
        .env("ARGUS_SERVER__ENABLED", "false")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("the camera sends frames too large to analyse: image is 768x576 = 442368 pixels; the limit is 100000 (limits.max_frame_pixels)"),
        "{log}"
    );
    assert!(log.contains("lower its resolution or raise limits.max_frame_pixels"), "{log}");
    let events: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.iter().all(|e| e["kind"] != "frame.analyzed"), "no frame was analysed: {events:?}");
}

/// `evidence.max_mb = 1` on the demo (18 incident events of ~125 KiB): the directory ends
/// at or under 1 MiB, the oldest evidence went first, the newest is kept, and what was
/// deleted is the evidence of incidents that had closed by then.
#[test]
fn evidence_past_its_size_cap_goes_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--exit-when-done", "--max-frames", "320", "--config"])
        .arg(&cfg)
        .env("ARGUS_EVIDENCE__MAX_MB", "1")
        .env("ARGUS_SERVER__ENABLED", "false")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let evidence_dir = dir.path().join("evidence");
    let file = |e: &Value| {
        let sha = e["evidence"]["sha256"].as_str().unwrap().to_string();
        evidence_dir.join(&sha[..2]).join(format!("{sha}.jpg"))
    };
    let with: Vec<&Value> = events.iter().filter(|e| e.get("evidence").is_some()).collect();
    assert_eq!(with.len(), 18, "every incident event still gets its evidence");
    let kept: Vec<bool> = with.iter().map(|e| file(e).exists()).collect();
    let kept_files: std::collections::BTreeMap<String, u64> = with
        .iter()
        .filter(|e| file(e).exists())
        .map(|e| (e["evidence"]["sha256"].as_str().unwrap().to_string(), e["evidence"]["bytes"].as_u64().unwrap()))
        .collect();
    let bytes: u64 = kept_files.values().sum();
    assert!(bytes <= 1 << 20, "{bytes} bytes kept");
    let deleted = kept.iter().filter(|k| !**k).count();
    assert!(deleted >= 8, "{deleted} of 18 deleted");
    assert!(kept.last() == Some(&true), "the newest evidence is kept");
    // Oldest first: the events are in the order their evidence was written, so what is
    // kept is (mostly) the later part. Open incidents' files may be kept out of order, so
    // check that every deleted file belongs to an incident that closed before the last
    // event whose evidence was kept.
    let closed_at = |incident: &Value| events.iter().position(|e| e["incident_id"] == *incident && e["kind"] == "incident.closed").unwrap();
    let last_kept = events.iter().rposition(|e| e.get("evidence").is_some() && file(e).exists()).unwrap();
    for e in with.iter().filter(|e| !file(e).exists()) {
        assert!(closed_at(&e["incident_id"]) <= last_kept, "evidence of an incident still open was deleted: {e}");
    }
    eprintln!("evidence capped at 1 MiB: {deleted} of 18 deleted, {bytes} bytes kept");
}
