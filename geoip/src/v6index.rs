//! A flat index of the IPv6 space, built once when a database is opened: sorted ranges of addresses with
//! the same interpretation, adjacent equal ranges merged (as `v4index` does for IPv4), and the IPv6
//! prefixes the database aliases to its IPv4 data (6to4, Teredo, IPv4-compatible).
//!
//! Why: with both indexes built, nothing needs the database's tree after load, so a database read from a
//! file is dropped from memory (100+ MB for a city database) instead of kept for IPv6 lookups. A lookup
//! is a binary search over the ranges (about 20 reads for a city database's million IPv6 ranges), which
//! is what the tree walk cost, over a smaller structure. Merging gives the same wider, honest ECS scopes
//! as for IPv4.

use crate::v4index::NONE;

/// A non-routable block's value inside the index: read as [`NONE`], but never merged with a neighbouring
/// [`NONE`] range, so that a scope around an unlisted address never spans a non-routable block.
const HOLE: u32 = NONE - 1;

/// The index. Why two levels: databases rarely split below /64 (DB-IP City Lite: 162 of its 3.2 million
/// IPv6 range boundaries), so ranges are kept by the upper 64 bits of their starts — half the memory of
/// full addresses — and only the few /64 blocks with boundaries inside them keep full addresses.
pub(crate) struct V6Index {
    /// Upper 64 bits of the first address of each coarse range, ascending; the first is 0.
    keys: Keys,
    /// Value of each coarse range: an index into the shared location values, [`NONE`], [`HOLE`], or
    /// [`FINE`] for a /64 block whose ranges are in `fine`.
    values: Vec<u32>,
    /// Ranges inside the [`FINE`] blocks, ascending by first address; each such block starts with an
    /// entry at its first address.
    fine: Vec<(u128, u32)>,
    /// Prefixes whose tree node is the database's IPv4 root: an address in one is located as the IPv4
    /// address in the 32 bits after the prefix (the tree does the same by construction), with the
    /// prefix length added to the IPv4 answer's.
    aliases: Vec<(u128, u8)>,
}

/// A coarse value: the /64 block's ranges are in [`V6Index::fine`].
const FINE: u32 = NONE - 2;

/// Builds a [`V6Index`] from networks given in ascending order, as a database walk yields them: merged
/// ranges are kept as they come, not the networks (the walk's memory is the index's).
pub(crate) struct V6Builder {
    starts: Vec<u128>,
    value_of: Vec<u32>,
    /// The next address not yet covered; `None` once the whole space is.
    next: Option<u128>,
    /// The first network of the walk not after the previous one, if any (then the walk is unusable).
    out_of_order: bool,
}

impl V6Builder {
    pub(crate) fn new() -> Self {
        Self {
            starts: Vec::new(),
            value_of: Vec::new(),
            next: Some(0),
            out_of_order: false,
        }
    }

    /// Adds the network `first..=last`. Networks must come in ascending order, without overlaps.
    pub(crate) fn push_network(&mut self, first: u128, last: u128, value: u32) {
        let Some(n) = self.next else {
            self.out_of_order = true;
            return;
        };
        if first < n || last < first {
            self.out_of_order = true;
            return;
        }
        if first > n {
            push(&mut self.starts, &mut self.value_of, n, NONE);
        }
        push(&mut self.starts, &mut self.value_of, first, value);
        self.next = last.checked_add(1);
    }

    /// The index, with `holes` forced to "no location" so that no merged range (hence no ECS scope) spans
    /// a non-routable block. `None` if the networks were not in ascending order.
    pub(crate) fn finish(mut self, holes: &[(u128, u128)], aliases: Vec<(u128, u8)>) -> Option<V6Index> {
        if self.out_of_order {
            return None;
        }
        if let Some(n) = self.next {
            push(&mut self.starts, &mut self.value_of, n, NONE);
        }
        let (mut starts, mut value_of) = (self.starts, self.value_of);
        for &(first, last) in holes {
            (starts, value_of) = punch(&starts, &value_of, first, last);
        }
        Some(compact(&starts, &value_of, aliases))
    }
}

/// The two-level index over full ranges (see [`V6Index`]).
fn compact(starts: &[u128], value_of: &[u32], aliases: Vec<(u128, u8)>) -> V6Index {
    let block = |s: u128| (s >> 64) as u64;
    // Blocks with a range boundary inside them (ascending, distinct).
    let mut mixed: Vec<u64> = starts
        .iter()
        .filter(|s| **s as u64 != 0)
        .map(|s| block(*s))
        .collect();
    mixed.dedup();
    let value_at = |addr: u128| value_of[starts.partition_point(|&s| s <= addr).saturating_sub(1)];
    let mut index = Builder {
        keys: Vec::new(),
        values: Vec::new(),
        fine: Vec::new(),
        aliases,
    };
    let coarse = |index: &mut Builder, key: u64, value: u32| {
        if index.values.last() != Some(&value) {
            index.keys.push(key);
            index.values.push(value);
        }
    };
    let emit_mixed = |index: &mut Builder, b: u64| {
        coarse(index, b, FINE);
        let first = u128::from(b) << 64;
        index.fine.push((first, value_at(first)));
        let from = starts.partition_point(|&s| s <= first);
        let to = starts.partition_point(|&s| block(s) <= b);
        index.fine.extend(
            starts[from..to]
                .iter()
                .copied()
                .zip(value_of[from..to].iter().copied()),
        );
        if let Some(next) = b.checked_add(1)
            && mixed.binary_search(&next).is_err()
        {
            coarse(index, next, value_at(u128::from(next) << 64));
        }
    };
    let mut m = 0;
    for (&s, &v) in starts.iter().zip(value_of) {
        let b = block(s);
        while m < mixed.len() && mixed[m] <= b {
            emit_mixed(&mut index, mixed[m]);
            m += 1;
        }
        if mixed.binary_search(&b).is_err() {
            coarse(&mut index, b, v);
        }
    }
    while m < mixed.len() {
        emit_mixed(&mut index, mixed[m]);
        m += 1;
    }
    index.values.shrink_to_fit();
    V6Index {
        keys: Keys::new(&index.keys),
        values: index.values,
        fine: index.fine,
        aliases: index.aliases,
    }
}

/// A [`V6Index`] while `compact` builds it: the keys at full width.
struct Builder {
    keys: Vec<u64>,
    values: Vec<u32>,
    fine: Vec<(u128, u32)>,
    aliases: Vec<(u128, u8)>,
}

/// Ascending 64-bit keys kept as their lower 32 bits, grouped by their upper 32 bits. Why: the keys of a
/// city database's 3.2 million IPv6 ranges fall in far fewer distinct /32 prefixes (the registries
/// allocate by /32 and wider), so the upper halves are stored once per group: 4 octets per range instead
/// of 8, 13 MB less for DB-IP City Lite (bench/RESULTS.md, "DNS memory"), for one more binary search over
/// the groups per lookup.
struct Keys {
    /// Distinct upper 32 bits of the keys, ascending.
    upper: Vec<u32>,
    /// Index of the first key of each group in `lower` (ascending; the first is 0).
    first: Vec<u32>,
    /// Lower 32 bits of every key, in key order.
    lower: Vec<u32>,
}

impl Keys {
    fn new(keys: &[u64]) -> Self {
        let mut k = Self {
            upper: Vec::new(),
            first: Vec::new(),
            lower: Vec::with_capacity(keys.len()),
        };
        for (i, &key) in keys.iter().enumerate() {
            let upper = (key >> 32) as u32;
            if k.upper.last() != Some(&upper) {
                k.upper.push(upper);
                // Fewer than 2^32 ranges: an index is a u32 (a city database has a few million).
                k.first.push(i as u32);
            }
            k.lower.push(key as u32);
        }
        k.upper.shrink_to_fit();
        k.first.shrink_to_fit();
        k
    }

    /// The index of the last key at or below `key` (0 if none: the first key is 0 by construction), the key
    /// itself, and the next key if any: what `partition_point(|k| k <= key) - 1` and its neighbours give
    /// over the full-width keys.
    fn find(&self, key: u64) -> (usize, u64, Option<u64>) {
        let upper = (key >> 32) as u32;
        let g = self.upper.partition_point(|&u| u <= upper).saturating_sub(1);
        let (from, to) = self.group(g);
        let i = if self.upper.get(g) == Some(&upper) {
            let lower = key as u32;
            from + self.lower[from..to].partition_point(|&l| l <= lower)
        } else {
            to
        }
        .saturating_sub(1);
        // The key at i is in group g, or (when key is below group g's first key) in the group before.
        let at = |i: usize, g: usize| {
            let g = if i < self.group(g).0 { g - 1 } else { g };
            (u64::from(self.upper[g]) << 32) | u64::from(self.lower[i])
        };
        let next = (i + 1 < self.lower.len()).then(|| {
            let gn = if i + 1 >= to { g + 1 } else { g };
            (u64::from(self.upper[gn]) << 32) | u64::from(self.lower[i + 1])
        });
        (i, at(i, g), next)
    }

    /// The range of `lower` holding group `g`'s keys.
    fn group(&self, g: usize) -> (usize, usize) {
        let from = self.first.get(g).map_or(0, |&f| f as usize);
        let to = self.first.get(g + 1).map_or(self.lower.len(), |&f| f as usize);
        (from, to)
    }
}

fn push(starts: &mut Vec<u128>, value_of: &mut Vec<u32>, start: u128, value: u32) {
    if value_of.last() != Some(&value) {
        starts.push(start);
        value_of.push(value);
    }
}

/// `starts`/`value_of` with `first..=last` forced to [`HOLE`] (done a few times at load).
fn punch(starts: &[u128], value_of: &[u32], first: u128, last: u128) -> (Vec<u128>, Vec<u32>) {
    let mut out = (
        Vec::with_capacity(starts.len() + 2),
        Vec::with_capacity(starts.len() + 2),
    );
    for (i, (&s, &v)) in starts.iter().zip(value_of).enumerate() {
        let e = starts.get(i + 1).map_or(u128::MAX, |n| n - 1);
        if e < first || s > last {
            push(&mut out.0, &mut out.1, s, v);
            continue;
        }
        if s < first {
            push(&mut out.0, &mut out.1, s, v);
        }
        push(&mut out.0, &mut out.1, s.max(first), HOLE);
        if e > last {
            push(&mut out.0, &mut out.1, last + 1, v);
        }
    }
    out
}

impl V6Index {
    /// The value of the range holding `ip`, and the range's first and last address (clipped to its /64
    /// block for a [`FINE`] one, which changes no widest prefix: see `compact`).
    fn range(&self, ip: u128) -> (u32, u128, u128) {
        let (i, first, next) = self.keys.find((ip >> 64) as u64);
        let value = self.values[i];
        if value == FINE {
            let j = self.fine.partition_point(|&(s, _)| s <= ip).saturating_sub(1);
            let block_end = ip | u128::from(u64::MAX);
            let end = self
                .fine
                .get(j + 1)
                .map_or(block_end, |n| (n.0 - 1).min(block_end));
            return (self.fine[j].1, self.fine[j].0, end);
        }
        let end = next.map_or(u128::MAX, |n| (u128::from(n) << 64) - 1);
        (value, u128::from(first) << 64, end)
    }

    /// Where `ip` is answered from: its IPv4 alias (the IPv4 address and the alias prefix length), or
    /// this index's value and the widest prefix around `ip` with the same value.
    pub(crate) fn locate(&self, ip: u128) -> Located6 {
        for &(prefix, len) in &self.aliases {
            if ip & mask128(len) == prefix {
                // The 32 bits right after the alias prefix (len <= 96 by construction).
                let v4 = (ip >> (96 - u32::from(len))) as u32;
                return Located6::Alias { v4, len };
            }
        }
        let (value, start, end) = self.range(ip);
        Located6::Value {
            value: if value == HOLE { NONE } else { value },
            prefix_len: widest_prefix(ip, start, end),
        }
    }

    /// Ranges in the index (after merging).
    pub(crate) fn len(&self) -> usize {
        self.values.len() + self.fine.len()
    }
}

/// What [`V6Index::locate`] found.
pub(crate) enum Located6 {
    /// Answered by the IPv4 index for `v4`; `len` bits precede it.
    Alias { v4: u32, len: u8 },
    /// A value of this index (or [`NONE`]) and the prefix it holds for.
    Value { value: u32, prefix_len: u8 },
}

pub(crate) fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// The shortest prefix length p such that the aligned /p block holding `ip` lies within `start..=end`.
fn widest_prefix(ip: u128, start: u128, end: u128) -> u8 {
    let mut p = 128u8;
    while p > 0 {
        // The /(p-1) block around ip.
        let mask = mask128(p - 1);
        let block = ip & mask;
        if block < start || block | !mask > end {
            break;
        }
        p -= 1;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widest_prefix_fits_the_range() {
        assert_eq!(widest_prefix(5, 0, u128::MAX), 0);
        assert_eq!(widest_prefix(7, 7, 7), 128);
        let net = 0x2a00_u128 << 112;
        assert_eq!(widest_prefix(net + 5, net, net | (u128::MAX >> 16)), 16);
        assert_eq!(widest_prefix(net + 5, net + 1, net | (u128::MAX >> 16)), 126);
    }

    #[test]
    fn ranges_merge_fill_gaps_and_holes_win() {
        let a = 0x2a00_u128 << 112;
        let b = 0x2a01_u128 << 112;
        let size = 1u128 << 112;
        let mut builder = V6Builder::new();
        for (first, last, v) in [
            (a, a + size - 1, 1),
            (b, b + size - 1, 1),
            (b + size, b + 2 * size - 1, 2),
        ] {
            builder.push_network(first, last, v);
        }
        let index = builder
            .finish(&[(a + 16, a + 31)], vec![(0x2002_u128 << 112, 16)])
            .unwrap();
        assert_eq!(
            index.fine.len(),
            3,
            "the hole's /64 block is kept in full: {:x?}",
            index.fine
        );
        let value = |ip| match index.locate(ip) {
            Located6::Value { value, prefix_len } => (value, prefix_len),
            Located6::Alias { .. } => panic!("alias"),
        };
        assert_eq!(value(a + 5), (1, 124));
        assert_eq!(value(a + 20), (NONE, 124));
        assert_eq!(
            value(b + 7),
            (1, 16),
            "2a00::/16 and 2a01::/16 share the value but a hole splits them"
        );
        assert_eq!(value(b + size + 1).0, 2);
        assert_eq!(value(0).0, NONE);
        assert_eq!(value(u128::MAX).0, NONE);
        match index.locate((0x2002_u128 << 112) | (0x0102_0304_u128 << 80) | 9) {
            Located6::Alias { v4, len } => assert_eq!((v4, len), (0x0102_0304, 16)),
            Located6::Value { .. } => panic!("6to4 is an alias"),
        }
    }

    proptest::proptest! {
        /// The grouped keys find what a binary search over the full-width keys finds: the last key at or
        /// below, and the next one.
        #[test]
        fn grouped_keys_agree_with_full_width_keys(
            mut raw in proptest::collection::vec((0u64..6, 0u64..(1 << 34)), 0..200),
            probes in proptest::collection::vec((0u64..7, 0u64..(1 << 34)), 1..100),
        ) {
            // Keys from a few /32 groups (and their neighbours), the first always 0, as compact makes them.
            let wide = |(u, l): (u64, u64)| ((0x2a00_0000 + u) << 32).wrapping_add(l);
            raw.push((0, 0));
            let mut keys: Vec<u64> = raw.into_iter().map(wide).collect();
            keys.push(0);
            keys.sort_unstable();
            keys.dedup();
            let grouped = Keys::new(&keys);
            for probe in probes.into_iter().map(wide).chain([0, u64::MAX, keys[keys.len() - 1]]) {
                let i = keys.partition_point(|&k| k <= probe).saturating_sub(1);
                proptest::prop_assert_eq!(
                    grouped.find(probe),
                    (i, keys[i], keys.get(i + 1).copied()),
                    "probe {:x}", probe
                );
            }
        }
    }

    #[test]
    fn aligned_starts_take_their_upper_half_and_disorder_is_refused() {
        let a = 0x2a00_u128 << 112;
        let mut builder = V6Builder::new();
        builder.push_network(a, a + (1 << 64) - 1, 3);
        let index = builder.finish(&[], Vec::new()).unwrap();
        assert!(index.fine.is_empty());
        match index.locate(a + 77) {
            Located6::Value { value, prefix_len } => assert_eq!((value, prefix_len), (3, 64)),
            Located6::Alias { .. } => panic!("no alias"),
        }
        let mut builder = V6Builder::new();
        builder.push_network(a, a + 15, 3);
        builder.push_network(a - 16, a - 1, 4);
        assert!(builder.finish(&[], Vec::new()).is_none());
    }
}
