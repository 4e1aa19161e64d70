//! `argus run`: validate, set up logging, and hand over to the app.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use argus::app::{self, RunOptions, ServeOptions};

#[derive(Args)]
pub struct RunArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Exit once every source has ended and all events are written (default: keep
    /// serving the API until Ctrl-C).
    #[arg(long)]
    exit_when_done: bool,
    /// Stop each source after this many frames.
    #[arg(long)]
    max_frames: Option<u64>,
    /// The analysis tier of a fleet: every camera of the pipelines comes from its
    /// pipeline's [kafka] topic, where `argus ingest` publishes the same files' cameras.
    #[arg(long)]
    worker: bool,
}

pub fn run(args: RunArgs) -> Result<()> {
    let cfg = app::load_valid_as(args.config.as_deref(), args.worker)?;
    super::init_logging(&cfg);
    let opts = ServeOptions { config: args.config, exit_when_done: args.exit_when_done, run: RunOptions { max_frames: args.max_frames }, worker: args.worker };
    app::run(cfg, opts)?;
    Ok(())
}
