//! Argus: an event-driven stream processor for camera and drone frames.
//!
//! Sources → stages → sinks over bounded edges:
//! `sources` (GStreamer) → `detect` (batched, `ort`/`tch`) → `pipeline::scene`
//! (`track`, `geo`, `risk`, `caption`) → `sinks` (stdout, JSONL, embedded `store`), with
//! the HTTP `api` on top. Heavy system libraries sit behind cargo features; everything
//! else is pure Rust and tested with `--no-default-features`.

pub mod analysis;
pub mod analyze;
pub mod api;
pub mod caption;
pub mod caption_model;
#[cfg(feature = "clickhouse")]
pub mod clickhouse;
pub mod config;
pub mod detect;
pub mod event;
pub mod frame;
pub mod geo;
pub mod health;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod risk;
pub mod sinks;
pub mod snapshot;
pub mod sources;
pub mod spool;
pub mod store;
pub mod track;
