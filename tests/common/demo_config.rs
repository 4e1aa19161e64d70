//! The embedded configuration, written into a test's directory: its store, JSONL,
//! evidence and HTTP port there, and `pipeline` as its only pipeline file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn write_config_with(dir: &Path, port: u16, pipeline: &Path) -> PathBuf {
    let text = argus::config::EMBEDDED_CONFIG
        .replace("pipelines = [\"pipelines/demo.toml\"]", &format!("pipelines = [{:?}]", pipeline.display().to_string()))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("var/events.jsonl", &dir.join("events.jsonl").display().to_string())
        .replace("var/argus.db", &dir.join("argus.db").display().to_string())
        .replace("var/evidence", &dir.join("evidence").display().to_string());
    let path = dir.join("argus.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// With the repository's demo pipeline.
pub fn write_config(dir: &Path, port: u16) -> PathBuf {
    write_config_with(dir, port, &Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/demo.toml"))
}
