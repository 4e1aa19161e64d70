//! The rule kinds. Each looks at one frame's objects (world metres, zones already
//! assigned) and reports the rule's active situation on the camera as one [`Reason`],
//! or nothing. Only tracked objects count: a track id is what lets a rule measure
//! durations, and what keeps an incident's members stable.

use crate::risk::config::{CrowdingRule, IntrusionRule, LoiteringRule, ProximityRule, RuleConfig, SpeedRule};

use serde::{Deserialize, Serialize};

use super::presence::{Presence, PresenceState, Seen};
use crate::model::{Reason, SceneObject, noisy_or, round3};

/// A rule's view of one frame: the active situation, if any.
pub(crate) trait Rule: Send {
    fn id(&self) -> &str;
    fn evaluate(&mut self, t: f64, objects: &[SceneObject]) -> Option<Reason>;
    fn clear_after_s(&self) -> f64;
    fn update_every_s(&self) -> f64;
    /// What the rule carries from frame to frame.
    fn state(&self) -> RuleState;
    /// Continues from a saved state; refused (nothing changed) when it is another kind's.
    fn restore(&mut self, s: RuleState) -> Result<(), String>;
}

/// A rule's own state: its presence table, and a crowd's age for crowding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RuleState {
    /// Intrusion, loitering, proximity, speed.
    Presence(PresenceState),
    Crowding {
        presence: PresenceState,
        since: Option<f64>,
        last_true: f64,
    },
}

impl RuleState {
    fn kind(&self) -> &'static str {
        match self {
            Self::Presence(_) => "presence",
            Self::Crowding { .. } => "crowding",
        }
    }
}

/// `state`/`restore` of a rule whose only state is its presence table.
macro_rules! presence_state {
    () => {
        fn state(&self) -> RuleState {
            RuleState::Presence(self.presence.state())
        }

        fn restore(&mut self, s: RuleState) -> Result<(), String> {
            match s {
                RuleState::Presence(p) => {
                    self.presence.restore(p);
                    Ok(())
                }
                other => Err(format!("rule {}: saved state is {}'s", self.cfg.id, other.kind())),
            }
        }
    };
}

/// A track that stops meeting a condition (leaves the zone, slows down, is occluded, or
/// gets a new id from the tracker) for less than this keeps its duration.
pub const HOLD_S: f64 = 1.0;

pub(crate) fn build(cfg: &RuleConfig) -> Box<dyn Rule> {
    match cfg {
        RuleConfig::Intrusion(c) => Box::new(Intrusion { cfg: c.clone(), presence: Presence::new(HOLD_S) }),
        RuleConfig::Loitering(c) => Box::new(Loitering { presence: Presence::new(c.max_gap_s.max(0.0)), cfg: c.clone() }),
        RuleConfig::Proximity(c) => Box::new(Proximity { cfg: c.clone(), presence: Presence::new(HOLD_S) }),
        RuleConfig::Crowding(c) => Box::new(Crowding { cfg: c.clone(), presence: Presence::new(HOLD_S), since: None, last_true: f64::NEG_INFINITY }),
        RuleConfig::Speed(c) => Box::new(Speed { cfg: c.clone(), presence: Presence::new(HOLD_S) }),
    }
}

/// The score of one cause `ratio` times as bad as the rule's threshold: `severity` at
/// the threshold, growing towards 1 like `ratio` independent causes.
fn scaled(severity: f64, ratio: f64) -> f64 {
    1.0 - (1.0 - severity).powf(ratio.clamp(0.0, 50.0))
}

fn pos(o: &SceneObject) -> Option<[f64; 2]> {
    o.world.map(|w| [w.x_m, w.y_m])
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

fn has_class(classes: &[String], c: &str) -> bool {
    classes.iter().any(|k| k == c)
}

fn in_zone(o: &SceneObject, zone: Option<&str>) -> bool {
    zone.is_none_or(|z| o.zones.iter().any(|x| x == z))
}

/// The class shared by every listed member, if they share one.
fn common_class<'a>(classes: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut it = classes.into_iter();
    let first = it.next()?;
    it.all(|c| c == first).then(|| first.to_string())
}

/// "person", "person/car": how details name a rule's classes.
fn class_list(classes: &[String]) -> String {
    classes.join("/")
}

fn count(n: usize, class: &str) -> String {
    crate::caption::count_phrase(n, class)
}

/// The settings every rule config shares (`id`, `clear_after_s`, `update_every_s`).
macro_rules! rule_settings {
    () => {
        fn id(&self) -> &str {
            &self.cfg.id
        }

        fn clear_after_s(&self) -> f64 {
            self.cfg.clear_after_s
        }

        fn update_every_s(&self) -> f64 {
            self.cfg.update_every_s
        }
    };
}

/// Tracked objects of `classes` that have stayed in `zone` for at least `min_s`
/// (absences shorter than `hold_s` forgiven), as intrusion and loitering see them.
struct ZoneDwell<'p> {
    /// (track id, dwell seconds, class)
    active: Vec<(u64, f64, &'p str)>,
    longest: f64,
    class: Option<String>,
    /// "2 people", "a person", … for captions.
    what: String,
}

/// What a zone-dwell rule watches: objects of `classes` in `zone`, counted once inside
/// for `min_s`, absences shorter than `hold_s` forgiven.
struct DwellWatch<'a> {
    classes: &'a [String],
    zone: &'a str,
    hold_s: f64,
    min_s: f64,
}

fn zone_dwell<'p>(presence: &'p mut Presence, t: f64, objects: &[SceneObject], w: DwellWatch<'_>) -> Option<ZoneDwell<'p>> {
    let DwellWatch { classes, zone, hold_s, min_s } = w;
    let seen: Vec<Seen> = objects
        .iter()
        .filter(|o| has_class(classes, &o.class) && in_zone(o, Some(zone)))
        .filter_map(|o| Some(Seen { track_id: o.track_id?, pos: pos(o), class: &o.class }))
        .collect();
    presence.observe(t, &seen);
    let presence: &'p Presence = presence;
    let active = presence.active(t, hold_s, min_s);
    if active.is_empty() {
        return None;
    }
    let longest = active.iter().map(|a| a.1).fold(0.0, f64::max);
    let class = common_class(active.iter().map(|a| a.2));
    let what = count(active.len(), class.as_deref().unwrap_or(&class_list(classes)));
    Some(ZoneDwell { active, longest, class, what })
}

struct Intrusion {
    cfg: IntrusionRule,
    presence: Presence,
}

impl Rule for Intrusion {
    rule_settings!();
    presence_state!();

    fn evaluate(&mut self, t: f64, objects: &[SceneObject]) -> Option<Reason> {
        let ZoneDwell { active, longest, class, what } = zone_dwell(
            &mut self.presence,
            t,
            objects,
            DwellWatch { classes: &self.cfg.classes, zone: &self.cfg.zone, hold_s: 0.0, min_s: self.cfg.min_dwell_s },
        )?;
        let n = active.len();
        Some(Reason {
            rule: self.cfg.id.clone(),
            kind: "intrusion".into(),
            zone: Some(self.cfg.zone.clone()),
            track_ids: active.iter().map(|a| a.0).collect(),
            score: round3(noisy_or(std::iter::repeat_n(self.cfg.severity, n))),
            detail: format!("{what} inside restricted zone {} (longest {:.1} s)", self.cfg.zone, longest),
            class,
            dwell_s: Some(round1(longest)),
            limit: (self.cfg.min_dwell_s > 0.0).then_some(self.cfg.min_dwell_s),
            ..Default::default()
        })
    }
}

struct Loitering {
    cfg: LoiteringRule,
    presence: Presence,
}

impl Rule for Loitering {
    rule_settings!();
    presence_state!();

    fn evaluate(&mut self, t: f64, objects: &[SceneObject]) -> Option<Reason> {
        // Members out of sight for less than max_gap_s still loiter (occlusion, a step
        // outside the zone): the gap tolerance is the point of this rule.
        let ZoneDwell { active, longest, class, what } = zone_dwell(
            &mut self.presence,
            t,
            objects,
            DwellWatch { classes: &self.cfg.classes, zone: &self.cfg.zone, hold_s: self.cfg.max_gap_s, min_s: self.cfg.min_dwell_s },
        )?;
        let limit = self.cfg.min_dwell_s.max(1e-3);
        Some(Reason {
            rule: self.cfg.id.clone(),
            kind: "loitering".into(),
            zone: Some(self.cfg.zone.clone()),
            track_ids: active.iter().map(|a| a.0).collect(),
            score: round3(noisy_or(active.iter().map(|a| scaled(self.cfg.severity, a.1 / limit)))),
            detail: format!("{what} loitering in zone {} (longest {:.1} s, limit {} s)", self.cfg.zone, longest, self.cfg.min_dwell_s),
            class,
            dwell_s: Some(round1(longest)),
            limit: Some(self.cfg.min_dwell_s),
            ..Default::default()
        })
    }
}

struct Proximity {
    cfg: ProximityRule,
    presence: Presence,
}

impl Proximity {
    /// "People too close to each other" rather than "people near trucks".
    fn same_classes(&self) -> bool {
        let mut a = self.cfg.classes.clone();
        let mut b = self.cfg.near_classes.clone();
        a.sort();
        b.sort();
        a == b
    }
}

impl Rule for Proximity {
    rule_settings!();
    presence_state!();

    fn evaluate(&mut self, t: f64, objects: &[SceneObject]) -> Option<Reason> {
        // For every tracked A object: its nearest B object (any other object of the
        // near classes, tracked or not) within distance_m.
        let mut near: Vec<(usize, usize, f64)> = Vec::new();
        for (i, a) in objects.iter().enumerate() {
            let (Some(_), Some(pa)) = (a.track_id, pos(a)) else { continue };
            if !has_class(&self.cfg.classes, &a.class) || !in_zone(a, self.cfg.zone.as_deref()) {
                continue;
            }
            let best = objects
                .iter()
                .enumerate()
                .filter(|(j, b)| *j != i && has_class(&self.cfg.near_classes, &b.class))
                .filter_map(|(j, b)| Some((j, dist(pa, pos(b)?))))
                .min_by(|x, y| x.1.total_cmp(&y.1));
            if let Some((j, d)) = best.filter(|b| b.1 <= self.cfg.distance_m) {
                near.push((i, j, d));
            }
        }
        let seen: Vec<Seen> =
            near.iter().map(|&(i, _, _)| Seen { track_id: objects[i].track_id.expect("tracked"), pos: pos(&objects[i]), class: &objects[i].class }).collect();
        self.presence.observe(t, &seen);
        let active = self.presence.active(t, 0.0, self.cfg.min_duration_s);
        if active.is_empty() {
            return None;
        }
        let members: Vec<&(usize, usize, f64)> = near.iter().filter(|(i, _, _)| active.iter().any(|a| Some(a.0) == objects[*i].track_id)).collect();
        let closest = members.iter().map(|m| m.2).fold(f64::INFINITY, f64::min);
        let same = self.same_classes();
        let mut near_ids: Vec<u64> = if same { Vec::new() } else { members.iter().filter_map(|m| objects[m.1].track_id).collect() };
        near_ids.sort_unstable();
        near_ids.dedup();
        let class = common_class(active.iter().map(|a| a.2));
        let near_class = common_class(members.iter().map(|m| &*objects[m.1].class));
        let n = active.len();
        let limit = self.cfg.distance_m;
        let what = count(n, class.as_deref().unwrap_or(&class_list(&self.cfg.classes)));
        let other = if same { "each other".to_string() } else { format!("a {}", near_class.as_deref().unwrap_or(&class_list(&self.cfg.near_classes))) };
        Some(Reason {
            rule: self.cfg.id.clone(),
            kind: "proximity".into(),
            zone: self.cfg.zone.clone(),
            track_ids: active.iter().map(|a| a.0).collect(),
            score: round3(noisy_or(members.iter().map(|m| scaled(self.cfg.severity, limit / m.2.max(0.1 * limit))))),
            detail: format!("{what} within {limit} m of {other} (closest {closest:.1} m)"),
            class,
            near_track_ids: near_ids,
            near_class,
            distance_m: Some(round1(closest)),
            limit: Some(limit),
            ..Default::default()
        })
    }
}

struct Crowding {
    cfg: CrowdingRule,
    presence: Presence,
    /// When the crowd formed (continuously present, gaps < HOLD_S tolerated).
    since: Option<f64>,
    last_true: f64,
}

impl Crowding {
    /// Indices of the objects that form a crowd: with `radius_m`, every object that has
    /// at least `min_count` objects (itself included) within the radius, together with
    /// those neighbours; without it, every candidate when there are at least `min_count`.
    fn members(&self, objects: &[SceneObject]) -> Vec<usize> {
        let cand: Vec<usize> = objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.track_id.is_some() && has_class(&self.cfg.classes, &o.class) && in_zone(o, self.cfg.zone.as_deref()))
            .filter(|(_, o)| self.cfg.radius_m.is_none() || o.world.is_some())
            .map(|(i, _)| i)
            .collect();
        let n = self.cfg.min_count.max(1);
        match self.cfg.radius_m {
            None => {
                if cand.len() >= n {
                    cand
                } else {
                    Vec::new()
                }
            }
            Some(r) => {
                let mut inc = vec![false; objects.len()];
                for &i in &cand {
                    let pi = pos(&objects[i]).expect("filtered");
                    let hood: Vec<usize> = cand.iter().copied().filter(|&j| dist(pi, pos(&objects[j]).expect("filtered")) <= r).collect();
                    if hood.len() >= n {
                        for j in hood {
                            inc[j] = true;
                        }
                    }
                }
                cand.into_iter().filter(|&i| inc[i]).collect()
            }
        }
    }
}

impl Rule for Crowding {
    rule_settings!();

    fn state(&self) -> RuleState {
        RuleState::Crowding { presence: self.presence.state(), since: self.since, last_true: self.last_true }
    }

    fn restore(&mut self, s: RuleState) -> Result<(), String> {
        match s {
            RuleState::Crowding { presence, since, last_true } => {
                self.presence.restore(presence);
                self.since = since;
                self.last_true = last_true;
                Ok(())
            }
            other => Err(format!("rule {}: saved state is {}'s", self.cfg.id, other.kind())),
        }
    }

    fn evaluate(&mut self, t: f64, objects: &[SceneObject]) -> Option<Reason> {
        let members = self.members(objects);
        let seen: Vec<Seen> =
            members.iter().map(|&i| Seen { track_id: objects[i].track_id.expect("tracked"), pos: pos(&objects[i]), class: &objects[i].class }).collect();
        self.presence.observe(t, &seen);
        if members.is_empty() {
            if t - self.last_true > HOLD_S {
                self.since = None;
            }
            return None;
        }
        if self.since.is_none() || t - self.last_true > HOLD_S {
            self.since = Some(t);
        }
        self.last_true = t;
        let since = self.since.expect("set");
        if t - since < self.cfg.min_duration_s - 1e-9 {
            return None;
        }
        // Ids through the presence table, so a member's id switch does not change them
        // twice; the count is this frame's.
        let active = self.presence.active(t, 0.0, 0.0);
        let n = active.len();
        let class = common_class(active.iter().map(|a| a.2));
        let what = count(n, class.as_deref().unwrap_or(&class_list(&self.cfg.classes)));
        let where_ = match (self.cfg.radius_m, &self.cfg.zone) {
            (Some(r), Some(z)) => format!("within {r} m of each other in zone {z}"),
            (Some(r), None) => format!("within {r} m of each other"),
            (None, Some(z)) => format!("in zone {z}"),
            (None, None) => String::new(),
        };
        Some(Reason {
            rule: self.cfg.id.clone(),
            kind: "crowding".into(),
            zone: self.cfg.zone.clone(),
            track_ids: active.iter().map(|a| a.0).collect(),
            score: round3(scaled(self.cfg.severity, n as f64 / self.cfg.min_count.max(1) as f64)),
            detail: format!("{what} {where_} (crowd from {}, for {:.1} s)", self.cfg.min_count, t - since),
            class,
            dwell_s: Some(round1(t - since)),
            limit: self.cfg.radius_m,
            ..Default::default()
        })
    }
}

struct Speed {
    cfg: SpeedRule,
    presence: Presence,
}

impl Rule for Speed {
    rule_settings!();
    presence_state!();

    fn evaluate(&mut self, t: f64, objects: &[SceneObject]) -> Option<Reason> {
        let fast: Vec<&SceneObject> = objects
            .iter()
            .filter(|o| o.track_id.is_some() && has_class(&self.cfg.classes, &o.class) && in_zone(o, self.cfg.zone.as_deref()))
            .filter(|o| o.speed_mps.is_some_and(|v| v > self.cfg.max_speed_mps))
            .collect();
        let seen: Vec<Seen> = fast.iter().map(|o| Seen { track_id: o.track_id.expect("tracked"), pos: pos(o), class: &o.class }).collect();
        self.presence.observe(t, &seen);
        let active = self.presence.active(t, 0.0, self.cfg.min_duration_s);
        if active.is_empty() {
            return None;
        }
        let speeds: Vec<f64> = active.iter().filter_map(|a| fast.iter().find(|o| o.track_id == Some(a.0)).and_then(|o| o.speed_mps)).collect();
        let top = speeds.iter().copied().fold(0.0, f64::max);
        let n = active.len();
        let class = common_class(active.iter().map(|a| a.2));
        let what = count(n, class.as_deref().unwrap_or(&class_list(&self.cfg.classes)));
        let zone = self.cfg.zone.as_deref().map(|z| format!(" in zone {z}")).unwrap_or_default();
        let limit = self.cfg.max_speed_mps;
        Some(Reason {
            rule: self.cfg.id.clone(),
            kind: "speed".into(),
            zone: self.cfg.zone.clone(),
            track_ids: active.iter().map(|a| a.0).collect(),
            score: round3(noisy_or(speeds.iter().map(|v| scaled(self.cfg.severity, v / limit)))),
            detail: format!("{what} faster than {limit} m/s{zone} (fastest {top:.1} m/s)"),
            class,
            speed_mps: Some(round1(top)),
            limit: Some(limit),
            ..Default::default()
        })
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
