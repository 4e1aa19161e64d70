//! The fleet topic: this member's record out every `publish_every_s`, every member's
//! records in (read from the beginning, no consumer group), a tombstone at a clean stop.
//! One thread; a broker that is down delays the view, never the pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::config::FleetConfig;
use super::{FleetView, MemberIdentity, MemberRecord};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

fn client_config(cfg: &FleetConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    c
}

pub struct FleetLink {
    pub cfg: FleetConfig,
    pub identity: MemberIdentity,
    pub health: Arc<Health>,
    pub view: Arc<FleetView>,
    pub metrics: Arc<Metrics>,
    pub stop: Arc<AtomicBool>,
}

/// Starts the fleet thread (supervised).
pub fn spawn(link: FleetLink) -> std::io::Result<JoinHandle<()>> {
    let sup = crate::telemetry::supervise::Supervisor { health: link.health.clone(), metrics: link.metrics.clone() };
    sup.spawn("fleet", move || run(link))
}

/// The reader, once the topic's partitions are known.
fn reader(cfg: &FleetConfig, member: &str) -> Result<BaseConsumer, String> {
    let c: BaseConsumer = client_config(cfg)
        .set("group.id", format!("argus-fleet-{member}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|e| format!("fleet reader: {e}"))?;
    let md = c.fetch_metadata(Some(&cfg.topic), Duration::from_secs(5)).map_err(|e| format!("metadata of {}: {e}", cfg.topic))?;
    let partitions = md.topics().iter().find(|t| t.name() == cfg.topic && t.error().is_none()).map(|t| t.partitions().len()).unwrap_or(0);
    if partitions == 0 {
        return Err(format!("the fleet topic {} has no partitions yet", cfg.topic));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(&cfg.topic, p, Offset::Beginning).map_err(|e| e.to_string())?;
    }
    c.assign(&tpl).map_err(|e| format!("assign {}: {e}", cfg.topic))?;
    Ok(c)
}

fn run(link: FleetLink) {
    let FleetLink { cfg, identity, health, view, metrics, stop } = link;
    let member = identity.member.clone();
    let span = tracing::info_span!("fleet", member = %member, topic = %cfg.topic);
    let _g = span.enter();
    let producer: BaseProducer = match client_config(&cfg).set("message.timeout.ms", "10000").create() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the fleet producer; this member is not in the fleet view");
            return;
        }
    };
    let mut reader_: Option<BaseConsumer> = None;
    let mut next_publish = Instant::now();
    let mut next_setup = Instant::now();
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        if reader_.is_none() && Instant::now() >= next_setup {
            let made = crate::clients::kafka::create_compacted_topic(&client_config(&cfg), &cfg.topic, 1).and_then(|created| {
                if created {
                    tracing::info!("fleet topic created (cleanup.policy=compact)");
                }
                reader(&cfg, &member)
            });
            match made {
                Ok(r) => {
                    tracing::info!("reading the fleet topic");
                    reader_ = Some(r);
                    warned = false;
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "the fleet topic is not reachable yet; retrying (the view shows this member only)");
                        warned = true;
                    }
                    next_setup = Instant::now() + Duration::from_secs(5);
                }
            }
        }
        if Instant::now() >= next_publish {
            next_publish = Instant::now() + identity.every;
            let record = identity.record(&health);
            view.apply(&member, Some(record.clone()), Instant::now());
            publish(&producer, &cfg.topic, &member, Some(&record), &metrics);
        }
        producer.poll(Duration::ZERO);
        let Some(r) = &reader_ else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        match r.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let Some(key) = m.key().map(|k| String::from_utf8_lossy(k).into_owned()) else { continue };
                if key == member {
                    // Our own record, already applied when it was made. Read back, it says
                    // the view holds everything published before it (the topic has one
                    // partition; partition EOF is not reliable on every broker: tansu's
                    // high watermark is wrong).
                    view.set_caught_up();
                    continue;
                }
                match m.payload() {
                    None => view.apply(&key, None, Instant::now()),
                    Some(p) => match serde_json::from_slice::<MemberRecord>(p) {
                        Ok(rec) => view.apply(&key, Some(rec), Instant::now()),
                        Err(e) => tracing::debug!(member = %key, error = %e, "an unreadable fleet record; skipped"),
                    },
                }
            }
            // The end of what was there: the view holds every member that published.
            Some(Err(KafkaError::PartitionEOF(_))) => view.set_caught_up(),
            Some(Err(e)) => tracing::debug!(error = %e, "fleet reader"),
        }
    }
    // A clean stop leaves the view at once: a tombstone.
    publish(&producer, &cfg.topic, &member, None, &metrics);
    let _ = producer.flush(Duration::from_secs(3));
}

fn publish(producer: &BaseProducer, topic: &str, member: &str, record: Option<&MemberRecord>, metrics: &Metrics) {
    let payload = record.map(|r| serde_json::to_vec(r).unwrap_or_default());
    let mut rec = BaseRecord::<str, [u8]>::to(topic).key(member);
    if let Some(p) = &payload {
        rec = rec.payload(p.as_slice());
    }
    match producer.send(rec) {
        Ok(()) => metrics.fleet_records.with_label_values(&["ok"]).inc(),
        Err((e, _)) => {
            metrics.fleet_records.with_label_values(&["failed"]).inc();
            if !matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) {
                tracing::debug!(error = %e, "fleet record not sent");
            }
        }
    }
}
