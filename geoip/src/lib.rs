//! Locates an IP address: country, continent, coordinates, and the prefix length of the database network that
//! matched (the DNS server needs it to return an honest EDNS Client Subnet scope).
//!
//! Owns: reading MaxMind-format databases in either schema Meridian meets in practice —
//! GeoIP2/GeoLite2 City or Country (`country.iso_code`, `continent.code`, `location.latitude`) and DB-IP Lite
//! as published by `@ip-location-db` (`country_code`, `latitude`) — and the fallback from a country to its
//! population centre when the database has no coordinates. Private, loopback, documentation and other
//! non-routable addresses are "unknown location" without a lookup.
//!
//! Must not depend on: the steering engine, the state store or any server. It reads one file (or the bundled
//! bytes) when opened and is a pure in-memory lookup afterwards: two flat indexes (`v4index`, `v6index`)
//! answer every lookup, and a database read from a file is dropped once they are built.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod special;
mod v4index;
mod v6index;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use maxminddb::Reader;
use meridian_config::{Continent, Coordinates, CountryCode};
use serde::Deserialize;

pub use special::non_routable_prefix;

/// The bundled database: DB-IP IP to Country Lite (CC BY 4.0, <https://db-ip.com>), June 2026.
#[cfg(feature = "bundled-db")]
static BUNDLED: &[u8] = include_bytes!("../../data/dbip-country-lite.mmdb");

/// Description of the bundled database, for attribution in `explain` and logs.
pub const BUNDLED_DESCRIPTION: &str = "DB-IP IP to Country Lite (CC BY 4.0, https://db-ip.com), bundled";

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    /// The file could not be read.
    #[error("cannot read GeoIP database {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a MaxMind DB.
    #[error("{origin} is not a usable MaxMind database: {source}")]
    Format {
        /// Where the bytes came from.
        origin: String,
        /// The reader's error.
        source: maxminddb::MaxMindDbError,
    },
    /// This build has no bundled database.
    #[error("this build has no bundled GeoIP database (feature bundled-db is off): configure geoip.database")]
    NoBundled,
}

/// The backing bytes: the bundled static slice or a file read into memory.
enum Bytes {
    #[cfg_attr(not(feature = "bundled-db"), allow(dead_code))]
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            Self::Static(b) => b,
            Self::Owned(b) => b,
        }
    }
}

/// An open GeoIP database.
pub struct GeoDb {
    /// The database's tree: kept only when the indexes could not be built, or when it costs no memory of
    /// its own (the bundled bytes) or a test wants it as the reference (`from_vec`). Why: once both
    /// indexes exist no lookup reads it, and a city database's 100+ MB would stay resident for nothing.
    reader: Option<Reader<Bytes>>,
    /// When the database was built (Unix seconds), from its metadata.
    build_epoch: u64,
    description: String,
    /// Interpreted records by data-section offset. Why: a city database's records are large maps (names
    /// in several languages) and most of a lookup's time went to decoding and skipping through them, while
    /// a few hundred thousand records serve millions of networks. The cache is bounded; when full it is
    /// cleared (simple, and the working set refills it in milliseconds).
    decoded: [Mutex<HashMap<usize, Option<GeoLocation>>>; CACHE_SHARDS],
    /// IPv4 answers, flattened (see `v4index`); `None` if the database has no IPv4 data to index.
    v4: Option<v4index::V4Index>,
    /// IPv6 answers, flattened (see `v6index`); `None` for an IPv4-only database or when the IPv4 index
    /// is missing (the location values are the IPv4 index's).
    v6: Option<v6index::V6Index>,
    /// Unique among the databases this process opened: what a [`LocationId`] is relative to.
    instance: u64,
}

/// Numbers every opened database (see [`GeoDb::instance`]).
static INSTANCES: AtomicU64 = AtomicU64::new(1);

/// A small dense number for a location *value* of one database: addresses with the same id get the
/// same [`Located::location`] (their prefixes may differ), which [`GeoDb::location`] gives back. Ids run
/// from 0 to [`GeoDb::location_ids`]` - 1`; 0 is "unknown location". Why: a caller that derives something
/// from the location alone (a steering decision) can keep it in a table indexed by id instead of
/// recomputing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LocationId(u32);

impl LocationId {
    /// The id of every unknown location (non-routable, or not in the database).
    pub const UNKNOWN: Self = Self(0);

    /// As a table index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

const CACHE_SHARDS: usize = 16;
/// Entries per shard before the shard is cleared (16 shards: about 1M records, ~60 MB at most).
const CACHE_SHARD_CAPACITY: usize = 1 << 16;

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("description", &self.description)
            .finish()
    }
}

/// Where a location's coordinates came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinatesSource {
    /// The database's own latitude and longitude (a city database).
    Database,
    /// The country's population centre: the database only knew the country.
    CountryCentre,
}

/// What is known about where an address is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoLocation {
    /// Country, when the database knows it.
    pub country: Option<CountryCode>,
    /// Continent: the database's, else the country's.
    pub continent: Option<Continent>,
    /// Coordinates and their source, when known.
    pub coordinates: Option<(Coordinates, CoordinatesSource)>,
}

impl GeoLocation {
    /// Country, continent and coordinates (without their source).
    pub fn parts(&self) -> (Option<CountryCode>, Option<Continent>, Option<Coordinates>) {
        (self.country, self.continent, self.coordinates.map(|(c, _)| c))
    }
}

/// Why an address has no location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownReason {
    /// Private, loopback, link-local, documentation, multicast... (never in a GeoIP database).
    NonRoutable,
    /// The database has no (usable) record for it.
    NotInDatabase,
}

/// The answer to "where is this address?".
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Located {
    /// The location, or why there is none.
    pub location: Result<GeoLocation, UnknownReason>,
    /// Prefix length of the network the answer holds for: the database network that matched, or the
    /// non-routable block. Every address in that network gets the same answer.
    pub prefix_len: u8,
}

impl Located {
    /// Country, continent and coordinates, each `None` when unknown (all `None` for an unknown location).
    pub fn parts(&self) -> (Option<CountryCode>, Option<Continent>, Option<Coordinates>) {
        match &self.location {
            Ok(l) => l.parts(),
            Err(_) => (None, None, None),
        }
    }
}

/// The fields of either schema that Meridian reads; everything else in a record is skipped.
#[derive(Deserialize, Default)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    continent: Option<ContinentCode<'a>>,
    #[serde(default)]
    location: Option<LatLon>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentCode<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct LatLon {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

impl GeoDb {
    /// The bundled DB-IP Lite country database.
    pub fn bundled() -> Result<Self, GeoIpError> {
        #[cfg(feature = "bundled-db")]
        {
            Self::from_bytes(Bytes::Static(BUNDLED), BUNDLED_DESCRIPTION.to_owned())
        }
        #[cfg(not(feature = "bundled-db"))]
        {
            Err(GeoIpError::NoBundled)
        }
    }

    /// Opens a database file (read into memory).
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        let bytes = std::fs::read(path).map_err(|source| GeoIpError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut db = Self::from_bytes(Bytes::Owned(bytes), path.display().to_string())?;
        if db.v4.is_some() && (db.v6.is_some() || db.ip_version() == 4) {
            db.reader = None;
        }
        Ok(db)
    }

    /// A database from bytes in memory (tests build small ones with `mmdb-writer`). Keeps the tree, so
    /// that [`GeoDb::locate_in_tree`] can serve as the reference the indexes are tested against.
    pub fn from_vec(bytes: Vec<u8>, origin: &str) -> Result<Self, GeoIpError> {
        Self::from_bytes(Bytes::Owned(bytes), origin.to_owned())
    }

    fn from_bytes(bytes: Bytes, origin: String) -> Result<Self, GeoIpError> {
        let reader = Reader::from_source(bytes).map_err(|source| GeoIpError::Format {
            origin: origin.clone(),
            source,
        })?;
        let m = reader.metadata();
        let description = format!(
            "{origin} ({}, IPv{}, built {})",
            m.database_type,
            m.ip_version,
            meridian_config::calendar::utc_date(m.build_epoch)
        );
        let build_epoch = m.build_epoch;
        let mut db = Self {
            reader: Some(reader),
            build_epoch,
            description,
            decoded: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            v4: None,
            v6: None,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        };
        if let Some(reader) = &db.reader {
            (db.v4, db.v6) = build_indexes(reader).map_or((None, None), |(v4, v6)| (Some(v4), v6));
        }
        Ok(db)
    }

    /// The database's IP version (4 or 6), from its metadata (6 once the tree is dropped: only asked before).
    fn ip_version(&self) -> u16 {
        self.reader.as_ref().map_or(6, |r| r.metadata().ip_version)
    }
}

/// Records are decoded once each (by data offset) and their interpretations interned: a walk's memory is
/// a few octets per network, not a decoded record per network.
struct Interner {
    by_offset: HashMap<usize, u32>,
    interned: HashMap<v4index::ValueKey, u32>,
    values: Vec<GeoLocation>,
}

impl Interner {
    fn value(&mut self, result: &maxminddb::LookupResult<'_, Bytes>) -> u32 {
        let Some(offset) = result.offset() else {
            return v4index::NONE;
        };
        let (interned, values) = (&mut self.interned, &mut self.values);
        *self.by_offset.entry(offset).or_insert_with(|| {
            let decoded = result.decode::<Record<'_>>().ok().flatten();
            match decoded.as_ref().and_then(interpret) {
                None => v4index::NONE,
                Some(l) => *interned.entry(v4index::key(&l)).or_insert_with(|| {
                    values.push(l);
                    (values.len() - 1) as u32
                }),
            }
        })
    }
}

/// Walks every network of the database once: the IPv4 index, and for an IPv6 database the IPv6 index
/// over the same location values. `None` when the IPv4 part cannot be walked (then lookups walk the
/// tree); no IPv6 index when the IPv6 part cannot (IPv6 lookups walk the tree).
fn build_indexes(reader: &Reader<Bytes>) -> Option<(v4index::V4Index, Option<v6index::V6Index>)> {
    let mut interner = Interner {
        by_offset: HashMap::new(),
        interned: HashMap::new(),
        values: Vec::new(),
    };
    let v4_networks = walk_v4(reader, &mut interner)?;
    let v6 = if reader.metadata().ip_version == 6 {
        build_v6_index(reader, &mut interner)
    } else {
        None
    };
    let values = std::mem::take(&mut interner.values);
    drop(interner);
    let v4 = build_v4_index(v4_networks, values);
    Some((v4, v6))
}

/// The database's IPv4 networks as `(first, last, value)`.
fn walk_v4(reader: &Reader<Bytes>, interner: &mut Interner) -> Option<Vec<(u32, u32, u32)>> {
    let all: ipnetwork::IpNetwork = "0.0.0.0/0".parse().ok()?;
    let mut networks = Vec::new();
    for item in reader.within(all, maxminddb::WithinOptions::default()).ok()? {
        let result = item.ok()?;
        let ipnetwork::IpNetwork::V4(net) = result.network().ok()? else {
            continue;
        };
        let value = interner.value(&result);
        networks.push((u32::from(net.network()), u32::from(net.broadcast()), value));
    }
    Some(networks)
}

/// The IPv6 index: every IPv6 network outside the IPv4 subtree and its aliases, and which of the
/// prefixes databases alias to the IPv4 data (IPv4-compatible `::/96`, Teredo `2001::/32`, 6to4
/// `2002::/16`) this one does. `None` when the walk fails.
fn build_v6_index(reader: &Reader<Bytes>, interner: &mut Interner) -> Option<v6index::V6Index> {
    let all: ipnetwork::IpNetwork = "::/0".parse().ok()?;
    let has_v4_root = reader_has_v4_root(reader);
    let mut builder = v6index::V6Builder::new();
    for item in reader.within(all, maxminddb::WithinOptions::default()).ok()? {
        let result = item.ok()?;
        let ipnetwork::IpNetwork::V6(net) = result.network().ok()? else {
            continue; // the IPv4 subtree: the IPv4 index has it
        };
        let first = u128::from(net.network());
        if has_v4_root && first <= u128::from(u32::MAX) {
            continue; // inside the IPv4 subtree: the `::/96` alias below
        }
        let value = interner.value(&result);
        builder.push_network(first, u128::from(net.broadcast()), value);
    }
    let mut aliases = Vec::new();
    for (prefix, len) in [("::", 96u8), ("2001::", 32), ("2002::", 16)] {
        let Ok(net) = format!("{prefix}/{len}").parse::<ipnetwork::IpNetwork>() else {
            continue;
        };
        let first_of = |options| {
            reader
                .within(net, options)
                .ok()
                .and_then(|mut it| it.next())
                .is_some()
        };
        // An alias: the tree node at the prefix is the IPv4 root, which a plain walk skips and a walk
        // including aliases enters. `::/96` is the IPv4 root itself in a database with IPv4 data.
        let own = first_of(maxminddb::WithinOptions::default());
        let aliased = first_of(maxminddb::WithinOptions::default().include_aliased_networks());
        let is_alias = if len == 96 { has_v4_root } else { !own && aliased };
        if is_alias && let Ok(IpAddr::V6(a)) = prefix.parse::<IpAddr>() {
            aliases.push((u128::from(a), len));
        }
    }
    let holes: Vec<(u128, u128)> = special::V6
        .iter()
        .map(|(net, len)| {
            let first = u128::from(*net);
            (first, first | !v6index::mask128(*len))
        })
        .collect();
    builder.finish(&holes, aliases)
}

/// Whether an IPv6 database keeps IPv4 data in a subtree at `::/96` (every MaxMind-format writer
/// does when it has IPv4 networks): a walk of `0.0.0.0/0` then yields IPv4 networks.
fn reader_has_v4_root(reader: &Reader<Bytes>) -> bool {
    let Ok(all) = "0.0.0.0/0".parse::<ipnetwork::IpNetwork>() else {
        return false;
    };
    reader
        .within(all, maxminddb::WithinOptions::default())
        .ok()
        .and_then(|mut it| it.next())
        .is_some_and(|r| matches!(r.ok().map(|r| r.network()), Some(Ok(ipnetwork::IpNetwork::V4(_)))))
}

/// The IPv4 index over the walked networks, with the non-routable blocks as holes.
fn build_v4_index(networks: Vec<(u32, u32, u32)>, values: Vec<GeoLocation>) -> v4index::V4Index {
    let holes: Vec<(u32, u32)> = special::V4
        .iter()
        .map(|(net, len)| {
            let first = u32::from(*net);
            (
                first,
                first | (u32::MAX.checked_shr(u32::from(*len)).unwrap_or(0)),
            )
        })
        .collect();
    v4index::V4Index::build(networks, values, &holes)
}

impl GeoDb {
    /// Ranges in the IPv4 index (0: no index).
    pub fn ipv4_ranges(&self) -> usize {
        self.v4.as_ref().map_or(0, v4index::V4Index::len)
    }

    /// When the database was built (Unix seconds).
    pub fn build_epoch(&self) -> u64 {
        self.build_epoch
    }

    /// Ranges in the IPv6 index (0: no index).
    pub fn ipv6_ranges(&self) -> usize {
        self.v6.as_ref().map_or(0, v6index::V6Index::len)
    }

    /// Whether the database's tree is still in memory (see [`GeoDb::open`]).
    pub fn keeps_tree(&self) -> bool {
        self.reader.is_some()
    }

    /// Where the database came from, its type and build time.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Unique among the databases opened by this process (never reused): [`LocationId`]s are
    /// meaningful only together with it.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// How many [`LocationId`]s [`GeoDb::locate_id`] can return (ids are below this).
    pub fn location_ids(&self) -> usize {
        self.v4.as_ref().map_or(1, |v4| v4.values() + 1)
    }

    /// Locates an address. Total: every address gets an answer, possibly "unknown".
    pub fn locate(&self, ip: IpAddr) -> Located {
        let ip = ip.to_canonical();
        if let Some(prefix_len) = non_routable_prefix(ip) {
            return Located {
                location: Err(UnknownReason::NonRoutable),
                prefix_len,
            };
        }
        match self.indexed(ip) {
            Some((id, prefix_len)) => Located {
                location: self.location(id).ok_or(UnknownReason::NotInDatabase),
                prefix_len,
            },
            None => self.locate_in_tree(ip),
        }
    }

    /// The id of an address's location value and the prefix length [`GeoDb::locate`] would give, when
    /// the lookup can name one cheaply: unknown (non-routable) addresses, and addresses in the indexes.
    /// `None` otherwise (no index: lookups walk the tree). It reads only the index: a caller that keeps what
    /// it derives per id (see [`LocationId`]) asks for the location itself, [`GeoDb::location`], only
    /// when it has nothing kept.
    pub fn locate_id(&self, ip: IpAddr) -> Option<(LocationId, u8)> {
        let ip = ip.to_canonical();
        if let Some(prefix_len) = non_routable_prefix(ip) {
            return Some((LocationId::UNKNOWN, prefix_len));
        }
        self.indexed(ip)
    }

    /// Starts reading what [`GeoDb::locate_id`] will need for these clients, so that the lookups which
    /// follow find it in cache. Why: a lookup is one read at a random place in a large table, a cache
    /// miss each; a server that has a batch of requests in hand reads the batch's entries together,
    /// and their misses overlap instead of following one another. Only a hint: it changes no answer.
    pub fn warm(&self, clients: &[IpAddr]) {
        let Some(index) = &self.v4 else {
            return;
        };
        let v4 = clients.iter().filter_map(|ip| match ip.to_canonical() {
            IpAddr::V4(a) => Some(u32::from(a)),
            IpAddr::V6(_) => None,
        });
        // Kept opaque, or the reads would be optimised away.
        std::hint::black_box(index.touch(v4));
    }

    /// The indexes' id and prefix for a canonical, routable address (`None`: no index for its family).
    fn indexed(&self, ip: IpAddr) -> Option<(LocationId, u8)> {
        let id = |value: u32| LocationId(if value == v4index::NONE { 0 } else { value + 1 });
        let v4 = self.v4.as_ref()?;
        match ip {
            IpAddr::V4(a) => {
                let (value, prefix_len) = v4.locate(u32::from(a));
                Some((id(value), prefix_len))
            }
            IpAddr::V6(a) => match self.v6.as_ref()?.locate(u128::from(a)) {
                v6index::Located6::Value { value, prefix_len } => Some((id(value), prefix_len)),
                v6index::Located6::Alias { v4: a, len } => {
                    // Never an unknown-by-rule block: the IPv4 address inside an alias is looked up
                    // as the tree would, in the IPv4 data (holes included, as "not in database").
                    // An unknown one answers for itself only: the IPv4 index's empty ranges may
                    // span blocks that are non-routable in IPv6 (`::/96` holds `::` and `::1`).
                    let (value, prefix_len) = v4.locate(a);
                    let prefix_len = if value == v4index::NONE {
                        128
                    } else {
                        len + prefix_len
                    };
                    Some((id(value), prefix_len))
                }
            },
        }
    }

    /// The location an id stands for (`None`: unknown).
    pub fn location(&self, id: LocationId) -> Option<GeoLocation> {
        let value = id.0.checked_sub(1)?;
        self.v4.as_ref()?.value(value)
    }

    /// Locates by walking the database tree: the reference the indexes are tested against, and the
    /// lookup when they could not be built. "Not in database" when the tree was dropped (see `reader`).
    #[doc(hidden)]
    pub fn locate_in_tree(&self, ip: IpAddr) -> Located {
        let ip = ip.to_canonical();
        if let Some(prefix_len) = non_routable_prefix(ip) {
            return Located {
                location: Err(UnknownReason::NonRoutable),
                prefix_len,
            };
        }
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let Some(Ok(result)) = self.reader.as_ref().map(|r| r.lookup(ip)) else {
            return Located {
                location: Err(UnknownReason::NotInDatabase),
                prefix_len: max,
            };
        };
        let prefix_len = result.network().map_or(max, |n| n.prefix());
        let location = match result.offset() {
            Some(offset) => self.interpret_cached(offset, &result),
            None => None,
        };
        let location = location.ok_or(UnknownReason::NotInDatabase);
        Located { location, prefix_len }
    }

    /// The interpretation of the record at `offset`, decoded once.
    fn interpret_cached(
        &self,
        offset: usize,
        result: &maxminddb::LookupResult<'_, Bytes>,
    ) -> Option<GeoLocation> {
        let shard = &self.decoded[offset % CACHE_SHARDS];
        if let Ok(cache) = shard.lock()
            && let Some(hit) = cache.get(&offset)
        {
            return *hit;
        }
        // A record we cannot decode is treated like a missing one: a damaged entry must not take the
        // server down, and "unknown" has a defined, configured meaning.
        let location = match result.decode::<Record<'_>>() {
            Ok(Some(r)) => interpret(&r),
            Ok(None) | Err(_) => None,
        };
        if let Ok(mut cache) = shard.lock() {
            if cache.len() >= CACHE_SHARD_CAPACITY {
                cache.clear();
            }
            cache.insert(offset, location);
        }
        location
    }
}
fn interpret(r: &Record<'_>) -> Option<GeoLocation> {
    let code = r
        .country
        .as_ref()
        .and_then(|c| c.iso_code)
        .or(r.country_code)
        .or_else(|| r.registered_country.as_ref().and_then(|c| c.iso_code));
    let country = code.and_then(CountryCode::parse_any_case);
    let continent = r
        .continent
        .as_ref()
        .and_then(|c| c.code)
        .and_then(Continent::parse)
        .or(country.map(|c| c.info().continent));
    let (lat, lon) = match &r.location {
        Some(l) => (l.latitude, l.longitude),
        None => (r.latitude, r.longitude),
    };
    let from_db = lat.zip(lon).filter(|(lat, lon)| plausible(*lat, *lon));
    let coordinates = match from_db {
        Some((lat, lon)) => Some((Coordinates { lat, lon }, CoordinatesSource::Database)),
        None => country
            .and_then(|c| c.info().population_centre)
            .map(|c| (c, CoordinatesSource::CountryCentre)),
    };
    if country.is_none() && continent.is_none() && coordinates.is_none() {
        return None;
    }
    Some(GeoLocation {
        country,
        continent,
        coordinates,
    })
}

/// Rejects out-of-range values, and the exact (0, 0) some databases write for "no idea" (Null Island).
fn plausible(lat: f64, lon: f64) -> bool {
    lat.is_finite()
        && lon.is_finite()
        && lat.abs() <= 90.0
        && lon.abs() <= 180.0
        && !(lat == 0.0 && lon == 0.0)
}
