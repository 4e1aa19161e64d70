//! What `/v1/info` says about this build and its configuration.

use serde_json::{Value, json};

use crate::api::{PipelineDoc, PipelineSummary};
use crate::config::{LoadedConfig, Validated};
use crate::geo::CalibrationFit;
use crate::geo::config::CalibrationConfig;

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

/// `GET /v1/pipelines`: each pipeline file's content, and per camera the calibration fit
/// validation accepted (the same fit as `argus calibrate`), with every point's error.
pub fn pipeline_docs(cfg: &LoadedConfig, validated: &Validated) -> Vec<PipelineDoc> {
    cfg.pipelines
        .iter()
        .map(|(file, p)| {
            let cameras: Vec<Value> = p
                .cameras
                .iter()
                .map(|c| json!({ "id": c.id, "calibration": c.calibration.as_ref().map(|cal| calibration_doc(cal, validated.fits.get(&c.id))) }))
                .collect();
            let doc = json!({
                "name": p.name,
                "file": file.display().to_string(),
                "pipeline": serde_json::to_value(p).expect("a pipeline serialises"),
                "cameras": cameras,
            });
            PipelineDoc { name: p.name.clone(), doc }
        })
        .collect()
}

fn calibration_doc(cal: &CalibrationConfig, fit: Option<&CalibrationFit>) -> Value {
    let Some(fit) = fit else {
        // Only configurations built in code skip validation's fit.
        return json!({ "fitted": false });
    };
    let points: Vec<Value> = cal
        .image_points
        .iter()
        .zip(&cal.world_points)
        .enumerate()
        .map(|(i, (image, world))| json!({ "image": image, "world": world, "error_m": fit.errors.get(i), "inlier": fit.inlier.get(i) }))
        .collect();
    json!({
        "fitted": true,
        "method": fit.method,
        "homography": fit.homography.0,
        "lens": fit.lens.is_some(),
        "inliers": fit.inliers(),
        "mean_error_m": fit.fit.mean,
        "max_error_m": fit.fit.max,
        "max_error_allowed_m": cal.max_error_m,
        "points": points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_pipelines_document_has_its_file_content_and_every_points_error() {
        let cfg = crate::config::load_from_str(std::path::Path::new("argus.toml"), crate::config::EMBEDDED_CONFIG, &[], &|_: &std::path::Path| {
            Ok(crate::config::EMBEDDED_DEMO_PIPELINE.to_string())
        })
        .unwrap();
        let valid = crate::config::validated(cfg).unwrap();
        let docs = pipeline_docs(&valid.config, &valid.validated);
        assert_eq!(docs.len(), 1);
        let d = &docs[0].doc;
        assert_eq!((docs[0].name.as_str(), d["name"].as_str()), ("demo", Some("demo")));
        assert_eq!(d["pipeline"]["zones"][0]["id"], "crossing");
        assert_eq!(d["pipeline"]["rules"][0]["min_dwell_s"], 1.0);
        let cal = &d["cameras"][0]["calibration"];
        assert_eq!((d["cameras"][0]["id"].as_str(), cal["fitted"].as_bool()), (Some("plaza"), Some(true)));
        let points = cal["points"].as_array().unwrap();
        assert_eq!(points.len(), 7);
        let errors: Vec<f64> = points.iter().map(|p| p["error_m"].as_f64().unwrap()).collect();
        let max = errors.iter().copied().fold(0.0, f64::max);
        assert!((max - cal["max_error_m"].as_f64().unwrap()).abs() < 1e-9 || points.iter().any(|p| p["inlier"] == false), "{cal}");
        assert!(cal["mean_error_m"].as_f64().unwrap() <= cal["max_error_allowed_m"].as_f64().unwrap());
        assert_eq!(points[0]["image"], json!([40.0, 560.0]));
        // The document is the file's content: it parses back into the same pipeline.
        let back: crate::config::PipelineConfig = serde_json::from_value(d["pipeline"].clone()).unwrap();
        assert_eq!(&back, &valid.config.pipelines[0].1);
    }

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
