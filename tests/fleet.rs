//! The scale-out issue's "Done means", on loopback against a real broker (tansu) with the
//! binaries and one pipeline file for both tiers: two `argus ingest` shards over four
//! cameras (the demo video played at its own pace, `fps_cap = 4`, stamped from the wall
//! clock), a frames topic of 12 partitions, three `argus run --worker` members of one
//! consumer group with the demo's calibration, zones and rules, the fleet view on for
//! all five. Mid-run, while a worker has an incident open, that worker and the ingest
//! shard of the incident's camera are SIGKILLed and restarted (same directory, same
//! arguments, same member id). Then:
//!
//! 1. every camera was published by exactly one shard, the one `shard_of` maps it to
//!    (each shard lists only its own cameras, the topic holds exactly the frames the
//!    shards counted as published, once each, in capture order on one partition);
//! 2. every frame on the topic was analysed by some worker (a frame the killed worker
//!    analysed without a commit is analysed again by the new owner: same event);
//! 3. across all the workers' outputs every incident opened at most once and closed at
//!    most once, and no two incidents of one camera and rule were open at once; at
//!    least one incident opened and closed;
//! 4. `GET /v1/fleet` on a worker lists the five members, all live, the restarted ones
//!    with their new start, the workers holding every partition once.
//!
//! It prints what the release note quotes: frames/s and CPU per ingest process, capture →
//! event latency percentiles, the longest time a camera went unanalysed (the failover).
//! `ARGUS_TEST_KEEP=1` keeps the members' directories (logs, JSONL) of a passing run.
#![cfg(all(feature = "gstreamer", feature = "kafka", feature = "onnx"))]

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
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argus::model::{format_time, parse_time};
use argus::sources::shard::shard_of;
use broker::{Broker, free_port};
use events::{by_id, open_incidents};
use logs::plain_log;
use member::argus_run;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use time::OffsetDateTime;

const VIDEO: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
/// Two cameras per shard (`shard_of`), each on a partition of its own (murmur2 of 12).
const CAMERAS: [&str; 4] = ["cam-1", "cam-2", "cam-3", "cam-4"];
const SHARDS: u32 = 2;
const PARTITIONS: i32 = 12;
const WORKERS: [&str; 3] = ["worker-1", "worker-2", "worker-3"];
/// Frames each camera publishes per ingest run: 30 s of video at `fps_cap = 4`.
const FRAMES: u64 = 120;
const FPS_CAP: f64 = 4.0;

// ---------------------------------------------------------------------------------
// Pipelines and members

/// One pipeline file for both tiers (ingest shards decode its cameras, workers run
/// `argus run --worker` on it): the demo's calibration, zones and rules for four
/// cameras playing the video at its own pace (`realtime`), stamped from the wall clock at their start plus the video's time
/// (`start_time = "now"`), so capture → event is a real latency and a restarted shard's
/// frames come after the killed one's; a `frame.analyzed` per frame, and a short
/// session timeout so a killed member's partitions move soon.
fn site_pipeline(dir: &Path, brokers: &str) -> PathBuf {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml")).unwrap();
    let (head, rest) = demo.split_at(demo.find("[[cameras]]").expect("demo has a camera"));
    let (camera, zones_and_rules) = rest.split_at(rest.find("[[zones]]").expect("demo has zones"));
    assert!(camera.contains(&format!("source = \"file://{VIDEO}\"")), "pipelines/demo.toml changed: update this test");
    let camera: String = camera
        .lines()
        .map(|l| if l.starts_with("realtime") { format!("realtime = true\nstart_time = \"now\"\nfps_cap = {FPS_CAP:.1}\n") } else { format!("{l}\n") })
        .collect();
    let cameras: String = CAMERAS.iter().map(|c| camera.replace("id = \"plaza\"", &format!("id = \"{c}\""))).collect();
    assert_eq!(cameras.matches("realtime = true").count(), CAMERAS.len(), "pipelines/demo.toml changed: update this test");
    assert!(zones_and_rules.contains("frame_summary_every_s = 5.0"), "pipelines/demo.toml changed: update this test");
    let zones_and_rules = zones_and_rules.replace("frame_summary_every_s = 5.0", "frame_summary_every_s = 0.000001");
    let text = format!(
        "{head}{cameras}{zones_and_rules}\n[kafka]\nbrokers = \"{brokers}\"\ntopic = \"frames\"\ngroup_id = \"workers\"\n\
         [kafka.options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n",
        head = head.replace("name = \"demo\"", "name = \"site\"")
    );
    let p = dir.join("site.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `[fleet]` for one member, publishing twice a second (as tests/ingest.rs).
fn fleet_env(brokers: &str, member: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ARGUS_FLEET__ENABLED", "true".into()),
        ("ARGUS_FLEET__BROKERS", brokers.into()),
        ("ARGUS_FLEET__MEMBER_ID", member.into()),
        ("ARGUS_FLEET__PUBLISH_EVERY_S", "0.5".into()),
        ("ARGUS_FLEET__STALE_AFTER_S", "3".into()),
    ]
}

fn ingest_name(shard: u32) -> String {
    format!("ingest-{shard}")
}

/// One running member: its process, API, log and when it started.
struct Proc {
    child: Child,
    base: String,
    log: PathBuf,
    started: Instant,
}

/// Every member of the fleet by name; all are killed when this goes away (a failed
/// assertion included).
struct Members {
    root: PathBuf,
    brokers: String,
    site: PathBuf,
    procs: BTreeMap<String, Proc>,
}

impl Drop for Members {
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

impl Members {
    fn new(root: &Path, brokers: &str) -> Self {
        Self { root: root.to_path_buf(), brokers: brokers.into(), site: site_pipeline(root, brokers), procs: BTreeMap::new() }
    }

    fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Starts (or restarts, in the same directory) worker `name`.
    fn start_worker(&mut self, name: &str) {
        assert!(!self.procs.contains_key(name), "{name} is running");
        let dir = self.dir(name);
        // Three workers share two cores here: one model instance with one thread each
        // (ONNX Runtime's pool of two per process, or "auto"'s two instances per process,
        // three processes, oversubscribes the cores).
        let mut env = fleet_env(&self.brokers, name);
        env.push(("ARGUS_DETECTOR__THREADS", "1".into()));
        env.push(("ARGUS_DETECTOR__WORKERS", "1".into()));
        let (child, base) = argus_run(&dir, &self.site, &["--worker"], &env);
        self.procs.insert(name.into(), Proc { child, base, log: dir.join("stderr"), started: Instant::now() });
    }

    /// Starts (or restarts, with the same arguments and directory) ingest shard `shard`.
    fn start_ingest(&mut self, shard: u32) {
        let name = ingest_name(shard);
        assert!(!self.procs.contains_key(&name), "{name} is running");
        let dir = self.dir(&name);
        let log = dir.join("stderr");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_argus"))
            .args(["ingest", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/argus.toml")])
            .args(["--shard", &format!("{shard}/{SHARDS}"), "--max-frames", &FRAMES.to_string()])
            .current_dir(&dir)
            .envs(fleet_env(&self.brokers, &name))
            .env("ARGUS_PIPELINES", format!("[{:?}]", self.site.display().to_string()))
            .env("ARGUS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        self.procs.insert(name, Proc { child, base: format!("http://127.0.0.1:{port}"), log, started: Instant::now() });
    }

    /// SIGKILLs `name`; returns the CPU seconds it had used and how long it ran.
    fn kill(&mut self, name: &str) -> (f64, Duration) {
        let mut p = self.procs.remove(name).unwrap_or_else(|| panic!("{name} is not running"));
        let cpu = cpu_seconds(p.child.id());
        let ran = p.started.elapsed();
        p.child.kill().unwrap();
        p.child.wait().unwrap();
        (cpu, ran)
    }

    fn base(&self, name: &str) -> &str {
        &self.procs[name].base
    }

    /// The members' logs, the last lines of each, for a failure's message.
    fn logs(&self) -> String {
        let mut names: Vec<String> = WORKERS.iter().map(|w| w.to_string()).collect();
        names.extend((0..SHARDS).map(ingest_name));
        names
            .iter()
            .map(|n| {
                let log = plain_log(&self.root.join(n).join("stderr"));
                let all: Vec<&str> = log.lines().collect();
                format!("== {n} ==\n{}", all[all.len().saturating_sub(30)..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `f` until it answers Ok, at most `within`; the failure shows the last answer
    /// and the logs.
    fn wait<T>(&self, what: &str, within: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
        let t0 = Instant::now();
        loop {
            let last = match f() {
                Ok(v) => return v,
                Err(last) => last,
            };
            if t0.elapsed() > within {
                panic!("{what}: not within {within:?}; last seen: {last}\nlogs:\n{}", self.logs());
            }
            for (name, p) in &self.procs {
                let log = plain_log(&p.log);
                let all: Vec<&str> = log.lines().collect();
                assert!(alive(p.child.id()), "{name} exited while waiting for {what}; its log:\n{}", all[all.len().saturating_sub(60)..].join("\n"));
            }
            std::thread::sleep(Duration::from_millis(400));
        }
    }

    /// Every worker's events, complete lines only.
    fn all_events(&self) -> Vec<Value> {
        WORKERS.iter().flat_map(|w| lines(&self.root.join(w))).collect()
    }
}

/// Whether the process runs (not exited, not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s != "Z" && s != "X")
}

/// User + system CPU seconds of a running process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else { return f64::NAN };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn get(url: &str) -> Result<Value, String> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    client.get(url).send().and_then(|r| r.json()).map_err(|e| format!("{url}: {e}"))
}

/// The complete lines of a worker's JSONL (a line being written is left for later).
fn lines(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("e.jsonl")).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", dir.display()))).collect()
}

fn member<'a>(fleet: &'a Value, id: &str) -> Option<&'a Value> {
    fleet["members"].as_array()?.iter().find(|m| m["member"] == id)
}

fn time_of(v: &Value) -> OffsetDateTime {
    parse_time(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn ms(d: time::Duration) -> f64 {
    d.as_seconds_f64() * 1000.0
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

// ---------------------------------------------------------------------------------
// The frames topic, read from its beginning for the whole run

/// One message of the frames topic.
#[derive(Clone, Debug)]
struct TopicFrame {
    camera: String,
    key: String,
    partition: i32,
    offset: i64,
    captured_at: OffsetDateTime,
    /// The message's time stamp: when the ingest shard handed it to its producer.
    produced_at: Option<OffsetDateTime>,
}

impl TopicFrame {
    /// What the events carry: milliseconds.
    fn at_ms(&self) -> String {
        format_time(self.captured_at)
    }
}

struct TopicReader {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<TopicFrame>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TopicReader {
    fn start(brokers: &str) -> Self {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("fleet-test-reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset("frames", p, Offset::Beginning).unwrap();
        }
        c.assign(&tpl).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, got) = (stop.clone(), got.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
                    let m = match m {
                        Ok(m) => m,
                        Err(e) => {
                            eprintln!("topic reader: {e}");
                            continue;
                        }
                    };
                    let header = |k: &str| {
                        m.headers()
                            .and_then(|h| h.iter().find(|x| x.key == k).and_then(|x| x.value))
                            .map(|v| String::from_utf8(v.to_vec()).unwrap())
                            .unwrap_or_default()
                    };
                    let at = header("captured_at");
                    got.lock().unwrap().push(TopicFrame {
                        camera: header("camera_id"),
                        key: String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap(),
                        partition: m.partition(),
                        offset: m.offset(),
                        captured_at: parse_time(&at).unwrap_or_else(|e| panic!("captured_at {at:?}: {e}")),
                        produced_at: m.timestamp().to_millis().and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t as i128 * 1_000_000).ok()),
                    });
                }
            })
        };
        Self { stop, got, thread: Some(thread) }
    }

    fn frames(&self) -> Vec<TopicFrame> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for TopicReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------

#[test]
fn two_shards_and_three_workers_lose_nothing_and_double_no_incident_when_a_worker_and_a_shard_are_killed() {
    let t_test = Instant::now();
    let broker = Broker::start(&[("frames", PARTITIONS as u32)]);
    let brokers = broker.brokers();
    let root = tempfile::tempdir().unwrap();
    let shard_cams: Vec<BTreeSet<String>> = (0..SHARDS).map(|i| CAMERAS.iter().filter(|c| shard_of(c, SHARDS) == i).map(|c| c.to_string()).collect()).collect();
    assert!(shard_cams.iter().all(|s| s.len() == 2), "the camera ids split 2/2 over the shards: {shard_cams:?}");
    let reader = TopicReader::start(&brokers);
    let mut fleet = Members::new(root.path(), &brokers);

    // Three workers form the group and split the twelve partitions.
    for w in WORKERS {
        fleet.start_worker(w);
    }
    let split = |f: &Value, who: &[&str]| -> Result<(), String> {
        let mut held: Vec<i64> = Vec::new();
        for w in who {
            let m = member(f, w).ok_or(format!("{w} not in the view"))?;
            if m["stale"] != false {
                return Err(format!("{w} stale"));
            }
            let ps = m["partitions"].as_array().cloned().unwrap_or_default();
            held.extend(ps.iter().filter(|p| p["topic"] == "frames").filter_map(|p| p["partition"].as_i64()));
        }
        let mut sorted = held.clone();
        sorted.sort();
        if sorted != (0..PARTITIONS as i64).collect::<Vec<_>>() {
            return Err(format!("partitions held: {held:?}"));
        }
        Ok(())
    };
    fleet.wait("the three workers hold the twelve partitions, each once", Duration::from_secs(90), || {
        let f = get(&format!("{}/v1/fleet", fleet.base("worker-1")))?;
        split(&f, &WORKERS).map_err(|e| format!("{e}: {f}"))
    });
    eprintln!("group formed: {:.1} s after the start", t_test.elapsed().as_secs_f64());

    // Two ingest shards.
    for i in 0..SHARDS {
        fleet.start_ingest(i);
    }
    let t_ingest = Instant::now();

    // The fleet view while everything runs: each camera on exactly its shard.
    fleet.wait("the fleet view shows each camera ingested by exactly its shard", Duration::from_secs(30), || {
        let f = get(&format!("{}/v1/fleet", fleet.base(WORKERS[0])))?;
        for c in CAMERAS {
            let runners: Vec<&str> =
                f["cameras"][c].as_array().map(|a| a.iter().filter_map(|m| m.as_str()).filter(|m| m.starts_with("ingest-")).collect()).unwrap_or_default();
            if runners != [ingest_name(shard_of(c, SHARDS)).as_str()] {
                return Err(format!("{c} ingested by {runners:?}: {}", f["cameras"]));
            }
        }
        Ok(())
    });
    // Mid-run: every camera analysed for a while, and a worker with an incident that
    // opened moments ago (so it is still open when the kill lands: incidents last at
    // least their dwell plus `clear_after_s`).
    // Should none open for 8 s after that, any open one does.
    let mut analysed_since: Option<Instant> = None;
    let (victim, open) = fleet.wait("every camera analysed for 10 s and an incident open on a worker", Duration::from_secs(60), || {
        let mut per: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut open = BTreeMap::new();
        let recent = match analysed_since {
            Some(t) if t.elapsed() > Duration::from_secs(8) => OffsetDateTime::UNIX_EPOCH,
            _ => OffsetDateTime::now_utc() - time::Duration::milliseconds(2500),
        };
        for w in WORKERS {
            let ev = lines(&fleet.root.join(w));
            for e in ev.iter().filter(|e| e["kind"] == "frame.analyzed") {
                per.entry(e["camera_id"].as_str().unwrap().into()).or_default().insert(e["captured_at"].as_str().unwrap().into());
            }
            let fresh: BTreeSet<(String, String)> = open_incidents(&ev)
                .into_iter()
                .filter(|(_, inc)| {
                    ev.iter().any(|e| e["kind"] == "incident.opened" && e["incident_id"] == inc.as_str() && time_of(&e["captured_at"]) >= recent)
                })
                .collect();
            if !fresh.is_empty() {
                open.insert(w, fresh);
            }
        }
        let counts: BTreeMap<&String, usize> = per.iter().map(|(c, s)| (c, s.len())).collect();
        if per.len() < CAMERAS.len() || counts.values().any(|&n| n < 40) {
            return Err(format!("frames analysed per camera: {counts:?}"));
        }
        analysed_since.get_or_insert_with(Instant::now);
        open.into_iter().next().ok_or(format!("no incident open; frames analysed per camera: {counts:?}"))
    });
    let (open_cam, open_inc) = open.iter().next().unwrap().clone();
    let victim_shard = shard_of(&open_cam, SHARDS);
    let victim_ingest = ingest_name(victim_shard);
    let before_kill = get(&format!("{}/v1/cameras", fleet.base(&victim_ingest))).unwrap();
    let listed: BTreeSet<String> = before_kill["cameras"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(listed, shard_cams[victim_shard as usize], "{victim_ingest} lists its own cameras only: {before_kill}");
    assert!(
        before_kill["cameras"].as_object().unwrap().values().all(|c| c["state"] == "streaming"),
        "the kill comes mid-run: {victim_ingest}'s cameras still stream; {before_kill}"
    );

    // SIGKILL the worker with the open incident and the shard of its camera.
    let kill_wall = OffsetDateTime::now_utc();
    let since_ingest = t_ingest.elapsed();
    let (victim_cpu, victim_ran) = fleet.kill(victim);
    let (killed_cpu, killed_ran) = fleet.kill(&victim_ingest);
    // The killed shard stamped its last frame before this instant (it streamed on while
    // the worker was killed first). The restart waits a moment so that the gap between
    // the two runs is wide enough to show that nothing published its cameras meanwhile.
    let ingest_dead = OffsetDateTime::now_utc();
    eprintln!(
        "{:.1} s into the frames: SIGKILLed {victim} (incident {open_inc} of {open_cam} open, {} open in all) and {victim_ingest}",
        since_ingest.as_secs_f64(),
        open.len()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let restart_wall = OffsetDateTime::now_utc();
    fleet.start_ingest(victim_shard);
    fleet.start_worker(victim);

    // 4. After the restarts: the five members live in the view, the restarted ones anew,
    // every partition held once, each shard with its own cameras.
    let survivor = *WORKERS.iter().find(|w| **w != victim).unwrap();
    let view = fleet.wait("the fleet view lists the five members live after the restarts", Duration::from_secs(60), || {
        let f = get(&format!("{}/v1/fleet", fleet.base(survivor)))?;
        let names: BTreeSet<String> = f["members"].as_array().unwrap().iter().map(|m| m["member"].as_str().unwrap().to_string()).collect();
        let want: BTreeSet<String> = WORKERS.iter().map(|w| w.to_string()).chain((0..SHARDS).map(ingest_name)).collect();
        if names != want || f["complete"] != true {
            return Err(format!("members {names:?}, complete {}", f["complete"]));
        }
        for n in &want {
            let m = member(&f, n).unwrap();
            if m["stale"] != false {
                return Err(format!("{n} stale: {m}"));
            }
            if (n == victim || *n == victim_ingest) && time_of(&m["started_at"]) < restart_wall - time::Duration::milliseconds(1) {
                return Err(format!("{n}: still the killed member's record: {m}"));
            }
        }
        split(&f, &WORKERS)?;
        Ok(f)
    });
    for i in 0..SHARDS {
        let m = member(&view, &ingest_name(i)).unwrap();
        assert_eq!((m["role"].as_str(), m["shard"].as_str()), (Some("ingest"), Some(format!("{i}/{SHARDS}").as_str())), "{m}");
        let cams: BTreeSet<String> = m["cameras"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(cams, shard_cams[i as usize], "{} reports its shard's cameras: {m}", ingest_name(i));
    }
    for w in WORKERS {
        assert_eq!(member(&view, w).unwrap()["role"], "worker", "argus run --worker says so");
    }
    eprintln!("fleet view complete again {:.1} s after the restarts", (OffsetDateTime::now_utc() - restart_wall).as_seconds_f64());

    // The end: every camera published its frames (the restarted shard's anew).
    fleet.wait("every shard's cameras published their frames", Duration::from_secs(90), || {
        for i in 0..SHARDS {
            let name = ingest_name(i);
            let cams = get(&format!("{}/v1/cameras", fleet.base(&name)))?;
            let listed: BTreeSet<String> = cams["cameras"].as_object().unwrap().keys().cloned().collect();
            assert_eq!(listed, shard_cams[i as usize], "{name} lists its own cameras only: {cams}");
            if !cams["cameras"].as_object().unwrap().values().all(|c| c["state"] == "ended") {
                return Err(format!("{name}: {cams}"));
            }
        }
        Ok(())
    });
    let ingest_cpu: BTreeMap<u32, (f64, Duration)> =
        (0..SHARDS).map(|i| (i, (cpu_seconds(fleet.procs[&ingest_name(i)].child.id()), fleet.procs[&ingest_name(i)].started.elapsed()))).collect();
    // Which run published a frame: the killed shard's first run stamped its frames
    // before the kill, the restarted one after its start.
    let life = |f: &TopicFrame| -> &'static str {
        if shard_of(&f.camera, SHARDS) != victim_shard {
            "only"
        } else if f.captured_at < restart_wall {
            "killed"
        } else {
            "restarted"
        }
    };
    // Every source ended: once the reader has seen nothing new for 2 s and each running
    // shard's count of confirmed frames matches, the reader has it all.
    let mut seen = (0, Instant::now());
    let (topic, published) = fleet.wait("the topic holds exactly the frames the shards published", Duration::from_secs(30), || {
        let got = reader.frames();
        if got.len() != seen.0 {
            seen = (got.len(), Instant::now());
        }
        if seen.1.elapsed() < Duration::from_secs(2) {
            return Err(format!("{} frames read, the last {:.1} s ago", got.len(), seen.1.elapsed().as_secs_f64()));
        }
        let mut published: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..SHARDS {
            let cams = get(&format!("{}/v1/cameras", fleet.base(&ingest_name(i))))?;
            for (c, v) in cams["cameras"].as_object().unwrap() {
                published.insert(c.clone(), v["frames_published"].as_u64().unwrap());
            }
        }
        for c in CAMERAS {
            let on_topic = got.iter().filter(|f| f.camera == c && life(f) != "killed").count() as u64;
            let want = published[c];
            if on_topic != want {
                return Err(format!("{c}: {on_topic} frames on the topic from its running shard, which counts {want} published"));
            }
        }
        Ok((got, published))
    });
    let published = |_: u32, c: &str| published[c];

    // 1. Every camera published by exactly one shard: its own. The running shards' counts
    // match the topic exactly; the killed run published at least what it reported, and
    // nothing between the kill and the restart; each camera on one partition, keyed by
    // its id, in capture order, no frame twice.
    let mut per_cam: BTreeMap<&str, Vec<&TopicFrame>> = BTreeMap::new();
    for f in &topic {
        assert_eq!(f.key, f.camera, "a frame keyed by its camera");
        assert!(CAMERAS.contains(&f.camera.as_str()), "an unknown camera on the topic: {f:?}");
        per_cam.entry(f.camera.as_str()).or_default().push(f);
    }
    assert_eq!(per_cam.len(), CAMERAS.len(), "every camera reached the topic");
    for (c, frames) in &mut per_cam {
        frames.sort_by_key(|f| f.offset);
        let parts: BTreeSet<i32> = frames.iter().map(|f| f.partition).collect();
        assert_eq!(parts.len(), 1, "{c}: one partition, got {parts:?}");
        assert!(frames.windows(2).all(|w| w[0].captured_at < w[1].captured_at), "{c}: in capture order, no frame twice");
        if shard_of(c, SHARDS) == victim_shard {
            let before = frames.iter().filter(|f| f.captured_at < restart_wall).count() as u64;
            let reported = before_kill["cameras"][*c]["frames_published"].as_u64().unwrap();
            assert!(before >= reported, "{c}: {before} frames of the killed run on the topic, it reported {reported} published");
            assert!(
                // A recording's stamps are anchored at its first frame, so a frame may be
                // stamped a little ahead of the moment it was delivered: 0.5 s of slack.
                frames.iter().all(|f| f.captured_at <= ingest_dead + time::Duration::milliseconds(500) || f.captured_at >= restart_wall),
                "{c}: a frame stamped between the kill and the restart (dead {}, restarted {}): {:?}",
                format_time(ingest_dead),
                format_time(restart_wall),
                frames.iter().filter(|f| f.captured_at > ingest_dead && f.captured_at < restart_wall).map(|f| format_time(f.captured_at)).collect::<Vec<_>>()
            );
            assert!(published(victim_shard, c) > 0, "{c}: the restarted shard publishes it again");
        }
    }
    let partitions: BTreeSet<i32> = per_cam.values().map(|f| f[0].partition).collect();
    assert_eq!(partitions.len(), CAMERAS.len(), "the four cameras on four partitions (murmur2 of 12)");

    // 2. Every frame on the topic analysed by some worker (and nothing else analysed).
    let on_topic: BTreeSet<(String, String)> = topic.iter().map(|f| (f.camera.clone(), f.at_ms())).collect();
    assert_eq!(on_topic.len(), topic.len(), "no two frames of a camera in the same millisecond");
    let all = fleet.wait("the workers analysed every frame of the topic", Duration::from_secs(90), || {
        let all = fleet.all_events();
        let analysed: BTreeSet<(String, String)> = all
            .iter()
            .filter(|e| e["kind"] == "frame.analyzed")
            .map(|e| (e["camera_id"].as_str().unwrap().to_string(), e["captured_at"].as_str().unwrap().to_string()))
            .collect();
        let missing: Vec<&(String, String)> = on_topic.difference(&analysed).collect();
        let extra: Vec<&(String, String)> = analysed.difference(&on_topic).collect();
        if !extra.is_empty() {
            let (c, at) = extra[0];
            let at = parse_time(at).unwrap();
            let near: Vec<String> = reader
                .frames()
                .iter()
                .filter(|f| &f.camera == c && (f.captured_at - at).abs() < time::Duration::seconds(2))
                .map(|f| format!("{} p{} o{} produced {:?}", f.at_ms(), f.partition, f.offset, f.produced_at.map(format_time)))
                .collect();
            let events: Vec<String> = WORKERS
                .iter()
                .flat_map(|w| lines(&fleet.root.join(w)).into_iter().filter(|e| e["camera_id"] == c.as_str() && e["captured_at"] == format_time(at)).map(move |e| format!("{w}: {e}")))
                .collect();
            panic!(
                "analysed frames that are not on the topic: {extra:?}\nkilled {}, restarted {}\non the topic near the first: {near:#?}\nits events: {events:#?}\nlogs:\n{}",
                format_time(kill_wall),
                format_time(restart_wall),
                fleet.logs()
            );
        }
        if missing.is_empty() {
            Ok(all)
        } else {
            Err(format!("{} of {} frames not analysed, e.g. {:?}", missing.len(), on_topic.len(), &missing[..missing.len().min(5)]))
        }
    });
    // How long after the last frame reached the broker the last one was analysed.
    let last_produced = topic.iter().filter_map(|f| f.produced_at).max().unwrap();
    let last_done = all.iter().filter(|e| e["kind"] == "frame.analyzed").map(|e| time_of(&e["processed_at"])).max().unwrap();
    let drain_s = (last_done - last_produced).as_seconds_f64();

    // 4 again, at the end: still the five, all live.
    let f = get(&format!("{}/v1/fleet", fleet.base(survivor))).unwrap();
    let live: BTreeSet<&str> = f["members"].as_array().unwrap().iter().filter(|m| m["stale"] == false).filter_map(|m| m["member"].as_str()).collect();
    assert_eq!(live.len(), WORKERS.len() + SHARDS as usize, "every member live in the view at the end: {f}");

    // 3. Incidents: copies of one event identical (a frame analysed twice gives the same
    // event), each incident opened at most once and closed at most once, closed only
    // after it opened, and never two open at once for one camera and rule.
    let union = by_id(&all);
    let mut opened: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    let mut closed: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    let mut updated: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for e in union.values() {
        let Some(inc) = e["incident_id"].as_str() else { continue };
        match e["kind"].as_str().unwrap() {
            "incident.opened" => opened.entry(inc).or_default().push(e),
            "incident.closed" => closed.entry(inc).or_default().push(e),
            "incident.updated" => updated.entry(inc).or_default().push(e),
            k => panic!("an incident event of kind {k}: {e}"),
        }
    }
    for (inc, o) in &opened {
        assert_eq!(o.len(), 1, "incident {inc} opened {} times: {o:#?}", o.len());
    }
    for (inc, c) in &closed {
        assert_eq!(c.len(), 1, "incident {inc} closed {} times: {c:#?}", c.len());
        let o = opened.get(inc).unwrap_or_else(|| panic!("incident {inc} closed, never opened: {c:#?}"));
        assert!(time_of(&o[0]["captured_at"]) <= time_of(&c[0]["captured_at"]), "incident {inc} closed before it opened");
    }
    for (inc, u) in &updated {
        let o = opened.get(inc).unwrap_or_else(|| panic!("incident {inc} updated, never opened"));
        let from = time_of(&o[0]["captured_at"]);
        let to = closed.get(inc).map(|c| time_of(&c[0]["captured_at"]));
        for e in u {
            let at = time_of(&e["captured_at"]);
            assert!(at >= from && to.is_none_or(|t| at <= t), "incident {inc} updated outside its life: {e}");
        }
    }
    /// (opened at, closed at, incident id) per (camera, rule).
    type Span<'a> = (OffsetDateTime, Option<OffsetDateTime>, &'a str);
    let mut spans: BTreeMap<(String, String), Vec<Span>> = BTreeMap::new();
    for (inc, o) in &opened {
        let e = o[0];
        let rule = e["risk"]["reasons"][0]["rule"].as_str().unwrap_or_default().to_string();
        let end = closed.get(inc).map(|c| time_of(&c[0]["captured_at"]));
        spans.entry((e["camera_id"].as_str().unwrap().into(), rule)).or_default().push((time_of(&e["captured_at"]), end, inc));
    }
    for (key, mut s) in spans {
        s.sort();
        for w in s.windows(2) {
            let (end, next) = (w[0].1, w[1].0);
            assert!(end.is_some_and(|end| end < next), "{key:?}: incidents {} and {} open at once: {w:?}", w[0].2, w[1].2);
        }
    }
    let completed = closed.len();
    assert!(completed >= 1, "at least one incident opened and closed (opened: {}); logs:\n{}", opened.len(), fleet.logs());
    assert!(closed.contains_key(open_inc.as_str()) || opened.contains_key(open_inc.as_str()), "the incident open at the kill is in the outputs");
    let restored: usize = WORKERS
        .iter()
        .filter_map(|w| get(&format!("{}/v1/cameras", fleet.base(w))).ok())
        .map(|c| c["cameras"].as_object().map_or(0, |c| c.values().filter(|c| c["scene_state"].as_str().is_some_and(|s| s.starts_with("restored"))).count()))
        .sum();

    // What became of the incident open at the kill: continued (updated, closed) by the
    // camera's new owner, under its id.
    let mut fate: Vec<String> = Vec::new();
    for w in WORKERS {
        for e in lines(&fleet.root.join(w)).iter().filter(|e| e["incident_id"] == open_inc.as_str()) {
            let at = time_of(&e["processed_at"]);
            fate.push(format!("{} by {w} {}", e["kind"].as_str().unwrap(), if at < kill_wall { "before the kill" } else { "after" }));
        }
    }
    let closed_before_kill = fate.iter().any(|f| f.starts_with("incident.closed") && f.ends_with("before the kill"));
    let states: Vec<String> =
        WORKERS.iter().filter_map(|w| get(&format!("{}/v1/cameras/{open_cam}", fleet.base(w))).ok().map(|c| format!("{w}: {}", c["scene_state"]))).collect();
    eprintln!(
        "incident {open_inc} of {open_cam}, {} at the kill: {fate:?}; scene_state of {open_cam}: {states:?}",
        if closed_before_kill { "already closed (a race)" } else { "open" }
    );

    // The numbers for the release note.
    let raw_analyzed = all.iter().filter(|e| e["kind"] == "frame.analyzed").count();
    eprintln!(
        "frames: {} on the topic, {} frame.analyzed lines ({} analysed twice, around the killed worker); {} incidents opened, {completed} closed, {} open at the end; {restored} cameras continued from a checkpoint; the last frame analysed {drain_s:.1} s after it was produced",
        topic.len(),
        raw_analyzed,
        raw_analyzed - on_topic.len(),
        opened.len(),
        opened.len() - completed
    );
    let rate = |label: &str, frames: Vec<&TopicFrame>, cpu: (f64, Duration)| {
        let n = frames.len();
        let first = frames.iter().map(|f| f.captured_at).min().unwrap();
        let last = frames.iter().map(|f| f.captured_at).max().unwrap();
        let span = (last - first).as_seconds_f64();
        eprintln!(
            "{label}: {n} frames published in {span:.1} s: {:.2} frames/s ({:.2} per camera); {:.2} CPU-s in {:.1} s alive: {:.3} cores ({:.3} per camera)",
            (n - 1) as f64 / span,
            (n - 1) as f64 / span / 2.0,
            cpu.0,
            cpu.1.as_secs_f64(),
            cpu.0 / cpu.1.as_secs_f64(),
            cpu.0 / cpu.1.as_secs_f64() / 2.0
        );
    };
    for i in 0..SHARDS {
        let mine = |f: &&TopicFrame| shard_of(&f.camera, SHARDS) == i;
        if i == victim_shard {
            rate(&format!("{} (killed run)", ingest_name(i)), topic.iter().filter(mine).filter(|f| life(f) == "killed").collect(), (killed_cpu, killed_ran));
            rate(&format!("{} (restarted)", ingest_name(i)), topic.iter().filter(mine).filter(|f| life(f) == "restarted").collect(), ingest_cpu[&i]);
        } else {
            rate(&ingest_name(i), topic.iter().filter(mine).collect(), ingest_cpu[&i]);
        }
    }
    for w in WORKERS {
        let p = &fleet.procs[w];
        let (cpu, ran) = (cpu_seconds(p.child.id()), p.started.elapsed().as_secs_f64());
        let n = lines(&fleet.root.join(w)).iter().filter(|e| e["kind"] == "frame.analyzed").count();
        let killed = if w == victim {
            format!(" (its killed run: {victim_cpu:.1} CPU-s in {:.1} s: {:.2} cores)", victim_ran.as_secs_f64(), victim_cpu / victim_ran.as_secs_f64())
        } else {
            String::new()
        };
        eprintln!("{w}: {n} frames analysed; {cpu:.1} CPU-s in {ran:.1} s: {:.2} cores{killed}", cpu / ran);
    }
    // Capture → event: each frame's first analysis (processed_at − captured_at).
    let mut first: BTreeMap<(String, String), (OffsetDateTime, OffsetDateTime, f64)> = BTreeMap::new();
    for e in all.iter().filter(|e| e["kind"] == "frame.analyzed") {
        let key = (e["camera_id"].as_str().unwrap().to_string(), e["captured_at"].as_str().unwrap().to_string());
        let (cap, done) = (time_of(&e["captured_at"]), time_of(&e["processed_at"]));
        let lat = e["latency_ms"].as_f64().unwrap_or(f64::NAN);
        first
            .entry(key)
            .and_modify(|v| {
                if done < v.1 {
                    *v = (cap, done, lat)
                }
            })
            .or_insert((cap, done, lat));
    }
    let produced: BTreeMap<(String, String), OffsetDateTime> = topic.iter().filter_map(|f| f.produced_at.map(|p| ((f.camera.clone(), f.at_ms()), p))).collect();
    // `pick(captured_at, processed_at)`.
    let report = |label: &str, pick: &dyn Fn(OffsetDateTime, OffsetDateTime) -> bool| {
        let chosen: Vec<_> = first.iter().filter(|(_, v)| pick(v.0, v.1)).collect();
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        let total = sorted(chosen.iter().map(|(_, v)| ms(v.1 - v.0)).collect());
        let to_topic = sorted(chosen.iter().filter_map(|(k, v)| produced.get(*k).map(|p| ms(*p - v.0))).collect());
        let from_topic = sorted(chosen.iter().filter_map(|(k, v)| produced.get(*k).map(|p| ms(v.1 - *p))).collect());
        let in_worker = sorted(chosen.iter().map(|(_, v)| v.2).collect());
        let q = |v: &[f64]| {
            format!(
                "p50 {:.0} ms, p90 {:.0}, p99 {:.0}, max {:.0}",
                percentile(v, 0.5),
                percentile(v, 0.9),
                percentile(v, 0.99),
                v.last().copied().unwrap_or(f64::NAN)
            )
        };
        eprintln!("capture → event, {label} ({} frames): {}", total.len(), q(&total));
        eprintln!("  of which capture → handed to the producer (the message's time stamp): {}", q(&to_topic));
        eprintln!("  producer → event (broker, consumer, detector, scene): {}", q(&from_topic));
        eprintln!("  in the worker (received from Kafka → event, latency_ms): {}", q(&in_worker));
    };
    report("every frame", &|_, _| true);
    report("steady: 3 workers, analysed before the kills", &|_, done| done < kill_wall);
    // The failover: the longest a camera's frames waited, and the longest stretch of a
    // camera's analysis with nothing done.
    let mut gaps: Vec<(f64, String)> = Vec::new();
    for c in CAMERAS {
        let mut done: Vec<OffsetDateTime> = first.iter().filter(|(k, _)| k.0 == c).map(|(_, v)| v.1).collect();
        done.sort();
        let gap = done.windows(2).map(|w| ms(w[1] - w[0])).fold(0.0, f64::max);
        gaps.push((gap, c.to_string()));
    }
    gaps.sort_by(|a, b| a.0.total_cmp(&b.0));
    eprintln!("longest pause in a camera's analysis: {:.1} s ({}); per camera: {gaps:?}", gaps.last().unwrap().0 / 1000.0, gaps.last().unwrap().1);
    eprintln!("wall time: {:.1} s", t_test.elapsed().as_secs_f64());
    drop(fleet);
    drop(reader);
    if std::env::var_os("ARGUS_TEST_KEEP").is_some() {
        eprintln!("kept: {}", root.keep().display());
    }
}
