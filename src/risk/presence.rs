//! How long each track has met a rule's condition (inside a zone, too fast, too close),
//! tolerant to short gaps and to tracker id switches.
//!
//! A track that stops meeting the condition keeps its entry for `grace_s`; when it comes
//! back within that time its duration continues. When a *new* track id starts meeting
//! the condition close to where a recently vanished entry was last seen (same class,
//! within [`handover_radius_m`]), it takes that entry over: a person who gets a new id
//! from the tracker mid-incident keeps their dwell, so the incident neither restarts nor
//! gains a member.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    first: f64,
    last: f64,
    pos: Option<[f64; 2]>,
    class: String,
}

/// How far a vanished track may be from its successor: a walking person covers about
/// 2.5 m/s at most, plus the position noise of a foot point.
pub fn handover_radius_m(gap_s: f64) -> f64 {
    1.5 + 2.5 * gap_s.max(0.0)
}

#[derive(Debug, Clone)]
pub struct Presence {
    grace_s: f64,
    entries: HashMap<u64, Entry>,
}

/// One track meeting the condition in this frame.
#[derive(Debug, Clone)]
pub struct Seen<'a> {
    pub track_id: u64,
    pub pos: Option<[f64; 2]>,
    pub class: &'a str,
}

/// A presence table's entries (its grace time comes from the rule's config), by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceState {
    entries: Vec<(u64, Entry)>,
}

impl Presence {
    pub fn new(grace_s: f64) -> Self {
        Self { grace_s, entries: HashMap::new() }
    }

    /// A copy of the entries, ordered by track id (so equal tables encode alike).
    pub fn state(&self) -> PresenceState {
        let mut entries: Vec<(u64, Entry)> = self.entries.iter().map(|(id, e)| (*id, e.clone())).collect();
        entries.sort_by_key(|e| e.0);
        PresenceState { entries }
    }

    /// Continues from saved entries (durations, last positions, handover candidates).
    pub fn restore(&mut self, s: PresenceState) {
        self.entries = s.entries.into_iter().collect();
    }

    /// Records the tracks that meet the condition at `t`, and forgets the ones that have
    /// not for longer than the grace time.
    pub fn observe(&mut self, t: f64, seen: &[Seen]) {
        let grace = self.grace_s;
        self.entries.retain(|_, e| t - e.last <= grace + 1e-9);
        // Known ids first, so that a vanished entry is only offered to truly new ids.
        let mut new = Vec::new();
        for s in seen {
            match self.entries.get_mut(&s.track_id) {
                Some(e) => {
                    e.last = t;
                    e.pos = s.pos.or(e.pos);
                }
                None => new.push(s),
            }
        }
        let mut order: Vec<&Seen> = new;
        order.sort_by_key(|s| s.track_id);
        for s in order {
            let heir = s.pos.and_then(|p| {
                self.entries
                    .iter()
                    .filter(|(_, e)| e.last < t && t - e.last <= self.grace_s && e.class == s.class)
                    .filter_map(|(id, e)| {
                        let q = e.pos?;
                        let d = ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
                        (d <= handover_radius_m(t - e.last)).then_some((d, *id))
                    })
                    .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                    .map(|(_, id)| id)
            });
            let first = match heir.and_then(|id| self.entries.remove(&id)) {
                Some(old) => old.first,
                None => t,
            };
            self.entries.insert(s.track_id, Entry { first, last: t, pos: s.pos, class: s.class.to_string() });
        }
    }

    /// Tracks that met the condition within `hold_s` before `t` (0: in this very frame)
    /// and have met it for at least `min_s`: `(track id, duration, class)` by id.
    pub fn active(&self, t: f64, hold_s: f64, min_s: f64) -> Vec<(u64, f64, &str)> {
        let mut v: Vec<(u64, f64, &str)> = self
            .entries
            .iter()
            .filter(|(_, e)| t - e.last <= hold_s + 1e-9 && e.last - e.first >= min_s - 1e-9)
            .map(|(id, e)| (*id, e.last - e.first, e.class.as_str()))
            .collect();
        v.sort_by_key(|x| x.0);
        v
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: u64, x: f64) -> Seen<'static> {
        Seen { track_id: id, pos: Some([x, 0.0]), class: "person" }
    }

    #[test]
    fn duration_survives_short_gaps_not_long_ones() {
        let mut p = Presence::new(1.0);
        p.observe(0.0, &[seen(1, 0.0)]);
        p.observe(2.0, &[seen(1, 0.0)]);
        assert_eq!(p.active(2.0, 0.0, 0.0)[0].1, 0.0, "a 2 s gap restarts the dwell");
        p.observe(2.5, &[]);
        assert!(p.active(2.5, 0.0, 0.0).is_empty(), "not seen in this frame");
        assert_eq!(p.active(2.5, 1.0, 0.0).len(), 1, "but held");
        p.observe(2.9, &[seen(1, 0.0)]);
        let d = p.active(2.9, 0.0, 0.0)[0].1;
        assert!((d - 0.9).abs() < 1e-9, "a 0.9 s gap keeps it: {d}");
    }

    #[test]
    fn a_new_id_at_the_same_place_inherits_the_dwell() {
        let mut p = Presence::new(1.0);
        for i in 0..=50 {
            p.observe(i as f64 * 0.1, &[seen(1, 0.0)]);
        }
        // Id 1 vanishes, id 9 appears 0.3 s later half a metre away.
        p.observe(5.1, &[]);
        p.observe(5.2, &[]);
        p.observe(5.3, &[seen(9, 0.5)]);
        let a = p.active(5.3, 0.0, 0.0);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].0, 9);
        assert!((a[0].1 - 5.3).abs() < 1e-9, "{a:?}");
        // Far away, it is somebody else.
        p.observe(5.4, &[seen(9, 0.5), seen(10, 30.0)]);
        assert_eq!(p.active(5.4, 0.0, 0.0).iter().map(|x| x.0).collect::<Vec<_>>(), vec![9, 10]);
        assert!(p.active(5.4, 0.0, 1.0).iter().all(|x| x.0 == 9));
    }

    #[test]
    fn a_track_still_seen_is_never_taken_over() {
        let mut p = Presence::new(1.0);
        p.observe(0.0, &[seen(1, 0.0)]);
        p.observe(0.5, &[seen(1, 0.0), seen(2, 0.2)]);
        let a: Vec<(u64, f64)> = p.active(0.5, 0.0, 0.0).iter().map(|x| (x.0, x.1)).collect();
        assert_eq!(a, vec![(1, 0.5), (2, 0.0)]);
    }
}
