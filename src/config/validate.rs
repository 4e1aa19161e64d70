//! Semantic checks on a parsed config: each component checks its own table (its
//! `config` module's `validate`), and this module checks what ties them together (ids
//! unique across files, cameras against their pipeline's `[kafka]` table, rules against
//! zones and calibrations, class names against the model). Pure: no files opened besides
//! existence checks of sources and models and the captioner's small tokenizer file, so
//! `argus check` and start-up report every problem at once.
//!
//! What validation computes it keeps: the accepted calibration fits travel to the build
//! in [`Validated`], so nothing is fitted twice.

use std::collections::{HashMap, HashSet};

use super::files::{ArgusConfig, PipelineConfig};
use super::load::LoadedConfig;
use crate::geo::CalibrationFit;
use crate::model::{ConfigIssue, Issues};
use crate::risk::config::RuleConfig;
use crate::sources::SourceKind;

/// What validation produced besides its verdict: every accepted calibration fit, by
/// camera id.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    pub fits: HashMap<String, CalibrationFit>,
}

/// A configuration that passed validation, with what validation computed.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub config: LoadedConfig,
    pub validated: Validated,
}

impl std::ops::Deref for ValidConfig {
    type Target = LoadedConfig;
    fn deref(&self) -> &LoadedConfig {
        &self.config
    }
}

/// Every problem found, empty when the config is usable.
pub fn validate(cfg: &LoadedConfig) -> Vec<ConfigIssue> {
    check(cfg).0
}

/// Validates and keeps the results; `Err` lists every problem.
pub fn validated(cfg: LoadedConfig) -> Result<ValidConfig, Vec<ConfigIssue>> {
    let (issues, validated) = check(&cfg);
    if issues.is_empty() { Ok(ValidConfig { config: cfg, validated }) } else { Err(issues) }
}

/// Every problem found, and the fits of the calibrations that were accepted.
pub fn check(cfg: &LoadedConfig) -> (Vec<ConfigIssue>, Validated) {
    let mut all = Vec::new();
    let mut out = Validated::default();
    let mut iss = Issues::new(&cfg.file);
    validate_argus(&cfg.argus, &mut iss);
    crate::caption::model::config::validate(&cfg.argus.captioner, &mut iss);
    all.extend(iss.into_vec());

    let classes = crate::detect::config::known_classes(&cfg.argus.detector);
    let mut pipeline_names = HashSet::new();
    let mut camera_ids = HashSet::new();
    for (file, p) in &cfg.pipelines {
        let mut iss = Issues::new(file);
        if !pipeline_names.insert(p.name.clone()) {
            iss.add("name", format!("pipeline name `{}` is used by another pipeline file", p.name), "give each pipeline a unique name");
        }
        validate_pipeline(p, classes.as_deref(), &mut camera_ids, &mut iss, &mut out);
        all.extend(iss.into_vec());
    }
    (all, out)
}

fn validate_argus(a: &ArgusConfig, iss: &mut Issues) {
    if a.pipelines.is_empty() {
        iss.add("pipelines", "no pipeline files listed", "add at least one, e.g. pipelines = [\"pipelines/demo.toml\"]");
    }
    crate::api::config::validate(&a.server, iss);
    crate::detect::config::validate(&a.detector, iss);
    if !(a.limits.frame_queue_mb > 0.0 && a.limits.frame_queue_mb <= 65536.0) {
        iss.add("limits.frame_queue_mb", format!("{} is outside (0, 65536]", a.limits.frame_queue_mb), "use e.g. 32 (MiB of frames per camera)");
    }
    if a.limits.frame_queue == 0 {
        iss.add("limits.frame_queue", "must be at least 1", "use e.g. 4");
    }
    if a.limits.sink_queue == 0 {
        iss.add("limits.sink_queue", "must be at least 1", "use e.g. 1024");
    }
    if !(a.limits.drain_timeout_s.is_finite() && (1.0..=3600.0).contains(&a.limits.drain_timeout_s)) {
        iss.add("limits.drain_timeout_s", format!("{} s", a.limits.drain_timeout_s), "use 1..=3600, e.g. 30");
    }
    if !(1024..=8192 * 8192).contains(&a.limits.max_frame_pixels) {
        iss.add("limits.max_frame_pixels", format!("{} pixels", a.limits.max_frame_pixels), "use 1024..=67108864, e.g. 16777216 (4096 x 4096)");
    }
    crate::sinks::config::validate(&a.sinks, iss);
    crate::store::validate(&a.store, iss);
    crate::evidence::validate(&a.evidence, iss);
    crate::pipeline::scene_state::validate(&a.scene_state, iss);
    crate::sinks::frames::config::validate(&a.ingest, iss);
    crate::fleet::config::validate(&a.fleet, iss);
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn validate_pipeline(p: &PipelineConfig, classes: Option<&[String]>, camera_ids: &mut HashSet<String>, iss: &mut Issues, out: &mut Validated) {
    if !valid_id(&p.name) {
        iss.add("name", format!("`{}` is not a valid name", p.name), "use 1-64 letters, digits, '-', '_' or '.'");
    }
    if p.cameras.is_empty() {
        iss.add("cameras", "no cameras", "add a [[cameras]] table with id and source");
    }
    if let Some(k) = &p.kafka {
        crate::sources::kafka::config::validate(k, iss);
    }
    let check_classes = |iss: &mut Issues, key: String, list: &[String]| {
        if let Some(known) = classes {
            for c in list {
                if !known.iter().any(|k| k == c) {
                    iss.add(
                        key.clone(),
                        format!("unknown class `{c}` for this model"),
                        "use a class name the detector reports, e.g. \"person\", \"car\", \"truck\"",
                    );
                }
            }
        }
    };
    for (i, cam) in p.cameras.iter().enumerate() {
        let key = format!("cameras[{i}]");
        if !valid_id(&cam.id) {
            iss.add(format!("{key}.id"), format!("`{}` is not a valid camera id", cam.id), "use 1-64 letters, digits, '-', '_' or '.'");
        } else if !camera_ids.insert(cam.id.clone()) {
            iss.add(format!("{key}.id"), format!("camera id `{}` is used twice", cam.id), "give every camera a unique id across all pipelines");
        }
        if cam.kind() == SourceKind::Kafka {
            if p.kafka.is_none() {
                iss.add(format!("{key}.source"), "\"kafka\" needs a [kafka] table in this pipeline", "add [kafka] with brokers, topic and group_id");
            }
            if !cfg!(feature = "kafka") {
                iss.add(format!("{key}.source"), "this build has no Kafka support", "build with `--features kafka` (on by default)");
            }
        }
        cam.validate_source_keys(&key, iss);
        check_classes(iss, format!("{key}.classes"), &cam.classes);
        if let Some(cal) = &cam.calibration
            && let Some(fit) = crate::geo::config::validate_calibration(cal, &format!("{key}.calibration"), iss)
        {
            out.fits.insert(cam.id.clone(), fit);
        }
        if let Some(d) = &cam.drone {
            let dk = format!("{key}.drone");
            if cam.calibration.is_some() {
                iss.add(&dk, "a camera has either a fixed [cameras.calibration] or flies ([cameras.drone]), not both", "remove one of the two tables");
            }
            if cam.kind() != SourceKind::Kafka {
                iss.add(
                    &dk,
                    "a drone camera is placed by each frame's telemetry, which only the Kafka source carries (the `telemetry` header)",
                    "set source = \"kafka\" with a [kafka] table, or remove [cameras.drone]",
                );
            }
            crate::geo::config::validate_drone(d, &dk, iss);
            if cam.origin.is_none() && !p.zones.is_empty() {
                iss.add(
                    format!("{key}.origin"),
                    "zones are in world metres, but this drone's world frame starts wherever it first reports its position",
                    "add [cameras.origin] with the lat/lon of the zones' (0, 0)",
                );
            }
        }
        if let Some(o) = &cam.origin {
            crate::geo::config::validate_origin(o, &key, iss);
            if cam.calibration.is_none() && cam.drone.is_none() {
                iss.add(
                    format!("{key}.origin"),
                    "an origin without a calibration places nothing",
                    "add [cameras.calibration] (or [cameras.drone]) or remove origin",
                );
            }
        }
    }
    let mut zone_ids = HashSet::new();
    for (i, z) in p.zones.iter().enumerate() {
        let key = format!("zones[{i}]");
        if !valid_id(&z.id) {
            iss.add(format!("{key}.id"), format!("`{}` is not a valid zone id", z.id), "use 1-64 letters, digits, '-', '_' or '.'");
        } else if !zone_ids.insert(z.id.as_str()) {
            iss.add(format!("{key}.id"), format!("zone id `{}` is used twice", z.id), "give every zone a unique id");
        }
        crate::risk::config::validate_zone(z, &key, iss);
    }
    let mut rule_ids = HashSet::new();
    for (i, r) in p.rules.iter().enumerate() {
        let key = format!("rules[{i}]");
        if !valid_id(r.id()) {
            iss.add(format!("{key}.id"), format!("`{}` is not a valid rule id", r.id()), "use 1-64 letters, digits, '-', '_' or '.'");
        } else if !rule_ids.insert(r.id().to_string()) {
            iss.add(format!("{key}.id"), format!("rule id `{}` is used twice", r.id()), "give every rule a unique id");
        }
        crate::risk::config::validate_rule(r, &key, &zone_ids, iss);
        check_classes(iss, format!("{key}.classes"), r.common().classes);
        if let RuleConfig::Proximity(pr) = r {
            check_classes(iss, format!("{key}.near_classes"), &pr.near_classes);
        }
        let needs_geometry = p.cameras.iter().any(|c| c.calibration.is_none() && c.drone.is_none());
        if needs_geometry {
            iss.add(
                key.to_string(),
                "rules work in world space, but some cameras have no calibration",
                "add [cameras.calibration] to every camera of a pipeline with rules",
            );
        }
    }
    crate::track::config::validate(&p.tracker, iss);
    crate::risk::config::validate_risk(&p.risk, iss);
    if !(p.events.frame_summary_every_s >= 0.0) {
        iss.add("events.frame_summary_every_s", "must be ≥ 0", "use 0 (off) or seconds, e.g. 5");
    }
}
