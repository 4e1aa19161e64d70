//! Broken configurations give errors that name the file, the key and the fix, both
//! through the library and through `argus check`.

use std::path::Path;
use std::process::Command;

use argus::config;
use argus::model::ConfigIssue;

#[path = "common/config_issues.rs"]
mod config_issues;
use config_issues::{GOOD_PIPELINE, assert_issue, issues_with};

/// Validates an argus.toml text with the demo pipeline, or `pipeline` when given.
fn issues(argus_toml: &str, pipeline: Option<&str>) -> Vec<ConfigIssue> {
    issues_with(argus_toml, pipeline.unwrap_or(GOOD_PIPELINE))
}

#[test]
fn the_shipped_config_is_valid() {
    assert_eq!(issues(config::EMBEDDED_CONFIG, None), vec![]);
}

#[test]
fn unknown_key_is_named_with_its_section_and_line() {
    let text = config::EMBEDDED_CONFIG.replace("score_threshold = 0.35", "score_treshold = 0.35");
    let list = issues(&text, None);
    assert_issue(&list, "config/argus.toml", "detector.score_treshold", "unknown field");
    assert!(list[0].line.is_some());
    assert!(list[0].to_string().contains("fix:"));
}

#[test]
fn unknown_backend_value() {
    let text = config::EMBEDDED_CONFIG.replace("backend = \"ort\"", "backend = \"gpu\"");
    assert_issue(&issues(&text, None), "config/argus.toml", "detector.backend", "unknown variant `gpu`");
}

#[test]
fn out_of_range_values_and_bad_address() {
    let text = config::EMBEDDED_CONFIG
        .replace("score_threshold = 0.35", "score_threshold = 1.5")
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"localhost\"")
        .replace("max_batch = 4", "max_batch = 0");
    let list = issues(&text, None);
    assert_issue(&list, "config/argus.toml", "detector.score_threshold", "outside (0, 1)");
    assert_issue(&list, "config/argus.toml", "server.listen", "not an address:port");
    assert_issue(&list, "config/argus.toml", "detector.max_batch", "outside 1..=64");
}

#[test]
fn rule_pointing_at_a_missing_zone() {
    let p = GOOD_PIPELINE.replace("zone = \"crossing\"", "zone = \"crosing\"");
    assert_issue(&issues(config::EMBEDDED_CONFIG, Some(&p)), "pipelines/demo.toml", "rules[0].zone", "no zone `crosing`");
}

#[test]
fn calibration_with_too_few_or_mismatched_points() {
    let p = GOOD_PIPELINE.replace(
        "image_points = [[40, 560], [730, 560], [60, 260], [720, 250], [384, 400], [200, 180], [600, 180]]",
        "image_points = [[40, 560], [730, 560], [60, 260]]",
    );
    assert_issue(&issues(config::EMBEDDED_CONFIG, Some(&p)), "pipelines/demo.toml", "cameras[0].calibration.world_points", "3 image points but 7 world points");
}

#[test]
fn calibration_with_a_mistyped_point_is_refused() {
    // One world point off by 10 m: RANSAC leaves it out and names it (max_outliers = 0).
    let p = GOOD_PIPELINE.replace("[0.0, 11.25]", "[10.0, 11.25]");
    assert_issue(&issues(config::EMBEDDED_CONFIG, Some(&p)), "pipelines/demo.toml", "cameras[0].calibration.world_points", "pair 4 is 10.");
    // Allowed one outlier, the other six pairs fit.
    let p = p.replace("max_error_m = 0.25", "max_error_m = 0.25\nmax_outliers = 1");
    assert_eq!(issues(config::EMBEDDED_CONFIG, Some(&p)), vec![]);
    // A limit below the pairs' spread error (no outlier stands out): the mean is too large.
    let p = GOOD_PIPELINE.replace("max_error_m = 0.25", "max_error_m = 0.001");
    assert_issue(&issues(config::EMBEDDED_CONFIG, Some(&p)), "pipelines/demo.toml", "cameras[0].calibration.max_error_m", "exceeds max_error_m = 0.001 m");
}

#[test]
fn missing_video_file_and_bad_scheme() {
    let p = GOOD_PIPELINE.replace("file:///usr/share/doc/opencv-doc/examples/data/vtest.avi", "file:///nonexistent/video.mp4");
    assert_issue(&issues(config::EMBEDDED_CONFIG, Some(&p)), "pipelines/demo.toml", "cameras[0].source", "does not exist");
    let p = GOOD_PIPELINE.replace("file:///usr/share/doc/opencv-doc/examples/data/vtest.avi", "ftp://host/video.mp4");
    assert_issue(&issues(config::EMBEDDED_CONFIG, Some(&p)), "pipelines/demo.toml", "cameras[0].source", "unsupported scheme `ftp`");
}

#[test]
fn unknown_class_and_bad_zone() {
    let p = GOOD_PIPELINE
        .replace("classes = [\"person\"]", "classes = [\"persn\"]")
        .replace("polygon = [[1.5, 10.5], [7.5, 10.5], [9.0, 16.7], [2.4, 16.7]]", "polygon = [[1.5, 10.5], [7.5, 10.5]]");
    let list = issues(config::EMBEDDED_CONFIG, Some(&p));
    assert_issue(&list, "pipelines/demo.toml", "rules[0].classes", "unknown class `persn`");
    assert_issue(&list, "pipelines/demo.toml", "zones[0].polygon", "2 corners");
}

#[test]
fn toml_syntax_error_and_wrong_type() {
    assert_issue(&issues("[detector\nmodel = 1", None), "config/argus.toml", "detector", "");
    let text = config::EMBEDDED_CONFIG.replacen("threads = 1 ", "threads = \"two\" ", 1);
    assert_issue(&issues(&text, None), "config/argus.toml", "detector.threads", "invalid type");
}

#[test]
fn detector_workers_take_a_count_or_auto() {
    let with = |v: &str| config::EMBEDDED_CONFIG.replacen("workers = \"auto\"", &format!("workers = {v}"), 1);
    assert_issue(&issues(&with("\"many\""), None), "config/argus.toml", "detector.workers", "`many`: use a number of workers (e.g. 2) or \"auto\"");
    assert_issue(&issues(&with("0"), None), "config/argus.toml", "detector.workers", "0 workers");
    let read = |_: &Path| Ok(GOOD_PIPELINE.to_string());
    let cfg = config::load_from_str(Path::new("c.toml"), &with("3"), &[], &read).unwrap();
    assert_eq!(cfg.argus.detector.workers, argus::detect::config::Workers::Count(3));
    let env = vec![("ARGUS_DETECTOR__WORKERS".to_string(), "auto".to_string())];
    let cfg = config::load_from_str(Path::new("c.toml"), &with("3"), &env, &read).unwrap();
    assert_eq!(cfg.argus.detector.workers, argus::detect::config::Workers::Auto);
}

#[test]
fn environment_overrides_apply_and_are_validated() {
    let read = |_: &Path| Ok(GOOD_PIPELINE.to_string());
    let env = vec![("ARGUS_DETECTOR__BACKEND".to_string(), "tch".to_string()), ("ARGUS_DETECTOR__THREADS".to_string(), "3".to_string())];
    let cfg = config::load_from_str(Path::new("c.toml"), config::EMBEDDED_CONFIG, &env, &read).unwrap();
    assert_eq!(cfg.argus.detector.backend, argus::detect::config::BackendKind::Tch);
    assert_eq!(cfg.argus.detector.threads, 3);
    let env = vec![("ARGUS_DETECTOR__BACKEND".to_string(), "quantum".to_string())];
    let err = config::load_from_str(Path::new("c.toml"), config::EMBEDDED_CONFIG, &env, &read).unwrap_err();
    assert!(err.to_string().contains("unknown variant `quantum`"), "{err}");
}

#[test]
fn argus_check_reports_problems_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("p.toml");
    std::fs::write(&pipe, GOOD_PIPELINE.replace("severity = 0.5", "severity = 5.0")).unwrap();
    let cfg = dir.path().join("argus.toml");
    std::fs::write(&cfg, config::EMBEDDED_CONFIG.replace("pipelines = [\"pipelines/demo.toml\"]", &format!("pipelines = [{:?}]", pipe.display().to_string())))
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_argus")).args(["check", "--config"]).arg(&cfg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}: rules[0].severity: 5 is outside (0, 1] (fix: ", pipe.display())), "{stderr}");

    let ok = Command::new(env!("CARGO_BIN_EXE_argus")).args(["check", "--config", "config/argus.toml"]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK"));
}

#[test]
fn kafka_cameras_need_a_kafka_table_and_valid_topics() {
    use argus::config::{LoadedConfig, PipelineConfig, validate};
    let p: PipelineConfig = toml::from_str("name = \"d\"\n[[cameras]]\nid = \"drone-1\"\nsource = \"kafka\"\n").unwrap();
    let cfg = LoadedConfig { file: "argus.toml".into(), argus: Default::default(), pipelines: vec![("d.toml".into(), p)] };
    let issues: Vec<String> = validate(&cfg).iter().map(|i| i.to_string()).collect();
    assert!(issues.iter().any(|i| i.contains("cameras[0].source") && i.contains("[kafka]")), "{issues:?}");
    let p: PipelineConfig = toml::from_str(
        "name = \"d\"\n[[cameras]]\nid = \"drone-1\"\nsource = \"kafka\"\n[kafka]\nbrokers = \"nohostport\"\ntopic = \"bad topic!\"\ngroup_id = \"g\"\n",
    )
    .unwrap();
    let cfg = LoadedConfig { file: "argus.toml".into(), argus: Default::default(), pipelines: vec![("d.toml".into(), p)] };
    let issues: Vec<String> = validate(&cfg).iter().map(|i| i.to_string()).collect();
    assert!(issues.iter().any(|i| i.contains("kafka.brokers")), "{issues:?}");
    assert!(issues.iter().any(|i| i.contains("kafka.topic")), "{issues:?}");
    assert!(!issues.iter().any(|i| i.contains("does not exist")), "kafka is not a file: {issues:?}");
}

#[test]
fn an_enabled_captioner_needs_its_files_and_sane_limits() {
    let dir = tempfile::tempdir().unwrap();
    let bad_tok = dir.path().join("tok.json");
    std::fs::write(&bad_tok, r#"{"format": "argus.tokenizer.v1", "vocab": ["<s>"], "bos": "<s>", "eos": "</s>", "pad": "<s>", "unk": "<s>"}"#).unwrap();
    let text = config::EMBEDDED_CONFIG
        .replace("enabled = false            # every event keeps", "enabled = true            # every event keeps")
        .replace("# model = \"models/captioner.onnx\"", "model = \"models/no-such-captioner.onnx\"")
        .replace("# tokenizer = \"models/captioner.tokenizer.json\"", &format!("tokenizer = {:?}", bad_tok.display().to_string()))
        .replace("max_tokens = 24", "max_tokens = 0");
    let list = issues(&text, None);
    assert_issue(&list, "config/argus.toml", "captioner.model", "no-such-captioner.onnx does not exist");
    assert_issue(&list, "config/argus.toml", "captioner.tokenizer", "special token `eos` = `</s>` is not in the vocabulary");
    assert_issue(&list, "config/argus.toml", "captioner.max_tokens", "outside 1..=256");
    let text = config::EMBEDDED_CONFIG.replace("min_level = \"high\"", "min_level = \"severe\"");
    assert_issue(&issues(&text, None), "config/argus.toml", "captioner.min_level", "unknown variant `severe`");
    // Enabled without files: both keys named.
    let text = config::EMBEDDED_CONFIG.replace("enabled = false            # every event keeps", "enabled = true # every event keeps");
    let list = issues(&text, None);
    assert_issue(&list, "config/argus.toml", "captioner.model", "not set");
    assert_issue(&list, "config/argus.toml", "captioner.tokenizer", "not set");
}

#[test]
fn two_sinks_sharing_one_spool_directory() {
    let text = config::EMBEDDED_CONFIG
        .replace("enabled = false            # scripts/services start clickhouse", "enabled = true            # scripts/services start clickhouse")
        .replace("enabled = false            # scripts/services start kafka", "enabled = true            # scripts/services start kafka")
        .replace("spool_dir = \"var/spool/kafka\"", "spool_dir = \"var/spool/clickhouse/\"");
    assert_issue(&issues(&text, None), "config/argus.toml", "sinks.clickhouse.spool_dir", "is also sinks.kafka.spool_dir");
}

#[test]
fn server_hardening_keys_are_checked() {
    let text = config::EMBEDDED_CONFIG
        .replace("request_timeout_s = 60.0", "request_timeout_s = 10.0")
        .replace("webhook_allow = []", "webhook_allow = [\"http://hooks.lan/x\"]")
        .replace("allowed_hosts = []", "allowed_hosts = [\"https://argus.lan/\", \"argus.lan:8080\", \"[fd00::1]\", \"fd00::2\"]")
        .replace("max_live_clients = 256", "max_live_clients = 0")
        .replace("named_api_keys = {}", "named_api_keys = { alice = \"alice-key-0123456789abc\" }")
        .replace("pipeline_editors = []", "pipeline_editors = [\"alice\", \"carol\"]");
    let list = issues(&text, None);
    assert_issue(&list, "config/argus.toml", "server.pipeline_editors[1]", "no named API key `carol`");
    assert!(list.iter().all(|i| i.key != "server.pipeline_editors[0]"), "alice is a named key: {list:?}");
    assert_issue(&list, "config/argus.toml", "server.request_timeout_s", "longer than server.analyze_timeout_s");
    assert_issue(&list, "config/argus.toml", "server.webhook_allow[0]", "neither a host name nor an address");
    assert_issue(&list, "config/argus.toml", "server.allowed_hosts[0]", "not a host name");
    assert_issue(&list, "config/argus.toml", "server.allowed_hosts[1]", "has a port");
    assert!(
        list.iter().all(|i| !i.key.starts_with("server.allowed_hosts[2]") && !i.key.starts_with("server.allowed_hosts[3]")),
        "IPv6 addresses are names: {list:?}"
    );
    assert_issue(&list, "config/argus.toml", "server.max_connections / max_live_clients / max_live_clients_per_key", "at least 1");
}

/// `argus run` with extra environment: it must refuse at once (before any model loads).
fn run_refused(env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_argus"));
    cmd.args(["run", "--config", "config/argus.toml"]).env_remove("ARGUS_API_KEYS").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("argus run {env:?} did not refuse to start");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_api_open_to_the_network_without_keys_or_with_short_env_keys_is_refused() {
    let err = run_refused(&[("ARGUS_SERVER__LISTEN", "0.0.0.0:0")]);
    assert!(err.contains("server.listen = 0.0.0.0:0 is not loopback and no API keys are set"), "{err}");
    assert!(err.contains("server.allow_open_network = true"), "{err}");
    let err = run_refused(&[("ARGUS_API_KEYS", "0123456789abcdef0123,short")]);
    assert!(err.contains("ARGUS_API_KEYS: key 2 of 2 is shorter than 16 characters"), "{err}");
    let err = run_refused(&[("ARGUS_WEBHOOK_SECRET", "tiny")]);
    assert!(err.contains("ARGUS_WEBHOOK_SECRET is shorter than 16 characters"), "{err}");
}

/// `argus check --worker` and `argus run --worker` read the files as the analysis tier
/// of a fleet does: the demo pipeline (a file camera, no [kafka]) is refused with the
/// file and the fix; with [kafka] it checks out.
#[test]
fn a_worker_needs_a_kafka_table_in_every_pipeline() {
    let out = Command::new(env!("CARGO_BIN_EXE_argus")).args(["check", "--worker", "--config", "config/argus.toml"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pipelines/demo.toml: kafka: `argus run --worker` reads cameras from the pipeline's [kafka] topic"), "{stderr}");
    assert!(stderr.contains("(fix: add [kafka]"), "{stderr}");
    let run = Command::new(env!("CARGO_BIN_EXE_argus")).args(["run", "--worker", "--config", "config/argus.toml"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("(fix: add [kafka]"), "argus run --worker refuses at start: {stderr}");

    let dir = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string("pipelines/demo.toml").unwrap();
    let pipe = dir.path().join("site.toml");
    std::fs::write(&pipe, format!("{demo}\n[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopic = \"frames\"\ngroup_id = \"workers\"\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["check", "--worker", "--config", "config/argus.toml"])
        .env("ARGUS_PIPELINES", format!("[{:?}]", pipe.display().to_string()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "kafka") {
        assert!(out.status.success(), "{stderr}");
    } else {
        assert!(!out.status.success() && stderr.contains("this build has no Kafka support"), "{stderr}");
    }
}
