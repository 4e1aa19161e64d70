//! A fresh Kafka-protocol broker per test: tansu (installed into .deps/tansu by
//! scripts/setup) on a free loopback port, with memory storage.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TANSU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/tansu/tansu");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Broker {
    pub child: Child,
    pub port: u16,
}

impl Broker {
    pub fn start(topics: &[(&str, u32)]) -> Self {
        Self::start_on(free_port(), topics)
    }

    /// A fresh broker (memory storage: empty) on `port`.
    pub fn start_on(port: u16, topics: &[(&str, u32)]) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(TANSU)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu (scripts/setup installs it into .deps/tansu)");
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "tansu did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        for (name, partitions) in topics {
            let ok = Command::new(TANSU).args(["topic", "create", name, "--partitions", &partitions.to_string(), "--broker", &url]).status().unwrap();
            assert!(ok.success(), "creating topic {name}");
        }
        Self { child, port }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
