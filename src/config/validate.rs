//! Semantic checks on a parsed config: pure (no files opened besides existence checks
//! of sources and models, and the captioner's small tokenizer file), so `argus check` and start-up report every problem at once.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use super::load::LoadedConfig;
use crate::model::ConfigIssue;
use super::types::*;
use crate::detect::model::ModelSpec;

struct Issues<'a> {
    file: &'a Path,
    out: Vec<ConfigIssue>,
}

impl Issues<'_> {
    fn add(&mut self, key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) {
        self.out.push(ConfigIssue { file: self.file.to_path_buf(), key: key.into(), line: None, problem: problem.into(), fix: fix.into() });
    }
}

/// Every problem found, empty when the config is usable.
pub fn validate(cfg: &LoadedConfig) -> Vec<ConfigIssue> {
    let mut all = Vec::new();
    let mut iss = Issues { file: &cfg.file, out: Vec::new() };
    validate_argus(&cfg.argus, &mut iss);
    validate_captioner(&cfg.argus.captioner, &mut iss);
    all.append(&mut iss.out);

    let classes = known_classes(&cfg.argus.detector);
    let mut pipeline_names = HashSet::new();
    let mut camera_ids = HashSet::new();
    for (file, p) in &cfg.pipelines {
        let mut iss = Issues { file, out: Vec::new() };
        if !pipeline_names.insert(p.name.clone()) {
            iss.add("name", format!("pipeline name `{}` is used by another pipeline file", p.name), "give each pipeline a unique name");
        }
        validate_pipeline(p, classes.as_deref(), &mut camera_ids, &mut iss);
        all.append(&mut iss.out);
    }
    all
}

fn validate_server(s: &ServerConfig, iss: &mut Issues) {
    for (i, k) in s.api_keys.iter().enumerate() {
        if k.len() < 16 || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            iss.add(
                format!("server.api_keys[{i}]"),
                "an API key must be at least 16 characters without spaces",
                "generate one, e.g. `openssl rand -hex 24`",
            );
        }
    }
    for (i, o) in s.cors_origins.iter().enumerate() {
        let ok = o == "*" || ((o.starts_with("http://") || o.starts_with("https://")) && !o.ends_with('/') && axum::http::HeaderValue::from_str(o).is_ok());
        if !ok {
            iss.add(format!("server.cors_origins[{i}]"), format!("`{o}` is not an origin"), "write scheme://host[:port] without a path, e.g. \"https://ops.example.com\", or \"*\"");
        }
    }
    if s.max_body_bytes < 1024 {
        iss.add("server.max_body_bytes", format!("{} bytes is too small for any image", s.max_body_bytes), "use e.g. 10485760 (10 MiB)");
    }
    if s.max_image_side < 32 {
        iss.add("server.max_image_side", format!("{} px is too small", s.max_image_side), "use e.g. 4096");
    }
    if s.analyze_workers == 0 || s.analyze_workers > 64 {
        iss.add("server.analyze_workers", format!("{} is outside 1..=64", s.analyze_workers), "use 1 on a small machine (each worker loads the detector)");
    }
    if s.analyze_queue == 0 {
        iss.add("server.analyze_queue", "0 would refuse every request", "use e.g. 8");
    }
    if !(s.analyze_timeout_s > 0.0) || !(s.webhook_timeout_s > 0.0) {
        iss.add("server.analyze_timeout_s / server.webhook_timeout_s", "timeouts must be positive seconds", "use e.g. 30 and 10");
    }
    if s.batch_max_items == 0 || s.tasks_kept == 0 || s.webhook_attempts == 0 {
        iss.add("server.batch_max_items / tasks_kept / webhook_attempts", "must be at least 1", "use the defaults 16, 1000 and 5");
    }
    if let Some(secret) = &s.webhook_secret {
        if secret.len() < 16 {
            iss.add("server.webhook_secret", "a webhook secret must be at least 16 characters", "generate one, e.g. `openssl rand -hex 32`");
        }
    }
}

fn known_classes(d: &DetectorConfig) -> Option<Vec<String>> {
    match ModelSpec::builtin(&d.model) {
        Some(spec) => Some(spec.class_names),
        None => d.class_names.clone().or_else(|| (d.model == "yolo").then(crate::detect::model::coco_names)),
    }
}

/// `[captioner]`, when enabled. The tokenizer is parsed here too (it is small), so
/// `argus check` reports a bad one before anything starts.
fn validate_captioner(c: &CaptionerConfig, iss: &mut Issues) {
    if !c.enabled {
        return;
    }
    if !cfg!(feature = "onnx") {
        iss.add("captioner.enabled", "this build has no ONNX Runtime (the captioning model needs it)", "build with `--features onnx` (on by default) or set enabled = false");
    }
    match &c.model {
        None => iss.add("captioner.model", "not set (the captioner is enabled)", "set model = \"models/your-captioner.onnx\" (docs/captioner.md) or enabled = false"),
        Some(p) if !p.is_file() => iss.add("captioner.model", format!("{} does not exist", p.display()), "point it at an .onnx captioning model (docs/captioner.md)"),
        Some(_) => {}
    }
    if let Some(p) = &c.tokenizer {
        match crate::caption::model::Tokenizer::from_file(p) {
            Ok(_) => {}
            Err(crate::caption::model::TokenizerError::Read(e)) => iss.add("captioner.tokenizer", format!("{}: {e}", p.display()), "point it at the model's argus.tokenizer.v1 JSON file (docs/captioner.md)"),
            Err(e) => iss.add("captioner.tokenizer", format!("{}: {e}", p.display()), "fix the file; its format is in docs/captioner.md"),
        }
    } else {
        iss.add("captioner.tokenizer", "not set (the captioner is enabled)", "set tokenizer = \"models/your-captioner.tokenizer.json\"");
    }
    if c.max_tokens == 0 || c.max_tokens > 256 {
        iss.add("captioner.max_tokens", format!("{} is outside 1..=256", c.max_tokens), "use e.g. 24");
    }
    if c.input_size < 8 || c.input_size > 1024 {
        iss.add("captioner.input_size", format!("{} is outside 8..=1024", c.input_size), "use the side the model was exported with, e.g. 64");
    }
    if c.threads == 0 || c.threads > 256 {
        iss.add("captioner.threads", format!("{} threads", c.threads), "use 1..=256");
    }
}

fn validate_argus(a: &ArgusConfig, iss: &mut Issues) {
    if a.pipelines.is_empty() {
        iss.add("pipelines", "no pipeline files listed", "add at least one, e.g. pipelines = [\"pipelines/demo.toml\"]");
    }
    if a.server.listen.parse::<SocketAddr>().is_err() {
        iss.add("server.listen", format!("`{}` is not an address:port", a.server.listen), "write it like \"127.0.0.1:8080\"");
    }
    validate_server(&a.server, iss);
    let d = &a.detector;
    if ModelSpec::builtin(&d.model).is_none() && d.model != "yolo" {
        iss.add(
            "detector.model",
            format!("unknown model `{}`", d.model),
            format!("use one of {:?}, or \"yolo\" with detector.path for your own export", ModelSpec::BUILTIN_NAMES),
        );
    }
    if d.model == "yolo" && d.path.is_none() {
        iss.add("detector.path", "model \"yolo\" needs the path of your exported weights", "set detector.path = \"models/your-model.onnx\"");
    }
    if let Some(p) = &d.path {
        if !p.is_file() {
            iss.add("detector.path", format!("{} does not exist", p.display()), "point it at the .onnx (ort) or .torchscript.pt (tch) file");
        }
    }
    if !(d.score_threshold > 0.0 && d.score_threshold < 1.0) {
        iss.add("detector.score_threshold", format!("{} is outside (0, 1)", d.score_threshold), "use e.g. 0.35");
    }
    if let Some(n) = d.nms_iou {
        if !(n > 0.0 && n <= 1.0) {
            iss.add("detector.nms_iou", format!("{n} is outside (0, 1]"), "use e.g. 0.5, or remove it for the model's default");
        }
    }
    if d.max_detections == 0 {
        iss.add("detector.max_detections", "must be at least 1", "use e.g. 100");
    }
    if d.threads == 0 || d.threads > 256 {
        iss.add("detector.threads", format!("{} threads", d.threads), "use 1..=256 (the number of cores is a good start)");
    }
    if d.max_batch == 0 || d.max_batch > 64 {
        iss.add("detector.max_batch", format!("{} is outside 1..=64", d.max_batch), "use e.g. 4");
    }
    if d.max_wait_ms > 1000 {
        iss.add("detector.max_wait_ms", format!("{} ms adds that much latency to every frame", d.max_wait_ms), "use 0..=1000 (e.g. 5)");
    }
    if let Some(s) = d.input_size {
        if s == 0 || s % 32 != 0 {
            iss.add("detector.input_size", format!("{s} is not a positive multiple of 32"), "use the size the model was exported with, e.g. 640");
        }
    }
    if d.model != "yolo" && (d.input_size.is_some() || d.class_names.is_some() || d.yolo_layout.is_some()) {
        iss.add(
            "detector.input_size / class_names / yolo_layout",
            format!("only apply to model = \"yolo\"; built-in `{}` defines its own", d.model),
            "remove them, or set model = \"yolo\"",
        );
    }
    if a.limits.frame_queue == 0 {
        iss.add("limits.frame_queue", "must be at least 1", "use e.g. 4");
    }
    if a.limits.sink_queue == 0 {
        iss.add("limits.sink_queue", "must be at least 1", "use e.g. 1024");
    }
    let ch = &a.sinks.clickhouse;
    if ch.enabled {
        if !cfg!(feature = "clickhouse") {
            iss.add("sinks.clickhouse.enabled", "this build has no ClickHouse support", "build with `--features clickhouse` (on by default) or set enabled = false");
        }
        if !(ch.url.starts_with("http://") || ch.url.starts_with("https://")) {
            iss.add("sinks.clickhouse.url", format!("`{}` is not an http(s) URL", ch.url), "use the HTTP interface, e.g. \"http://127.0.0.1:8123\"");
        }
        let ident = |s: &str| !s.is_empty() && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident(&ch.database) {
            iss.add("sinks.clickhouse.database", format!("`{}` is not a plain identifier", ch.database), "use letters, digits and _, e.g. \"argus\"");
        }
        check_batching_and_spool(iss, "clickhouse", ("max_rows", ch.max_rows, 1_000_000, 10_000), ch.max_wait_ms, ch.spool_max_mb);
    }
    let k = &a.sinks.kafka;
    if k.enabled {
        if !cfg!(feature = "kafka") {
            iss.add("sinks.kafka.enabled", "this build has no Kafka support", "build with `--features kafka` (on by default) or set enabled = false");
        }
        check_brokers(iss, "sinks.kafka.brokers", &k.brokers);
        check_topic(iss, "sinks.kafka.topic", &k.topic);
        if !(1000..=600_000).contains(&k.message_timeout_ms) {
            iss.add("sinks.kafka.message_timeout_ms", format!("{} ms", k.message_timeout_ms), "use 1000..=600000, e.g. 10000");
        }
        check_batching_and_spool(iss, "kafka", ("max_events", k.max_events, 100_000, 1000), k.max_wait_ms, k.spool_max_mb);
        for key in ["bootstrap.servers", "enable.idempotence", "acks", "message.timeout.ms"] {
            if k.options.contains_key(key) {
                iss.add(format!("sinks.kafka.options.\"{key}\""), "is set by Argus (delivery safety) or by its own key", "remove it (use `brokers` / `message_timeout_ms`)");
            }
        }
    }
    if a.sinks.jsonl.enabled && a.sinks.jsonl.path.as_os_str().is_empty() {
        iss.add("sinks.jsonl.path", "empty path", "set a file path or enabled = false");
    }
    if a.store.path.as_os_str().is_empty() {
        iss.add("store.path", "empty path", "set e.g. \"var/argus.db\"");
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn validate_pipeline(p: &PipelineConfig, classes: Option<&[String]>, camera_ids: &mut HashSet<String>, iss: &mut Issues) {
    if !valid_id(&p.name) {
        iss.add("name", format!("`{}` is not a valid name", p.name), "use 1-64 letters, digits, '-', '_' or '.'");
    }
    if p.cameras.is_empty() {
        iss.add("cameras", "no cameras", "add a [[cameras]] table with id and source");
    }
    validate_kafka_source(p, iss);
    let check_classes = |iss: &mut Issues, key: String, list: &[String]| {
        if let Some(known) = classes {
            for c in list {
                if !known.iter().any(|k| k == c) {
                    iss.add(key.clone(), format!("unknown class `{c}` for this model"), "use a class name the detector reports, e.g. \"person\", \"car\", \"truck\"");
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
        if cam.source == "kafka" {
            if p.kafka.is_none() {
                iss.add(format!("{key}.source"), "\"kafka\" needs a [kafka] table in this pipeline", "add [kafka] with brokers, topic and group_id");
            }
            if !cfg!(feature = "kafka") {
                iss.add(format!("{key}.source"), "this build has no Kafka support", "build with `--features kafka` (on by default)");
            }
        } else {
            validate_source(&cam.source, &format!("{key}.source"), iss);
        }
        if !(cam.fps_cap >= 0.0 && cam.fps_cap.is_finite()) {
            iss.add(format!("{key}.fps_cap"), format!("{} is not ≥ 0", cam.fps_cap), "use 0 for every frame, or e.g. 5");
        }
        if !(cam.stall_timeout_s >= 0.5 && cam.stall_timeout_s <= 600.0) {
            iss.add(format!("{key}.stall_timeout_s"), format!("{} is outside 0.5..=600 s", cam.stall_timeout_s), "use a few seconds, e.g. 5");
        }
        if cam.rtsp_latency_ms > 10_000 {
            iss.add(format!("{key}.rtsp_latency_ms"), format!("{} ms delays every frame", cam.rtsp_latency_ms), "use 0..=10000, e.g. 200");
        }
        check_classes(iss, format!("{key}.classes"), &cam.classes);
        if let Some(cal) = &cam.calibration {
            validate_calibration(cal, &format!("{key}.calibration"), iss);
        }
        if let Some(d) = &cam.drone {
            validate_drone(cam, d, &format!("{key}.drone"), iss);
            if cam.origin.is_none() && !p.zones.is_empty() {
                iss.add(
                    format!("{key}.origin"),
                    "zones are in world metres, but this drone's world frame starts wherever it first reports its position",
                    "add [cameras.origin] with the lat/lon of the zones' (0, 0)",
                );
            }
        }
        if let Some(o) = &cam.origin {
            if !(-90.0..=90.0).contains(&o.lat) || !(-180.0..=180.0).contains(&o.lon) {
                iss.add(format!("{key}.origin"), format!("({}, {}) is not a latitude/longitude", o.lat, o.lon), "lat in -90..90, lon in -180..180, decimal degrees");
            }
            if cam.calibration.is_none() && cam.drone.is_none() {
                iss.add(format!("{key}.origin"), "an origin without a calibration places nothing", "add [cameras.calibration] (or [cameras.drone]) or remove origin");
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
        if z.polygon.len() < 3 {
            iss.add(format!("{key}.polygon"), format!("{} corners; a zone needs at least 3", z.polygon.len()), "list the corners [[x, y], ...] in world metres");
        } else if crate::risk::zone::polygon_area(&z.polygon).abs() < 1e-6 {
            iss.add(format!("{key}.polygon"), "the polygon has no area", "list corners in order around the zone");
        }
    }
    let mut rule_ids = HashSet::new();
    for (i, r) in p.rules.iter().enumerate() {
        let key = format!("rules[{i}]");
        if !valid_id(r.id()) {
            iss.add(format!("{key}.id"), format!("`{}` is not a valid rule id", r.id()), "use 1-64 letters, digits, '-', '_' or '.'");
        } else if !rule_ids.insert(r.id().to_string()) {
            iss.add(format!("{key}.id"), format!("rule id `{}` is used twice", r.id()), "give every rule a unique id");
        }
        validate_rule(r, &key, &zone_ids, iss);
        check_classes(iss, format!("{key}.classes"), r.common().classes);
        if let RuleConfig::Proximity(pr) = r {
            check_classes(iss, format!("{key}.near_classes"), &pr.near_classes);
        }
        let needs_geometry = p.cameras.iter().any(|c| c.calibration.is_none() && c.drone.is_none());
        if needs_geometry {
            iss.add(
                format!("{key}"),
                "rules work in world space, but some cameras have no calibration",
                "add [cameras.calibration] to every camera of a pipeline with rules",
            );
        }
    }
    validate_tracker(&p.tracker, iss);
    validate_risk(&p.risk, iss);
    if !(p.events.frame_summary_every_s >= 0.0) {
        iss.add("events.frame_summary_every_s", "must be ≥ 0", "use 0 (off) or seconds, e.g. 5");
    }
}

/// The same fit and judgement as start-up, so `argus check` refuses what `argus run` would.
fn validate_calibration(cal: &CalibrationConfig, ck: &str, iss: &mut Issues) {
    if !(cal.max_error_m > 0.0 && cal.max_error_m.is_finite()) {
        iss.add(format!("{ck}.max_error_m"), format!("{} is not > 0", cal.max_error_m), "use e.g. 0.5 (metres)");
        return;
    }
    if let Some((i, _)) = cal.image_points.iter().chain(&cal.world_points).enumerate().find(|(_, p)| !(p[0].is_finite() && p[1].is_finite())) {
        let (k, i) = if i < cal.image_points.len() { ("image_points", i) } else { ("world_points", i - cal.image_points.len()) };
        iss.add(format!("{ck}.{k}"), format!("point {i} is not a pair of finite numbers"), "write each point as [x, y]");
        return;
    }
    if cal.image_points.len() != cal.world_points.len() {
        iss.add(
            format!("{ck}.world_points"),
            format!("{} image points but {} world points", cal.image_points.len(), cal.world_points.len()),
            "list the same reference points in both, in the same order",
        );
        return;
    }
    if cal.image_points.len() < 4 {
        iss.add(format!("{ck}.image_points"), format!("{} point pairs; a homography needs at least 4", cal.image_points.len()), "measure at least 4 ground points (6+ is better)");
        return;
    }
    if let Err(e) = crate::geo::fit_calibration(cal) {
        iss.add(format!("{ck}.{}", e.key()), e.to_string(), e.fix());
    }
}

fn validate_drone(cam: &CameraConfig, d: &DroneConfig, dk: &str, iss: &mut Issues) {
    if cam.calibration.is_some() {
        iss.add(dk, "a camera has either a fixed [cameras.calibration] or flies ([cameras.drone]), not both", "remove one of the two tables");
    }
    if cam.source != "kafka" {
        iss.add(
            dk,
            "a drone camera is placed by each frame's telemetry, which only the Kafka source carries (the `telemetry` header)",
            "set source = \"kafka\" with a [kafka] table, or remove [cameras.drone]",
        );
    }
    if !d.ground_alt_m.is_finite() {
        iss.add(format!("{dk}.ground_alt_m"), format!("{} is not a number", d.ground_alt_m), "use 0 when telemetry alt_m is height above ground, else the ground's altitude in metres");
    }
    if let Some(coeffs) = &d.distortion {
        // Shape and values as for a fixed camera (the intrinsics come from hfov per frame).
        if let Err(e) = crate::geo::Lens::from_config(Some(&[1000.0, 1000.0, 500.0, 500.0]), Some(coeffs)) {
            iss.add(format!("{dk}.distortion"), e.to_string(), e.fix());
        }
    }
    if !(d.max_range_m > 0.0 && d.max_range_m.is_finite()) {
        iss.add(format!("{dk}.max_range_m"), format!("{} is not > 0", d.max_range_m), "use e.g. 1000 (metres)");
    }
}

fn check_brokers(iss: &mut Issues, key: &str, brokers: &str) {
    if brokers.trim().is_empty() || brokers.split(',').any(|b| !b.trim().contains(':')) {
        iss.add(key, format!("`{brokers}` is not a host:port list"), "write it like \"kafka-1:9092,kafka-2:9092\"");
    }
}

fn check_topic(iss: &mut Issues, key: &str, topic: &str) {
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        iss.add(key, format!("`{topic}` is not a valid Kafka topic name"), "use letters, digits, `.`, `_`, `-` (at most 249)");
    }
}

/// The keys every spooling sink shares: `(name, value, max, example)` of its batch size,
/// `max_wait_ms`, `spool_max_mb`.
fn check_batching_and_spool(iss: &mut Issues, sink: &str, (name, n, max, example): (&str, usize, usize, usize), max_wait_ms: u64, spool_max_mb: u64) {
    if n == 0 || n > max {
        iss.add(format!("sinks.{sink}.{name}"), format!("{n} is outside 1..={max}"), format!("use e.g. {example}"));
    }
    if max_wait_ms > 60_000 {
        iss.add(format!("sinks.{sink}.max_wait_ms"), format!("{max_wait_ms} ms"), "use 0..=60000, e.g. 1000");
    }
    if spool_max_mb == 0 {
        iss.add(format!("sinks.{sink}.spool_max_mb"), "must be at least 1", "use e.g. 1024");
    }
}

fn validate_kafka_source(p: &PipelineConfig, iss: &mut Issues) {
    let Some(k) = &p.kafka else { return };
    if !p.cameras.iter().any(|c| c.source == "kafka") {
        iss.add("kafka", "no camera has source = \"kafka\"", "set source = \"kafka\" on the cameras whose frames come from the topic, or remove [kafka]");
    }
    check_brokers(iss, "kafka.brokers", &k.brokers);
    check_topic(iss, "kafka.topic", &k.topic);
    if let Some(t) = &k.dead_letter_topic {
        check_topic(iss, "kafka.dead_letter_topic", t);
    }
    if k.group_id.trim().is_empty() {
        iss.add("kafka.group_id", "empty", "name the consumer group, e.g. \"argus-drones\"");
    }
    if k.max_message_bytes < 1024 {
        iss.add("kafka.max_message_bytes", format!("{} bytes", k.max_message_bytes), "use at least 1024, e.g. 8388608");
    }
}

fn validate_source(source: &str, key: &str, iss: &mut Issues) {
    let (scheme, rest) = source.split_once("://").unwrap_or(("file", source));
    match scheme {
        "file" => {
            let path = Path::new(rest);
            if rest.is_empty() {
                iss.add(key, "empty source", "write file:///path/to/video.mp4 or rtsp://host/stream");
            } else if !path.is_file() {
                iss.add(key, format!("file {rest} does not exist"), "check the path (absolute, or relative to the working directory)");
            }
        }
        "rtsp" | "rtsps" | "http" | "https" => {
            if rest.is_empty() || rest.starts_with('/') {
                iss.add(key, format!("`{}` has no host", crate::telemetry::redact::redact_url(source)), "write rtsp://host[:port]/path");
            }
        }
        other => iss.add(key, format!("unsupported scheme `{other}`"), "use file://, rtsp://, rtsps://, http:// or https://"),
    }
}

/// The checks of one `[[rules]]` entry beyond its id and class names.
fn validate_rule(r: &RuleConfig, key: &str, zone_ids: &HashSet<&str>, iss: &mut Issues) {
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
                iss.add(key.to_string(), "a crowding rule needs `radius_m` (objects close together), `zone` (objects in it), or both", "add radius_m = 2.0 or zone = \"…\"");
            }
            duration(iss, "min_duration_s", r.min_duration_s);
        }
        RuleConfig::Loitering(r) => {
            duration(iss, "min_dwell_s", r.min_dwell_s);
            if r.min_dwell_s == 0.0 {
                iss.add(format!("{key}.min_dwell_s"), "0 s makes every visit loitering", "use the dwell that is suspicious, e.g. 30; for \"no entry at all\" use kind = \"intrusion\"");
            }
            duration(iss, "max_gap_s", r.max_gap_s);
        }
        RuleConfig::Speed(r) => {
            positive(iss, "max_speed_mps", r.max_speed_mps, "2.5 (a brisk walk is ~1.8 m/s)");
            duration(iss, "min_duration_s", r.min_duration_s);
        }
    }
}

fn validate_tracker(t: &TrackerSettings, iss: &mut Issues) {
    if !(t.high_score > 0.0 && t.high_score < 1.0) {
        iss.add("tracker.high_score", format!("{} is outside (0, 1)", t.high_score), "use e.g. 0.4 (above detector.score_threshold, or the second pass never runs)");
    }
    for (name, v) in [("match_iou", t.match_iou), ("low_match_iou", t.low_match_iou)] {
        if !(v > 0.0 && v < 1.0) {
            iss.add(format!("tracker.{name}"), format!("{v} is outside (0, 1)"), "use e.g. 0.2 (match_iou) or 0.4 (low_match_iou)");
        }
    }
    if t.min_hits == 0 || t.min_hits > 100 {
        iss.add("tracker.min_hits", format!("{} is outside 1..=100", t.min_hits), "use e.g. 2 (frames before a track gets an id)");
    }
    if t.max_lost > 10_000 {
        iss.add("tracker.max_lost", format!("{} frames", t.max_lost), "use 0..=10000, e.g. 30 (frames a track survives unseen)");
    }
}

fn validate_risk(r: &RiskSettings, iss: &mut Issues) {
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
