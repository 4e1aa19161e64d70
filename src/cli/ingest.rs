//! `argus ingest`: validate, resolve the shard, set up logging, hand over to the app.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use argus::app::{self, IngestOptions};
use argus::sources::shard::Shard;

#[derive(Args)]
pub struct IngestArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Run shard INDEX of COUNT (`I/N`): exactly the cameras whose id maps to it.
    /// Default: ARGUS_SHARD, else ARGUS_SHARD_COUNT with the ordinal of POD_NAME or
    /// HOSTNAME (a StatefulSet pod), else every camera.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Exit once every source has ended and its frames are confirmed by the broker.
    #[arg(long)]
    exit_when_done: bool,
    /// Stop each source after this many frames.
    #[arg(long)]
    max_frames: Option<u64>,
}

pub fn run(args: IngestArgs) -> Result<()> {
    let (shard, shard_from) = Shard::resolve(args.shard.as_deref(), |k| std::env::var(k).ok())?;
    let cfg = app::load_valid(args.config.as_deref())?;
    super::init_logging(&cfg);
    app::run_ingest(cfg, IngestOptions { config: args.config, shard, shard_from, exit_when_done: args.exit_when_done, max_frames: args.max_frames })?;
    Ok(())
}
