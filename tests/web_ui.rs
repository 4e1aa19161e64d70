//! The operator page (`/`) and the API docs page (`/docs`) in a real browser: `argus run`
//! on the demo video in real time, and headless Chromium (Debian's `chromium`) driven over
//! the DevTools protocol on a pipe (`--remote-debugging-pipe`: file descriptors 3 and 4,
//! NUL-separated JSON), so no WebSocket client or driver binary is needed.
//!
//! Checks what an operator sees: the camera card with its state and a snapshot, event rows
//! from the store and from the live stream, no script errors and no CSP violations. With
//! API keys on, the page asks for a key, refuses a wrong one and works with the right one
//! without ever showing it. Screenshots go to `target/artefacts/`.
#![cfg(all(feature = "gstreamer", feature = "onnx"))]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Exactly the flags the issue asks for (no sandbox: tests may run as root; no background
/// networking: this machine has no network and Chromium would keep trying).
const CHROMIUM_FLAGS: &[&str] =
    &["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];
const WIDTH: u32 = 1280;
/// The second camera's id.
const SECOND: &str = "lobby";
const HEIGHT: u32 = 900;

/// One Argus and one browser at a time: the machine has two cores, and the detector runs
/// in real time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `target/artefacts`, next to the `target/tmp` Cargo gives integration tests.
fn artefacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------
// Argus on the demo video, in real time so that it is still running while the browser looks.

struct Argus {
    base: String,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

fn start_argus(api_keys: Option<&str>) -> Argus {
    start_argus_with(api_keys, &[])
}

/// `env`: more environment (e.g. `[fleet]`).
fn start_argus_with(api_keys: Option<&str>, env: &[(&str, String)]) -> Argus {
    let dir = tempfile::tempdir().unwrap();
    let repo = env!("CARGO_MANIFEST_DIR");
    let demo = std::fs::read_to_string(format!("{repo}/pipelines/demo.toml")).unwrap();
    let realtime = demo.replace("realtime = false", "realtime = true").replace("frame_summary_every_s = 5.0", "frame_summary_every_s = 1.0");
    assert!(realtime.contains("realtime = true") && realtime.contains("frame_summary_every_s = 1.0"), "pipelines/demo.toml changed: update this test");
    let pipeline = dir.path().join("demo-realtime.toml");
    std::fs::write(&pipeline, realtime).unwrap();
    // A second camera (its own pipeline, no rules, one frame in five) so that the camera
    // filter has something to filter out.
    let second = dir.path().join("second.toml");
    std::fs::write(
        &second,
        format!("name = \"second\"\n[[cameras]]\nid = \"{SECOND}\"\nsource = \"file:///usr/share/doc/opencv-doc/examples/data/vtest.avi\"\nrealtime = true\nfps_cap = 2.0\n[events]\nframe_summary_every_s = 1.0\n"),
    )
    .unwrap();
    let port = free_port();
    let cfg = argus::config::EMBEDDED_CONFIG
        .replace("pipelines = [\"pipelines/demo.toml\"]", &format!("pipelines = [\"{}\", \"{}\"]", pipeline.display(), second.display()))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("var/events.jsonl", &dir.path().join("events.jsonl").display().to_string())
        .replace("var/argus.db", &dir.path().join("argus.db").display().to_string());
    let cfg_path = dir.path().join("argus.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_argus"));
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.args(["run", "--config"]).arg(&cfg_path).stdout(Stdio::null()).stderr(std::fs::File::create(dir.path().join("argus.log")).unwrap());
    match api_keys {
        Some(k) => cmd.env("ARGUS_API_KEYS", k),
        None => cmd.env_remove("ARGUS_API_KEYS"),
    };
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");

    // Until the camera streams and a frame went through the detector.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.path().join("argus.log")).unwrap_or_default();
            panic!("argus exited early ({status}):\n{log}");
        }
        assert!(Instant::now() < deadline, "the plaza and lobby cameras did not start streaming within 120 s");
        if let Some((200, body)) = get(&format!("{base}/v1/cameras"), api_keys) {
            let up = |id: &str| body["cameras"][id]["state"] == "streaming" && body["cameras"][id]["frames_processed"].as_u64().unwrap_or(0) > 0;
            if up("plaza") && up(SECOND) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Argus { base, _child: child, _dir: dir }
}

fn get(url: &str, key: Option<&str>) -> Option<(u16, Value)> {
    let mut req = reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(5));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().ok()?;
    let code = r.status().as_u16();
    let text = r.text().ok()?;
    Some((code, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

fn status_of(url: &str, key: Option<&str>) -> u16 {
    get(url, key).map(|(c, _)| c).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Headless Chromium over the DevTools protocol on a pipe.

unsafe extern "C" {
    fn dup2(old: i32, new: i32) -> i32;
    fn close(fd: i32) -> i32;
}

fn chromium_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ARGUS_CHROMIUM") {
        return PathBuf::from(p);
    }
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("Chromium is not installed (looked for /usr/bin/chromium; ARGUS_CHROMIUM overrides): run scripts/setup, which installs Debian's `chromium` package");
}

struct Browser {
    to_browser: std::io::PipeWriter,
    from_browser: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    /// JavaScript exceptions and security (CSP) messages seen so far.
    problems: Vec<String>,
    /// Console and log lines, for failure messages.
    console: Vec<String>,
    _child: KillOnDrop,
    profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        let bin = chromium_binary();
        let profile = tempfile::tempdir().unwrap();
        // fd 3: what Chromium reads (our commands); fd 4: what it writes (answers, events).
        let (cmd_read, cmd_write) = std::io::pipe().unwrap();
        let (ev_read, ev_write) = std::io::pipe().unwrap();
        let (r, w) = (cmd_read.as_raw_fd(), ev_write.as_raw_fd());
        let mut cmd = Command::new(&bin);
        cmd.args(CHROMIUM_FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={WIDTH},{HEIGHT}"))
            .args(["--remote-debugging-pipe", "--hide-scrollbars", "--mute-audio", "about:blank"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(profile.path().join("chromium.log")).unwrap());
        // SAFETY: only async-signal-safe calls between fork and exec. Going through fds
        // 100/101 first makes it right even when the pipes already sit on 3 or 4; dup2
        // clears close-on-exec on the copies, the originals (O_CLOEXEC) close at exec.
        unsafe {
            cmd.pre_exec(move || {
                if dup2(r, 100) < 0 || dup2(w, 101) < 0 || dup2(100, 3) < 0 || dup2(101, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                close(100);
                close(101);
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => KillOnDrop(c),
            Err(e) => panic!("cannot start {} ({e}): run scripts/setup, which installs Debian's `chromium` package", bin.display()),
        };
        drop(cmd_read);
        drop(ev_write);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(ev_read);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            to_browser: cmd_write,
            from_browser: rx,
            next_id: 0,
            session: String::new(),
            problems: Vec::new(),
            console: Vec::new(),
            _child: child,
            profile,
        };

        // Attach to the page Chromium opened (flat mode: commands carry a sessionId).
        let deadline = Instant::now() + Duration::from_secs(30);
        let target = loop {
            let targets = b.call_browser("Target.getTargets", json!({}));
            if let Some(t) = targets["targetInfos"].as_array().and_then(|ts| ts.iter().find(|t| t["type"] == "page")) {
                break t["targetId"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "Chromium opened no page:\n{}", b.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        };
        let attached = b.call_browser("Target.attachToTarget", json!({ "targetId": target, "flatten": true }));
        b.session = attached["sessionId"].as_str().expect("a session id").to_string();
        b.call("Runtime.enable", json!({}));
        b.call("Log.enable", json!({}));
        b.call("Page.enable", json!({}));
        b.call("Emulation.setDeviceMetricsOverride", json!({ "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": false }));
        b
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("dbus")).collect();
        let console = self.console.iter().rev().take(20).rev().cloned().collect::<Vec<_>>().join("\n");
        format!("chromium log:\n{}\npage console:\n{console}", lines[lines.len().saturating_sub(20)..].join("\n"))
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if session {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to_browser.write_all(&bytes).unwrap_or_else(|e| panic!("Chromium went away ({e}):\n{}", self.log_tail()));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match self.from_browser.recv_timeout(left) {
                Ok(m) => m,
                Err(e) => panic!("no answer to {method} ({e}):\n{}", self.log_tail()),
            };
            if m["id"] == id {
                if let Some(err) = m.get("error") {
                    panic!("{method} failed: {err}");
                }
                return m["result"].clone();
            }
            self.note_event(&m);
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    /// Keeps what matters from unsolicited events: script errors and CSP reports fail the
    /// test; console lines help explain a failure.
    fn note_event(&mut self, m: &Value) {
        let p = &m["params"];
        match m["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                let text = d["exception"]["description"].as_str().or(d["text"].as_str()).unwrap_or("?");
                self.problems.push(format!("JavaScript exception: {text} at {}:{}", d["url"].as_str().unwrap_or(""), d["lineNumber"]));
            }
            Some("Log.entryAdded") => {
                let e = &p["entry"];
                let line = format!(
                    "[{} {}] {} {}",
                    e["source"].as_str().unwrap_or(""),
                    e["level"].as_str().unwrap_or(""),
                    e["text"].as_str().unwrap_or(""),
                    e["url"].as_str().unwrap_or("")
                );
                if e["source"] == "security" || e["text"].as_str().is_some_and(|t| t.contains("Content Security Policy")) {
                    self.problems.push(line.clone());
                }
                self.console.push(line);
            }
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = p["args"].as_array().map(|a| a.iter().map(|x| x["value"].to_string()).collect()).unwrap_or_default();
                let line = format!("[console.{}] {}", p["type"].as_str().unwrap_or(""), args.join(" "));
                if p["type"] == "error" && line.contains("Content Security Policy") {
                    self.problems.push(line.clone());
                }
                self.console.push(line);
            }
            _ => {}
        }
    }

    /// Navigates and waits for the new document to finish loading.
    fn navigate(&mut self, url: &str) {
        // A mark on the old window tells it apart from the new one (the URL may be the same).
        self.eval("window.__argusTestOld = true");
        let r = self.call("Page.navigate", json!({ "url": url }));
        assert!(r.get("errorText").is_none(), "navigating to {url}: {r}");
        let want = json!(url);
        self.wait_for(
            &format!("{url} to load"),
            "({ href: location.href, ready: document.readyState, old: !!window.__argusTestOld })",
            Duration::from_secs(20),
            |v| v["href"] == want && v["ready"] == "complete" && v["old"] == false,
        );
    }

    /// Evaluates an expression in the page and returns its value (JSON).
    fn eval(&mut self, expr: &str) -> Value {
        self.try_eval(expr).unwrap_or_else(|ex| panic!("evaluating `{expr}` threw: {ex}"))
    }

    fn try_eval(&mut self, expr: &str) -> Result<Value, Value> {
        let r = self.call("Runtime.evaluate", json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }));
        match r.get("exceptionDetails") {
            Some(ex) => Err(ex.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// Polls `expr` (a page state as JSON) until `done` accepts it.
    fn wait_for(&mut self, what: &str, expr: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            // While a navigation is under way the old document (or none) answers: an
            // exception then is not the page's fault, so keep polling.
            let v = self.try_eval(expr).unwrap_or_else(|ex| json!({ "evaluation_error": ex }));
            if v.get("evaluation_error").is_none() && done(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; last page state: {v:#}\n{}", self.log_tail());
            }
            // Drain events meanwhile so exceptions are noticed.
            while let Ok(m) = self.from_browser.try_recv() {
                self.note_event(&m);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64_decode(r["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
        println!("screenshot: {}", path.display());
    }

    fn assert_no_problems(&mut self) {
        while let Ok(m) = self.from_browser.try_recv() {
            self.note_event(&m);
        }
        assert!(self.problems.is_empty(), "the page had errors:\n{}\n{}", self.problems.join("\n"), self.log_tail());
    }

    fn close(mut self) {
        let _ = self.call_browser("Browser.close", json!({}));
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    }
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | (val(c) << (18 - 6 * i)));
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// What the page shows, as JSON.

const PAGE_STATE: &str = r#"(() => {
  if (document.readyState !== 'complete' || !document.getElementById('cameras')) return { loading: location.href };
  const cams = [...document.querySelectorAll('#cameras .camera[data-camera-id]')].map(c => {
    const img = c.querySelector('img');
    return { id: c.dataset.cameraId, state: c.dataset.state || null, snapshot: c.dataset.snapshot,
             natural_width: img ? img.naturalWidth : 0,
             badge: (c.querySelector('.badge') || {}).textContent || '',
             text: c.innerText };
  });
  const events = [...document.querySelectorAll('#events .event')].map(e => ({
    id: e.dataset.eventId, kind: e.dataset.kind, level: e.dataset.level, source: e.dataset.source,
    camera: e.dataset.cameraId, color: getComputedStyle(e).borderLeftColor,
    caption: (e.querySelector('.caption') || {}).textContent || '' }));
  return { live: document.body.dataset.live, auth: document.body.dataset.auth,
           auth_visible: getComputedStyle(document.getElementById('auth')).display !== 'none',
           auth_error: document.getElementById('auth-error').textContent,
           version: document.getElementById('version').textContent,
           cameras: cams, events, text: document.body.innerText,
           html: document.documentElement.outerHTML.length };
})()"#;

/// The fleet panel: hidden unless the member has `[fleet]` on; one row per member.
const FLEET_STATE: &str = r#"(() => {
  const p = document.getElementById('fleet-panel');
  if (document.readyState !== 'complete' || !p) return { loading: location.href };
  return { hidden: p.hidden, count: document.getElementById('fleet-count').textContent,
           members: [...document.querySelectorAll('#fleet .member')].map(m => ({
             member: m.dataset.member, role: m.dataset.role, stale: m.dataset.stale, text: m.innerText })) };
})()"#;

/// Per operation on /docs: the response codes, parameter names and code spans shown.
const DOCS_DETAIL: &str = r#"(() => {
  const out = {};
  for (const d of document.querySelectorAll('#operations .operation')) {
    const text = (sel) => [...d.querySelectorAll(sel)].map(n => n.textContent.replace(/required$/, '').trim());
    out[d.dataset.method + ' ' + d.dataset.path] = { statuses: text('.status'), params: text('td.name'), codes: text('code') };
  }
  return out;
})()"#;

fn plaza(state: &Value) -> Option<&Value> {
    state["cameras"].as_array()?.iter().find(|c| c["id"] == "plaza")
}

fn live_rows(state: &Value) -> usize {
    state["events"].as_array().map(|e| e.iter().filter(|r| r["source"] == "live").count()).unwrap_or(0)
}

/// Cameras, events (from history and live) and, where the route serves it, the snapshot.
fn wait_for_operator_view(b: &mut Browser) -> Value {
    b.wait_for("the plaza camera, a live event and a snapshot", PAGE_STATE, Duration::from_secs(60), |s| {
        let Some(cam) = plaza(s) else { return false };
        let snap_ok = cam["snapshot"] == "loaded" && cam["natural_width"].as_u64().unwrap_or(0) > 0;
        s["live"] == "open" && live_rows(s) >= 1 && snap_ok
    })
}

/// The snapshot route answers 200 with a JPEG (the camera has processed a frame, so it
/// must; waits a little for the first drawn snapshot).
fn assert_snapshot_served(base: &str, key: Option<&str>) {
    let url = format!("{base}/v1/cameras/plaza/snapshot.jpg");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut req = reqwest::blocking::Client::new().get(&url).timeout(Duration::from_secs(5));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let r = req.send().ok();
        let code = r.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
        if code == 200 {
            let r = r.unwrap();
            assert_eq!(r.headers()["content-type"], "image/jpeg");
            let body = r.bytes().unwrap();
            assert!(body.starts_with(&[0xff, 0xd8]), "a JPEG");
            return;
        }
        assert!(Instant::now() < deadline, "{url} answered {code}, not 200, 30 s after the camera processed frames");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn check_operator_view(s: &Value) {
    let cam = plaza(s).unwrap();
    assert_eq!(cam["state"], "streaming", "{cam}");
    assert_eq!(cam["badge"], "streaming");
    assert!(cam["text"].as_str().unwrap().contains("fps in"), "{cam}");
    assert!(s["version"].as_str().unwrap().starts_with('v'), "the header shows the version: {}", s["version"]);
    let events = s["events"].as_array().unwrap();
    assert!(events.len() <= 200, "the feed is bounded");
    for e in events {
        assert!(e["camera"] == "plaza" || e["camera"] == SECOND, "{e}");
        assert!(["frame.analyzed", "incident.opened", "incident.updated", "incident.closed"].contains(&e["kind"].as_str().unwrap()), "{e}");
        assert!(["low", "medium", "high", "critical"].contains(&e["level"].as_str().unwrap()), "{e}");
        assert!(["history", "live"].contains(&e["source"].as_str().unwrap()), "{e}");
        assert!(!e["caption"].as_str().unwrap().is_empty(), "{e}");
    }
    // Level colours: a low row and a higher row are drawn differently.
    let colour = |lvl: &str| events.iter().find(|e| e["level"] == lvl).map(|e| e["color"].as_str().unwrap().to_string());
    if let (Some(low), Some(other)) = (colour("low"), colour("medium").or(colour("high")).or(colour("critical"))) {
        assert_ne!(low, other, "levels have their own colours");
    }
    let ids: std::collections::HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "no event is shown twice");
    assert_eq!(cam["snapshot"], "loaded");
    assert!(cam["natural_width"].as_u64().unwrap_or(0) > 0, "the snapshot image decoded: {cam}");
}

#[test]
fn operator_page_shows_cameras_live_events_and_snapshots() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let argus = start_argus(None);
    let mut b = Browser::launch();

    assert_snapshot_served(&argus.base, None);
    b.navigate(&format!("{}/", argus.base));
    let s = wait_for_operator_view(&mut b);
    check_operator_view(&s);
    assert_eq!(b.eval(FLEET_STATE)["hidden"], true, "no [fleet]: no fleet panel");
    assert_eq!(s["auth"], "none", "no key configured: no prompt");
    assert_eq!(s["auth_visible"], false);
    // A few seconds more: the snapshot refreshes and the feed keeps growing.
    let before = live_rows(&s);
    let s = b.wait_for("more live events", PAGE_STATE, Duration::from_secs(20), |s| live_rows(s) > before);
    check_operator_view(&s);

    // The level filter goes to the server (history and stream): from `medium` up, the
    // demo's incidents are there and its `low` frame summaries are not.
    let set_level = |b: &mut Browser, level: &str| {
        b.eval(&format!("(() => {{ const s = document.getElementById('filter-level'); s.value = '{level}'; s.dispatchEvent(new Event('change')); }})()"));
    };
    set_level(&mut b, "medium");
    let s = b.wait_for("rows at medium or above", PAGE_STATE, Duration::from_secs(20), |s| s["live"] == "open" && !s["events"].as_array().unwrap().is_empty());
    let levels: Vec<&str> = s["events"].as_array().unwrap().iter().map(|e| e["level"].as_str().unwrap()).collect();
    assert!(levels.iter().all(|l| *l != "low"), "min level medium: {levels:?}");
    set_level(&mut b, "");
    b.wait_for("low rows back after clearing the filter", PAGE_STATE, Duration::from_secs(20), |s| {
        s["live"] == "open" && s["events"].as_array().unwrap().iter().any(|e| e["level"] == "low")
    });
    // Clicking a camera card filters the feed to it; clicking again shows all cameras.
    // Two cameras feed it, so a filter that did nothing would leave lobby rows.
    let cameras_shown = |s: &Value| -> std::collections::BTreeSet<String> {
        s["events"].as_array().unwrap().iter().map(|e| e["camera"].as_str().unwrap().to_string()).collect()
    };
    let both: std::collections::BTreeSet<String> = ["plaza".to_string(), SECOND.to_string()].into();
    b.wait_for("rows of both cameras", PAGE_STATE, Duration::from_secs(30), |s| s["live"] == "open" && cameras_shown(s) == both);
    let click_plaza =
        "(() => { document.querySelector('#cameras .camera[data-camera-id=plaza]').click(); return document.getElementById('filter-camera').value; })()";
    assert_eq!(b.eval(click_plaza), json!("plaza"));
    let s = b.wait_for("the camera filter", PAGE_STATE, Duration::from_secs(20), |s| s["live"] == "open" && !s["events"].as_array().unwrap().is_empty());
    assert_eq!(cameras_shown(&s), ["plaza".to_string()].into(), "only plaza rows after filtering");
    // New rows (history reloaded and the live stream) stay filtered.
    let before = live_rows(&s);
    let s = b.wait_for("more live rows, filtered", PAGE_STATE, Duration::from_secs(20), |s| live_rows(s) > before);
    assert_eq!(cameras_shown(&s), ["plaza".to_string()].into(), "only plaza rows after filtering");
    assert_eq!(b.eval(click_plaza), json!(""));
    b.wait_for("all cameras again", PAGE_STATE, Duration::from_secs(30), |s| s["live"] == "open" && cameras_shown(s) == both);

    b.screenshot(&artefacts_dir().join("web-ui.png"));
    b.assert_no_problems();

    // The docs page renders every operation and schema of /openapi.json.
    let openapi = get(&format!("{}/openapi.json", argus.base), None);
    b.navigate(&format!("{}/docs", argus.base));
    match openapi {
        Some((200, doc)) => {
            let docs = b.wait_for("the docs page", "document.body.dataset.state", Duration::from_secs(20), |v| v == "ready" || v == "error");
            assert_eq!(docs, "ready");
            let shown = b.eval("[...document.querySelectorAll('#operations .operation')].map(d => d.dataset.method + ' ' + d.dataset.path)");
            let shown: Vec<String> = serde_json::from_value(shown).unwrap();
            let mut expected = Vec::new();
            for (path, item) in doc["paths"].as_object().expect("paths") {
                for m in ["get", "put", "post", "delete", "options", "head", "patch", "trace"] {
                    if item.get(m).is_some() {
                        expected.push(format!("{} {path}", m.to_uppercase()));
                    }
                }
            }
            let (mut a, mut e) = (shown.clone(), expected.clone());
            a.sort();
            e.sort();
            assert_eq!(a, e, "every operation of /openapi.json, once");
            for op in ["GET /v1/events", "GET /v1/cameras", "GET /v1/info", "POST /v1/analyze"] {
                assert!(e.iter().any(|x| x == op), "/openapi.json documents {op}: {e:?}");
            }
            // Each operation's parameters, request body types and response codes are shown.
            let rendered = b.eval(DOCS_DETAIL);
            for (path, item) in doc["paths"].as_object().unwrap() {
                for m in ["get", "put", "post", "delete", "patch"] {
                    let Some(op) = item.get(m) else { continue };
                    let key = format!("{} {path}", m.to_uppercase());
                    let shown = &rendered[&key];
                    let texts = |k: &str| -> Vec<String> { shown[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect() };
                    let mut codes: Vec<String> = op["responses"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
                    let mut shown_codes = texts("statuses");
                    codes.sort();
                    shown_codes.sort();
                    assert_eq!(shown_codes, codes, "{key}: response codes");
                    let params = item["parameters"].as_array().into_iter().flatten().chain(op["parameters"].as_array().into_iter().flatten());
                    for p in params.filter_map(|p| p["name"].as_str()) {
                        assert!(texts("params").iter().any(|n| n == p), "{key}: parameter {p} not shown: {shown}");
                    }
                    for ct in op["requestBody"]["content"].as_object().into_iter().flat_map(|c| c.keys()) {
                        assert!(texts("codes").contains(ct), "{key}: request body type {ct} not shown");
                    }
                }
            }
            let schemas = doc["components"]["schemas"].as_object().map(|m| m.len()).unwrap_or(0);
            let shown_schemas = b.eval("document.querySelectorAll('#schemas .schema').length");
            assert!(schemas >= 5, "/openapi.json has its component schemas: {schemas}");
            assert_eq!(shown_schemas, json!(schemas));
            b.screenshot(&artefacts_dir().join("web-docs.png"));
        }
        other => panic!("/openapi.json answered {:?}, not 200 with JSON", other),
    }
    b.close();
}

#[test]
fn operator_page_asks_for_the_api_key_and_never_shows_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const KEY: &str = "web-ui-test-key-7f3a9c";
    let argus = start_argus(Some(KEY));
    assert_eq!(status_of(&format!("{}/v1/info", argus.base), None), 401, "/v1/info without a key, with keys configured");
    assert_eq!(status_of(&format!("{}/v1/info", argus.base), Some("not-the-key")), 401, "/v1/info with a wrong key");
    assert_eq!(status_of(&format!("{}/v1/info", argus.base), Some(KEY)), 200, "/v1/info with the key");
    assert_eq!(status_of(&format!("{}/v1/cameras/plaza/snapshot.jpg", argus.base), None), 401, "the snapshot without a key");
    assert_snapshot_served(&argus.base, Some(KEY));
    let mut b = Browser::launch();
    b.navigate(&format!("{}/", argus.base));
    let s = b.wait_for("the key prompt", PAGE_STATE, Duration::from_secs(20), |s| s["auth"] == "required");
    assert_eq!(s["auth_visible"], true);
    assert!(plaza(&s).is_none(), "nothing is shown before a key");

    let submit = |b: &mut Browser, key: &str| {
        b.eval(&format!(
            "(() => {{ document.getElementById('auth-key').value = {}; document.getElementById('auth-form').requestSubmit(); }})()",
            serde_json::to_string(key).unwrap()
        ));
    };
    submit(&mut b, "not-the-key");
    let s = b.wait_for("a wrong key refused", PAGE_STATE, Duration::from_secs(20), |s| {
        s["auth"] == "required" && s["auth_error"].as_str().is_some_and(|t| !t.is_empty())
    });
    assert!(s["auth_error"].as_str().unwrap().contains("not accepted"), "{}", s["auth_error"]);

    submit(&mut b, KEY);
    // The live stream and the snapshots authenticate with `access_token`: live rows and a
    // loaded snapshot prove it.
    let s = wait_for_operator_view(&mut b);
    check_operator_view(&s);
    assert_eq!(s["auth"], "ok");
    assert_eq!(s["auth_visible"], false);
    assert!(!s["text"].as_str().unwrap().contains(KEY), "the key must never be visible on the page");
    let stored = b.eval("localStorage.getItem('argus.apiKey')");
    assert_eq!(stored, json!(KEY), "the key is kept for the next visit");

    // A reload uses the stored key without asking again.
    b.navigate(&format!("{}/", argus.base));
    let s = wait_for_operator_view(&mut b);
    assert_eq!(s["auth"], "ok");
    b.screenshot(&artefacts_dir().join("web-ui-with-key.png"));
    b.assert_no_problems();
    b.close();
}

#[cfg(feature = "kafka")]
#[path = "common/broker.rs"]
mod broker;

/// With `[fleet]` on, the page lists every member of the fleet topic: this one (its
/// cameras) and one that published once and went quiet, marked stale.
#[cfg(feature = "kafka")]
#[test]
fn operator_page_shows_the_fleet_with_a_quiet_member_marked_stale() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let broker = broker::Broker::start(&[]);
    let env: Vec<(&str, String)> = vec![
        ("ARGUS_FLEET__ENABLED", "true".into()),
        ("ARGUS_FLEET__BROKERS", broker.brokers()),
        ("ARGUS_FLEET__MEMBER_ID", "web-run".into()),
        ("ARGUS_FLEET__PUBLISH_EVERY_S", "0.5".into()),
        ("ARGUS_FLEET__STALE_AFTER_S", "3".into()),
    ];
    let argus = start_argus_with(None, &env);
    // The member created the fleet topic at its start; a second member's one record.
    let ghost = json!({ "schema": "argus.member.v1", "member": "ingest-gone", "role": "ingest", "version": "0.1.0", "shard": "1/2",
                        "api": "10.0.0.9:8080", "started_at": "2026-01-01T00:00:00.000Z", "at": "2026-01-01T00:00:05.000Z", "every_s": 5.0,
                        "cameras": { "dock": { "state": "streaming", "fps_in": 5.0, "fps_processed": 0.0, "frames_received": 10,
                                               "frames_processed": 0, "frames_published": 10, "frames_dropped": 0 } } });
    let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", broker.brokers()).create().unwrap();
    let payload = serde_json::to_vec(&ghost).unwrap();
    producer.send(BaseRecord::<str, [u8]>::to("argus.fleet").key("ingest-gone").payload(&payload)).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let mut b = Browser::launch();
    b.navigate(&format!("{}/", argus.base));
    let member = |s: &Value, id: &str| s["members"].as_array().and_then(|m| m.iter().find(|m| m["member"] == id).cloned());
    let s = b.wait_for("both members, the quiet one stale", FLEET_STATE, Duration::from_secs(60), |s| {
        s["hidden"] == false && member(s, "web-run").is_some_and(|m| m["stale"] == "false") && member(s, "ingest-gone").is_some_and(|m| m["stale"] == "true")
    });
    let me = member(&s, "web-run").unwrap();
    assert_eq!(me["role"], "run");
    let text = me["text"].as_str().unwrap();
    assert!(text.contains("(this)") && text.contains("plaza") && text.contains(SECOND), "{text}");
    let gone = member(&s, "ingest-gone").unwrap();
    let text = gone["text"].as_str().unwrap();
    assert!(text.contains("shard 1/2") && text.contains("dock") && text.contains("stale"), "{text}");
    b.screenshot(&artefacts_dir().join("web-fleet.png"));
    b.assert_no_problems();
    b.close();
}

/// The incident board and its detail, as an operator uses them.
const BOARD_STATE: &str = r#"(() => {
  const box = document.getElementById('incidents');
  if (document.readyState !== 'complete' || !box) return { loading: location.href };
  const d = document.getElementById('incident-detail');
  return {
    count: document.getElementById('incident-count').textContent,
    incidents: [...box.querySelectorAll('.incident')].map(i => ({
      id: i.dataset.incidentId, state: i.dataset.state, level: i.dataset.level, acknowledged: i.dataset.acknowledged,
      assignee: i.dataset.assignee || null, thumb: (i.querySelector('img.thumb') || { dataset: {} }).dataset.loaded || null,
      thumb_width: (i.querySelector('img.thumb') || {}).naturalWidth || 0, text: i.innerText })),
    detail: d.hidden ? null : {
      id: d.dataset.incidentId, state: d.dataset.state, text: d.querySelector('.sheet').innerText,
      life: [...d.querySelectorAll('.life')].map(l => ({ kind: l.dataset.kind, id: l.dataset.eventId,
        evidence: (l.querySelector('img.evidence') || { dataset: {} }).dataset.loaded || null })),
      status: document.getElementById('action-status').dataset.state || '', status_text: document.getElementById('action-status').textContent,
      clip: (() => { const v = document.getElementById('detail-clip');
        return { shown: !v.hidden && getComputedStyle(v).display !== 'none', ready: v.readyState, duration: isFinite(v.duration) ? v.duration : 0,
                 error: v.error ? v.error.code : 0, note: document.getElementById('detail-clip-note').textContent }; })() },
  };
})()"#;

/// The board lists the demo's incidents open first with their thumbnails; a click opens
/// the lifecycle with its evidence; acknowledging, assigning and a note go through the
/// API (who: the named key), show up on the board and in the detail, and a bad note is
/// refused with the API's message next to the form.
#[test]
fn operator_page_incident_board_acknowledges_assigns_and_notes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const KEY: &str = "board-test-key-0123456789";
    // The same key unnamed (for the start-up checks) and named: it keeps its name.
    let env = [
        ("ARGUS_SERVER__NAMED_API_KEYS__OPS-DESK", KEY.to_string()),
        ("ARGUS_EVIDENCE__CLIP__ENABLED", "true".to_string()),
        ("ARGUS_EVIDENCE__CLIP__PRE_S", "1.0".to_string()),
        ("ARGUS_EVIDENCE__CLIP__POST_S", "2.0".to_string()),
    ];
    let argus = start_argus_with(Some(KEY), &env);
    let mut b = Browser::launch();
    b.navigate(&format!("{}/", argus.base));
    b.eval(&format!("(() => {{ localStorage.setItem('argus.apiKey', {}); }})()", serde_json::to_string(KEY).unwrap()));
    b.navigate(&format!("{}/", argus.base));
    let s = b.wait_for("an incident on the board with its thumbnail", BOARD_STATE, Duration::from_secs(90), |s| {
        s["incidents"].as_array().is_some_and(|l| l.iter().any(|i| i["thumb"] == "true" && i["thumb_width"].as_u64().unwrap_or(0) > 0))
    });
    // Open first, like the API says.
    let listed = s["incidents"].as_array().unwrap();
    let states: Vec<&str> = listed.iter().map(|i| i["state"].as_str().unwrap()).collect();
    assert!(states.windows(2).all(|w| !(w[0] == "closed" && w[1] == "open")), "open first: {states:?}");
    let (_, api_board) = get(&format!("{}/v1/incidents?limit=50", argus.base), Some(KEY)).unwrap();
    let api_ids: Vec<&str> = api_board["incidents"].as_array().unwrap().iter().map(|i| i["incident_id"].as_str().unwrap()).collect();
    let shown_ids: Vec<&str> = listed.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert!(shown_ids.iter().all(|id| api_ids.contains(id) || get(&format!("{}/v1/incidents/{id}", argus.base), Some(KEY)).unwrap().0 == 200), "{shown_ids:?}");
    let pick = listed.iter().find(|i| i["thumb"] == "true").unwrap();
    let id = pick["id"].as_str().unwrap().to_string();

    b.eval(&format!("document.querySelector('#incidents .incident[data-incident-id=\"{id}\"]').click()"));
    let s = b.wait_for("the detail with its lifecycle and evidence", BOARD_STATE, Duration::from_secs(20), |s| {
        s["detail"]["state"] == "ready" && s["detail"]["life"].as_array().is_some_and(|l| l.iter().any(|e| e["evidence"] == "true"))
    });
    assert_eq!(s["detail"]["id"], id.as_str());
    assert_eq!(s["detail"]["life"][0]["kind"], "incident.opened", "oldest first");
    assert!(s["detail"]["text"].as_str().unwrap().contains("Not acknowledged"), "{}", s["detail"]["text"]);

    let submit = |b: &mut Browser, form: &str, field: &str, value: &str| {
        b.eval(&format!(
            "(() => {{ document.getElementById('{field}').value = {}; document.getElementById('{form}').requestSubmit(); }})()",
            serde_json::to_string(value).unwrap()
        ));
    };
    submit(&mut b, "ack-form", "ack-text", "guard on the way");
    let s = b.wait_for("the acknowledgement recorded", BOARD_STATE, Duration::from_secs(20), |s| {
        s["detail"]["status"] == "ok" && s["detail"]["life"].as_array().is_some_and(|l| l.iter().any(|e| e["kind"] == "incident.acknowledged"))
    });
    assert!(s["detail"]["text"].as_str().unwrap().contains("Acknowledged by ops-desk"), "{}", s["detail"]["text"]);
    b.wait_for("the board row acknowledged", BOARD_STATE, Duration::from_secs(20), |s| {
        s["incidents"].as_array().unwrap().iter().any(|i| i["id"] == id.as_str() && i["acknowledged"] == "true")
    });
    submit(&mut b, "assign-form", "assign-to", "alice");
    b.wait_for("the assignment on the board", BOARD_STATE, Duration::from_secs(20), |s| {
        s["incidents"].as_array().unwrap().iter().any(|i| i["id"] == id.as_str() && i["assignee"] == "alice")
    });
    // A refused note: the API's message is shown, nothing is added.
    submit(&mut b, "note-form", "note-text", "   ");
    let s = b.wait_for("the empty note refused", BOARD_STATE, Duration::from_secs(20), |s| s["detail"]["status"] == "error");
    assert!(s["detail"]["status_text"].as_str().unwrap().contains("empty"), "{}", s["detail"]["status_text"]);
    submit(&mut b, "note-form", "note-text", "two people crossed, one stayed");
    let s = b.wait_for("the note in the lifecycle", BOARD_STATE, Duration::from_secs(20), |s| {
        s["detail"]["status"] == "ok" && s["detail"]["life"].as_array().is_some_and(|l| l.iter().any(|e| e["kind"] == "incident.noted"))
    });
    assert!(s["detail"]["text"].as_str().unwrap().contains("two people crossed, one stayed"));
    // The clip: 2 s after the opening (real time) it is encoded, and the detail plays it
    // (the browser reads its metadata through range requests).
    let s = b.wait_for("the clip in the player", BOARD_STATE, Duration::from_secs(30), |s| {
        let c = &s["detail"]["clip"];
        c["shown"] == true && c["ready"].as_u64().unwrap_or(0) >= 1 && c["duration"].as_f64().unwrap_or(0.0) > 0.0 || c["error"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(s["detail"]["clip"]["error"], 0, "the browser plays the clip: {}", s["detail"]["clip"]);
    assert!(s["detail"]["clip"]["note"].as_str().unwrap().starts_with("Clip:"), "{}", s["detail"]["clip"]);
    b.screenshot(&artefacts_dir().join("web-incident-detail.png"));

    // The API agrees: who (the key's name), what, and the incident's life untouched.
    let (code, d) = get(&format!("{}/v1/incidents/{id}", argus.base), Some(KEY)).unwrap();
    assert_eq!(code, 200);
    assert_eq!(d["acknowledged"]["by"], "ops-desk", "{d}");
    assert_eq!(d["acknowledged"]["text"], "guard on the way");
    assert_eq!(d["assigned"]["assignee"], "alice");
    assert_eq!((d["notes"].as_u64(), d["actions"].as_u64()), (Some(1), Some(3)));
    b.eval("document.getElementById('detail-close').click()");
    b.wait_for("the detail closed", BOARD_STATE, Duration::from_secs(5), |s| s["detail"].is_null());
    b.screenshot(&artefacts_dir().join("web-incident-board.png"));
    b.assert_no_problems();
    b.close();
}
