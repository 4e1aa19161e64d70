//! Argus: an event-driven stream processor for camera and drone frames.
//!
//! Sources → stages → sinks over bounded edges. The modules form layers; a module
//! imports only its own layer or those below (`tests/layers.rs` enforces it):
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 0 | `model` | the vocabulary: frames, detections, objects, risks, events, ids |
//! | 1 | `telemetry`, `detect`, `track`, `geo`, `risk`, `caption`, `evidence` | metrics and health; the domain, each with its `config`; incident evidence files |
//! | 2 | `pipeline` | topology: frame hub, event bus, detect and scene stages, snapshots |
//! | 3 | `sources`, `sinks`, `store`, `fleet` | frames in (GStreamer, Kafka), events out, the queryable stores; members' status records |
//! | 4 | `analysis`, `api` | still images; the HTTP API and web page |
//! | 5 | `config` | loading files, their shapes, validation across components |
//! | 6 | `app` | the composition root: builds and runs pipelines, API, signals, reloads |
//!
//! The `argus` binary's `cli` sits on top. Heavy system libraries sit behind cargo
//! features; everything else is pure Rust and tested with `--no-default-features`.

pub mod analysis;
pub mod api;
pub mod app;
pub mod caption;
pub mod clients;
pub mod config;
pub mod detect;
pub mod evidence;
pub mod fleet;
pub mod geo;
pub mod model;
pub mod pipeline;
pub mod risk;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod track;
