//! Judging a scene: rules evaluated in world space, each active situation reported as
//! one incident (opened → updated → closed) with a score, level, priority and reasons.
//!
//! **One situation is one incident, per rule and camera.** A rule reports at most one
//! [`Reason`] per frame (all of its matching objects together); while that reason keeps
//! coming back (gaps shorter than the rule's `clear_after_s` included) it is the same
//! incident. Two rules that fire on the same person are two incidents, each explaining
//! one thing, so an operator can close "speeding" without losing "in a restricted zone".
//!
//! **Score.** Every cause inside a reason (one object in a zone, one person too close to
//! a truck, …) scores the rule's `severity` at the rule's threshold and more when it is
//! worse; causes combine by noisy-OR, `1 − Π(1 − sᵢ)`: the probability that at least one
//! of independent causes is real. A risk with several reasons combines them the same way.
//! The level follows from the pipeline's `[risk]` thresholds, the priority from the level.

pub mod config;
pub mod presence;
pub mod rules;
pub mod zone;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{IncidentChange, IncidentPhase, Level, Risk, SceneObject};
use crate::risk::config::{RiskConfig, RuleConfig};
use rules::{Rule, RuleState};
pub use zone::Zone;

/// What an incident last told the world: an update is due when this changes materially.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Reported {
    level: Level,
    score: f64,
    members: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenIncident {
    id: String,
    opened_t: f64,
    last_active_t: f64,
    last_emit_t: f64,
    reported: Reported,
    /// Since when the current state has differed materially from `reported`.
    differs_since: Option<f64>,
    #[serde(with = "crate::model::exact::risk")]
    last_risk: Risk,
}

/// Everything a camera's rules and incidents carry from frame to frame: each rule's own
/// state (by rule id, in rule order) and the open incidents (by rule id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskState {
    rules: Vec<(String, RuleState)>,
    open: Vec<(String, OpenIncident)>,
}

impl RiskState {
    pub fn open_incidents(&self) -> usize {
        self.open.len()
    }

    /// The closing changes of the saved open incidents, by rule id, as of `t` (for a
    /// state that is not continued: too old, or of another configuration).
    pub fn close_all(&self, t: f64, why: &str) -> Vec<IncidentChange> {
        self.open.iter().map(|(rule_id, inc)| RiskEngine::closed(inc.clone(), rule_id.clone(), t, why)).collect()
    }
}

/// Rules and incidents for one camera.
pub struct RiskEngine {
    camera_id: Arc<str>,
    rules: Vec<Box<dyn Rule>>,
    settings: RiskConfig,
    open: HashMap<String, OpenIncident>,
}

impl RiskEngine {
    /// Rules with the default `[risk]` settings.
    pub fn new(camera_id: Arc<str>, rules: &[RuleConfig]) -> Self {
        Self::with_settings(camera_id, rules, RiskConfig::default())
    }

    pub fn with_settings(camera_id: Arc<str>, rules: &[RuleConfig], settings: RiskConfig) -> Self {
        Self { camera_id, rules: rules.iter().map(rules::build).collect(), settings, open: HashMap::new() }
    }

    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    pub fn open_incidents(&self) -> usize {
        self.open.len()
    }

    /// The ids of the open incidents.
    pub fn open_incident_ids(&self) -> Vec<String> {
        self.open.values().map(|i| i.id.clone()).collect()
    }

    /// A copy of the rules' and incidents' state, to continue from with `restore`.
    pub fn state(&self) -> RiskState {
        let rules = self.rules.iter().map(|r| (r.id().to_string(), r.state())).collect();
        let mut open: Vec<(String, OpenIncident)> = self.open.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        open.sort_by(|a, b| a.0.cmp(&b.0));
        RiskState { rules, open }
    }

    /// Continues from a saved state: the same incidents under the same ids. Refused, with
    /// nothing changed, when the state's rules are not these rules.
    pub fn restore(&mut self, s: RiskState) -> Result<(), String> {
        let ids: Vec<&str> = self.rules.iter().map(|r| r.id()).collect();
        let saved: Vec<&str> = s.rules.iter().map(|r| r.0.as_str()).collect();
        if ids != saved {
            return Err(format!("the state's rules {saved:?} are not the configured {ids:?}"));
        }
        if let Some((rule, _)) = s.open.iter().find(|(rule, _)| !ids.contains(&rule.as_str())) {
            return Err(format!("an open incident of unknown rule {rule}"));
        }
        let before: Vec<RuleState> = self.rules.iter().map(|r| r.state()).collect();
        for (i, (_, state)) in s.rules.into_iter().enumerate() {
            if let Err(e) = self.rules[i].restore(state) {
                // Put back what was restored already: all or nothing.
                for (r, b) in self.rules.iter_mut().zip(before) {
                    r.restore(b).expect("its own state");
                }
                return Err(e);
            }
        }
        self.open = s.open.into_iter().collect();
        Ok(())
    }

    /// Evaluates every rule on one frame at time `t` (seconds) and returns the incident
    /// changes it causes, in rule order.
    ///
    /// Updates: an open incident reports `incident.updated` when its level, its number
    /// of members or its score (by `score_step`) differs from what it last reported, once
    /// that difference has held for `settle_s` and the last report is `min_update_gap_s`
    /// old; and, as a heartbeat, every `update_every_s` of the rule (0 = never). A
    /// member replaced by another id (tracker id switch) is not a material change.
    pub fn evaluate(&mut self, t: f64, objects: &[SceneObject]) -> Vec<IncidentChange> {
        let mut changes = Vec::new();
        let s = &self.settings;
        for rule in &mut self.rules {
            let rule_id = rule.id().to_string();
            match (rule.evaluate(t, objects), self.open.get_mut(&rule_id)) {
                (Some(reason), None) => {
                    let risk = Risk::from_reasons_with(vec![reason], &s.thresholds());
                    let id = crate::model::derive_id(&[self.camera_id.as_bytes(), rule_id.as_bytes(), &t.to_bits().to_le_bytes()]);
                    let reported = Reported { level: risk.level, score: risk.score, members: members(&risk) };
                    changes.push(IncidentChange {
                        phase: IncidentPhase::Opened,
                        incident_id: id.clone(),
                        rule_id: rule_id.clone(),
                        risk: risk.clone(),
                        duration_s: 0.0,
                        why: None,
                    });
                    self.open
                        .insert(rule_id, OpenIncident { id, opened_t: t, last_active_t: t, last_emit_t: t, reported, differs_since: None, last_risk: risk });
                }
                (Some(reason), Some(inc)) => {
                    inc.last_active_t = t;
                    let risk = Risk::from_reasons_with(vec![reason], &s.thresholds());
                    let now = Reported { level: risk.level, score: risk.score, members: members(&risk) };
                    let material =
                        now.level != inc.reported.level || now.members != inc.reported.members || (now.score - inc.reported.score).abs() >= s.score_step - 1e-9;
                    inc.differs_since = if material { Some(inc.differs_since.unwrap_or(t)) } else { None };
                    let since = t - inc.last_emit_t;
                    let settled = inc.differs_since.is_some_and(|d| t - d >= s.settle_s - 1e-9);
                    let heartbeat = rule.update_every_s() > 0.0 && since >= rule.update_every_s() - 1e-9;
                    let emit = (settled && since >= s.min_update_gap_s - 1e-9) || heartbeat;
                    inc.last_risk = risk.clone();
                    if emit {
                        inc.reported = now;
                        inc.differs_since = None;
                        inc.last_emit_t = t;
                        changes.push(IncidentChange {
                            phase: IncidentPhase::Updated,
                            incident_id: inc.id.clone(),
                            rule_id,
                            risk,
                            duration_s: t - inc.opened_t,
                            why: None,
                        });
                    }
                }
                (None, Some(inc)) => {
                    if t - inc.last_active_t >= rule.clear_after_s() - 1e-9 {
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
        IncidentChange { phase: IncidentPhase::Closed, incident_id: inc.id, rule_id, risk, duration_s: t - inc.opened_t, why: Some(why.to_string()) }
    }
}

/// Distinct tracks behind a risk.
fn members(risk: &Risk) -> usize {
    risk.reasons.iter().flat_map(|r| r.track_ids.iter()).collect::<BTreeSet<_>>().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reason;
    use crate::risk::config::IntrusionRule;

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

    /// Runs frames at 10 fps from `from` to `to` (exclusive) with `objs(t)`.
    fn run(e: &mut RiskEngine, from: f64, to: f64, objs: impl Fn(f64) -> Vec<SceneObject>) -> Vec<(f64, IncidentChange)> {
        let mut out = Vec::new();
        let mut i = (from * 10.0).round() as i64;
        while (i as f64) < to * 10.0 - 1e-9 {
            let t = i as f64 / 10.0;
            out.extend(e.evaluate(t, &objs(t)).into_iter().map(|c| (t, c)));
            i += 1;
        }
        out
    }

    #[test]
    fn dwell_threshold_and_level_escalation() {
        let mut e = RiskEngine::new("cam".into(), &[rule(1.0)]);
        assert!(e.evaluate(0.0, &[person(1, true)]).is_empty());
        assert!(e.evaluate(0.5, &[person(1, true)]).is_empty());
        let c = e.evaluate(1.0, &[person(1, true)]);
        assert_eq!(phases(&c), vec![IncidentPhase::Opened]);
        assert_eq!(c[0].risk.priority, 2);
        // A second and third person join at 1.1 s, count after their own dwell (2.1 s);
        // the change is reported once it has held for settle_s (1 s): at 3.1 s.
        let all = run(&mut e, 1.1, 4.5, |_| vec![person(1, true), person(2, true), person(3, true)]);
        assert_eq!(all.len(), 1, "{all:?}");
        let (t, c) = &all[0];
        assert!((t - 3.1).abs() < 1e-9, "at {t}");
        assert_eq!(c.phase, IncidentPhase::Updated);
        assert_eq!(c.risk.level, Level::Critical);
        assert_eq!(c.risk.reasons[0].track_ids, vec![1, 2, 3]);
    }

    #[test]
    fn a_flicker_shorter_than_settle_s_is_not_reported() {
        let mut e = RiskEngine::new("cam".into(), &[rule(0.0)]);
        // Two people; one is missed by the detector for 0.5 s at 3 s.
        let all = run(&mut e, 0.0, 4.9, |t| if (3.0..3.5).contains(&t) { vec![person(1, true)] } else { vec![person(1, true), person(2, true)] });
        assert_eq!(phases(&all.into_iter().map(|x| x.1).collect::<Vec<_>>()), vec![IncidentPhase::Opened]);
    }

    #[test]
    fn thresholds_come_from_the_risk_table() {
        let strict = RiskConfig { medium: 0.1, high: 0.2, critical: 0.5, ..Default::default() };
        let mut e = RiskEngine::with_settings("cam".into(), &[rule(0.0)], strict);
        let c = e.evaluate(0.0, &[person(1, true)]);
        assert_eq!((c[0].risk.level, c[0].risk.priority, c[0].risk.score), (Level::Critical, 1, 0.6));
        let lax = RiskConfig { medium: 0.7, high: 0.8, critical: 0.9, ..Default::default() };
        let mut e = RiskEngine::with_settings("cam".into(), &[rule(0.0)], lax);
        let c = e.evaluate(0.0, &[person(1, true)]);
        assert_eq!((c[0].risk.level, c[0].risk.priority), (Level::Low, 4));
    }

    #[test]
    fn reasons_combine_by_noisy_or() {
        let r = |s: f64| Reason { rule: "r".into(), kind: "k".into(), score: s, ..Default::default() };
        assert_eq!(Risk::from_reasons(vec![r(0.5), r(0.5)]).score, 0.75);
        assert_eq!(Risk::from_reasons(vec![r(0.6), r(0.5), r(0.2)]).score, 0.84);
        assert_eq!(Risk::from_reasons(vec![]).score, 0.0);
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
