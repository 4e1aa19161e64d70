//! A pipeline file's `[[zones]]`, `[[rules]]` and `[risk]`: what is judged, where, and
//! how scores become levels and incidents are paced.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::model::{Issues, LevelThresholds};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub id: String,
    /// World-space polygon `[[x, y], ...]` in metres (at least 3 corners).
    pub polygon: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum RuleConfig {
    /// Objects of `classes` inside `zone`.
    Intrusion(IntrusionRule),
    /// Objects of `classes` within `distance_m` of objects of `near_classes`.
    Proximity(ProximityRule),
    /// At least `min_count` objects within `radius_m` of one of them, or inside `zone`.
    Crowding(CrowdingRule),
    /// Objects of `classes` staying in `zone` longer than `min_dwell_s`.
    Loitering(LoiteringRule),
    /// Objects of `classes` faster than `max_speed_mps` (optionally only in `zone`).
    Speed(SpeedRule),
}

impl RuleConfig {
    pub fn id(&self) -> &str {
        self.common().id
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Intrusion(_) => "intrusion",
            Self::Proximity(_) => "proximity",
            Self::Crowding(_) => "crowding",
            Self::Loitering(_) => "loitering",
            Self::Speed(_) => "speed",
        }
    }
    /// The keys every rule kind has.
    pub fn common(&self) -> RuleCommon<'_> {
        let (id, classes, severity, clear_after_s, update_every_s) = match self {
            Self::Intrusion(r) => (&r.id, &r.classes, r.severity, r.clear_after_s, r.update_every_s),
            Self::Proximity(r) => (&r.id, &r.classes, r.severity, r.clear_after_s, r.update_every_s),
            Self::Crowding(r) => (&r.id, &r.classes, r.severity, r.clear_after_s, r.update_every_s),
            Self::Loitering(r) => (&r.id, &r.classes, r.severity, r.clear_after_s, r.update_every_s),
            Self::Speed(r) => (&r.id, &r.classes, r.severity, r.clear_after_s, r.update_every_s),
        };
        RuleCommon { id, classes, severity, clear_after_s, update_every_s }
    }
    /// The zone the rule watches, if it has one.
    pub fn zone(&self) -> Option<&str> {
        match self {
            Self::Intrusion(r) => Some(&r.zone),
            Self::Loitering(r) => Some(&r.zone),
            Self::Proximity(r) => r.zone.as_deref(),
            Self::Crowding(r) => r.zone.as_deref(),
            Self::Speed(r) => r.zone.as_deref(),
        }
    }
}

/// Borrowed view of the keys shared by all rule kinds.
#[derive(Debug, Clone, Copy)]
pub struct RuleCommon<'a> {
    pub id: &'a String,
    pub classes: &'a Vec<String>,
    pub severity: f64,
    pub clear_after_s: f64,
    pub update_every_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntrusionRule {
    pub id: String,
    pub zone: String,
    #[serde(default = "default_person")]
    pub classes: Vec<String>,
    /// Score of one object inside the zone, 0..1; more objects raise it towards 1.
    #[serde(default = "default_severity")]
    pub severity: f64,
    /// An object must be inside this long before it counts (seconds).
    #[serde(default)]
    pub min_dwell_s: f64,
    /// The incident closes after the zone has been clear this long (seconds).
    #[serde(default = "default_clear_after")]
    pub clear_after_s: f64,
    /// An open incident reports `incident.updated` at least this often (seconds, 0 =
    /// only on material changes), and when its level or object set changes.
    #[serde(default = "default_update_every")]
    pub update_every_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProximityRule {
    pub id: String,
    /// The objects at risk (A), e.g. `["person"]`.
    #[serde(default = "default_person")]
    pub classes: Vec<String>,
    /// The objects they must keep away from (B), e.g. `["truck", "car"]`. Same as
    /// `classes` for "people too close to each other".
    pub near_classes: Vec<String>,
    /// A and B closer than this (metres, ground distance) is the situation.
    pub distance_m: f64,
    /// Only A objects inside this zone count (default: everywhere).
    #[serde(default)]
    pub zone: Option<String>,
    /// Score of one A object too close; more objects raise it towards 1, closer ones too.
    #[serde(default = "default_severity")]
    pub severity: f64,
    /// A must stay that close this long before it counts (seconds).
    #[serde(default)]
    pub min_duration_s: f64,
    #[serde(default = "default_clear_after")]
    pub clear_after_s: f64,
    #[serde(default = "default_update_every")]
    pub update_every_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CrowdingRule {
    pub id: String,
    #[serde(default = "default_person")]
    pub classes: Vec<String>,
    /// At least this many objects make a crowd (≥ 2).
    pub min_count: usize,
    /// Objects within this many metres of one member count together. Without it, every
    /// object inside `zone` counts.
    #[serde(default)]
    pub radius_m: Option<f64>,
    /// Only objects inside this zone count.
    #[serde(default)]
    pub zone: Option<String>,
    /// Score of a crowd of exactly `min_count`; larger crowds score higher.
    #[serde(default = "default_severity")]
    pub severity: f64,
    /// The crowd must persist this long before it counts (seconds).
    #[serde(default)]
    pub min_duration_s: f64,
    #[serde(default = "default_clear_after")]
    pub clear_after_s: f64,
    #[serde(default = "default_update_every")]
    pub update_every_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoiteringRule {
    pub id: String,
    pub zone: String,
    #[serde(default = "default_person")]
    pub classes: Vec<String>,
    /// An object inside longer than this is loitering (seconds).
    #[serde(default = "default_loiter_dwell")]
    pub min_dwell_s: f64,
    /// Absences (occlusion, leaving the zone briefly, a tracker id switch) shorter than
    /// this keep the object's dwell running (seconds).
    #[serde(default = "default_max_gap")]
    pub max_gap_s: f64,
    #[serde(default = "default_severity")]
    pub severity: f64,
    #[serde(default = "default_clear_after")]
    pub clear_after_s: f64,
    #[serde(default = "default_update_every")]
    pub update_every_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpeedRule {
    pub id: String,
    #[serde(default = "default_person")]
    pub classes: Vec<String>,
    /// Faster than this (metres per second, smoothed ground speed) is the situation.
    pub max_speed_mps: f64,
    /// Only objects inside this zone count (default: everywhere).
    #[serde(default)]
    pub zone: Option<String>,
    /// Score of one object at exactly the limit; faster and more objects score higher.
    #[serde(default = "default_severity")]
    pub severity: f64,
    /// The object must stay above the limit this long before it counts (seconds).
    #[serde(default = "default_speed_duration")]
    pub min_duration_s: f64,
    #[serde(default = "default_clear_after")]
    pub clear_after_s: f64,
    #[serde(default = "default_update_every")]
    pub update_every_s: f64,
}

fn default_person() -> Vec<String> {
    vec!["person".into()]
}
fn default_severity() -> f64 {
    0.6
}
fn default_clear_after() -> f64 {
    2.0
}
fn default_update_every() -> f64 {
    5.0
}
fn default_loiter_dwell() -> f64 {
    30.0
}
fn default_max_gap() -> f64 {
    2.0
}
fn default_speed_duration() -> f64 {
    0.5
}

/// `[risk]` in a pipeline file: score → level thresholds and incident update pacing.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Lowest score of each level; below `medium` is `low`.
    pub medium: f64,
    pub high: f64,
    pub critical: f64,
    /// A material change (level, score by ≥ `score_step`, number of objects) must hold
    /// this long before it is reported, so a flicker or a tracker id switch is silent.
    pub settle_s: f64,
    /// Two `incident.updated` of one incident are at least this far apart (seconds).
    pub min_update_gap_s: f64,
    /// Score change that counts as material.
    pub score_step: f64,
}

impl RiskConfig {
    /// The level thresholds of this table.
    pub fn thresholds(&self) -> LevelThresholds {
        LevelThresholds { medium: self.medium, high: self.high, critical: self.critical }
    }
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self { medium: 0.3, high: 0.6, critical: 0.85, settle_s: 1.0, min_update_gap_s: 2.0, score_step: 0.1 }
    }
}

/// The checks of one `[[rules]]` entry beyond its id and class names.
pub fn validate_rule(r: &RuleConfig, key: &str, zone_ids: &HashSet<&str>, iss: &mut Issues) {
    let c = r.common();
    if let Some(zone) = r.zone().filter(|z| !zone_ids.contains(z)) {
        let mut known: Vec<&str> = zone_ids.iter().copied().collect();
        known.sort();
        iss.add(format!("{key}.zone"), format!("no zone `{zone}` in this pipeline"), format!("name one of the [[zones]] ids {known:?}"));
    }
    if c.classes.is_empty() {
        iss.add(format!("{key}.classes"), "empty", "list the classes the rule is about, e.g. [\"person\"]");
    }
    if !(c.severity > 0.0 && c.severity <= 1.0) {
        iss.add(format!("{key}.severity"), format!("{} is outside (0, 1]", c.severity), "use e.g. 0.6");
    }
    let duration = |iss: &mut Issues, name: &str, v: f64| {
        if !(v >= 0.0 && v.is_finite() && v <= 86_400.0) {
            iss.add(format!("{key}.{name}"), format!("{v} is not a duration in 0..=86400 s"), "use seconds, e.g. 2.0");
        }
    };
    duration(iss, "clear_after_s", c.clear_after_s);
    duration(iss, "update_every_s", c.update_every_s);
    let positive = |iss: &mut Issues, name: &str, v: f64, example: &str| {
        if !(v > 0.0 && v.is_finite() && v <= 10_000.0) {
            iss.add(format!("{key}.{name}"), format!("{v} is not a positive number of metres (per second)"), format!("use e.g. {example}"));
        }
    };
    match r {
        RuleConfig::Intrusion(r) => duration(iss, "min_dwell_s", r.min_dwell_s),
        RuleConfig::Proximity(r) => {
            if r.near_classes.is_empty() {
                iss.add(format!("{key}.near_classes"), "empty", "list the classes to keep away from, e.g. [\"truck\"] (or the same as `classes`)");
            }
            positive(iss, "distance_m", r.distance_m, "3.0");
            duration(iss, "min_duration_s", r.min_duration_s);
        }
        RuleConfig::Crowding(r) => {
            if r.min_count < 2 {
                iss.add(format!("{key}.min_count"), format!("{} objects are no crowd", r.min_count), "use at least 2, e.g. 4");
            }
            if let Some(radius) = r.radius_m {
                positive(iss, "radius_m", radius, "2.0");
            }
            if r.radius_m.is_none() && r.zone.is_none() {
                iss.add(
                    key.to_string(),
                    "a crowding rule needs `radius_m` (objects close together), `zone` (objects in it), or both",
                    "add radius_m = 2.0 or zone = \"…\"",
                );
            }
            duration(iss, "min_duration_s", r.min_duration_s);
        }
        RuleConfig::Loitering(r) => {
            duration(iss, "min_dwell_s", r.min_dwell_s);
            if r.min_dwell_s == 0.0 {
                iss.add(
                    format!("{key}.min_dwell_s"),
                    "0 s makes every visit loitering",
                    "use the dwell that is suspicious, e.g. 30; for \"no entry at all\" use kind = \"intrusion\"",
                );
            }
            duration(iss, "max_gap_s", r.max_gap_s);
        }
        RuleConfig::Speed(r) => {
            positive(iss, "max_speed_mps", r.max_speed_mps, "2.5 (a brisk walk is ~1.8 m/s)");
            duration(iss, "min_duration_s", r.min_duration_s);
        }
    }
}

pub fn validate_risk(r: &RiskConfig, iss: &mut Issues) {
    let ok = |v: f64| v > 0.0 && v <= 1.0;
    if !(ok(r.medium) && ok(r.high) && ok(r.critical) && r.medium < r.high && r.high < r.critical) {
        iss.add(
            "risk.medium / high / critical",
            format!("{} / {} / {} are not increasing scores in (0, 1]", r.medium, r.high, r.critical),
            "use increasing thresholds, e.g. medium = 0.3, high = 0.6, critical = 0.85",
        );
    }
    for (name, v) in [("settle_s", r.settle_s), ("min_update_gap_s", r.min_update_gap_s)] {
        if !(0.0..=3600.0).contains(&v) {
            iss.add(format!("risk.{name}"), format!("{v} is not a duration in 0..=3600 s"), "use seconds, e.g. 1.0 (settle_s) or 2.0 (min_update_gap_s)");
        }
    }
    if !(r.score_step > 0.0 && r.score_step <= 1.0) {
        iss.add("risk.score_step", format!("{} is outside (0, 1]", r.score_step), "use e.g. 0.1");
    }
}

/// `zones[i]` beyond its id: the polygon.
pub fn validate_zone(z: &ZoneConfig, key: &str, iss: &mut Issues) {
    if z.polygon.len() < 3 {
        iss.add(format!("{key}.polygon"), format!("{} corners; a zone needs at least 3", z.polygon.len()), "list the corners [[x, y], ...] in world metres");
    } else if super::zone::polygon_area(&z.polygon).abs() < 1e-6 {
        iss.add(format!("{key}.polygon"), "the polygon has no area", "list corners in order around the zone");
    }
}
