//! Credentials never reach a log, an event or an API response.

/// Query parameters whose values are credentials (compared without case).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "token",
    "access_token",
    "auth",
    "authorization",
    "key",
    "apikey",
    "api_key",
    "secret",
    "signature",
    "sig",
    "credential",
    "credentials",
    "session",
    "sessionid",
];

/// Removes credentials from a URL before it reaches a log, event or API response:
/// `rtsp://user:pass@host/x?token=t` → `rtsp://***@host/x?token=***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(i) => format!("***@{}", &authority[i + 1..]),
        None => authority.to_string(),
    };
    format!("{scheme}://{host}{}", redact_query(tail))
}

/// `path?query#fragment` with the values of credential parameters replaced.
fn redact_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else { return tail.to_string() };
    let (path, after) = (&tail[..q], &tail[q + 1..]);
    let (query, fragment) = after.find('#').map_or((after, ""), |h| after.split_at(h));
    let params: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(k)) => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}{fragment}", params.join("&"))
}

fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'
}

/// Where the scheme ending at byte `i` of `s` starts (char boundaries only).
fn scheme_start(s: &str, i: usize) -> usize {
    s[..i].char_indices().rev().find(|(_, c)| !is_scheme_char(*c)).map_or(0, |(p, c)| p + c.len_utf8())
}

/// Redacts every URL's credentials inside free text (library error messages quote URLs).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The URL starts at the scheme just before "://" and ends at whitespace, a
        // quote or a closing bracket — or where the next URL's scheme begins.
        let start = scheme_start(rest, i);
        let mut end = rest[i..].find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | '<')).map_or(rest.len(), |p| i + p);
        if let Some(next) = rest[i + 3..end].find("://") {
            end = scheme_start(rest, i + 3 + next).max(i + 3);
        }
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
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

    #[test]
    fn a_non_ascii_character_right_before_the_scheme_is_no_panic() {
        assert_eq!(redact_text("é://u:p@h/x"), "é://***@h/x");
        assert_eq!(redact_text("日rtsp://u:p@h"), "日rtsp://***@h");
        assert_eq!(redact_text("🎥://"), "🎥://");
    }

    #[test]
    fn credentials_in_query_strings_are_redacted_like_userinfo() {
        assert_eq!(redact_url("rtsp://cam/live?user=op&password=hunter2&ch=1"), "rtsp://cam/live?user=op&password=***&ch=1");
        assert_eq!(redact_url("http://h:8123/?TOKEN=abc#frag"), "http://h:8123/?TOKEN=***#frag");
        assert_eq!(redact_url("https://h?api_key=k"), "https://h?api_key=***");
        assert_eq!(redact_url("rtsp://h/p?keyframe=1"), "rtsp://h/p?keyframe=1");
        // A query right after the host, with an @ in a later part.
        assert_eq!(redact_url("rtsp://u:pw@h?x=a@b"), "rtsp://***@h?x=a@b");
        assert_eq!(redact_text("two: a://x:s1@h b://y:s2@k"), "two: a://***@h b://***@k");
        assert_eq!(redact_text("nested x://rtsp://u:s@h/p"), "nested x://rtsp://***@h/p");
    }

    /// A small deterministic generator (xorshift), so the property runs the same everywhere.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[(self.next() % xs.len() as u64) as usize]
        }
    }

    const PIECES: &[&str] = &[
        "rtsp", "://", "@", ":", "/", "?", "&", "=", "#", "password", "token", "é", "日", "🎥", " ", "\"", "'", ")", "[", "]", "x", "1", "-", "+", ".", "\n",
        "%40",
    ];

    #[test]
    fn fuzzed_text_never_panics_and_never_shows_a_planted_secret() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let noise = |g: &mut Gen| (0..g.next() % 12).map(|_| g.pick(PIECES)).collect::<String>();
            // Any text at all: no panic.
            let text = noise(&mut g);
            let _ = redact_text(&text);
            let _ = redact_url(&text);
            // A secret in userinfo or a credential parameter, between arbitrary noise.
            let url = match g.next() % 3 {
                0 => "rtsp://op:S3CRET-X@cam:554/live".to_string(),
                1 => "http://h/p?a=1&password=S3CRET-X".to_string(),
                _ => "https://S3CRET-X@h".to_string(),
            };
            let planted = format!("{}{url}{}{}", noise(&mut g), g.pick(&[" ", "\"", ")", "\n"]), noise(&mut g));
            let red = redact_text(&planted);
            assert!(!red.contains("S3CRET"), "{planted:?} → {red:?}");
        }
    }
}
