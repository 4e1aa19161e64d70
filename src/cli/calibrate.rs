//! `argus calibrate`: fit and print each camera's homography, each point's error in
//! metres and a `[cameras.calibration]` snippet to paste.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::Args;

use argus::config;
use argus::geo::config::{CalibrationConfig, OriginConfig};
use argus::geo::{self, CalibrationError, calibrate};

#[derive(Args)]
pub struct CalibrateArgs {
    #[arg(long, short, conflicts_with = "points")]
    config: Option<PathBuf>,
    /// Only this camera.
    #[arg(long, conflicts_with = "points")]
    camera: Option<String>,
    /// A points file instead of the config: image_points, world_points and optionally
    /// max_error_m, camera_matrix, distortion and an [origin] table.
    #[arg(long)]
    points: Option<PathBuf>,
}

pub fn run(args: CalibrateArgs) -> Result<()> {
    match args.points {
        Some(p) => from_points_file(&p),
        None => from_config(args.config, args.camera),
    }
}

fn from_config(path: Option<PathBuf>, only: Option<String>) -> Result<()> {
    // Not validated first: a calibration that validation refuses is exactly what this
    // command must show point by point.
    let cfg = config::load(path.as_deref()).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    let mut found = false;
    let mut refused = Vec::new();
    for (file, p) in &cfg.pipelines {
        for cam in &p.cameras {
            if only.as_deref().is_some_and(|c| c != cam.id) {
                continue;
            }
            found = true;
            let Some(cal) = &cam.calibration else {
                let how = if cam.drone.is_some() { "a drone, placed per frame from telemetry" } else { "no calibration" };
                println!("camera {} ({}): {how}\n", cam.id, file.display());
                continue;
            };
            let label = format!("camera {} ({})", cam.id, file.display());
            if let Err(e) = calibrate_one(&label, cal, Some(cal.max_error_m), cam.origin.as_ref()) {
                refused.push(format!("{}: camera `{}`: cameras.calibration.{}: {e} (fix: {})", file.display(), cam.id, e.key(), e.fix()));
            }
        }
    }
    if !found {
        return Err(anyhow!("no camera {:?} in the configured pipelines", only.unwrap_or_default()));
    }
    if !refused.is_empty() {
        return Err(anyhow!("{} calibration(s) refused:\n  {}", refused.len(), refused.join("\n  ")));
    }
    Ok(())
}

fn from_points_file(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let pts = calibrate::PointsFile::parse(path, &text).map_err(|e| anyhow!(e))?;
    calibrate_one(&format!("points file {}", path.display()), &pts.calibration(), pts.max_error_m, pts.origin.as_ref())
        .map_err(|e| anyhow!("{}: {}: {e} (fix: {})", path.display(), e.key(), e.fix()))
}

/// Prints the fit of one calibration and, when it is accepted, the snippet to paste.
fn calibrate_one(label: &str, cal: &CalibrationConfig, max_error_m: Option<f64>, origin: Option<&OriginConfig>) -> Result<(), CalibrationError> {
    let fit = geo::fit_points(cal)?;
    let verdict = fit.check(cal.max_error_m, cal.max_outliers);
    print!("{}", calibrate::report(label, cal, &fit, &verdict));
    if verdict.is_ok() {
        println!("\n{}", calibrate::snippet(cal, &fit, max_error_m, origin));
    } else {
        println!();
    }
    verdict
}
