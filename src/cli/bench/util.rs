//! Shared by the sink benchmarks: process CPU time and synthetic events.

use std::sync::Arc;

use argus::model::{Event, EventKind, sample_event};

/// CPU seconds (user + system) of this process and of its waited-for children.
pub fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is 3rd overall; utime/stime are 14/15,
    // cutime/cstime 16/17.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    let tick = 100.0; // USER_HZ on Linux
    let get = |i: usize| f.get(i - 3).copied().unwrap_or(0.0) / tick;
    (get(14) + get(15), get(16) + get(17))
}

/// `n` events over 8 cameras, 8 objects each, every 50th an incident.
pub fn synthetic_events(n: usize) -> Vec<Arc<Event>> {
    (0..n)
        .map(|i| {
            let kind = if i % 50 == 0 { EventKind::IncidentOpened } else { EventKind::FrameAnalyzed };
            let mut ev = sample_event(&format!("cam-{}", i % 8), 1_763_884_800_000 + i as i64 * 40, kind);
            let first = ev.objects[0].clone();
            ev.objects = (0..8)
                .map(|k| {
                    let mut o = first.clone();
                    o.track_id = Some(k);
                    o.bbox[0] += k as f32 * 10.0;
                    o
                })
                .collect();
            Arc::new(ev)
        })
        .collect()
}
