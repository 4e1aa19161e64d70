//! The event bus: fan-out from the scene stage to every sink's bounded queue, plus
//! in-process listeners (the live hub), and how far the sinks got (durability).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Sender;

use crate::model::Event;
use crate::telemetry::metrics::Metrics;

/// An in-process consumer of every published event (e.g. the live hub); it must not block.
pub type Listener = Box<dyn Fn(&Arc<Event>) + Send + Sync>;

/// Fan-out from the pipeline to every sink's queue, plus optional in-process listeners
/// (the live hub for SSE/WebSocket).
pub struct EventBus {
    sinks: Vec<(String, Sender<Arc<Event>>)>,
    listeners: Vec<Listener>,
    metrics: Arc<Metrics>,
    durability: Durability,
}

/// How far the sinks got: every event goes to every sink in one order, so "each sink
/// has written n events" means the first n published events are durable everywhere.
/// Sources that must not lose input (Kafka) commit a message once the events published
/// up to its processing are durable.
#[derive(Clone, Debug, Default)]
pub struct Durability {
    /// Events handed to the sinks so far.
    pub published: Arc<AtomicU64>,
    /// Per sink: events written durably (or spooled durably) so far.
    written: Vec<Arc<AtomicU64>>,
}

/// One sink's end of the bus: its queue and its count of events written durably.
pub struct BusLane {
    pub name: String,
    pub queue: Sender<Arc<Event>>,
    pub written: Arc<AtomicU64>,
}

impl Durability {
    /// Events durable in every sink.
    pub fn durable(&self) -> u64 {
        self.written.iter().map(|w| w.load(Ordering::SeqCst)).min().unwrap_or_else(|| self.published.load(Ordering::SeqCst))
    }
}

impl EventBus {
    /// A bus over the sinks' queues (each sink's thread increments its `written`).
    pub fn new(lanes: Vec<BusLane>, metrics: Arc<Metrics>) -> Self {
        let mut durability = Durability::default();
        let mut sinks = Vec::new();
        for l in lanes {
            durability.written.push(l.written);
            sinks.push((l.name, l.queue));
        }
        Self { sinks, listeners: Vec::new(), metrics, durability }
    }

    pub fn add_listener(&mut self, f: impl Fn(&Arc<Event>) + Send + Sync + 'static) {
        self.listeners.push(Box::new(f));
    }

    pub fn durability(&self) -> Durability {
        self.durability.clone()
    }

    /// Hands an event to every sink; blocks while a sink's queue is full. Returns its
    /// number in the bus's order: it is durable everywhere once
    /// `Durability::durable()` reaches that number.
    pub fn publish(&self, ev: Event) -> u64 {
        let ev = Arc::new(ev);
        let n = self.durability.published.fetch_add(1, Ordering::SeqCst) + 1;
        self.metrics.events_emitted.with_label_values(&[ev.kind.as_str()]).inc();
        for (name, tx) in &self.sinks {
            if tx.send(ev.clone()).is_err() {
                tracing::error!(sink = %name, event_id = %ev.event_id, "sink thread is gone; event not delivered to it");
            }
            self.metrics.sink_queue_depth.with_label_values(&[name]).set(tx.len() as i64);
        }
        for l in &self.listeners {
            l(&ev);
        }
        n
    }
}
