//! A camera that comes back is analysed again within 3 s of its server answering, however
//! long it was gone: outages of 2 s, 20 s and 90 s against two RTSP implementations —
//! Argus's GStreamer test server (gst-rtsp-server; TCP and UDP) and VLC (its own RTSP
//! server; RTP over UDP only, it refuses TCP) — plus a server that answers but sends no
//! media, a TCP-only server under `rtsp_transport = "auto"`, a refusing port and a host
//! without a route. Each case prints its measured times.
#![cfg(all(feature = "gstreamer", feature = "onnx"))]

#[path = "common/camera_api.rs"]
mod camera_api;
#[path = "common/logs.rs"]
mod logs;
#[path = "common/member.rs"]
mod member;
#[path = "common/rtsp_server.rs"]
mod rtsp_server;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use camera_api::{camera, frames_received, get_text, threads_of, wait_for};
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The longest a returning camera may take to stream again, from its server answering.
const BACK_WITHIN: Duration = Duration::from_secs(3);
/// The longest Argus may take to notice a lost camera.
const NOTICED_WITHIN: Duration = Duration::from_secs(5);
/// The longest it may take to notice media that stopped while the server still
/// answers: the stall timeout (3 s), the first frame's UDP-fallback allowance of a run
/// begun just before (2 s), and the /v1/cameras polling on a loaded 2-core machine
/// (measured 4.37 s and 5.03 s).
const STALL_NOTICED_WITHIN: Duration = Duration::from_secs(7);

/// An RTSP server a test stops (SIGKILL: a crash or power loss) and starts again on
/// the same port.
trait Server {
    fn start(&mut self);
    fn kill(&mut self);
    /// What Argus's cameras point at.
    fn url(&self) -> String;
    fn name(&self) -> &'static str;
}

struct GstServer {
    port: u16,
    extra: Vec<&'static str>,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl GstServer {
    fn new(extra: &[&'static str]) -> Self {
        let mut s = Self { port: free_port(), extra: extra.to_vec(), child: None, stdin: None };
        s.start();
        s
    }

    /// `pause` / `resume`: the media stops while RTSP keeps answering.
    fn command(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("running");
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Server for GstServer {
    fn start(&mut self) {
        let port = self.port.to_string();
        let mut args = vec!["--port", &port, "--path", "/cam", "--codec", "h264", "--fps", "10", "--size", "320x240"];
        args.extend(&self.extra);
        let mut child = rtsp_server::spawn_test_server(&args);
        self.stdin = child.stdin.take();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stdin = None;
    }

    fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    fn name(&self) -> &'static str {
        "gst-rtsp-server"
    }
}

/// VLC serving an H.264 recording of the demo video over RTSP, as an unprivileged user
/// (VLC refuses to run as root).
struct VlcServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl VlcServer {
    fn new(dir: &Path) -> Self {
        let dir = dir.join("vlc");
        std::fs::create_dir_all(&dir).unwrap();
        // The demo video as H.264 at 10 fps with a keyframe a second, as cameras send.
        let video = dir.join("demo.mp4");
        let st = Command::new("gst-launch-1.0")
            .args(["-q", "filesrc", "location=/usr/share/doc/opencv-doc/examples/data/vtest.avi", "!", "decodebin", "!", "videoconvert", "!"])
            .args(["videoscale", "!", "videorate", "!", "video/x-raw,format=I420,width=320,height=240,framerate=10/1", "!"])
            .args(["x264enc", "speed-preset=ultrafast", "tune=zerolatency", "key-int-max=10", "bitrate=400", "!", "h264parse", "!", "mp4mux", "!"])
            .args(["filesink".to_string(), format!("location={}", video.display())])
            .status()
            .expect("gst-launch-1.0 (scripts/setup installs gstreamer1.0-tools)");
        assert!(st.success(), "encoding the demo video for VLC");
        // Readable by the unprivileged user VLC runs as.
        use std::os::unix::fs::PermissionsExt;
        for p in [dir.parent().unwrap(), dir.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let mut s = Self { port: free_port(), dir, child: None };
        s.start();
        s
    }
}

impl Server for VlcServer {
    fn start(&mut self) {
        let vlc = ["cvlc", "-I", "dummy", "--no-audio", "--loop"];
        let sout = format!("#rtp{{sdp=rtsp://127.0.0.1:{}/cam}}", self.port);
        let video = self.dir.join("demo.mp4");
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).args(vlc);
            c
        } else {
            let mut c = Command::new(vlc[0]);
            c.args(&vlc[1..]);
            c
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("vlc.log")).unwrap();
        let child = cmd
            .arg(&video)
            .args(["--sout", &sout])
            .env("HOME", &self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cvlc (scripts/setup installs vlc-bin and vlc-plugin-base)");
        self.child = Some(child);
        let t0 = Instant::now();
        while !answers(&self.url()) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "VLC did not serve within 20 s: {}",
                std::fs::read_to_string(self.dir.join("vlc.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    fn name(&self) -> &'static str {
        "VLC"
    }
}

impl Drop for GstServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for VlcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn is_root() -> bool {
    // `id -u` rather than libc: the test crate has no libc dependency.
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Whether the server answers DESCRIBE for `url` with 200 (the test's own check, apart
/// from Argus's probe).
fn answers(url: &str) -> bool {
    let hostport = url.trim_start_matches("rtsp://").split('/').next().unwrap();
    let Ok(mut s) = TcpStream::connect_timeout(&hostport.parse().unwrap(), Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n > 0 && buf[..n].starts_with(b"RTSP/1.0 200"))
}

struct Argus {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Drop for Argus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `argus run` over `cameras` (id, source URL, transport), each at most 2 frames/s
/// analysed (recovery is about frames arriving, not analysis).
fn argus(dir: &Path, cameras: &[(&str, String, &str)]) -> Argus {
    let mut t = String::from("name = \"recovery\"\n");
    for (id, url, transport) in cameras {
        t += &format!("[[cameras]]\nid = \"{id}\"\nsource = \"{url}\"\nrtsp_transport = \"{transport}\"\nstall_timeout_s = 3.0\nfps_cap = 2\n");
    }
    let p = dir.join("p.toml");
    std::fs::write(&p, t).unwrap();
    let (child, base) = member::argus_on_with(dir, &p, &[]);
    Argus { child, base, dir: dir.to_path_buf() }
}

fn streaming(c: &Value) -> bool {
    c["state"] == "streaming"
}

/// Kills the server, keeps it down for `down`, starts it again; per camera: how long
/// Argus took to notice, and to stream again after the server answered.
fn outage(server: &mut dyn Server, a: &Argus, cams: &[&str], down: Duration) -> Vec<(String, Duration, Duration)> {
    for id in cams {
        let before = frames_received(&camera(&a.base, id));
        wait_for(&a.base, id, Duration::from_secs(30), "streaming before the outage", |c| streaming(c) && frames_received(c) > before);
    }
    let restarts: Vec<u64> = cams.iter().map(|id| camera(&a.base, id)["restarts"].as_u64().unwrap_or(0)).collect();
    let probes: Vec<u64> = cams.iter().map(|id| camera(&a.base, id)["probes"].as_u64().unwrap_or(0)).collect();
    let killed = Instant::now();
    server.kill();
    let mut noticed = vec![None; cams.len()];
    while killed.elapsed() < down {
        for (i, id) in cams.iter().enumerate() {
            if noticed[i].is_none() && !streaming(&camera(&a.base, id)) {
                noticed[i] = Some(killed.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server.start();
    let answered = Instant::now();
    while !answers(&server.url()) {
        assert!(answered.elapsed() < Duration::from_secs(20), "{} does not answer after its restart", server.name());
        std::thread::sleep(Duration::from_millis(20));
    }
    let answered = Instant::now();
    let at_answer: Vec<u64> = cams.iter().map(|id| frames_received(&camera(&a.base, id))).collect();
    let mut back = vec![None; cams.len()];
    while back.iter().any(Option::is_none) && answered.elapsed() < Duration::from_secs(40) {
        for (i, id) in cams.iter().enumerate() {
            let c = camera(&a.base, id);
            if back[i].is_none() && streaming(&c) && frames_received(&c) > at_answer[i] {
                back[i] = Some(answered.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = Vec::new();
    for (i, id) in cams.iter().enumerate() {
        let c = camera(&a.base, id);
        let (n, b) = (noticed[i].unwrap_or(down), back[i].unwrap_or(Duration::from_secs(40)));
        let rebuilds = c["restarts"].as_u64().unwrap_or(0) - restarts[i];
        let probed = c["probes"].as_u64().unwrap_or(0) - probes[i];
        eprintln!(
            "{} outage {:>2} s, camera {id}: loss noticed after {:.2} s, streaming again {:.2} s after the server answered ({rebuilds} rebuilds, {probed} probes)",
            server.name(),
            down.as_secs(),
            n.as_secs_f64(),
            b.as_secs_f64()
        );
        assert!(noticed[i].is_some(), "{id}: the loss was never noticed in {down:?}: {c}");
        assert!(n <= NOTICED_WITHIN, "{id}: loss noticed after {n:?}");
        assert!(b <= BACK_WITHIN, "{id}: streaming again {b:?} after the server answered: {c}\n{}", logs::plain_log(&a.dir.join("stderr")));
        // No rebuilds while the server is gone: the probe waits for it.
        assert!(rebuilds <= 3, "{id}: {rebuilds} rebuilds for one outage of {down:?}: {c}");
        // About one probe a second, not a flood.
        assert!(probed as f64 <= down.as_secs_f64() * 1.5 + 5.0, "{id}: {probed} probes in {down:?}");
        out.push((id.to_string(), n, b));
    }
    out
}

/// Outages of 2 s, 20 s and 90 s; no unbounded growth of threads.
fn three_outages(server: &mut dyn Server, a: &Argus, cams: &[&str]) {
    for id in cams {
        wait_for(&a.base, id, Duration::from_secs(60), "the first frames", |c| streaming(c) && frames_received(c) > 5);
    }
    let threads_before = threads_of(a.child.id());
    for secs in [2, 20, 90] {
        outage(server, a, cams, Duration::from_secs(secs));
    }
    for id in cams {
        let before = frames_received(&camera(&a.base, id));
        wait_for(&a.base, id, Duration::from_secs(10), "streaming after the outages", |c| streaming(c) && frames_received(c) > before);
    }
    let threads_after = threads_of(a.child.id());
    eprintln!("{}: Argus threads {threads_before} before the outages, {threads_after} after", server.name());
    assert!(threads_after <= threads_before + 4, "threads grew from {threads_before} to {threads_after}");
}

#[test]
fn gst_rtsp_server_cameras_return_within_3_s_after_outages_of_2_20_and_90_s() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = GstServer::new(&[]);
    let url = server.url();
    let cams = [("tcp", url.clone(), "tcp"), ("udp", url.clone(), "udp"), ("auto", url, "auto")];
    let a = argus(dir.path(), &cams);
    three_outages(&mut server, &a, &["tcp", "udp", "auto"]);
    assert_eq!(camera(&a.base, "tcp")["transport"], "tcp");
    assert_eq!(camera(&a.base, "udp")["transport"], "udp");
    let metrics = get_text(&format!("{}/metrics", a.base));
    assert!(metrics.contains("argus_source_probes_total{camera=\"tcp\",result=\"refused\"}"), "{metrics}");
    let log = logs::plain_log(&a.dir.join("stderr"));
    assert!(log.contains("not answering; probing until it does") && log.contains("answers again; rebuilding now"), "{log}");
}

#[test]
fn vlc_cameras_return_within_3_s_after_outages_of_2_20_and_90_s() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = VlcServer::new(dir.path());
    let url = server.url();
    // VLC serves RTP over UDP only: `auto` must pick UDP without losing time, and `tcp`
    // fails, is reported, and is retried slowly (the server answers: a persistent fault).
    let cams = [("udp", url.clone(), "udp"), ("auto", url.clone(), "auto"), ("tcp-refused", url, "tcp")];
    let argus_dir = dir.path().join("argus");
    std::fs::create_dir_all(&argus_dir).unwrap();
    let a = argus(&argus_dir, &cams);
    three_outages(&mut server, &a, &["udp", "auto"]);
    assert_eq!(camera(&a.base, "auto")["transport"], "udp");
    let c = camera(&a.base, "tcp-refused");
    assert!(c["state"] == "backing_off" || c["state"] == "connecting", "{c}");
    let reason = c["failure_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("rtsp_transport = \"auto\""), "the failure names the fix: {c}");
    // Three outages restart its backoff chain (0.5, 1, 2, … 30 s) each time the server
    // returns; without them about 8 attempts in these two and a half minutes.
    let attempts = c["restarts"].as_u64().unwrap_or(0);
    assert!((2..=24).contains(&attempts), "{attempts} rebuilds of a camera whose transport the server refuses: {c}");
}

#[test]
fn media_that_stops_while_the_server_answers_a_tcp_only_server_and_dead_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let mut paused = GstServer::new(&[]);
    let mut tcp_only = GstServer::new(&["--protocols", "tcp"]);
    let refused = format!("rtsp://127.0.0.1:{}/cam", free_port());
    // Documentation prefix: no route here (IPv6, no default route on the test machines).
    let no_route = "rtsp://[2001:db8::1]:554/cam".to_string();
    let cams = [("paused", paused.url(), "tcp"), ("auto", tcp_only.url(), "auto"), ("refused", refused, "tcp"), ("no-route", no_route, "tcp")];
    let a = argus(dir.path(), &cams);
    for id in ["paused", "auto"] {
        wait_for(&a.base, id, Duration::from_secs(60), "the first frames", |c| streaming(c) && frames_received(c) > 5);
    }
    assert_eq!(camera(&a.base, "auto")["transport"], "tcp");

    // A refusing port and a host without a route: told apart, probed, not rebuilt.
    let c = camera(&a.base, "refused");
    wait_for(&a.base, "refused", Duration::from_secs(20), "a refusing port reported", |c| {
        c["state"] == "offline" && c["failure_reason"].as_str().is_some_and(|r| r.contains("refused")) && c["next_attempt_at"].is_string()
    });
    let took = wait_for(&a.base, "no-route", Duration::from_secs(30), "a host without a route reported", |c| {
        c["state"] == "offline"
            && c["failure_reason"].as_str().is_some_and(|r| r.contains("no route") || r.contains("no answer"))
            && c["next_attempt_at"].is_string()
    });
    eprintln!("refused: {c}\nno route reported after {took:?}: {}", camera(&a.base, "no-route"));

    // The media stops while RTSP still answers: the stall watchdog notices, rebuilds
    // come every stall + 1 s, and the media is picked up soon after it resumes.
    let start = camera(&a.base, "paused");
    let (before, probes_before) = (start["restarts"].as_u64().unwrap(), start["probes"].as_u64().unwrap_or(0));
    let t0 = Instant::now();
    paused.command("pause");
    let noticed = wait_for(&a.base, "paused", Duration::from_secs(10), "the stall noticed", |c| !streaming(c));
    std::thread::sleep(Duration::from_secs(20).saturating_sub(t0.elapsed()));
    // The attempts while there was no media (not those while it is picked up again).
    let c = camera(&a.base, "paused");
    let frames = frames_received(&c);
    paused.command("resume");
    let rebuilds = c["restarts"].as_u64().unwrap() - before;
    let probed = c["probes"].as_u64().unwrap_or(0) - probes_before;
    let back = wait_for(&a.base, "paused", Duration::from_secs(20), "media picked up again", |c| streaming(c) && frames_received(c) > frames);
    eprintln!(
        "media paused 20 s while the server answers: noticed after {noticed:.2?}, streaming again {back:.2?} after it resumed ({rebuilds} rebuilds, {probed} probes)"
    );
    assert!(noticed <= STALL_NOTICED_WITHIN, "stall noticed after {noticed:?}");
    assert!(back <= BACK_WITHIN, "streaming again {back:?} after the media resumed: {c}");
    // One session per stall_timeout (3 s) + at most 1 s: about 5 in 20 s, never a flood.
    // Once the last session is torn down, gst-rtsp-server unprepares the shared media
    // and cannot preroll a new one while the payloader drops buffers, so DESCRIBE hangs:
    // from then on the camera really is frozen and the supervisor probes (with backoff)
    // instead of rebuilding. Which of the two happens depends on timing (CI saw 1 rebuild
    // and 6 probes; a full run 4 and 9 counted up to the media's return), so the bound
    // is on attempts of either kind, counted at the resume.
    assert!((1..=8).contains(&rebuilds), "{rebuilds} rebuilds in 20 s without media: {c}");
    assert!((2..=14).contains(&(rebuilds + probed)), "{rebuilds} rebuilds and {probed} probes in 20 s without media: {c}");

    // The TCP-only server goes away briefly: `auto` comes back over TCP at once,
    // without first waiting for UDP packets that never come.
    let out = outage(&mut tcp_only, &a, &["auto"], Duration::from_secs(2));
    assert!(out[0].2 <= BACK_WITHIN);
    assert_eq!(camera(&a.base, "auto")["transport"], "tcp");

    let c = camera(&a.base, "refused");
    assert!(c["restarts"].as_u64().unwrap() <= 2, "a refusing port is probed, not rebuilt: {c}");
    assert!(c["probes"].as_u64().unwrap() >= 10, "{c}");
    let metrics = get_text(&format!("{}/metrics", a.base));
    assert!(metrics.contains("argus_source_probes_total{camera=\"refused\",result=\"refused\"}"), "{metrics}");
    assert!(metrics.contains("argus_source_restarts_total{camera=\"paused\",reason=\"stall\"}"), "{metrics}");
}
