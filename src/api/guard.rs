//! Checks made on every request before a key is even looked at:
//! - `Host` against the names the API is reached by. A web page can point a name it
//!   controls at 127.0.0.1 (DNS rebinding) and then read a loopback API as if it were
//!   its own origin; the `Host` header still carries the page's name, so refusing
//!   unknown names closes that door.
//! - `Origin`, when a browser sends one, against the API's own origin and
//!   `server.cors_origins`: a foreign page may not open a live stream, a WebSocket or
//!   post an analysis (with a webhook) through a visitor's browser.
//! - A deadline for the whole request, its body read included (408).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The `Host` names accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPolicy {
    /// Lower-case names and addresses without port; `None`: any.
    names: Option<Vec<String>>,
}

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

impl HostPolicy {
    /// Loopback names, the listen address and `allowed`; when listening on a routable
    /// or unspecified address with nothing in `allowed`, any name (the machine's names
    /// are not known here; API keys are what protects such a listener).
    pub fn new(listen: SocketAddr, allowed: &[String]) -> Self {
        if allowed.is_empty() && !listen.ip().is_loopback() {
            return Self { names: None };
        }
        let mut names: Vec<String> = LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect();
        names.push(listen.ip().to_string());
        // `[v6]` as in a URL, or bare: compared bare, like `host_name` gives it.
        names.extend(allowed.iter().map(|h| h.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()));
        Self { names: Some(names) }
    }

    pub fn any() -> Self {
        Self { names: None }
    }

    /// Whether a `Host` header value (`name[:port]`, `[v6]:port`) is one of ours.
    pub fn accepts(&self, host: &str) -> bool {
        let Some(names) = &self.names else { return true };
        let name = host_name(host).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        names.iter().any(|n| n == name) || name.ends_with(".localhost")
    }
}

impl Default for HostPolicy {
    fn default() -> Self {
        Self::new(SocketAddr::from(([127, 0, 0, 1], 8080)), &[])
    }
}

/// `name` out of `name:port`, `[v6]:port` or `[v6]`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether a browser's `Origin` may use the API: its own origin (same host and port as
/// `Host`), or one listed in `server.cors_origins` (`*`: any). `null` (sandboxed frames,
/// files) never.
pub fn origin_allowed(origin: &str, host: Option<&str>, cors_origins: &[String]) -> bool {
    if cors_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some(authority) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else { return false };
    host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
}

/// What the guard checks against.
#[derive(Debug, Clone)]
pub struct Guard {
    pub hosts: HostPolicy,
    pub cors_origins: Vec<String>,
    pub request_timeout: Duration,
}

pub async fn check(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(h) = &host
        && !g.hosts.accepts(h)
    {
        tracing::warn!(host = %h, "request for a host name this API does not answer to (DNS rebinding?)");
        return ApiError::new(StatusCode::MISDIRECTED_REQUEST, "MISDIRECTED", format!("this API does not answer to the host name `{}`", host_name(h)))
            .with_details(serde_json::json!({ "fix": "reach it by a loopback name, or add the name to server.allowed_hosts" }))
            .into_response();
    }
    if let Some(origin) = req.headers().get(header::ORIGIN).map(|v| v.to_str().unwrap_or("null").to_string())
        && !origin_allowed(&origin, host.as_deref(), &g.cors_origins)
    {
        tracing::warn!(%origin, path = req.uri().path(), "request from a foreign web page refused");
        return ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", format!("requests from the web page at {origin} are not allowed"))
            .with_details(serde_json::json!({ "fix": "add the origin to server.cors_origins" }))
            .into_response();
    }
    match tokio::time::timeout(g.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, "TIMEOUT", format!("the request was not complete within {:?}", g.request_timeout)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_on_loopback() {
        let p = HostPolicy::new("127.0.0.1:8080".parse().unwrap(), &[]);
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "localhost.:8080", "cam.localhost:8080"] {
            assert!(p.accepts(ok), "{ok}");
        }
        for bad in ["evil.example.com:8080", "127.0.0.1.evil.example:8080", "10.0.0.5:8080", "[fe80::1]:8080", ""] {
            assert!(!p.accepts(bad), "{bad}");
        }
        let p = HostPolicy::new("127.0.0.1:8080".parse().unwrap(), &["argus.ops.example".into()]);
        assert!(p.accepts("Argus.Ops.Example:443"));
        // Routable listener, nothing configured: any name; with names: only those.
        assert!(HostPolicy::new("0.0.0.0:8080".parse().unwrap(), &[]).accepts("whatever:1"));
        let p = HostPolicy::new("0.0.0.0:8080".parse().unwrap(), &["argus.lan".into()]);
        assert!(p.accepts("argus.lan:8080") && p.accepts("0.0.0.0:8080") && !p.accepts("evil.example"));
        let p = HostPolicy::new("0.0.0.0:8080".parse().unwrap(), &["[fd00::1]".into(), "fd00::2".into()]);
        assert!(p.accepts("[fd00::1]:8080") && p.accepts("[fd00::2]:8080") && !p.accepts("[fd00::3]:8080"));
    }

    #[test]
    fn origins() {
        let cors = vec!["https://ops.example.com".to_string()];
        assert!(origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080"), &[]));
        assert!(origin_allowed("https://ops.example.com", Some("127.0.0.1:8080"), &cors));
        assert!(!origin_allowed("http://127.0.0.1:9999", Some("127.0.0.1:8080"), &cors));
        assert!(!origin_allowed("https://evil.example", Some("127.0.0.1:8080"), &cors));
        assert!(!origin_allowed("null", Some("127.0.0.1:8080"), &cors));
        assert!(!origin_allowed("http://127.0.0.1:8080", None, &[]));
        assert!(origin_allowed("null", None, &["*".into()]));
    }
}
