//! Measured latency as steering sees it: the client *area* a measurement is attributed to, the matrix of
//! estimates per (area, region) that snapshots carry, and the latency step of policy `nearest` with
//! `[services.NAME.latency]` (`docs/latency.md`).
//!
//! The area is a function of the client's location alone ([`latency_area`]): its country and the
//! 10-degree cell of its coordinates. DNS computes it from the ECS address (or the resolver's), the proxy
//! from the connection's peer address, both through the same GeoIP database and this one function, so a
//! measurement lands where the decision will look for it. The step is pure: it reads the matrix in the
//! states, the request hash (for exploration) and nothing else — no clock, no randomness, and the age of
//! an estimate does not enter it (publishers expire their own estimates, and their lease removes them).

use std::fmt;
use std::str::FromStr;

use arrayvec::ArrayVec;
use meridian_config::{CountryCode, LatencySteering};

use crate::ClientLocation;
use crate::hash::unit;
use crate::{RegionIndex, RegionSet};

/// Width of an area's cell, in degrees of latitude and longitude.
pub const AREA_CELL_DEGREES: f64 = 10.0;

/// Salt of the per-network exploration draw (independent of the weighted and spill draws).
const EXPLORE_SALT: u64 = 0x4558_504c_4f52_4501;
/// Salt of the choice among the regions a network may explore.
const EXPLORE_PICK_SALT: u64 = 0x4558_504c_4f52_4502;

/// Where clients are, for latency: a country and a 10-degree cell of the client's coordinates (a
/// country-level database gives one cell per country; a city database splits large countries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LatencyArea {
    country: CountryCode,
    /// South-west corner of the cell, in whole cells (`floor(degrees / 10)`).
    lat_cell: i8,
    lon_cell: i8,
}

impl LatencyArea {
    /// The area of a country and coordinates in degrees.
    pub fn new(country: CountryCode, lat: f64, lon: f64) -> Self {
        let cell = |d: f64, lo: f64, hi: f64| (d.clamp(lo, hi) / AREA_CELL_DEGREES).floor() as i8;
        Self {
            country,
            lat_cell: cell(lat, -90.0, 89.999),
            lon_cell: cell(lon, -180.0, 179.999),
        }
    }

    /// The country.
    pub fn country(&self) -> CountryCode {
        self.country
    }
}

/// `PL@50,20`: the country, then the south-west corner of the cell in degrees.
impl fmt::Display for LatencyArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let deg = |c: i8| i32::from(c) * AREA_CELL_DEGREES as i32;
        write!(
            f,
            "{}@{},{}",
            self.country,
            deg(self.lat_cell),
            deg(self.lon_cell)
        )
    }
}

impl FromStr for LatencyArea {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a latency area (COUNTRY@LAT,LON, e.g. PL@50,20)");
        let (country, cell) = s.split_once('@').ok_or_else(bad)?;
        let (lat, lon) = cell.split_once(',').ok_or_else(bad)?;
        let country = CountryCode::parse(country).ok_or_else(bad)?;
        let deg = |v: &str, lo: i32, hi: i32| {
            v.parse::<i32>()
                .ok()
                .filter(|d| (lo..hi).contains(d) && d % AREA_CELL_DEGREES as i32 == 0)
        };
        let (lat, lon) = (
            deg(lat, -90, 90).ok_or_else(bad)?,
            deg(lon, -180, 180).ok_or_else(bad)?,
        );
        Ok(Self::new(country, f64::from(lat), f64::from(lon)))
    }
}

/// The area of a client: `None` without a country or coordinates (such clients are steered by distance
/// or their `unknown-location` list, and their connections are not attributed). Computed once, when the
/// location is built ([`ClientLocation::new`]: `LatencyArea::new` of its country and coordinates in
/// degrees), not per decision.
pub fn latency_area(client: &ClientLocation) -> Option<LatencyArea> {
    client.area()
}

/// One (area, region) estimate: the decayed mean round-trip time and the (decayed) number of samples
/// behind it. `samples == 0`: nothing measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Measured {
    /// Estimated TCP round-trip time, milliseconds.
    pub rtt_ms: f32,
    /// Samples behind it (decayed, summed over the region's proxies).
    pub samples: u32,
    /// When the newest report behind it was written, ms since the epoch (shown, never decided on).
    pub updated_at_ms: u64,
}

/// Latency estimates per (area, region): what the proxies published, merged. Immutable once built.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyMatrix {
    regions: usize,
    /// Sorted by area.
    rows: Vec<Row>,
}

/// One area's estimates.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    area: LatencyArea,
    /// Indexed like the configuration's regions.
    cells: Box<[Measured]>,
    /// The regions with an estimate, fastest first (equal estimates: lower region first). The decision
    /// finds the fastest usable region, and the few within its tie band, by walking this from the front
    /// instead of passing over every region (`latency_step`).
    fastest_first: Vec<RegionIndex>,
}

impl Row {
    /// Where `region` (with estimate `rtt_ms`) belongs in `fastest_first`.
    fn position(&self, rtt_ms: f32, region: RegionIndex) -> usize {
        self.fastest_first.partition_point(|r| {
            let m = self.cells[r.get()].rtt_ms;
            m.total_cmp(&rtt_ms).then(r.cmp(&region)).is_lt()
        })
    }
}

impl LatencyMatrix {
    /// An empty matrix over `regions` regions.
    pub fn new(regions: usize) -> Self {
        Self {
            regions,
            rows: Vec::new(),
        }
    }

    /// Adds one proxy's estimate; estimates of several proxies of a region merge into their
    /// sample-weighted mean (samples add up, the newest report time stays). Out-of-range regions and
    /// estimates without samples are ignored.
    pub fn add(&mut self, area: LatencyArea, region: RegionIndex, m: Measured) {
        if region.get() >= self.regions || m.samples == 0 || !m.rtt_ms.is_finite() || m.rtt_ms < 0.0 {
            return;
        }
        let row = match self.rows.binary_search_by_key(&area, |r| r.area) {
            Ok(i) => &mut self.rows[i],
            Err(i) => {
                let row = Row {
                    area,
                    cells: vec![Measured::default(); self.regions].into(),
                    fastest_first: Vec::new(),
                };
                self.rows.insert(i, row);
                &mut self.rows[i]
            }
        };
        let cell = row.cells[region.get()];
        if cell.samples > 0 {
            let at = row.position(cell.rtt_ms, region);
            row.fastest_first.remove(at);
        }
        let total = u64::from(cell.samples) + u64::from(m.samples);
        let merged = Measured {
            rtt_ms: ((f64::from(cell.rtt_ms) * f64::from(cell.samples)
                + f64::from(m.rtt_ms) * f64::from(m.samples))
                / total as f64) as f32,
            samples: u32::try_from(total).unwrap_or(u32::MAX),
            updated_at_ms: cell.updated_at_ms.max(m.updated_at_ms),
        };
        let at = row.position(merged.rtt_ms, region);
        row.fastest_first.insert(at, region);
        row.cells[region.get()] = merged;
    }

    /// The estimates of an area, indexed like the configuration's regions.
    pub fn row(&self, area: LatencyArea) -> Option<&[Measured]> {
        self.find(area).map(|r| &*r.cells)
    }

    fn find(&self, area: LatencyArea) -> Option<&Row> {
        self.rows
            .binary_search_by_key(&area, |r| r.area)
            .ok()
            .map(|i| &self.rows[i])
    }

    /// Every area with its estimates, in area order.
    pub fn rows(&self) -> impl Iterator<Item = (LatencyArea, &[Measured])> {
        self.rows.iter().map(|r| (r.area, &*r.cells))
    }

    /// Whether nothing is measured.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// What the latency step concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyOutcome {
    /// The client has no area (no country or coordinates): distance decided.
    NoArea,
    /// The nearest usable region has fewer than `min-samples` samples for the area: distance decided.
    NotMeasured,
    /// No measured region beats the nearest one by the margin: it stays.
    WithinMargin,
    /// A measured region beats the nearest one by more than the margin, and answers first.
    Faster,
}

/// The latency step's part of a decision (policy `nearest` with `[services.NAME.latency]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyNote {
    /// The client's area.
    pub area: Option<LatencyArea>,
    /// What decided.
    pub outcome: LatencyOutcome,
    /// The region distance alone would have answered first (after near-ties).
    pub nearest: Option<RegionIndex>,
    /// The region latency put first (the nearest one unless [`LatencyOutcome::Faster`]).
    pub chosen: Option<RegionIndex>,
    /// The margin a region had to win by, ms (0 when the nearest one was not measured).
    pub margin_ms: f64,
    /// This client's network is in the exploration share: this region answers first instead, so that
    /// its latency gets measured.
    pub explored: Option<RegionIndex>,
}

/// Which regions answer first. `cands`: the usable regions with their rank (lower answers earlier: the
/// distance order after near-ties), in any order — the step scans them instead of sorting or copying
/// them. Returns the note, whose `explored` (if any) answers first and `chosen` next. Pure: a function of
/// the arguments.
///
/// One pass over `cands` (two when several contenders share the tie band; one more for the explorers).
/// The rule of `docs/latency.md` reads as three passes: the nearest; the fastest *contender* (a region
/// beating the nearest by more than the margin); the nearest contender within the tie band of the
/// fastest. Here the pass finds the nearest and notes which regions are usable; the rest walks the area's
/// row fastest first (`Row::fastest_first`), which stops after a few regions:
/// - "beats the nearest" is monotone in a region's estimate (`base - rtt` never grows as `rtt` grows,
///   rounding included), so if any region is a contender, the fastest usable measured region is one,
///   and it is the fastest contender: the first usable, measured region of the row's order;
/// - the band's contenders are a prefix of that order; with one of them it is the answer, with several
///   the nearest of them is found by rank.
///
/// `tests::fused_step_decides_as_the_three_passes` checks this against the three-pass form.
pub(crate) fn latency_step(
    settings: &LatencySteering,
    matrix: &LatencyMatrix,
    client: &ClientLocation,
    cands: impl Iterator<Item = (u128, RegionIndex)> + Clone,
    request_hash: u64,
) -> (LatencyNote, Option<Placed>) {
    let mut note = LatencyNote {
        area: None,
        outcome: LatencyOutcome::NoArea,
        nearest: None,
        chosen: None,
        margin_ms: 0.0,
        explored: None,
    };
    // An area nothing is measured for reads as an empty row: every region unmeasured.
    let row = client.area().and_then(|area| matrix.find(area));
    let cells = row.map_or(&[][..], |r| &r.cells[..]);
    let fastest_first = row.map_or(&[][..], |r| &r.fastest_first[..]);
    // `min-samples` is at least 1 (validated): a region without an estimate never counts.
    let min_samples = settings.min_samples;
    let enough = |r: RegionIndex| cells.get(r.get()).filter(|m| m.samples >= min_samples);
    // The one pass over the candidates: the nearest (ranks are distinct: they end with the region; none
    // is `u128::MAX`, the group being 0 or 1), and which regions are usable.
    let (mut nearest_rank, mut nearest, mut nearest_at) = (u128::MAX, None, 0);
    let mut usable = RegionSet::default();
    for (at, (rank, region)) in cands.clone().enumerate() {
        if rank < nearest_rank {
            (nearest_rank, nearest, nearest_at) = (rank, Some(region), at);
        }
        usable.insert(region);
    }
    let Some(baseline) = nearest else {
        return (note, None);
    };
    note.nearest = Some(baseline);
    note.chosen = Some(baseline);
    let mut placed = Placed {
        chosen: nearest_at,
        explored: None,
    };
    note.area = client.area();
    if note.area.is_none() {
        return (note, Some(placed));
    }
    note.outcome = LatencyOutcome::NotMeasured;
    if let Some(base) = enough(baseline) {
        let base_rtt = f64::from(base.rtt_ms);
        let margin = settings.margin_ms.max(settings.margin_share * base_rtt);
        note.margin_ms = margin;
        note.outcome = LatencyOutcome::WithinMargin;
        // Contenders beat the nearest by more than the margin; the fastest of them sets a tie band of the
        // same margin, and the nearest contender within the band wins (near-equal regions do not
        // alternate as their estimates wobble). The fastest contender is the fastest usable measured
        // region, if that one beats the nearest at all (see above): the first of the row's order that is
        // usable and has enough samples (f32 to f64 is exact and keeps the order).
        let counts = |r: RegionIndex| usable.contains(r) && enough(r).is_some();
        let fastest = fastest_first
            .iter()
            .find(|r| counts(**r))
            .map_or(f64::INFINITY, |r| f64::from(cells[r.get()].rtt_ms));
        if base_rtt - fastest > margin {
            // The contenders within the band: a prefix of the row's order, usually a few regions.
            let band = fastest + margin;
            let (mut in_band, mut count, mut last) = (RegionSet::default(), 0usize, baseline);
            for &r in fastest_first {
                let rtt = f64::from(cells[r.get()].rtt_ms);
                if rtt > band {
                    break;
                }
                if base_rtt - rtt > margin && counts(r) {
                    in_band.insert(r);
                    count += 1;
                    last = r;
                }
            }
            // The nearest of them, by rank; with one, only its position is looked for.
            let (mut chosen_rank, mut chosen) = (u128::MAX, None);
            for (at, (rank, region)) in cands.clone().enumerate() {
                if count == 1 && region == last {
                    chosen = Some((region, at));
                    break;
                }
                if rank < chosen_rank && in_band.contains(region) {
                    (chosen_rank, chosen) = (rank, Some((region, at)));
                }
            }
            if let Some((region, at)) = chosen {
                note.chosen = Some(region);
                placed.chosen = at;
            }
            note.outcome = LatencyOutcome::Faster;
        }
    }
    if settings.explore_share > 0.0 && unit(request_hash, EXPLORE_SALT) <= settings.explore_share {
        // The next `explore-regions` (at most 8) after the chosen one, in answer order.
        let mut next: ArrayVec<(u128, RegionIndex, usize), 8> = ArrayVec::new();
        let keep = settings.explore_regions.clamp(1, 8);
        for (at, (rank, region)) in cands.enumerate() {
            if Some(region) == note.chosen {
                continue;
            }
            let c = (rank, region, at);
            let at = next.partition_point(|n| *n < c);
            if at < keep {
                if next.len() == keep {
                    next.pop();
                }
                next.insert(at, c);
            }
        }
        if !next.is_empty() {
            let k = (unit(request_hash, EXPLORE_PICK_SALT) * next.len() as f64) as usize;
            if let Some(&(_, region, at)) = next.get(k.min(next.len() - 1)) {
                note.explored = Some(region);
                placed.explored = Some(at);
            }
        }
    }
    (note, Some(placed))
}

/// Where the step's regions are among the candidates (positions in the order `cands` iterates), so that
/// the caller moves them to the front without looking for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placed {
    /// The chosen region (the nearest, unless a faster one was chosen).
    pub(crate) chosen: usize,
    /// The explored region, if this network explores.
    pub(crate) explored: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Point;
    use meridian_config::Coordinates;
    use proptest::prelude::*;

    /// The latency step as it was written before the passes were fused (commit 04bc805): three passes
    /// (the nearest; the fastest contender; the nearest contender in its band), verbatim but for the
    /// area, which both forms now take from the location.
    fn three_pass_step(
        settings: &LatencySteering,
        matrix: &LatencyMatrix,
        client: &ClientLocation,
        cands: impl Iterator<Item = (u128, RegionIndex)> + Clone,
        request_hash: u64,
    ) -> LatencyNote {
        let nearest = cands.clone().min().map(|c| c.1);
        let mut note = LatencyNote {
            area: None,
            outcome: LatencyOutcome::NoArea,
            nearest,
            chosen: nearest,
            margin_ms: 0.0,
            explored: None,
        };
        let Some(baseline) = nearest else {
            return note;
        };
        note.area = client.area();
        let Some(area) = note.area else {
            return note;
        };
        let row = matrix.row(area);
        let measured = |r: RegionIndex| {
            row.and_then(|row| row.get(r.get()))
                .filter(|m| m.samples >= settings.min_samples)
                .map(|m| f64::from(m.rtt_ms))
        };
        note.outcome = LatencyOutcome::NotMeasured;
        if let Some(base_rtt) = measured(baseline) {
            let margin = settings.margin_ms.max(settings.margin_share * base_rtt);
            note.margin_ms = margin;
            note.outcome = LatencyOutcome::WithinMargin;
            let contender = |r: RegionIndex| measured(r).filter(|rtt| base_rtt - rtt > margin);
            let best = cands
                .clone()
                .filter_map(|c| contender(c.1))
                .fold(f64::INFINITY, f64::min);
            if best.is_finite() {
                note.chosen = cands
                    .clone()
                    .filter(|c| contender(c.1).is_some_and(|rtt| rtt <= best + margin))
                    .min()
                    .map(|c| c.1);
                note.outcome = LatencyOutcome::Faster;
            }
        }
        if settings.explore_share > 0.0 && unit(request_hash, EXPLORE_SALT) <= settings.explore_share {
            let mut next: ArrayVec<(u128, RegionIndex), 8> = ArrayVec::new();
            let keep = settings.explore_regions.clamp(1, 8);
            for c in cands.filter(|c| Some(c.1) != note.chosen) {
                let at = next.partition_point(|n| *n < c);
                if at < keep {
                    if next.len() == keep {
                        next.pop();
                    }
                    next.insert(at, c);
                }
            }
            if !next.is_empty() {
                let k = (unit(request_hash, EXPLORE_PICK_SALT) * next.len() as f64) as usize;
                note.explored = next.get(k.min(next.len() - 1)).map(|c| c.1);
            }
        }
        note
    }

    impl Row {
        /// `fastest_first` holds exactly the regions with samples, by estimate then region.
        fn is_consistent(&self) -> bool {
            let mut expected: Vec<RegionIndex> = (0..self.cells.len())
                .filter(|r| self.cells[*r].samples > 0)
                .map(|r| RegionIndex(r as u16))
                .collect();
            expected.sort_by(|a, b| {
                let (x, y) = (self.cells[a.get()].rtt_ms, self.cells[b.get()].rtt_ms);
                x.total_cmp(&y).then(a.cmp(b))
            });
            expected == self.fastest_first
        }
    }

    /// Estimates drawn from a few values, so that ties between regions (equal estimates, estimates
    /// exactly at the margin or at the band's edge) are frequent, and from anywhere.
    fn rtt() -> impl Strategy<Value = f32> {
        prop_oneof![
            prop::sample::select(vec![0.0f32, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 100.0]),
            0.0f32..400.0,
        ]
    }

    fn settings() -> impl Strategy<Value = LatencySteering> {
        (
            prop::sample::select(vec![1u32, 10, 20]),
            prop_oneof![Just(0.0), Just(10.0), 0.0f64..50.0],
            prop_oneof![Just(0.0), Just(0.15), 0.0f64..=1.0],
            prop_oneof![Just(0.0), Just(0.02), Just(1.0), 0.0f64..=0.2],
            1usize..=8,
        )
            .prop_map(
                |(min_samples, margin_ms, margin_share, explore_share, explore_regions)| LatencySteering {
                    min_samples,
                    margin_ms,
                    margin_share,
                    explore_share,
                    explore_regions,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The fused step (at most two passes) decides exactly as the three passes did: same nearest,
        /// outcome, chosen and explored regions, same margin — for any candidates (any subset of the
        /// regions, any ranks, near-tie group or not), any estimates (ties included, regions beyond the
        /// matrix's width), any settings, clients with and without an area or a row, any hash.
        #[test]
        fn fused_step_decides_as_the_three_passes(
            regions in 1usize..60,
            // Per region: usable (with this group and key for its rank), its estimate if any.
            // Several reports per cell (proxies of a region, merged by `add`).
            per_region in prop::collection::vec(
                (any::<bool>(), 0u8..2, any::<u64>(), prop::collection::vec((rtt(), 0u32..40), 0..3)), 60),
            narrower in 0usize..3,
            settings in settings(),
            // 0: no area; 1: an area without a row; 2: an area with a row.
            which in 0u8..3,
            hash: u64,
        ) {
            let de = CountryCode::parse("DE").unwrap();
            let client = if which == 0 {
                ClientLocation::new(Some(de), None, None)
            } else {
                ClientLocation::new(Some(de), None, Some(Coordinates { lat: 50.1, lon: 8.7 }))
            };
            let area = LatencyArea::new(de, 50.1, 8.7);
            let other = LatencyArea::new(de, 40.0, 8.7);
            // Sometimes narrower than the regions (a matrix of an older configuration).
            let mut matrix = LatencyMatrix::new(regions.saturating_sub(narrower).max(1));
            for (r, (_, _, _, reports)) in per_region.iter().take(regions).enumerate() {
                for &(rtt_ms, samples) in reports {
                    let m = Measured { rtt_ms, samples, updated_at_ms: 0 };
                    matrix.add(if which == 2 { area } else { other }, RegionIndex(r as u16), m);
                }
            }
            prop_assert!(matrix.rows.iter().all(Row::is_consistent));
            let ranks: Vec<(u128, RegionIndex)> = per_region
                .iter()
                .take(regions)
                .enumerate()
                .filter(|(_, (usable, ..))| *usable)
                .map(|(r, (_, group, key, _))| {
                    let region = RegionIndex(r as u16);
                    ((u128::from(*group) << 80) | (u128::from(*key) << 16) | r as u128, region)
                })
                .collect();
            let (fused, placed) = latency_step(&settings, &matrix, &client, ranks.iter().copied(), hash);
            let three = three_pass_step(&settings, &matrix, &client, ranks.iter().copied(), hash);
            prop_assert_eq!(fused, three);
            // The positions are those of the regions named.
            prop_assert_eq!(placed.is_some(), fused.chosen.is_some());
            if let Some(placed) = placed {
                prop_assert_eq!(Some(ranks[placed.chosen].1), fused.chosen);
                prop_assert_eq!(placed.explored.map(|at| ranks[at].1), fused.explored);
            }
        }
    }

    /// The area comes from the coordinates in degrees; before, it was computed back from the unit vector
    /// (`asin`, `atan2`), which agrees except within rounding of a cell's edge, where the degrees are
    /// the truth (50.0 N is in the cell of 50, not of 40).
    #[test]
    fn the_area_is_the_cell_of_the_degrees() {
        let pl = CountryCode::parse("PL").unwrap();
        let area = |lat, lon| {
            latency_area(&ClientLocation::new(
                Some(pl),
                None,
                Some(Coordinates { lat, lon }),
            ))
        };
        let via_point = |lat: f64, lon: f64| {
            let (lat, lon) = Point::from_coordinates(Coordinates { lat, lon }).lat_lon_degrees();
            LatencyArea::new(pl, lat, lon)
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x = crate::hash::mix(x);
            let lat = (x >> 11) as f64 / (1u64 << 53) as f64 * 180.0 - 90.0;
            let lon = ((x >> 20) % 3_600_000) as f64 / 10_000.0 - 180.0;
            let near_edge = |d: f64| (d / AREA_CELL_DEGREES - (d / AREA_CELL_DEGREES).round()).abs() < 1e-9;
            if !near_edge(lat) && !near_edge(lon) && lat.abs() < 89.9 {
                assert_eq!(area(lat, lon), Some(via_point(lat, lon)), "{lat},{lon}");
            }
        }
        assert_eq!(
            area(50.0, 20.0).map(|a| a.to_string()).as_deref(),
            Some("PL@50,20")
        );
        assert_eq!(
            area(-50.0, -20.0).map(|a| a.to_string()).as_deref(),
            Some("PL@-50,-20")
        );
    }

    #[test]
    fn areas_print_and_parse() {
        let pl = CountryCode::parse("PL").unwrap();
        let a = LatencyArea::new(pl, 52.2, 21.0);
        assert_eq!(a.to_string(), "PL@50,20");
        assert_eq!("PL@50,20".parse::<LatencyArea>().unwrap(), a);
        let us = LatencyArea::new(CountryCode::parse("US").unwrap(), 37.7, -122.4);
        assert_eq!(us.to_string(), "US@30,-130");
        assert_eq!(us.to_string().parse::<LatencyArea>().unwrap(), us);
        for bad in [
            "PL", "PL@5,20", "XX@50,20", "PL@50", "PL@90,0", "PL@0,180", "PL@a,b",
        ] {
            assert!(bad.parse::<LatencyArea>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_area_comes_from_the_location() {
        let pl = CountryCode::parse("PL").unwrap();
        let at = |lat, lon| ClientLocation::new(Some(pl), None, Some(Coordinates { lat, lon }));
        assert_eq!(
            latency_area(&at(52.2, 21.0)),
            Some(LatencyArea::new(pl, 52.2, 21.0))
        );
        assert_eq!(latency_area(&ClientLocation::new(Some(pl), None, None)), None);
        assert_eq!(latency_area(&ClientLocation::UNKNOWN), None);
    }

    #[test]
    fn proxies_merge_by_sample_weight() {
        let mut m = LatencyMatrix::new(2);
        let a = LatencyArea::new(CountryCode::parse("DE").unwrap(), 50.0, 8.0);
        let r = RegionIndex(1);
        let at = |rtt_ms, samples, updated_at_ms| Measured {
            rtt_ms,
            samples,
            updated_at_ms,
        };
        m.add(a, r, at(10.0, 30, 5));
        m.add(a, r, at(40.0, 10, 9));
        m.add(a, RegionIndex(2), at(1.0, 10, 9));
        m.add(a, RegionIndex(0), at(1.0, 0, 9));
        let row = m.row(a).unwrap();
        assert_eq!(row[1], at(17.5, 40, 9));
        assert_eq!(row[0], Measured::default());
        assert_eq!(m.rows().count(), 1);
    }
}
