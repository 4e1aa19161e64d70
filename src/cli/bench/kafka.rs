//! `argus bench-kafka`: events/s Argus's Kafka sink delivers (JSON, key, headers,
//! idempotent, every batch confirmed), next to a raw librdkafka producer sending the
//! very same bytes with the same settings and no Argus logic in between (what `kcat -P`
//! does; Debian's kcat links a librdkafka too old for current brokers), in one run.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Args;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::util::{cpu_seconds, synthetic_events};
use argus::sinks::kafka::config::KafkaSinkConfig;
use argus::sinks::kafka::{KafkaDelivery, client_config};
use argus::sinks::spool::Delivery;

#[derive(Args)]
pub struct BenchKafkaArgs {
    /// A running broker (e.g. `scripts/services start kafka`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// An existing topic (scratch data is written to it).
    #[arg(long, default_value = "argus.events")]
    topic: String,
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Events per confirmed batch (the sink's `max_events`).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
}

struct Run {
    events: usize,
    wall_s: f64,
    cpu_s: f64,
}

fn line(name: &str, r: &Run, base: Option<&Run>) {
    let per_s = r.events as f64 / r.wall_s;
    let ratio = base.map(|b| per_s / (b.events as f64 / b.wall_s)).unwrap_or(1.0);
    println!("{name:<36} {:>8} {:>8.2} {:>10.0} {:>14.0} {:>7.2}x", r.events, r.wall_s, per_s, r.events as f64 / r.cpu_s.max(1e-3), ratio);
}

pub fn run(a: BenchKafkaArgs) -> Result<()> {
    let cfg = KafkaSinkConfig { enabled: true, brokers: a.brokers.clone(), topic: a.topic.clone(), max_events: a.batch, ..Default::default() };
    if a.events == 0 {
        return Err(anyhow!("--events must be at least 1"));
    }
    let events = synthetic_events(a.events);
    let payloads: Vec<Vec<u8>> = events.iter().map(|e| serde_json::to_vec(&**e).expect("events serialise")).collect();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    println!("Kafka {} topic {}: {} events of {:.0} B on average, batches of {}", a.brokers, a.topic, a.events, bytes as f64 / a.events as f64, a.batch);

    // Baseline: the same bytes and keys through a bare producer with the sink's settings.
    let raw: BaseProducer = client_config(&cfg).create().map_err(|e| anyhow!("producer: {e}"))?;
    // Warm-up, untimed for both: a new idempotent producer spends ~0.5 s getting its
    // producer id (librdkafka retries every 500 ms) before its first delivery, once per
    // process; the figures below are the steady state.
    raw.send(BaseRecord::<str, [u8]>::to(&a.topic).key(events[0].camera_id.as_str()).payload(payloads[0].as_slice()))
        .map_err(|(e, _)| anyhow!("raw producer: {e}"))?;
    raw.flush(Duration::from_secs(30)).map_err(|e| anyhow!("raw producer flush: {e}"))?;
    let (cpu0, _) = cpu_seconds();
    let t0 = Instant::now();
    for (ev, p) in events.iter().zip(&payloads) {
        let mut rec = BaseRecord::<str, [u8]>::to(&a.topic).key(ev.camera_id.as_str()).payload(p.as_slice());
        loop {
            match raw.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    raw.poll(Duration::from_millis(5));
                }
            }
        }
        raw.poll(Duration::ZERO);
    }
    raw.flush(Duration::from_secs(60)).map_err(|e| anyhow!("raw producer flush: {e}"))?;
    let baseline = Run { events: a.events, wall_s: t0.elapsed().as_secs_f64(), cpu_s: cpu_seconds().0 - cpu0 };
    drop(raw);

    // Argus: serialise, key, headers, send, wait for every confirmation, per batch.
    let mut sink = KafkaDelivery::new(&cfg).map_err(|e| anyhow!(e))?;
    sink.prepare().map_err(|e| anyhow!(e))?;
    sink.deliver(&events[..1]).map_err(|e| anyhow!(e))?;
    let (cpu0, _) = cpu_seconds();
    let t0 = Instant::now();
    for chunk in events.chunks(a.batch.max(1)) {
        sink.deliver(chunk).map_err(|e| anyhow!(e))?;
    }
    let argus = Run { events: a.events, wall_s: t0.elapsed().as_secs_f64(), cpu_s: cpu_seconds().0 - cpu0 };

    println!("{:<36} {:>8} {:>8} {:>10} {:>14} {:>8}", "producer", "events", "wall s", "events/s", "events/CPU-s", "vs base");
    line("raw librdkafka (same bytes, baseline)", &baseline, None);
    line("argus sink (JSON + headers, confirmed)", &argus, Some(&baseline));
    println!(
        "events/CPU-s counts this process only (the broker shares the cores); each producer delivered one event first, untimed (a new idempotent producer takes ~0.5 s for its producer id)."
    );
    Ok(())
}
