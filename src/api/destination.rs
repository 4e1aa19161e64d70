//! Where webhooks may go. A webhook URL comes from whoever calls the API, so without a
//! check it would make Argus a proxy into its own network: cloud metadata
//! (169.254.169.254), the loopback services beside it (ClickHouse, the broker), the
//! private LAN. Addresses are checked after DNS resolution, in the resolver the HTTP
//! client connects with, so a name that resolves to a public address at check time and
//! to an internal one at delivery time (DNS rebinding) is refused too. IP literals never
//! reach a resolver and are checked in [`DestinationPolicy::check_host`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// One `server.webhook_allow` entry: a host name, or an address/network.
#[derive(Debug, Clone, PartialEq)]
pub enum Allowed {
    Host(String),
    Net { addr: IpAddr, prefix: u8 },
}

impl Allowed {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty entry".into());
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        if let Ok(addr) = addr.trim_matches(['[', ']']).parse::<IpAddr>() {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("`{s}`: the prefix must be 0..={max}"))?,
                None => max,
            };
            return Ok(Self::Net { addr, prefix });
        }
        if prefix.is_some() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            return Err(format!("`{s}` is neither a host name nor an address or network"));
        }
        Ok(Self::Host(s.to_ascii_lowercase()))
    }

    fn covers(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::Net { addr: IpAddr::V4(net), prefix }, IpAddr::V4(ip)) => same_prefix(&net.octets(), &ip.octets(), *prefix),
            (Self::Net { addr: IpAddr::V6(net), prefix }, IpAddr::V6(ip)) => same_prefix(&net.octets(), &ip.octets(), *prefix),
            _ => false,
        }
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = (usize::from(prefix / 8), prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// Why an address is not on the public internet, or `None` when it is.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let seg = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the IPv4 address in its low 32 bits.
            let v4_at = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return internal_v4(v4_at(seg[6], seg[7]));
            }
            // IPv4-compatible (`::a.b.c.d`, deprecated but still routed by some stacks).
            if seg[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return internal_v4(v4_at(seg[6], seg[7])).or(Some("reserved"));
            }
            // 6to4 (2002::/16) carries the IPv4 address in bits 16..48; Teredo
            // (2001::/32) its client's, inverted, in the low 32 bits.
            if seg[0] == 0x2002
                && let Some(kind) = internal_v4(v4_at(seg[1], seg[2]))
            {
                return Some(kind);
            }
            if seg[..2] == [0x2001, 0]
                && let Some(kind) = internal_v4(v4_at(!seg[6], !seg[7]))
            {
                return Some(kind);
            }
            if seg[0] & 0xffc0 == 0xfec0 {
                return Some("private"); // site-local, deprecated
            }
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("private")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if o[0] == 0 {
        Some("unspecified")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (carrier-grade NAT)")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 || (o[0] == 192 && o[1] == 0 && o[2] == 0) {
        Some("reserved")
    } else {
        None
    }
}

/// The allow-list and the checks made with it.
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    allowed: Vec<Allowed>,
}

impl DestinationPolicy {
    pub fn new(entries: &[String]) -> Result<Self, String> {
        Ok(Self { allowed: entries.iter().map(|e| Allowed::parse(e)).collect::<Result<_, _>>()? })
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed.iter().any(|a| matches!(a, Allowed::Host(h) if *h == host))
    }

    /// `Err(reason)` when `ip`, reached for `host`, is internal and not allowed.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        match internal_kind(ip) {
            Some(_) if self.host_allowed(host) || self.allowed.iter().any(|a| a.covers(ip)) => Ok(()),
            Some(kind) => Err(format!("{kind} addresses are not webhook destinations (allow one with server.webhook_allow)")),
            None => Ok(()),
        }
    }

    /// The check that can be made before any lookup: IP literals and `localhost` names.
    pub fn check_host(&self, host: &url::Host<&str>) -> Result<(), String> {
        match host {
            url::Host::Ipv4(ip) => self.check_ip("", IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => self.check_ip("", IpAddr::V6(*ip)),
            url::Host::Domain(name) => {
                let n = name.trim_end_matches('.').to_ascii_lowercase();
                if (n == "localhost" || n.ends_with(".localhost")) && !self.host_allowed(&n) {
                    return Err("loopback addresses are not webhook destinations (allow one with server.webhook_allow)".into());
                }
                Ok(())
            }
        }
    }

    /// A resolver for the webhook client that drops refused addresses.
    pub fn resolver(self: &Arc<Self>) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { policy: self.clone() })
    }
}

/// Resolves with the system resolver and keeps only the addresses the policy allows;
/// none left is an error, reported like any failed connection.
pub struct GuardedResolver {
    policy: Arc<DestinationPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found.iter().copied().filter(|a| policy.check_ip(&host, a.ip()).is_ok()).collect();
            if kept.is_empty() && !found.is_empty() {
                tracing::warn!(host, "webhook host resolves only to internal addresses; refused");
                return Err(format!("{host} resolves only to internal addresses").into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_named() {
        for (a, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.1", "loopback"),
            ("10.0.0.7", "private"),
            ("172.31.255.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.3.3", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00:ec2::254", "private"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("64:ff9b::a00:1", "private"),
            ("::127.0.0.1", "loopback"),
            ("::a9fe:a9fe", "cloud metadata"),
            ("::8.8.8.8", "reserved"),
            ("2002:7f00:1::", "loopback"),
            ("2002:c0a8:101::1", "private"),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
            ("fec0::1", "private"),
        ] {
            assert_eq!(internal_kind(ip(a)), Some(kind), "{a}");
        }
        for a in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:4860:4860::8888", "::ffff:1.1.1.1", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7"] {
            assert_eq!(internal_kind(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn the_allow_list_takes_networks_addresses_and_names() {
        let p = DestinationPolicy::new(&["10.1.2.0/24".into(), "127.0.0.1".into(), "Hooks.LAN".into(), "fd00::/8".into()]).unwrap();
        assert!(p.check_ip("", ip("10.1.2.200")).is_ok());
        assert!(p.check_ip("", ip("10.1.3.1")).unwrap_err().contains("private"));
        assert!(p.check_ip("", ip("127.0.0.1")).is_ok());
        assert!(p.check_ip("", ip("127.0.0.2")).is_err());
        assert!(p.check_ip("hooks.lan", ip("192.168.0.9")).is_ok());
        assert!(p.check_ip("", ip("fd12::1")).is_ok());
        assert!(p.check_ip("", ip("8.8.8.8")).is_ok());
        assert!(p.check_ip("", ip("169.254.169.254")).unwrap_err().contains("metadata"));
        assert!(DestinationPolicy::new(&["10.0.0.0/33".into()]).is_err());
        assert!(DestinationPolicy::new(&["http://x".into()]).is_err());
        assert!(same_prefix(&[10, 1, 2, 3], &[10, 1, 2, 100], 25));
        assert!(!same_prefix(&[10, 1, 2, 3], &[10, 1, 2, 100], 26));
        assert!(same_prefix(&[1, 2, 3, 4], &[9, 9, 9, 9], 0));
    }

    #[test]
    fn literals_and_localhost_are_checked_before_any_lookup() {
        let p = DestinationPolicy::default();
        for u in ["http://127.0.0.1:9/x", "http://[::1]/", "http://localhost/", "http://a.localhost./", "http://169.254.169.254/latest", "http://0x7f000001/"] {
            let url = reqwest::Url::parse(u).unwrap();
            assert!(p.check_host(&url.host().unwrap()).is_err(), "{u}");
        }
        assert!(p.check_host(&url::Host::Domain("hooks.example.com")).is_ok());
    }
}
