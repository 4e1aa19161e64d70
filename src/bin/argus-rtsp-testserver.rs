//! A small RTSP server for tests and local trials (gst-rtsp-server on 127.0.0.1).
//!
//! usage: argus-rtsp-testserver [--address IP] [--port N] [--path /cam]
//!                              [--codec h264|h265|mjpeg] [--fps N] [--size WxH]
//!                              [--file VIDEO [--loop]] [--protocols all|tcp|udp]
//! Prints `READY rtsp://ADDRESS:PORT/PATH` once it accepts clients (port 0 = any free;
//! address 127.0.0.1 unless `--address`, e.g. 0.0.0.0 in a container). `--loop` replays
//! the file endlessly as a live camera: its frames are decoded once, kept as JPEGs in
//! memory (~25 MB for the demo video at 768x576) and streamed with a clock that never
//! jumps back, so a client sees one continuous camera rather than an ended file.
//! Runs until killed (SIGTERM/SIGINT). Lines on stdin: `pause` stops the media while the
//! server keeps answering RTSP (a camera whose encoder hangs), `resume` restarts it, and
//! `clock SECONDS` shifts the camera's clock — the NTP time in its RTCP sender reports,
//! which receivers use as capture time — by SECONDS from real time (`clock -60` is a
//! camera whose clock stepped back a minute, `clock 0` puts it back in line).

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

struct Args {
    address: String,
    port: u16,
    path: String,
    codec: String,
    fps: u32,
    width: u32,
    height: u32,
    file: Option<String>,
    looped: bool,
    protocols: Option<rtsp::gst_rtsp::RTSPLowerTrans>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        address: "127.0.0.1".into(),
        port: 8554,
        path: "/cam".into(),
        codec: "h264".into(),
        fps: 15,
        width: 640,
        height: 360,
        file: None,
        looped: false,
        protocols: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--address" => a.address = val()?,
            "--loop" => a.looped = true,
            "--port" => a.port = val()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--path" => a.path = val()?,
            "--codec" => a.codec = val()?,
            "--fps" => a.fps = val()?.parse().map_err(|e| format!("--fps: {e}"))?,
            "--size" => {
                let v = val()?;
                let (w, h) = v.split_once('x').ok_or("--size: WxH")?;
                a.width = w.parse().map_err(|e| format!("--size: {e}"))?;
                a.height = h.parse().map_err(|e| format!("--size: {e}"))?;
            }
            "--file" => a.file = Some(val()?),
            "--protocols" => {
                use rtsp::gst_rtsp::RTSPLowerTrans as T;
                a.protocols = match val()?.as_str() {
                    "all" => None,
                    "tcp" => Some(T::TCP),
                    "udp" => Some(T::UDP | T::UDP_MCAST),
                    other => return Err(format!("--protocols {other}: all, tcp or udp")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !a.path.starts_with('/') {
        a.path.insert(0, '/');
    }
    if a.looped && a.file.is_none() {
        return Err("--loop needs --file VIDEO (the test pattern never ends anyway)".into());
    }
    Ok(a)
}

fn launch_line(a: &Args) -> Result<String, String> {
    // x264enc needs I420 input, or it emits 4:4:4 that many decoders cannot handle.
    let raw = match &a.file {
        Some(_) if a.looped => {
            format!("appsrc name=loopsrc format=time caps=image/jpeg,width={},height={},framerate={}/1 ! jpegdec ! videoconvert", a.width, a.height, a.fps)
        }
        Some(f) => format!("filesrc location=\"{f}\" ! decodebin ! videoconvert ! videoscale ! videorate"),
        None => "videotestsrc is-live=true pattern=ball".to_string(),
    };
    let caps = format!("video/x-raw,format=I420,width={},height={},framerate={}/1", a.width, a.height, a.fps);
    let enc = match a.codec.as_str() {
        "h264" => format!("x264enc tune=zerolatency speed-preset=ultrafast key-int-max={} ! rtph264pay name=pay0 pt=96 config-interval=1", a.fps),
        "h265" => format!("x265enc tune=zerolatency speed-preset=ultrafast key-int-max={} ! rtph265pay name=pay0 pt=96 config-interval=1", a.fps),
        "mjpeg" => "jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26".to_string(),
        other => return Err(format!("unknown codec {other} (h264, h265, mjpeg)")),
    };
    Ok(format!("( {raw} ! {caps} ! {enc} )"))
}

/// Decodes the whole file once, scaled and paced to the served size and rate, into JPEG
/// buffers (an encoded frame is ~30 KB where a raw one is ~650 KB at 768x576).
fn decode_to_jpegs(file: &str, a: &Args) -> Result<Vec<gst::Buffer>, String> {
    use gstreamer_app as gst_app;
    let line = format!(
        "filesrc location=\"{file}\" ! decodebin ! videoconvert ! videoscale ! videorate \
         ! video/x-raw,format=I420,width={},height={},framerate={}/1 ! jpegenc quality=90 \
         ! appsink name=sink sync=false",
        a.width, a.height, a.fps
    );
    let pipeline = gst::parse::launch(&line).map_err(|e| format!("--loop: {e}"))?.downcast::<gst::Pipeline>().map_err(|_| "--loop: not a pipeline")?;
    let sink = pipeline.by_name("sink").and_then(|s| s.downcast::<gst_app::AppSink>().ok()).ok_or("--loop: no appsink")?;
    pipeline.set_state(gst::State::Playing).map_err(|e| format!("--loop: cannot play {file}: {e}"))?;
    let mut frames = Vec::new();
    let result = loop {
        match sink.pull_sample() {
            Ok(sample) => match sample.buffer_owned() {
                Some(b) => frames.push(b),
                None => break Err("--loop: a sample without a buffer".to_string()),
            },
            // The end of the stream, or an error the bus names.
            Err(_) => {
                let bus = pipeline.bus().ok_or("--loop: no bus")?;
                break match bus.pop_filtered(&[gst::MessageType::Error]) {
                    Some(m) => match m.view() {
                        gst::MessageView::Error(e) => Err(format!("--loop: cannot decode {file}: {}", e.error())),
                        _ => Ok(()),
                    },
                    None => Ok(()),
                };
            }
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    if frames.is_empty() {
        return Err(format!("--loop: {file} has no video frames"));
    }
    Ok(frames)
}

/// Feeds one media's `loopsrc` with the decoded frames, round and round. Timestamps keep
/// counting up across rounds, so receivers see a camera, not a seek back to the start.
fn feed_in_a_loop(media: &rtsp::RTSPMedia, frames: Arc<Vec<gst::Buffer>>, fps: u32) {
    use gstreamer_app as gst_app;
    let Some(src) = media
        .element()
        .downcast_ref::<gst::Bin>()
        .and_then(|b| b.by_name_recurse_up("loopsrc").or_else(|| b.by_name("loopsrc")))
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
    else {
        eprintln!("argus-rtsp-testserver: no loopsrc in the media");
        return;
    };
    let frame_ns = 1_000_000_000 / u64::from(fps.max(1));
    let mut next = 0u64;
    src.set_callbacks(
        gst_app::AppSrcCallbacks::builder()
            .need_data(move |src, _| {
                let mut buffer = frames[(next % frames.len() as u64) as usize].copy();
                {
                    let b = buffer.get_mut().expect("a fresh copy is writable");
                    b.set_pts(gst::ClockTime::from_nseconds(next * frame_ns));
                    b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
                }
                next += 1;
                let _ = src.push_buffer(buffer);
            })
            .build(),
    );
}

/// RTCP packet type of a sender report (RFC 3550 §6.4.1).
const RTCP_SR: u8 = 200;

/// Adds `shift` seconds to the NTP time of the sender report that opens every RTCP
/// compound packet rtpbin sends from `bin` (over UDP and interleaved TCP alike: both leave
/// through its `send_rtcp_src_N` pads).
fn shift_sender_reports(bin: &gst::Bin, shift: &Arc<AtomicI64>) {
    let mut rtpbins = Vec::new();
    let mut it = bin.iterate_recurse();
    while let Ok(Some(e)) = it.next() {
        if e.factory().is_some_and(|f| f.name() == "rtpbin") {
            rtpbins.push(e);
        }
    }
    for rtpbin in rtpbins {
        for pad in rtpbin.src_pads().into_iter().filter(|p| p.name().starts_with("send_rtcp_src")) {
            let shift = shift.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let by = shift.load(Ordering::Relaxed);
                if by != 0
                    && let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut()
                    && let Ok(mut map) = buffer.make_mut().map_writable()
                    && map.len() >= 16
                    && map[1] == RTCP_SR
                {
                    // Bytes 8..12: NTP seconds since 1900, big-endian (wraps in 2036).
                    let secs = u32::from_be_bytes([map[8], map[9], map[10], map[11]]);
                    map[8..12].copy_from_slice(&(secs as i64 + by).rem_euclid(1 << 32).to_be_bytes()[4..]);
                }
                gst::PadProbeReturn::Ok
            });
        }
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("argus-rtsp-testserver: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("argus-rtsp-testserver: {e}");
        std::process::exit(1);
    }
}

fn run(a: Args) -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    let main_loop = glib::MainLoop::new(None, false);
    let server = rtsp::RTSPServer::new();
    server.set_address(&a.address);
    server.set_service(&a.port.to_string());
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(&launch_line(&a)?);
    factory.set_shared(true);
    if let Some(p) = a.protocols {
        factory.set_protocols(p);
    }
    // `pause` on stdin: the payloader's buffers are dropped, RTSP still answers.
    let paused = Arc::new(AtomicBool::new(false));
    let flag = paused.clone();
    factory.connect_media_configure(move |_, media| {
        let Some(pay) = media.element().downcast_ref::<gst::Bin>().and_then(|b| b.by_name_recurse_up("pay0").or_else(|| b.by_name("pay0"))) else {
            return;
        };
        if let Some(pad) = pay.static_pad("src") {
            let flag = flag.clone();
            pad.add_probe(
                gst::PadProbeType::BUFFER,
                move |_, _| if flag.load(Ordering::Relaxed) { gst::PadProbeReturn::Drop } else { gst::PadProbeReturn::Ok },
            );
        }
    });
    if a.looped
        && let Some(file) = &a.file
    {
        let frames = Arc::new(decode_to_jpegs(file, &a)?);
        eprintln!("argus-rtsp-testserver: {} frames of {file} in memory, replayed in a loop", frames.len());
        factory.connect_media_configure(move |_, media| feed_in_a_loop(media, frames.clone(), a.fps));
    }
    // `clock S`: every sender report leaving the session's rtpbin carries NTP time + S.
    let clock_shift = Arc::new(AtomicI64::new(0));
    let shift = clock_shift.clone();
    factory.connect_media_configure(move |_, media| {
        let shift = shift.clone();
        media.connect_prepared(move |media| {
            for i in 0..media.n_streams() {
                if let Some(bin) = media.stream(i).and_then(|s| s.joined_bin()) {
                    shift_sender_reports(&bin, &shift);
                }
            }
        });
    });
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            let line = line.trim();
            if let Some(s) = line.strip_prefix("clock ") {
                match s.trim().parse::<i64>() {
                    Ok(s) => {
                        clock_shift.store(s, Ordering::Relaxed);
                        eprintln!("argus-rtsp-testserver: camera clock at real time {s:+} s");
                    }
                    Err(e) => eprintln!("argus-rtsp-testserver: clock {s:?}: {e} (whole seconds, e.g. clock -60)"),
                }
                continue;
            }
            match line {
                "pause" => paused.store(true, Ordering::Relaxed),
                "resume" => paused.store(false, Ordering::Relaxed),
                other => eprintln!("argus-rtsp-testserver: unknown command {other:?} (pause, resume, clock SECONDS)"),
            }
            eprintln!("argus-rtsp-testserver: media {}", if paused.load(Ordering::Relaxed) { "paused" } else { "flowing" });
        }
    });
    server.mount_points().ok_or("no mount points")?.add_factory(&a.path, factory);
    let _source = server.attach(None).map_err(|e| format!("cannot listen on {}:{}: {e}", a.address, a.port))?;
    let port = server.bound_port();
    println!("READY rtsp://{}:{port}{}", a.address, a.path);
    let _ = std::io::stdout().flush();
    // SIGTERM/SIGINT end the process with their default action; tests rely on that.
    main_loop.run();
    Ok(())
}
