//! One sentence per event, grounded in what the pipeline actually found: detections,
//! zones, tracks and risk reasons. Deterministic and cheap (no model), so every event
//! gets one.

use std::collections::BTreeMap;

use crate::event::EventKind;
use crate::risk::{Risk, SceneObject};

pub const CAPTIONER: &str = "scene";

/// English count of a class: "1 person", "3 people", "2 buses".
pub fn count_phrase(n: usize, class: &str) -> String {
    if n == 1 {
        return format!("1 {class}");
    }
    let plural = match class {
        "person" => "people".to_string(),
        "mouse" => "mice".to_string(),
        "skis" | "scissors" | "sheep" => class.to_string(),
        c if c.ends_with('s') || c.ends_with("ch") || c.ends_with("sh") => format!("{c}es"),
        c => format!("{c}s"),
    };
    format!("{n} {plural}")
}

/// "12 people, 2 cars and 1 dog" (most frequent first), or "nothing".
pub fn inventory(objects: &[SceneObject]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in objects {
        *counts.entry(&o.class).or_default() += 1;
    }
    let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let parts: Vec<String> = v.iter().map(|(c, n)| count_phrase(*n, c)).collect();
    join_and(&parts).unwrap_or_else(|| "nothing".into())
}

fn join_and(parts: &[String]) -> Option<String> {
    match parts {
        [] => None,
        [one] => Some(one.clone()),
        [init @ .., last] => Some(format!("{} and {last}", init.join(", "))),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The caption for an event.
pub fn describe(kind: EventKind, objects: &[SceneObject], risk: &Risk, duration_s: Option<f64>) -> String {
    let scene = format!("{} in view", inventory(objects));
    let Some(reason) = risk.reasons.first() else {
        return format!("{}.", capitalise(&scene));
    };
    let zone = reason.zone.as_deref().unwrap_or("the area");
    // The rule counts tracked objects of its classes; name them by the class they are.
    let class = reason
        .track_ids
        .first()
        .and_then(|id| objects.iter().find(|o| o.track_id == Some(*id)))
        .map(|o| o.class.to_string())
        .unwrap_or_else(|| "object".into());
    let who = count_phrase(reason.track_ids.len().max(1), &class);
    let dur = duration_s.unwrap_or(0.0);
    let lead = match (kind, reason.kind.as_str()) {
        (EventKind::IncidentOpened, "intrusion") => format!("{who} entered restricted zone {zone}"),
        (EventKind::IncidentUpdated, "intrusion") => {
            let verb = if reason.track_ids.len() == 1 { "has" } else { "have" };
            format!("{who} {verb} been inside restricted zone {zone}; incident open for {dur:.0} s")
        }
        (EventKind::IncidentClosed, "intrusion") => format!("Restricted zone {zone} is clear again after {dur:.0} s"),
        _ => reason.detail.clone(),
    };
    format!("{} ({} risk); {scene}.", capitalise(&lead), risk.level.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::{Level, Reason};
    use std::sync::Arc;

    fn obj(class: &str, track: Option<u64>) -> SceneObject {
        SceneObject { track_id: track, class: Arc::from(class), confidence: 0.9, bbox: [0.0; 4], world: None, speed_mps: None, heading_deg: None, zones: vec![] }
    }

    #[test]
    fn inventories_count_and_pluralise() {
        let objs = [obj("person", None), obj("person", None), obj("bus", None), obj("dog", None), obj("dog", None), obj("dog", None)];
        assert_eq!(inventory(&objs), "3 dogs, 2 people and 1 bus");
        assert_eq!(inventory(&[]), "nothing");
        assert_eq!(count_phrase(2, "bus"), "2 buses");
    }

    #[test]
    fn incident_captions_name_the_zone_and_what_is_in_it() {
        let risk = Risk {
            score: 0.84,
            level: Level::High,
            priority: 2,
            reasons: vec![Reason { rule: "r".into(), kind: "intrusion".into(), zone: Some("gate-a".into()), track_ids: vec![4, 7], score: 0.84, detail: String::new() }],
        };
        let objs = [obj("person", Some(4)), obj("person", Some(7)), obj("car", None)];
        let c = describe(EventKind::IncidentUpdated, &objs, &risk, Some(12.4));
        assert_eq!(c, "2 people have been inside restricted zone gate-a; incident open for 12 s (high risk); 2 people and 1 car in view.");
        let c = describe(EventKind::FrameAnalyzed, &objs, &Risk::none(), None);
        assert_eq!(c, "2 people and 1 car in view.");
    }
}
