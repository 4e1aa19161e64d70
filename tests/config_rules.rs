//! Scene configuration (rules of every kind, `[tracker]`, `[risk]`) is validated with
//! errors that name the file, the key and the fix.

use argus::config;

#[path = "common/config_issues.rs"]
mod config_issues;
use config_issues::{GOOD_PIPELINE, assert_issue, issues_with as issues};

#[test]
fn the_demo_pipeline_with_all_rule_kinds_is_valid() {
    let list = issues(config::EMBEDDED_CONFIG, GOOD_PIPELINE);
    assert!(list.is_empty(), "{list:?}");
}

#[test]
fn scene_rules_tracker_and_risk_are_validated() {
    let p = format!(
        "{GOOD_PIPELINE}\n{}",
        r#"
[[rules]]
kind = "loitering"
id = "l"
zone = "nowhere"
min_dwell_s = 0

[[rules]]
kind = "crowding"
id = "c"
min_count = 1

[[rules]]
kind = "proximity"
id = "p"
near_classes = ["truk"]
distance_m = -1

[[rules]]
kind = "speed"
id = "s"
max_speed_mps = 0
severity = 2
"#
    )
    .replace("high_score = 0.4", "high_score = 1.5")
    .replace("min_hits = 2", "min_hits = 0")
    .replace("critical = 0.85", "critical = 0.5");
    let list = issues(config::EMBEDDED_CONFIG, &p);
    let f = "pipelines/demo.toml";
    let n = GOOD_PIPELINE.matches("[[rules]]").count();
    assert_issue(&list, f, &format!("rules[{n}].zone"), "no zone `nowhere`");
    assert_issue(&list, f, &format!("rules[{n}].min_dwell_s"), "0 s makes every visit loitering");
    assert_issue(&list, f, &format!("rules[{}].min_count", n + 1), "1 objects are no crowd");
    assert_issue(&list, f, &format!("rules[{}]", n + 1), "needs `radius_m`");
    assert_issue(&list, f, &format!("rules[{}].near_classes", n + 2), "unknown class `truk`");
    assert_issue(&list, f, &format!("rules[{}].distance_m", n + 2), "-1 is not a positive number");
    assert_issue(&list, f, &format!("rules[{}].max_speed_mps", n + 3), "0 is not a positive number");
    assert_issue(&list, f, &format!("rules[{}].severity", n + 3), "2 is outside (0, 1]");
    assert_issue(&list, f, "tracker.high_score", "1.5 is outside (0, 1)");
    assert_issue(&list, f, "tracker.min_hits", "0 is outside 1..=100");
    assert_issue(&list, f, "risk.medium / high / critical", "not increasing");
}

#[test]
fn an_unknown_rule_kind_or_key_is_named() {
    let p = format!("{GOOD_PIPELINE}\n[[rules]]\nkind = \"loiter\"\nid = \"x\"\nzone = \"bench\"\n");
    let list = issues(config::EMBEDDED_CONFIG, &p);
    assert!(list.iter().any(|i| i.problem.contains("loiter") && i.file == std::path::Path::new("pipelines/demo.toml")), "{list:?}");
    let p = format!("{GOOD_PIPELINE}\n[[rules]]\nkind = \"speed\"\nid = \"x\"\nmax_speed = 3.0\n");
    let list = issues(config::EMBEDDED_CONFIG, &p);
    assert!(list.iter().any(|i| i.problem.contains("max_speed") && i.file == std::path::Path::new("pipelines/demo.toml")), "{list:?}");
}
