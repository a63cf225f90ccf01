//! Deterministic hashing for stable per-client choices (weighted shares, capacity spill).
//!
//! A client keeps its region as long as nothing about that region changes: each (client, region) pair gets
//! its own uniform number, independent of every other region.

use std::net::IpAddr;

/// SplitMix64's finaliser: a bijective mix with good avalanche.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform number in (0, 1] for this client and region seed.
#[inline]
pub fn unit(client: u64, seed: u64) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    ((mix(client ^ seed) >> 11) as f64 + 1.0) * SCALE
}

/// Weighted rendezvous key: `-ln(unit(client, seed)) / weight`; the smallest key wins, and a region with
/// weight w wins with probability w / (sum of weights). Depends only on the client and the region.
#[inline]
pub fn rendezvous_key(client: u64, seed: u64, weight: u32) -> f64 {
    -unit(client, seed).ln() / f64::from(weight.max(1))
}

/// A lower bound of [`rendezvous_key`] that needs no logarithm and no division: `-ln(u) >= 1 - u` on
/// (0, 1], times `1 / weight` (given). Shrunk by 2^-40 so that it stays below the key even where both
/// round to neighbouring floats.
#[inline]
pub fn rendezvous_lower_bound(client: u64, seed: u64, inv_weight: f64) -> f64 {
    (1.0 - unit(client, seed)) * inv_weight * (1.0 - 1.0 / (1u64 << 40) as f64)
}

/// Stable seed for a region, from its id (not its position, so reordering the file moves nobody).
pub fn region_seed(id: &str) -> u64 {
    // FNV-1a, then mixed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// Salt separating the spill draw from the weighted-choice draw of the same (client, region).
pub const SPILL_SALT: u64 = 0x5350_494c_4c21_0001;

/// The request hash for a client address: every address of the same /24 (IPv4) or /56 (IPv6) hashes alike,
/// the granularity resolvers send as EDNS Client Subnet, so DNS and the proxy agree on a client.
pub fn client_hash(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(a) => mix(u64::from(u32::from(a) & 0xffff_ff00) ^ 0x4_0000_0000),
        IpAddr::V6(a) => mix((u128::from(a) >> 72) as u64 ^ 0x6000_0000_0000_0000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_in_range_and_spread() {
        let mut sum = 0.0;
        for i in 0..10_000u64 {
            let u = unit(i, 42);
            assert!(u > 0.0 && u <= 1.0);
            sum += u;
        }
        let mean = sum / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn client_hash_groups_by_network() {
        let h = |s: &str| client_hash(s.parse().unwrap());
        assert_eq!(h("83.1.2.3"), h("83.1.2.200"));
        assert_ne!(h("83.1.2.3"), h("83.1.3.3"));
        assert_eq!(h("::ffff:83.1.2.3"), h("83.1.2.9"));
        assert_eq!(h("2a00:1450:4001:81a::1"), h("2a00:1450:4001:800::2"));
        assert_ne!(h("2a00:1450:4001:81a::1"), h("2a00:1450:4001:a00::1"));
    }

    #[test]
    fn the_lower_bound_is_below_the_key() {
        for i in 0..200_000u64 {
            for w in [1, 3, 100, 10_000] {
                let bound = rendezvous_lower_bound(i, 9, 1.0 / f64::from(w));
                assert!(bound <= rendezvous_key(i, 9, w), "{i} {w}");
            }
        }
        // Including at the extremes of u.
        assert!(rendezvous_lower_bound(0, 0, 1.0) <= rendezvous_key(0, 0, 1));
    }

    #[test]
    fn seeds_differ_by_id() {
        assert_ne!(region_seed("waw"), region_seed("fra"));
        assert_eq!(region_seed("waw"), region_seed("waw"));
    }
}
