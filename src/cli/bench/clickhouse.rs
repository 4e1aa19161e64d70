//! `argus bench-clickhouse`: rows/s Argus inserts into ClickHouse (RowBinary through
//! the same code path as the sink), next to `clickhouse-client` inserting the very
//! same rows (TSV) into the same server in the same run, each per wall second and per
//! CPU second of the inserting process.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;

use super::util::{cpu_seconds, synthetic_events};
use argus::clients::clickhouse::ClickHouseConfig;
use argus::store::clickhouse::{ClickHouseStore, insert_events};

#[derive(Args)]
pub struct BenchClickHouseArgs {
    /// ClickHouse HTTP URL (e.g. from `scripts/services start clickhouse`).
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    url: String,
    /// Native port for clickhouse-client.
    #[arg(long, default_value_t = 9000)]
    client_port: u16,
    /// Scratch database (dropped and re-created).
    #[arg(long, default_value = "argus_bench")]
    database: String,
    /// Events to insert (each with 8 objects: 9 rows).
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Events per insert (the sink's `max_rows`).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
}

struct Run {
    rows: u64,
    wall_s: f64,
    cpu_s: f64,
}

impl Run {
    fn line(&self, name: &str, base: Option<&Run>) {
        let per_s = self.rows as f64 / self.wall_s;
        let per_cpu = self.rows as f64 / self.cpu_s.max(1e-3);
        let ratio = base.map(|b| format!("{:.2}x", per_s / (b.rows as f64 / b.wall_s))).unwrap_or_else(|| "1.00x".into());
        println!("{name:<34} {:>9} {:>8.2} {:>12.0} {:>14.0} {:>8}", self.rows, self.wall_s, per_s, per_cpu, ratio);
    }
}

fn client(port: u16, db: &str, query: &str) -> Command {
    let mut c = Command::new("clickhouse-client");
    c.args(["--port", &port.to_string(), "--database", db, "--query", query]);
    c
}

fn client_ok(port: u16, db: &str, query: &str) -> Result<String> {
    let out = client(port, db, query).output().context("running clickhouse-client (installed by scripts/setup)")?;
    if !out.status.success() {
        bail!("clickhouse-client: {query}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run(a: BenchClickHouseArgs) -> Result<()> {
    let cfg = ClickHouseConfig { enabled: true, url: a.url.clone(), database: a.database.clone(), ..Default::default() };
    client_ok(a.client_port, "default", &format!("DROP DATABASE IF EXISTS {}", a.database))?;
    let store = ClickHouseStore::new(&cfg).map_err(|e| anyhow!("{e}"))?;
    store.migrate(0).map_err(|e| anyhow!("{e}"))?;
    let evs = synthetic_events(a.events);
    let version = store.conn().server_version().map_err(|e| anyhow!("{e}"))?;
    println!("ClickHouse {version} at {}: {} events × (1 event row + 8 object rows), {} events per insert", a.url, a.events, a.batch);

    // Argus: event rows built, serialised (RowBinary, LZ4) and sent, as the sink does.
    let (cpu0, _) = cpu_seconds();
    let t0 = Instant::now();
    let mut rows = 0u64;
    for chunk in evs.chunks(a.batch.max(1)) {
        let (e, o) = insert_events(store.conn(), chunk, false).map_err(|e| anyhow!("{e}"))?;
        rows += (e + o) as u64;
    }
    let argus = Run { rows, wall_s: t0.elapsed().as_secs_f64(), cpu_s: cpu_seconds().0 - cpu0 };

    // clickhouse-client: the same rows, exported as TSV, inserted again.
    let mut tsv = Vec::new();
    for table in ["events", "objects"] {
        tsv.push(client_ok(a.client_port, &a.database, &format!("SELECT * FROM {table} FORMAT TabSeparated"))?);
        client_ok(a.client_port, &a.database, &format!("TRUNCATE TABLE {table}"))?;
    }
    let (_, child0) = cpu_seconds();
    let t0 = Instant::now();
    for (table, data) in ["events", "objects"].iter().zip(&tsv) {
        let mut child = client(a.client_port, &a.database, &format!("INSERT INTO {table} FORMAT TabSeparated"))
            .stdin(Stdio::piped())
            .spawn()
            .context("running clickhouse-client")?;
        child.stdin.take().expect("piped").write_all(data.as_bytes())?;
        if !child.wait()?.success() {
            bail!("clickhouse-client insert into {table} failed");
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let client_rows: u64 = ["events", "objects"]
        .iter()
        .map(|t| client_ok(a.client_port, &a.database, &format!("SELECT count() FROM {t}")).map(|s| s.trim().parse::<u64>().unwrap_or(0)))
        .sum::<Result<u64>>()?;
    if client_rows != rows {
        bail!("clickhouse-client stored {client_rows} rows, Argus {rows}: not the same data");
    }
    let baseline = Run { rows, wall_s, cpu_s: cpu_seconds().1 - child0 };

    println!("{:<34} {:>9} {:>8} {:>12} {:>14} {:>8}", "inserter", "rows", "wall s", "rows/s", "rows/CPU-s", "vs base");
    baseline.line("clickhouse-client (TSV, baseline)", None);
    argus.line("argus (RowBinary, as the sink)", Some(&baseline));
    println!("rows/CPU-s counts only the inserting process (the server runs on the same cores).");
    client_ok(a.client_port, "default", &format!("DROP DATABASE IF EXISTS {}", a.database))?;
    Ok(())
}
