//! Risk as events carry it: a score, a level, a priority and the reasons behind them,
//! and the incident changes that become events.

use serde::{Deserialize, Serialize};

/// The score at or above which a risk is medium, high, critical (a pipeline's `[risk]`
/// table sets them; these are the defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelThresholds {
    pub medium: f64,
    pub high: f64,
    pub critical: f64,
}

impl Default for LevelThresholds {
    fn default() -> Self {
        Self { medium: 0.3, high: 0.6, critical: 0.85 }
    }
}

/// The probability that at least one of independent causes is real: `1 − Π(1 − sᵢ)`.
pub fn noisy_or(scores: impl IntoIterator<Item = f64>) -> f64 {
    1.0 - scores.into_iter().fold(1.0, |acc, s| acc * (1.0 - s.clamp(0.0, 1.0)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    /// The level of a score under the default thresholds (0.3 / 0.6 / 0.85).
    pub fn from_score(score: f64) -> Self {
        Self::from_score_with(score, &LevelThresholds::default())
    }

    /// The level of a score under a pipeline's `[risk]` thresholds.
    pub fn from_score_with(score: f64, t: &LevelThresholds) -> Self {
        if score >= t.critical {
            Self::Critical
        } else if score >= t.high {
            Self::High
        } else if score >= t.medium {
            Self::Medium
        } else {
            Self::Low
        }
    }

    /// 1 = most urgent.
    pub fn priority(self) -> u8 {
        match self {
            Self::Critical => 1,
            Self::High => 2,
            Self::Medium => 3,
            Self::Low => 4,
        }
    }

    /// 0 (low) ..= 3 (critical), for ordering and storage.
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn from_rank(rank: u8) -> Option<Self> {
        [Self::Low, Self::Medium, Self::High, Self::Critical].get(rank as usize).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// Why a risk is what it is: one rule's active situation, with the measurements a
/// caption (or an analyst) needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reason {
    /// Rule id.
    pub rule: String,
    /// Rule kind: intrusion, proximity, crowding, loitering, speed.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The tracks the situation is about, ascending.
    pub track_ids: Vec<u64>,
    pub score: f64,
    pub detail: String,
    /// The class of those tracks when they all share one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Proximity: the tracked objects they are too close to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub near_track_ids: Vec<u64>,
    /// Proximity: the class of those objects when they share one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_class: Option<String>,
    /// Longest time inside the zone (intrusion, loitering) or crowd age (crowding), s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dwell_s: Option<f64>,
    /// Proximity: the smallest distance, m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    /// Speed: the fastest member, m/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f64>,
    /// The rule's threshold: min dwell (s), distance or radius (m), speed (m/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// `incident.closed` after a downtime: Argus did not observe the camera in between
    /// (its last checkpoint was older than `scene_state.max_gap_s` at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_observed: Option<Unobserved>,
}

/// When a camera went unobserved (RFC 3339, wall clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unobserved {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    pub score: f64,
    pub level: Level,
    pub priority: u8,
    pub reasons: Vec<Reason>,
}

impl Risk {
    /// Noisy-OR of the reasons' scores, levels by the default thresholds.
    pub fn from_reasons(reasons: Vec<Reason>) -> Self {
        Self::from_reasons_with(reasons, &LevelThresholds::default())
    }

    /// Noisy-OR of the reasons' scores, levels by a pipeline's `[risk]` thresholds.
    pub fn from_reasons_with(reasons: Vec<Reason>, t: &LevelThresholds) -> Self {
        let score = round3(noisy_or(reasons.iter().map(|r| r.score)));
        let level = Level::from_score_with(score, t);
        Self { score, level, priority: level.priority(), reasons }
    }

    pub fn none() -> Self {
        Self { score: 0.0, level: Level::Low, priority: Level::Low.priority(), reasons: Vec::new() }
    }
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncidentPhase {
    Opened,
    Updated,
    Closed,
}

/// A change in an incident's life that becomes an event.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentChange {
    pub phase: IncidentPhase,
    pub incident_id: String,
    pub rule_id: String,
    pub risk: Risk,
    /// Seconds since the incident opened.
    pub duration_s: f64,
    /// Closed only: why (`clear`, `source ended`, `camera removed`, …).
    pub why: Option<String>,
}
