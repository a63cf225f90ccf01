//! Who the client is: the peer's address, or — only when the peer is a trusted proxy — the address its
//! `X-Forwarded-For` names. Pure functions over bytes, no allocation on the common path.

use std::net::IpAddr;

use meridian_config::Cidr;

/// Whether `ip` is in one of the trusted networks.
pub fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// The client's address: the peer, unless the peer is trusted and sent `X-Forwarded-For`; then the
/// right-most address of that header that is not itself trusted (the first hop nobody we trust vouches
/// for), or the left-most if all are trusted. Unparsable entries stop the walk (what is left of them
/// cannot be believed): the address found so far, or the peer, is the client.
pub fn client_ip(peer: IpAddr, xff: Option<&[u8]>, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    let Some(xff) = xff else { return peer };
    if trusted.is_empty() || !is_trusted(trusted, peer) {
        return peer;
    }
    let Ok(text) = std::str::from_utf8(xff) else {
        return peer;
    };
    let mut client = peer;
    for part in text.rsplit(',') {
        let part = part.trim();
        let Some(ip) = parse_forwarded_ip(part) else {
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(trusted, client) {
            return client;
        }
    }
    client
}

/// An address as it appears in `X-Forwarded-For`: bare, `[v6]`, or with a port (`1.2.3.4:5678`,
/// `[v6]:port`).
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    s.rsplit_once(':')
        .and_then(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))
}

/// The `X-Forwarded-For` to send upstream: the received one with the peer appended when the peer is
/// trusted, else the peer alone (an untrusted client cannot plant addresses for the next hop to believe).
pub fn forwarded_for(peer: IpAddr, received: Option<&[u8]>, peer_trusted: bool) -> String {
    let peer = peer.to_canonical();
    match received.and_then(|r| std::str::from_utf8(r).ok()) {
        Some(r) if peer_trusted && !r.trim().is_empty() => format!("{}, {peer}", r.trim()),
        _ => peer.to_string(),
    }
}

/// One `Forwarded` element (RFC 7239) for this hop: `for=...;proto=http;host="..."`.
pub fn forwarded_element(peer: IpAddr, host: &str) -> String {
    let peer = peer.to_canonical();
    let node = match peer {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("\"[{a}]\""),
    };
    let host: String = host
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect();
    format!("for={node};proto=http;host=\"{host}\"")
}

/// The `Forwarded` header to send: the received one extended when the peer is trusted, else ours alone.
pub fn forwarded(peer: IpAddr, received: Option<&[u8]>, peer_trusted: bool, host: &str) -> String {
    let ours = forwarded_element(peer, host);
    match received.and_then(|r| std::str::from_utf8(r).ok()) {
        Some(r) if peer_trusted && !r.trim().is_empty() => format!("{}, {ours}", r.trim()),
        _ => ours,
    }
}

/// The host a request asks for, lower-cased into `buf`, without port or trailing dot; `None` if absent
/// or not a plausible host name.
pub fn request_host<'b>(authority: Option<&[u8]>, buf: &'b mut [u8; 256]) -> Option<&'b str> {
    let raw = authority?;
    let host = if raw.first() == Some(&b'[') {
        let end = raw.iter().position(|b| *b == b']')?;
        &raw[..=end]
    } else {
        match raw.iter().position(|b| *b == b':') {
            Some(i) => &raw[..i],
            None => raw,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(host) {
        if !(s.is_ascii_alphanumeric() || b"-._[]:".contains(s)) {
            return None;
        }
        *d = s.to_ascii_lowercase();
    }
    std::str::from_utf8(&buf[..host.len()]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn xff_only_from_trusted_peers() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        let xff = Some(&b"83.1.2.3, 10.1.1.1"[..]);
        assert_eq!(client_ip(ip("10.0.0.5"), xff, &trusted), ip("83.1.2.3"));
        assert_eq!(client_ip(ip("192.0.2.1"), xff, &trusted), ip("192.0.2.1"));
        assert_eq!(client_ip(ip("10.0.0.5"), None, &trusted), ip("10.0.0.5"));
        // A client-planted entry left of an untrusted one is not believed.
        let planted = Some(&b"1.1.1.1, 83.1.2.3"[..]);
        assert_eq!(client_ip(ip("10.0.0.5"), planted, &trusted), ip("83.1.2.3"));
        // Garbage stops the walk.
        let garbage = Some(&b"nonsense, 10.2.2.2"[..]);
        assert_eq!(client_ip(ip("10.0.0.5"), garbage, &trusted), ip("10.2.2.2"));
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some(b"[2001:db8::1]:443"), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some(b"83.1.2.3:1234"), &trusted),
            ip("83.1.2.3")
        );
        assert_eq!(client_ip(ip("::ffff:10.0.0.5"), xff, &trusted), ip("83.1.2.3"));
    }

    #[test]
    fn forwarded_headers() {
        assert_eq!(
            forwarded_for(ip("10.0.0.5"), Some(b"1.2.3.4"), true),
            "1.2.3.4, 10.0.0.5"
        );
        assert_eq!(forwarded_for(ip("10.0.0.5"), Some(b"1.2.3.4"), false), "10.0.0.5");
        assert_eq!(
            forwarded(ip("2001:db8::1"), None, false, "api.example"),
            "for=\"[2001:db8::1]\";proto=http;host=\"api.example\""
        );
        assert_eq!(
            forwarded(ip("10.0.0.5"), Some(b"for=1.2.3.4"), true, "a\"b"),
            "for=1.2.3.4, for=10.0.0.5;proto=http;host=\"ab\""
        );
    }

    #[test]
    fn hosts() {
        let mut buf = [0u8; 256];
        assert_eq!(
            request_host(Some(b"API.Example:8080"), &mut buf),
            Some("api.example")
        );
        let mut buf = [0u8; 256];
        assert_eq!(request_host(Some(b"api.example."), &mut buf), Some("api.example"));
        let mut buf = [0u8; 256];
        assert_eq!(request_host(Some(b"[::1]:80"), &mut buf), Some("[::1]"));
        let mut buf = [0u8; 256];
        assert_eq!(request_host(Some(b"a b"), &mut buf), None);
        assert_eq!(request_host(None, &mut buf), None);
    }
}
