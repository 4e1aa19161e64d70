//! A clickhouse-server child process on loopback, its config written by
//! scripts/clickhouse-config into a temporary directory (Debian's 18.16, installed by
//! scripts/setup). With `cluster`, the server is one replica of a loopback cluster.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use argus::clients::clickhouse::ClickHouseConfig;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A clickhouse-server child process; stopped (SIGTERM) on drop.
pub struct Server {
    child: Option<Child>,
    dir: PathBuf,
    pub http: u16,
    pub tcp: u16,
    /// `CH_*` variables for scripts/clickhouse-config (a cluster member).
    pub env: Vec<(String, String)>,
}

impl Server {
    pub fn start(dir: &Path) -> Self {
        // Both held at once: two `free_port()` calls in a row may return the same port
        // (the first listener is closed before the second binds), and a server whose HTTP
        // and TCP ports collide never starts.
        let (a, b) = (TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("127.0.0.1:0").unwrap());
        let (http, tcp) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
        drop((a, b));
        Self::start_with(dir, http, tcp, Vec::new())
    }

    /// A server on given ports, its config extended by `env` (see scripts/clickhouse-config).
    pub fn start_with(dir: &Path, http: u16, tcp: u16, env: Vec<(String, String)>) -> Self {
        let mut s = Self { child: None, dir: dir.to_path_buf(), http, tcp, env };
        s.restart();
        s
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/clickhouse-config");
        let ok = Command::new(script)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args([self.dir.to_str().unwrap(), &self.http.to_string(), &self.tcp.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let child = Command::new("clickhouse-server")
            .arg(format!("--config-file={}/config.xml", self.dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clickhouse-server (installed by scripts/setup)");
        self.child = Some(child);
        let t0 = Instant::now();
        while reqwest::blocking::get(format!("{}/ping", self.url())).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "clickhouse-server did not start; see {}/log", self.dir.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let t0 = Instant::now();
            while c.try_wait().unwrap().is_none() {
                if t0.elapsed() > Duration::from_secs(15) {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    pub fn config(&self, spool: &Path) -> ClickHouseConfig {
        ClickHouseConfig { enabled: true, url: self.url(), spool_dir: spool.to_path_buf(), ..Default::default() }
    }

    /// Runs SQL through the HTTP interface, returning the body (TSV).
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{sql}\n→ {e}"))
    }

    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        self.try_sql_in("argus", sql)
    }

    pub fn try_sql_in(&self, database: &str, sql: &str) -> Result<String, String> {
        let r =
            reqwest::blocking::Client::new().post(format!("{}/?database={database}", self.url())).body(sql.to_string()).send().map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.text().map_err(|e| e.to_string())?;
        if status.is_success() { Ok(body) } else { Err(format!("{status}: {body}")) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
