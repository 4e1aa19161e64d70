//! GStreamer source (`gstreamer` feature): `uridecodebin → videoconvert → appsink(RGB)`.
//!
//! Follows gstreamer-rs's examples: an AppSink built with its builder, the bus polled
//! between pulls, and the pipeline always set back to Null, on every exit path. Live
//! sources (RTSP) are rebuilt with exponential backoff after an error or end of stream;
//! files end at EOS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use time::OffsetDateTime;

use super::{FpsGate, LaneSender, Pushed, SourceSpec};
use crate::frame::{Frame, RgbImage};
use crate::health::{Health, State};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum GstError {
    #[error("GStreamer init: {0}")]
    Init(String),
    #[error("building the pipeline: {0}")]
    Build(String),
    #[error("stream error from {element}: {message}{}", .debug.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Stream { element: String, message: String, debug: Option<String> },
    #[error("no frame for {0:?}: stream stalled")]
    Stalled(Duration),
}

/// Why one pipeline run ended.
enum RunEnd {
    Eos,
    Stopped,
    FrameLimit,
}

/// Sets the pipeline back to Null however the run ends.
struct NullOnDrop(gst::Pipeline);

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

struct Counters {
    seq: u64,
    delivered: u64,
    gate: FpsGate,
}

/// Runs the source until it ends, the frame limit is reached, or `stop` is set.
pub fn run(spec: SourceSpec, lane: LaneSender, stop: Arc<AtomicBool>, metrics: Arc<Metrics>, health: Arc<Health>) {
    let cam = spec.camera_id.clone();
    let span = tracing::info_span!("source", camera = %cam);
    let _g = span.enter();
    if let Err(e) = gst::init() {
        fail(&health, &cam, &GstError::Init(e.to_string()));
        return;
    }
    let mut counters = Counters { seq: 0, delivered: 0, gate: FpsGate::new(spec.fps_cap) };
    let mut backoff = Duration::from_millis(500);
    loop {
        if stop.load(Ordering::Relaxed) || lane.is_shutdown() {
            break;
        }
        let started = Instant::now();
        let result = run_once(&spec, &lane, &stop, &metrics, &health, &mut counters);
        match result {
            Ok(RunEnd::Stopped) => break,
            Ok(RunEnd::FrameLimit) => {
                set_state(&health, &cam, State::Ended, Some(format!("frame limit {} reached", counters.delivered)));
                break;
            }
            Ok(RunEnd::Eos) if !spec.live => {
                tracing::info!(frames = counters.seq, "end of file");
                set_state(&health, &cam, State::Ended, Some("end of stream".into()));
                break;
            }
            Ok(RunEnd::Eos) => tracing::warn!("live stream ended; reconnecting"),
            Err(e) if !spec.live => {
                fail(&health, &cam, &e);
                break;
            }
            Err(e) => tracing::warn!(error = %e, "live stream failed; reconnecting"),
        }
        // Live: back off, but reset the backoff after a run that worked for a while.
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        metrics.source_restarts.with_label_values(&[&cam]).inc();
        health.update_source(&cam, |s| {
            s.state = State::Reconnecting;
            s.restarts += 1;
            s.detail = Some(format!("retrying in {:.1} s", backoff.as_secs_f64()));
        });
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn set_state(health: &Health, cam: &str, state: State, detail: Option<String>) {
    health.update_source(cam, |s| {
        s.state = state;
        s.detail = detail;
    });
}

fn fail(health: &Health, cam: &str, e: &GstError) {
    tracing::error!(error = %e, "source failed");
    set_state(health, cam, State::Error, Some(e.to_string()));
}

fn build(spec: &SourceSpec) -> Result<(gst::Pipeline, gst_app::AppSink), GstError> {
    let b = |e: gst::glib::BoolError| GstError::Build(e.to_string());
    let pipeline = gst::Pipeline::with_name(&format!("argus-{}", spec.camera_id));
    let src = gst::ElementFactory::make("uridecodebin").property("uri", &spec.uri).build().map_err(b)?;
    let convert = gst::ElementFactory::make("videoconvert").build().map_err(b)?;
    let caps = gst_video::VideoCapsBuilder::new().format(gst_video::VideoFormat::Rgb).build();
    let sink = gst_app::AppSink::builder()
        .caps(&caps)
        // Live: a tiny buffer that drops old frames; files: backpressure through a
        // small queue so decoding never runs far ahead of analysis.
        .max_buffers(if spec.live { 2 } else { 4 })
        .drop(spec.live)
        .sync(spec.realtime && !spec.live)
        .build();
    pipeline.add_many([&src, &convert, sink.upcast_ref()]).map_err(b)?;
    convert.link(&sink).map_err(b)?;

    let convert_weak = convert.downgrade();
    let pipeline_weak = pipeline.downgrade();
    src.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if is_video {
            if let Some(convert) = convert_weak.upgrade() {
                let sinkpad = convert.static_pad("sink").expect("videoconvert has a sink pad");
                if !sinkpad.is_linked() {
                    if let Err(e) = pad.link(&sinkpad) {
                        tracing::error!(error = ?e, "cannot link decoded video");
                    }
                }
            }
        } else if let Some(pipeline) = pipeline_weak.upgrade() {
            // Audio and other streams: consume them so they never block or error.
            if let Ok(fake) = gst::ElementFactory::make("fakesink").property("sync", false).build() {
                let _ = pipeline.add(&fake);
                let _ = fake.sync_state_with_parent();
                if let Some(p) = fake.static_pad("sink") {
                    let _ = pad.link(&p);
                }
            }
        }
    });
    Ok((pipeline, sink))
}

/// How long a live stream may stay silent before it is rebuilt.
const LIVE_STALL: Duration = Duration::from_secs(10);
/// Files: generous, a slow disk or a huge first frame is not a stall.
const FILE_STALL: Duration = Duration::from_secs(60);

fn run_once(
    spec: &SourceSpec,
    lane: &LaneSender,
    stop: &AtomicBool,
    metrics: &Metrics,
    health: &Health,
    counters: &mut Counters,
) -> Result<RunEnd, GstError> {
    let cam = &spec.camera_id;
    let (pipeline, sink) = build(spec)?;
    let pipeline = NullOnDrop(pipeline);
    pipeline.0.set_state(gst::State::Playing).map_err(|e| GstError::Build(format!("cannot start: {e}")))?;
    let bus = pipeline.0.bus().expect("a pipeline has a bus");
    let wall_start = OffsetDateTime::now_utc();
    let mut first_pts: Option<u64> = None;
    let mut last_frame = Instant::now();
    let stall = if spec.live { LIVE_STALL } else { FILE_STALL };
    let received = metrics.frames_received.with_label_values(&[cam]);
    let dropped_queue = metrics.frames_dropped.with_label_values(&[cam, "queue_full"]);
    let dropped_cap = metrics.frames_dropped.with_label_values(&[cam, "fps_cap"]);
    loop {
        if stop.load(Ordering::Relaxed) || lane.is_shutdown() {
            return Ok(RunEnd::Stopped);
        }
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos, gst::MessageType::Warning]) {
            use gst::MessageView;
            match msg.view() {
                MessageView::Error(err) => {
                    return Err(GstError::Stream {
                        element: msg.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                        message: super::redact_text(&err.error().to_string()),
                        debug: err.debug().map(|d| super::redact_text(&d)),
                    });
                }
                MessageView::Warning(w) => tracing::warn!(warning = %super::redact_text(&w.error().to_string()), "GStreamer warning"),
                MessageView::Eos(_) => {
                    // Drain what the appsink still holds before reporting the end.
                    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::ZERO) {
                        if deliver(spec, lane, &sample, wall_start, &mut first_pts, counters, health, &received, &dropped_queue, &dropped_cap)? {
                            return Ok(RunEnd::FrameLimit);
                        }
                    }
                    return Ok(RunEnd::Eos);
                }
                _ => {}
            }
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            Some(sample) => {
                last_frame = Instant::now();
                if deliver(spec, lane, &sample, wall_start, &mut first_pts, counters, health, &received, &dropped_queue, &dropped_cap)? {
                    return Ok(RunEnd::FrameLimit);
                }
            }
            None => {
                if sink.is_eos() {
                    return Ok(RunEnd::Eos);
                }
                if last_frame.elapsed() > stall {
                    return Err(GstError::Stalled(stall));
                }
            }
        }
    }
}

/// Converts one sample into a frame and queues it. Returns true when the frame limit is
/// reached.
#[allow(clippy::too_many_arguments)]
fn deliver(
    spec: &SourceSpec,
    lane: &LaneSender,
    sample: &gst::Sample,
    wall_start: OffsetDateTime,
    first_pts: &mut Option<u64>,
    counters: &mut Counters,
    health: &Health,
    received: &prometheus::IntCounter,
    dropped_queue: &prometheus::IntCounter,
    dropped_cap: &prometheus::IntCounter,
) -> Result<bool, GstError> {
    let seq = counters.seq;
    counters.seq += 1;
    received.inc();
    let buffer = sample.buffer().ok_or_else(|| GstError::Build("sample without buffer".into()))?;
    let pts_ns = buffer.pts().map(|p| p.nseconds());
    let rel_ns = match (pts_ns, *first_pts) {
        (Some(p), Some(f)) => p.saturating_sub(f),
        (Some(p), None) => {
            *first_pts = Some(p);
            0
        }
        _ => (OffsetDateTime::now_utc() - wall_start).whole_nanoseconds().max(0) as u64,
    };
    if !counters.gate.admit(rel_ns) {
        dropped_cap.inc();
        return Ok(false);
    }
    let caps = sample.caps().ok_or_else(|| GstError::Build("sample without caps".into()))?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| GstError::Build(e.to_string()))?;
    let (w, h) = (info.width(), info.height());
    let stride = info.stride()[0] as usize;
    let map = buffer.map_readable().map_err(|e| GstError::Build(e.to_string()))?;
    let row = w as usize * 3;
    let mut pixels = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        let start = y * stride;
        let Some(src) = map.get(start..start + row) else {
            return Err(GstError::Build(format!("buffer of {} bytes too small for {w}x{h} RGB", map.len())));
        };
        pixels.extend_from_slice(src);
    }
    drop(map);
    let image = RgbImage::new(w, h, pixels).map_err(|e| GstError::Build(e.to_string()))?;
    // Files: capture time = when we started + stream time, so replays keep real spacing.
    // Live: the wall clock at arrival.
    let captured_at = if spec.live { OffsetDateTime::now_utc() } else { wall_start + time::Duration::nanoseconds(rel_ns as i64) };
    let frame = Frame { camera_id: spec.camera_id.clone(), seq, pts_ns, captured_at, received: Instant::now(), image: Arc::new(image) };
    match lane.push(frame) {
        Pushed::Queued => {}
        Pushed::EvictedOldest => dropped_queue.inc(),
        Pushed::Closed => return Ok(true),
    }
    counters.delivered += 1;
    health.update_source(&spec.camera_id, |s| {
        s.state = State::Running;
        s.detail = None;
        s.frames_received = counters.seq;
        s.frames_dropped = dropped_queue.get() + dropped_cap.get();
        s.last_frame_at = Some(captured_at);
        s.width = Some(w);
        s.height = Some(h);
    });
    Ok(spec.max_frames.is_some_and(|m| counters.delivered >= m))
}
