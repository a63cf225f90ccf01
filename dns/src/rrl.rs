//! Response rate limiting (RRL): blunts the use of this server as a reflector in amplification attacks.
//!
//! A reflection attack forges the victim's address as the source of many queries; every response then
//! lands on the victim. RRL counts responses per *client network* (/24 for IPv4, /56 for IPv6 — an
//! attacker rarely forges one address only) and per *response kind*: the same name and type for positive
//! answers, the response code for errors (so a random-subdomain flood counts as one kind). Each kind has a
//! token bucket (`rate` per second, up to `burst`). Over the limit, responses are dropped, except every
//! `slip`-th one, which is sent as an empty truncated response (TC=1): a real client behind a forged-looking
//! burst retries over TCP, which is never limited, and an attacker gains nothing (the truncated response
//! is no larger than the query).
//!
//! The table is fixed-size (no allocation per client, bounded memory under a spoofed-source flood):
//! buckets are addressed by a hash of the key, and a bucket found holding another key is taken over
//! with a full allowance — collisions err on the side of answering.
//!
//! Must not: limit TCP (it cannot be spoofed); allocate per query; read the clock (time is passed in).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;

/// Rate-limiting settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RrlConfig {
    /// Responses per second allowed per client network and response kind; 0 disables limiting.
    pub rate: u32,
    /// Bucket size: responses allowed in a burst.
    pub burst: u32,
    /// Every `slip`-th limited response is sent truncated instead of dropped (0: drop all, 1: truncate
    /// all).
    pub slip: u32,
    /// Buckets in the table (rounded up to a power of two).
    pub table_size: usize,
}

impl Default for RrlConfig {
    /// 20 identical responses per second per /24 (/56), bursts of 40, every second limited response
    /// truncated: far above what a caching resolver asks for one name (it caches for the TTL), far below
    /// what makes a useful reflector. The values of BIND's and Knot's documented examples.
    fn default() -> Self {
        Self {
            rate: 20,
            burst: 40,
            slip: 2,
            table_size: 1 << 16,
        }
    }
}

/// What to do with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Send an empty truncated response instead.
    Slip,
    /// Send nothing.
    Drop,
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    key: u64,
    /// Tokens, in thousandths of a response.
    tokens_milli: u64,
    last_ms: u64,
    /// Limited responses so far (for slip).
    limited: u32,
}

const SHARDS: usize = 16;

/// The limiter: a fixed table of token buckets, in shards so that workers rarely contend.
pub struct RateLimiter {
    config: RrlConfig,
    shards: Vec<Mutex<Vec<Bucket>>>,
    mask: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl RateLimiter {
    /// A limiter with `config` (a `rate` of 0 makes [`Self::check`] always answer `Send`).
    pub fn new(config: RrlConfig) -> Self {
        let per_shard = (config.table_size.max(SHARDS) / SHARDS).next_power_of_two();
        Self {
            config,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![Bucket::default(); per_shard]))
                .collect(),
            mask: per_shard - 1,
            // Seeded per process: an attacker cannot aim collisions at a victim's bucket.
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> RrlConfig {
        self.config
    }

    /// Whether limiting is on.
    pub fn enabled(&self) -> bool {
        self.config.rate > 0
    }

    /// Accounts one response of `kind` (see [`ResponseKind`]) to `client` at `now_ms`.
    pub fn check(&self, client: IpAddr, kind: ResponseKind<'_>, now_ms: u64) -> Verdict {
        if !self.enabled() {
            return Verdict::Send;
        }
        let mut h = self.hasher.build_hasher();
        match client {
            IpAddr::V4(a) => h.write_u32(u32::from(a) & 0xffff_ff00),
            IpAddr::V6(a) => h.write_u128(u128::from(a) & !((1u128 << 72) - 1)),
        }
        match kind {
            ResponseKind::Answer { qname_lower, qtype } => {
                h.write(qname_lower);
                h.write_u16(qtype);
            }
            ResponseKind::Error(rcode) => {
                h.write_u8(0xff);
                h.write_u16(rcode);
            }
        }
        let key = h.finish() | 1; // never 0: 0 marks an empty bucket
        let shard = (key as usize) % SHARDS;
        let slot = ((key >> 32) as usize) & self.mask;
        let Ok(mut table) = self.shards[shard].lock() else {
            // A poisoned lock means a panic elsewhere while holding it; answering is the safe side.
            return Verdict::Send;
        };
        let burst_milli = u64::from(self.config.burst.max(1)) * 1000;
        let b = &mut table[slot];
        if b.key != key {
            *b = Bucket {
                key,
                tokens_milli: burst_milli,
                last_ms: now_ms,
                limited: 0,
            };
        }
        let elapsed = now_ms.saturating_sub(b.last_ms);
        b.tokens_milli = (b.tokens_milli + elapsed * u64::from(self.config.rate)).min(burst_milli);
        b.last_ms = now_ms;
        if b.tokens_milli >= 1000 {
            b.tokens_milli -= 1000;
            b.limited = 0;
            return Verdict::Send;
        }
        b.limited = b.limited.wrapping_add(1);
        match self.config.slip {
            0 => Verdict::Drop,
            n if b.limited % n == 0 => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }
}

/// What a response is, for counting: positive answers per name and type, errors per response code.
#[derive(Clone, Copy, Debug)]
pub enum ResponseKind<'a> {
    /// NOERROR: the lower-cased question name (any form, consistently) and type.
    Answer {
        /// The name.
        qname_lower: &'a [u8],
        /// The type.
        qtype: u16,
    },
    /// Any other response code (NXDOMAIN, REFUSED, FORMERR...).
    Error(u16),
}

/// An empty truncated response to `request`'s question: header with TC=1 and the question, nothing else.
/// `response` is the full response that was limited (its header and question are reused).
pub fn slip_response(response: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if response.len() < 12 {
        return;
    }
    let question_end = question_end(response).unwrap_or(12);
    out.extend_from_slice(&response[..question_end]);
    out[2] |= 0x02; // TC
    // Keep QDCOUNT; zero the answer, authority and additional counts.
    if question_end == 12 {
        out[4..6].copy_from_slice(&[0, 0]);
    }
    out[6..12].copy_from_slice(&[0; 6]);
}

/// Where the (single) question of a message ends.
fn question_end(m: &[u8]) -> Option<usize> {
    if u16::from_be_bytes([m[4], m[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = *m.get(i)?;
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 == 0xc0 {
            i += 2;
            break;
        }
        i += 1 + usize::from(len);
    }
    (i + 4 <= m.len()).then_some(i + 4)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn answer(name: &[u8]) -> ResponseKind<'_> {
        ResponseKind::Answer {
            qname_lower: name,
            qtype: 1,
        }
    }

    #[test]
    fn burst_then_rate_then_slip() {
        let rl = RateLimiter::new(RrlConfig {
            rate: 10,
            burst: 5,
            slip: 2,
            table_size: 1024,
        });
        let c: IpAddr = "198.51.100.7".parse().unwrap();
        let verdicts: Vec<_> = (0..9).map(|_| rl.check(c, answer(b"meet"), 1000)).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Send; 5], "the burst is answered");
        assert_eq!(
            &verdicts[5..],
            &[Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip],
            "over it, every second response slips"
        );
        // 100 ms later one token (10/s) has come back.
        assert_eq!(rl.check(c, answer(b"meet"), 1100), Verdict::Send);
        assert_ne!(rl.check(c, answer(b"meet"), 1100), Verdict::Send);
    }

    #[test]
    fn keys_are_per_network_and_kind() {
        let rl = RateLimiter::new(RrlConfig {
            rate: 1,
            burst: 1,
            slip: 0,
            table_size: 1 << 12,
        });
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let same_24: IpAddr = "198.51.100.200".parse().unwrap();
        let other_24: IpAddr = "198.51.101.7".parse().unwrap();
        assert_eq!(rl.check(a, answer(b"meet"), 0), Verdict::Send);
        assert_eq!(
            rl.check(same_24, answer(b"meet"), 0),
            Verdict::Drop,
            "same /24 shares"
        );
        assert_eq!(rl.check(other_24, answer(b"meet"), 0), Verdict::Send);
        assert_eq!(
            rl.check(a, answer(b"api"), 0),
            Verdict::Send,
            "another name is another kind"
        );
        assert_eq!(rl.check(a, ResponseKind::Error(3), 0), Verdict::Send);
        assert_eq!(rl.check(a, ResponseKind::Error(3), 0), Verdict::Drop);
        let v6: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_56: IpAddr = "2001:db8:1:ff::9".parse().unwrap();
        let other_56: IpAddr = "2001:db8:1:100::1".parse().unwrap();
        assert_eq!(rl.check(v6, answer(b"meet"), 0), Verdict::Send);
        assert_eq!(rl.check(same_56, answer(b"meet"), 0), Verdict::Drop);
        assert_eq!(rl.check(other_56, answer(b"meet"), 0), Verdict::Send);
    }

    #[test]
    fn disabled_always_sends() {
        let rl = RateLimiter::new(RrlConfig {
            rate: 0,
            ..RrlConfig::default()
        });
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        assert!((0..10_000).all(|_| rl.check(a, answer(b"x"), 0) == Verdict::Send));
    }

    #[test]
    fn slip_response_keeps_the_question_and_sets_tc() {
        // id 0x1234, QR AA RD, 1 question, 1 answer; question "a." A IN; then an answer record.
        let mut r = vec![0x12, 0x34, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 0];
        r.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
        let mut out = Vec::new();
        slip_response(&r, &mut out);
        assert_eq!(out.len(), 12 + 7);
        assert_eq!(out[2] & 0x02, 0x02);
        assert_eq!(&out[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[12..], &[1, b'a', 0, 0, 1, 0, 1]);
    }
}
