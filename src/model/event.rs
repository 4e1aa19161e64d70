//! The `argus.event.v1` event: what every sink receives and every API returns.
//! `schema/argus.event.v1.json` is its JSON Schema; a test validates emitted events.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::id::derive_id;
use super::timestamp::rfc3339_ms;
use super::{Level, Reason, Risk, SceneObject, WorldPos};

pub const SCHEMA: &str = "argus.event.v1";

/// The name of the built-in, grounded captioner (`models.captioner` when no captioning
/// model runs).
pub const SCENE_CAPTIONER: &str = "scene";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventKind {
    #[serde(rename = "incident.opened")]
    IncidentOpened,
    #[serde(rename = "incident.updated")]
    IncidentUpdated,
    #[serde(rename = "incident.closed")]
    IncidentClosed,
    #[serde(rename = "frame.analyzed")]
    FrameAnalyzed,
    /// An operator acknowledged the incident (it stays open: the rules close it).
    #[serde(rename = "incident.acknowledged")]
    IncidentAcknowledged,
    /// An operator assigned the incident to someone.
    #[serde(rename = "incident.assigned")]
    IncidentAssigned,
    /// An operator wrote a note on the incident.
    #[serde(rename = "incident.noted")]
    IncidentNoted,
}

impl EventKind {
    pub const ALL: [Self; 7] = [
        Self::IncidentOpened,
        Self::IncidentUpdated,
        Self::IncidentClosed,
        Self::FrameAnalyzed,
        Self::IncidentAcknowledged,
        Self::IncidentAssigned,
        Self::IncidentNoted,
    ];

    /// The kinds the rules make: an incident's lifecycle proper.
    pub const LIFECYCLE: [Self; 3] = [Self::IncidentOpened, Self::IncidentUpdated, Self::IncidentClosed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::IncidentOpened => "incident.opened",
            Self::IncidentUpdated => "incident.updated",
            Self::IncidentClosed => "incident.closed",
            Self::FrameAnalyzed => "frame.analyzed",
            Self::IncidentAcknowledged => "incident.acknowledged",
            Self::IncidentAssigned => "incident.assigned",
            Self::IncidentNoted => "incident.noted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// An operator's action on an incident, not something the rules saw.
    pub fn is_action(self) -> bool {
        matches!(self, Self::IncidentAcknowledged | Self::IncidentAssigned | Self::IncidentNoted)
    }

    /// Every kind's name, for messages (`a, b or c`).
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
        format!("{} or {}", names[..names.len() - 1].join(", "), names[names.len() - 1])
    }
}

/// Who did what to an incident (`incident.acknowledged`, `.assigned`, `.noted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorAction {
    /// The API key's name (`server.named_api_keys`), `key-<digest prefix>` for an
    /// unnamed key, or `local` when the API needs no key.
    pub by: String,
    /// The note, or the comment given with an acknowledgement or assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `incident.assigned`: to whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameInfo {
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    /// Where `captured_at` comes from: `ntp`, `arrival`, `stream`, or `upload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Models {
    pub detector: String,
    pub captioner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema: String,
    pub event_id: String,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    pub pipeline: String,
    pub camera_id: String,
    #[serde(with = "rfc3339_ms")]
    pub captured_at: OffsetDateTime,
    #[serde(with = "rfc3339_ms")]
    pub processed_at: OffsetDateTime,
    pub latency_ms: f64,
    pub frame: FrameInfo,
    pub risk: Risk,
    pub objects: Vec<SceneObject>,
    pub caption: String,
    /// The captioning model's text, for events at or above `[captioner] min_level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_caption: Option<String>,
    pub models: Models,
    /// The annotated frame of an incident event (`[evidence]`), stored under the data
    /// directory; absent on summaries, and on incidents closed with no frame to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// An operator's action (action kinds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<OperatorAction>,
}

/// Where an event's evidence JPEG is served and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// API path, `/v1/events/{event_id}/evidence.jpg`.
    pub url: String,
    /// SHA-256 of the JPEG, lowercase hex (its file is named by it).
    pub sha256: String,
    /// Size of the JPEG.
    pub bytes: u64,
    /// On an `incident.opened` with `[evidence.clip]` on: the incident's video clip,
    /// recorded from `from` (the pre-roll) to `to` (the post-roll) and served once
    /// encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<ClipRef>,
}

/// Where an incident's clip (MP4, H.264) is served and the span it covers. It is
/// encoded once the post-roll has passed (or the camera ended): until then its URL
/// answers 404 with `details.state = "recording"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipRef {
    /// API path, `/v1/incidents/{incident_id}/clip.mp4`.
    pub url: String,
    /// Capture time of its first frame at the latest (the pre-roll before the opening).
    #[serde(with = "rfc3339_ms")]
    pub from: OffsetDateTime,
    /// Capture time its last frame reaches at most (the post-roll after the opening).
    #[serde(with = "rfc3339_ms")]
    pub to: OffsetDateTime,
}

impl Event {
    /// Milliseconds since the Unix epoch of the frame's capture time.
    pub fn captured_ms(&self) -> i64 {
        (self.captured_at.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// Classes of its objects, sorted, each once (what `class=` filters on).
    pub fn classes(&self) -> Vec<String> {
        sorted_unique(self.objects.iter().map(|o| o.class.to_string()))
    }

    /// Zones it touches: its objects' zones and its reasons' zones, sorted, each once
    /// (what `zone=` filters on).
    pub fn zones(&self) -> Vec<String> {
        sorted_unique(self.objects.iter().flat_map(|o| o.zones.iter().cloned()).chain(self.risk.reasons.iter().filter_map(|r| r.zone.clone())))
    }

    /// Rules behind its risk, sorted, each once.
    pub fn rules(&self) -> Vec<String> {
        sorted_unique(self.risk.reasons.iter().map(|r| r.rule.clone()))
    }
}

/// The id of the event of `kind` for `camera` at `captured_at` (and incident, if any).
pub fn event_id(camera_id: &str, captured_at: OffsetDateTime, kind: EventKind, incident_id: Option<&str>) -> String {
    derive_id(&[camera_id.as_bytes(), &captured_at.unix_timestamp_nanos().to_le_bytes(), kind.as_str().as_bytes(), incident_id.unwrap_or("").as_bytes()])
}

/// The event of an operator's `action` (of an action `kind`) on the incident whose
/// latest lifecycle event is `latest`, at `at`: the incident's camera, pipeline, frame
/// and risk as last seen, no objects, and a caption that says who did what.
pub fn action_event(latest: &Event, kind: EventKind, action: OperatorAction, at: OffsetDateTime) -> Event {
    debug_assert!(kind.is_action());
    let incident = latest.incident_id.clone().unwrap_or_default();
    let what = match kind {
        EventKind::IncidentAcknowledged => format!("Acknowledged by {}", action.by),
        EventKind::IncidentAssigned => format!("Assigned to {} by {}", action.assignee.as_deref().unwrap_or("?"), action.by),
        _ => format!("Note by {}", action.by),
    };
    let caption = match &action.text {
        Some(t) => format!("{what}: {t}"),
        None => format!("{what}."),
    };
    let at_ns = at.unix_timestamp_nanos().to_le_bytes();
    Event {
        schema: SCHEMA.into(),
        event_id: derive_id(&[incident.as_bytes(), kind.as_str().as_bytes(), action.by.as_bytes(), &at_ns, action.text.as_deref().unwrap_or("").as_bytes()]),
        kind,
        incident_id: latest.incident_id.clone(),
        pipeline: latest.pipeline.clone(),
        camera_id: latest.camera_id.clone(),
        captured_at: at,
        processed_at: at,
        latency_ms: 0.0,
        frame: latest.frame.clone(),
        risk: latest.risk.clone(),
        objects: Vec::new(),
        caption,
        model_caption: None,
        models: latest.models.clone(),
        evidence: None,
        action: Some(action),
    }
}

/// A small valid event for tests and examples: `captured_ms` after the epoch, one person.
#[doc(hidden)]
pub fn sample_event(camera_id: &str, captured_ms: i64, kind: EventKind) -> Event {
    let captured_at = OffsetDateTime::from_unix_timestamp_nanos(captured_ms as i128 * 1_000_000).expect("valid time");
    let incident_id = (kind != EventKind::FrameAnalyzed).then(|| derive_id(&[camera_id.as_bytes(), b"incident"]));
    let risk = if incident_id.is_some() {
        Risk::from_reasons(vec![Reason {
            rule: "no-entry".into(),
            kind: "intrusion".into(),
            zone: Some("gate".into()),
            track_ids: vec![1],
            score: 0.6,
            detail: "1 person inside restricted zone gate (longest 1.0 s)".into(),
            ..Default::default()
        }])
    } else {
        Risk::none()
    };
    debug_assert!(risk.level >= Level::Low);
    Event {
        schema: SCHEMA.into(),
        event_id: event_id(camera_id, captured_at, kind, incident_id.as_deref()),
        kind,
        incident_id,
        pipeline: "test".into(),
        camera_id: camera_id.into(),
        captured_at,
        processed_at: captured_at,
        latency_ms: 12.5,
        frame: FrameInfo { seq: captured_ms as u64, width: 640, height: 480, time_source: Some("arrival".into()) },
        risk,
        // An operator's action carries no objects (see `action_event`).
        objects: if kind.is_action() {
            Vec::new()
        } else {
            vec![SceneObject {
                track_id: Some(1),
                class: "person".into(),
                confidence: 0.9,
                bbox: [10.0, 20.0, 50.0, 120.0],
                world: Some(WorldPos { x_m: 1.0, y_m: 2.0, lat: None, lon: None }),
                speed_mps: None,
                heading_deg: None,
                zones: vec!["gate".into()],
            }]
        },
        caption: "1 person in view.".into(),
        model_caption: None,
        evidence: None,
        models: Models { detector: "test".into(), captioner: SCENE_CAPTIONER.into() },
        action: kind.is_action().then(|| OperatorAction {
            by: "tester".into(),
            text: Some("seen".into()),
            assignee: (kind == EventKind::IncidentAssigned).then(|| "bob".into()),
        }),
    }
}

fn sorted_unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::super::timestamp::{format_time, parse_time};
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ids_are_deterministic_uuid_shaped_and_distinct() {
        let t = datetime!(2026-11-23 08:15:02.120 UTC);
        let a = event_id("cam", t, EventKind::IncidentOpened, Some("i"));
        assert_eq!(a, event_id("cam", t, EventKind::IncidentOpened, Some("i")));
        assert_ne!(a, event_id("cam", t, EventKind::IncidentUpdated, Some("i")));
        assert_ne!(a, event_id("cam2", t, EventKind::IncidentOpened, Some("i")));
        assert!(uuid::Uuid::parse_str(&a).is_ok());
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(derive_id(&[b"ab", b"c"]), derive_id(&[b"a", b"bc"]));
    }

    #[test]
    fn times_format_as_utc_millis_and_parse_back() {
        let t = datetime!(2026-11-23 08:15:02.1204 UTC);
        let s = format_time(t);
        assert_eq!(s, "2026-11-23T08:15:02.120Z");
        assert_eq!(parse_time(&s).unwrap(), datetime!(2026-11-23 08:15:02.120 UTC));
    }

    #[test]
    fn kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            let j = serde_json::to_string(&k).unwrap();
            assert_eq!(j, format!("\"{}\"", k.as_str()));
        }
    }
}
