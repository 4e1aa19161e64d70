//! Comparing the events of two runs over the same frames.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// An event without what differs between runs by nature: when it was processed and how
/// long that took.
pub fn normalised(e: &Value) -> Value {
    let mut e = e.clone();
    let o = e.as_object_mut().unwrap();
    o.remove("processed_at");
    o.remove("latency_ms");
    e
}

/// Events by id, each id's copies identical (a frame analysed twice yields the same
/// event again, never a different one).
pub fn by_id(all: &[Value]) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for e in all {
        let id = e["event_id"].as_str().unwrap().to_string();
        let n = normalised(e);
        if let Some(prev) = out.get(&id) {
            assert_eq!(prev, &n, "{id} was emitted twice with different contents");
        }
        out.insert(id, n);
    }
    out
}

/// Incidents opened in `events` that they do not close.
pub fn open_incidents(events: &[Value]) -> BTreeSet<(String, String)> {
    let mut open = BTreeSet::new();
    for e in events {
        let (Some(inc), Some(kind)) = (e["incident_id"].as_str(), e["kind"].as_str()) else { continue };
        let key = (e["camera_id"].as_str().unwrap().to_string(), inc.to_string());
        match kind {
            "incident.opened" => {
                open.insert(key);
            }
            "incident.closed" => {
                open.remove(&key);
            }
            _ => {}
        }
    }
    open
}
