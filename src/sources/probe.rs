//! A liveness probe for stream cameras: is the server there and serving the stream?
//!
//! Rebuilding a GStreamer pipeline against a dead camera costs a thread, a decoder and
//! a log line per attempt, so a live source backs off between rebuilds — but a backoff
//! that grew during a long outage leaves a returning camera unwatched for most of a
//! step. Instead, once a stream has failed, its source asks the server cheaply, on a
//! short fixed interval, whether it would serve, and rebuilds the moment it would.
//!
//! For RTSP the probe opens a TCP connection and sends one `DESCRIBE` for the camera's
//! path (no credentials: a `401` already says the server is up and serving). For HTTP
//! a TCP connect is the probe. On a dead host that is one TCP connection attempt per
//! interval and camera; on a live server that does not serve the path, one `DESCRIBE`.
//! Pure std networking: no system library, tested without GStreamer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Where to probe a stream URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub host: String,
    pub port: u16,
    /// The URI to `DESCRIBE`, without credentials; `None` = a TCP connect only.
    pub describe: Option<String>,
}

impl ProbeTarget {
    /// The target of a stream URI, or `None` for schemes without a probe (files, UDP).
    pub fn of(uri: &str) -> Option<Self> {
        let (scheme, rest) = uri.split_once("://")?;
        let (default_port, rtsp) = match scheme.to_ascii_lowercase().as_str() {
            "rtsp" | "rtspt" | "rtspu" => (554, true),
            // RTSP over TLS: the connect says the host is there; DESCRIBE would need TLS.
            "rtsps" => (322, false),
            "http" => (80, false),
            "https" => (443, false),
            _ => return None,
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let (host, port) = split_host_port(hostport, default_port)?;
        let describe = rtsp.then(|| {
            let path = if path.is_empty() { "/" } else { path };
            format!("rtsp://{hostport}{path}")
        });
        Some(Self { host, port, describe })
    }

    pub fn address(&self) -> String {
        if self.host.contains(':') { format!("[{}]:{}", self.host, self.port) } else { format!("{}:{}", self.host, self.port) }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (s, default_port),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The server answered `DESCRIBE` with `200`, or asks for credentials (`401`, which
    /// the pipeline sends), or (no `DESCRIBE` for this scheme) accepted the connection.
    Ready,
    /// Nothing listens on the port (the host is up: connection refused).
    Refused,
    /// No route to the host or its network.
    Unreachable,
    /// The connection attempt got no answer in time (a host that is off, or filtered).
    ConnectTimedOut,
    /// The connection was accepted but no RTSP reply came in time (a frozen server).
    NoAnswer,
    /// The server answers but does not serve the stream now (e.g. `404`, `503`).
    NotServing { status: u16, reason: String },
    /// The reply was not RTSP.
    Garbled,
    /// The host name does not resolve.
    Unresolved(String),
    /// Another I/O error.
    Failed(String),
}

impl ProbeOutcome {
    pub fn is_ready(&self) -> bool {
        *self == Self::Ready
    }

    /// The metric label (`argus_source_probes_total{result}`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Refused => "refused",
            Self::Unreachable => "unreachable",
            Self::ConnectTimedOut => "connect_timeout",
            Self::NoAnswer => "no_answer",
            Self::NotServing { .. } => "not_serving",
            Self::Garbled => "garbled",
            Self::Unresolved(_) => "unresolved",
            Self::Failed(_) => "failed",
        }
    }

    /// In words, for `/v1/cameras` and logs.
    pub fn describe(&self, target: &ProbeTarget) -> String {
        let at = target.address();
        match self {
            Self::Ready => format!("{at} answers"),
            Self::Refused => format!("connection refused by {at} (host up, nothing listening)"),
            Self::Unreachable => format!("no route to {at}"),
            Self::ConnectTimedOut => format!("no answer from {at} (host off, or packets filtered)"),
            Self::NoAnswer => format!("{at} accepted the connection but sent no RTSP reply (server frozen?)"),
            Self::NotServing { status, reason } => format!("{at} answers DESCRIBE with {status} {reason}: not serving the stream"),
            Self::Garbled => format!("{at} does not speak RTSP"),
            Self::Unresolved(e) => format!("cannot resolve {}: {e}", target.host),
            Self::Failed(e) => format!("probing {at}: {e}"),
        }
    }
}

/// How long one probe may take.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTimeouts {
    pub connect: Duration,
    pub reply: Duration,
}

impl Default for ProbeTimeouts {
    fn default() -> Self {
        // Linux reports "no route" (EHOSTUNREACH) only after ~1 s of neighbour discovery.
        Self { connect: Duration::from_secs(2), reply: Duration::from_secs(2) }
    }
}

/// Probes the target once (blocking, at most `connect + reply` per resolved address).
pub fn probe(target: &ProbeTarget, t: ProbeTimeouts) -> ProbeOutcome {
    let addrs: Vec<SocketAddr> = match (target.host.as_str(), target.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return ProbeOutcome::Unresolved(e.to_string()),
    };
    let mut last = ProbeOutcome::Unresolved("no address".into());
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, t.connect) {
            Ok(stream) => {
                return match &target.describe {
                    Some(uri) => describe(stream, uri, t.reply),
                    None => ProbeOutcome::Ready,
                };
            }
            Err(e) => last = connect_error(&e),
        }
    }
    last
}

fn connect_error(e: &std::io::Error) -> ProbeOutcome {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => ProbeOutcome::Refused,
        K::HostUnreachable | K::NetworkUnreachable => ProbeOutcome::Unreachable,
        K::TimedOut | K::WouldBlock => ProbeOutcome::ConnectTimedOut,
        _ => ProbeOutcome::Failed(e.to_string()),
    }
}

fn describe(mut stream: TcpStream, uri: &str, reply_timeout: Duration) -> ProbeOutcome {
    let request = format!("DESCRIBE {uri} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\nUser-Agent: argus-probe\r\n\r\n");
    let deadline = Instant::now() + reply_timeout;
    if let Err(e) = stream.set_write_timeout(Some(reply_timeout)).and_then(|_| stream.write_all(request.as_bytes())) {
        return ProbeOutcome::Failed(e.to_string());
    }
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    // The status line is all the probe needs.
    while !head.contains(&b'\n') && head.len() < 4096 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return ProbeOutcome::NoAnswer;
        }
        if let Err(e) = stream.set_read_timeout(Some(left)) {
            return ProbeOutcome::Failed(e.to_string());
        }
        match stream.read(&mut buf) {
            Ok(0) if head.is_empty() => return ProbeOutcome::NoAnswer,
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return ProbeOutcome::NoAnswer,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return ProbeOutcome::NoAnswer,
            Err(e) => return ProbeOutcome::Failed(e.to_string()),
        }
    }
    classify_reply(&head)
}

/// Judges a reply by its status line.
pub fn classify_reply(head: &[u8]) -> ProbeOutcome {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return ProbeOutcome::Garbled;
    };
    let Ok(status) = code.parse::<u16>() else {
        return ProbeOutcome::Garbled;
    };
    if !version.starts_with("RTSP/") {
        return ProbeOutcome::Garbled;
    }
    match status {
        200..=299 | 401 | 407 => ProbeOutcome::Ready,
        _ => ProbeOutcome::NotServing { status, reason: parts.next().unwrap_or("").chars().take(80).collect() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn targets_come_from_stream_uris_without_credentials() {
        let t = ProbeTarget::of("rtsp://op:pw@cam.example:8554/live/main?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("cam.example", 8554));
        assert_eq!(t.describe.as_deref(), Some("rtsp://cam.example:8554/live/main?x=1"));
        let t = ProbeTarget::of("rtsp://10.0.0.5").unwrap();
        assert_eq!((t.port, t.describe.as_deref()), (554, Some("rtsp://10.0.0.5/")));
        let t = ProbeTarget::of("rtsp://[fe80::1]:9000/s").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.address()), ("fe80::1", 9000, "[fe80::1]:9000".to_string()));
        assert_eq!(ProbeTarget::of("https://cam/mjpeg").unwrap(), ProbeTarget { host: "cam".into(), port: 443, describe: None });
        assert_eq!(ProbeTarget::of("rtsps://cam/s").unwrap().port, 322);
        assert!(ProbeTarget::of("file:///v.mp4").is_none());
        assert!(ProbeTarget::of("udp://239.0.0.1:5000").is_none());
        assert!(ProbeTarget::of("rtsp://:554/x").is_none());
        assert!(ProbeTarget::of("rtsp://cam:notaport/x").is_none());
    }

    #[test]
    fn replies_are_judged_by_their_status_line() {
        assert_eq!(classify_reply(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n"), ProbeOutcome::Ready);
        assert_eq!(classify_reply(b"RTSP/1.0 401 Unauthorized\r\n"), ProbeOutcome::Ready);
        assert_eq!(classify_reply(b"RTSP/1.0 404 Not Found\r\n"), ProbeOutcome::NotServing { status: 404, reason: "Not Found".into() });
        assert_eq!(classify_reply(b"RTSP/1.0 503\r\n"), ProbeOutcome::NotServing { status: 503, reason: String::new() });
        assert_eq!(classify_reply(b"HTTP/1.1 200 OK\r\n"), ProbeOutcome::Garbled);
        assert_eq!(classify_reply(b"\x00\xff garbage"), ProbeOutcome::Garbled);
        assert_eq!(classify_reply(b""), ProbeOutcome::Garbled);
    }

    /// A one-shot server that answers the first request with `reply` (or holds the
    /// connection silently when `None`).
    fn serve_once(reply: Option<&'static str>) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap_or(0);
            match reply {
                Some(r) => s.write_all(r.as_bytes()).unwrap(),
                None => std::thread::sleep(Duration::from_millis(700)),
            }
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (port, h)
    }

    fn quick() -> ProbeTimeouts {
        ProbeTimeouts { connect: Duration::from_millis(500), reply: Duration::from_millis(300) }
    }

    #[test]
    fn a_server_that_serves_is_ready_and_sees_no_credentials() {
        let (port, h) = serve_once(Some("RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"));
        let t = ProbeTarget::of(&format!("rtsp://user:secret@127.0.0.1:{port}/cam")).unwrap();
        assert_eq!(probe(&t, quick()), ProbeOutcome::Ready);
        let request = h.join().unwrap();
        assert!(request.starts_with(&format!("DESCRIBE rtsp://127.0.0.1:{port}/cam RTSP/1.0\r\n")), "{request}");
        assert!(!request.contains("secret") && !request.contains("user"), "{request}");
    }

    #[test]
    fn a_refused_a_silent_and_a_not_serving_server_are_told_apart() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again
        let t = ProbeTarget::of(&format!("rtsp://127.0.0.1:{port}/cam")).unwrap();
        assert_eq!(probe(&t, quick()), ProbeOutcome::Refused);
        assert!(ProbeOutcome::Refused.describe(&t).contains("refused"));

        let (port, h) = serve_once(None);
        let t = ProbeTarget::of(&format!("rtsp://127.0.0.1:{port}/cam")).unwrap();
        let start = Instant::now();
        assert_eq!(probe(&t, quick()), ProbeOutcome::NoAnswer);
        assert!(start.elapsed() < Duration::from_millis(650), "bounded by the reply timeout: {:?}", start.elapsed());
        h.join().unwrap();

        let (port, h) = serve_once(Some("RTSP/1.0 404 Not Found\r\nCSeq: 1\r\n\r\n"));
        let t = ProbeTarget::of(&format!("rtsp://127.0.0.1:{port}/cam")).unwrap();
        let got = probe(&t, quick());
        assert_eq!(got.label(), "not_serving");
        assert!(got.describe(&t).contains("404 Not Found"), "{}", got.describe(&t));
        h.join().unwrap();

        let t = ProbeTarget { host: "argus-no-such-host.invalid".into(), port: 554, describe: None };
        assert_eq!(probe(&t, quick()).label(), "unresolved");
    }

    #[test]
    fn connect_errors_are_classified() {
        use std::io::{Error, ErrorKind as K};
        assert_eq!(connect_error(&Error::from(K::ConnectionRefused)), ProbeOutcome::Refused);
        assert_eq!(connect_error(&Error::from(K::HostUnreachable)), ProbeOutcome::Unreachable);
        assert_eq!(connect_error(&Error::from(K::NetworkUnreachable)), ProbeOutcome::Unreachable);
        assert_eq!(connect_error(&Error::from(K::TimedOut)), ProbeOutcome::ConnectTimedOut);
        assert_eq!(connect_error(&Error::from(K::PermissionDenied)).label(), "failed");
    }
}
