//! Webhook delivery of finished analysis tasks (seed 001): the JSON body is signed with
//! HMAC-SHA256 over `"{timestamp}.{body}"` (so a captured delivery cannot be replayed
//! with a new time stamp) and POSTed with retries and exponential backoff.
//!
//! Headers: `X-Argus-Signature: sha256=<hex>`, `X-Argus-Timestamp: <unix seconds>`,
//! `X-Argus-Task-Id`, `X-Argus-Attempt`. A 2xx answer is a delivery; anything else (or
//! no answer within the timeout) is retried up to the configured attempts.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::destination::DestinationPolicy;
use crate::analysis::tasks::TaskStore;
use crate::telemetry::metrics::Metrics;

pub struct WebhookSettings {
    pub secret: Option<String>,
    /// Which addresses deliveries may reach (internal ones only when allowed).
    pub destinations: Arc<DestinationPolicy>,
    pub attempts: u32,
    pub timeout: Duration,
    /// First backoff; doubled after each failure, capped at 60 s.
    pub first_backoff: Duration,
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The client deliveries go through: no redirects (a redirect could point anywhere),
/// no proxy from the environment (it would resolve names where the policy cannot see),
/// and a resolver that drops internal addresses.
pub fn client(destinations: &Arc<DestinationPolicy>) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().dns_resolver(destinations.resolver()).build()
}

/// Checks a URL before a task is accepted: absolute http(s) with a host that is not an
/// internal address literal (names are checked again when they are resolved).
pub fn check_url(url: &str, destinations: &DestinationPolicy) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("`webhook_url` is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
        return Err("`webhook_url` must be an absolute http:// or https:// URL".into());
    }
    if let Some(host) = u.host() {
        destinations.check_host(&host).map_err(|e| format!("`webhook_url`: {e}"))?;
    }
    if u.scheme() == "https" && !cfg!(feature = "webhook-tls") {
        return Err("this build has no TLS for webhooks (feature `webhook-tls`); use http:// or rebuild".into());
    }
    Ok(u)
}

/// Delivers `body` for `task_id`, recording attempts on the task.
pub async fn deliver(
    client: reqwest::Client,
    settings: Arc<WebhookSettings>,
    tasks: Arc<TaskStore>,
    metrics: Arc<Metrics>,
    task_id: String,
    url: reqwest::Url,
    body: Vec<u8>,
) {
    let Some(secret) = settings.secret.clone() else { return };
    let mut backoff = settings.first_backoff;
    for attempt in 1..=settings.attempts {
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let result = client
            .post(url.clone())
            .timeout(settings.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Argus-Signature", sign(&secret, ts, &body))
            .header("X-Argus-Timestamp", ts.to_string())
            .header("X-Argus-Task-Id", task_id.as_str())
            .header("X-Argus-Attempt", attempt.to_string())
            .body(body.clone())
            .send()
            .await;
        let error = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
            // One wording for refused, unreachable and silent hosts alike: telling them
            // apart would let a caller map the network behind Argus.
            Err(_) => Some("no answer (connection failed or timed out)".to_string()),
        };
        let delivered = error.is_none();
        tasks.update(&task_id, |t| {
            if let Some(w) = &mut t.webhook {
                w.attempts = attempt;
                w.delivered = delivered;
                w.last_error = error.clone();
            }
        });
        if delivered {
            metrics.webhooks.with_label_values(&["delivered"]).inc();
            tracing::info!(task_id, attempt, "webhook delivered");
            return;
        }
        metrics.webhooks.with_label_values(&["failed_attempt"]).inc();
        // The URL's host only: its path or query may hold a token.
        tracing::warn!(task_id, attempt, host = url.host_str().unwrap_or(""), error = error.as_deref().unwrap_or(""), "webhook attempt failed");
        if attempt < settings.attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }
    metrics.webhooks.with_label_values(&["gave_up"]).inc();
    tracing::error!(task_id, attempts = settings.attempts, "webhook not delivered; giving up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // Python: hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(sign("key", 1_700_000_000, b"{}"), "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae");
        assert_ne!(sign("key", 1_700_000_000, b"{}"), sign("key", 1_700_000_001, b"{}"));
        assert_ne!(sign("key", 1, b"a"), sign("other", 1, b"a"));
    }

    #[test]
    fn urls_are_checked() {
        let open = DestinationPolicy::default();
        assert!(check_url("http://hooks.example.com:9000/hook?t=1", &open).is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook", &open).unwrap_err().contains("loopback"));
        assert!(check_url("http://169.254.169.254/latest/meta-data", &open).unwrap_err().contains("metadata"));
        let local = DestinationPolicy::new(&["127.0.0.1".into()]).unwrap();
        assert!(check_url("http://127.0.0.1:9000/hook?t=1", &local).is_ok());
        assert!(check_url("ftp://example.com/x", &open).is_err());
        assert!(check_url("not a url", &open).is_err());
        assert!(check_url("/relative", &open).is_err());
    }
}
