//! The subcommands, one file each; the edge where `anyhow` turns the library's errors
//! into messages.

mod analyze;
mod bench;
mod calibrate;
mod check;
mod ingest;
mod replay;
mod run;
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "argus", version, about = "Event-driven stream processor for camera and drone frames")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the pipelines and the HTTP API (default config: config/argus.toml, or the
    /// embedded demo when that file is absent).
    Run(run::RunArgs),
    /// Publish this shard's RTSP and file cameras' frames to their pipelines' [kafka]
    /// topics for `argus run` workers (no detector).
    Ingest(ingest::IngestArgs),
    /// Detect objects in still images and print one argus.event.v1 JSON per image.
    Analyze(analyze::AnalyzeArgs),
    /// Validate the config and pipelines without running anything.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Check as `argus run --worker` reads the files (every camera from [kafka]).
        #[arg(long)]
        worker: bool,
    },
    /// Fit and print each camera's homography, each point's error in metres and a
    /// [cameras.calibration] snippet to paste (from the config, or from a points file).
    Calibrate(calibrate::CalibrateArgs),
    /// The incidents an edited pipeline would give on a recording, next to those of the
    /// pipeline running now (deterministic; as fast as the machine allows).
    Replay(replay::ReplayArgs),
    /// Measure detector latency per backend and end-to-end throughput on the demo video.
    Bench(bench::detector::BenchArgs),
    /// Peak resident memory of `argus --version`, the demo and the demo with several
    /// cameras, next to a plain Python loop over the same video and model.
    BenchMemory(bench::memory::BenchMemoryArgs),
    /// Run N live RTSP test cameras for a while; print per-camera rates and RSS growth.
    Soak(soak::SoakArgs),
    /// Rows/s into ClickHouse through the sink's code path, next to clickhouse-client.
    #[cfg(feature = "clickhouse")]
    BenchClickhouse(bench::clickhouse::BenchClickHouseArgs),
    /// Events/s into Kafka through the sink's code path, next to a raw producer.
    #[cfg(feature = "kafka")]
    BenchKafka(bench::kafka::BenchKafkaArgs),
}

/// Runs one subcommand; `check` chooses its own exit code (2 for an invalid config).
pub fn dispatch(command: Command) -> Result<ExitCode> {
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match command {
        Command::Run(args) => done(run::run(args)),
        Command::Ingest(args) => done(ingest::run(args)),
        Command::Analyze(args) => done(analyze::run(args)),
        Command::Check { config, worker } => Ok(check::run(config, worker)),
        Command::Calibrate(args) => done(calibrate::run(args)),
        Command::Replay(args) => replay::run(args),
        Command::Bench(args) => done(bench::detector::run(args)),
        Command::BenchMemory(args) => done(bench::memory::run(args)),
        Command::Soak(args) => done(soak::run(args)),
        #[cfg(feature = "clickhouse")]
        Command::BenchClickhouse(args) => done(bench::clickhouse::run(args)),
        #[cfg(feature = "kafka")]
        Command::BenchKafka(args) => done(bench::kafka::run(args)),
    }
}

/// Logging as `[log]` says; `RUST_LOG` wins when set.
pub fn init_logging(cfg: &argus::config::LoadedConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.argus.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.argus.log.format {
        argus::config::LogFormat::Json => builder.json().try_init(),
        argus::config::LogFormat::Text => builder.try_init(),
    };
}
