//! `GET /v1/events/stream`: events as Server-Sent Events, filtered by camera and
//! minimum level, with heartbeats.
//!
//! The pipeline hands every event to `LiveHub::publish` (a bus listener on the scene
//! thread), which never waits: each client has a bounded buffer, and a client whose
//! buffer is full is dropped with a reason (`event: dropped`) instead of slowing the
//! pipeline or growing memory.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::mpsc;

use super::{ApiError, AppState};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::risk::Level;

/// Events a client may have waiting before it is dropped.
pub const CLIENT_BUFFER: usize = 256;
const HEARTBEAT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveFilter {
    pub camera: Option<String>,
    pub min_level: Option<Level>,
}

impl LiveFilter {
    pub fn matches(&self, ev: &Event) -> bool {
        self.camera.as_deref().is_none_or(|c| c == ev.camera_id) && self.min_level.is_none_or(|l| ev.risk.level >= l)
    }
}

enum Item {
    Event(Arc<Event>),
    /// The last message to a client that fell behind.
    Dropped(String),
}

struct Client {
    filter: LiveFilter,
    tx: mpsc::Sender<Item>,
}

pub struct LiveHub {
    clients: Mutex<Vec<Client>>,
    buffer: usize,
    metrics: Arc<Metrics>,
}

impl LiveHub {
    pub fn new(buffer: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { clients: Mutex::new(Vec::new()), buffer: buffer.max(2), metrics })
    }

    fn subscribe(&self, filter: LiveFilter) -> mpsc::Receiver<Item> {
        let (tx, rx) = mpsc::channel(self.buffer);
        let mut clients = self.clients.lock();
        clients.push(Client { filter, tx });
        self.metrics.live_clients.set(clients.len() as i64);
        rx
    }

    pub fn clients(&self) -> usize {
        self.clients.lock().len()
    }

    /// Offers an event to every matching client without waiting.
    pub fn publish(&self, ev: &Arc<Event>) {
        let mut clients = self.clients.lock();
        clients.retain(|c| {
            if c.tx.is_closed() {
                return false;
            }
            if !c.filter.matches(ev) {
                return true;
            }
            // One slot is kept for the goodbye, so a slow client learns why it was cut.
            if c.tx.capacity() <= 1 {
                let _ = c.tx.try_send(Item::Dropped(format!("the client fell {} events behind; reconnect (and read faster)", self.buffer - 1)));
                self.metrics.live_clients_dropped.inc();
                tracing::warn!(buffer = self.buffer, "live client too slow; dropped");
                return false;
            }
            c.tx.try_send(Item::Event(ev.clone())).is_ok()
        });
        self.metrics.live_clients.set(clients.len() as i64);
    }
}

pub fn parse_filter(raw: Option<&str>) -> Result<LiveFilter, ApiError> {
    let pairs: Vec<(String, String)> = match raw {
        Some(r) => serde_urlencoded::from_str(r).map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?,
        None => Vec::new(),
    };
    let mut f = LiveFilter::default();
    for (k, v) in pairs {
        match k.as_str() {
            "camera" => f.camera = Some(v),
            "min_level" => {
                f.min_level = Some(Level::parse(&v).ok_or_else(|| {
                    ApiError::bad_request("parameter `min_level`: expected low, medium, high or critical").with_details(json!({ "parameter": "min_level", "value": v }))
                })?)
            }
            _ => return Err(ApiError::bad_request(format!("unknown parameter `{k}`")).with_details(json!({ "parameter": k, "allowed": ["camera", "min_level"] }))),
        }
    }
    Ok(f)
}

pub async fn stream(State(st): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let filter = parse_filter(raw.as_deref())?;
    let rx = st.live.subscribe(filter);
    let events = futures_util::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        let item = rx.recv().await?;
        let (sse, last) = match item {
            Item::Event(ev) => {
                let data = serde_json::to_string(&*ev).expect("events serialise");
                (SseEvent::default().event(ev.kind.as_str()).id(ev.event_id.clone()).data(data), false)
            }
            Item::Dropped(why) => (SseEvent::default().event("dropped").data(json!({ "reason": why }).to_string()), true),
        };
        Some((Ok::<_, Infallible>(sse), (rx, last)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")).into_response())
}
