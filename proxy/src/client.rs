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
    client_ip_vouched(peer, xff, trusted, is_trusted(trusted, peer))
}

/// [`client_ip`] for a peer whose trust is already decided: `peer_trusted` (a trusted address, or
/// another region's proxy authenticated by its hop certificate).
pub fn client_ip_vouched(peer: IpAddr, xff: Option<&[u8]>, trusted: &[Cidr], peer_trusted: bool) -> IpAddr {
    let peer = peer.to_canonical();
    let Some(xff) = xff else { return peer };
    if !peer_trusted {
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

/// Appends the `X-Forwarded-For` to send upstream to `out`: the received one with the peer appended when
/// the peer is trusted, else the peer alone (an untrusted client cannot plant addresses for the next hop
/// to believe).
pub fn forwarded_for(peer: IpAddr, received: Option<&[u8]>, peer_trusted: bool, out: &mut Vec<u8>) {
    if let Some(r) = received_list(received, peer_trusted) {
        out.extend_from_slice(r);
        out.extend_from_slice(b", ");
    }
    push_ip(out, peer.to_canonical());
}

/// Appends the `Forwarded` header to send (RFC 7239) to `out`: the received one extended when the peer
/// is trusted, else ours alone; ours is `for=...;proto=PROTO;host="..."`.
pub fn forwarded(
    peer: IpAddr,
    received: Option<&[u8]>,
    peer_trusted: bool,
    proto: &[u8],
    host: &str,
    out: &mut Vec<u8>,
) {
    if let Some(r) = received_list(received, peer_trusted) {
        out.extend_from_slice(r);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"for=");
    match peer.to_canonical() {
        ip @ IpAddr::V4(_) => push_ip(out, ip),
        ip @ IpAddr::V6(_) => {
            out.extend_from_slice(b"\"[");
            push_ip(out, ip);
            out.extend_from_slice(b"]\"");
        }
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(proto);
    out.extend_from_slice(b";host=\"");
    // Quoted-string: no quote, backslash or control character can break out of it.
    out.extend(
        host.bytes()
            .filter(|b| !b.is_ascii_control() && *b != b'"' && *b != b'\\'),
    );
    out.push(b'"');
}

/// A received list header worth extending: from a trusted peer, UTF-8, not blank (trimmed).
fn received_list(received: Option<&[u8]>, peer_trusted: bool) -> Option<&[u8]> {
    let r = received.filter(|_| peer_trusted)?.trim_ascii();
    (!r.is_empty() && std::str::from_utf8(r).is_ok()).then_some(r)
}

/// Appends `ip` in its usual text form; IPv4 (nearly every peer) without the formatting machinery.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(a) => {
            use std::io::Write;
            let _ = write!(out, "{a}");
        }
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

    fn xff(peer: &str, received: Option<&[u8]>, trusted: bool) -> String {
        let mut out = Vec::new();
        forwarded_for(ip(peer), received, trusted, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn fwd(peer: &str, received: Option<&[u8]>, trusted: bool, host: &str) -> String {
        let mut out = Vec::new();
        forwarded(ip(peer), received, trusted, b"http", host, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn forwarded_headers() {
        assert_eq!(xff("10.0.0.5", Some(b"1.2.3.4"), true), "1.2.3.4, 10.0.0.5");
        assert_eq!(xff("10.0.0.5", Some(b" 1.2.3.4 "), true), "1.2.3.4, 10.0.0.5");
        assert_eq!(xff("10.0.0.5", Some(b"  "), true), "10.0.0.5");
        assert_eq!(xff("10.0.0.5", Some(b"\xff"), true), "10.0.0.5");
        assert_eq!(xff("10.0.0.5", Some(b"1.2.3.4"), false), "10.0.0.5");
        assert_eq!(xff("::ffff:10.0.0.5", None, false), "10.0.0.5");
        assert_eq!(xff("2001:db8::1", None, false), "2001:db8::1");
        assert_eq!(
            fwd("2001:db8::1", None, false, "api.example"),
            "for=\"[2001:db8::1]\";proto=http;host=\"api.example\""
        );
        assert_eq!(
            fwd("10.0.0.5", Some(b"for=1.2.3.4"), true, "a\"b\\c\u{7}"),
            "for=1.2.3.4, for=10.0.0.5;proto=http;host=\"abc\""
        );
    }

    /// The hand-written IPv4 text agrees with the standard library's for every octet value.
    #[test]
    fn ipv4_text_matches_std() {
        for octet in 0..=255u8 {
            let a = std::net::Ipv4Addr::new(octet, 0, 255 - octet, octet / 3);
            let mut out = Vec::new();
            push_ip(&mut out, IpAddr::V4(a));
            assert_eq!(String::from_utf8(out).unwrap(), a.to_string());
        }
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
