//! The Kafka event sink against a real Kafka-protocol broker (tansu, installed into
//! .deps/tansu by scripts/setup, started per test on a free loopback port): content,
//! keys, headers and schema of what control rooms consume, and a broker that stops
//! answering for 30 s in the middle of a run.
#![cfg(feature = "kafka")]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream};
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

const TANSU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/tansu/tansu");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(topics: &[(&str, u32)]) -> Self {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(TANSU)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu (scripts/setup installs it into .deps/tansu)");
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "tansu did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        for (name, partitions) in topics {
            let ok = Command::new(TANSU).args(["topic", "create", name, "--partitions", &partitions.to_string(), "--broker", &url]).status().unwrap();
            assert!(ok.success(), "creating topic {name}");
        }
        Self { child, port }
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One consumed event: key, headers, parsed value.
#[derive(Debug, Clone)]
struct Consumed {
    key: String,
    headers: BTreeMap<String, String>,
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
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        let headers = m
                            .headers()
                            .map(|h| h.iter().map(|x| (x.key.to_string(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned())).collect())
                            .unwrap_or_default();
                        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                        let value = serde_json::from_slice(m.payload().unwrap_or_default()).expect("event JSON");
                        g.lock().push(Consumed { key, headers, value });
                    }
                    Some(Err(_)) | None => {}
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
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["event_id"].as_str().unwrap().to_string()).collect()
}

fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{base}/metrics")).map(|r| r.text().unwrap_or_default()).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

#[test]
fn events_arrive_keyed_by_camera_with_headers_and_valid_json() {
    let broker = Broker::start(&[("control-room", 3)]);
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::start(&broker.brokers(), "control-room");
    let (mut argus, _) = argus(dir.path(), &broker.brokers(), false);
    // Without --exit-when-done Argus keeps serving; the JSONL is complete once every
    // source ended, which the reader then has to match.
    let t0 = Instant::now();
    let want = loop {
        let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
        if log.contains("every event written") {
            break jsonl_ids(&dir.path().join("e.jsonl"));
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "demo did not finish: {log}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(want.len() > 20);
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
    let t0 = Instant::now();
    while reader.ids().len() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no events reached Kafka");
        std::thread::sleep(Duration::from_millis(200));
    }
    broker.signal("-STOP");
    std::thread::sleep(Duration::from_secs(15));
    assert!(metric(&base, "argus_spool_events{sink=\"kafka\"}") > 0.0, "events spool while the broker is down");
    let ready: Value = reqwest::blocking::get(format!("{base}/readyz")).unwrap().json().unwrap();
    assert_eq!(ready["sinks"]["kafka"]["state"], "running", "spooling is degraded, not down: {ready}");
    std::thread::sleep(Duration::from_secs(15));
    broker.signal("-CONT");

    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
        if log.contains("every event written") && metric(&base, "argus_spool_events{sink=\"kafka\"}") == 0.0 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(150) {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!("demo did not finish and drain; spool {}; log tail:\n{}", metric(&base, "argus_spool_events{sink=\"kafka\"}"), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let want = jsonl_ids(&dir.path().join("e.jsonl"));
    reader.wait_for(&want, Duration::from_secs(30));
    let replayed = metric(&base, "argus_spool_events_replayed_total{sink=\"kafka\"}");
    assert!(replayed > 0.0, "the spooled events were replayed");
    let _ = Command::new("kill").args(["-TERM", &argus.id().to_string()]).status();
    assert!(argus.wait().unwrap().success());
    let ids = reader.ids();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(distinct, want, "every event arrives, and no id Argus never emitted");
    // A batch the broker took just before it froze, whose acknowledgement was lost, is
    // sent again from the spool: the same ids, which consumers deduplicate.
    eprintln!("{} events, {} deliveries ({} repeated ids, {replayed} replayed from the spool)", want.len(), ids.len(), ids.len() - distinct.len());
}
