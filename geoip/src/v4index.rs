//! A flat index of the IPv4 space, built once when a database is opened: sorted ranges of addresses
//! with the same *interpretation* (country, continent, coordinates), adjacent equal ranges merged.
//!
//! Why: walking a city database's tree costs a cache miss per level (~20 levels over 100 MB) and was most
//! of a DNS answer's time. Here a lookup is one read in a table with an entry per /20 (4 MiB; the answer
//! itself when one range covers the /20, else where to start a short search) and one read of the value.
//! (An entry per /24 was tried: 64 MiB for no gain measurable on the wire, and the server's memory grew
//! past gdnsd's; bench/RESULTS.md.) Merging gives a second benefit: every address in a
//! merged range gets the same answer, so the ECS scope can be the widest CIDR around the address inside
//! its range (what gdnsd does), not just the database network — fewer cache entries at resolvers.
//!
//! Non-routable blocks are holes in the index (the caller answers them before looking here), so no range
//! spans one.

use meridian_config::{Continent, CountryCode};

use crate::GeoLocation;

/// Sentinel value index: no location (no data, or a non-routable hole).
pub(crate) const NONE: u32 = u32::MAX;

/// The index.
pub(crate) struct V4Index {
    /// First address of each range, ascending; the first is 0.
    starts: Vec<u32>,
    /// Value of each range: an index into `values`, or [`NONE`].
    value_of: Vec<u32>,
    /// `starts` and `value_of` interleaved, for lookups: the value a search ends on shares a cache line
    /// with the last start it read (one miss fewer per lookup). The two vectors above are emptied.
    ranges: Vec<(u32, u32)>,
    /// Distinct interpretations, packed.
    values: Vec<Packed>,
    /// One entry per block of [`BLOCK_BITS`] addresses (/20: 1 Mi entries, 4 MiB): either the answer
    /// itself, when one range covers the whole block (the common case: one read, no search), or the
    /// index of the range holding its first address (a short search follows). See [`Entry`].
    blocks: Vec<u32>,
}

/// Addresses per `blocks` entry, as a number of low bits: /20 blocks.
const BLOCK_BITS: u32 = 12;

/// Encoding of a `blocks` entry. Direct (bit 31 set): value in bits 0–23 ([`DIRECT_NONE`] for none) and
/// the ECS prefix in bits 24–29 (at most 20, the same for every address of the block: the widest block
/// around an address inside its range contains the whole /20 when it is /20 or wider). Otherwise: a range
/// index.
struct Entry;

impl Entry {
    const DIRECT: u32 = 1 << 31;
    const VALUE_MASK: u32 = (1 << 24) - 1;
    const DIRECT_NONE: u32 = Self::VALUE_MASK;
}

/// A location value as the index keeps it: 24 octets where a [`GeoLocation`] takes 40. Why: a city
/// database has half a million distinct values (8 MB saved), and the DNS server's resident memory is
/// held to gdnsd's (bench/RESULTS.md).
#[derive(Clone, Copy)]
struct Packed {
    lat: f64,
    lon: f64,
    country: Option<CountryCode>,
    continent: Option<Continent>,
    /// 0: no coordinates; 1: the database's; 2: the country's population centre.
    coordinates: u8,
}

impl Packed {
    fn pack(l: &GeoLocation) -> Self {
        let (c, source) = match l.coordinates {
            None => (None, 0),
            Some((c, crate::CoordinatesSource::Database)) => (Some(c), 1),
            Some((c, crate::CoordinatesSource::CountryCentre)) => (Some(c), 2),
        };
        Self {
            lat: c.map_or(0.0, |c| c.lat),
            lon: c.map_or(0.0, |c| c.lon),
            country: l.country,
            continent: l.continent,
            coordinates: source,
        }
    }

    fn unpack(self) -> GeoLocation {
        let c = meridian_config::Coordinates {
            lat: self.lat,
            lon: self.lon,
        };
        GeoLocation {
            country: self.country,
            continent: self.continent,
            coordinates: match self.coordinates {
                0 => None,
                1 => Some((c, crate::CoordinatesSource::Database)),
                _ => Some((c, crate::CoordinatesSource::CountryCentre)),
            },
        }
    }
}

/// A hashable identity for an interpretation (coordinates by their bits: equal values, equal answers).
pub(crate) type ValueKey = (Option<CountryCode>, Option<Continent>, Option<(u64, u64, bool)>);

pub(crate) fn key(l: &GeoLocation) -> ValueKey {
    (
        l.country,
        l.continent,
        l.coordinates.map(|(c, s)| {
            (
                c.lat.to_bits(),
                c.lon.to_bits(),
                s == crate::CoordinatesSource::Database,
            )
        }),
    )
}

impl V4Index {
    /// Builds the index from `(first, last, value)` networks in any order, `value` indexing `values` (or
    /// [`NONE`]). `holes` are blocks forced to "no location". Overlapping networks (not found in a
    /// well-formed database): the first one wins.
    pub(crate) fn build(
        mut networks: Vec<(u32, u32, u32)>,
        values: Vec<GeoLocation>,
        holes: &[(u32, u32)],
    ) -> Self {
        networks.sort_unstable_by_key(|n| n.0);
        let mut starts: Vec<u32> = Vec::with_capacity(networks.len() + 1);
        let mut value_of: Vec<u32> = Vec::with_capacity(networks.len() + 1);
        let push = |start: u32, value: u32, starts: &mut Vec<u32>, value_of: &mut Vec<u32>| {
            if value_of.last() == Some(&value) {
                return; // merge with the previous range
            }
            starts.push(start);
            value_of.push(value);
        };
        let mut next: u64 = 0; // first address not yet covered
        for (first, last, v) in networks {
            if u64::from(first) < next {
                continue;
            }
            if u64::from(first) > next {
                push(next as u32, NONE, &mut starts, &mut value_of);
            }
            push(first, v, &mut starts, &mut value_of);
            next = u64::from(last) + 1;
        }
        if next <= u64::from(u32::MAX) {
            push(next as u32, NONE, &mut starts, &mut value_of);
        }
        starts.shrink_to_fit();
        value_of.shrink_to_fit();
        let mut index = Self {
            starts,
            value_of,
            values: values.iter().map(Packed::pack).collect(),
            ranges: Vec::new(),
            blocks: Vec::new(),
        };
        for &(first, last) in holes {
            index.punch(first, last);
        }
        index.blocks = index.build_blocks();
        index.ranges = index
            .starts
            .iter()
            .copied()
            .zip(index.value_of.iter().copied())
            .collect();
        index.starts = Vec::new();
        index.value_of = Vec::new();
        index
    }

    /// The `blocks` table, from `starts`/`value_of` (one pass over the blocks and the ranges together).
    fn build_blocks(&self) -> Vec<u32> {
        let mut table = Vec::with_capacity(1 << (32 - BLOCK_BITS));
        let mut i = 0usize; // range holding the current block's first address
        for block in 0u32..1 << (32 - BLOCK_BITS) {
            let first = block << BLOCK_BITS;
            while self.starts.get(i + 1).is_some_and(|&s| s <= first) {
                i += 1;
            }
            let end = self
                .starts
                .get(i + 1)
                .map_or(u64::from(u32::MAX), |n| u64::from(*n) - 1);
            let value = self.value_of[i];
            let encodable = value == NONE || value < Entry::DIRECT_NONE;
            if end >= u64::from(first) + (1 << BLOCK_BITS) - 1 && encodable {
                let prefix = widest_prefix(u64::from(first), u64::from(self.starts[i]), end);
                let v = if value == NONE { Entry::DIRECT_NONE } else { value };
                table.push(Entry::DIRECT | (u32::from(prefix) << 24) | v);
            } else {
                table.push(i as u32);
            }
        }
        table
    }

    /// Forces `first..=last` to "no location" (rebuilds the vectors; done a dozen times at load).
    fn punch(&mut self, first: u32, last: u32) {
        let mut starts = Vec::with_capacity(self.starts.len() + 2);
        let mut value_of = Vec::with_capacity(self.starts.len() + 2);
        let mut push = |s: u32, v: u32| {
            if value_of.last() != Some(&v) {
                starts.push(s);
                value_of.push(v);
            }
        };
        for i in 0..self.starts.len() {
            let s = self.starts[i];
            let e = self
                .starts
                .get(i + 1)
                .map_or(u64::from(u32::MAX), |n| u64::from(*n) - 1);
            let v = self.value_of[i];
            let (s64, f64_, l64) = (u64::from(s), u64::from(first), u64::from(last));
            if e < f64_ || s64 > l64 {
                push(s, v);
                continue;
            }
            if s64 < f64_ {
                push(s, v);
            }
            push(s.max(first), NONE);
            if e > l64 {
                push(last + 1, v);
            }
        }
        self.starts = starts;
        self.value_of = value_of;
    }

    /// The location value of `ip` (an index into the values, or [`NONE`]) and the widest prefix around
    /// it with the same location.
    pub(crate) fn locate(&self, ip: u32) -> (u32, u8) {
        let entry = self.blocks[(ip >> BLOCK_BITS) as usize];
        if entry & Entry::DIRECT != 0 {
            let value = entry & Entry::VALUE_MASK;
            let value = if value == Entry::DIRECT_NONE { NONE } else { value };
            return (value, ((entry >> 24) & 0x3f) as u8);
        }
        // Several ranges share this block: usually a few, up to thousands in dense city data. Gallop
        // from the first (reads in the same cache lines for the common few), then search the last step.
        let first = entry as usize;
        let mut step = 1;
        let mut lo = first;
        while self.ranges.get(lo + step).is_some_and(|&(s, _)| s <= ip) {
            lo += step;
            step *= 2;
        }
        let hi = (lo + step).min(self.ranges.len());
        let i = lo + self.ranges[lo..hi].partition_point(|&(s, _)| s <= ip) - 1;
        let (start, value) = self.ranges[i];
        let end = self
            .ranges
            .get(i + 1)
            .map_or(u64::from(u32::MAX), |n| u64::from(n.0) - 1);
        (value, widest_prefix(u64::from(ip), u64::from(start), end))
    }

    /// Reads the `blocks` entries of these addresses, in one tight loop, and returns something derived
    /// from them (for the caller to keep opaque). Why: each read is a cache miss (a random place in
    /// 4 MiB); issued together they overlap, where a lookup per answer would wait for each in turn.
    pub(crate) fn touch(&self, ips: impl Iterator<Item = u32>) -> u32 {
        ips.fold(0, |acc, ip| {
            acc ^ self.blocks.get((ip >> BLOCK_BITS) as usize).copied().unwrap_or(0)
        })
    }

    /// The location a value index stands for (`None` for [`NONE`]).
    pub(crate) fn value(&self, value: u32) -> Option<GeoLocation> {
        self.values.get(value as usize).map(|p| p.unpack())
    }

    /// Distinct location values.
    pub(crate) fn values(&self) -> usize {
        self.values.len()
    }

    /// Ranges in the index (after merging).
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }
}

/// The shortest prefix length p such that the aligned /p block holding `ip` lies within `start..=end`.
fn widest_prefix(ip: u64, start: u64, end: u64) -> u8 {
    let mut p = 32u8;
    while p > 0 {
        let size = 1u64 << (33 - u32::from(p)); // size of a /(p-1) block
        let block = ip & !(size - 1);
        if block < start || block + size - 1 > end {
            break;
        }
        p -= 1;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block holding thousands of ranges (dense city data) is searched right: every address against a
    /// naive scan of the ranges.
    #[test]
    fn crowded_blocks_find_their_range() {
        let base = 0x5000_0000u32; // 80.0.0.0, a /20 block and the next
        let mut networks = Vec::new();
        let mut first = base;
        let mut n = 0u32;
        while first < base + (1 << 13) {
            let size = 1 + (n * 7919) % 5; // 1 to 5 addresses
            networks.push((first, first + size - 1, n % 3));
            first += size;
            n += 1;
        }
        let values = vec![
            GeoLocation {
                country: None,
                continent: None,
                coordinates: None
            };
            3
        ];
        let index = V4Index::build(networks.clone(), values, &[]);
        for &(first, last, value) in &networks {
            for ip in first..=last {
                let (v, prefix) = index.locate(ip);
                assert_eq!(v, value, "{ip:#x}");
                // Every address inside the announced prefix has the same value (naive reference).
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                let naive = |a: u32| {
                    networks
                        .iter()
                        .find(|n| n.0 <= a && a <= n.1)
                        .map_or(NONE, |n| n.2)
                };
                for other in (ip & mask)..=(ip | !mask) {
                    assert_eq!(naive(other), value, "{other:#x} inside /{prefix} of {ip:#x}");
                }
            }
        }
        assert!(index.len() > 1000);
    }

    #[test]
    fn packed_values_are_small_and_round_trip() {
        assert!(size_of::<Packed>() <= 24, "{}", size_of::<Packed>());
        let db = crate::GeoDb::bundled().unwrap();
        for ip in ["83.0.0.1", "24.48.0.1", "2a00:1450:4001::1"] {
            let l = db.locate(ip.parse().unwrap()).location.unwrap();
            let back = Packed::pack(&l).unpack();
            assert_eq!(back, l, "{ip}");
        }
        let bare = GeoLocation {
            country: None,
            continent: None,
            coordinates: None,
        };
        assert_eq!(Packed::pack(&bare).unpack(), bare);
    }

    #[test]
    fn widest_prefix_fits_the_range() {
        assert_eq!(widest_prefix(0x0a00_0005, 0x0a00_0000, 0x0aff_ffff), 8);
        assert_eq!(widest_prefix(0x0a00_0005, 0x0a00_0001, 0x0aff_ffff), 30);
        assert_eq!(widest_prefix(5, 0, u64::from(u32::MAX)), 0);
        assert_eq!(widest_prefix(7, 7, 7), 32);
    }
}
