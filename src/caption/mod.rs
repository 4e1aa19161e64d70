//! One sentence per event, grounded in what the pipeline actually found: detections,
//! zones, tracks and risk reasons (dwell, distances, speeds). Deterministic and cheap
//! (no model), so every event gets one.
//!
//! Incident captions are phrased per rule kind from the reason's measurements, e.g.
//! "Two people have been inside restricted zone gate-a for 14 s, 3 m from a moving
//! truck." Small counts are words ("two people"), larger ones digits ("12 people");
//! times are whole seconds, distances to a person's precision.

pub mod model;

use std::collections::BTreeMap;

use crate::model::EventKind;
use crate::model::{IncidentChange, IncidentPhase, Reason, Risk, SceneObject};

/// Objects of another class closer than this to a member are mentioned ("3 m from a
/// moving truck").
pub const CONTEXT_RADIUS_M: f64 = 10.0;
/// Slower than this counts as standing.
pub const MOVING_MPS: f64 = 0.5;

fn plural_of(class: &str) -> String {
    match class {
        "person" => "people".to_string(),
        "mouse" => "mice".to_string(),
        "skis" | "scissors" | "sheep" => class.to_string(),
        c if c.ends_with('s') || c.ends_with("ch") || c.ends_with("sh") => format!("{c}es"),
        c => format!("{c}s"),
    }
}

/// English count of a class with digits: "1 person", "3 people", "2 buses".
pub fn count_phrase(n: usize, class: &str) -> String {
    if n == 1 { format!("1 {class}") } else { format!("{n} {}", plural_of(class)) }
}

/// English count of a class in words for small numbers: "a person", "an umbrella",
/// "two people", "12 trucks"; `adjective` goes before the noun ("a moving truck").
pub fn count_words(n: usize, class: &str, adjective: Option<&str>) -> String {
    const WORDS: [&str; 11] = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
    let noun = if n == 1 { class.to_string() } else { plural_of(class) };
    let noun = match adjective {
        Some(a) => format!("{a} {noun}"),
        None => noun,
    };
    match n {
        1 => {
            let an = noun.starts_with(['a', 'e', 'i', 'o', 'u']);
            format!("{} {noun}", if an { "an" } else { "a" })
        }
        n if n < WORDS.len() => format!("{} {noun}", WORDS[n]),
        n => format!("{n} {noun}"),
    }
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

/// Whole seconds, never "0 s" for something that happened.
fn secs(v: f64) -> String {
    format!("{:.0}", v.max(0.0).round())
}

/// Metres with one decimal below 10 m, whole metres above.
fn metres(v: f64) -> String {
    if v < 10.0 { format!("{v:.1}") } else { format!("{v:.0}") }
}

/// A number as written in a config value: "3" for 3.0, "2.5" for 2.5.
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The caption for an event without an incident change (`frame.analyzed`), or for any
/// event from its risk alone.
pub fn describe(kind: EventKind, objects: &[SceneObject], risk: &Risk, duration_s: Option<f64>) -> String {
    match risk.reasons.first() {
        None => format!("{}.", capitalise(&format!("{} in view", inventory(objects)))),
        Some(reason) => {
            let phase = match kind {
                EventKind::IncidentClosed => IncidentPhase::Closed,
                EventKind::IncidentOpened => IncidentPhase::Opened,
                _ => IncidentPhase::Updated,
            };
            sentence(phase, reason, objects, duration_s.unwrap_or(0.0), None)
        }
    }
}

/// The caption for an incident event.
pub fn describe_change(objects: &[SceneObject], change: &IncidentChange) -> String {
    match change.risk.reasons.first() {
        None => format!("{}.", capitalise(&format!("{} in view", inventory(objects)))),
        Some(reason) => sentence(change.phase, reason, objects, change.duration_s, change.why.as_deref()),
    }
}

fn sentence(phase: IncidentPhase, r: &Reason, objects: &[SceneObject], duration_s: f64, why: Option<&str>) -> String {
    let class = r.class.as_deref().unwrap_or("object");
    let n = r.track_ids.len().max(1);
    let who = count_words(n, class, None);
    let (has, is) = if n == 1 { ("has", "is") } else { ("have", "are") };
    let zone = r.zone.as_deref().unwrap_or("");
    let in_zone = if zone.is_empty() { String::new() } else { format!(" in zone {zone}") };
    let limit = r.limit.unwrap_or(0.0);
    if phase == IncidentPhase::Closed {
        if let Some(why) = why.filter(|w| *w != "clear") {
            let what = match r.zone.as_deref() {
                Some(z) => format!("{} incident in zone {z}", r.kind),
                None => format!("{} incident", r.kind),
            };
            return format!("{} closed after {} s: {why}.", capitalise(&format!("the {what}")), secs(duration_s));
        }
        let lasted = format!("the incident lasted {} s", secs(duration_s));
        return match r.kind.as_str() {
            "intrusion" => format!("Restricted zone {zone} is clear again after {} s.", secs(duration_s)),
            "loitering" => format!("Nobody is loitering in zone {zone} any more; {lasted}."),
            "proximity" => match r.near_class.as_deref() {
                Some(b) if r.near_track_ids.is_empty() && b == class => {
                    format!("{} are no longer within {} m of each other{in_zone}; {lasted}.", capitalise(&plural_of(class)), num(limit))
                }
                b => format!("No {class} is within {} m of {} any more{in_zone}; {lasted}.", num(limit), count_words(1, b.unwrap_or("object"), None)),
            },
            "crowding" => format!("The crowd{in_zone} has dispersed; {lasted}."),
            "speed" => format!("No {class} is moving faster than {} m/s{in_zone} any more; {lasted}.", num(limit)),
            _ => format!("{}; {lasted}.", r.detail),
        };
    }
    let dwell = r.dwell_s.unwrap_or(0.0);
    let lead = match r.kind.as_str() {
        "intrusion" if dwell < 1.0 => format!("{who} {has} entered restricted zone {zone}"),
        "intrusion" => format!("{who} {has} been inside restricted zone {zone} for {} s", secs(dwell)),
        "loitering" => format!("{who} {has} been loitering in zone {zone} for {} s", secs(dwell)),
        "proximity" => {
            let d = metres(r.distance_m.unwrap_or(limit));
            if r.near_track_ids.is_empty() && r.near_class.as_deref() == Some(class) {
                if n == 1 {
                    format!("{who} is {d} m from another {class}{in_zone}")
                } else {
                    format!("{who} are within {} m of each other{in_zone}, the closest {d} m apart", num(limit))
                }
            } else {
                let b = r.near_class.as_deref().unwrap_or("object");
                let nb = r.near_track_ids.len().max(1);
                let moving = r.near_track_ids.iter().any(|id| objects.iter().any(|o| o.track_id == Some(*id) && o.speed_mps.is_some_and(|v| v >= MOVING_MPS)));
                let near = count_words(nb, b, moving.then_some("moving"));
                let within = if n == 1 { format!("{d} m from") } else { format!("within {} m of", num(limit)) };
                format!("{who} {is} {within} {near}{in_zone}")
            }
        }
        "crowding" => {
            let place = match r.limit {
                Some(radius) => format!("within {} m of each other{in_zone}", num(radius)),
                None => format!("in zone {zone}"),
            };
            if dwell < 1.0 { format!("{who} have gathered {place}") } else { format!("{who} have been gathered {place} for {} s", secs(dwell)) }
        }
        "speed" => {
            let v = r.speed_mps.unwrap_or(limit);
            let at = if n == 1 { "at" } else { "at up to" };
            // Never "1.8 m/s, above the 1.8 m/s limit": more digits when rounding hides it.
            let shown = if format!("{v:.1}").parse::<f64>().is_ok_and(|r| r <= limit) { format!("{v:.2}") } else { format!("{v:.1}") };
            format!("{who} {is} moving {at} {shown} m/s{in_zone}, above the {} m/s limit", num(limit))
        }
        _ => r.detail.clone(),
    };
    let context = match r.kind.as_str() {
        "intrusion" | "loitering" | "speed" => context(r, objects),
        _ => String::new(),
    };
    format!("{}{context}.", capitalise(&lead))
}

/// ", 3 m from a moving truck": the nearest object of another class to any member,
/// when one is within [`CONTEXT_RADIUS_M`].
fn context(r: &Reason, objects: &[SceneObject]) -> String {
    let members: Vec<&SceneObject> = objects.iter().filter(|o| o.track_id.is_some_and(|id| r.track_ids.contains(&id))).collect();
    let mut best: Option<(f64, &SceneObject)> = None;
    for m in &members {
        let Some(pm) = m.world else { continue };
        for o in objects {
            if o.class == m.class || members.iter().any(|x| std::ptr::eq(*x, o)) {
                continue;
            }
            let Some(po) = o.world else { continue };
            let d = ((pm.x_m - po.x_m).powi(2) + (pm.y_m - po.y_m).powi(2)).sqrt();
            if d <= CONTEXT_RADIUS_M && best.is_none_or(|(b, _)| d < b) {
                best = Some((d, o));
            }
        }
    }
    match best {
        Some((d, o)) => {
            let moving = o.speed_mps.is_some_and(|v| v >= MOVING_MPS);
            format!(", {} m from {}", secs(d.max(1.0)), count_words(1, &o.class, moving.then_some("moving")))
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;
    use crate::model::WorldPos;
    use std::sync::Arc;

    fn obj(class: &str, track: Option<u64>) -> SceneObject {
        SceneObject {
            track_id: track,
            class: Arc::from(class),
            confidence: 0.9,
            bbox: [0.0; 4],
            world: None,
            speed_mps: None,
            heading_deg: None,
            zones: vec![],
        }
    }

    fn at(mut o: SceneObject, x: f64, y: f64, speed: f64) -> SceneObject {
        o.world = Some(WorldPos { x_m: x, y_m: y, lat: None, lon: None });
        o.speed_mps = Some(speed);
        o
    }

    fn change(phase: IncidentPhase, reason: Reason, duration_s: f64, why: Option<&str>) -> IncidentChange {
        IncidentChange {
            phase,
            incident_id: "i".into(),
            rule_id: reason.rule.clone(),
            risk: Risk::from_reasons(vec![reason]),
            duration_s,
            why: why.map(String::from),
        }
    }

    fn reason(kind: &str, zone: Option<&str>, tracks: &[u64], class: &str) -> Reason {
        Reason {
            rule: "r".into(),
            kind: kind.into(),
            zone: zone.map(String::from),
            track_ids: tracks.to_vec(),
            score: 0.6,
            class: Some(class.into()),
            ..Default::default()
        }
    }

    #[test]
    fn inventories_count_and_pluralise() {
        let objs = [obj("person", None), obj("person", None), obj("bus", None), obj("dog", None), obj("dog", None), obj("dog", None)];
        assert_eq!(inventory(&objs), "3 dogs, 2 people and 1 bus");
        assert_eq!(inventory(&[]), "nothing");
        assert_eq!(count_phrase(2, "bus"), "2 buses");
        assert_eq!(count_words(1, "umbrella", None), "an umbrella");
        assert_eq!(count_words(3, "truck", Some("moving")), "three moving trucks");
        assert_eq!(count_words(12, "person", None), "12 people");
    }

    #[test]
    fn the_issue_example_word_for_word() {
        let r = Reason { dwell_s: Some(14.2), ..reason("intrusion", Some("gate-a"), &[4, 7], "person") };
        let objs = [
            at(obj("person", Some(4)), 0.0, 0.0, 0.1),
            at(obj("person", Some(7)), 1.0, 0.0, 0.0),
            at(obj("truck", Some(9)), 4.0, 0.0, 2.0),
            at(obj("car", None), 30.0, 0.0, 0.0),
        ];
        let c = describe_change(&objs, &change(IncidentPhase::Updated, r.clone(), 14.0, None));
        assert_eq!(c, "Two people have been inside restricted zone gate-a for 14 s, 3 m from a moving truck.");
        let c = describe_change(&objs, &change(IncidentPhase::Closed, r.clone(), 20.4, Some("clear")));
        assert_eq!(c, "Restricted zone gate-a is clear again after 20 s.");
        let c = describe_change(&objs, &change(IncidentPhase::Closed, r, 20.4, Some("source ended")));
        assert_eq!(c, "The intrusion incident in zone gate-a closed after 20 s: source ended.");
    }

    #[test]
    fn every_rule_kind_has_its_sentence() {
        let person = |id, x| at(obj("person", Some(id)), x, 0.0, 1.2);
        let objs = [person(1, 0.0), person(2, 0.5), person(3, 1.0), at(obj("forklift", Some(8)), 2.5, 0.0, 0.0)];
        let cases: Vec<(Reason, IncidentPhase, &str)> = vec![
            (
                Reason { dwell_s: Some(0.4), ..reason("intrusion", Some("dock"), &[1], "person") },
                IncidentPhase::Opened,
                "A person has entered restricted zone dock, 3 m from a forklift.",
            ),
            (
                Reason { dwell_s: Some(42.0), limit: Some(30.0), ..reason("loitering", Some("atm"), &[1], "person") },
                IncidentPhase::Opened,
                "A person has been loitering in zone atm for 42 s, 3 m from a forklift.",
            ),
            (
                Reason { dwell_s: Some(42.0), limit: Some(30.0), ..reason("loitering", Some("atm"), &[1], "person") },
                IncidentPhase::Closed,
                "Nobody is loitering in zone atm any more; the incident lasted 15 s.",
            ),
            (
                Reason {
                    distance_m: Some(1.54),
                    limit: Some(3.0),
                    near_track_ids: vec![8],
                    near_class: Some("forklift".into()),
                    ..reason("proximity", None, &[3], "person")
                },
                IncidentPhase::Opened,
                "A person is 1.5 m from a forklift.",
            ),
            (
                Reason {
                    distance_m: Some(1.5),
                    limit: Some(3.0),
                    near_track_ids: vec![8],
                    near_class: Some("forklift".into()),
                    ..reason("proximity", Some("yard"), &[2, 3], "person")
                },
                IncidentPhase::Updated,
                "Two people are within 3 m of a forklift in zone yard.",
            ),
            (
                Reason {
                    distance_m: Some(1.5),
                    limit: Some(3.0),
                    near_track_ids: vec![8],
                    near_class: Some("forklift".into()),
                    ..reason("proximity", None, &[3], "person")
                },
                IncidentPhase::Closed,
                "No person is within 3 m of a forklift any more; the incident lasted 15 s.",
            ),
            (
                Reason { distance_m: Some(0.5), limit: Some(1.0), near_class: Some("person".into()), ..reason("proximity", None, &[1, 2, 3], "person") },
                IncidentPhase::Opened,
                "Three people are within 1 m of each other, the closest 0.5 m apart.",
            ),
            (
                Reason { distance_m: Some(0.5), limit: Some(1.0), near_class: Some("person".into()), ..reason("proximity", None, &[1, 2, 3], "person") },
                IncidentPhase::Closed,
                "People are no longer within 1 m of each other; the incident lasted 15 s.",
            ),
            (
                Reason { dwell_s: Some(6.0), limit: Some(2.0), ..reason("crowding", None, &[1, 2, 3], "person") },
                IncidentPhase::Updated,
                "Three people have been gathered within 2 m of each other for 6 s.",
            ),
            (
                Reason { dwell_s: Some(0.0), ..reason("crowding", Some("stairs"), &[1, 2, 3], "person") },
                IncidentPhase::Opened,
                "Three people have gathered in zone stairs.",
            ),
            (
                Reason { dwell_s: Some(0.0), ..reason("crowding", Some("stairs"), &[1, 2, 3], "person") },
                IncidentPhase::Closed,
                "The crowd in zone stairs has dispersed; the incident lasted 15 s.",
            ),
            (
                Reason { speed_mps: Some(3.44), limit: Some(2.5), ..reason("speed", None, &[1], "person") },
                IncidentPhase::Opened,
                "A person is moving at 3.4 m/s, above the 2.5 m/s limit, 3 m from a forklift.",
            ),
            (
                Reason { speed_mps: Some(2.54), limit: Some(2.5), ..reason("speed", None, &[1], "person") },
                IncidentPhase::Updated,
                "A person is moving at 2.54 m/s, above the 2.5 m/s limit, 3 m from a forklift.",
            ),
            (
                Reason { speed_mps: Some(4.0), limit: Some(2.5), ..reason("speed", Some("ramp"), &[1, 2], "person") },
                IncidentPhase::Updated,
                "Two people are moving at up to 4.0 m/s in zone ramp, above the 2.5 m/s limit, 2 m from a forklift.",
            ),
            (
                Reason { speed_mps: Some(4.0), limit: Some(2.5), ..reason("speed", Some("ramp"), &[1, 2], "person") },
                IncidentPhase::Closed,
                "No person is moving faster than 2.5 m/s in zone ramp any more; the incident lasted 15 s.",
            ),
        ];
        for (r, phase, want) in cases {
            let why = (phase == IncidentPhase::Closed).then_some("clear");
            assert_eq!(describe_change(&objs, &change(phase, r, 15.0, why)), want);
        }
    }

    #[test]
    fn frame_summaries_list_what_is_in_view() {
        let objs = [obj("person", Some(4)), obj("person", Some(7)), obj("car", None)];
        assert_eq!(describe(EventKind::FrameAnalyzed, &objs, &Risk::none(), None), "2 people and 1 car in view.");
        let risk = Risk {
            score: 0.84,
            level: Level::High,
            priority: 2,
            reasons: vec![Reason { dwell_s: Some(12.4), ..reason("intrusion", Some("gate-a"), &[4, 7], "person") }],
        };
        assert_eq!(describe(EventKind::IncidentUpdated, &objs, &risk, Some(12.4)), "Two people have been inside restricted zone gate-a for 12 s.");
    }
}
