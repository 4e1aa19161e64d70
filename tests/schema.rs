//! Events validate against the shipped JSON Schema; broken ones do not.

use argus::model::{EventKind, sample_event};
use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(include_str!("../schema/argus.event.v1.json")).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn sample_events_of_every_kind_validate() {
    let v = validator();
    for kind in EventKind::ALL {
        let ev = serde_json::to_value(sample_event("cam-1", 1_763_884_800_123, kind)).unwrap();
        let errors: Vec<String> = v.iter_errors(&ev).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{kind:?}: {errors:?}\n{ev}");
    }
}

#[test]
fn the_schema_rejects_what_it_should() {
    let v = validator();
    let good = serde_json::to_value(sample_event("cam-1", 1_763_884_800_123, EventKind::IncidentOpened)).unwrap();
    let mut no_incident = good.clone();
    no_incident.as_object_mut().unwrap().remove("incident_id");
    assert!(!v.is_valid(&no_incident), "incidents need an incident_id");
    let mut bad_level = good.clone();
    bad_level["risk"]["level"] = "severe".into();
    assert!(!v.is_valid(&bad_level));
    let mut extra = good.clone();
    extra["surprise"] = 1.into();
    assert!(!v.is_valid(&extra));
    let mut bad_time = good;
    bad_time["captured_at"] = "yesterday".into();
    assert!(!v.is_valid(&bad_time));
}

#[test]
fn a_downtime_closing_validates_and_its_not_observed_is_strict() {
    let v = validator();
    let mut ev = serde_json::to_value(sample_event("cam-1", 1_763_884_800_123, EventKind::IncidentClosed)).unwrap();
    ev["risk"]["reasons"][0]["not_observed"] = serde_json::json!({ "from": "2026-12-01T22:40:01Z", "to": "2026-12-01T22:41:30Z" });
    let errors: Vec<String> = v.iter_errors(&ev).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut no_to = ev.clone();
    no_to["risk"]["reasons"][0]["not_observed"].as_object_mut().unwrap().remove("to");
    assert!(!v.is_valid(&no_to));
    let mut extra = ev;
    extra["risk"]["reasons"][0]["not_observed"]["why"] = "x".into();
    assert!(!v.is_valid(&extra));
}

#[test]
fn operators_actions_need_their_action_and_nothing_else_has_one() {
    let v = validator();
    let ack = serde_json::to_value(sample_event("cam-1", 1_763_884_800_123, EventKind::IncidentAcknowledged)).unwrap();
    assert!(v.is_valid(&ack), "{ack}");
    let mut no_action = ack.clone();
    no_action.as_object_mut().unwrap().remove("action");
    assert!(!v.is_valid(&no_action), "an action kind needs `action`");
    let mut stray = serde_json::to_value(sample_event("cam-1", 1_763_884_800_123, EventKind::IncidentOpened)).unwrap();
    stray["action"] = ack["action"].clone();
    assert!(!v.is_valid(&stray), "the rules' events carry no `action`");
    let mut objects = ack.clone();
    objects["objects"] = serde_json::to_value(sample_event("cam-1", 1, EventKind::IncidentOpened)).unwrap()["objects"].clone();
    assert!(!v.is_valid(&objects), "an action has no objects");
    let mut unknown = ack.clone();
    unknown["action"]["role"] = "admin".into();
    assert!(!v.is_valid(&unknown));
    let mut assigned = serde_json::to_value(sample_event("cam-1", 1_763_884_800_123, EventKind::IncidentAssigned)).unwrap();
    assert!(v.is_valid(&assigned), "{assigned}");
    assigned["action"].as_object_mut().unwrap().remove("assignee");
    assert!(!v.is_valid(&assigned), "an assignment names the assignee");
    let mut noted = serde_json::to_value(sample_event("cam-1", 1_763_884_800_123, EventKind::IncidentNoted)).unwrap();
    noted["action"].as_object_mut().unwrap().remove("text");
    assert!(!v.is_valid(&noted), "a note has text");
}
