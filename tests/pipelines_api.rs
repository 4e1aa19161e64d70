//! `PUT /v1/pipelines/{name}` against a running Argus on the demo: an editor's key adds
//! a zone and changes a dwell time; the file keeps its comments, the old one is kept as a
//! backup, the reload applies it; a bad polygon is refused whole with its key; keys
//! without the scope and requests without a key are refused.
#![cfg(all(feature = "gstreamer", feature = "onnx"))]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ALICE: &str = "alice-key-0123456789abcdef";
const BOB: &str = "bob-key-0123456789abcdefgh";

struct Argus(Child);
impl Drop for Argus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(dir: &Path, pipeline: &Path) -> (Argus, String) {
    let port = free_port();
    let log = std::fs::File::create(dir.join("argus.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--config", &format!("{}/config/argus.toml", env!("CARGO_MANIFEST_DIR"))])
        .current_dir(dir)
        .env("ARGUS_PIPELINES", format!("[{:?}]", pipeline.display().to_string()))
        .env("ARGUS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ARGUS_SERVER__NAMED_API_KEYS__ALICE", ALICE)
        .env("ARGUS_SERVER__NAMED_API_KEYS__BOB", BOB)
        .env("ARGUS_SERVER__PIPELINE_EDITORS", "[\"alice\"]")
        .env("ARGUS_SINKS__STDOUT__ENABLED", "false")
        .env("ARGUS_DETECTOR__WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    (Argus(child), format!("http://127.0.0.1:{port}"))
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

fn get(base: &str, path: &str) -> (u16, Value) {
    match client().get(format!("{base}{path}")).bearer_auth(ALICE).send() {
        Ok(r) => (r.status().as_u16(), r.json().unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

fn put(base: &str, key: Option<&str>, pipeline: &Value) -> (u16, Value) {
    let mut rb = client().put(format!("{base}/v1/pipelines/demo")).json(pipeline);
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let r = rb.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_editor_changes_a_pipeline_through_the_api_and_the_file_keeps_its_comments() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.toml");
    // In real time, so the camera is still running when the edit lands.
    let original =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/demo.toml")).unwrap().replacen("realtime = false", "realtime = true", 1);
    std::fs::write(&file, &original).unwrap();
    let (_argus, base) = start(dir.path(), &file);
    wait_until("the API", Duration::from_secs(60), || get(&base, "/v1/pipelines/demo").0 == 200);
    let (_, doc) = get(&base, "/v1/pipelines/demo");
    let mut edited = doc["pipeline"].clone();

    // Without a key, with a key that may not edit, for a pipeline that is not there.
    assert_eq!(put(&base, None, &edited).0, 401);
    let (code, body) = put(&base, Some(BOB), &edited);
    assert_eq!((code, body["error"].as_str()), (403, Some("FORBIDDEN")), "{body}");
    let r = client().put(format!("{base}/v1/pipelines/nope")).bearer_auth(ALICE).json(&edited).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // A new zone and a longer dwell on the crossing.
    edited["zones"].as_array_mut().unwrap().push(json!({ "id": "kiosk", "polygon": [[-2.0, 12.0], [0.0, 12.0], [0.0, 14.0], [-2.0, 14.0]] }));
    edited["rules"][0]["min_dwell_s"] = json!(2.5);
    let (code, body) = put(&base, Some(ALICE), &edited);
    assert_eq!(code, 200, "{body}");
    assert_eq!((body["changed"].as_bool(), body["by"].as_str()), (Some(true), Some("alice")), "{body}");

    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("id = \"kiosk\"") && written.contains("min_dwell_s = 2.5"), "{written}");
    for comment in ["# the paved crossing right of the lamp post", "# one person: medium; two: high; three or more: critical", "# a brisk walk is ~1.8 m/s"] {
        assert!(written.contains(comment), "lost the comment {comment:?}:\n{written}");
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("demo.toml.bak")).unwrap(), original, "the previous version is the backup");
    // Only what changed changed: without the new zone, the file reads as before but
    // for the one value (the new zone sits after the others).
    let zone = "[[zones]]\nid = \"kiosk\"\npolygon = [[-2.0, 12.0], [0.0, 12.0], [0.0, 14.0], [-2.0, 14.0]]\n\n";
    assert!(written.contains(zone), "{written}");
    assert_eq!(written.replacen(zone, "", 1).trim_end(), original.replacen("min_dwell_s = 1.0", "min_dwell_s = 2.5", 1).trim_end());

    // The reload applies it: the API serves the new zone, the camera runs on.
    wait_until("the reload", Duration::from_secs(20), || {
        get(&base, "/v1/pipelines/demo").1["pipeline"]["zones"].as_array().is_some_and(|z| z.iter().any(|z| z["id"] == "kiosk"))
    });
    let (_, doc) = get(&base, "/v1/pipelines/demo");
    assert_eq!(doc["pipeline"]["rules"][0]["min_dwell_s"], 2.5);
    let log = std::fs::read_to_string(dir.path().join("argus.log")).unwrap();
    assert!(log.contains("pipeline changed through the API") && log.contains("alice"), "the change is logged with who made it");

    // A zone of two points is refused whole, with its key, and nothing is written.
    let mut bad = doc["pipeline"].clone();
    bad["zones"][2]["polygon"] = json!([[0.0, 0.0], [1.0, 1.0]]);
    let (code, body) = put(&base, Some(ALICE), &bad);
    assert_eq!(code, 422, "{body}");
    let issues = body["details"]["issues"].as_array().unwrap();
    assert!(issues.iter().any(|i| i["key"].as_str().is_some_and(|k| k.starts_with("zones[2]")) && !i["fix"].as_str().unwrap_or("").is_empty()), "{body}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written, "a refused edit writes nothing");
    // Not a pipeline at all.
    let (code, body) = put(&base, Some(ALICE), &json!({ "name": "demo", "cameras": "many" }));
    assert_eq!(code, 422, "{body}");
}
