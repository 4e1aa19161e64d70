//! Argus's RTSP test server (`argus-rtsp-testserver`) as a test starts it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts the test server with `args` and returns once it accepts clients. Its stdin
/// is piped: lines `pause` / `resume` stop and restart its media.
pub fn spawn_test_server(args: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_argus-rtsp-testserver")).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("READY"), "test server said {line:?}");
    child
}
