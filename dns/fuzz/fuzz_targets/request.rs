//! Any bytes as a DNS request, over UDP and TCP, from an IPv4 and an IPv6 source: the answering path
//! (fast path, then hickory's general path) must never panic, and whatever it sends must be a response
//! to that request (QR set, the request's id).

#![no_main]

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use meridian_config::Config;
use meridian_dns::{FixedState, Transport, respond};
use meridian_geoip::GeoDb;

const NOW_MS: u64 = 1_800_000_000_000;

fn fixture() -> &'static FixedState {
    static F: OnceLock<FixedState> = OnceLock::new();
    F.get_or_init(|| {
        let config = Config::from_toml_str(include_str!("../../../examples/meridian.toml")).expect("example");
        let geo = GeoDb::bundled().expect("bundled GeoIP");
        FixedState::new(Arc::new(config), geo, NOW_MS).expect("a snapshot of the example")
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let ctx = f.context(NOW_MS);
    let mut out = Vec::new();
    for (src, transport) in [
        ("83.0.0.1", Transport::Udp),
        ("2a01:4f8::1", Transport::Tcp),
    ] {
        let src: IpAddr = src.parse().expect("address");
        respond(&ctx, data, src, transport, &mut out);
        if !out.is_empty() {
            assert!(out.len() >= 12, "short response");
            assert_eq!(&out[..2], &data[..2], "id echoed");
            assert_eq!(out[2] & 0x80, 0x80, "QR set");
            if transport == Transport::Udp {
                assert!(out.len() <= 1232, "UDP response over the largest payload we offer");
            }
        }
    }
});
