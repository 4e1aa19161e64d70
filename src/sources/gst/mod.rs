//! GStreamer source (`gstreamer` feature): `uridecodebin → videoconvert → appsink(RGB)`.
//! For RTSP, uridecodebin's `rtspsrc` is configured through `source-setup` (transport,
//! jitter-buffer latency, NTP reference timestamps); decodebin picks the best decoder
//! by rank: hardware decoders (NVDEC, VA-API) are ranked above the software ones when
//! their plugins are installed and found a device, else avdec_*/jpegdec. The chosen
//! decoder is reported per camera in `/v1/cameras`.
//!
//! Follows gstreamer-rs's examples: an AppSink built with its builder, the bus polled
//! between pulls, and the pipeline always set back to Null, on every exit path.
//!
//! Live sources never take Argus down: an error, an end of stream (how a vanished TCP
//! server shows itself) or a stall (no frame within `stall_timeout`; a frozen server is
//! otherwise silent for ~27 s) tears the pipeline down and rebuilds it after an
//! exponential backoff (0.5 s → 30 s), reset as soon as frames flow again. Files end at
//! EOS and fail on errors.

pub mod clip;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use time::OffsetDateTime;

use super::probe::{self, ProbeOutcome, ProbeTarget, ProbeTimeouts};
use super::reconnect::{Next, PROBE_INTERVAL, Reconnect, RunEnded};
use super::{FpsGate, SourceSpec};
use crate::model::{FilePosition, Frame, RgbImage, SourcePosition};
use crate::pipeline::hub::{LaneSender, Pushed};
use crate::sources::config::RtspTransport;
use crate::sources::config::StartTime;
use crate::telemetry::health::{Health, SourceState};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::redact::redact_text;

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
    /// Capture times never go backwards per camera.
    last_captured: Option<OffsetDateTime>,
    /// Live cameras: stamps re-anchored when the camera's or this machine's clock
    /// steps, against the monotonic clock since `mono_origin` (kept across rebuilds).
    clock: crate::sources::clock::CaptureClock,
    mono_origin: Instant,
    /// A recording: the file as opened and when its first frame was captured.
    recording: Option<Recording>,
    /// Resuming: frames up to this stream time were processed before (the first run
    /// seeks past it; any frame at or before it is skipped, not counted).
    resume_after_ns: Option<u64>,
}

/// A file camera that is not live: deterministic capture times (`start + pts`), and a
/// position after each frame to resume from.
struct Recording {
    file: crate::model::FileIdentity,
    start: OffsetDateTime,
    /// `start_time = "now"`: `start` is set when the first frame arrives (the wall clock
    /// then, less its stream time), not when the source was built: building and
    /// prerolling take a few hundred ms, which every capture time would carry.
    start_at_first_frame: bool,
}

impl Counters {
    /// Fresh counters, or, for a recording with a checkpoint of this same file, the
    /// counters right after the checkpoint's frame.
    fn new(spec: &SourceSpec) -> Self {
        let recording = spec.recording_path().and_then(|p| match crate::model::FileIdentity::of(&p) {
            Ok(file) => {
                let start = match spec.start_time {
                    StartTime::FileModified => file.modified(),
                    StartTime::Now => OffsetDateTime::now_utc(),
                    StartTime::At(t) => t,
                };
                Some(Recording { file, start, start_at_first_frame: spec.start_time == StartTime::Now })
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the file's size and time; capture times start now");
                None
            }
        });
        let mut c = Self {
            seq: 0,
            delivered: 0,
            gate: FpsGate::new(spec.fps_cap),
            last_captured: None,
            clock: Default::default(),
            mono_origin: Instant::now(),
            recording,
            resume_after_ns: None,
        };
        if let (Some(pos), Some(rec)) = (&spec.resume, &c.recording) {
            if pos.file == rec.file {
                tracing::info!(after_seq = pos.seq, after_s = pos.pts_ns as f64 / 1e9, "resuming the recording after its checkpoint's frame");
                c.seq = pos.seq + 1;
                c.delivered = pos.delivered;
                c.gate = FpsGate::resumed(spec.fps_cap, pos.gate_next_ns);
                c.last_captured = Some(rec.start + time::Duration::nanoseconds(pos.pts_ns as i64));
                c.resume_after_ns = Some(pos.pts_ns);
                if let Some(r) = c.recording.as_mut() {
                    r.start_at_first_frame = false;
                }
            } else {
                tracing::info!(was = ?pos.file, now = ?rec.file, "the checkpoint is of another recording: reading from the beginning");
            }
        }
        c
    }
}

/// Runs the source until it ends, the frame limit is reached, or `stop` is set.
pub fn run(spec: SourceSpec, lane: LaneSender, cx: super::SourceContext) {
    let super::SourceContext { stop, metrics, health, .. } = cx;
    let cam = spec.camera_id.clone();
    let span = tracing::info_span!("source", camera = %cam);
    let _g = span.enter();
    if let Err(e) = gst::init() {
        fail(&health, &cam, &GstError::Init(e.to_string()));
        return;
    }
    prefer_hardware_decoders();
    let mut counters = Counters::new(&spec);
    let mut live = LiveRetry::new(&spec, &stop, &lane, &metrics, &health);
    loop {
        if live.stopped() {
            break;
        }
        health.update_source(&cam, |s| {
            s.state = SourceState::Connecting;
            s.detail = None;
            s.next_attempt_at = None;
        });
        let delivered_before = counters.delivered;
        let result = run_once(&spec, &lane, &stop, &metrics, &health, &mut counters, &mut live.transport);
        let flowed = counters.delivered > delivered_before;
        if !flowed {
            live.transport.nothing_flowed();
        }
        let (ended, why) = match &result {
            Ok(_) => (RunEnded::Eos, "the server ended the stream".to_string()),
            Err(e @ GstError::Stalled(_)) => (RunEnded::Stall, e.to_string()),
            Err(e) => (RunEnded::Error, with_hint(e, &spec)),
        };
        match result {
            Ok(RunEnd::Stopped) => break,
            Ok(RunEnd::FrameLimit) => {
                set_state(&health, &cam, SourceState::Ended, Some(format!("frame limit {} reached", counters.delivered)));
                lane.end();
                break;
            }
            Ok(RunEnd::Eos) if !spec.live => {
                tracing::info!(frames = counters.seq, "end of file");
                set_state(&health, &cam, SourceState::Ended, Some("end of stream".into()));
                lane.end();
                break;
            }
            Ok(RunEnd::Eos) => {
                tracing::warn!("live stream ended (server gone?); reconnecting");
                note_error(&health, &cam, "end of stream from a live source");
            }
            Err(e) if !spec.live => {
                fail(&health, &cam, &e);
                lane.end();
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "live stream failed; reconnecting");
                if matches!(e, GstError::Stalled(_)) {
                    set_state(&health, &cam, SourceState::Stalled, Some(e.to_string()));
                }
                note_error(&health, &cam, &e.to_string());
            }
        }
        metrics.source_restarts.with_label_values(&[&cam, ended.label()]).inc();
        health.update_source(&cam, |s| {
            s.restarts += 1;
            s.failure_reason = Some(redact_text(&why));
        });
        live.wait_before_rebuild(ended, flowed);
    }
}

/// A live source between pipeline runs: probes its server and waits as [`Reconnect`]
/// decides, reporting each step in `/v1/cameras` and the metrics.
struct LiveRetry<'a> {
    cam: Arc<str>,
    stop: &'a AtomicBool,
    lane: &'a LaneSender,
    health: &'a Health,
    probes: prometheus::IntCounterVec,
    target: Option<ProbeTarget>,
    policy: Reconnect,
    transport: TransportMemory,
}

impl<'a> LiveRetry<'a> {
    fn new(spec: &SourceSpec, stop: &'a AtomicBool, lane: &'a LaneSender, metrics: &Metrics, health: &'a Health) -> Self {
        let target = if spec.live { ProbeTarget::of(&spec.uri) } else { None };
        let transport = TransportMemory::new(spec.rtsp_transport);
        Self { cam: spec.camera_id.clone(), stop, lane, health, probes: metrics.source_probes.clone(), target, policy: Reconnect::default(), transport }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.lane.is_shutdown()
    }

    /// Sleeps until `until` or a stop, in short steps; false when stopped.
    fn sleep_until(&self, until: Instant) -> bool {
        while Instant::now() < until {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        !self.stopped()
    }

    fn probe(&self, target: &ProbeTarget) -> ProbeOutcome {
        let outcome = probe::probe(target, ProbeTimeouts::default());
        self.probes.with_label_values(&[&self.cam, outcome.label()]).inc();
        self.health.update_source(&self.cam, |s| s.probes += 1);
        outcome
    }

    fn announce_next(&self, state: SourceState, after: Duration, what: &str) {
        let at = OffsetDateTime::now_utc() + after;
        self.health.update_source(&self.cam, |s| {
            s.state = state;
            s.next_attempt_at = Some(at);
            s.detail = Some(format!("{what} in {:.1} s", after.as_secs_f64()));
        });
    }

    /// After a failed run: probe the server, then back off or wait for it to answer.
    fn wait_before_rebuild(&mut self, ended: RunEnded, flowed: bool) {
        let Some(target) = self.target.clone() else {
            if let Next::Rebuild { after } = self.policy.after_run(ended, flowed, None) {
                self.announce_next(SourceState::BackingOff, after, "reconnecting");
                self.sleep_until(Instant::now() + after);
            }
            return;
        };
        let found = self.probe(&target);
        match self.policy.after_run(ended, flowed, Some(&found)) {
            Next::Rebuild { after } => {
                self.announce_next(SourceState::BackingOff, after, "rebuilding (the server answers)");
                self.sleep_until(Instant::now() + after);
            }
            Next::WaitForServer => self.wait_for_server(&target, found),
        }
    }

    /// Probes every [`PROBE_INTERVAL`] until the server answers (or a stop).
    fn wait_for_server(&mut self, target: &ProbeTarget, mut found: ProbeOutcome) {
        let since = Instant::now();
        tracing::warn!(server = %found.describe(target), every_s = PROBE_INTERVAL.as_secs_f64(), "camera's server is not answering; probing until it does");
        loop {
            let why = found.describe(target);
            self.health.update_source(&self.cam, |s| s.failure_reason = Some(why));
            self.announce_next(SourceState::Offline, PROBE_INTERVAL, "probing the server");
            if !self.sleep_until(Instant::now() + PROBE_INTERVAL) {
                return;
            }
            let now = self.probe(target);
            if now.is_ready() {
                tracing::info!(down_s = format!("{:.1}", since.elapsed().as_secs_f64()), "camera's server answers again; rebuilding now");
                self.policy.server_back();
                return;
            }
            if now != found {
                tracing::info!(server = %now.describe(target), "camera's server still not answering");
            }
            found = now;
        }
    }
}

/// `rtsp_transport = "auto"`: the transport the last session that delivered frames
/// used, tried alone on the next build, so that a reconnect does not first spend time on
/// a transport the server refuses or whose packets never arrive. Forgotten when a build
/// with it delivers nothing (the network changed): the next build offers all again.
struct TransportMemory {
    configured: RtspTransport,
    learned: Option<RtspTransport>,
}

impl TransportMemory {
    fn new(configured: RtspTransport) -> Self {
        Self { configured, learned: None }
    }

    /// What the next build asks rtspsrc for.
    fn for_next_build(&self) -> RtspTransport {
        match (self.configured, self.learned) {
            (RtspTransport::Auto, Some(t)) => t,
            (c, _) => c,
        }
    }

    /// The run's first frame came over `t`.
    fn flowing(&mut self, t: RtspTransport) {
        if self.configured == RtspTransport::Auto {
            self.learned = Some(t);
        }
    }

    /// A run ended without a frame.
    fn nothing_flowed(&mut self) {
        self.learned = None;
    }
}

/// Hardware video decoders, best first. Their plugins register them only when a
/// device was found, so a present factory is a usable one.
const HARDWARE_DECODERS: &[&str] =
    &["nvh264dec", "nvh265dec", "nvjpegdec", "vah264dec", "vah265dec", "vajpegdec", "vaapih264dec", "vaapih265dec", "vaapijpegdec"];

/// Ranks the installed hardware decoders above every software one, once per process,
/// so decodebin picks them (GStreamer 1.22 ranks some VA decoders below avdec_*).
/// Left alone when the user set `GST_PLUGIN_FEATURE_RANK`, GStreamer's own override
/// (e.g. `GST_PLUGIN_FEATURE_RANK=nvh264dec:NONE` to force software decoding).
fn prefer_hardware_decoders() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("GST_PLUGIN_FEATURE_RANK").is_some() {
            return;
        }
        let registry = gst::Registry::get();
        for (i, name) in HARDWARE_DECODERS.iter().enumerate() {
            if let Some(f) = registry.lookup_feature(name) {
                f.set_rank(gst::Rank::PRIMARY + 100 - i as i32);
                tracing::info!(decoder = name, "hardware decoder available; preferred");
            }
        }
    });
}

/// Whether a factory decodes pictures (by its klass: `Codec/Decoder/Video`, or
/// `Codec/Decoder/Image` for MJPEG's jpegdec).
fn is_video_decoder(element: &gst::Element) -> bool {
    element.factory().is_some_and(|f| {
        let klass = f.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or_default();
        klass.contains("Decoder") && (klass.contains("Video") || klass.contains("Image"))
    })
}

/// An error in words, with the fix when the cause is a known one GStreamer words badly
/// (a server refusing the transport shows as "missing a plug-in").
fn with_hint(e: &GstError, spec: &SourceSpec) -> String {
    let text = e.to_string();
    let refused_setup = matches!(e, GstError::Stream { debug: Some(d), .. } if d.contains("setup_streams"));
    match spec.rtsp_transport {
        RtspTransport::Tcp | RtspTransport::Udp if refused_setup => {
            let t = if spec.rtsp_transport == RtspTransport::Tcp { "tcp" } else { "udp" };
            format!("the server refused to set up the stream over {t} (e.g. VLC serves UDP only): try rtsp_transport = \"auto\" ({text})")
        }
        _ => text,
    }
}

fn note_error(health: &Health, cam: &str, e: &str) {
    health.update_source(cam, |s| s.last_error = Some(redact_text(e)));
}

fn set_state(health: &Health, cam: &str, state: SourceState, detail: Option<String>) {
    health.update_source(cam, |s| {
        s.state = state;
        s.detail = detail;
    });
}

fn fail(health: &Health, cam: &str, e: &GstError) {
    tracing::error!(error = %e, "source failed");
    set_state(health, cam, SourceState::Failed, Some(e.to_string()));
    note_error(health, cam, &e.to_string());
}

fn build(spec: &SourceSpec, health: &Arc<Health>, transport: RtspTransport) -> Result<(gst::Pipeline, gst_app::AppSink), GstError> {
    let b = |e: gst::glib::BoolError| GstError::Build(e.to_string());
    let pipeline = gst::Pipeline::with_name(&format!("argus-{}", spec.camera_id));
    let src = gst::ElementFactory::make("uridecodebin").property("uri", &spec.uri).build().map_err(b)?;
    let convert = gst::ElementFactory::make("videoconvert").build().map_err(b)?;
    let caps = gst_video::VideoCapsBuilder::new().format(gst_video::VideoFormat::Rgb).build();
    let sink = gst_app::AppSink::builder()
        .caps(&caps)
        // A tiny queue, never dropping here: this thread pulls at once and the camera's
        // hub lane evicts (and counts) old frames for live sources, while files get
        // backpressure so decoding never runs far ahead of analysis. Two frames: the
        // lane is the queue; more here only held 1.3 MB per 768x576 frame per camera.
        .max_buffers(2)
        .drop(false)
        // `realtime` paces a file at its own frame rate, `live` or not (a recording
        // played like a camera); streams are paced by the sender.
        .sync(spec.realtime && spec.kind == crate::sources::SourceKind::File)
        .build();
    if spec.uri.starts_with("rtsp") {
        let latency = spec.rtsp_latency_ms;
        src.connect("source-setup", false, move |args| {
            if let Some(source) = args.get(1).and_then(|v| v.get::<gst::Element>().ok()) {
                configure_rtspsrc(&source, transport, latency);
            }
            None
        });
    }
    let (health, cam) = (health.clone(), spec.camera_id.clone());
    pipeline.connect_deep_element_added(move |_, _, element| {
        if is_video_decoder(element) {
            let name = element.factory().map(|f| f.name().to_string()).unwrap_or_default();
            tracing::info!(decoder = %name, "video decoder");
            health.update_source(&cam, |s| s.decoder = Some(name));
        }
    });
    pipeline.add_many([&src, &convert, sink.upcast_ref()]).map_err(b)?;
    convert.link(&sink).map_err(b)?;

    let convert_weak = convert.downgrade();
    let pipeline_weak = pipeline.downgrade();
    src.connect_pad_added(move |_, pad| {
        let is_video = pad.current_caps().and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/"))).unwrap_or(false);
        if is_video {
            if let Some(convert) = convert_weak.upgrade() {
                let sinkpad = convert.static_pad("sink").expect("videoconvert has a sink pad");
                if !sinkpad.is_linked()
                    && let Err(e) = pad.link(&sinkpad)
                {
                    tracing::error!(error = ?e, "cannot link decoded video");
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

fn configure_rtspsrc(source: &gst::Element, transport: RtspTransport, latency_ms: u32) {
    if source.find_property("protocols").is_none() {
        return; // not an rtspsrc
    }
    let protocols = match transport {
        RtspTransport::Tcp => "tcp",
        RtspTransport::Udp => "udp",
        RtspTransport::Auto => "udp+udp-mcast+tcp",
    };
    source.set_property_from_str("protocols", protocols);
    if transport == RtspTransport::Auto && source.find_property("timeout").is_some() {
        // No UDP packet for this long → retry over TCP (default 5 s, which the stall
        // watchdog would cut short).
        source.set_property("timeout", UDP_FALLBACK.as_micros() as u64);
    }
    source.set_property("latency", latency_ms);
    // RTCP sender reports → NTP capture times on each buffer, when the camera sends them.
    if source.find_property("add-reference-timestamp-meta").is_some() {
        source.set_property("add-reference-timestamp-meta", true);
    }
    // Fail a dead TCP connection well before the 27 s default silence.
    if source.find_property("tcp-timeout").is_some() {
        source.set_property("tcp-timeout", 5_000_000u64);
    }
}

/// `auto`: how long rtspsrc waits for UDP packets before it retries over TCP; the
/// first frame of such a run gets this much longer than `stall_timeout`.
const UDP_FALLBACK: Duration = Duration::from_secs(2);

/// Which transport a playing rtspsrc uses: UDP sessions have `udpsrc` children, TCP
/// (interleaved) ones none. `None` when the pipeline has no rtspsrc.
fn transport_in_use(pipeline: &gst::Pipeline) -> Option<RtspTransport> {
    let is = |e: &gst::Element, name: &str| e.factory().is_some_and(|f| f.name() == name);
    let rtspsrc = pipeline.iterate_recurse().into_iter().flatten().find(|e| is(e, "rtspsrc"))?;
    let bin = rtspsrc.downcast::<gst::Bin>().ok()?;
    let udp = bin.iterate_recurse().into_iter().flatten().any(|e| is(&e, "udpsrc"));
    Some(if udp { RtspTransport::Udp } else { RtspTransport::Tcp })
}

/// Seconds between 1900-01-01 (NTP epoch) and 1970-01-01 (Unix epoch).
const NTP_UNIX_OFFSET_S: i64 = 2_208_988_800;

/// The NTP wall-clock capture time rtspsrc attached to a buffer, if any.
fn ntp_capture_time(buffer: &gst::BufferRef) -> Option<OffsetDateTime> {
    for meta in buffer.iter_meta::<gst::ReferenceTimestampMeta>() {
        let is_ntp = meta.reference().structure(0).is_some_and(|s| s.name() == "timestamp/x-ntp");
        if is_ntp {
            let ns = meta.timestamp().nseconds() as i128 - NTP_UNIX_OFFSET_S as i128 * 1_000_000_000;
            return OffsetDateTime::from_unix_timestamp_nanos(ns).ok();
        }
    }
    None
}

fn run_once(
    spec: &SourceSpec,
    lane: &LaneSender,
    stop: &AtomicBool,
    metrics: &Metrics,
    health: &Arc<Health>,
    counters: &mut Counters,
    transport: &mut TransportMemory,
) -> Result<RunEnd, GstError> {
    let cam = &spec.camera_id;
    let asked = transport.for_next_build();
    if counters.recording.is_none() {
        // A live stream's time restarts at each run (from its first frame): a gate still
        // due at the last run's stream time would drop every frame for as long as that
        // run lasted.
        counters.gate = FpsGate::new(spec.fps_cap);
    }
    let (pipeline, sink) = build(spec, health, asked)?;
    let pipeline = NullOnDrop(pipeline);
    if let Some(after) = counters.resume_after_ns {
        seek_past(&pipeline.0, after);
    }
    pipeline.0.set_state(gst::State::Playing).map_err(|e| GstError::Build(format!("cannot start: {e}")))?;
    let bus = pipeline.0.bus().expect("a pipeline has a bus");
    let mut run = OneRun {
        spec,
        lane,
        health,
        wall_start: OffsetDateTime::now_utc(),
        first_pts: None,
        received: metrics.frames_received.with_label_values(&[cam]),
        dropped_queue: metrics.frames_dropped.with_label_values(&[cam, "queue_full"]),
        dropped_cap: metrics.frames_dropped.with_label_values(&[cam, "fps_cap"]),
        clock_jumps: metrics.source_clock_jumps.clone(),
    };
    let mut last_frame = Instant::now();
    let stall = spec.stall_timeout;
    // Until the first frame: connecting, and for `auto` perhaps a UDP try first.
    let mut deadline = stall + if asked == RtspTransport::Auto { UDP_FALLBACK } else { Duration::ZERO };
    let mut first = true;
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
                        message: redact_text(&err.error().to_string()),
                        debug: err.debug().map(|d| redact_text(&d)),
                    });
                }
                MessageView::Warning(w) => tracing::warn!(warning = %redact_text(&w.error().to_string()), "GStreamer warning"),
                MessageView::Eos(_) => {
                    // Drain what the appsink still holds before reporting the end.
                    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::ZERO) {
                        if run.deliver(&sample, counters)? {
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
                if first {
                    first = false;
                    deadline = stall;
                    if let Some(t) = transport_in_use(&pipeline.0) {
                        transport.flowing(t);
                        let name = if t == RtspTransport::Udp { "udp" } else { "tcp" };
                        tracing::info!(transport = name, "streaming");
                        health.update_source(cam, |s| s.transport = Some(name));
                    }
                }
                if run.deliver(&sample, counters)? {
                    return Ok(RunEnd::FrameLimit);
                }
            }
            None => {
                if sink.is_eos() {
                    return Ok(RunEnd::Eos);
                }
                if last_frame.elapsed() > deadline {
                    return Err(GstError::Stalled(deadline));
                }
            }
        }
    }
}

/// Prerolls the pipeline and seeks (accurately) to the frame at `after_ns`, so a resumed
/// recording does not decode what it already analysed. When the container cannot seek,
/// the frames before are decoded and skipped instead (`deliver`).
fn seek_past(pipeline: &gst::Pipeline, after_ns: u64) {
    let prerolled = pipeline.set_state(gst::State::Paused).is_ok() && pipeline.state(gst::ClockTime::from_seconds(10)).0.is_ok();
    // To the frame itself, not just past it: an accurate seek clips the first buffer to
    // the target, so a target inside frame `after`'s duration would hand that frame back
    // with a later time stamp, as if it were new. At `after` it keeps its own time and
    // is skipped in `deliver`.
    let target = gst::ClockTime::from_nseconds(after_ns);
    match prerolled.then(|| pipeline.seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)) {
        Some(Ok(())) => tracing::debug!(to_s = after_ns as f64 / 1e9, "seeked"),
        _ => tracing::warn!(to_s = after_ns as f64 / 1e9, "cannot seek this file: decoding from the start and skipping what was analysed"),
    }
}

/// One pipeline's run of a source: where its frames go and how they are counted.
struct OneRun<'a> {
    spec: &'a SourceSpec,
    lane: &'a LaneSender,
    health: &'a Health,
    /// Live sources without time stamps: stream time is the wall clock since this.
    wall_start: OffsetDateTime,
    first_pts: Option<u64>,
    received: prometheus::IntCounter,
    dropped_queue: prometheus::IntCounter,
    dropped_cap: prometheus::IntCounter,
    clock_jumps: prometheus::IntCounterVec,
}

impl OneRun<'_> {
    /// Turns one sample into a frame in the camera's lane; true once the frame limit is
    /// reached or the lane closed.
    fn deliver(&mut self, sample: &gst::Sample, counters: &mut Counters) -> Result<bool, GstError> {
        let OneRun { spec, lane, health, wall_start, first_pts, received, dropped_queue, dropped_cap, clock_jumps } = self;
        let (spec, lane, health, wall_start) = (*spec, *lane, *health, *wall_start);
        let buffer = sample.buffer().ok_or_else(|| GstError::Build("sample without buffer".into()))?;
        let pts_ns = buffer.pts().map(|p| p.nseconds());
        if let Some(after) = counters.resume_after_ns {
            if pts_ns.is_some_and(|p| p <= after) {
                return Ok(false); // analysed before the restart (no seek, or a keyframe before)
            }
            counters.resume_after_ns = None;
        }
        let seq = counters.seq;
        counters.seq += 1;
        received.inc();
        // Stream time: a recording's own time stamps (from its beginning, so a resumed
        // run continues the same clock); a live stream's from its first frame.
        let rel_ns = match (pts_ns, *first_pts) {
            (Some(p), _) if counters.recording.is_some() => p,
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
        crate::model::ImageLimits::pixels(spec.max_pixels).check(w, h).map_err(|e| {
            GstError::Build(format!("the camera sends frames too large to analyse: {e}; lower its resolution or raise limits.max_frame_pixels"))
        })?;
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
        // Recordings: capture time = the recording's start (`start_time`) + stream time:
        // the same frame gets the same time on every run, so re-processing a file yields
        // the same event ids. Live: the camera's NTP time from RTCP sender reports when it
        // sends them, else the wall clock at arrival. Never backwards per camera.
        let (mut captured_at, time_source) = if spec.live {
            match ntp_capture_time(buffer) {
                Some(t) => (t, "ntp"),
                None => (OffsetDateTime::now_utc(), "arrival"),
            }
        } else {
            if let Some(r) = counters.recording.as_mut().filter(|r| r.start_at_first_frame) {
                r.start = OffsetDateTime::now_utc() - time::Duration::nanoseconds(rel_ns as i64);
                r.start_at_first_frame = false;
            }
            let start = counters.recording.as_ref().map_or(wall_start, |r| r.start);
            (start + time::Duration::nanoseconds(rel_ns as i64), "stream")
        };
        if spec.live {
            let (at, jump) = counters.clock.stamp(captured_at, counters.mono_origin.elapsed(), time_source);
            if let Some(j) = jump {
                clock_jumps.with_label_values(&[&spec.camera_id, j.direction.as_str()]).inc();
                let what = format!("{} by {:.1} s ({time_source} time) at frame {seq}", j.direction.as_str(), j.by_s);
                tracing::warn!(camera = %spec.camera_id, jump = %what, "the capture clock stepped; stamps re-anchored to real pace");
                health.update_source(&spec.camera_id, |s| {
                    s.clock_jumps += 1;
                    s.last_clock_jump = Some(what);
                });
            }
            captured_at = at;
        } else if let Some(last) = counters.last_captured
            && captured_at <= last
        {
            captured_at = last + time::Duration::microseconds(1);
        }
        counters.last_captured = Some(captured_at);
        let frame = Frame {
            camera_id: spec.camera_id.clone(),
            seq,
            pts_ns,
            captured_at,
            time_source,
            received: Instant::now(),
            image: Arc::new(image),
            ack: None,
            telemetry: None,
            position: match (&counters.recording, pts_ns) {
                (Some(r), Some(pts_ns)) => {
                    let (file, delivered, gate_next_ns) = (r.file.clone(), counters.delivered + 1, counters.gate.next_due());
                    Some(SourcePosition::File(FilePosition { file, pts_ns, seq, delivered, gate_next_ns }))
                }
                _ => None,
            },
        };
        match lane.push(frame) {
            Pushed::Queued => {}
            Pushed::EvictedOldest => dropped_queue.inc(),
            Pushed::Closed => return Ok(true),
        }
        counters.delivered += 1;
        health.update_source(&spec.camera_id, |s| {
            s.state = SourceState::Streaming;
            s.detail = None;
            s.time_source = Some(time_source);
            s.rate_in.tick();
            s.frames_received = counters.seq;
            s.drops.insert("queue_full", dropped_queue.get());
            s.drops.insert("fps_cap", dropped_cap.get());
            s.frames_dropped = s.drops.values().sum();
            s.last_frame_at = Some(captured_at);
            s.width = Some(w);
            s.height = Some(h);
        });
        Ok(spec.max_frames.is_some_and(|m| counters.delivered >= m))
    }
}
