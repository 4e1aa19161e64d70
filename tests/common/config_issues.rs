//! Shared by the config tests: validate an argus.toml text with one pipeline text, and
//! assert that an issue names the file, the key, the problem and a fix.

use std::path::Path;

use argus::config;
use argus::model::ConfigIssue;

pub const GOOD_PIPELINE: &str = include_str!("../../pipelines/demo.toml");

/// Parses an argus.toml text (its pipeline files all read as `pipeline`) and validates
/// it; returns every issue.
pub fn issues_with(argus_toml: &str, pipeline: &str) -> Vec<ConfigIssue> {
    let pipe = pipeline.to_string();
    let read = move |_: &Path| Ok(pipe.clone());
    match config::load_from_str(Path::new("config/argus.toml"), argus_toml, &[], &read) {
        Err(e) => e.issues().to_vec(),
        Ok(cfg) => config::validate(&cfg),
    }
}

pub fn assert_issue(list: &[ConfigIssue], file: &str, key: &str, problem: &str) {
    assert!(
        list.iter().any(|i| i.file == Path::new(file) && i.key == key && i.problem.contains(problem) && !i.fix.is_empty()),
        "expected {file}: {key}: …{problem}…, got:\n{}",
        list.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n")
    );
}
