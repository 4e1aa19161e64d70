//! A small RTSP server for tests and local trials (gst-rtsp-server on 127.0.0.1).
//!
//! usage: argus-rtsp-testserver [--port N] [--path /cam] [--codec h264|h265|mjpeg]
//!                              [--fps N] [--size WxH] [--file VIDEO]
//!                              [--protocols all|tcp|udp]
//! Prints `READY rtsp://127.0.0.1:PORT/PATH` once it accepts clients (port 0 = any free).
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
    port: u16,
    path: String,
    codec: String,
    fps: u32,
    width: u32,
    height: u32,
    file: Option<String>,
    protocols: Option<rtsp::gst_rtsp::RTSPLowerTrans>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args { port: 8554, path: "/cam".into(), codec: "h264".into(), fps: 15, width: 640, height: 360, file: None, protocols: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
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
    Ok(a)
}

fn launch_line(a: &Args) -> Result<String, String> {
    // x264enc needs I420 input, or it emits 4:4:4 that many decoders cannot handle.
    let raw = match &a.file {
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
    server.set_address("127.0.0.1");
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
    let _source = server.attach(None).map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", a.port))?;
    let port = server.bound_port();
    println!("READY rtsp://127.0.0.1:{port}{}", a.path);
    let _ = std::io::stdout().flush();
    // SIGTERM/SIGINT end the process with their default action; tests rely on that.
    main_loop.run();
    Ok(())
}
