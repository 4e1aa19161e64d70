//! Bearer API keys. Keys are kept as SHA-256 digests and compared in constant time
//! (every stored digest, every byte), so neither timing nor a heap dump gives one away.
//! Browsers cannot set headers on `EventSource`, `<img>` or WebSocket requests, so an
//! `access_token` query parameter is accepted too; it is removed from the request before
//! any handler or log sees the query.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;

#[derive(Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
    /// Per digest, the key's name (`server.named_api_keys`), if it has one.
    names: Vec<Option<String>>,
    protect_metrics: bool,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for i in 0..32 {
        diff |= a[i] ^ b[i];
    }
    std::hint::black_box(diff) == 0
}

impl ApiKeys {
    /// These keys (empty ones ignored); [`ApiKeys::from_env_and`] adds `ARGUS_API_KEYS`.
    pub fn new<I: IntoIterator<Item = String>>(keys: I, protect_metrics: bool) -> Self {
        Self::with_names(keys.into_iter().map(|k| (None, k)), protect_metrics)
    }

    /// Keys, some with a name; a key given twice keeps its name.
    pub fn with_names<I: IntoIterator<Item = (Option<String>, String)>>(keys: I, protect_metrics: bool) -> Self {
        let mut all: Vec<([u8; 32], Option<String>)> =
            keys.into_iter().map(|(n, k)| (n, k.trim().to_string())).filter(|(_, k)| !k.is_empty()).map(|(n, k)| (digest(&k), n)).collect();
        // Named first among equal digests, so dedup keeps the name.
        all.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.is_some().cmp(&a.1.is_some())));
        all.dedup_by(|a, b| a.0 == b.0);
        let (digests, names) = all.into_iter().unzip();
        Self { digests, names, protect_metrics }
    }

    /// Who key `index` ([`Self::key_index`]) is: its name, or `key-` and the first 8 hex
    /// digits of its SHA-256 (which tells keys apart without giving one away).
    pub fn name_of(&self, index: usize) -> String {
        match self.names.get(index).cloned().flatten() {
            Some(n) => n,
            None => format!("key-{}", self.digests.get(index).map(|d| hex::encode(&d[..4])).unwrap_or_default()),
        }
    }

    /// Key `index`'s name when it has one (`server.named_api_keys`).
    pub fn named(&self, index: usize) -> Option<&str> {
        self.names.get(index).and_then(|n| n.as_deref())
    }

    /// The configured keys plus those in `ARGUS_API_KEYS`, which must meet the same
    /// rules as keys in a file (a short key in the environment is no safer).
    pub fn from_env_and(config: &[String], named: &std::collections::BTreeMap<String, String>, protect_metrics: bool) -> Result<Self, String> {
        let env = std::env::var("ARGUS_API_KEYS").unwrap_or_default();
        let from_env: Vec<String> = env.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect();
        if let Some(i) = from_env.iter().position(|k| !super::config::acceptable_key(k)) {
            return Err(format!(
                "ARGUS_API_KEYS: key {} of {} is shorter than {} characters or holds spaces (fix: generate one, e.g. `openssl rand -hex 24`)",
                i + 1,
                from_env.len(),
                super::config::MIN_SECRET_LEN
            ));
        }
        let unnamed = config.iter().cloned().chain(from_env).map(|k| (None, k));
        Ok(Self::with_names(named.iter().map(|(n, k)| (Some(n.clone()), k.clone())).chain(unnamed), protect_metrics))
    }

    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Compares against every key (no early exit) so the time does not depend on which
    /// key matched, or how much of one did.
    pub fn accepts(&self, presented: &str) -> bool {
        self.key_index(presented).is_some()
    }

    /// Which key matched (an index into the sorted digests: an identity for per-key
    /// limits that reveals nothing about the key), compared against every key alike.
    pub fn key_index(&self, presented: &str) -> Option<usize> {
        let d = digest(presented);
        self.digests.iter().enumerate().fold(None, |found, (i, k)| if ct_eq(&d, k) { Some(i) } else { found })
    }

    /// Routes that answer without a key: probes, the static pages (they hold no data and
    /// ask for the key themselves) and, unless protected, the Prometheus scrape.
    pub fn is_public(&self, method: &Method, path: &str) -> bool {
        if method == Method::OPTIONS {
            return true;
        }
        match path {
            "/healthz" | "/readyz" | "/" | "/docs" | "/openapi.json" | "/favicon.ico" => true,
            "/metrics" => !self.protect_metrics,
            _ => false,
        }
    }
}

/// Splits `access_token` out of a query string: (token, the remaining query).
pub fn take_access_token(query: &str) -> (Option<String>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("access_token", v)) => {
                token = serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("t={v}")).ok().and_then(|mut p| p.pop()).map(|(_, v)| v)
            }
            _ => rest.push(pair),
        }
    }
    (token, rest.join("&"))
}

fn without_token(uri: &Uri, rest: &str) -> Uri {
    let pq = if rest.is_empty() { uri.path().to_string() } else { format!("{}?{rest}", uri.path()) };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// Who is asking, for routes that answer everyone but not everything (`/readyz`): set
/// by [`require_key`] on every request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// A valid key was presented, or the API needs none.
    pub authenticated: bool,
    /// Which key (`None` without keys), for per-key limits.
    pub key: Option<usize>,
}

pub async fn require_key(State(keys): State<Arc<ApiKeys>>, mut req: Request, next: Next) -> Response {
    let mut token = None;
    if let Some(q) = req.uri().query()
        && q.contains("access_token")
    {
        let (t, rest) = take_access_token(q);
        token = t;
        let uri = without_token(req.uri(), &rest);
        *req.uri_mut() = uri;
    }
    if !keys.enabled() {
        req.extensions_mut().insert(Caller { authenticated: true, key: None });
        return next.run(req).await;
    }
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|v| v.trim().to_string());
    let presented = header_token.or(token);
    if keys.is_public(req.method(), req.uri().path()) {
        // Public routes answer anyone, but say less to a caller without a key.
        let key = presented.as_deref().and_then(|t| keys.key_index(t));
        req.extensions_mut().insert(Caller { authenticated: key.is_some(), key });
        return next.run(req).await;
    }
    match presented.as_deref().map(|t| keys.key_index(t)) {
        Some(Some(key)) => {
            req.extensions_mut().insert(Caller { authenticated: true, key: Some(key) });
            next.run(req).await
        }
        Some(None) => ApiError::unauthorized("the API key is not valid").into_response(),
        None => ApiError::unauthorized("an API key is required: send `Authorization: Bearer <key>` (or `?access_token=<key>` where headers cannot be set)")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly() {
        let k = ApiKeys::new(vec!["0123456789abcdef".to_string(), " second-key-xxxxxxxx ".to_string(), String::new()], false);
        assert_eq!(k.len(), 2);
        assert!(k.accepts("0123456789abcdef"));
        assert!(k.accepts("second-key-xxxxxxxx"));
        assert!(!k.accepts("0123456789abcdeF"));
        assert!(!k.accepts("0123456789abcde"));
        assert!(!k.accepts(""));
        assert!(!ApiKeys::new(Vec::<String>::new(), false).enabled());
    }

    #[test]
    fn named_keys_say_who_and_unnamed_ones_a_digest_prefix() {
        let k = ApiKeys::with_names(
            [
                (Some("alice".to_string()), "alice-key-0123456789".to_string()),
                (None, "anonymous-key-012345".to_string()),
                (None, "alice-key-0123456789".to_string()),
            ],
            false,
        );
        assert_eq!(k.len(), 2, "one key given twice counts once");
        assert_eq!(k.name_of(k.key_index("alice-key-0123456789").unwrap()), "alice", "and keeps its name");
        let other = k.name_of(k.key_index("anonymous-key-012345").unwrap());
        assert_eq!(other, format!("key-{}", &hex::encode(digest("anonymous-key-012345"))[..8]));
    }

    #[test]
    fn public_routes() {
        let k = ApiKeys::new(vec!["0123456789abcdef".to_string()], false);
        assert!(k.is_public(&Method::GET, "/healthz"));
        assert!(k.is_public(&Method::GET, "/metrics"));
        assert!(!k.is_public(&Method::GET, "/v1/events"));
        assert!(k.is_public(&Method::OPTIONS, "/v1/events"));
        let p = ApiKeys::new(vec!["0123456789abcdef".to_string()], true);
        assert!(!p.is_public(&Method::GET, "/metrics"));
    }

    #[test]
    fn access_token_is_taken_out_of_the_query() {
        assert_eq!(take_access_token("camera=a&access_token=k%2B1&min_level=high"), (Some("k+1".into()), "camera=a&min_level=high".into()));
        assert_eq!(take_access_token("camera=a"), (None, "camera=a".into()));
        let uri: Uri = "/v1/events?access_token=x".parse().unwrap();
        assert_eq!(without_token(&uri, "").to_string(), "/v1/events");
    }
}
