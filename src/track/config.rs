//! `[tracker]` in a pipeline file: the per-camera multi-object tracker.

use serde::{Deserialize, Serialize};

use crate::model::Issues;

/// `[tracker]` in a pipeline file: the per-camera multi-object tracker.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Detections at or above this score start tracks and match first; weaker ones only
    /// keep existing tracks alive.
    pub high_score: f32,
    /// Minimum IoU for a match of a confident detection.
    pub match_iou: f32,
    /// Minimum IoU for a match of a weak detection (second pass).
    pub low_match_iou: f32,
    /// Consecutive frames with a match before a track gets an id (birth).
    pub min_hits: u32,
    /// Frames a track survives without a match before it ends (death).
    pub max_lost: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self { high_score: 0.4, match_iou: 0.2, low_match_iou: 0.4, min_hits: 2, max_lost: 30 }
    }
}

pub fn validate(t: &TrackerConfig, iss: &mut Issues) {
    if !(t.high_score > 0.0 && t.high_score < 1.0) {
        iss.add(
            "tracker.high_score",
            format!("{} is outside (0, 1)", t.high_score),
            "use e.g. 0.4 (above detector.score_threshold, or the second pass never runs)",
        );
    }
    for (name, v) in [("match_iou", t.match_iou), ("low_match_iou", t.low_match_iou)] {
        if !(v > 0.0 && v < 1.0) {
            iss.add(format!("tracker.{name}"), format!("{v} is outside (0, 1)"), "use e.g. 0.2 (match_iou) or 0.4 (low_match_iou)");
        }
    }
    if t.min_hits == 0 || t.min_hits > 100 {
        iss.add("tracker.min_hits", format!("{} is outside 1..=100", t.min_hits), "use e.g. 2 (frames before a track gets an id)");
    }
    if t.max_lost > 10_000 {
        iss.add("tracker.max_lost", format!("{} frames", t.max_lost), "use 0..=10000, e.g. 30 (frames a track survives unseen)");
    }
}
