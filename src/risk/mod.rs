//! Judging a scene: rules evaluated in world space, each active situation reported as
//! one incident (opened → updated → closed) with a score, level, priority and reasons.

pub mod zone;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{IntrusionRule, RuleConfig};
use crate::geo::WorldPos;
pub use zone::Zone;

/// One object in one frame, as the scene stage sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneObject {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    pub class: Arc<str>,
    pub confidence: f32,
    pub bbox: [f32; 4],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world: Option<WorldPos>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    #[serde(default)]
    pub zones: Vec<String>,
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
    pub fn from_score(score: f64) -> Self {
        if score >= 0.85 {
            Self::Critical
        } else if score >= 0.6 {
            Self::High
        } else if score >= 0.3 {
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub rule: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub track_ids: Vec<u64>,
    pub score: f64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    pub score: f64,
    pub level: Level,
    pub priority: u8,
    pub reasons: Vec<Reason>,
}

impl Risk {
    pub fn from_reasons(reasons: Vec<Reason>) -> Self {
        let score = reasons.iter().map(|r| r.score).fold(0.0, f64::max);
        let level = Level::from_score(score);
        Self { score: round3(score), level, priority: level.priority(), reasons }
    }

    pub fn none() -> Self {
        Self { score: 0.0, level: Level::Low, priority: Level::Low.priority(), reasons: Vec::new() }
    }
}

fn round3(v: f64) -> f64 {
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
}

/// A rule's view of one frame: the active situation, if any.
trait Rule: Send {
    fn id(&self) -> &str;
    fn evaluate(&mut self, t: f64, objects: &[SceneObject]) -> Option<Reason>;
    fn clear_after_s(&self) -> f64;
    fn update_every_s(&self) -> f64;
}

struct Intrusion {
    cfg: IntrusionRule,
    /// Track id → (time it was first seen inside, time it was last seen inside).
    inside: HashMap<u64, (f64, f64)>,
}

/// A track that leaves the zone (or the tracker) for less than this keeps its dwell.
const DWELL_GRACE_S: f64 = 1.0;

impl Rule for Intrusion {
    fn id(&self) -> &str {
        &self.cfg.id
    }

    fn evaluate(&mut self, t: f64, objects: &[SceneObject]) -> Option<Reason> {
        for o in objects {
            let (Some(id), true) = (o.track_id, o.zones.iter().any(|z| *z == self.cfg.zone)) else { continue };
            if !self.cfg.classes.iter().any(|c| **c == *o.class) {
                continue;
            }
            let e = self.inside.entry(id).or_insert((t, t));
            e.1 = t;
        }
        self.inside.retain(|_, (_, last)| t - *last <= DWELL_GRACE_S);
        let mut active: Vec<(u64, f64)> = self
            .inside
            .iter()
            .filter(|(_, (first, last))| *last == t && t - first >= self.cfg.min_dwell_s)
            .map(|(id, (first, _))| (*id, t - first))
            .collect();
        if active.is_empty() {
            return None;
        }
        active.sort_by_key(|(id, _)| *id);
        let n = active.len();
        let longest = active.iter().map(|(_, d)| *d).fold(0.0, f64::max);
        let score = 1.0 - (1.0 - self.cfg.severity).powi(n as i32);
        let what = plural(n, &self.cfg.classes.join("/"));
        Some(Reason {
            rule: self.cfg.id.clone(),
            kind: "intrusion".into(),
            zone: Some(self.cfg.zone.clone()),
            track_ids: active.iter().map(|(id, _)| *id).collect(),
            score: round3(score),
            detail: format!("{what} inside restricted zone {} (longest {:.1} s)", self.cfg.zone, longest),
        })
    }

    fn clear_after_s(&self) -> f64 {
        self.cfg.clear_after_s
    }

    fn update_every_s(&self) -> f64 {
        self.cfg.update_every_s
    }
}

/// "1 person", "3 persons" — counts with the class name as configured.
pub fn plural(n: usize, class: &str) -> String {
    if n == 1 { format!("1 {class}") } else { format!("{n} {class}s") }
}

struct OpenIncident {
    id: String,
    opened_t: f64,
    last_active_t: f64,
    last_emit_t: f64,
    level: Level,
    tracks: BTreeSet<u64>,
    last_risk: Risk,
}

/// Minimum spacing of updates caused only by the number of objects changing (tracker
/// noise at a zone's edge would otherwise flood operators).
const MEMBERSHIP_UPDATE_MIN_S: f64 = 2.0;

/// Rules and incidents for one camera.
pub struct RiskEngine {
    camera_id: Arc<str>,
    rules: Vec<Box<dyn Rule>>,
    open: HashMap<String, OpenIncident>,
}

impl RiskEngine {
    pub fn new(camera_id: Arc<str>, rules: &[RuleConfig]) -> Self {
        let rules = rules
            .iter()
            .map(|r| match r {
                RuleConfig::Intrusion(c) => Box::new(Intrusion { cfg: c.clone(), inside: HashMap::new() }) as Box<dyn Rule>,
            })
            .collect();
        Self { camera_id, rules, open: HashMap::new() }
    }

    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    pub fn open_incidents(&self) -> usize {
        self.open.len()
    }

    /// Evaluates every rule on one frame at time `t` (seconds) and returns the incident
    /// changes it causes.
    pub fn evaluate(&mut self, t: f64, objects: &[SceneObject]) -> Vec<IncidentChange> {
        let mut changes = Vec::new();
        for rule in &mut self.rules {
            let rule_id = rule.id().to_string();
            match (rule.evaluate(t, objects), self.open.get_mut(&rule_id)) {
                (Some(reason), None) => {
                    let risk = Risk::from_reasons(vec![reason]);
                    let id = crate::event::derive_id(&[self.camera_id.as_bytes(), rule_id.as_bytes(), &t.to_bits().to_le_bytes()]);
                    let tracks = risk.reasons[0].track_ids.iter().copied().collect();
                    changes.push(IncidentChange { phase: IncidentPhase::Opened, incident_id: id.clone(), rule_id: rule_id.clone(), risk: risk.clone(), duration_s: 0.0 });
                    self.open.insert(rule_id, OpenIncident { id, opened_t: t, last_active_t: t, last_emit_t: t, level: risk.level, tracks, last_risk: risk });
                }
                (Some(reason), Some(inc)) => {
                    inc.last_active_t = t;
                    let risk = Risk::from_reasons(vec![reason]);
                    let tracks: BTreeSet<u64> = risk.reasons[0].track_ids.iter().copied().collect();
                    let since = t - inc.last_emit_t;
                    let emit = risk.level != inc.level
                        || (tracks.len() != inc.tracks.len() && since >= MEMBERSHIP_UPDATE_MIN_S)
                        || since >= rule.update_every_s();
                    inc.last_risk = risk.clone();
                    if emit {
                        inc.level = risk.level;
                        inc.tracks = tracks;
                        inc.last_emit_t = t;
                        changes.push(IncidentChange { phase: IncidentPhase::Updated, incident_id: inc.id.clone(), rule_id, risk, duration_s: t - inc.opened_t });
                    }
                }
                (None, Some(inc)) => {
                    if t - inc.last_active_t >= rule.clear_after_s() {
                        let inc = self.open.remove(&rule_id).expect("present");
                        changes.push(Self::closed(inc, rule_id, t, "clear"));
                    }
                }
                (None, None) => {}
            }
        }
        changes
    }

    /// Closes every open incident (the source ended or the process is stopping).
    pub fn close_all(&mut self, t: f64, why: &str) -> Vec<IncidentChange> {
        let mut ids: Vec<String> = self.open.keys().cloned().collect();
        ids.sort();
        ids.into_iter()
            .map(|rule_id| {
                let inc = self.open.remove(&rule_id).expect("present");
                Self::closed(inc, rule_id, t, why)
            })
            .collect()
    }

    fn closed(inc: OpenIncident, rule_id: String, t: f64, why: &str) -> IncidentChange {
        let mut risk = inc.last_risk;
        for r in &mut risk.reasons {
            r.detail = format!("{}; closed: {why} after {:.1} s", r.detail, t - inc.opened_t);
        }
        IncidentChange { phase: IncidentPhase::Closed, incident_id: inc.id, rule_id, risk, duration_s: t - inc.opened_t }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(min_dwell_s: f64) -> RuleConfig {
        RuleConfig::Intrusion(IntrusionRule {
            id: "no-entry".into(),
            zone: "gate".into(),
            classes: vec!["person".into()],
            severity: 0.6,
            min_dwell_s,
            clear_after_s: 2.0,
            update_every_s: 5.0,
        })
    }

    fn person(track: u64, in_zone: bool) -> SceneObject {
        SceneObject {
            track_id: Some(track),
            class: Arc::from("person"),
            confidence: 0.9,
            bbox: [0.0; 4],
            world: None,
            speed_mps: None,
            heading_deg: None,
            zones: if in_zone { vec!["gate".into()] } else { vec![] },
        }
    }

    fn phases(c: &[IncidentChange]) -> Vec<IncidentPhase> {
        c.iter().map(|c| c.phase).collect()
    }

    #[test]
    fn one_situation_is_one_incident() {
        let mut e = RiskEngine::new("cam".into(), &[rule(0.0)]);
        let mut all = Vec::new();
        // 10 s inside at 10 fps, then 3 s clear.
        for i in 0..100 {
            all.extend(e.evaluate(i as f64 * 0.1, &[person(1, true)]));
        }
        for i in 100..130 {
            all.extend(e.evaluate(i as f64 * 0.1, &[person(1, false)]));
        }
        assert_eq!(phases(&all), vec![IncidentPhase::Opened, IncidentPhase::Updated, IncidentPhase::Closed]);
        assert!(all.iter().all(|c| c.incident_id == all[0].incident_id));
        assert_eq!(all[0].risk.level, Level::High);
        assert!(all[2].risk.reasons[0].detail.contains("closed: clear"));
    }

    #[test]
    fn dwell_threshold_and_level_escalation() {
        let mut e = RiskEngine::new("cam".into(), &[rule(1.0)]);
        assert!(e.evaluate(0.0, &[person(1, true)]).is_empty());
        assert!(e.evaluate(0.5, &[person(1, true)]).is_empty());
        let c = e.evaluate(1.0, &[person(1, true)]);
        assert_eq!(phases(&c), vec![IncidentPhase::Opened]);
        assert_eq!(c[0].risk.priority, 2);
        // A second and third person (after their own dwell) raise the level to critical.
        e.evaluate(1.1, &[person(1, true), person(2, true), person(3, true)]);
        let c = e.evaluate(2.2, &[person(1, true), person(2, true), person(3, true)]);
        assert_eq!(phases(&c), vec![IncidentPhase::Updated]);
        assert_eq!(c[0].risk.level, Level::Critical);
        assert_eq!(c[0].risk.reasons[0].track_ids, vec![1, 2, 3]);
    }

    #[test]
    fn other_classes_and_untracked_objects_do_not_count() {
        let mut e = RiskEngine::new("cam".into(), &[rule(0.0)]);
        let mut car = person(1, true);
        car.class = Arc::from("car");
        let mut untracked = person(2, true);
        untracked.track_id = None;
        assert!(e.evaluate(0.0, &[car, untracked]).is_empty());
    }

    #[test]
    fn close_all_closes_open_incidents() {
        let mut e = RiskEngine::new("cam".into(), &[rule(0.0)]);
        e.evaluate(0.0, &[person(1, true)]);
        let c = e.close_all(3.0, "source ended");
        assert_eq!(phases(&c), vec![IncidentPhase::Closed]);
        assert_eq!(e.open_incidents(), 0);
    }

    #[test]
    fn levels_and_priorities() {
        assert_eq!(Level::from_score(0.9), Level::Critical);
        assert_eq!(Level::from_score(0.6).priority(), 2);
        assert_eq!(Level::from_score(0.1), Level::Low);
        assert!(Level::Critical > Level::Low);
    }
}
