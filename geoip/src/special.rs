//! Address blocks that are never anywhere: private, loopback, link-local, shared (CGNAT), documentation,
//! benchmarking, multicast and reserved space (RFC 6890 and its IPv6 counterpart).
//!
//! A resolver on such an address tells us nothing about where its clients are, so it is "unknown location"
//! by definition, whatever a database might say.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub(crate) const V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // shared address space (CGNAT)
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // TEST-NET-1
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // TEST-NET-3
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, broadcast
];

pub(crate) const V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::UNSPECIFIED, 128),
    (Ipv6Addr::LOCALHOST, 128),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),     // discard-only
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),     // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),    // link-local
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),     // multicast
];

/// If `ip` is in a non-routable block, that block's prefix length; `None` for routable addresses.
/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
pub fn non_routable_prefix(ip: IpAddr) -> Option<u8> {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let a = u32::from(a);
            V4.iter()
                .find(|(net, len)| a & mask32(*len) == u32::from(*net))
                .map(|(_, len)| *len)
        }
        IpAddr::V6(a) => {
            let a = u128::from(a);
            V6.iter()
                .find(|(net, len)| a & mask128(*len) == u128::from(*net))
                .map(|(_, len)| *len)
        }
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<u8> {
        non_routable_prefix(s.parse().unwrap())
    }

    #[test]
    fn classifies() {
        assert_eq!(p("10.1.2.3"), Some(8));
        assert_eq!(p("172.31.255.255"), Some(12));
        assert_eq!(p("172.32.0.1"), None);
        assert_eq!(p("100.127.0.1"), Some(10));
        assert_eq!(p("100.128.0.1"), None);
        assert_eq!(p("127.0.0.1"), Some(8));
        assert_eq!(p("192.0.2.7"), Some(24));
        assert_eq!(p("8.8.8.8"), None);
        assert_eq!(p("83.0.0.1"), None);
        assert_eq!(p("::1"), Some(128));
        assert_eq!(p("fd00::1"), Some(7));
        assert_eq!(p("fe80::1"), Some(10));
        assert_eq!(p("2001:db8::1"), Some(32));
        assert_eq!(p("2a00:1450:4001::1"), None);
        assert_eq!(p("::ffff:10.0.0.1"), Some(8), "IPv4-mapped is judged as IPv4");
        assert_eq!(p("::ffff:8.8.8.8"), None);
    }
}
