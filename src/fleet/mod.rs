//! One view of the fleet. Every member (`argus run` workers, `argus ingest` shards)
//! publishes a small status record every `fleet.publish_every_s` to a compacted Kafka
//! topic, key = member id, and reads every member's latest record back: `GET /v1/fleet`
//! on any member shows which member runs which camera, with members that stopped
//! publishing marked stale. A member that stops cleanly publishes a tombstone and
//! leaves the view; one that is killed goes stale and stays until its record is
//! replaced (the same member id restarted) or compacted away.
//!
//! Kafka, not a coordination service of Argus's own: the record is the member's own
//! word, the topic keeps the last one per member, and nothing else is shared.

pub mod config;
#[cfg(feature = "kafka")]
pub mod kafka;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::telemetry::health::Health;

/// The record's schema name.
pub const MEMBER_SCHEMA: &str = "argus.member.v1";

/// One camera as its member reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberCamera {
    pub state: String,
    pub fps_in: f64,
    pub fps_processed: f64,
    pub frames_received: u64,
    pub frames_processed: u64,
    pub frames_published: u64,
    pub frames_dropped: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drops: BTreeMap<String, u64>,
}

/// One assigned partition of a worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberPartition {
    pub topic: String,
    pub partition: i32,
    /// Messages behind the high watermark, once measured.
    pub lag: Option<i64>,
}

/// What a member says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberRecord {
    pub schema: String,
    pub member: String,
    /// `run` or `ingest`.
    pub role: String,
    pub version: String,
    /// `ingest`: `I/N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Where its API listens (as configured).
    pub api: String,
    pub started_at: String,
    /// When this record was made.
    pub at: String,
    /// How often it publishes one: a record older than a few of these is stale.
    pub every_s: f64,
    pub cameras: BTreeMap<String, MemberCamera>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<MemberPartition>,
}

/// What does not change while a member runs.
#[derive(Debug, Clone)]
pub struct MemberIdentity {
    pub member: String,
    pub role: &'static str,
    pub shard: Option<String>,
    pub api: String,
    pub started_at: time::OffsetDateTime,
    pub every: Duration,
}

impl MemberIdentity {
    /// The member's record as of now, from its health.
    pub fn record(&self, health: &Health) -> MemberRecord {
        let cameras = health
            .sources()
            .into_iter()
            .map(|(id, s)| {
                let state = serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                let cam = MemberCamera {
                    state,
                    fps_in: (s.fps_in * 10.0).round() / 10.0,
                    fps_processed: (s.fps_processed * 10.0).round() / 10.0,
                    frames_received: s.frames_received,
                    frames_processed: s.frames_processed,
                    frames_published: s.frames_published,
                    frames_dropped: s.frames_dropped,
                    drops: s.drops.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (k.to_string(), *n)).collect(),
                };
                (id, cam)
            })
            .collect();
        let partitions = health
            .partitions()
            .into_iter()
            .flat_map(|(topic, ps)| ps.into_iter().map(move |(partition, lag)| MemberPartition { topic: topic.clone(), partition, lag }))
            .collect();
        MemberRecord {
            schema: MEMBER_SCHEMA.into(),
            member: self.member.clone(),
            role: self.role.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            shard: self.shard.clone(),
            api: self.api.clone(),
            started_at: crate::model::format_time(self.started_at),
            at: crate::model::format_time(time::OffsetDateTime::now_utc()),
            every_s: self.every.as_secs_f64(),
            cameras,
            partitions,
        }
    }
}

/// The latest record of every member, as read back from the topic.
pub struct FleetView {
    me: String,
    stale_after: Duration,
    members: RwLock<BTreeMap<String, (MemberRecord, Instant)>>,
    /// Whether the reader has caught up with the topic once (before, the view may miss
    /// members that published before this one started).
    caught_up: RwLock<bool>,
}

/// `GET /v1/fleet`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct FleetAnswer {
    /// This member's id.
    pub member: String,
    /// False until the status topic has been read to its end once.
    pub complete: bool,
    pub members: Vec<FleetMember>,
    /// Each camera and the members that report running it (more than one: a handover
    /// in progress, or two shards configured differently).
    pub cameras: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetMember {
    #[serde(flatten)]
    pub record: MemberRecord,
    /// Seconds since this member's record was received here.
    pub age_s: f64,
    /// No record for longer than `fleet.stale_after_s`: killed, hung or cut off.
    pub stale: bool,
}

impl FleetView {
    pub fn new(me: &str, stale_after: Duration) -> Self {
        Self { me: me.into(), stale_after, members: RwLock::default(), caught_up: RwLock::new(false) }
    }

    /// A record read from the topic (`None`: a tombstone, the member stopped).
    pub fn apply(&self, member: &str, record: Option<MemberRecord>, now: Instant) {
        let mut m = self.members.write();
        match record {
            Some(r) => {
                m.insert(member.to_string(), (r, now));
            }
            None => {
                m.remove(member);
            }
        }
    }

    pub fn set_caught_up(&self) {
        *self.caught_up.write() = true;
    }

    pub fn answer(&self, now: Instant) -> FleetAnswer {
        let m = self.members.read();
        let members: Vec<FleetMember> = m
            .values()
            .map(|(r, at)| {
                let age = now.saturating_duration_since(*at);
                FleetMember { record: r.clone(), age_s: (age.as_secs_f64() * 10.0).round() / 10.0, stale: age > self.stale_after }
            })
            .collect();
        let mut cameras: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for fm in members.iter().filter(|m| !m.stale) {
            for (cam, c) in &fm.record.cameras {
                if c.state != "ended" {
                    cameras.entry(cam.clone()).or_default().push(fm.record.member.clone());
                }
            }
        }
        FleetAnswer { member: self.me.clone(), complete: *self.caught_up.read(), members, cameras }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(member: &str, cams: &[&str]) -> MemberRecord {
        let id = MemberIdentity {
            member: member.into(),
            role: "ingest",
            shard: Some("0/2".into()),
            api: "127.0.0.1:8080".into(),
            started_at: time::OffsetDateTime::UNIX_EPOCH,
            every: Duration::from_secs(5),
        };
        let h = Health::default();
        for c in cams {
            h.register_source(c, "p", "rtsp://x", true);
        }
        id.record(&h)
    }

    #[test]
    fn a_record_round_trips_and_carries_cameras_and_partitions() {
        let h = Health::default();
        h.register_source("gate", "site", "rtsp://user:pw@cam/1", true);
        h.update_source("gate", |s| {
            s.frames_published = 7;
            s.drops.insert("expired", 2);
            s.drops.insert("fps_cap", 0);
        });
        h.partitions_assigned("frames", &[0, 2]);
        h.partition_lag("frames", 2, 40);
        h.partition_lag("frames", 5, 1);
        let id = MemberIdentity {
            member: "w1".into(),
            role: "run",
            shard: None,
            api: "0.0.0.0:8080".into(),
            started_at: time::OffsetDateTime::UNIX_EPOCH,
            every: Duration::from_secs(5),
        };
        let r = id.record(&h);
        assert_eq!(r.cameras["gate"].frames_published, 7);
        assert_eq!(r.cameras["gate"].drops, BTreeMap::from([("expired".to_string(), 2)]));
        assert_eq!(r.cameras["gate"].state, "connecting");
        assert_eq!(
            r.partitions,
            vec![MemberPartition { topic: "frames".into(), partition: 0, lag: None }, MemberPartition { topic: "frames".into(), partition: 2, lag: Some(40) }]
        );
        let back: MemberRecord = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(!serde_json::to_string(&r).unwrap().contains("pw"), "the URL is not in the record");
    }

    #[test]
    fn stale_members_are_marked_left_out_of_the_camera_map_and_tombstones_remove() {
        let v = FleetView::new("a", Duration::from_secs(10));
        let t0 = Instant::now();
        v.apply("a", Some(record("a", &["gate", "lobby"])), t0);
        v.apply("b", Some(record("b", &["dock"])), t0);
        v.apply("c", Some(record("c", &["gate"])), t0 + Duration::from_secs(15));
        let ans = v.answer(t0 + Duration::from_secs(20));
        let stale: Vec<(&str, bool)> = ans.members.iter().map(|m| (m.record.member.as_str(), m.stale)).collect();
        assert_eq!(stale, vec![("a", true), ("b", true), ("c", false)]);
        assert_eq!(ans.cameras, BTreeMap::from([("gate".to_string(), vec!["c".to_string()])]));
        assert!(!ans.complete);
        v.apply("c", None, t0);
        v.set_caught_up();
        let ans = v.answer(t0 + Duration::from_secs(1));
        assert_eq!(ans.members.len(), 2);
        assert!(ans.complete);
        assert_eq!(ans.cameras.len(), 3, "{:?}", ans.cameras);
    }
}
