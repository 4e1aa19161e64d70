//! Live messages for `GET /v1/events/stream` (Server-Sent Events) and `GET /v1/ws`
//! (WebSocket): events filtered by camera and minimum level, or the progress of
//! analysis tasks (`task=<id>`, or `task=*` for every task), with heartbeats.
//!
//! The pipeline hands every event to `LiveHub::publish` (a bus listener on the scene
//! thread), which never waits: each client has a bounded buffer, and a client whose
//! buffer is full is dropped with a reason (`event: dropped`) instead of slowing the
//! pipeline or growing memory.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::mpsc;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::model::Event;
use crate::model::Level;
use crate::telemetry::metrics::Metrics;

/// Events a client may have waiting before it is dropped.
pub const CLIENT_BUFFER: usize = 256;
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Largest WebSocket message a client may send (bytes).
pub const CLIENT_MESSAGE_MAX: usize = 64 << 10;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveFilter {
    pub camera: Option<String>,
    pub min_level: Option<Level>,
    /// Follow analysis tasks instead of events: one id, or `*` for all.
    pub task: Option<String>,
}

impl LiveFilter {
    pub fn matches(&self, ev: &Event) -> bool {
        self.task.is_none() && self.camera.as_deref().is_none_or(|c| c == ev.camera_id) && self.min_level.is_none_or(|l| ev.risk.level >= l)
    }

    pub fn matches_task(&self, t: &TaskMessage) -> bool {
        self.task.as_deref().is_some_and(|want| want == "*" || want == t.task_id)
    }
}

/// Progress of an analysis task: `task.update`, `task.completed` or `task.failed`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskMessage {
    #[serde(skip)]
    pub kind: &'static str,
    pub task_id: String,
    pub status: &'static str,
    /// 0..1.
    pub progress: f32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Arc<Event>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

#[derive(Clone)]
pub(super) enum Item {
    Event(Arc<Event>),
    Task(Arc<TaskMessage>),
    /// The last message to a client that fell behind.
    Dropped(String),
}

impl Item {
    /// (message name, JSON data, SSE id)
    pub(super) fn encode(&self) -> (&'static str, String, Option<String>) {
        match self {
            Item::Event(ev) => (ev.kind.as_str(), serde_json::to_string(&**ev).expect("events serialise"), Some(ev.event_id.clone())),
            Item::Task(t) => (t.kind, serde_json::to_string(&**t).expect("task messages serialise"), None),
            Item::Dropped(why) => ("dropped", json!({ "reason": why }).to_string(), None),
        }
    }
}

struct Client {
    filter: LiveFilter,
    tx: mpsc::Sender<Item>,
    /// The API key it came with (`None` without keys).
    key: Option<usize>,
}

/// How many live clients may be connected: each holds a task, a socket and a buffer.
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    pub total: usize,
    pub per_key: usize,
}

impl Default for LiveLimits {
    fn default() -> Self {
        let s = super::config::ServerConfig::default();
        Self { total: s.max_live_clients, per_key: s.max_live_clients_per_key }
    }
}

pub struct LiveHub {
    clients: Mutex<Vec<Client>>,
    buffer: usize,
    limits: LiveLimits,
    metrics: Arc<Metrics>,
}

impl LiveHub {
    pub fn new(buffer: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with_limits(buffer, LiveLimits::default(), metrics)
    }

    pub fn with_limits(buffer: usize, limits: LiveLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { clients: Mutex::new(Vec::new()), buffer: buffer.max(2), limits, metrics })
    }

    /// A new client, or 429 when the hub (or the caller's key) is at its limit.
    pub(super) fn subscribe(&self, filter: LiveFilter, key: Option<usize>) -> Result<mpsc::Receiver<Item>, ApiError> {
        let mut clients = self.clients.lock();
        clients.retain(|c| !c.tx.is_closed());
        let refuse = |limit: &str, message: String| {
            self.metrics.live_clients_refused.with_label_values(&[limit]).inc();
            tracing::warn!(limit, clients = clients.len(), "live client refused");
            Err(ApiError::too_many_requests(message, 5))
        };
        if clients.len() >= self.limits.total {
            return refuse("total", format!("{} live clients are connected, the most server.max_live_clients allows", self.limits.total));
        }
        if key.is_some() && clients.iter().filter(|c| c.key == key).count() >= self.limits.per_key {
            return refuse(
                "per_key",
                format!("this API key has {} live clients, the most server.max_live_clients_per_key allows; close one", self.limits.per_key),
            );
        }
        let (tx, rx) = mpsc::channel(self.buffer);
        clients.push(Client { filter, tx, key });
        self.metrics.live_clients.set(clients.len() as i64);
        Ok(rx)
    }

    pub fn clients(&self) -> usize {
        self.clients.lock().len()
    }

    /// Offers an event to every matching client without waiting.
    pub fn publish(&self, ev: &Arc<Event>) {
        self.offer(|f| f.matches(ev), || Item::Event(ev.clone()));
    }

    /// Offers a task's progress to the clients following it.
    pub fn publish_task(&self, t: TaskMessage) {
        let t = Arc::new(t);
        self.offer(|f| f.matches_task(&t), || Item::Task(t.clone()));
    }

    fn offer(&self, wants: impl Fn(&LiveFilter) -> bool, item: impl Fn() -> Item) {
        let mut clients = self.clients.lock();
        clients.retain(|c| {
            if c.tx.is_closed() {
                return false;
            }
            if !wants(&c.filter) {
                return true;
            }
            // One slot is kept for the goodbye, so a slow client learns why it was cut.
            if c.tx.capacity() <= 1 {
                let _ = c.tx.try_send(Item::Dropped(format!("the client fell {} events behind; reconnect (and read faster)", self.buffer - 1)));
                self.metrics.live_clients_dropped.inc();
                tracing::warn!(buffer = self.buffer, "live client too slow; dropped");
                return false;
            }
            c.tx.try_send(item()).is_ok()
        });
        self.metrics.live_clients.set(clients.len() as i64);
    }
}

pub fn parse_filter(raw: Option<&str>) -> Result<LiveFilter, ApiError> {
    let pairs = super::error::query_pairs(raw)?;
    let mut f = LiveFilter::default();
    for (k, v) in pairs {
        match k.as_str() {
            "camera" => f.camera = Some(v),
            "task" => f.task = Some(v),
            "min_level" => {
                f.min_level = Some(Level::parse(&v).ok_or_else(|| {
                    ApiError::bad_request("parameter `min_level`: expected low, medium, high or critical")
                        .with_details(json!({ "parameter": "min_level", "value": v }))
                })?)
            }
            _ => {
                return Err(ApiError::bad_request(format!("unknown parameter `{k}`"))
                    .with_details(json!({ "parameter": k, "allowed": ["camera", "min_level", "task"] })));
            }
        }
    }
    Ok(f)
}

#[utoipa::path(get, path = "/v1/events/stream", tag = "live", summary = "Live events (Server-Sent Events): message name = event kind (or task.update / task.completed / task.failed), data = JSON; heartbeats every 15 s; `dropped` then end when the client falls 255 messages behind", params(
        ("camera" = Option<String>, Query, description = "Only this camera's events"),
        ("min_level" = Option<crate::model::Level>, Query, description = "Events at or above this level"),
        ("task" = Option<String>, Query, description = "Follow an analysis task (`*`: every task) instead of events"),
    ), responses((status = 200, description = "text/event-stream", body = String, content_type = "text/event-stream"), (status = 400, description = "Bad parameter", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody)))]
pub async fn stream(State(st): State<AppState>, RawQuery(raw): RawQuery, caller: Option<axum::Extension<Caller>>) -> Result<Response, ApiError> {
    let filter = parse_filter(raw.as_deref())?;
    let rx = st.live.subscribe(filter, caller.and_then(|c| c.key))?;
    let events = futures_util::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        let item = rx.recv().await?;
        let last = matches!(item, Item::Dropped(_));
        let (name, data, id) = item.encode();
        let mut sse = SseEvent::default().event(name).data(data);
        if let Some(id) = id {
            sse = sse.id(id);
        }
        Some((Ok::<_, Infallible>(sse), (rx, last)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")).into_response())
}

/// `GET /v1/ws`: the same messages as the SSE stream, as WebSocket text frames
/// `{"type": NAME, "data": {...}}`; pings every 15 s; a slow client gets a `dropped`
/// message and a close frame (1008) with the reason.
#[utoipa::path(get, path = "/v1/ws", tag = "live", summary = "Live events over WebSocket: text frames `{type, data}`, the same messages as the SSE stream", params(
        ("camera" = Option<String>, Query, description = "Only this camera's events"),
        ("min_level" = Option<crate::model::Level>, Query, description = "Events at or above this level"),
        ("task" = Option<String>, Query, description = "Follow an analysis task (`*`: every task) instead of events"),
    ), responses((status = 101, description = "Switching protocols"), (status = 400, description = "Bad parameter, or not a WebSocket request", body = crate::api::openapi::ErrorBody), (status = 401, description = "No or a wrong API key", body = crate::api::openapi::ErrorBody)))]
pub async fn websocket(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    caller: Option<axum::Extension<Caller>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let filter = parse_filter(raw.as_deref())?;
    let Ok(ws) = ws else {
        return Err(ApiError::bad_request("this route speaks WebSocket: send an Upgrade: websocket request (or use /v1/events/stream for SSE)"));
    };
    // Subscribed before the upgrade, so a client over the limit gets a 429 it can read.
    let rx = st.live.subscribe(filter, caller.and_then(|c| c.key))?;
    // Clients have nothing to say here: a large message from one is refused (and ends
    // the session) instead of being buffered; what Argus sends is bounded per client by
    // CLIENT_BUFFER messages.
    let ws = ws.max_message_size(CLIENT_MESSAGE_MAX).max_frame_size(CLIENT_MESSAGE_MAX).max_write_buffer_size(4 << 20);
    Ok(ws.on_upgrade(move |socket| serve_socket(socket, rx)))
}

async fn serve_socket(mut socket: WebSocket, mut rx: mpsc::Receiver<Item>) {
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.tick().await;
    loop {
        tokio::select! {
            item = rx.recv() => {
                let Some(item) = item else { break };
                let (name, data, _) = item.encode();
                let text = format!("{{\"type\":{},\"data\":{data}}}", serde_json::Value::from(name));
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
                if let Item::Dropped(why) = item {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1008, reason: why.chars().take(120).collect::<String>().into() }))).await;
                    break;
                }
            }
            _ = beat.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => match msg {
                // Client messages carry nothing; a close or an error ends the session.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
