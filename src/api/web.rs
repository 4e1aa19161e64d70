//! The two static pages Argus serves itself: the operator page at `/` (cameras with live
//! snapshots, the live event feed) and the API docs at `/docs` (rendered from
//! `/openapi.json`). Each is one self-contained HTML file compiled into the binary, so
//! there is no build step, no asset directory to deploy and nothing fetched from elsewhere.
//!
//! The pages hold no data: they read the `/v1` API from the browser, asking for an API key
//! when the server answers 401, so they are served without one.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("web/index.html");
const DOCS: &str = include_str!("web/docs.html");

/// Same origin only. Scripts and styles are inline (the pages are single files), so
/// `'unsafe-inline'` is needed for them; everything else — fetches, the event stream,
/// snapshots — must come from Argus itself. `data:`/`blob:` images are allowed for
/// placeholders; frames, forms and plugins are not.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

fn page(html: &'static str) -> Response {
    let mut r = html.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // Always revalidate: a new Argus version must not be paired with an old cached page.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The stream and snapshot URLs carry `access_token` when keys are on: never send them
    // to another site as a referrer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// `GET /`: the operator page.
pub async fn index() -> Response {
    page(INDEX)
}

/// `GET /docs`: the API reference, rendered in the browser from `/openapi.json`.
pub async fn docs() -> Response {
    page(DOCS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(r: &Response, name: header::HeaderName) -> String {
        r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn pages_are_html_with_a_strict_policy() {
        for (r, marker) in [(index().await, "id=\"cameras\""), (docs().await, "openapi.json")] {
            assert_eq!(r.status(), axum::http::StatusCode::OK);
            assert_eq!(header_of(&r, header::CONTENT_TYPE), "text/html; charset=utf-8");
            assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-cache");
            let csp = header_of(&r, header::CONTENT_SECURITY_POLICY);
            assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'") && csp.contains("img-src 'self' data: blob:"), "{csp}");
            assert_eq!(header_of(&r, header::REFERRER_POLICY), "no-referrer");
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            let text = std::str::from_utf8(&body).unwrap();
            assert!(text.contains(marker));
        }
    }

    /// Self-contained means no URL to another host anywhere in either page: no CDN, no
    /// web font, no analytics (the CSP would block them anyway, silently breaking the page).
    #[test]
    fn pages_reference_no_other_host() {
        for (name, html) in [("index.html", INDEX), ("docs.html", DOCS)] {
            for needle in ["http://", "https://", "//cdn", "src=\"//", "href=\"//"] {
                assert!(!html.contains(needle), "{name} contains `{needle}`");
            }
            assert!(!html.contains("innerHTML"), "{name}: build DOM with textContent, never innerHTML (captions and ids come from the server)");
        }
    }
}
