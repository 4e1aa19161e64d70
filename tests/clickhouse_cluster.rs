//! `sinks.clickhouse.cluster` against a real loopback cluster: Debian's ZooKeeper and two
//! ClickHouse 18.16 servers, replicas of one shard (scripts/zookeeper,
//! scripts/clickhouse-config). Migrations run `ON CLUSTER`, the tables are
//! `ReplicatedReplacingMergeTree` locals plus `Distributed` tables, events written
//! through one server are read through the other, and a replica stopped for 30 s (or
//! the server Argus writes through, for a while) loses nothing.
#![cfg(feature = "clickhouse")]

#[path = "common/clickhouse_server.rs"]
mod clickhouse_server;
#[path = "common/logs.rs"]
mod logs;

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argus::clients::clickhouse::ClickHouseConfig;
use argus::model::{Event, EventKind, sample_event};
use argus::sinks::Sink;
use argus::store::clickhouse::ClickHouseStore;
use argus::store::{EventQuery, EventStore};
use clickhouse_server::Server;
use logs::plain_log;
use serde_json::Value;

const CLUSTER: &str = "argus_cluster";

/// ZooKeeper in the foreground; killed on drop.
struct ZooKeeper(Child);

impl ZooKeeper {
    fn start(dir: &Path, port: u16) -> Self {
        let child = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/zookeeper"))
            .args([dir.to_str().unwrap(), &port.to_string()])
            .stdout(std::fs::File::create(dir.with_extension("log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("scripts/zookeeper");
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(60), "ZooKeeper did not listen on {port}; see {}", dir.with_extension("log").display());
            std::thread::sleep(Duration::from_millis(200));
        }
        Self(child)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ZooKeeper and two replicas of one shard.
struct Cluster {
    servers: Vec<Server>,
    _zk: ZooKeeper,
}

fn ports(n: usize) -> Vec<u16> {
    // All held at once, so no two are the same.
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl Cluster {
    fn start(dir: &Path) -> Self {
        let p = ports(7);
        let zk = ZooKeeper::start(&dir.join("zk"), p[0]);
        let replicas = format!("127.0.0.1:{} 127.0.0.1:{}", p[2], p[5]);
        let servers = (0..2)
            .map(|i| {
                let (http, tcp, interserver) = (p[1 + 3 * i], p[2 + 3 * i], p[3 + 3 * i]);
                let env = vec![
                    ("CH_CLUSTER".to_string(), CLUSTER.to_string()),
                    ("CH_REPLICA".into(), format!("r{}", i + 1)),
                    ("CH_INTERSERVER_PORT".into(), interserver.to_string()),
                    ("CH_ZOOKEEPER".into(), format!("127.0.0.1:{}", p[0])),
                    ("CH_REPLICAS".into(), replicas.clone()),
                ];
                Server::start_with(&dir.join(format!("ch{}", i + 1)), http, tcp, env)
            })
            .collect();
        Self { servers, _zk: zk }
    }

    fn config(&self, i: usize, database: &str, spool: &Path) -> ClickHouseConfig {
        ClickHouseConfig { cluster: CLUSTER.into(), database: database.into(), request_timeout_ms: 4000, max_wait_ms: 100, ..self.servers[i].config(spool) }
    }
}

fn sql(server: &Server, db: &str, q: &str) -> String {
    let q = q.replace("{db}", db);
    server.try_sql_in("default", &q).unwrap_or_else(|e| panic!("{q}\n→ {e}")).trim().to_string()
}

/// Waits until `f` holds, showing the last value when it never does.
fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let t0 = Instant::now();
    loop {
        match f() {
            Ok(()) => return,
            Err(last) if t0.elapsed() > within => panic!("{what}: not within {within:?}; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn ids_on(server: &Server, db: &str, table: &str) -> BTreeSet<String> {
    server.try_sql_in("default", &format!("SELECT toString(event_id) FROM {db}.{table} FINAL")).unwrap_or_default().lines().map(String::from).collect()
}

/// The demo pipeline through the binary writes through server 1 with the cluster set:
/// the schema is replicated locals plus distributed tables on both servers, and server
/// 2 (its distributed table, and the store the API reads through) has every event of
/// the JSONL, once.
#[test]
fn events_written_through_one_server_are_read_through_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cluster = Cluster::start(d);
    let (r1, r2) = (&cluster.servers[0], &cluster.servers[1]);
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.toml")).unwrap();
    let demo = demo.replace("frame_summary_every_s = 5.0", "frame_summary_every_s = 0.000001");
    assert!(demo.contains("frame_summary_every_s = 0.000001"), "pipelines/demo.toml changed: update this test");
    std::fs::write(d.join("demo.toml"), demo).unwrap();
    let log = d.join("argus.log");
    let status = Command::new(env!("CARGO_BIN_EXE_argus"))
        .args(["run", "--exit-when-done", "--max-frames", "40", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/argus.toml")])
        .env("ARGUS_PIPELINES", format!("[{:?}]", d.join("demo.toml").display().to_string()))
        .env("ARGUS_SERVER__ENABLED", "false")
        .env("ARGUS_STORE__PATH", d.join("a.db"))
        .env("ARGUS_SINKS__JSONL__PATH", d.join("e.jsonl"))
        .env("ARGUS_SINKS__STDOUT__ENABLED", "false")
        .env("ARGUS_SINKS__CLICKHOUSE__ENABLED", "true")
        .env("ARGUS_SINKS__CLICKHOUSE__URL", r1.url())
        .env("ARGUS_SINKS__CLICKHOUSE__CLUSTER", CLUSTER)
        .env("ARGUS_SINKS__CLICKHOUSE__SPOOL_DIR", d.join("spool"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "argus run: {status}\n{}", plain_log(&log));
    let jsonl: Vec<Value> = std::fs::read_to_string(d.join("e.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let want: BTreeSet<String> = jsonl.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    assert!(want.len() >= 40, "a summary per frame at least: {}", want.len());

    for server in [r1, r2] {
        let engines = sql(server, "argus", "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name FORMAT TSV");
        assert_eq!(
            engines,
            "argus_migrations\tReplicatedReplacingMergeTree\nevents\tDistributed\nevents_local\tReplicatedReplacingMergeTree\n\
             objects\tDistributed\nobjects_local\tReplicatedReplacingMergeTree",
            "the cluster layout on {}",
            server.url()
        );
    }
    // Replication is asynchronous: server 2 catches up within moments.
    wait_until("server 2's replica has every event", Duration::from_secs(30), || {
        let got = ids_on(r2, "argus", "events_local");
        if got == want { Ok(()) } else { Err(format!("{} of {}", got.len(), want.len())) }
    });
    assert_eq!(ids_on(r2, "argus", "events"), want, "through server 2's distributed table");
    let objects: usize = jsonl.iter().map(|e| e["objects"].as_array().map_or(0, |o| o.len())).sum();
    wait_until("server 2 has every object row", Duration::from_secs(30), || {
        let n = sql(r2, "argus", "SELECT count() FROM {db}.objects FINAL");
        if n == objects.to_string() { Ok(()) } else { Err(format!("{n} of {objects}")) }
    });
    assert_eq!(sql(r2, "argus", "SELECT count() FROM {db}.events"), want.len().to_string(), "each event once, not once per replica");

    // The store behind the API, pointed at server 2, pages through the distributed table.
    let store = ClickHouseStore::new(&cluster.config(1, "argus", &d.join("unused"))).unwrap();
    assert_eq!(store.count().unwrap(), want.len() as u64);
    let mut paged = BTreeSet::new();
    let mut q = EventQuery { limit: 7, ..Default::default() };
    loop {
        let page = store.query(&q).unwrap();
        paged.extend(page.events.iter().map(|e| e.event_id.to_string()));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, want, "the API's pages through server 2");
    let one = jsonl.iter().find(|e| e["kind"] == "incident.opened").or(jsonl.first()).unwrap();
    let got = store.get(one["event_id"].as_str().unwrap()).unwrap().expect("GET /v1/events/{id} through server 2");
    assert_eq!(serde_json::to_value(&got).unwrap()["event_id"], one["event_id"]);
}

fn batch(from: i64, n: i64) -> Vec<Arc<Event>> {
    (from..from + n)
        .map(|i| {
            let cam = ["gate", "lobby", "dock"][i as usize % 3];
            let kind = if i % 7 == 0 { EventKind::IncidentOpened } else { EventKind::FrameAnalyzed };
            Arc::new(sample_event(cam, 1_800_000_000_000 + i * 100, kind))
        })
        .collect()
}

/// Events keep coming (a batch every 200 ms) while one replica is stopped for 30 s and
/// then the server Argus writes through is stopped for 8 s. The schema is created with
/// the second replica already down (`ON CLUSTER` does not wait for it; it runs the DDL
/// when back). Nothing is lost or doubled: both replicas end with every event, and
/// inserts never waited for the stopped replica.
#[test]
fn a_replica_stopped_for_30_s_and_a_stopped_server_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cluster = Cluster::start(d);
    let db = "late";
    cluster.servers[1].stop();

    // Opening the sink migrates: `ON CLUSTER`, with replica 2 down, each statement
    // waits `distributed_ddl_task_timeout` (2 s here) and goes on.
    let metrics = Arc::new(argus::telemetry::metrics::Metrics::new());
    let health = Arc::new(argus::telemetry::health::Health::default());
    let cfg = cluster.config(0, db, &d.join("spool"));
    let t0 = Instant::now();
    let mut sink = argus::sinks::clickhouse::open_sink(&cfg, metrics.clone(), health).unwrap();
    let migrated = t0.elapsed();
    let r1 = &cluster.servers[0];
    let engines = sql(r1, db, "SELECT name FROM system.tables WHERE database = '{db}' ORDER BY name FORMAT TSV");
    assert_eq!(engines, "argus_migrations\nevents\nevents_local\nobjects\nobjects_local", "migrated on replica 1 with replica 2 down");
    eprintln!("migrated ON CLUSTER with a replica down in {migrated:.2?}");
    let down = Instant::now();
    let mut sent = BTreeSet::new();
    let mut next = 0;
    let mut write = |sink: &mut argus::sinks::clickhouse::ClickHouseSink, sent: &mut BTreeSet<String>| {
        let events = batch(next, 10);
        next += 10;
        sent.extend(events.iter().map(|e| e.event_id.to_string()));
        let t0 = Instant::now();
        sink.write_batch(&events).expect("the sink takes the batch (to ClickHouse or its spool)");
        sink.idle();
        t0.elapsed()
    };
    let mut slowest = Duration::ZERO;
    while down.elapsed() < Duration::from_secs(30) {
        slowest = slowest.max(write(&mut sink, &mut sent));
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_until("server 1 has every event while server 2 is down", Duration::from_secs(30), || {
        sink.idle();
        let got = ids_on(r1, db, "events");
        if got == sent { Ok(()) } else { Err(format!("{} of {}", got.len(), sent.len())) }
    });
    assert_eq!(metrics.spool_events.with_label_values(&["clickhouse"]).get(), 0, "nothing waited in the spool for the stopped replica");
    eprintln!("replica 2 down 30 s: {} events written through replica 1, slowest write {slowest:.2?}", sent.len());
    assert!(slowest < Duration::from_secs(3), "writes waited for the stopped replica: {slowest:?}");

    cluster.servers[1].restart();
    cluster.servers[0].stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(8) {
        write(&mut sink, &mut sent);
        std::thread::sleep(Duration::from_millis(200));
    }
    let spooled = metrics.spool_events.with_label_values(&["clickhouse"]).get();
    assert!(spooled > 0, "with the server it writes through down, the sink spools");
    cluster.servers[0].restart();
    for _ in 0..5 {
        write(&mut sink, &mut sent);
    }
    for (i, server) in cluster.servers.iter().enumerate() {
        wait_until(&format!("replica {} has every event", i + 1), Duration::from_secs(60), || {
            sink.idle();
            let got = ids_on(server, db, "events_local");
            if got == sent {
                Ok(())
            } else {
                Err(format!("{} of {} (spool {})", got.len(), sent.len(), metrics.spool_events.with_label_values(&["clickhouse"]).get()))
            }
        });
    }
    let r2 = &cluster.servers[1];
    assert_eq!(sql(r2, db, "SELECT count() FROM {db}.events FINAL"), sent.len().to_string(), "each event once through server 2");
    assert_eq!(sql(r2, db, "SELECT version FROM {db}.argus_migrations FINAL ORDER BY version"), "1\n2", "the migrations are recorded, replicated to server 2");
    // Migration 2 (operators' actions in the kind enum) reached the replica that was down
    // when it ran: its queued DDL ran when it came back.
    for table in ["events_local", "events", "objects_local"] {
        let kind = sql(r2, db, &format!("SELECT type FROM system.columns WHERE database = '{{db}}' AND table = '{table}' AND name = 'kind'"));
        assert!(kind.contains("incident.noted"), "{table}.kind on server 2: {kind}");
    }
    eprintln!("{} events, {spooled} spooled while server 1 was down; both replicas hold each once", sent.len());
}
