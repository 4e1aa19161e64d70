//! Layer 6, the composition root: turns a validated configuration into running parts
//! and wires them (`scenes`: a scene and a source per camera; `running`: the stages
//! plus the sources, and reloads; `serve`: store, detector, sinks, API and signals for
//! `argus run`; `ingest`: cameras to the frames topic for `argus ingest`; `info`: what `/v1/info` reports). The only module that knows every
//! other one; nothing below imports it.

mod editor;
mod fleet;
mod info;
mod ingest;
mod replay;
mod running;
mod scenes;
mod serve;

pub use info::{FEATURES, compiled_features, pipeline_docs, pipeline_summaries};
pub use ingest::{IngestOptions, IngestPlan, plan as ingest_plan, run_ingest};
pub use replay::{ReplayReport, ReplayRequest, replay};
pub use running::{ReloadSummary, Running, start};
pub use scenes::{Scenes, build_scenes, camera_contexts};
pub use serve::{ServeOptions, load_valid, load_valid_as, run};

use crate::geo::CalibrationError;

/// Options of a run that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop each source after this many frames.
    pub max_frames: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(String),
    #[error("{file}: camera `{camera}`: cameras.calibration.{}: {source} (fix: {})", .source.key(), .source.fix())]
    Calibration { file: String, camera: String, source: CalibrationError },
    #[error("opening the event store: {0}")]
    Store(crate::store::StoreError),
    #[error("loading the detector: {0}")]
    Detector(crate::detect::DetectError),
    #[error("{file}: loading the captioning model ([captioner]): {source}")]
    Captioner { file: String, source: crate::caption::model::CaptionError },
    #[error("{0}")]
    Sink(crate::sinks::SinkError),
    #[error("cannot listen on {addr} (server.listen): {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("{0}")]
    Api(String),
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
    #[error("stopped after a failure: {0}")]
    Panicked(String),
    #[error("every source has ended and the pipeline has finished; restart Argus to run new cameras")]
    Finished,
}
