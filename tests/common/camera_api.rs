//! `/v1/cameras` as a test polls it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::Value;

pub fn get_json(url: &str) -> Option<Value> {
    reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(3)).send().ok()?.json().ok()
}

pub fn get_text(url: &str) -> String {
    reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(3)).send().and_then(|r| r.text()).unwrap_or_default()
}

/// One camera's status (`Null` while the API does not answer).
pub fn camera(base: &str, id: &str) -> Value {
    get_json(&format!("{base}/v1/cameras")).map(|v| v["cameras"][id].clone()).unwrap_or(Value::Null)
}

/// Waits up to `limit` for `cond` on the camera's status; returns how long it took.
pub fn wait_for(base: &str, id: &str, limit: Duration, what: &str, cond: impl Fn(&Value) -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        let c = camera(base, id);
        if cond(&c) {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}; camera {id}: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn frames_processed(c: &Value) -> u64 {
    c["frames_processed"].as_u64().unwrap_or(0)
}

pub fn frames_received(c: &Value) -> u64 {
    c["frames_received"].as_u64().unwrap_or(0)
}

/// Threads of a process (Linux `/proc`).
pub fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}
