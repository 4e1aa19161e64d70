//! `argus ingest` through the binary against a real broker (tansu): shards split the
//! cameras exactly, every sampled frame reaches the topic as a JPEG with the headers the
//! Kafka source reads, and an `argus run` worker over the topic analyses every one.
#![cfg(all(feature = "gstreamer", feature = "kafka", feature = "onnx"))]

#[path = "common/broker.rs"]
mod broker;
#[path = "common/logs.rs"]
mod logs;
#[path = "common/member.rs"]
mod member;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use argus::sources::shard::shard_of;
use broker::{Broker, free_port};
use logs::plain_log;
use member::argus_on_with;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use serde_json::Value;

const VIDEO: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
const CAMERAS: [&str; 4] = ["gate", "lobby", "dock", "yard"];
/// Frames each camera publishes (after `fps_cap = 5` of vtest.avi's 10 fps).
const FRAMES: u64 = 12;

/// The ingest side: the cameras read the video file; `[kafka]` names the frames topic.
fn ingest_pipeline(dir: &Path, brokers: &str, realtime: bool) -> PathBuf {
    let cams: String = CAMERAS.iter().map(|c| format!("[[cameras]]\nid = \"{c}\"\nsource = \"{VIDEO}\"\nfps_cap = 5.0\nrealtime = {realtime}\n")).collect();
    let p = dir.join("site.toml");
    std::fs::write(&p, format!("name = \"site\"\n{cams}[kafka]\nbrokers = \"{brokers}\"\ntopic = \"frames\"\ngroup_id = \"workers\"\n")).unwrap();
    p
}

/// The worker side: the same cameras, read from the topic.
fn worker_pipeline(dir: &Path, brokers: &str) -> PathBuf {
    let cams: String = CAMERAS.iter().map(|c| format!("[[cameras]]\nid = \"{c}\"\nsource = \"kafka\"\n")).collect();
    let p = dir.join("workers.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"site\"\n{cams}[events]\nframe_summary_every_s = 0.000001\n[kafka]\nbrokers = \"{brokers}\"\ntopic = \"frames\"\ngroup_id = \"workers\"\n\
             [kafka.options]\n\"session.timeout.ms\" = \"6000\"\n"
        ),
    )
    .unwrap();
    p
}

fn ingest(dir: &Path, pipeline: &Path, shard: &str, extra: &[&str]) -> (Child, String) {
    ingest_with(dir, pipeline, shard, extra, &[])
}

fn ingest_with(dir: &Path, pipeline: &Path, shard: &str, extra: &[&str], env: &[(&str, String)]) -> (Child, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["ingest", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/argus.toml"), "--shard", shard])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("ARGUS_PIPELINES", format!("[{:?}]", pipeline.display().to_string()))
        .env("ARGUS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("ingest-{}.stderr", shard.replace('/', "of")))).unwrap())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

fn wait_exit(child: &mut Child, within: Duration, what: &str, log: &Path) {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "{what}: {s}; log:\n{}", plain_log(log));
            return;
        }
        if t0.elapsed() > within {
            let _ = child.kill();
            panic!("{what}: still running after {within:?}; log:\n{}", plain_log(log));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get(url: &str) -> Value {
    let t0 = Instant::now();
    loop {
        match reqwest::blocking::get(url).and_then(|r| r.json()) {
            Ok(v) => return v,
            Err(e) if t0.elapsed() > Duration::from_secs(30) => panic!("{url}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One message of the frames topic.
struct Published {
    camera: String,
    key: String,
    partition: i32,
    captured_at: String,
    width: u32,
}

/// Everything on the topic (memory storage: read until `want` or quiet for a while).
fn read_topic(brokers: &str, want: usize) -> Vec<Published> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", free_port()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    c.subscribe(&["frames"]).unwrap();
    let mut out = Vec::new();
    let mut quiet_since = Instant::now();
    while out.len() < want && quiet_since.elapsed() < Duration::from_secs(20) {
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.unwrap();
        quiet_since = Instant::now();
        let header = |k: &str| {
            m.headers().and_then(|h| h.iter().find(|x| x.key == k).and_then(|x| x.value)).map(|v| String::from_utf8(v.to_vec()).unwrap()).unwrap_or_default()
        };
        let img = image::load_from_memory_with_format(m.payload().unwrap(), image::ImageFormat::Jpeg).expect("a JPEG");
        out.push(Published {
            camera: header("camera_id"),
            key: String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
            partition: m.partition(),
            captured_at: header("captured_at"),
            width: img.width(),
        });
    }
    out
}

#[test]
fn two_shards_publish_every_camera_exactly_once_and_a_worker_analyses_every_frame() {
    let broker = Broker::start(&[("frames", 4)]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let site = ingest_pipeline(d, &broker.brokers(), false);

    // Shard 1 of 2 runs to the end by itself; shard 0 keeps serving its API afterwards.
    let (mut one, _) = ingest(d, &site, "1/2", &["--exit-when-done", "--max-frames", &FRAMES.to_string()]);
    let (mut zero, base) = ingest(d, &site, "0/2", &["--max-frames", &FRAMES.to_string()]);
    let info = get(&format!("{base}/v1/info"));
    assert_eq!(info["role"], "ingest");
    assert_eq!((info["shard"]["index"].as_u64(), info["shard"]["count"].as_u64()), (Some(0), Some(2)), "{info}");
    let mine: BTreeSet<&str> = CAMERAS.iter().copied().filter(|c| shard_of(c, 2) == 0).collect();
    let theirs: BTreeSet<&str> = CAMERAS.iter().copied().filter(|c| shard_of(c, 2) == 1).collect();
    assert!(!mine.is_empty() && !theirs.is_empty(), "the cameras' ids split over both shards: {mine:?} {theirs:?}");
    wait_exit(&mut one, Duration::from_secs(120), "ingest shard 1/2", &d.join("ingest-1of2.stderr"));
    // Shard 0's cameras end (files); it keeps answering until stopped.
    let t0 = Instant::now();
    let cameras = loop {
        let cams = get(&format!("{base}/v1/cameras"))["cameras"].clone();
        let listed: BTreeSet<String> = cams.as_object().unwrap().keys().cloned().collect();
        assert_eq!(listed, mine.iter().map(|c| c.to_string()).collect(), "/v1/cameras lists this shard's cameras only: {cams}");
        if cams.as_object().unwrap().values().all(|c| c["frames_published"].as_u64() == Some(FRAMES)) {
            break cams;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "shard 0 did not publish everything: {cams}");
        std::thread::sleep(Duration::from_millis(300));
    };
    // Sampled by fps_cap, nothing else dropped (a recording waits for the broker).
    for c in cameras.as_object().unwrap().values() {
        let drops = c["drops"].as_object().unwrap();
        assert!(drops.iter().all(|(why, n)| why == "fps_cap" || n == 0), "{cameras}");
        assert_eq!(c["frames_dropped"], drops["fps_cap"], "{cameras}");
    }
    let metrics = reqwest::blocking::get(format!("{base}/metrics")).unwrap().text().unwrap();
    for c in &mine {
        assert!(metrics.contains(&format!("argus_frames_published_total{{camera=\"{c}\"}} {FRAMES}")), "{metrics}");
    }
    Command::new("kill").args(["-TERM", &zero.id().to_string()]).status().unwrap();
    wait_exit(&mut zero, Duration::from_secs(30), "ingest shard 0/2 after SIGTERM", &d.join("ingest-0of2.stderr"));

    // On the topic: every camera's frames exactly once, keyed by camera, one partition
    // per camera, in capture order, decodable JPEGs of the video's size.
    let total = CAMERAS.len() * FRAMES as usize;
    let got = read_topic(&broker.brokers(), total);
    assert_eq!(got.len(), total, "frames on the topic");
    let mut per: BTreeMap<&str, Vec<&Published>> = BTreeMap::new();
    for p in &got {
        assert_eq!(p.key, p.camera);
        assert_eq!(p.width, 768);
        per.entry(p.camera.as_str()).or_default().push(p);
    }
    for c in CAMERAS {
        let frames = &per[c];
        assert_eq!(frames.len() as u64, FRAMES, "{c}");
        assert_eq!(frames.iter().map(|p| p.partition).collect::<BTreeSet<_>>().len(), 1, "{c}: one partition");
        let times: Vec<&str> = frames.iter().map(|p| p.captured_at.as_str()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{c}: in capture order, no repeats: {times:?}");
    }

    // A worker over the topic analyses every one of those frames.
    let wdir = d.join("worker");
    std::fs::create_dir(&wdir).unwrap();
    let (mut worker, _) = argus_on_with(&wdir, &worker_pipeline(d, &broker.brokers()), &[]);
    let t0 = Instant::now();
    let analysed = loop {
        let text = std::fs::read_to_string(wdir.join("e.jsonl")).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let seen: BTreeSet<(String, String)> = complete
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["kind"] == "frame.analyzed")
            .map(|e| (e["camera_id"].as_str().unwrap().to_string(), e["captured_at"].as_str().unwrap().to_string()))
            .collect();
        if seen.len() >= total || t0.elapsed() > Duration::from_secs(180) {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = worker.kill();
    let _ = worker.wait();
    let published: BTreeSet<(String, String)> = got.iter().map(|p| (p.camera.clone(), p.captured_at[..23].to_string() + "Z")).collect();
    assert_eq!(analysed.len(), total, "frames analysed by the worker; log:\n{}", plain_log(&wdir.join("stderr")));
    assert_eq!(analysed, published, "the worker analysed exactly the published frames (events carry milliseconds)");
}

#[test]
fn a_pipeline_without_a_kafka_table_and_a_bad_shard_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = d.join("plain.toml");
    std::fs::write(&p, format!("name = \"plain\"\n[[cameras]]\nid = \"cam\"\nsource = \"{VIDEO}\"\n")).unwrap();
    let (mut child, _) = ingest(d, &p, "0/1", &[]);
    let status = child.wait().unwrap();
    let log = plain_log(&d.join("ingest-0of1.stderr"));
    assert!(!status.success());
    assert!(log.contains("camera `cam`") && log.contains("fix: add [kafka]"), "{log}");

    let out = Command::new(env!("CARGO_BIN_EXE_argus")).args(["ingest", "--shard", "2/2"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--shard: shard 2 of 2 does not exist") && err.contains("fix:"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_argus")).args(["ingest"]).env("ARGUS_SHARD_COUNT", "3").env("POD_NAME", "argus-ingest").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("POD_NAME") && err.contains("-ORDINAL"), "{err}");
}

/// The camera's status in `/v1/cameras`.
fn camera(base: &str, id: &str) -> Value {
    get(&format!("{base}/v1/cameras"))["cameras"][id].clone()
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> Option<Value>) -> Value {
    wait_showing(what, within, || f().ok_or(Value::Null))
}

/// Like `wait_for`; the failure shows the last value seen.
fn wait_showing(what: &str, within: Duration, mut f: impl FnMut() -> Result<Value, Value>) -> Value {
    let t0 = Instant::now();
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(t0.elapsed() < within, "{what} within {within:?}; last seen: {last}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_frozen_broker_drops_a_live_cameras_frames_by_reason_and_publishing_resumes_after_it() {
    let broker = Broker::start(&[("frames", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = d.join("live.toml");
    // A recording played like a live camera: its lane keeps the newest frames.
    std::fs::write(
        &p,
        format!(
            "name = \"live\"\n[[cameras]]\nid = \"cam\"\nsource = \"{VIDEO}\"\nlive = true\nrealtime = true\n\
             [kafka]\nbrokers = \"{}\"\ntopic = \"frames\"\ngroup_id = \"workers\"\n",
            broker.brokers()
        ),
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = d.join("ingest.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["ingest", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/argus.toml")])
        .env("ARGUS_PIPELINES", format!("[{:?}]", p.display().to_string()))
        .env("ARGUS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ARGUS_INGEST__MESSAGE_TIMEOUT_MS", "1000")
        .env("ARGUS_INGEST__MAX_IN_FLIGHT", "4")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let published = |c: &Value| c["frames_published"].as_u64().unwrap_or(0);
    let drops = |c: &Value, why: &str| c["drops"][why].as_u64().unwrap_or(0);
    wait_for("frames published", Duration::from_secs(60), || Some(camera(&base, "cam")).filter(|c| published(c) >= 10));
    assert_eq!(get(&format!("{base}/readyz"))["ready"], true);

    broker.signal("-STOP");
    let frozen = camera(&base, "cam");
    let during = wait_for("frames expire and the live lane drops its oldest", Duration::from_secs(30), || {
        Some(camera(&base, "cam")).filter(|c| drops(c, "expired") >= 1 && drops(c, "queue_full") >= 5)
    });
    assert!(published(&during) <= published(&frozen) + 4, "nothing confirmed by a frozen broker: {during}");
    let ready: Value = reqwest::blocking::get(format!("{base}/readyz")).unwrap().json().unwrap();
    assert_eq!(ready["ready"], false, "{ready}");
    let metrics = reqwest::blocking::get(format!("{base}/metrics")).unwrap().text().unwrap();
    assert!(metrics.contains("argus_frames_dropped_total{camera=\"cam\",reason=\"expired\"}"), "{metrics}");
    // Decoding never waited: frames kept arriving at the camera's pace.
    let received = |c: &Value| c["frames_received"].as_u64().unwrap();
    let before = camera(&base, "cam");
    std::thread::sleep(Duration::from_secs(2));
    assert!(received(&camera(&base, "cam")) >= received(&before) + 10, "the source kept decoding while the broker was frozen");

    broker.signal("-CONT");
    let back = published(&camera(&base, "cam"));
    wait_for("publishing resumes", Duration::from_secs(60), || Some(camera(&base, "cam")).filter(|c| published(c) >= back + 20));
    wait_for("ready again", Duration::from_secs(30), || Some(get(&format!("{base}/readyz"))).filter(|r| r["ready"] == true));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    wait_exit(&mut child, Duration::from_secs(30), "ingest after SIGTERM", &log);
}

/// `[fleet]` for one member, publishing twice a second.
fn fleet_env(brokers: &str, member: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ARGUS_FLEET__ENABLED", "true".into()),
        ("ARGUS_FLEET__BROKERS", brokers.into()),
        ("ARGUS_FLEET__MEMBER_ID", member.into()),
        ("ARGUS_FLEET__PUBLISH_EVERY_S", "0.5".into()),
        ("ARGUS_FLEET__STALE_AFTER_S", "3".into()),
    ]
}

fn member<'a>(fleet: &'a Value, id: &str) -> Option<&'a Value> {
    fleet["members"].as_array().unwrap().iter().find(|m| m["member"] == id)
}

#[test]
fn every_member_shows_the_whole_fleet_a_killed_one_goes_stale_and_a_stopped_one_leaves() {
    let broker = Broker::start(&[("frames", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = broker.brokers();
    let site = ingest_pipeline(d, &b, true);
    let (mut zero, zero_api) = ingest_with(d, &site, "0/2", &[], &fleet_env(&b, "ingest-0"));
    let (mut one, _) = ingest_with(d, &site, "1/2", &[], &fleet_env(&b, "ingest-1"));
    let wdir = d.join("worker");
    std::fs::create_dir(&wdir).unwrap();
    let (mut worker, worker_api) = argus_on_with(&wdir, &worker_pipeline(d, &b), &fleet_env(&b, "worker-1"));

    let shard_cams = |i: u32| -> BTreeSet<String> { CAMERAS.iter().filter(|c| shard_of(c, 2) == i).map(|c| c.to_string()).collect() };
    let whole = wait_for("the worker's view shows all three members, the worker with both partitions", Duration::from_secs(90), || {
        let f = get(&format!("{worker_api}/v1/fleet"));
        let ok = ["ingest-0", "ingest-1", "worker-1"].iter().all(|m| member(&f, m).is_some_and(|m| m["stale"] == false))
            && member(&f, "worker-1").is_some_and(|w| w["partitions"].as_array().is_some_and(|p| p.len() == 2));
        ok.then_some(f)
    });
    for (i, id) in [(0, "ingest-0"), (1, "ingest-1")] {
        let m = member(&whole, id).unwrap();
        assert_eq!((m["role"].as_str(), m["shard"].as_str()), (Some("ingest"), Some(if i == 0 { "0/2" } else { "1/2" })), "{m}");
        let cams: BTreeSet<String> = m["cameras"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(cams, shard_cams(i), "{id} runs its shard's cameras");
    }
    let w = member(&whole, "worker-1").unwrap();
    assert_eq!(w["role"], "run");
    for c in CAMERAS {
        let runners: Vec<&str> = whole["cameras"][c].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).filter(|m| m.starts_with("ingest-")).collect();
        assert_eq!(runners.len(), 1, "{c} is ingested by exactly one shard: {}", whole["cameras"]);
    }
    // Any member answers with the same fleet.
    wait_showing("the ingest shard's view", Duration::from_secs(30), || {
        let f = get(&format!("{zero_api}/v1/fleet"));
        if member(&f, "worker-1").is_some() && member(&f, "ingest-1").is_some() && f["complete"] == true { Ok(f) } else { Err(f) }
    });

    one.kill().unwrap();
    one.wait().unwrap();
    wait_for("the killed shard goes stale", Duration::from_secs(30), || {
        let f = get(&format!("{worker_api}/v1/fleet"));
        (member(&f, "ingest-1").is_some_and(|m| m["stale"] == true) && member(&f, "ingest-0").is_some_and(|m| m["stale"] == false)).then_some(f)
    });
    Command::new("kill").args(["-TERM", &zero.id().to_string()]).status().unwrap();
    wait_exit(&mut zero, Duration::from_secs(30), "ingest 0/2 after SIGTERM", &d.join("ingest-0of2.stderr"));
    wait_for("the stopped shard leaves the view", Duration::from_secs(30), || {
        let f = get(&format!("{worker_api}/v1/fleet"));
        member(&f, "ingest-0").is_none().then_some(f)
    });
    let _ = worker.kill();
    let _ = worker.wait();
}
