//! The Kafka event sink against a real Kafka-protocol broker (tansu, installed into
//! .deps/tansu by scripts/setup, started per test on a free loopback port): content,
//! keys, headers and schema of what control rooms consume, and a broker that stops
//! answering for 30 s in the middle of a run.
#![cfg(feature = "kafka")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use serde_json::Value;

#[path = "common/broker.rs"]
mod broker;
#[path = "common/logs.rs"]
mod logs;
#[path = "common/member.rs"]
mod member;
use broker::{Broker, free_port};
use member::argus_on_with;

/// One consumed event: key, headers, the payload as sent and parsed.
#[derive(Debug, Clone)]
struct Consumed {
    key: String,
    partition: i32,
    offset: i64,
    headers: BTreeMap<String, String>,
    raw: Vec<u8>,
    value: Value,
}

/// Reads `topic` from the beginning on a thread until stopped (a fresh group id, so
/// nothing depends on earlier runs).
struct Reader {
    got: Arc<Mutex<Vec<Consumed>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(brokers: &str, topic: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                    let headers = m
                        .headers()
                        .map(|h| h.iter().map(|x| (x.key.to_string(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned())).collect())
                        .unwrap_or_default();
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    let raw = m.payload().unwrap_or_default().to_vec();
                    let value = serde_json::from_slice(&raw).unwrap_or(Value::Null); // dead letters are images
                    g.lock().push(Consumed { key, partition: m.partition(), offset: m.offset(), headers, raw, value });
                }
            }
            consumer.unsubscribe();
        });
        Self { got, stop, thread: Some(thread) }
    }

    fn ids(&self) -> Vec<String> {
        self.got.lock().iter().map(|c| c.value["event_id"].as_str().unwrap().to_string()).collect()
    }

    fn wait_for(&self, ids: &BTreeSet<String>, limit: Duration) {
        let t0 = Instant::now();
        loop {
            let seen: BTreeSet<String> = self.ids().into_iter().collect();
            if ids.is_subset(&seen) {
                return;
            }
            assert!(t0.elapsed() < limit, "{} of {} events consumed", ids.intersection(&seen).count(), ids.len());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn argus(dir: &Path, brokers: &str, realtime: bool) -> (Child, String) {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml")).unwrap();
    let demo = if realtime { demo.replace("realtime = false", "realtime = true") } else { demo };
    // A frame summary per processed frame, so that frames can be counted in the events.
    let demo = demo.replace("frame_summary_every_s = 5.0", "frame_summary_every_s = 0.000001");
    assert!(demo.contains("frame_summary_every_s = 0.000001"), "pipelines/demo.toml changed: update this test");
    std::fs::write(dir.join("demo.toml"), demo).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/argus.toml")])
        .env("ARGUS_PIPELINES", format!("[{:?}]", dir.join("demo.toml").display().to_string()))
        .env("ARGUS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ARGUS_STORE__PATH", dir.join("a.db"))
        .env("ARGUS_SINKS__JSONL__PATH", dir.join("e.jsonl"))
        .env("ARGUS_SINKS__STDOUT__ENABLED", "false")
        .env("ARGUS_SINKS__KAFKA__ENABLED", "true")
        .env("ARGUS_SINKS__KAFKA__BROKERS", brokers)
        .env("ARGUS_SINKS__KAFKA__TOPIC", "control-room")
        .env("ARGUS_SINKS__KAFKA__SPOOL_DIR", dir.join("spool"))
        .env("ARGUS_SINKS__KAFKA__MESSAGE_TIMEOUT_MS", "3000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

fn jsonl_ids(path: &Path) -> BTreeSet<String> {
    jsonl_lines(path).into_keys().collect()
}

/// The JSONL's lines by event id, parsed strictly: every line is a whole event, the file
/// ends with a newline, and no id is written twice.
fn jsonl_lines(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "{}: a torn last line", path.display());
    let mut out = BTreeMap::new();
    for (n, l) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{} line {}: {e}: {l}", path.display(), n + 1));
        let id = v["event_id"].as_str().unwrap().to_string();
        assert!(out.insert(id.clone(), l.to_string()).is_none(), "{id} written twice to {}", path.display());
    }
    out
}

/// What the consumer got against the JSONL (every event once there): each delivery's
/// payload is byte for byte the JSONL line of its id, and every id arrived. Returns the
/// number of repeated deliveries.
fn check_deliveries(got: &[Consumed], lines: &BTreeMap<String, String>) -> usize {
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for c in got {
        let id = c.value["event_id"].as_str().unwrap_or_else(|| panic!("a delivery without an event id: {:?}", String::from_utf8_lossy(&c.raw)));
        let line = lines.get(id).unwrap_or_else(|| panic!("{id} was delivered but Argus never wrote it"));
        assert!(
            c.raw == line.as_bytes(),
            "{id}: the delivered payload differs from the original\n  kafka: {}\n  jsonl: {line}",
            String::from_utf8_lossy(&c.raw)
        );
        assert_eq!(c.key, c.value["camera_id"].as_str().unwrap(), "key = camera id");
        assert_eq!(c.headers["event_id"], id);
        *per_id.entry(id).or_default() += 1;
    }
    let missing: Vec<&String> = lines.keys().filter(|id| !per_id.contains_key(id.as_str())).collect();
    assert!(missing.is_empty(), "{} of {} events never arrived: {missing:?}", missing.len(), lines.len());
    got.len() - per_id.len()
}

/// The demo camera's counters after the run against the source: vtest.avi has 795
/// frames (`gst-launch-1.0 -v filesrc location=… ! decodebin ! videoconvert ! fakesink
/// silent=false` prints 795 chain messages), every one received and each processed or
/// counted as dropped; and with a frame summary per frame, one `frame.analyzed` event per
/// processed frame, at distinct frame numbers.
fn check_frames_against_the_source(base: &str, lines: &BTreeMap<String, String>) {
    const VTEST_FRAMES: u64 = 795;
    let cams: Value = reqwest::blocking::get(format!("{base}/v1/cameras")).unwrap().json().unwrap();
    let c = &cams["cameras"]["plaza"];
    assert_eq!(c["frames_received"], VTEST_FRAMES, "every frame of the video was read: {c}");
    let processed = c["frames_processed"].as_u64().unwrap();
    let dropped = c["frames_dropped"].as_u64().unwrap();
    assert_eq!(processed + dropped, VTEST_FRAMES, "each frame processed or counted as dropped: {c}");
    let seqs: BTreeSet<u64> = lines
        .values()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "frame.analyzed")
        .map(|e| e["frame"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len() as u64, processed, "one frame.analyzed event per processed frame ({dropped} dropped)");
    assert!(seqs.iter().all(|s| *s < VTEST_FRAMES));
}

fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{base}/metrics")).map(|r| r.text().unwrap_or_default()).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

/// Waits until the demo ended, every event was written and the Kafka spool is empty;
/// panics with the log's tail after `limit`.
fn wait_drained(dir: &Path, base: &str, limit: Duration) {
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
        if log.contains("every event written") && metric(base, "argus_spool_events{sink=\"kafka\"}") == 0.0 {
            return;
        }
        if t0.elapsed() > limit {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!("demo did not finish and drain; log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits for the reader's first `n` events.
fn wait_first(reader: &Reader, n: usize) {
    let t0 = Instant::now();
    while reader.ids().len() < n {
        assert!(t0.elapsed() < Duration::from_secs(60), "no events reached Kafka");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn events_arrive_keyed_by_camera_with_headers_and_valid_json() {
    let broker = Broker::start(&[("control-room", 3)]);
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::start(&broker.brokers(), "control-room");
    let (mut argus, base) = argus(dir.path(), &broker.brokers(), false);
    // Without --exit-when-done Argus keeps serving; the JSONL is complete once every
    // source ended, which the reader then has to match.
    wait_drained(dir.path(), &base, Duration::from_secs(120));
    let want = jsonl_ids(&dir.path().join("e.jsonl"));
    // The whole demo, deterministic on CPU and not dropping a frame (not realtime): 795
    // frame summaries (one per frame) and 39 incident events (12 opened, 15 updated, 12
    // closed).
    assert_eq!(want.len(), 795 + 39, "the demo's events");
    reader.wait_for(&want, Duration::from_secs(30));
    let _ = Command::new("kill").args(["-TERM", &argus.id().to_string()]).status();
    assert!(argus.wait().unwrap().success());

    let schema: Value = serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/argus.event.v1.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let got = reader.got.lock().clone();
    let ids: BTreeSet<String> = got.iter().map(|c| c.value["event_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, want, "exactly the JSONL's events");
    assert_eq!(got.len(), want.len(), "each once when the broker never failed");
    for c in &got {
        assert_eq!(c.key, c.value["camera_id"].as_str().unwrap(), "key = camera id");
        assert_eq!(c.headers["schema"], "argus.event.v1");
        assert_eq!(c.headers["kind"], c.value["kind"].as_str().unwrap());
        assert_eq!(c.headers["event_id"], c.value["event_id"].as_str().unwrap());
        let errors: Vec<String> = validator.iter_errors(&c.value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    // One key → one partition: per camera, consumers see capture order.
    let times: Vec<&str> = got.iter().filter(|c| c.key == "plaza").map(|c| c.value["captured_at"].as_str().unwrap()).collect();
    assert_eq!(times.len(), got.len());
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "ordered per camera");
}

/// The broker freezes (SIGSTOP: connections stay open, nothing answers, as when its
/// host hangs) for 30 s while the demo plays at camera speed. tansu's only local
/// storage is memory, so a real restart would lose the topic's earlier data; a freeze
/// tests the same client path (timeouts → spool → replay) without that artefact.
#[test]
fn a_broker_down_for_30s_loses_no_event() {
    let broker = Broker::start(&[("control-room", 3)]);
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::start(&broker.brokers(), "control-room");
    let (mut argus, base) = argus(dir.path(), &broker.brokers(), true);
    wait_first(&reader, 3);
    broker.signal("-STOP");
    std::thread::sleep(Duration::from_secs(15));
    assert!(metric(&base, "argus_spool_events{sink=\"kafka\"}") > 0.0, "events spool while the broker is down");
    let ready: Value = reqwest::blocking::get(format!("{base}/readyz")).unwrap().json().unwrap();
    assert_eq!(ready["sinks"]["kafka"]["state"], "running", "spooling is degraded, not down: {ready}");
    std::thread::sleep(Duration::from_secs(15));
    broker.signal("-CONT");

    wait_drained(dir.path(), &base, Duration::from_secs(150));
    let lines = jsonl_lines(&dir.path().join("e.jsonl"));
    let want: BTreeSet<String> = lines.keys().cloned().collect();
    reader.wait_for(&want, Duration::from_secs(30));
    let replayed = metric(&base, "argus_spool_events_replayed_total{sink=\"kafka\"}");
    let spooled = metric(&base, "argus_spool_events_spooled_total{sink=\"kafka\"}");
    assert!(replayed > 0.0, "the spooled events were replayed");
    assert_eq!(replayed, spooled, "every spooled event replayed, once");
    check_frames_against_the_source(&base, &lines);
    let _ = Command::new("kill").args(["-TERM", &argus.id().to_string()]).status();
    assert!(argus.wait().unwrap().success());
    let got = reader.got.lock().clone();
    let repeated = check_deliveries(&got, &lines);
    eprintln!("{} events, {} deliveries ({repeated} repeated, {spooled} spooled, {replayed} replayed from the spool)", want.len(), got.len());
    assert_repeats_bounded(repeated, &got, spooled);
}

/// Repeats come only from the spool: a batch whose delivery failed as a whole is
/// spooled and sent again, and the broker may still have written some of the first try
/// (a lost acknowledgement, or requests it read from its socket after the freeze). So
/// only spooled events repeat, never more than once per try (the first, and each replay
/// attempt: with the 0.5 s → 30 s backoff, at most 7 tries fit in a 30 s outage).
fn assert_repeats_bounded(repeated: usize, got: &[Consumed], spooled: f64) {
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for c in got {
        *per_id.entry(c.value["event_id"].as_str().unwrap()).or_default() += 1;
    }
    let worst = per_id.values().copied().max().unwrap_or(0);
    let twice = per_id.values().filter(|n| **n > 1).count();
    assert!(twice as f64 <= spooled, "{twice} ids arrived more than once, but only {spooled} events were spooled");
    assert!(worst <= 8, "an event arrived {worst} times");
    assert!(repeated as f64 <= 7.0 * spooled, "{repeated} repeats for {spooled} spooled events");
}

/// The broker dies (SIGKILL) and a new one starts on the same port 30 s later. tansu
/// keeps topics in memory, so the new broker starts empty: the test first lets its
/// consumer read everything the old broker acknowledged (Argus paused with SIGSTOP for
/// that moment, so nothing new is acknowledged meanwhile), then compares what both
/// brokers delivered with the JSONL.
#[test]
fn a_broker_killed_and_restarted_after_30s_loses_no_event() {
    let broker = Broker::start(&[("control-room", 3)]);
    let port = broker.port;
    let dir = tempfile::tempdir().unwrap();
    let before = Reader::start(&broker.brokers(), "control-room");
    let (mut argus, base) = argus(dir.path(), &broker.brokers(), true);
    wait_first(&before, 3);
    let pid = argus.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_secs(2));
    let got_before = before.got.lock().clone();
    let seen_before: BTreeSet<String> = before.ids().into_iter().collect();
    drop(before);
    drop(broker); // SIGKILL
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_secs(15));
    assert!(metric(&base, "argus_spool_events{sink=\"kafka\"}") > 0.0, "events spool while the broker is gone");
    std::thread::sleep(Duration::from_secs(15));
    let broker = Broker::start_on(port, &[("control-room", 3)]);
    let after = Reader::start(&broker.brokers(), "control-room");

    wait_drained(dir.path(), &base, Duration::from_secs(150));
    let lines = jsonl_lines(&dir.path().join("e.jsonl"));
    let want: BTreeSet<String> = lines.keys().cloned().collect();
    let missing: BTreeSet<String> = want.difference(&seen_before).cloned().collect();
    after.wait_for(&missing, Duration::from_secs(30));
    let replayed = metric(&base, "argus_spool_events_replayed_total{sink=\"kafka\"}");
    let spooled = metric(&base, "argus_spool_events_spooled_total{sink=\"kafka\"}");
    assert!(replayed > 0.0, "the spooled events were replayed");
    assert_eq!(replayed, spooled, "every spooled event replayed, once");
    check_frames_against_the_source(&base, &lines);
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(argus.wait().unwrap().success());
    let seen_after: BTreeSet<String> = after.ids().into_iter().collect();
    let all: BTreeSet<String> = seen_before.union(&seen_after).cloned().collect();
    assert_eq!(all, want, "every event arrives across the two brokers, and no id Argus never emitted");
    let mut got = got_before;
    got.extend(after.got.lock().iter().cloned());
    let repeated = check_deliveries(&got, &lines);
    eprintln!(
        "{} events: {} via the first broker, {} via the second ({} on both); {repeated} repeated deliveries, {spooled} spooled, {replayed} replayed",
        want.len(),
        seen_before.len(),
        seen_after.len(),
        seen_before.intersection(&seen_after).count()
    );
    assert_repeats_bounded(repeated, &got, spooled);
}

// ---- the frame source -------------------------------------------------------------

const PERSON_JPG: &str = "/usr/share/darknet/data/person.jpg";
const T0_MS: i64 = 1_763_884_800_000;

/// Keyed by camera id (one partition per camera), or with `spread` by capture time (all
/// partitions).
fn produce_keyed(brokers: &str, topic: &str, messages: &[(Option<&str>, Option<String>, Vec<u8>)], spread: bool) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).set("message.max.bytes", "5000000").create().unwrap();
    for (camera, captured_at, payload) in messages {
        let mut h = OwnedHeaders::new();
        if let Some(c) = camera {
            h = h.insert(Header { key: "camera_id", value: Some(*c) });
        }
        if let Some(t) = captured_at {
            h = h.insert(Header { key: "captured_at", value: Some(t.as_str()) });
        }
        let key = if spread { captured_at.as_deref().unwrap_or("none") } else { camera.unwrap_or("none") };
        p.send(BaseRecord::to(topic).key(key).payload(payload).headers(h)).unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn produce(brokers: &str, topic: &str, messages: &[(Option<&str>, Option<String>, Vec<u8>)]) {
    produce_keyed(brokers, topic, messages, false)
}

/// Frame `i` of drone-1: the darknet person photo, captured at T0 + i × 100 ms (epoch
/// ms for even i, RFC 3339 for odd).
fn good_frames(range: std::ops::Range<i64>) -> Vec<(Option<&'static str>, Option<String>, Vec<u8>)> {
    frames_of("drone-1", range)
}

fn frames_of(camera: &'static str, range: std::ops::Range<i64>) -> Vec<(Option<&'static str>, Option<String>, Vec<u8>)> {
    let jpg = std::fs::read(PERSON_JPG).unwrap();
    range
        .map(|i| {
            let ms = T0_MS + i * 100;
            let t = if i % 2 == 0 {
                ms.to_string()
            } else {
                time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap()
            };
            (Some(camera), Some(t), jpg.clone())
        })
        .collect()
}

const DRONES: [&str; 8] = ["drone-1", "drone-2", "drone-3", "drone-4", "drone-5", "drone-6", "drone-7", "drone-8"];

fn kafka_pipeline(dir: &Path, brokers: &str, group: &str) -> std::path::PathBuf {
    let p = dir.join("drones.toml");
    let cameras: String = DRONES.iter().map(|d| format!("[[cameras]]\nid = \"{d}\"\nsource = \"kafka\"\n")).collect();
    std::fs::write(
        &p,
        format!(
            "name = \"drones\"\n{cameras}[events]\nframe_summary_every_s = 0.000001\n\
             [kafka]\nbrokers = \"{brokers}\"\ntopic = \"frames\"\ngroup_id = \"{group}\"\ndead_letter_topic = \"frames-dlq\"\n"
        ),
    )
    .unwrap();
    p
}

fn argus_on(dir: &Path, pipeline: &Path) -> (Child, String) {
    argus_on_with(dir, pipeline, &[])
}

/// Capture times (Unix ms) of drone-1's frame summaries in the JSONL, with repeats.
fn frame_times(dir: &Path) -> Vec<i64> {
    camera_frame_times(dir).into_iter().filter(|(c, _)| c == "drone-1").map(|(_, t)| t).collect()
}

/// (camera, capture time in Unix ms) of every frame summary in the JSONL, with repeats.
/// Strict: every complete line must be a whole event (a torn or garbled line fails the
/// test); only a last line without its newline yet (a write in progress while Argus
/// runs) is left for the next look. `assert_jsonl_whole` checks there is none at the end.
fn camera_frame_times(dir: &Path) -> Vec<(String, i64)> {
    let text = match std::fs::read_to_string(dir.join("e.jsonl")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("e.jsonl: {e}"),
    };
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .enumerate()
        .map(|(n, l)| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("e.jsonl line {}: {e}: {l}", n + 1)))
        .filter(|e| e["kind"] == "frame.analyzed")
        .map(|e| {
            (
                e["camera_id"].as_str().unwrap().to_string(),
                argus::model::parse_time(e["captured_at"].as_str().unwrap()).unwrap().unix_timestamp_nanos() as i64 / 1_000_000,
            )
        })
        .collect()
}

/// The JSONL ends with a whole line (no torn tail, e.g. after a SIGKILL) and every line
/// parses.
fn assert_jsonl_whole(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("e.jsonl")).unwrap();
    assert!(text.ends_with('\n'), "e.jsonl ends in a torn line: {:?}", &text[text.len().saturating_sub(200)..]);
    for (n, l) in text.lines().enumerate() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("e.jsonl line {}: {e}: {l}", n + 1));
    }
}

/// The offsets `group` has committed on `topic`'s `partitions` (0 where none), read
/// from the broker without joining the group.
fn committed_offsets(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::{Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).set("enable.auto.commit", "false").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        })
        .collect()
}

fn wait_frames(dir: &Path, want: usize, limit: Duration) -> BTreeSet<i64> {
    let t0 = Instant::now();
    loop {
        let got: BTreeSet<i64> = frame_times(dir).into_iter().collect();
        if got.len() >= want {
            return got;
        }
        if t0.elapsed() > limit {
            let log = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
            panic!("{} of {want} frames have events; log:\n{}", got.len(), log.lines().rev().take(25).collect::<Vec<_>>().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn frames_in_events_out_and_bad_messages_go_to_the_dead_letter_topic() {
    let broker = Broker::start(&[("frames", 2), ("frames-dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jpg = std::fs::read(PERSON_JPG).unwrap();
    let mut msgs = good_frames(0..6);
    msgs.push((Some("drone-1"), Some(T0_MS.to_string()), b"not an image at all".to_vec()));
    msgs.push((None, Some(T0_MS.to_string()), jpg.clone()));
    msgs.push((Some("drone-9"), Some(T0_MS.to_string()), jpg.clone()));
    msgs.push((Some("drone-1"), Some("yesterday".into()), jpg.clone()));
    msgs.extend(good_frames(6..12));
    produce(&broker.brokers(), "frames", &msgs);
    let dlq = Reader::start(&broker.brokers(), "frames-dlq");

    let pipeline = kafka_pipeline(d, &broker.brokers(), &format!("argus-{}", uuid::Uuid::new_v4()));
    let (mut argus, base) = argus_on(d, &pipeline);
    let got = wait_frames(d, 12, Duration::from_secs(90));
    let want: BTreeSet<i64> = (0..12).map(|i| T0_MS + i * 100).collect();
    assert_eq!(got, want, "one event per good frame, at the frame's capture time");
    let events: Vec<Value> = std::fs::read_to_string(d.join("e.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for e in events.iter().filter(|e| e["kind"] == "frame.analyzed") {
        assert_eq!(e["camera_id"], "drone-1");
        assert_eq!(e["frame"]["time_source"], "header");
        assert!(e["objects"].as_array().unwrap().iter().any(|o| o["class"] == "person"), "the detector ran on the frame: {e}");
    }

    let t0 = Instant::now();
    while dlq.got.lock().len() < 4 {
        assert!(t0.elapsed() < Duration::from_secs(30), "dead letters: {:?}", dlq.got.lock().len());
        std::thread::sleep(Duration::from_millis(200));
    }
    let reasons: BTreeSet<String> = dlq.got.lock().iter().map(|c| c.headers["reason"].split(':').next().unwrap().to_string()).collect();
    let expected: BTreeSet<String> = ["undecodable", "missing_camera_id", "unknown_camera", "bad_captured_at"].iter().map(|s| s.to_string()).collect();
    assert_eq!(reasons, expected);
    assert!(dlq.got.lock().iter().all(|c| c.headers["source_topic"] == "frames" && c.headers.contains_key("source_offset")));
    assert_eq!(metric(&base, "argus_kafka_messages_rejected_total{reason=\"unknown_camera\"}"), 1.0);
    assert_eq!(metric(&base, "argus_kafka_messages_consumed_total{topic=\"frames\"}"), 16.0);
    assert!(metric(&base, "argus_kafka_offsets_committed_total{topic=\"frames\"}") > 0.0);
    assert!(argus.try_wait().unwrap().is_none(), "bad messages never stop Argus");
    let _ = Command::new("kill").args(["-TERM", &argus.id().to_string()]).status();
    assert!(argus.wait().unwrap().success());
}

/// SIGKILL in the middle, restart: the second run resumes from the committed offsets,
/// so every frame ends up with an event (some twice: at least once, same event ids).
#[test]
fn a_killed_argus_resumes_from_committed_offsets_and_misses_no_frame() {
    let broker = Broker::start(&[("frames", 2), ("frames-dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const N: i64 = 150;
    produce(&broker.brokers(), "frames", &good_frames(0..N));
    let group = format!("argus-{}", uuid::Uuid::new_v4());
    let pipeline = kafka_pipeline(d, &broker.brokers(), &group);
    let (mut first, _) = argus_on(d, &pipeline);
    wait_frames(d, 30, Duration::from_secs(90));
    // Killed once a commit reached the broker: offsets follow the scene checkpoints, and
    // a run alone on a fast machine can write 30 frames before its first checkpoint.
    let t0 = Instant::now();
    while committed_offsets(&broker.brokers(), &group, "frames", 2).iter().sum::<i64>() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no offset committed within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert_jsonl_whole(d);
    let after_kill = frame_times(d).len();
    // All frames are drone-1's: one key, one partition; the committed offset is the
    // number of frames the first run finished for good.
    let committed: i64 = committed_offsets(&broker.brokers(), &group, "frames", 2).iter().sum();
    assert!(committed > 0, "the first run committed offsets before the kill (every 250 ms)");
    assert!(committed as usize <= after_kill, "offsets are committed only for frames whose events are durable: {committed} committed, {after_kill} written");

    let (mut second, base) = argus_on(d, &pipeline);
    let got = wait_frames(d, N as usize, Duration::from_secs(180));
    let want: BTreeSet<i64> = (0..N).map(|i| T0_MS + i * 100).collect();
    assert_eq!(got, want, "no frame without an event");
    let total = frame_times(d).len();
    let redone = total - N as usize;
    eprintln!("{after_kill} frames before the kill, {committed} committed; {redone} analysed twice after the restart");
    assert!(after_kill < N as usize, "the kill came before the end");
    // The second run starts at the committed offset: it redoes only frames the first run
    // finished after its last commit.
    assert!(
        redone <= after_kill - committed as usize,
        "{redone} frames redone, but only {} were finished after the last commit ({total} events)",
        after_kill - committed as usize
    );
    assert!(metric(&base, "argus_kafka_offsets_committed_total{topic=\"frames\"}") > 0.0);
    let _ = Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
    assert!(second.wait().unwrap().success());
    assert_jsonl_whole(d);
}

/// Two Argus processes in one consumer group split the topic's partitions: each
/// analyses some of the cameras (keyed by camera id), together all frames.
#[test]
fn two_argus_in_one_group_split_the_partitions() {
    let broker = Broker::start(&[("frames", 4), ("frames-dlq", 1)]);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let group = format!("argus-{}", uuid::Uuid::new_v4());
    let (mut pa, base_a) = argus_on(a.path(), &kafka_pipeline(a.path(), &broker.brokers(), &group));
    let (mut pb, base_b) = argus_on(b.path(), &kafka_pipeline(b.path(), &broker.brokers(), &group));
    // Both join (≈ session.timeout/2 each, then one rebalance) before the frames under
    // test arrive: a rebalance in the middle would hand uncommitted frames to the other
    // member. tansu 0.6 answers DescribeGroups with no groups, so the join is observed
    // through Argus: rounds of one probe frame per camera until a round is analysed by
    // both members (then each holds partitions, and nothing changes the group anymore).
    // Probes are captured before the frames under test (a camera's capture times only
    // go forward).
    const MAIN: std::ops::Range<i64> = 1000..1010;
    let of = |dir: &Path, lo: i64, hi: i64| -> BTreeSet<(String, i64)> {
        camera_frame_times(dir).into_iter().filter(|(_, t)| *t >= T0_MS + lo * 100 && *t < T0_MS + hi * 100).collect()
    };
    let t0 = Instant::now();
    for round in 0.. {
        let i = round;
        produce(&broker.brokers(), "frames", &DRONES.iter().flat_map(|d| frames_of(d, i..i + 1)).collect::<Vec<_>>());
        let (pa_, pb_) = loop {
            let (x, y) = (of(a.path(), i, i + 1), of(b.path(), i, i + 1));
            if x.union(&y).count() == DRONES.len() {
                break (x, y);
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "probe round {round}: {} + {} of {} frames", x.len(), y.len(), DRONES.len());
            std::thread::sleep(Duration::from_millis(200));
        };
        if !pa_.is_empty() && !pb_.is_empty() {
            break;
        }
        assert!(round < MAIN.start - 1, "the second member never got partitions");
    }
    let consumed = |base: &str| metric(base, "argus_kafka_messages_consumed_total{topic=\"frames\"}");
    let (before_a, before_b) = (consumed(&base_a), consumed(&base_b));

    let msgs: Vec<_> = DRONES.iter().flat_map(|d| frames_of(d, MAIN)).collect();
    produce(&broker.brokers(), "frames", &msgs);
    let total = msgs.len();
    let t0 = Instant::now();
    let (got_a, got_b) = loop {
        let ga = of(a.path(), MAIN.start, MAIN.end);
        let gb = of(b.path(), MAIN.start, MAIN.end);
        if ga.union(&gb).count() >= total {
            break (ga, gb);
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{} + {} of {total} frames", ga.len(), gb.len());
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!("split: {} and {} frames", got_a.len(), got_b.len());
    assert!(!got_a.is_empty() && !got_b.is_empty(), "both members got partitions: {} and {}", got_a.len(), got_b.len());
    assert_eq!(got_a.union(&got_b).count(), total);
    // A group id that were ignored would have each member read everything: the members'
    // frames, and so their cameras (one key, one partition), are disjoint, and each frame
    // was consumed once in all.
    let both: Vec<&(String, i64)> = got_a.intersection(&got_b).collect();
    assert!(both.is_empty(), "{} frames analysed by both members, e.g. {:?}", both.len(), both.first());
    let cams = |g: &BTreeSet<(String, i64)>| -> BTreeSet<String> { g.iter().map(|(c, _)| c.clone()).collect() };
    let (cams_a, cams_b) = (cams(&got_a), cams(&got_b));
    assert!(cams_a.is_disjoint(&cams_b), "cameras on both members: {cams_a:?} and {cams_b:?}");
    assert_eq!(cams_a.len() + cams_b.len(), DRONES.len());
    let (ca, cb) = (consumed(&base_a) - before_a, consumed(&base_b) - before_b);
    assert_eq!(ca + cb, total as f64, "each message consumed once in the group ({ca} + {cb})");
    assert_eq!((ca as usize, cb as usize), (got_a.len(), got_b.len()), "each member analysed what it consumed");
    // Frame events are written once per frame on each member (no duplicate lines).
    for dir in [a.path(), b.path()] {
        let all: Vec<(String, i64)> = camera_frame_times(dir).into_iter().filter(|(_, t)| *t >= T0_MS + MAIN.start * 100).collect();
        let distinct: BTreeSet<&(String, i64)> = all.iter().collect();
        assert_eq!(all.len(), distinct.len(), "a frame analysed twice on one member");
    }
    for p in [&mut pa, &mut pb] {
        let _ = Command::new("kill").args(["-TERM", &p.id().to_string()]).status();
        assert!(p.wait().unwrap().success());
    }
}

/// Events of several cameras on a topic of several partitions: every message is keyed
/// by its camera id, and all of one camera's events are on one partition in capture
/// order (what "key = camera id" promises a consumer). The frames are interleaved across
/// the cameras, so the events reach the producer interleaved too.
#[test]
fn several_cameras_events_are_keyed_by_camera_one_partition_each_in_order() {
    let broker = Broker::start(&[("frames", 2), ("frames-dlq", 1), ("control-room", 4)]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const CAMERAS: usize = 4;
    const PER_CAMERA: i64 = 6;
    let msgs: Vec<_> = (0..PER_CAMERA).flat_map(|i| DRONES[..CAMERAS].iter().flat_map(move |c| frames_of(c, i..i + 1))).collect();
    produce(&broker.brokers(), "frames", &msgs);
    let reader = Reader::start(&broker.brokers(), "control-room");
    let pipeline = kafka_pipeline(d, &broker.brokers(), &format!("argus-{}", uuid::Uuid::new_v4()));
    let kafka_sink = [
        ("ARGUS_SINKS__KAFKA__ENABLED", "true".to_string()),
        ("ARGUS_SINKS__KAFKA__BROKERS", broker.brokers()),
        ("ARGUS_SINKS__KAFKA__TOPIC", "control-room".to_string()),
        ("ARGUS_SINKS__KAFKA__SPOOL_DIR", d.join("spool").display().to_string()),
    ];
    let (mut argus, _base) = argus_on_with(d, &pipeline, &kafka_sink);
    let t0 = Instant::now();
    while camera_frame_times(d).len() < msgs.len() {
        assert!(t0.elapsed() < Duration::from_secs(90), "{} of {} frames have events", camera_frame_times(d).len(), msgs.len());
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = jsonl_lines(&d.join("e.jsonl"));
    // The drones pipeline has no rules: one frame.analyzed event per frame, nothing else.
    assert_eq!(lines.len(), msgs.len(), "one event per frame");
    reader.wait_for(&lines.keys().cloned().collect(), Duration::from_secs(30));
    let _ = Command::new("kill").args(["-TERM", &argus.id().to_string()]).status();
    assert!(argus.wait().unwrap().success());

    let got = reader.got.lock().clone();
    assert_eq!(check_deliveries(&got, &lines), 0, "each event once when the broker never failed");
    let mut per_camera: BTreeMap<String, Vec<&Consumed>> = BTreeMap::new();
    for c in &got {
        assert_eq!(c.key, c.value["camera_id"].as_str().unwrap(), "key = camera id");
        assert_eq!(c.headers["camera_id"], c.key);
        per_camera.entry(c.key.clone()).or_default().push(c);
    }
    let cameras: Vec<&str> = DRONES[..CAMERAS].to_vec();
    assert_eq!(per_camera.keys().map(|k| k.as_str()).collect::<Vec<_>>(), cameras, "every camera's events arrived");
    let mut partitions_used = BTreeSet::new();
    for (cam, evs) in &mut per_camera {
        assert_eq!(evs.len(), PER_CAMERA as usize, "{cam}");
        let partitions: BTreeSet<i32> = evs.iter().map(|c| c.partition).collect();
        assert_eq!(partitions.len(), 1, "{cam}'s events on one partition, found on {partitions:?}");
        partitions_used.extend(partitions);
        // In partition order (offsets), the camera's frames come in capture order.
        evs.sort_by_key(|c| c.offset);
        let times: Vec<i64> =
            evs.iter().map(|c| argus::model::parse_time(c.value["captured_at"].as_str().unwrap()).unwrap().unix_timestamp_nanos() as i64 / 1_000_000).collect();
        let want: Vec<i64> = (0..PER_CAMERA).map(|i| T0_MS + i * 100).collect();
        assert_eq!(times, want, "{cam}: its events in capture order on its partition");
    }
    // Keyed, not all on one partition: librdkafka's default partitioner (CRC32 of the key
    // modulo 4: drone-1 → 0, drone-2 → 2, drone-3 → 0, drone-4 → 3) puts these four
    // camera ids on three partitions, drone-1 and drone-3 sharing one.
    assert_eq!(partitions_used.len(), 3, "partitions used: {partitions_used:?}");
}

/// A message to produce: its headers and its payload.
type WithHeaders<'a> = (Vec<(&'a str, Vec<u8>)>, Vec<u8>);

/// Produces messages with the given headers (keyed by their `camera_id`).
fn produce_with_headers(brokers: &str, topic: &str, messages: &[WithHeaders<'_>]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).set("message.max.bytes", "5000000").create().unwrap();
    for (headers, payload) in messages {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header { key: k, value: Some(v.as_slice()) });
        }
        let key = headers.iter().find(|(k, _)| *k == "camera_id").map(|(_, v)| v.clone()).unwrap_or_default();
        p.send(BaseRecord::to(topic).key(&key).payload(payload).headers(h)).unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Bad telemetry (not JSON; out of range), an empty message and one over
/// `max_message_bytes` each go to the dead-letter topic with their reason, source offset
/// and original bytes, are counted per reason, and never hold up the good frames around
/// them.
#[test]
fn telemetry_empty_and_oversized_messages_are_dead_lettered() {
    let broker = Broker::start(&[("frames", 1), ("frames-dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jpg = std::fs::read(PERSON_JPG).unwrap();
    let max = jpg.len() + 1000;
    let at = |i: i64| (T0_MS + i * 100).to_string().into_bytes();
    let hdrs = |i: i64, telemetry: Option<&str>| {
        let mut h = vec![("camera_id", b"drone-1".to_vec()), ("captured_at", at(i))];
        if let Some(t) = telemetry {
            h.push(("telemetry", t.as_bytes().to_vec()));
        }
        h
    };
    let bomb = argus::model::png_bomb(8192, 8192);
    let mut oversized = jpg.clone();
    oversized.extend(std::iter::repeat_n(0u8, 2000));
    let msgs = vec![
        (hdrs(0, None), jpg.clone()),
        (hdrs(1, Some("{not json")), jpg.clone()),
        (hdrs(2, Some(r#"{"lat": 95.0, "lon": 8.5, "alt_m": 100.0, "yaw": 0.0, "pitch": -90.0, "roll": 0.0, "hfov": 60.0}"#)), jpg.clone()),
        (hdrs(3, None), Vec::new()),
        (hdrs(4, None), oversized.clone()),
        // An image bomb: a 150-byte PNG declaring 8192x8192 (200 MB of RGB).
        (hdrs(5, None), bomb.clone()),
        (hdrs(6, None), jpg.clone()),
    ];
    produce_with_headers(&broker.brokers(), "frames", &msgs);
    let dlq = Reader::start(&broker.brokers(), "frames-dlq");
    let pipeline = kafka_pipeline(d, &broker.brokers(), &format!("argus-{}", uuid::Uuid::new_v4()));
    let mut text = std::fs::read_to_string(&pipeline).unwrap();
    text += &format!("max_message_bytes = {max}\n");
    std::fs::write(&pipeline, text).unwrap();
    let (mut argus, base) = argus_on(d, &pipeline);

    let got = wait_frames(d, 2, Duration::from_secs(90));
    assert_eq!(got, [T0_MS, T0_MS + 600].into_iter().collect(), "the two good frames, and only them");
    let t0 = Instant::now();
    while dlq.got.lock().len() < 5 {
        assert!(t0.elapsed() < Duration::from_secs(30), "dead letters: {}", dlq.got.lock().len());
        std::thread::sleep(Duration::from_millis(200));
    }
    let letters = dlq.got.lock().clone();
    assert_eq!(letters.len(), 5, "{letters:?}");
    let summary: Vec<(String, String)> =
        letters.iter().map(|c| (c.headers["reason"].split(':').next().unwrap().to_string(), c.headers["source_offset"].clone())).collect();
    let want: Vec<(String, String)> = [("bad_telemetry", "1"), ("bad_telemetry", "2"), ("empty", "3"), ("oversized", "4"), ("too_large", "5")]
        .iter()
        .map(|(r, o)| (r.to_string(), o.to_string()))
        .collect();
    assert_eq!(summary, want);
    assert!(letters[1].headers["reason"].contains("out of range"), "{}", letters[1].headers["reason"]);
    assert_eq!(letters[3].headers["reason"], format!("oversized: {} bytes is more than max_message_bytes {max}", oversized.len()));
    assert!(
        letters[4].headers["reason"].contains("8192x8192") && letters[4].headers["reason"].contains("limits.max_frame_pixels"),
        "{}",
        letters[4].headers["reason"]
    );
    for (c, original) in letters.iter().zip([&jpg, &jpg, &Vec::new(), &oversized, &bomb]) {
        assert!(c.raw == *original, "the dead letter carries the original bytes ({} vs {})", c.raw.len(), original.len());
        assert_eq!(c.key, "drone-1");
        assert_eq!(c.headers["source_topic"], "frames");
        assert_eq!(c.headers["source_partition"], "0");
    }
    for (reason, n) in [("bad_telemetry", 2.0), ("empty", 1.0), ("oversized", 1.0), ("too_large", 1.0), ("undecodable", 0.0)] {
        assert_eq!(metric(&base, &format!("argus_kafka_messages_rejected_total{{reason=\"{reason}\"}}")), n, "{reason}");
    }
    assert_eq!(metric(&base, "argus_kafka_messages_consumed_total{topic=\"frames\"}"), 7.0);
    assert!(argus.try_wait().unwrap().is_none(), "bad messages never stop Argus");
    let _ = Command::new("kill").args(["-TERM", &argus.id().to_string()]).status();
    assert!(argus.wait().unwrap().success());
}

/// SIGHUP cannot apply Kafka cameras (the pipeline's consumer owns them): a reload that
/// adds one says so by name, with the fix, instead of skipping it silently; Argus goes on.
#[test]
fn a_reload_that_adds_a_kafka_camera_says_it_needs_a_restart() {
    let broker = Broker::start(&[("frames", 1), ("frames-dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pipeline = kafka_pipeline(d, &broker.brokers(), &format!("argus-{}", uuid::Uuid::new_v4()));
    let (mut argus, _base) = argus_on(d, &pipeline);
    let log = || logs::plain_log(&d.join("stderr"));
    let wait_log = |what: &str| {
        let t0 = Instant::now();
        while !log().contains(what) {
            assert!(t0.elapsed() < Duration::from_secs(60), "no `{what}` in the log:\n{}", log());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_log("Kafka frame source started");
    let mut text = std::fs::read_to_string(&pipeline).unwrap();
    text += "[[cameras]]\nid = \"drone-9\"\nsource = \"kafka\"\n";
    std::fs::write(&pipeline, text).unwrap();
    assert!(Command::new("kill").args(["-HUP", &argus.id().to_string()]).status().unwrap().success());
    wait_log("configuration reloaded");
    let l = log();
    assert!(l.contains("needs_restart=[\"drone-9\"]"), "{l}");
    assert!(l.contains("are not reloaded by SIGHUP; restart Argus to apply them"), "{l}");
    assert!(argus.try_wait().unwrap().is_none(), "Argus keeps running");
    let _ = Command::new("kill").args(["-TERM", &argus.id().to_string()]).status();
    assert!(argus.wait().unwrap().success());
}

/// Operators' actions reach control rooms like the rules' events and outlive a restart:
/// the demo runs with the Kafka sink and a named key; an incident is acknowledged
/// (while the demo plays, when the test is quick enough) and noted after every source
/// ended (the API keeps serving and still takes actions); both arrive on the topic as
/// `incident.acknowledged` / `incident.noted` by `alice`, exactly as in the JSONL, and
/// after a restart on the same store the board still says who acknowledged it.
#[test]
fn an_acknowledgement_reaches_kafka_and_survives_a_restart() {
    const ALICE: &str = "alice-key-0123456789abcdef";
    let broker = Broker::start(&[("control-room", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::start(&broker.brokers(), "control-room");
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml")).unwrap();
    std::fs::write(dir.path().join("demo.toml"), demo).unwrap();
    let env = [
        ("ARGUS_SERVER__NAMED_API_KEYS__ALICE", ALICE.to_string()),
        ("ARGUS_SINKS__KAFKA__ENABLED", "true".to_string()),
        ("ARGUS_SINKS__KAFKA__BROKERS", broker.brokers()),
        ("ARGUS_SINKS__KAFKA__TOPIC", "control-room".to_string()),
        ("ARGUS_SINKS__KAFKA__SPOOL_DIR", dir.path().join("spool").display().to_string()),
    ];
    let (mut argus, base) = member::argus_on_with(dir.path(), &dir.path().join("demo.toml"), &env);
    let http = reqwest::blocking::Client::new();
    let get = |base: &str, path: &str| -> Value {
        let t0 = Instant::now();
        loop {
            match http.get(format!("{base}{path}")).bearer_auth(ALICE).send() {
                Ok(r) if r.status() == 200 => return r.json().unwrap(),
                Ok(r) => panic!("{path}: {} {}", r.status(), r.text().unwrap_or_default()),
                Err(_) if t0.elapsed() < Duration::from_secs(60) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("{path}: {e}"),
            }
        }
    };
    let act = |base: &str, id: &str, what: &str, body: &str| -> Value {
        let r = http
            .post(format!("{base}/v1/incidents/{id}/{what}"))
            .bearer_auth(ALICE)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().unwrap();
        assert_eq!((status, &v["durable"]), (201, &Value::Bool(true)), "{what}: {v}");
        v["event"].clone()
    };
    let t0 = Instant::now();
    let incident = loop {
        let board = get(&base, "/v1/incidents?limit=1");
        if let Some(id) = board["incidents"][0]["incident_id"].as_str() {
            break id.to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no incident on the board");
        std::thread::sleep(Duration::from_millis(100));
    };
    let ack = act(&base, &incident, "ack", r#"{"text": "seen, calling the guard"}"#);
    let while_running = !std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default().contains("every event written");
    wait_drained(dir.path(), &base, Duration::from_secs(120));
    let note = act(&base, &incident, "note", r#"{"text": "after the run"}"#);
    eprintln!("acknowledged while the demo played: {while_running}");

    // On the topic, byte for byte the JSONL's lines, keyed by the camera.
    let ids: BTreeSet<String> = [&ack, &note].iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    reader.wait_for(&ids, Duration::from_secs(30));
    let lines = jsonl_lines(&dir.path().join("e.jsonl"));
    for ev in [&ack, &note] {
        let id = ev["event_id"].as_str().unwrap();
        let got: Vec<Consumed> = reader.got.lock().iter().filter(|c| c.value["event_id"] == id).cloned().collect();
        assert_eq!(got.len(), 1, "{id} once on the topic");
        assert_eq!(got[0].raw, lines[id].as_bytes(), "as in the JSONL");
        assert_eq!(got[0].key, ev["camera_id"].as_str().unwrap());
        assert_eq!(got[0].headers["kind"], ev["kind"].as_str().unwrap());
        assert_eq!(got[0].value["action"]["by"], "alice");
        assert_eq!(got[0].value["incident_id"], incident.as_str());
    }
    assert_eq!(ack["kind"], "incident.acknowledged");
    assert_eq!(note["kind"], "incident.noted");
    let _ = Command::new("kill").args(["-TERM", &argus.id().to_string()]).status();
    assert!(argus.wait().unwrap().success(), "a clean stop");

    // Restarted on the same store (the demo plays again, its events replayed with the
    // same ids): the board still has the acknowledgement and the note.
    let (mut argus, base) = member::argus_on_with(dir.path(), &dir.path().join("demo.toml"), &env);
    let detail = get(&base, &format!("/v1/incidents/{incident}"));
    assert_eq!(detail["acknowledged"]["by"], "alice", "{detail}");
    assert_eq!(detail["acknowledged"]["text"], "seen, calling the guard");
    assert_eq!(detail["acknowledged"]["event_id"], ack["event_id"]);
    assert_eq!((detail["notes"].as_u64(), detail["actions"].as_u64()), (Some(1), Some(2)), "{detail}");
    let kinds: Vec<&str> = detail["lifecycle"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"incident.acknowledged") && kinds.contains(&"incident.noted"), "{kinds:?}");
    assert_eq!(detail["state"], "closed", "the rules closed it; acknowledging changed nothing");
    let _ = Command::new("kill").args(["-TERM", &argus.id().to_string()]).status();
    assert!(argus.wait().unwrap().success());
}
