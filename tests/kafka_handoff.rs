//! Kafka cameras' scene states move with their partitions through the state topic: four
//! cameras on four partitions, two members of one consumer group, one SIGKILLed while an
//! incident is open and restarted. Every event of the union of their outputs is an event
//! of one uninterrupted member over the same frames (same id, same content) and the other
//! way round; every incident is opened and closed exactly once (the frames end with an
//! empty scene), and no two incidents of one camera and rule are open at once.
#![cfg(feature = "kafka")]

#[path = "common/broker.rs"]
mod broker;
#[path = "common/events.rs"]
mod events;
#[path = "common/logs.rs"]
mod logs;
#[path = "common/member.rs"]
mod member;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use broker::Broker;
use events::{by_id, open_incidents};
use logs::plain_log;
use member::argus_on_with;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;

const CAMERAS: [&str; 4] = ["cam-1", "cam-2", "cam-3", "cam-4"];
/// Video frames per camera: the demo video's first 30 s (two crossing incidents)…
const VIDEO_FRAMES: usize = 300;
/// …then an empty scene for 5 s, longer than every rule's `clear_after_s`: every
/// incident closes by hysteresis before the frames end.
const EMPTY_FRAMES: usize = 50;
const FRAMES: usize = VIDEO_FRAMES + EMPTY_FRAMES;
const T0_MS: i64 = 1_763_884_800_000;
const VIDEO: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

/// The demo video's first frames as JPEG files (GStreamer's own tools), then black ones.
fn video_frames(dir: &Path) -> Vec<Vec<u8>> {
    let out = dir.join("frames");
    std::fs::create_dir_all(&out).unwrap();
    let ok = Command::new("gst-launch-1.0")
        .args(["-q", "filesrc", &format!("location={VIDEO}"), "!", "decodebin", "!", "videoconvert", "!"])
        .args(["identity", &format!("eos-after={VIDEO_FRAMES}"), "!", "jpegenc", "quality=85", "!", "multifilesink"])
        .arg(format!("location={}/f%05d.jpg", out.display()))
        .status()
        .expect("gst-launch-1.0 (scripts/setup installs gstreamer1.0-tools)");
    assert!(ok.success());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), VIDEO_FRAMES);
    let mut frames: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut black = Vec::new();
    image::RgbImage::new(768, 576).write_to(&mut std::io::Cursor::new(&mut black), image::ImageFormat::Jpeg).unwrap();
    frames.extend(std::iter::repeat_n(black, EMPTY_FRAMES));
    frames
}

/// Frame i of every camera, in turn: camera k on partition k, keyed by its id.
fn produce(brokers: &str, frames: &[Vec<u8>]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).set("message.max.bytes", "5000000").create().unwrap();
    for (i, jpg) in frames.iter().enumerate() {
        let at = (T0_MS + i as i64 * 100).to_string();
        for (k, cam) in CAMERAS.iter().enumerate() {
            let h = OwnedHeaders::new().insert(Header { key: "camera_id", value: Some(*cam) }).insert(Header { key: "captured_at", value: Some(at.as_str()) });
            loop {
                match p.send(BaseRecord::to("frames").partition(k as i32).key(*cam).payload(jpg).headers(h.clone())) {
                    Ok(()) => break,
                    Err((e, _)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                        p.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => panic!("produce: {e}"),
                }
            }
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// The demo pipeline (calibration, zones, rules) with four Kafka cameras instead of the
/// file camera.
fn pipeline(dir: &Path, brokers: &str, group: &str) -> PathBuf {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml")).unwrap();
    let (head, rest) = demo.split_at(demo.find("[[cameras]]").expect("demo has a camera"));
    let (camera, zones_and_rules) = rest.split_at(rest.find("[[zones]]").expect("demo has zones"));
    assert!(camera.contains("source = \"file://"), "pipelines/demo.toml changed: update this test");
    let camera: String = camera.lines().filter(|l| !l.starts_with("realtime")).map(|l| format!("{l}\n")).collect();
    let camera = camera.replace("file:///usr/share/doc/opencv-doc/examples/data/vtest.avi", "kafka");
    let cameras: String = CAMERAS.iter().map(|c| camera.replace("id = \"plaza\"", &format!("id = \"{c}\""))).collect();
    assert_eq!(cameras.matches("source = \"kafka\"").count(), 4);
    let text = format!(
        "{head}{cameras}{zones_and_rules}\n[kafka]\nbrokers = \"{brokers}\"\ntopic = \"frames\"\ngroup_id = \"{group}\"\n",
        head = head.replace("name = \"demo\"", "name = \"plazas\"")
    );
    let p = dir.join("plazas.toml");
    std::fs::write(&p, text).unwrap();
    p
}

struct Member {
    child: Child,
    base: String,
}

fn member(dir: &Path, pipeline: &Path) -> Member {
    let (child, base) = argus_on_with(dir, pipeline, &[]);
    Member { child, base }
}

impl Member {
    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(self.child.wait().unwrap().success(), "a member exits cleanly on SIGTERM");
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn cameras(&self) -> Value {
        reqwest::blocking::get(format!("{}/v1/cameras", self.base)).and_then(|r| r.json()).unwrap_or(Value::Null)
    }
}

/// The complete lines of a member's JSONL (a line being written is left for later).
fn lines(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("e.jsonl")).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", dir.display()))).collect()
}

/// The offsets `group` committed on the frames topic, all partitions together.
fn committed(brokers: &str, group: &str) -> i64 {
    use rdkafka::{Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).set("enable.auto.commit", "false").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..CAMERAS.len() as i32 {
        tpl.add_partition("frames", p);
    }
    let got = match c.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(g) => g,
        Err(_) => return 0,
    };
    let total = (0..CAMERAS.len() as i32)
        .map(|p| match got.find_partition("frames", p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        })
        .sum();
    drop(got);
    total
}

/// Waits until `group` committed every frame (each frame analysed, its events durable
/// and its camera's checkpoint confirmed).
fn wait_committed(brokers: &str, group: &str, dirs: &[&Path], limit: Duration) {
    let want = (FRAMES * CAMERAS.len()) as i64;
    let t0 = Instant::now();
    loop {
        let got = committed(brokers, group);
        if got == want {
            return;
        }
        if t0.elapsed() > limit {
            let logs: Vec<String> = dirs.iter().map(|d| tail(d)).collect();
            panic!("{got} of {want} frames committed; logs:\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The last lines of a member's log, without colours.
fn tail(dir: &Path) -> String {
    let log = plain_log(&dir.join("stderr"));
    let all: Vec<&str> = log.lines().collect();
    format!("== {} ==\n{}", dir.display(), all[all.len().saturating_sub(40)..].join("\n"))
}

#[test]
fn a_member_killed_mid_incident_hands_its_cameras_over_without_reopening_anything() {
    let broker = Broker::start(&[("frames", CAMERAS.len() as u32)]);
    let brokers = broker.brokers();
    let work = tempfile::tempdir().unwrap();
    produce(&brokers, &video_frames(work.path()));

    // One member, never interrupted: the reference.
    let solo = tempfile::tempdir().unwrap();
    let group = format!("solo-{}", uuid::Uuid::new_v4());
    let m = member(solo.path(), &pipeline(solo.path(), &brokers, &group));
    let t_solo = Instant::now();
    wait_committed(&brokers, &group, &[solo.path()], Duration::from_secs(240));
    eprintln!("single member: {:.1} s for {} frames", t_solo.elapsed().as_secs_f64(), FRAMES * CAMERAS.len());
    m.stop();
    let reference = by_id(&lines(solo.path()));
    let incidents: BTreeSet<&str> = reference.values().filter_map(|e| e["incident_id"].as_str()).collect();
    assert!(incidents.len() >= 4, "the frames have incidents: {incidents:?}");

    // Two members of another group: the second joins while the first analyses (a
    // cooperative rebalance hands two cameras over), then the one with an open incident
    // is killed and restarted (its cameras go to the other member and come back).
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let group = format!("pair-{}", uuid::Uuid::new_v4());
    let (pa, pb) = (pipeline(a.path(), &brokers, &group), pipeline(b.path(), &brokers, &group));
    let mut ma = Some(member(a.path(), &pa));
    let t0 = Instant::now();
    while lines(a.path()).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(120), "the first member analyses nothing; log:\n{}", tail(a.path()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut mb = Some(member(b.path(), &pb));
    let t0 = Instant::now();
    let (victim_dir, victim_pipeline, open) = loop {
        let (ea, eb) = (lines(a.path()), lines(b.path()));
        // Past the rebalance (both analyse) and in the middle of an incident.
        if !eb.is_empty() {
            let (oa, ob) = (open_incidents(&ea), open_incidents(&eb));
            if !oa.is_empty() {
                break (a.path(), &pa, oa);
            }
            if !ob.is_empty() {
                break (b.path(), &pb, ob);
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(180), "no member had an incident open after the rebalance; logs:\n{}\n{}", tail(a.path()), tail(b.path()));
        std::thread::sleep(Duration::from_millis(50));
    };
    let victim = if victim_dir == a.path() { &mut ma } else { &mut mb };
    victim.take().unwrap().kill();
    eprintln!("killed the member in {} with incidents open: {open:?}", victim_dir.display());
    std::thread::sleep(Duration::from_secs(2));
    *victim = Some(member(victim_dir, victim_pipeline));
    wait_committed(&brokers, &group, &[a.path(), b.path()], Duration::from_secs(300));
    let restored: usize = [&ma, &mb]
        .iter()
        .map(|m| {
            let cams = m.as_ref().unwrap().cameras();
            cams["cameras"].as_object().map_or(0, |c| c.values().filter(|c| c["scene_state"].as_str().is_some_and(|s| s.starts_with("restored"))).count())
        })
        .sum();
    ma.take().unwrap().stop();
    mb.take().unwrap().stop();

    let mut all = lines(a.path());
    all.extend(lines(b.path()));
    let union = by_id(&all);
    let only_pair: Vec<&Value> = union.iter().filter(|(id, _)| !reference.contains_key(*id)).map(|(_, e)| e).collect();
    let only_solo: Vec<&Value> = reference.iter().filter(|(id, _)| !union.contains_key(*id)).map(|(_, e)| e).collect();
    assert!(only_pair.is_empty() && only_solo.is_empty(), "events only the pair wrote: {only_pair:#?}\nevents only the single member wrote: {only_solo:#?}");
    for (id, e) in &reference {
        assert_eq!(&union[id], e, "event {id}: the pair's content differs from the single member's");
    }
    // Every incident opened once; closed at most once; those the killed member had open
    // were closed by whoever continued them, as the single member closes them.
    let mut opened: BTreeMap<&str, usize> = BTreeMap::new();
    let mut closed: BTreeMap<&str, usize> = BTreeMap::new();
    for e in union.values() {
        let Some(inc) = e["incident_id"].as_str() else { continue };
        match e["kind"].as_str().unwrap() {
            "incident.opened" => *opened.entry(inc).or_default() += 1,
            "incident.closed" => *closed.entry(inc).or_default() += 1,
            _ => {}
        }
    }
    assert!(opened.values().all(|&n| n == 1), "opened {opened:?}");
    assert_eq!(opened.keys().collect::<Vec<_>>(), closed.keys().collect::<Vec<_>>(), "every incident closed");
    assert!(closed.values().all(|&n| n == 1), "closed {closed:?}");
    for (_, inc) in &open {
        assert_eq!(closed.get(inc.as_str()), Some(&1), "incident {inc}, open at the kill, closed once");
    }
    // No two incidents of one camera and rule open at the same time.
    let mut spans: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for e in union.values().filter(|e| e["kind"] == "incident.opened") {
        let inc = e["incident_id"].as_str().unwrap();
        let end = union
            .values()
            .find(|c| c["kind"] == "incident.closed" && c["incident_id"] == inc)
            .map_or("~".into(), |c| c["captured_at"].as_str().unwrap().to_string());
        let rule = e["risk"]["reasons"][0]["rule"].as_str().unwrap_or_default().to_string();
        spans.entry((e["camera_id"].as_str().unwrap().into(), rule)).or_default().push((e["captured_at"].as_str().unwrap().to_string(), end));
    }
    for (key, mut s) in spans {
        s.sort();
        for w in s.windows(2) {
            assert!(w[0].1 < w[1].0, "{key:?}: incidents {w:?} overlap");
        }
    }
    assert!(restored > 0, "some camera continued from a checkpoint of the state topic");
    eprintln!("{} events ({} incidents) as the single member; {} lines written by the pair", reference.len(), incidents.len(), all.len());
}
