//! Per-camera multi-object tracking, ByteTrack-style: a Kalman filter per track, IoU
//! association in two stages (confident detections first, then weak ones only to keep
//! existing tracks alive), tentative → confirmed after consecutive hits, lost tracks
//! kept for a while so an occluded object keeps its id.
//!
//! Association is an optimal assignment (Hungarian method, `assign`) on `1 − IoU`,
//! class-aware, with the IoU floor as the cost limit.

pub mod assign;
pub mod config;
pub mod kalman;

use serde::{Deserialize, Serialize};

use crate::detect::nms::iou;
use crate::model::Detection;
use kalman::BoxKalman;

/// Birth/death ages and thresholds: the pipeline file's `[tracker]` table.
use config::TrackerConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Track {
    id: u64,
    class_id: usize,
    kf: BoxKalman,
    hits: u32,
    lost: u32,
    confirmed: bool,
}

/// The tracker's verdict for one detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// Confirmed track id, `None` while tentative.
    pub track_id: Option<u64>,
}

#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

/// Everything a tracker carries from frame to frame (its settings come from the config):
/// every track with its Kalman state, hit and miss counters, and the next id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerState {
    tracks: Vec<Track>,
    next_id: u64,
}

impl TrackerState {
    /// Live tracks (tentative, confirmed and lost).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Self { cfg, tracks: Vec::new(), next_id: 1 }
    }

    /// A copy of the state, to continue from with [`Tracker::restore`].
    pub fn state(&self) -> TrackerState {
        TrackerState { tracks: self.tracks.clone(), next_id: self.next_id }
    }

    /// Continues from a saved state: the same tracks, ids and counters.
    pub fn restore(&mut self, s: TrackerState) {
        self.tracks = s.tracks;
        self.next_id = s.next_id;
    }

    /// Number of live tracks (tentative, confirmed and lost).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Advances one frame; returns one assignment per detection, in order.
    pub fn update(&mut self, dets: &[Detection]) -> Vec<Assignment> {
        for t in &mut self.tracks {
            t.kf.predict();
        }
        let mut det_track: Vec<Option<usize>> = vec![None; dets.len()];
        let mut track_used = vec![false; self.tracks.len()];

        let high: Vec<usize> = (0..dets.len()).filter(|&i| dets[i].score >= self.cfg.high_score).collect();
        let low: Vec<usize> = (0..dets.len()).filter(|&i| dets[i].score < self.cfg.high_score).collect();
        let all_tracks: Vec<usize> = (0..self.tracks.len()).collect();
        self.associate(&high, &all_tracks, self.cfg.match_iou, dets, &mut det_track, &mut track_used);
        let recent: Vec<usize> = (0..self.tracks.len()).filter(|&t| !track_used[t] && self.tracks[t].lost == 0).collect();
        self.associate(&low, &recent, self.cfg.low_match_iou, dets, &mut det_track, &mut track_used);

        for (d, slot) in det_track.iter().enumerate() {
            if let Some(t) = *slot {
                let tr = &mut self.tracks[t];
                tr.kf.update(&dets[d].bbox);
                tr.hits += 1;
                tr.lost = 0;
                if tr.hits >= self.cfg.min_hits {
                    tr.confirmed = true;
                }
            }
        }
        for (t, used) in track_used.iter().enumerate() {
            if !used {
                let tr = &mut self.tracks[t];
                tr.lost += 1;
                tr.hits = if tr.confirmed { tr.hits } else { 0 };
            }
        }
        // New tentative tracks from unmatched confident detections.
        let mut new_tracks = Vec::new();
        for &d in &high {
            if det_track[d].is_none() {
                new_tracks.push((
                    d,
                    Track { id: 0, class_id: dets[d].class_id, kf: BoxKalman::new(&dets[d].bbox), hits: 1, lost: 0, confirmed: self.cfg.min_hits <= 1 },
                ));
            }
        }
        let mut out: Vec<Assignment> =
            det_track.iter().map(|slot| Assignment { track_id: slot.and_then(|t| self.tracks[t].confirmed.then_some(self.tracks[t].id)) }).collect();
        // Ids are handed out only on confirmation, so ids stay dense and meaningful.
        for t in &mut self.tracks {
            if t.confirmed && t.id == 0 {
                t.id = self.next_id;
                self.next_id += 1;
            }
        }
        for (d, slot) in det_track.iter().enumerate() {
            if let Some(t) = *slot
                && self.tracks[t].confirmed
            {
                out[d].track_id = Some(self.tracks[t].id);
            }
        }
        for (d, mut t) in new_tracks {
            if t.confirmed {
                t.id = self.next_id;
                self.next_id += 1;
                out[d].track_id = Some(t.id);
            }
            self.tracks.push(t);
        }
        let max_lost = self.cfg.max_lost;
        // Tentative tracks die at their first miss; confirmed ones after max_lost.
        self.tracks.retain(|t| if t.confirmed { t.lost <= max_lost } else { t.lost == 0 });
        out
    }

    /// Optimal one-to-one matching of the free detections `det_idx` to the free
    /// tracks `track_idx` on `1 − IoU`; pairs below `min_iou` or of different classes
    /// never match.
    fn associate(&self, det_idx: &[usize], track_idx: &[usize], min_iou: f32, dets: &[Detection], det_track: &mut [Option<usize>], track_used: &mut [bool]) {
        let rows: Vec<usize> = det_idx.iter().copied().filter(|&d| det_track[d].is_none()).collect();
        let cols: Vec<usize> = track_idx.iter().copied().filter(|&t| !track_used[t]).collect();
        if rows.is_empty() || cols.is_empty() {
            return;
        }
        let boxes: Vec<[f32; 4]> = cols.iter().map(|&t| self.tracks[t].kf.bbox()).collect();
        let cost: Vec<Vec<f64>> = rows
            .iter()
            .map(|&d| {
                cols.iter()
                    .zip(&boxes)
                    .map(|(&t, b)| {
                        if self.tracks[t].class_id != dets[d].class_id {
                            return assign::FORBIDDEN;
                        }
                        let v = iou(&dets[d].bbox, b);
                        if v >= min_iou && v > 0.0 { 1.0 - v as f64 } else { assign::FORBIDDEN }
                    })
                    .collect()
            })
            .collect();
        // The limit sits just above the largest allowed cost so that `v == min_iou` matches.
        for (r, c) in assign::assign(&cost, 1.0 - min_iou as f64 + 1e-9) {
            det_track[rows[r]] = Some(cols[c]);
            track_used[cols[c]] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn det(class_id: usize, score: f32, x: f32) -> Detection {
        Detection { class_id, class: Arc::from("c"), score, bbox: [x, 0.0, x + 20.0, 40.0] }
    }

    #[test]
    fn ids_are_stable_for_moving_objects_and_distinct_for_two() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut ids = Vec::new();
        for f in 0..20 {
            let x = f as f32 * 2.0;
            let a = tr.update(&[det(0, 0.9, x), det(0, 0.9, 200.0 - x)]);
            ids.push((a[0].track_id, a[1].track_id));
        }
        assert_eq!(ids[0], (None, None), "tentative on the first frame");
        let (a, b) = ids[1];
        assert!(a.is_some() && b.is_some() && a != b);
        assert!(ids[1..].iter().all(|p| *p == (a, b)), "{ids:?}");
    }

    #[test]
    fn survives_a_short_occlusion_and_weak_detections() {
        let mut tr = Tracker::new(TrackerConfig::default());
        tr.update(&[det(0, 0.9, 0.0)]);
        let id = tr.update(&[det(0, 0.9, 1.0)])[0].track_id.unwrap();
        for _ in 0..5 {
            tr.update(&[]);
        }
        assert_eq!(tr.update(&[det(0, 0.9, 2.0)])[0].track_id, Some(id));
        assert_eq!(tr.update(&[det(0, 0.2, 3.0)])[0].track_id, Some(id), "a weak detection keeps the track");
    }

    #[test]
    fn classes_do_not_mix_and_weak_detections_start_nothing() {
        let mut tr = Tracker::new(TrackerConfig::default());
        tr.update(&[det(0, 0.9, 0.0)]);
        let a = tr.update(&[det(1, 0.9, 0.0)]);
        assert_eq!(a[0].track_id, None, "a different class is a new tentative track");
        let mut tr = Tracker::new(TrackerConfig::default());
        tr.update(&[det(0, 0.2, 0.0)]);
        assert!(tr.is_empty());
    }

    #[test]
    fn lost_tracks_expire() {
        let mut tr = Tracker::new(TrackerConfig { max_lost: 3, ..Default::default() });
        tr.update(&[det(0, 0.9, 0.0)]);
        tr.update(&[det(0, 0.9, 0.0)]);
        for _ in 0..4 {
            tr.update(&[]);
        }
        assert!(tr.is_empty());
    }

    fn boxed(class_id: usize, score: f32, x: f32, y: f32) -> Detection {
        Detection { class_id, class: Arc::from("c"), score, bbox: [x, y, x + 20.0, y + 40.0] }
    }

    #[test]
    fn crossing_objects_keep_their_ids() {
        // Two people walk towards each other along almost the same line, overlapping
        // heavily (IoU up to 0.6) for several frames while they pass.
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut first = None;
        for f in 0..60 {
            let a = 4.0 * f as f32;
            let b = 236.0 - 4.0 * f as f32;
            // Listed in a different order every other frame: ids must follow boxes, not slots.
            let (dets, swap) = if f % 2 == 0 {
                (vec![boxed(0, 0.9, a, 100.0), boxed(0, 0.9, b, 110.0)], false)
            } else {
                (vec![boxed(0, 0.9, b, 110.0), boxed(0, 0.9, a, 100.0)], true)
            };
            let out = tr.update(&dets);
            let (ia, ib) = if swap { (out[1].track_id, out[0].track_id) } else { (out[0].track_id, out[1].track_id) };
            if f >= 1 {
                let (ia, ib) = (ia.expect("confirmed"), ib.expect("confirmed"));
                let (fa, fb) = *first.get_or_insert((ia, ib));
                assert_eq!((ia, ib), (fa, fb), "frame {f}: ids swapped or changed");
            }
        }
        assert_ne!(first.unwrap().0, first.unwrap().1);
    }

    #[test]
    fn occlusion_shorter_than_max_lost_keeps_the_id_longer_does_not() {
        for (gap, same) in [(8u32, true), (12, false)] {
            let mut tr = Tracker::new(TrackerConfig { max_lost: 10, ..Default::default() });
            let mut id = None;
            let mut f = 0;
            // Walks right at 3 px per frame, hidden for `gap` frames, then seen again
            // where it should be by then.
            while f < 15 {
                id = tr.update(&[boxed(0, 0.9, 3.0 * f as f32, 50.0)])[0].track_id.or(id);
                f += 1;
            }
            for _ in 0..gap {
                tr.update(&[]);
                f += 1;
            }
            let mut again = None;
            for _ in 0..3 {
                again = tr.update(&[boxed(0, 0.9, 3.0 * f as f32, 50.0)])[0].track_id.or(again);
                f += 1;
            }
            assert_eq!(again == id, same, "gap {gap}: before {id:?}, after {again:?}");
            assert!(again.is_some());
        }
    }

    #[test]
    fn low_score_boxes_keep_tracks_alive_but_never_start_one() {
        let cfg = TrackerConfig { max_lost: 2, ..Default::default() };
        // Never start: weak boxes for many frames create no track and no id.
        let mut tr = Tracker::new(cfg.clone());
        for f in 0..20 {
            assert_eq!(tr.update(&[boxed(0, 0.2, f as f32, 0.0)])[0].track_id, None);
        }
        assert!(tr.is_empty());
        // Keep alive: a confirmed track fed only weak boxes for 10 frames (far longer
        // than max_lost = 2) keeps its id.
        let mut tr = Tracker::new(cfg);
        tr.update(&[boxed(0, 0.9, 0.0, 0.0)]);
        let id = tr.update(&[boxed(0, 0.9, 1.0, 0.0)])[0].track_id.unwrap();
        for f in 2..12 {
            assert_eq!(tr.update(&[boxed(0, 0.25, f as f32, 0.0)])[0].track_id, Some(id), "frame {f}");
        }
        assert_eq!(tr.update(&[boxed(0, 0.9, 12.0, 0.0)])[0].track_id, Some(id));
    }

    #[test]
    fn min_hits_delays_birth() {
        let mut tr = Tracker::new(TrackerConfig { min_hits: 4, ..Default::default() });
        let ids: Vec<Option<u64>> = (0..5).map(|f| tr.update(&[boxed(0, 0.9, f as f32, 0.0)])[0].track_id).collect();
        assert_eq!(ids, vec![None, None, None, Some(1), Some(1)]);
    }
}
