//! The geographic vocabulary of the model: ISO 3166-1 country codes, continents, named country groups and
//! the population centre of every country.
//!
//! Pure data: no GeoIP database is read here (that is `meridian-geoip`'s job); this module only names places.

use std::fmt;

use crate::Coordinates;
use crate::country_table::COUNTRIES;

/// An assigned ISO 3166-1 alpha-2 country code, upper case (`PL`, `DE`, `US`).
///
/// Only codes in the built-in country table can be constructed, so holding one means the country is known.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

/// Number of distinct two-letter codes; the size of a [`CountrySet`] bitmap.
const CODE_SPACE: usize = 26 * 26;

impl CountryCode {
    /// Parses an upper-case, assigned ISO 3166-1 alpha-2 code. `None` for anything else.
    pub fn parse(code: &str) -> Option<Self> {
        let bytes: [u8; 2] = code.as_bytes().try_into().ok()?;
        Self::from_bytes(bytes)
    }

    /// Like [`CountryCode::parse`], but accepts lower case too: GeoIP databases are not consistent about case.
    pub fn parse_any_case(code: &str) -> Option<Self> {
        let bytes: [u8; 2] = code.as_bytes().try_into().ok()?;
        Self::from_bytes(bytes.map(|b| b.to_ascii_uppercase()))
    }

    fn from_bytes(bytes: [u8; 2]) -> Option<Self> {
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return None;
        }
        COUNTRIES
            .binary_search_by(|c| c.code.cmp(&bytes))
            .ok()
            .map(|_| Self(bytes))
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        // The constructor admits ASCII upper-case letters only, so this cannot fail; the fallback keeps the
        // function total without an unwrap.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// Name, continent and population centre of this country.
    pub fn info(&self) -> &'static CountryInfo {
        match COUNTRIES.binary_search_by(|c| c.code.cmp(&self.0)) {
            Ok(i) => &COUNTRIES[i],
            // Unreachable by construction (see `from_bytes`); Antarctica is a harmless, obviously-wrong answer.
            Err(_) => &COUNTRIES[0],
        }
    }

    /// Dense index in `0..676`, for bitmaps.
    fn index(&self) -> usize {
        usize::from(self.0[0] - b'A') * 26 + usize::from(self.0[1] - b'A')
    }

    /// Every country in the built-in table, sorted by code.
    pub fn all() -> impl Iterator<Item = Self> {
        COUNTRIES.iter().map(|c| Self(c.code))
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A continent, as GeoNames and MaxMind code them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Continent {
    /// `AF`
    Africa,
    /// `AN`
    Antarctica,
    /// `AS`
    Asia,
    /// `EU`
    Europe,
    /// `NA`
    NorthAmerica,
    /// `OC`
    Oceania,
    /// `SA`
    SouthAmerica,
}

impl Continent {
    /// All continents, in code order.
    pub const ALL: [Self; 7] = [
        Self::Africa,
        Self::Antarctica,
        Self::Asia,
        Self::Europe,
        Self::NorthAmerica,
        Self::Oceania,
        Self::SouthAmerica,
    ];

    /// The two-letter code (`EU`, `NA`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Self::Africa => "AF",
            Self::Antarctica => "AN",
            Self::Asia => "AS",
            Self::Europe => "EU",
            Self::NorthAmerica => "NA",
            Self::Oceania => "OC",
            Self::SouthAmerica => "SA",
        }
    }

    /// English name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Africa => "Africa",
            Self::Antarctica => "Antarctica",
            Self::Asia => "Asia",
            Self::Europe => "Europe",
            Self::NorthAmerica => "North America",
            Self::Oceania => "Oceania",
            Self::SouthAmerica => "South America",
        }
    }

    /// Parses an upper-case continent code.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// Dense index in `0..7`.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Continent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One row of the built-in country table.
#[derive(Debug)]
pub struct CountryInfo {
    /// ISO 3166-1 alpha-2 code.
    pub code: [u8; 2],
    /// English short name.
    pub name: &'static str,
    /// The continent GeoNames assigns.
    pub continent: Continent,
    /// Where the country's people are: the population-weighted geometric median of its towns (see
    /// `tools/gen_countries.py`). `None` for uninhabited territories.
    pub population_centre: Option<Coordinates>,
}

/// A set of countries, as a bitmap over the two-letter code space (constant-time membership).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct CountrySet([u64; CODE_SPACE.div_ceil(64)]);

impl CountrySet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a country; returns whether it was new.
    pub fn insert(&mut self, c: CountryCode) -> bool {
        let i = c.index();
        let was = self.0[i / 64] & (1 << (i % 64)) != 0;
        self.0[i / 64] |= 1 << (i % 64);
        !was
    }

    /// Whether the country is in the set.
    pub fn contains(&self, c: CountryCode) -> bool {
        let i = c.index();
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// The members, sorted by code.
    pub fn iter(&self) -> impl Iterator<Item = CountryCode> + '_ {
        CountryCode::all().filter(|c| self.contains(*c))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

impl fmt::Debug for CountrySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<CountryCode> for CountrySet {
    fn from_iter<I: IntoIterator<Item = CountryCode>>(iter: I) -> Self {
        let mut set = Self::new();
        for c in iter {
            set.insert(c);
        }
        set
    }
}

/// The 27 member states of the European Union, plus the parts of them that GeoIP databases code as countries
/// of their own although EU law (and so the GDPR) applies there: Åland (AX, Finland) and France's outermost
/// regions (French Guiana GF, Guadeloupe GP, Martinique MQ, Mayotte YT, Réunion RE, Saint-Martin MF).
/// The Azores, Madeira and the Canary Islands are coded PT and ES already.
pub(crate) const EU: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT",
    "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", // member states
    "AX", "GF", "GP", "MF", "MQ", "RE", "YT", // coded separately, EU territory
];

/// The European Economic Area: the EU plus Iceland, Liechtenstein and Norway.
pub(crate) const EEA_EXTRA: &[&str] = &["IS", "LI", "NO"];

/// The built-in country groups usable in residency rules without defining them: `EU` and `EEA`.
pub fn builtin_group(name: &str) -> Option<Vec<CountryCode>> {
    let codes: Vec<&str> = match name {
        "EU" => EU.to_vec(),
        "EEA" => EU.iter().chain(EEA_EXTRA).copied().collect(),
        _ => return None,
    };
    Some(codes.into_iter().filter_map(CountryCode::parse).collect())
}

/// Names of the built-in groups.
pub const BUILTIN_GROUPS: &[&str] = &["EU", "EEA"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assigned_codes_only() {
        assert_eq!(CountryCode::parse("PL").map(|c| c.to_string()), Some("PL".into()));
        assert!(CountryCode::parse("pl").is_none(), "config codes are upper case");
        assert!(CountryCode::parse_any_case("pl").is_some());
        assert!(CountryCode::parse("ZZ").is_none(), "unassigned");
        assert!(CountryCode::parse("POL").is_none());
        assert!(CountryCode::parse("").is_none());
        assert!(CountryCode::parse("P\u{142}").is_none());
    }

    #[test]
    fn table_is_sorted_and_complete_enough() {
        assert!(COUNTRIES.windows(2).all(|w| w[0].code < w[1].code));
        assert!(COUNTRIES.len() > 240);
        let info = |c: &str| CountryCode::parse(c).map(|c| c.info());
        assert_eq!(info("CA").map(|i| i.continent), Some(Continent::NorthAmerica));
        assert_eq!(info("PL").map(|i| i.continent), Some(Continent::Europe));
    }

    #[test]
    fn population_centres_are_where_people_live() {
        let centre = |c: &str| {
            CountryCode::parse(c)
                .and_then(|c| c.info().population_centre)
                .unwrap()
        };
        // Canada: between Toronto and Montreal, far south of the area centroid in Nunavut.
        let ca = centre("CA");
        assert!(
            (43.0..47.0).contains(&ca.lat) && (-81.0..-72.0).contains(&ca.lon),
            "{ca:?}"
        );
        // United States: the Midwest (Census median centre is in Indiana, mean centre in Missouri).
        let us = centre("US");
        assert!(
            (36.0..41.0).contains(&us.lat) && (-94.0..-85.0).contains(&us.lon),
            "{us:?}"
        );
        // Russia: European Russia, not Siberia.
        let ru = centre("RU");
        assert!(ru.lon < 60.0, "{ru:?}");
    }

    #[test]
    fn groups() {
        let eu = builtin_group("EU").unwrap();
        let eea = builtin_group("EEA").unwrap();
        assert_eq!(eu.len(), EU.len(), "every EU code is in the country table");
        assert_eq!(eea.len(), EU.len() + 3);
        assert!(
            eu.contains(&CountryCode::parse("RE").unwrap()),
            "Réunion is EU territory"
        );
        assert!(!eu.contains(&CountryCode::parse("NO").unwrap()));
        assert!(eea.contains(&CountryCode::parse("NO").unwrap()));
        assert!(!eea.contains(&CountryCode::parse("CH").unwrap()));
        assert!(builtin_group("eu").is_none());
    }

    #[test]
    fn country_set() {
        let mut s = CountrySet::new();
        assert!(s.is_empty());
        let pl = CountryCode::parse("PL").unwrap();
        assert!(s.insert(pl));
        assert!(!s.insert(pl));
        assert!(s.contains(pl));
        assert!(!s.contains(CountryCode::parse("DE").unwrap()));
        s.insert(CountryCode::parse("ZW").unwrap());
        s.insert(CountryCode::parse("AD").unwrap());
        assert_eq!(
            s.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["AD", "PL", "ZW"]
        );
        assert_eq!(s.len(), 3);
    }
}
