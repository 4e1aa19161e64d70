//! `argus bench-memory`: peak resident memory of `argus --version`, of the demo run and
//! of the demo with several cameras, next to the plain Python loop a user would write
//! instead (OpenCV decode + ONNX Runtime + NMS over the same video and model), all in one
//! run. Each figure is a child process's peak (`ru_maxrss` from `wait4`), so every run
//! starts from a clean process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use argus::config::{EMBEDDED_CONFIG, EMBEDDED_DEMO_PIPELINE};

#[derive(Args)]
pub struct BenchMemoryArgs {
    /// Cameras in the multi-camera run (the demo video as that many file cameras).
    #[arg(long, default_value_t = 4)]
    cameras: usize,
    /// Frames per camera (0: the whole video, 795 frames).
    #[arg(long, default_value_t = 0)]
    frames: u64,
    /// Python with numpy, onnxruntime and opencv-python-headless for the baseline
    /// (default: .deps/pyenv from scripts/setup, else python3).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the Python baseline.
    #[arg(long)]
    no_python: bool,
}

/// One child's outcome.
struct Measured {
    peak_bytes: u64,
    /// The split of the largest resident sample, from /proc/PID/status: anonymous memory
    /// (what the process allocated, plus the pages of its libraries that relocation
    /// wrote to) and file pages (read from its executable and libraries).
    anon_bytes: u64,
    file_bytes: u64,
    wall_s: f64,
    stdout: String,
}

/// Samples /proc/PID/status every 20 ms until the process is gone; returns RssAnon and
/// RssFile (+ RssShmem) of the sample with the largest total.
fn sample_split(pid: libc::pid_t, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> (u64, u64) {
    let mut best = (0u64, 0u64);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { break };
        let kb = |name: &str| -> u64 {
            status.lines().find(|l| l.starts_with(name)).and_then(|l| l[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0) * 1024
        };
        let (anon, file) = (kb("RssAnon:"), kb("RssFile:") + kb("RssShmem:"));
        if anon + file > best.0 + best.1 {
            best = (anon, file);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    best
}

/// Runs `cmd` to its end; its peak RSS comes from the kernel's rusage for that child.
fn measure(mut cmd: Command, log: &Path) -> Result<Measured> {
    let stderr = std::fs::File::create(log)?;
    let t0 = Instant::now();
    let child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    // Read stdout on a thread: a child blocked on a full pipe would never exit.
    let mut out = child.stdout.context("child stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || sample_split(pid, stop))
    };
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for the child we started.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (std's Child is not waited on).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_s = t0.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (anon_bytes, file_bytes) = sampler.join().unwrap_or_default();
    let stdout = reader.join().unwrap_or_default();
    if rc != pid {
        bail!("waiting for {cmd:?}: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let tail: String =
            std::fs::read_to_string(log).unwrap_or_default().lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        bail!("{cmd:?} failed (status {status}); its log ends:\n{tail}");
    }
    Ok(Measured { peak_bytes: usage.ru_maxrss as u64 * 1024, anon_bytes, file_bytes, wall_s, stdout })
}

/// The demo pipeline with its camera repeated `n` times (ids `plaza-1`…).
fn demo_pipeline(n: usize) -> Result<String> {
    let mut table: toml::Table = toml::from_str(EMBEDDED_DEMO_PIPELINE).context("the embedded demo pipeline")?;
    let cameras = table.get("cameras").and_then(|c| c.as_array()).context("the demo pipeline has [[cameras]]")?;
    let first = cameras.first().context("the demo pipeline has a camera")?.clone();
    let copies: Vec<toml::Value> = (1..=n)
        .map(|i| {
            let mut c = first.clone();
            if n > 1
                && let Some(t) = c.as_table_mut()
            {
                t.insert("id".into(), toml::Value::String(format!("plaza-{i}")));
            }
            c
        })
        .collect();
    table.insert("cameras".into(), toml::Value::Array(copies));
    Ok(toml::to_string(&table)?)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `argus run --exit-when-done` on the demo with `cameras` cameras, its files in `dir`.
fn argus_run(exe: &Path, dir: &Path, cameras: usize, frames: u64) -> Result<Command> {
    let run_dir = dir.join(format!("run-{cameras}"));
    std::fs::create_dir_all(&run_dir)?;
    let pipeline = run_dir.join("demo.toml");
    std::fs::write(&pipeline, demo_pipeline(cameras)?)?;
    let mut config: toml::Table = toml::from_str(EMBEDDED_CONFIG).context("the embedded config")?;
    config.insert("pipelines".into(), toml::Value::Array(vec![toml::Value::String(pipeline.display().to_string())]));
    let config_path = run_dir.join("argus.toml");
    std::fs::write(&config_path, toml::to_string(&config)?)?;
    let mut cmd = Command::new(exe);
    cmd.arg("run").arg("--config").arg(&config_path).arg("--exit-when-done");
    if frames > 0 {
        cmd.arg("--max-frames").arg(frames.to_string());
    }
    cmd.env("ARGUS_STORE__PATH", run_dir.join("argus.db"))
        .env("ARGUS_SINKS__JSONL__PATH", run_dir.join("events.jsonl"))
        .env("ARGUS_EVIDENCE__DIR", run_dir.join("evidence"))
        .env("ARGUS_SERVER__LISTEN", format!("127.0.0.1:{}", free_port()?))
        .env_remove("ARGUS_API_KEYS");
    Ok(cmd)
}

fn python_for(args: &BenchMemoryArgs) -> PathBuf {
    args.python.clone().unwrap_or_else(python)
}

/// The Python for the baselines: .deps/pyenv from scripts/setup, else python3.
pub fn python() -> PathBuf {
    let venv = PathBuf::from(env!("ARGUS_BUILD_REPO_DIR")).join(".deps/pyenv/bin/python");
    if venv.is_file() { venv } else { PathBuf::from("python3") }
}

/// The plain Python loop (scripts/bench/python_loop.py) over `video` with NanoDet on
/// `threads` threads; `frames` = 0 runs the whole video. Both benchmarks' baseline.
pub fn python_loop(python: &Path, video: &str, threads: usize, frames: u64) -> Command {
    let repo = PathBuf::from(env!("ARGUS_BUILD_REPO_DIR"));
    let mut cmd = Command::new(python);
    cmd.arg(repo.join("scripts/bench/python_loop.py")).arg(repo.join("models/nanodet.onnx")).arg(video);
    cmd.arg("--threads").arg(threads.to_string());
    if frames > 0 {
        cmd.arg("--frames").arg(frames.to_string());
    }
    cmd
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// "anon A + files F" of the largest sample (a short run may end before one is taken).
fn split(m: &Measured) -> String {
    if m.anon_bytes + m.file_bytes < m.peak_bytes / 4 {
        format!("{:>28}", "(ended before a sample)")
    } else {
        format!("(anon {:>5.1} + files {:>5.1} MB)", mb(m.anon_bytes), mb(m.file_bytes))
    }
}

pub fn run(args: BenchMemoryArgs) -> Result<()> {
    if args.cameras == 0 || args.cameras > 64 {
        bail!("--cameras {} is outside 1..=64", args.cameras);
    }
    let exe = std::env::current_exe().context("finding the argus executable")?;
    let repo = PathBuf::from(env!("ARGUS_BUILD_REPO_DIR"));
    let dir = tempfile_dir()?;
    let video = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
    let model = repo.join("models/nanodet.onnx");
    println!(
        "argus bench-memory: peak resident memory (the kernel's ru_maxrss of each run), one run, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("  peak = the kernel's figure; anon/files = the largest sample of /proc/PID/status: private memory (allocations, and the");
    println!("  libraries' relocated data) / pages read from the executable and libraries");
    println!(
        "  video {video}, model {}, {} per camera",
        model.display(),
        if args.frames > 0 { format!("{} frames", args.frames) } else { "every frame".into() }
    );

    let baseline = if args.no_python {
        None
    } else {
        let cmd = python_loop(&python_for(&args), video, 2, args.frames);
        match measure(cmd, &dir.join("python.log")) {
            Ok(m) => {
                let info: serde_json::Value = serde_json::from_str(m.stdout.trim()).unwrap_or_default();
                println!(
                    "  {:<34} {:>7.1} MB  {}  {:>6.1} s  (baseline; {} frames at {} fps, onnxruntime {}, opencv {})",
                    "python loop (decode+ort+nms)",
                    mb(m.peak_bytes),
                    split(&m),
                    m.wall_s,
                    info["frames"],
                    info["fps"],
                    info["onnxruntime"].as_str().unwrap_or("?"),
                    info["opencv"].as_str().unwrap_or("?")
                );
                Some(m.peak_bytes)
            }
            Err(e) => {
                println!("  python loop: not measured ({e:#}); run scripts/setup for .deps/pyenv, or pass --python");
                None
            }
        }
    };
    let ratio = |bytes: u64| baseline.map_or(String::new(), |b| format!("{:.2}x the python loop", bytes as f64 / b as f64));

    let mut version = Command::new(&exe);
    version.arg("--version");
    let v = measure(version, &dir.join("version.log"))?;
    println!("  {:<34} {:>7.1} MB  {}  {:>6.2} s  {}", "argus --version", mb(v.peak_bytes), split(&v), v.wall_s, ratio(v.peak_bytes));

    let one = measure(argus_run(&exe, &dir, 1, args.frames)?, &dir.join("run-1.log"))?;
    println!(
        "  {:<34} {:>7.1} MB  {}  {:>6.1} s  {}",
        "argus run, demo (1 camera, API on)",
        mb(one.peak_bytes),
        split(&one),
        one.wall_s,
        ratio(one.peak_bytes)
    );
    if args.cameras > 1 {
        let many = measure(argus_run(&exe, &dir, args.cameras, args.frames)?, &dir.join(format!("run-{}.log", args.cameras)))?;
        println!(
            "  {:<34} {:>7.1} MB  {}  {:>6.1} s  {}",
            format!("argus run, demo x{} cameras", args.cameras),
            mb(many.peak_bytes),
            split(&many),
            many.wall_s,
            ratio(many.peak_bytes)
        );
        let per_camera = (many.peak_bytes as f64 - one.peak_bytes as f64) / (args.cameras - 1) as f64;
        println!("  each camera beyond the first adds {:.1} MB at peak ({} cameras vs 1)", per_camera / (1024.0 * 1024.0), args.cameras);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A fresh folder for the runs' files (removed at the end).
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("argus-bench-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_pipeline_repeats_its_camera_with_distinct_ids() {
        let one: toml::Table = toml::from_str(&demo_pipeline(1).unwrap()).unwrap();
        assert_eq!(one["cameras"].as_array().unwrap()[0]["id"].as_str(), Some("plaza"));
        let four: toml::Table = toml::from_str(&demo_pipeline(4).unwrap()).unwrap();
        let ids: Vec<&str> = four["cameras"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec!["plaza-1", "plaza-2", "plaza-3", "plaza-4"]);
        assert_eq!(four["zones"], one["zones"], "zones and rules are kept");
    }
}
