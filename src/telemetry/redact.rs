//! Credentials never reach a log, an event or an API response.

/// Removes credentials from a URL before it reaches a log, event or API response:
/// `rtsp://user:pass@host/x` → `rtsp://***@host/x`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rfind('@') {
        Some(i) => format!("{scheme}://***@{}{path}", &authority[i + 1..]),
        None => url.to_string(),
    }
}

/// Redacts every URL's credentials inside free text (library error messages quote URLs).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The URL starts at the scheme just before "://" and ends at whitespace or a quote.
        let scheme_start = rest[..i].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')).map(|p| p + 1).unwrap_or(0);
        let end = rest[i..].find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ')' || c == '>').map(|p| i + p).unwrap_or(rest.len());
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact_url(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_only() {
        assert_eq!(redact_url("rtsp://admin:secret@10.0.0.5:554/live"), "rtsp://***@10.0.0.5:554/live");
        assert_eq!(redact_url("rtsp://cam.local/live"), "rtsp://cam.local/live");
        assert_eq!(redact_url("rtsp://u:p@host"), "rtsp://***@host");
        assert_eq!(redact_url("/plain/path.mp4"), "/plain/path.mp4");
    }

    #[test]
    fn redacts_urls_inside_messages() {
        assert_eq!(
            redact_text("Could not open \"rtsp://admin:pw@cam:554/a\" (uri rtsp://x@y/z); see file:///tmp/a"),
            "Could not open \"rtsp://***@cam:554/a\" (uri rtsp://***@y/z); see file:///tmp/a"
        );
        assert_eq!(redact_text("no urls here"), "no urls here");
    }
}
