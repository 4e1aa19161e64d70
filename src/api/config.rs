//! `[server]`: the HTTP API (listen address, keys, limits, analysis workers, webhooks).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::model::Issues;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub enabled: bool,
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Bearer API keys accepted on every route except /healthz, /readyz, /metrics and
    /// the static pages; `ARGUS_API_KEYS` (comma-separated) adds more. Empty: no auth.
    pub api_keys: Vec<String>,
    /// API keys with a name (`{ alice = "<key>" }`): accepted like `api_keys`, and the
    /// name is who an operator's action on an incident is recorded as (an unnamed key
    /// is recorded as `key-<first 8 hex digits of its SHA-256>`).
    pub named_api_keys: std::collections::BTreeMap<String, String>,
    /// Names of `named_api_keys` that may change pipelines (`PUT /v1/pipelines/{name}`);
    /// every change is logged with the name.
    pub pipeline_editors: Vec<String>,
    /// Also require a key for /metrics.
    pub protect_metrics: bool,
    /// Without API keys the API refuses to listen beyond loopback; `true` says the
    /// network in front of it is trusted (e.g. a container port published on loopback).
    pub allow_open_network: bool,
    /// Names accepted in the `Host` header besides loopback names and the listen
    /// address (DNS rebinding guard). Empty: loopback names when listening on loopback,
    /// any name when listening on a routable or unspecified address.
    pub allowed_hosts: Vec<String>,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A client must send a request's headers within this (seconds), or is cut off
    /// (slowloris). Also bounds an idle keep-alive connection.
    pub header_read_timeout_s: f64,
    /// A request (its body read included) must be answered within this (seconds), or
    /// 408. Live streams count only until their first byte.
    pub request_timeout_s: f64,
    /// Live clients (SSE and WebSocket) at once, in all.
    pub max_live_clients: usize,
    /// Live clients at once per API key (without keys: the total applies).
    pub max_live_clients_per_key: usize,
    /// Origins allowed by CORS (`["*"]`: any). Empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Largest request body (bytes), uploads included: beyond it 413.
    pub max_body_bytes: usize,
    /// Largest image side (pixels) `POST /v1/analyze` accepts: beyond it 422.
    pub max_image_side: u32,
    /// Analysis workers (each with its own detector): requests analysed at once.
    pub analyze_workers: usize,
    /// Analysis requests waiting for a worker: beyond it 429 with Retry-After.
    pub analyze_queue: usize,
    /// Encoded images waiting for analysis, at most this many MiB in all (beyond: 429).
    pub analyze_queue_mb: f64,
    /// Load the analysis workers' detectors at start (default: at each worker's first
    /// request, so a deployment that never analyses uploads does not hold the model twice).
    pub analyze_preload: bool,
    /// A synchronous analysis waiting longer than this answers 503 (seconds).
    pub analyze_timeout_s: f64,
    /// Images per `POST /v1/analyze/batch`.
    pub batch_max_items: usize,
    /// Finished asynchronous tasks kept for `GET /v1/tasks/{id}` (most recent).
    pub tasks_kept: usize,
    /// Secret for webhook signatures (HMAC-SHA256); `ARGUS_WEBHOOK_SECRET` overrides.
    /// Without one, webhooks are refused (422).
    pub webhook_secret: Option<String>,
    /// Delivery attempts per webhook (backoff 1 s, 2 s, 4 s, …).
    pub webhook_attempts: u32,
    /// Per-attempt timeout (seconds).
    pub webhook_timeout_s: f64,
    /// Webhooks to loopback, private, link-local and metadata addresses are refused
    /// (after DNS resolution); these hosts or networks (`"10.1.2.0/24"`, `"hooks.lan"`)
    /// are allowed anyway.
    pub webhook_allow: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            named_api_keys: Default::default(),
            pipeline_editors: Vec::new(),
            protect_metrics: false,
            allow_open_network: false,
            allowed_hosts: Vec::new(),
            max_connections: 512,
            header_read_timeout_s: 10.0,
            request_timeout_s: 60.0,
            max_live_clients: 256,
            max_live_clients_per_key: 32,
            cors_origins: Vec::new(),
            max_body_bytes: 10 << 20,
            max_image_side: 4096,
            analyze_workers: 1,
            analyze_queue: 8,
            analyze_queue_mb: 64.0,
            analyze_preload: false,
            analyze_timeout_s: 30.0,
            batch_max_items: 16,
            tasks_kept: 1000,
            webhook_secret: None,
            webhook_attempts: 5,
            webhook_timeout_s: 10.0,
            webhook_allow: Vec::new(),
        }
    }
}

/// A name an operator's actions are recorded under (also an assignee).
pub fn valid_operator_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `server.*` keys.
pub fn validate(s: &ServerConfig, iss: &mut Issues) {
    if s.listen.parse::<SocketAddr>().is_err() {
        iss.add("server.listen", format!("`{}` is not an address:port", s.listen), "write it like \"127.0.0.1:8080\"");
    }
    for (i, k) in s.api_keys.iter().enumerate() {
        if !acceptable_key(k) {
            iss.add(format!("server.api_keys[{i}]"), "an API key must be at least 16 characters without spaces", "generate one, e.g. `openssl rand -hex 24`");
        }
    }
    for (name, k) in &s.named_api_keys {
        if !valid_operator_name(name) {
            iss.add(
                format!("server.named_api_keys.{name}"),
                "a key's name must be 1 to 64 letters, digits, `.`, `_` or `-`",
                "name it like alice or ops-desk-2",
            );
        }
        if !acceptable_key(k) {
            iss.add(
                format!("server.named_api_keys.{name}"),
                "an API key must be at least 16 characters without spaces",
                "generate one, e.g. `openssl rand -hex 24`",
            );
        }
    }
    for (i, o) in s.cors_origins.iter().enumerate() {
        let ok = o == "*" || ((o.starts_with("http://") || o.starts_with("https://")) && !o.ends_with('/') && axum::http::HeaderValue::from_str(o).is_ok());
        if !ok {
            iss.add(
                format!("server.cors_origins[{i}]"),
                format!("`{o}` is not an origin"),
                "write scheme://host[:port] without a path, e.g. \"https://ops.example.com\", or \"*\"",
            );
        }
    }
    if s.max_body_bytes < 1024 {
        iss.add("server.max_body_bytes", format!("{} bytes is too small for any image", s.max_body_bytes), "use e.g. 10485760 (10 MiB)");
    }
    if s.max_image_side < 32 {
        iss.add("server.max_image_side", format!("{} px is too small", s.max_image_side), "use e.g. 4096");
    }
    if s.analyze_workers == 0 || s.analyze_workers > 64 {
        iss.add("server.analyze_workers", format!("{} is outside 1..=64", s.analyze_workers), "use 1 on a small machine (each worker loads the detector)");
    }
    if !(s.analyze_queue_mb > 0.0 && s.analyze_queue_mb <= 65536.0) {
        iss.add("server.analyze_queue_mb", format!("{} is outside (0, 65536]", s.analyze_queue_mb), "use e.g. 64 (MiB of uploaded images waiting)");
    }
    if s.analyze_queue == 0 {
        iss.add("server.analyze_queue", "0 would refuse every request", "use e.g. 8");
    }
    // `inf` is valid TOML: an upper bound keeps every timeout a Duration.
    for (key, v) in [
        ("analyze_timeout_s", s.analyze_timeout_s),
        ("webhook_timeout_s", s.webhook_timeout_s),
        ("header_read_timeout_s", s.header_read_timeout_s),
        ("request_timeout_s", s.request_timeout_s),
    ] {
        if !(v > 0.0 && v <= MAX_TIMEOUT_S) {
            iss.add(format!("server.{key}"), format!("{v} s"), format!("use positive seconds up to {MAX_TIMEOUT_S}, e.g. the default"));
        }
    }
    if s.batch_max_items == 0 || s.tasks_kept == 0 || s.webhook_attempts == 0 {
        iss.add("server.batch_max_items / tasks_kept / webhook_attempts", "must be at least 1", "use the defaults 16, 1000 and 5");
    }
    if let Some(secret) = &s.webhook_secret
        && secret.len() < MIN_SECRET_LEN
    {
        iss.add("server.webhook_secret", "a webhook secret must be at least 16 characters", "generate one, e.g. `openssl rand -hex 32`");
    }
    for (i, name) in s.pipeline_editors.iter().enumerate() {
        if !s.named_api_keys.contains_key(name) {
            let names: Vec<&str> = s.named_api_keys.keys().map(String::as_str).collect();
            iss.add(
                format!("server.pipeline_editors[{i}]"),
                format!("no named API key `{name}`"),
                format!(
                    "name one of server.named_api_keys ({}), or add `{name} = \"<key>\"` there",
                    if names.is_empty() { "none yet".to_string() } else { names.join(", ") }
                ),
            );
        }
    }
    for (i, h) in s.allowed_hosts.iter().enumerate() {
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        if h.is_empty() || h.contains(['/', ' ', '@']) {
            iss.add(
                format!("server.allowed_hosts[{i}]"),
                format!("`{h}` is not a host name"),
                "write a name or address without scheme or path, e.g. \"argus.ops.example.com\"",
            );
        } else if h.contains(':') && bare.parse::<std::net::Ipv6Addr>().is_err() {
            // `Host` headers are matched without their port, so `name:8080` never would.
            iss.add(
                format!("server.allowed_hosts[{i}]"),
                format!("`{h}` has a port; names are matched without one, so it would never match"),
                format!("write the name alone, e.g. \"{}\"", h.rsplit_once(':').map_or(h.as_str(), |(n, _)| n)),
            );
        }
    }
    for (i, a) in s.webhook_allow.iter().enumerate() {
        if let Err(e) = super::destination::Allowed::parse(a) {
            iss.add(format!("server.webhook_allow[{i}]"), e, "write a host name, an address or a network such as \"10.1.2.0/24\"");
        }
    }
    if s.max_connections == 0 || s.max_live_clients == 0 || s.max_live_clients_per_key == 0 {
        iss.add("server.max_connections / max_live_clients / max_live_clients_per_key", "must be at least 1", "use the defaults 512, 256 and 32");
    }
    if !(s.request_timeout_s > s.analyze_timeout_s) {
        iss.add(
            "server.request_timeout_s",
            format!("{} s must be longer than server.analyze_timeout_s ({} s), or a slow analysis is cut off as 408", s.request_timeout_s, s.analyze_timeout_s),
            "use e.g. analyze_timeout_s + 30",
        );
    }
}

/// Longest timeout a server key accepts (a day).
pub const MAX_TIMEOUT_S: f64 = 86_400.0;

/// Shortest API key or webhook secret, from a file or the environment alike.
pub const MIN_SECRET_LEN: usize = 16;

/// Whether `key` can be an API key: long enough, without spaces or control characters.
pub fn acceptable_key(key: &str) -> bool {
    key.len() >= MIN_SECRET_LEN && !key.chars().any(|c| c.is_whitespace() || c.is_control())
}
