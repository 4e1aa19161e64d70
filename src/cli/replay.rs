//! `argus replay --pipeline EDITED.toml RECORDING`: the incidents an edited pipeline
//! would give on a recording, next to those of the pipeline running now.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use argus::config::{self, LoadedConfig, PipelineConfig};

#[derive(Args)]
pub struct ReplayArgs {
    /// The edited pipeline file to try.
    #[arg(long)]
    pub pipeline: PathBuf,
    /// The pipeline to compare against (default: the configuration's pipeline with the
    /// edited one's `name`).
    #[arg(long)]
    pub current: Option<PathBuf>,
    /// The camera the recording is from (default: the edited pipeline's only camera).
    #[arg(long)]
    pub camera: Option<String>,
    /// argus.toml: the detector, limits and current pipelines (default: config/argus.toml,
    /// or the embedded demo).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Stop after this many frames.
    #[arg(long)]
    pub max_frames: Option<u64>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The video file to replay.
    pub recording: PathBuf,
}

/// Exit code 2 for a pipeline with problems (each printed), like `argus check`.
pub fn run(args: ReplayArgs) -> Result<ExitCode> {
    let loaded = match config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let edited = match config::load_pipeline(&args.pipeline) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let current = match &args.current {
        Some(file) => match config::load_pipeline(file) {
            Ok(p) => (file.clone(), p),
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => match loaded.pipelines.iter().find(|(_, p)| p.name == edited.name) {
            Some(found) => found.clone(),
            None => {
                let names: Vec<&str> = loaded.pipelines.iter().map(|(_, p)| p.name.as_str()).collect();
                bail!(
                    "{}: no pipeline named `{}` in {} (pipelines: {}); name the one to compare against with --current FILE",
                    args.pipeline.display(),
                    edited.name,
                    loaded.file.display(),
                    names.join(", ")
                );
            }
        },
    };
    let camera = match &args.camera {
        Some(c) => c.clone(),
        None => match edited.cameras.as_slice() {
            [one] => one.id.clone(),
            cams => {
                let ids: Vec<&str> = cams.iter().map(|c| c.id.as_str()).collect();
                bail!("{} has {} cameras ({}): choose one with --camera ID", args.pipeline.display(), cams.len(), ids.join(", "));
            }
        },
    };
    let only = |pipeline: (PathBuf, PipelineConfig)| LoadedConfig { file: loaded.file.clone(), argus: loaded.argus.clone(), pipelines: vec![pipeline] };
    // Both files' problems are printed before giving up.
    let validate = |cfg: LoadedConfig| match config::validated(cfg) {
        Ok(v) => Some(v),
        Err(issues) => {
            for i in &issues {
                eprintln!("{i}");
            }
            None
        }
    };
    let (current, edited) = (validate(only(current)), validate(only((args.pipeline.clone(), edited))));
    let (Some(current), Some(edited)) = (current, edited) else {
        return Ok(ExitCode::from(2));
    };
    if !args.recording.is_file() {
        bail!("{}: not a file (the recording to replay: a video file of the camera)", args.recording.display());
    }
    let report = argus::app::replay(&argus::app::ReplayRequest {
        current: &current,
        edited: &edited,
        camera: &camera,
        recording: &args.recording,
        max_frames: args.max_frames,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("report as JSON")?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::SUCCESS)
}
