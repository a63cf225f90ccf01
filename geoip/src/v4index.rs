//! A flat index of the IPv4 space, built once when a database is opened: sorted ranges of addresses
//! with the same *interpretation* (country, continent, coordinates), adjacent equal ranges merged.
//!
//! Why: walking a city database's tree costs a cache miss per level (~20 levels over 100 MB) and was most
//! of a DNS answer's time. Here a lookup is one read in a 65,536-entry table of where each /16 starts and
//! a binary search over the few ranges inside it. Merging gives a second benefit: every address in a
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
    /// Distinct interpretations.
    values: Vec<GeoLocation>,
    /// For each /16, the index of the range holding its first address.
    by_16: Vec<u32>,
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
            values,
            ranges: Vec::new(),
            by_16: Vec::new(),
        };
        for &(first, last) in holes {
            index.punch(first, last);
        }
        index.by_16 = (0..=u16::MAX)
            .map(|hi| index.starts.partition_point(|&s| s <= u32::from(hi) << 16) as u32 - 1)
            .collect();
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

    /// The location of `ip` and the widest prefix around it with the same location.
    pub(crate) fn locate(&self, ip: u32) -> (Option<&GeoLocation>, u8) {
        let lo = self.by_16[(ip >> 16) as usize] as usize;
        let hi = self
            .by_16
            .get((ip >> 16) as usize + 1)
            .map_or(self.ranges.len(), |h| *h as usize + 1);
        let i = lo + self.ranges[lo..hi].partition_point(|&(s, _)| s <= ip) - 1;
        let (start, value) = self.ranges[i];
        let end = self
            .ranges
            .get(i + 1)
            .map_or(u64::from(u32::MAX), |n| u64::from(n.0) - 1);
        let loc = (value != NONE).then(|| &self.values[value as usize]);
        (loc, widest_prefix(u64::from(ip), u64::from(start), end))
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

    #[test]
    fn widest_prefix_fits_the_range() {
        assert_eq!(widest_prefix(0x0a00_0005, 0x0a00_0000, 0x0aff_ffff), 8);
        assert_eq!(widest_prefix(0x0a00_0005, 0x0a00_0001, 0x0aff_ffff), 30);
        assert_eq!(widest_prefix(5, 0, u64::from(u32::MAX)), 0);
        assert_eq!(widest_prefix(7, 7, 7), 32);
    }
}
