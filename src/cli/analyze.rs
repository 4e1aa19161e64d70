//! `argus analyze`: detect objects in still images and print one `argus.event.v1` JSON
//! per image.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;

use argus::config;
use argus::detect::{self, config::BackendKind};

#[derive(Args)]
pub struct AnalyzeArgs {
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override detector.backend.
    #[arg(long)]
    backend: Option<BackendKind>,
    /// Override detector.model.
    #[arg(long)]
    model: Option<String>,
    /// Override detector.score_threshold.
    #[arg(long)]
    threshold: Option<f32>,
    /// Pretty-print the JSON.
    #[arg(long)]
    pretty: bool,
}

pub fn run(args: AnalyzeArgs) -> Result<()> {
    let cfg = config::load(args.config.as_deref()).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    super::init_logging(&cfg);
    let mut d = cfg.argus.detector.clone();
    if let Some(b) = args.backend {
        d.backend = b;
    }
    if let Some(m) = args.model {
        d.model = m;
    }
    if let Some(t) = args.threshold {
        d.score_threshold = t;
    }
    let mut detector = detect::build_detector(&d).context("loading the detector")?;
    let mut failed = 0;
    for img in &args.images {
        let name = img.display().to_string();
        let result = std::fs::read(img)
            .map_err(|e| anyhow!("{name}: {e}"))
            .and_then(|bytes| argus::model::decode_image(&bytes).map_err(|e| anyhow!("{name}: {e}")))
            .and_then(|rgb| argus::analysis::analyze_image(detector.as_mut(), &rgb, &name).map_err(|e| anyhow!("{name}: {e}")));
        match result {
            Ok(ev) => {
                let s = if args.pretty { serde_json::to_string_pretty(&ev)? } else { serde_json::to_string(&ev)? };
                println!("{s}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("argus: {e}");
            }
        }
    }
    if failed > 0 {
        return Err(anyhow!("{failed} of {} image(s) could not be analysed", args.images.len()));
    }
    Ok(())
}
