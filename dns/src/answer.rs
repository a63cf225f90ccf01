//! One DNS request to one response, as a function of the snapshot: no sockets, no store, no clock but the
//! one passed in. The server calls it for every packet; tests and the fuzz target call it directly.
//!
//! Authoritative behaviour: answers only for configured zones (REFUSED otherwise, and never recursion);
//! NOERROR with data, NODATA (NOERROR, SOA in authority) or NXDOMAIN (SOA in authority); zone transfers
//! refused; ANY answered minimally (one RRset, RFC 8482); EDNS(0) honoured with the client's payload size
//! (capped at 1232), TC set when a UDP answer does not fit; the question echoed with its case. Client
//! location comes from a well-formed EDNS Client Subnet option (a malformed one is FORMERR), else from the
//! source address; the response's ECS scope is as wide as the answer is constant.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use meridian_config::{Config, Continent, Coordinates, CountryCode};
use meridian_geoip::GeoDb;
use meridian_steer::{
    Basis, Chosen, ClientLocation, Decision, Mode, Query, RegionIndex, ServiceIndex, answer_addresses,
    client_hash, steer,
};
use meridian_store::{DEFAULT_PREFIX, Keys, Snapshot, SnapshotBuilder};

use crate::memo::DecisionMemo;
use crate::zone::{ZoneData, ZoneIndex, glue};

/// Largest UDP response we send, whatever the client offers (the DNS flag day 2020 value: no
/// fragmentation on common paths).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// How the request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: size limits and truncation apply.
    Udp,
    /// TCP: no truncation (65,535 octets).
    Tcp,
}

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

/// Everything answering reads.
pub struct Context<'a> {
    /// The current state snapshot.
    pub snapshot: &'a Snapshot,
    /// Its zones.
    pub zones: &'a ZoneIndex,
    /// The GeoIP database.
    pub geo: &'a GeoDb,
    /// Milliseconds since the Unix epoch (drills expire by it).
    pub now_ms: u64,
}

/// Everything [`respond`] reads, built from one configuration with no store behind it: for the fuzz
/// target, property tests and benchmarks, which answer from a fixed state.
pub struct FixedState {
    /// The snapshot of the configuration (no overrides, no health opinions).
    pub snapshot: Arc<Snapshot>,
    /// Its zones (serial 1).
    pub zones: ZoneIndex,
    /// The GeoIP database.
    pub geo: GeoDb,
}

impl FixedState {
    /// The state of `config` as of `now_ms` (`None` if the snapshot builder refuses the configuration).
    pub fn new(config: Arc<Config>, geo: GeoDb, now_ms: u64) -> Option<Self> {
        let keys = Keys::new(DEFAULT_PREFIX).ok()?;
        let snapshot = Arc::new(SnapshotBuilder::new(keys, Some(config)).build(now_ms)?);
        let zones = ZoneIndex::new(&snapshot.topology, 1);
        Some(Self { snapshot, zones, geo })
    }

    /// The answering context at `now_ms`.
    pub fn context(&self, now_ms: u64) -> Context<'_> {
        Context {
            snapshot: &self.snapshot,
            zones: &self.zones,
            geo: &self.geo,
            now_ms,
        }
    }
}

/// Answers `request` from `src`. `None` means "send nothing" (not a query, or too short to answer).
pub fn answer(
    ctx: &Context<'_>,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
) -> (Option<Vec<u8>>, AnswerInfo) {
    let mut info = AnswerInfo::default();
    if !answerable(request) {
        return (None, info);
    }
    let req = match Message::from_vec(request) {
        Ok(m) => m,
        Err(_) => {
            info.rcode = Some(ResponseCode::FormErr);
            return (Some(header_only(request, ResponseCode::FormErr)), info);
        }
    };
    let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = false;
    resp.add_queries(req.queries.iter().cloned());

    let rcode = build(ctx, &req, &mut resp, src, &mut info);
    resp.metadata.response_code = rcode;
    info.rcode = Some(rcode);

    let limit = match (transport, &req.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(e)) => usize::from(e.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        (Transport::Udp, None) => 512,
    };
    let bytes = match resp.to_vec() {
        Ok(b) if b.len() <= limit => b,
        Ok(_) => {
            info.truncated = true;
            let mut t = resp.truncate();
            t.metadata.truncation = true;
            t.to_vec()
                .unwrap_or_else(|_| header_only(request, ResponseCode::ServFail))
        }
        Err(_) => header_only(request, ResponseCode::ServFail),
    };
    (Some(bytes), info)
}

/// Answers `request` into `out` (cleared first; left empty when nothing is to be sent): by the fast path
/// when the request has its shape, else by the general path ([`answer`]). The two agree byte for byte on
/// every request the fast path takes (tested).
pub fn respond(
    ctx: &Context<'_>,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> AnswerInfo {
    respond_inner(ctx, None, request, src, transport, out)
}

/// [`respond`], reusing decisions from `memo` (prepared for `ctx`) where they hold. The answer is the
/// same as without it (tested); only the work differs.
pub fn respond_with_memo(
    ctx: &Context<'_>,
    memo: &mut DecisionMemo,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> AnswerInfo {
    respond_inner(ctx, Some(memo), request, src, transport, out)
}

/// [`respond`] or [`respond_with_memo`], as `memo` says.
pub(crate) fn respond_inner(
    ctx: &Context<'_>,
    memo: Option<&mut DecisionMemo>,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> AnswerInfo {
    let mut info = AnswerInfo::default();
    if crate::fast::answer_fast(ctx, memo, request, src, transport, out, &mut info) {
        return info;
    }
    let (bytes, info) = answer(ctx, request, src, transport);
    out.clear();
    if let Some(b) = bytes {
        out.extend_from_slice(&b);
    }
    info
}

/// Whether a packet deserves any response: not when it is shorter than a header, nor when it is itself a
/// response (answering responses could feed a reflection loop between two servers).
pub(crate) fn answerable(request: &[u8]) -> bool {
    request.len() >= 12 && request[2] & 0x80 == 0
}

/// A response carrying only the request's id, opcode and RD flag, and `rcode`: for requests that cannot
/// be parsed (FORMERR).
pub(crate) fn header_only(request: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut h = vec![0u8; 12];
    h[0] = request[0];
    h[1] = request[1];
    // QR=1, the request's opcode, AA=0, TC=0, RD as asked.
    h[2] = 0x80 | (request[2] & 0x79);
    h[3] = u16::from(rcode) as u8 & 0x0f;
    h
}

/// Fills `resp` and returns its response code.
fn build(
    ctx: &Context<'_>,
    req: &Message,
    resp: &mut Message,
    src: IpAddr,
    info: &mut AnswerInfo,
) -> ResponseCode {
    // EDNS first: a response to an EDNS query carries OPT, even an error.
    let ecs = match &req.edns {
        Some(e) => {
            let mut out = Edns::new();
            out.set_max_payload(MAX_UDP_PAYLOAD);
            resp.set_edns(out);
            if e.version() > 0 {
                return ResponseCode::BADVERS;
            }
            match e.option(EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(s)) => match valid_ecs(s) {
                    Some(s) => Some(s),
                    None => return ResponseCode::FormErr,
                },
                _ => None,
            }
        }
        None => None,
    };
    info.ecs = ecs.is_some();
    if req.metadata.op_code != OpCode::Query {
        return ResponseCode::NotImp;
    }
    let [q] = req.queries.as_slice() else {
        return ResponseCode::FormErr;
    };
    info.qtype = Some(q.query_type());
    if q.query_class() != DNSClass::IN {
        return ResponseCode::Refused;
    }
    let lname = LowerName::new(q.name());
    let Some(zone) = ctx.zones.find(&lname) else {
        return ResponseCode::Refused;
    };
    resp.metadata.authoritative = true;
    let qtype = q.query_type();
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return ResponseCode::Refused;
    }

    // A steered name.
    if let Some(&service) = zone.services.get(&lname)
        && matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY)
    {
        let ecs_in = ecs.map(|s| (s.addr(), s.source_prefix()));
        let (decision, scope) = steer_client(ctx, None, service, ecs_in, src);
        let svc = &ctx.snapshot.topology.config().services()[service.get()];
        info.service = Some(service);
        if let (Some(s), Some(scope)) = (&ecs, scope) {
            let mut opt = ClientSubnet::new(s.addr(), s.source_prefix(), scope);
            opt.set_addr(s.addr());
            if let Some(e) = resp.edns.as_mut() {
                e.options_mut().insert(EdnsOption::Subnet(opt));
            }
        }
        info.reason = Some(decision.reason);
        if let Mode::NoAnswer(_) = decision.mode {
            return ResponseCode::ServFail;
        }
        info.region = decision.chosen.first().copied();
        let addrs = answer_addresses(&ctx.snapshot.topology, service, &decision.chosen);
        let owner = q.name().clone();
        let a: Vec<Record> = addrs
            .ipv4
            .iter()
            .map(|ip| Record::from_rdata(owner.clone(), svc.ttl, RData::A(A(*ip))))
            .collect();
        let aaaa: Vec<Record> = addrs
            .ipv6
            .iter()
            .map(|ip| Record::from_rdata(owner.clone(), svc.ttl, RData::AAAA(AAAA(*ip))))
            .collect();
        let records = match qtype {
            RecordType::A => a,
            RecordType::AAAA => aaaa,
            // RFC 8482: one RRset is a complete answer to ANY.
            _ => {
                if a.is_empty() {
                    aaaa
                } else {
                    a
                }
            }
        };
        if records.is_empty() {
            return nodata(resp, zone);
        }
        resp.add_answers(records);
        return ResponseCode::NoError;
    }

    // Static data.
    let at_name = zone.records.get(&lname).map(Vec::as_slice).unwrap_or_default();
    if let Some(cname) = at_name.iter().find(|r| r.record_type() == RecordType::CNAME)
        && qtype != RecordType::CNAME
    {
        let mut c = cname.clone();
        c.name = q.name().clone();
        resp.add_answer(c);
        // Follow the alias once, within the zone.
        if let RData::CNAME(target) = &cname.data {
            let t = LowerName::new(&target.0);
            if let Some(rs) = zone.records.get(&t) {
                resp.add_answers(rs.iter().filter(|r| r.record_type() == qtype).cloned());
            }
        }
        return ResponseCode::NoError;
    }
    let mut matching: Vec<Record> = at_name
        .iter()
        .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
        .cloned()
        .collect();
    if qtype == RecordType::ANY
        && let Some(first) = matching.first().map(Record::record_type)
    {
        matching.retain(|r| r.record_type() == first);
    }
    if matching.is_empty() {
        if zone.existing.contains(&lname) {
            return nodata(resp, zone);
        }
        resp.add_authority(negative_soa(zone));
        return ResponseCode::NXDomain;
    }
    for r in &mut matching {
        r.name = q.name().clone();
    }
    if qtype == RecordType::NS {
        let names: Vec<_> = matching
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(ns.0.clone()),
                _ => None,
            })
            .collect();
        resp.add_additionals(glue(zone, names.iter()));
    }
    resp.add_answers(matching);
    ResponseCode::NoError
}

/// Steers `service` for the client: the ECS address when the option carries a non-zero source prefix,
/// else the packet's source. Returns the decision and, when the request carried ECS, the scope prefix to
/// announce. Shared by the general path and the fast path, so they cannot disagree.
pub(crate) fn steer_client(
    ctx: &Context<'_>,
    memo: Option<&mut DecisionMemo>,
    service: ServiceIndex,
    ecs: Option<(IpAddr, u8)>,
    src: IpAddr,
) -> (Steered, Option<u8>) {
    let client_ip = match ecs {
        Some((addr, prefix)) if prefix > 0 => addr,
        _ => src,
    };
    let decide = |location: (Option<CountryCode>, Option<Continent>, Option<Coordinates>)| {
        let (country, continent, coordinates) = location;
        let client = ClientLocation::new(country, continent, coordinates);
        let query = Query {
            service,
            client: &client,
            request_hash: client_hash(client_ip),
            now_ms: ctx.now_ms,
        };
        Steered::from(&steer(&ctx.snapshot.topology, &ctx.snapshot.states, &query))
    };
    // With a memo, the location itself is read only when the memo has no decision for it.
    let (steered, prefix_len) = match (memo, ctx.geo.locate_id(client_ip)) {
        (Some(memo), Some((id, prefix_len))) => {
            let location = || ctx.geo.location(id).map_or((None, None, None), |l| l.parts());
            (memo.decide(ctx, service, id, || decide(location())), prefix_len)
        }
        _ => {
            let located = ctx.geo.locate(client_ip);
            (decide(located.parts()), located.prefix_len)
        }
    };
    let scope = ecs.map(|(_, prefix)| {
        if prefix == 0 {
            0
        } else {
            ecs_scope(&steered, prefix_len, client_ip).min(prefix)
        }
    });
    (steered, scope)
}

/// What answering needs of a steering decision (the verdicts are for `explain`, not for DNS): small and
/// `Copy`, so that a worker can remember it ([`DecisionMemo`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Steered {
    pub(crate) mode: Mode,
    pub(crate) chosen: Chosen,
    pub(crate) reason: Reason,
    pub(crate) depends_on_hash: bool,
}

impl From<&Decision> for Steered {
    fn from(d: &Decision) -> Self {
        Self {
            mode: d.mode,
            chosen: d.chosen,
            reason: Reason::of(d),
            depends_on_hash: d.depends_on_hash,
        }
    }
}

/// RFC 7871 §6: the family must match the address, the source prefix fit it, and address bits past the
/// source prefix be zero. (Unknown families and over-long prefixes already fail to parse.)
fn valid_ecs(s: &ClientSubnet) -> Option<&ClientSubnet> {
    let (bits, max) = match s.addr() {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let prefix = s.source_prefix();
    if prefix > max {
        return None;
    }
    let host_mask = if prefix == 0 {
        u128::MAX
    } else {
        u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)
    };
    if bits & host_mask != 0 {
        return None;
    }
    Some(s)
}

/// How many leading bits of the client address the answer depends on: the GeoIP network's, unless the
/// decision used the per-client hash (weighted choice, near-tie, spill), which is per /24 or /56.
fn ecs_scope(decision: &Steered, location_prefix: u8, ip: IpAddr) -> u8 {
    let hash_bits = if ip.is_ipv4() { 24 } else { 56 };
    if decision.depends_on_hash {
        location_prefix.max(hash_bits)
    } else {
        location_prefix
    }
}

fn negative_soa(zone: &ZoneData) -> Record {
    let mut soa = zone.soa.clone();
    soa.ttl = zone.negative_ttl;
    soa
}

fn nodata(resp: &mut Message, zone: &ZoneData) -> ResponseCode {
    resp.add_authority(negative_soa(zone));
    ResponseCode::NoError
}
