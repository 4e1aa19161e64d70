//! Per-camera multi-object tracking, ByteTrack-style: a Kalman filter per track, IoU
//! association in two stages (confident detections first, then weak ones only to keep
//! existing tracks alive), tentative → confirmed after consecutive hits, lost tracks
//! kept for a while so an occluded object keeps its id.
//!
//! Association is greedy by IoU (highest first), class-aware.

pub mod kalman;

use crate::detect::Detection;
use crate::detect::nms::iou;
use kalman::BoxKalman;

#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// Detections at or above this score may start tracks and match in stage 1.
    pub high_score: f32,
    /// Minimum IoU for a stage-1 match (all tracks vs confident detections).
    pub match_iou: f32,
    /// Minimum IoU for a stage-2 match (recently seen tracks vs weak detections).
    pub low_match_iou: f32,
    /// Consecutive hits before a track is confirmed and gets reported.
    pub min_hits: u32,
    /// Frames a track survives without a match.
    pub max_lost: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self { high_score: 0.4, match_iou: 0.2, low_match_iou: 0.4, min_hits: 2, max_lost: 30 }
    }
}

#[derive(Debug, Clone)]
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

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Self { cfg, tracks: Vec::new(), next_id: 1 }
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
        self.greedy(&high, &all_tracks, self.cfg.match_iou, dets, &mut det_track, &mut track_used);
        let recent: Vec<usize> = (0..self.tracks.len()).filter(|&t| !track_used[t] && self.tracks[t].lost == 0).collect();
        self.greedy(&low, &recent, self.cfg.low_match_iou, dets, &mut det_track, &mut track_used);

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
                new_tracks.push((d, Track {
                    id: 0,
                    class_id: dets[d].class_id,
                    kf: BoxKalman::new(&dets[d].bbox),
                    hits: 1,
                    lost: 0,
                    confirmed: self.cfg.min_hits <= 1,
                }));
            }
        }
        let mut out: Vec<Assignment> = det_track
            .iter()
            .map(|slot| Assignment { track_id: slot.and_then(|t| self.tracks[t].confirmed.then_some(self.tracks[t].id)) })
            .collect();
        // Ids are handed out only on confirmation, so ids stay dense and meaningful.
        for t in &mut self.tracks {
            if t.confirmed && t.id == 0 {
                t.id = self.next_id;
                self.next_id += 1;
            }
        }
        for (d, slot) in det_track.iter().enumerate() {
            if let Some(t) = *slot {
                if self.tracks[t].confirmed {
                    out[d].track_id = Some(self.tracks[t].id);
                }
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

    fn greedy(
        &self,
        det_idx: &[usize],
        track_idx: &[usize],
        min_iou: f32,
        dets: &[Detection],
        det_track: &mut [Option<usize>],
        track_used: &mut [bool],
    ) {
        let mut pairs = Vec::new();
        for &d in det_idx {
            if det_track[d].is_some() {
                continue;
            }
            for &t in track_idx {
                if track_used[t] || self.tracks[t].class_id != dets[d].class_id {
                    continue;
                }
                let v = iou(&dets[d].bbox, &self.tracks[t].kf.bbox());
                if v >= min_iou {
                    pairs.push((v, d, t));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        for (_, d, t) in pairs {
            if det_track[d].is_none() && !track_used[t] {
                det_track[d] = Some(t);
                track_used[t] = true;
            }
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
}
