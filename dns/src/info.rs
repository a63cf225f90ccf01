//! What answering did, for metrics and logs: [`AnswerInfo`] per request, and [`Reason`], what decided a
//! steered answer (a metrics label).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use meridian_steer::{Basis, Decision, Mode, RegionIndex, ServiceIndex};

/// What answering did, for metrics and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerInfo {
    /// The response code sent (None: nothing sent).
    pub rcode: Option<ResponseCode>,
    /// The query type, if the question could be read.
    pub qtype: Option<RecordType>,
    /// The steered service, for steered answers.
    pub service: Option<ServiceIndex>,
    /// The first region of a steered answer.
    pub region: Option<RegionIndex>,
    /// What decided a steered answer.
    pub reason: Option<Reason>,
    /// Whether the fast path answered (else hickory's general path did).
    pub fast: bool,
    /// Whether the request carried an EDNS Client Subnet option.
    pub ecs: bool,
    /// Whether the response was truncated.
    pub truncated: bool,
}

/// What decided a steered answer, as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Nearest usable region.
    Distance,
    /// The client's location is unknown: the service's unknown-location regions.
    UnknownLocation,
    /// First usable region in failover order.
    Failover,
    /// Weighted share.
    Weighted,
    /// A geo map entry (country, continent or default).
    GeoMap,
    /// Every eligible region down: answered ignoring health.
    Panic,
    /// Every eligible region down: the fallback region.
    Fallback,
    /// Nothing may be answered (SERVFAIL).
    NoAnswer,
}

impl Reason {
    /// The reason of a decision.
    pub fn of(d: &Decision) -> Self {
        match d.mode {
            Mode::Panic => Self::Panic,
            Mode::Fallback => Self::Fallback,
            Mode::NoAnswer(_) => Self::NoAnswer,
            Mode::Normal => match d.basis {
                Basis::Distance => Self::Distance,
                Basis::UnknownLocation => Self::UnknownLocation,
                Basis::FailoverOrder => Self::Failover,
                Basis::Weighted => Self::Weighted,
                Basis::GeoCountry(_) | Basis::GeoContinent(_) | Basis::GeoDefault => Self::GeoMap,
            },
        }
    }

    /// Every reason, in label order.
    pub const ALL: [Self; 8] = [
        Self::Distance,
        Self::UnknownLocation,
        Self::Failover,
        Self::Weighted,
        Self::GeoMap,
        Self::Panic,
        Self::Fallback,
        Self::NoAnswer,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Distance => "distance",
            Self::UnknownLocation => "unknown_location",
            Self::Failover => "failover",
            Self::Weighted => "weighted",
            Self::GeoMap => "geo_map",
            Self::Panic => "panic",
            Self::Fallback => "fallback",
            Self::NoAnswer => "no_answer",
        }
    }
}
