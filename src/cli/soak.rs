//! `argus soak`: N live RTSP cameras (served by argus-rtsp-testserver on loopback) through
//! the real detector for a while; prints per-camera rates and the process's RSS growth.
//! A benchmark, not a test: run it for minutes and compare the first and last samples.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Args;

use argus::config::{self, PipelineConfig};
use argus::detect;
use argus::sources::config::CameraConfig;
use argus::telemetry::health::Health;
use argus::telemetry::metrics::Metrics;

#[derive(Args)]
pub struct SoakArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Live cameras to run.
    #[arg(long, default_value_t = 8)]
    cameras: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Frames per second each camera sends.
    #[arg(long, default_value_t = 10)]
    fps: u32,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 30)]
    every: u64,
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn start_server(fps: u32) -> Result<(Server, String)> {
    let exe = std::env::current_exe()?.with_file_name("argus-rtsp-testserver");
    let mut child = Command::new(&exe)
        .args(["--port", "0", "--path", "/cam", "--fps", &fps.to_string(), "--size", "640x360"])
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} (cargo build --release builds it)", exe.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let url = line.trim().strip_prefix("READY ").ok_or_else(|| anyhow!("test server said {line:?}"))?.to_string();
    Ok((Server(child), url))
}

pub fn run(args: SoakArgs) -> Result<()> {
    let mut cfg = config::load(args.config.as_deref()).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    // One shared server: every camera is its own RTSP client and pipeline.
    let (_server, url) = start_server(args.fps)?;
    let cameras: Vec<CameraConfig> =
        (0..args.cameras).map(|i| toml::from_str(&format!("id = \"soak-{i}\"\nsource = \"{url}\"")).expect("valid camera")).collect();
    let ids: Vec<String> = cameras.iter().map(|c| c.id.clone()).collect();
    let pipeline = PipelineConfig {
        name: "soak".into(),
        cameras,
        zones: vec![],
        rules: vec![],
        events: Default::default(),
        tracker: Default::default(),
        risk: Default::default(),
        kafka: None,
    };
    cfg.pipelines = vec![("soak".into(), pipeline)];
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let detector = detect::build_detector(&cfg.argus.detector)?;
    let scenes = argus::app::build_scenes(&cfg, &Default::default(), &Default::default())?;
    let (bus, sinks) = argus::sinks::start(Vec::new(), 1024, metrics.clone(), health.clone());
    println!(
        "argus soak: {} cameras × {} fps from {url}, detector {} on {}, {} s",
        args.cameras,
        args.fps,
        cfg.argus.detector.model,
        cfg.argus.detector.backend.as_str(),
        args.seconds
    );
    let running = argus::app::start(&cfg, scenes, detector, bus, argus::pipeline::StageContext::new(metrics.clone(), health.clone()))?;
    let t0 = Instant::now();
    // Let connections and the allocator settle before the baseline sample.
    std::thread::sleep(Duration::from_secs(10.min(args.seconds)));
    let rss_start = rss_kib();
    let frames_start = |id: &str| metrics.frames_processed.with_label_values(&[id]).get();
    let base: Vec<u64> = ids.iter().map(|i| frames_start(i)).collect();
    let t_base = Instant::now();
    println!("{:>7} {:>10} {:>10} {:>12} {:>10}", "t (s)", "RSS MiB", "growth", "fps in/cam", "fps done");
    while t0.elapsed() < Duration::from_secs(args.seconds) {
        std::thread::sleep(Duration::from_secs(args.every.max(1)).min(Duration::from_secs(args.seconds).saturating_sub(t0.elapsed())));
        let cams = health.sources();
        let fps_in: f64 = cams.values().map(|c| c.fps_in).sum::<f64>() / cams.len().max(1) as f64;
        let fps_done: f64 = cams.values().map(|c| c.fps_processed).sum();
        let rss = rss_kib();
        println!(
            "{:>7.0} {:>10.1} {:>+9.1}% {:>12.1} {:>10.1}",
            t0.elapsed().as_secs_f64(),
            rss as f64 / 1024.0,
            (rss as f64 - rss_start as f64) / rss_start.max(1) as f64 * 100.0,
            fps_in,
            fps_done
        );
    }
    let elapsed = t_base.elapsed().as_secs_f64();
    let rss_end = rss_kib();
    running.stop();
    sinks.drain(Duration::from_secs(60));
    println!("per camera over the last {elapsed:.0} s:");
    println!("{:<10} {:>10} {:>10} {:>12} {:>9}", "camera", "received", "processed", "dropped", "restarts");
    for (i, id) in ids.iter().enumerate() {
        let processed = frames_start(id) - base[i];
        let received = metrics.frames_received.with_label_values(&[id]).get();
        let dropped = metrics.frames_dropped.with_label_values(&[id, "queue_full"]).get();
        let restarts: u64 = ["error", "eos", "stall"].iter().map(|r| metrics.source_restarts.with_label_values(&[id.as_str(), r]).get()).sum();
        println!("{id:<10} {received:>10} {:>6.1} fps {dropped:>12} {restarts:>9}", processed as f64 / elapsed);
    }
    println!(
        "RSS: {:.1} MiB after warm-up → {:.1} MiB at the end ({:+.1}%, {:+.2} MiB/min)",
        rss_start as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        (rss_end as f64 - rss_start as f64) / rss_start.max(1) as f64 * 100.0,
        (rss_end as f64 - rss_start as f64) / 1024.0 / (elapsed / 60.0)
    );
    Ok(())
}
