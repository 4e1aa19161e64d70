//! `argus run` on a pipeline file, as one member of a test: its own store, JSONL and
//! HTTP port in `dir`, its log appended to `dir/stderr`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The child and its API's base URL; `env`: more environment (e.g. the Kafka event sink).
pub fn argus_on_with(dir: &Path, pipeline: &Path, env: &[(&str, String)]) -> (Child, String) {
    argus_run(dir, pipeline, &[], env)
}

/// Like `argus_on_with`, with more `argus run` arguments (e.g. `--worker`).
pub fn argus_run(dir: &Path, pipeline: &Path, args: &[&str], env: &[(&str, String)]) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/argus.toml")])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("ARGUS_PIPELINES", format!("[{:?}]", pipeline.display().to_string()))
        .env("ARGUS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ARGUS_STORE__PATH", dir.join("a.db"))
        .env("ARGUS_SINKS__JSONL__PATH", dir.join("e.jsonl"))
        .env("ARGUS_SINKS__STDOUT__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}
