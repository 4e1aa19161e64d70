//! Stopping `argus run` when what it writes to is gone or stuck: a reader that closed
//! standard output (`argus run | head -1`) must not hold the shutdown, and a second
//! SIGTERM ends a drain that cannot finish.
#![cfg(all(feature = "gstreamer", feature = "onnx", feature = "opencv"))]

#[path = "common/demo_config.rs"]
mod demo_config;
use demo_config::write_config_with;
use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The embedded configuration in `dir`, on `port`, with a frame summary per frame
/// (many events, so that standard output fills up quickly).
fn write_config(dir: &Path, port: u16) -> PathBuf {
    let repo = env!("CARGO_MANIFEST_DIR");
    let demo =
        std::fs::read_to_string(format!("{repo}/pipelines/demo.toml")).unwrap().replace("frame_summary_every_s = 5.0", "frame_summary_every_s = 0.000001");
    assert!(demo.contains("frame_summary_every_s = 0.000001"), "pipelines/demo.toml changed: update this test");
    std::fs::write(dir.join("demo.toml"), demo).unwrap();
    write_config_with(dir, port, &dir.join("demo.toml"))
}

fn start(dir: &Path) -> (Child, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--config"])
        .arg(write_config(dir, port))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

fn sigterm(child: &Child) {
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
}

/// Waits up to `limit` for the child to exit.
fn exited_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{base}/metrics")).and_then(|r| r.text()).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
}

/// `argus run | head -1`: the reader takes one event and closes the pipe; the next
/// events meet a broken pipe. Argus stops printing (the other sinks keep every event)
/// and SIGTERM ends it cleanly.
#[test]
fn a_closed_stdout_does_not_hold_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start(dir.path());
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("\"event_id\""), "the first line is an event: {first}");
    // The reader is gone (dropped above). Let more events meet the broken pipe.
    let t0 = Instant::now();
    while metric(&base, "argus_events_published_total{sink=\"jsonl\"}") < 20.0 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no events after the first; log:\n{}", log(dir.path()));
        std::thread::sleep(Duration::from_millis(200));
    }
    sigterm(&child);
    let status = exited_within(&mut child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(status.is_some_and(|s| s.success()), "SIGTERM ended Argus cleanly ({status:?}); log:\n{}", log(dir.path()));
    let lines = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap().lines().count();
    assert!(lines >= 20, "the JSONL sink kept every event ({lines})");
}

/// Standard output that nobody reads fills up and holds the stdout sink: the drain at
/// SIGTERM cannot finish. A second SIGTERM exits at once (status 130).
#[test]
fn a_second_sigterm_ends_a_drain_that_cannot_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start(dir.path());
    // Held open, never read.
    let _stdout = child.stdout.take().unwrap();
    // Stuck: the stdout sink has stopped publishing while the JSONL sink is ahead.
    let (t0, mut last, mut since) = (Instant::now(), -1.0, Instant::now());
    loop {
        let (out, jsonl) = (metric(&base, "argus_events_published_total{sink=\"stdout\"}"), metric(&base, "argus_events_published_total{sink=\"jsonl\"}"));
        if out != last {
            (last, since) = (out, Instant::now());
        } else if jsonl > out + 5.0 && since.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "standard output never filled up ({out} printed, {jsonl} in the JSONL); log:\n{}", log(dir.path()));
        std::thread::sleep(Duration::from_millis(200));
    }
    sigterm(&child);
    assert!(exited_within(&mut child, Duration::from_secs(3)).is_none(), "the drain is stuck on standard output");
    sigterm(&child);
    let status = exited_within(&mut child, Duration::from_secs(5));
    if status.is_none() {
        let _ = child.kill();
    }
    assert_eq!(status.and_then(|s| s.code()), Some(130), "the second SIGTERM exits at once; log:\n{}", log(dir.path()));
}
