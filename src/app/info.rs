//! What `/v1/info` says about this build and its configuration.

use crate::api::PipelineSummary;
use crate::config::LoadedConfig;

/// Every cargo feature of Argus and whether this build has it: the one list `/v1/info`
/// reports (a test keeps it equal to Cargo.toml's `[features]`).
pub const FEATURES: &[(&str, bool)] = &[
    ("gstreamer", cfg!(feature = "gstreamer")),
    ("opencv", cfg!(feature = "opencv")),
    ("onnx", cfg!(feature = "onnx")),
    ("onnx-cuda", cfg!(feature = "onnx-cuda")),
    ("torch", cfg!(feature = "torch")),
    ("clickhouse", cfg!(feature = "clickhouse")),
    ("kafka", cfg!(feature = "kafka")),
    ("webhook-tls", cfg!(feature = "webhook-tls")),
];

/// The features this build was compiled with.
pub fn compiled_features() -> Vec<&'static str> {
    FEATURES.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect()
}

pub fn pipeline_summaries(cfg: &LoadedConfig) -> Vec<PipelineSummary> {
    cfg.pipelines
        .iter()
        .map(|(f, p)| PipelineSummary {
            name: p.name.clone(),
            file: f.display().to_string(),
            cameras: p.cameras.iter().map(|c| c.id.clone()).collect(),
            zones: p.zones.iter().map(|z| z.id.clone()).collect(),
            rules: p.rules.iter().map(|r| format!("{}:{}", r.kind(), r.id())).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feature_list_is_cargo_tomls() {
        let manifest: toml::Table = toml::from_str(include_str!("../../Cargo.toml")).unwrap();
        let mut declared: Vec<&str> = manifest["features"].as_table().unwrap().keys().map(|k| k.as_str()).filter(|k| *k != "default").collect();
        declared.sort();
        let mut listed: Vec<&str> = FEATURES.iter().map(|(n, _)| *n).collect();
        listed.sort();
        assert_eq!(listed, declared);
    }
}
