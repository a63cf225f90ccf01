//! The fast path: the one query shape that is nearly all of a GeoDNS server's traffic — a single A or
//! AAAA question for a steered name, class IN, optionally with EDNS(0) carrying nothing or one well-formed
//! Client Subnet option — parsed and answered without building hickory `Message`s, into a buffer the
//! caller reuses.
//!
//! Anything else, or anything unusual about this shape (compression in the question, other EDNS options,
//! trailing octets, a response that would need SOA, SERVFAIL or truncation), returns `false` and the caller
//! uses the general path ([`crate::answer::answer`]). The steering is the general path's own
//! (`steer_client`); the differential test `fast_path_matches_general_path` checks that for every request
//! this path accepts, its response is byte for byte the general path's.
//!
//! Must not: allocate per query (beyond what steering does), answer anything it has not fully checked.

use std::net::IpAddr;

use meridian_steer::{Mode, answer_ipv4, answer_ipv6};

use crate::answer::{AnswerInfo, Context, MAX_UDP_PAYLOAD, Transport, steer_client};
use crate::memo::DecisionMemo;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const OPTION_ECS: u16 = 8;

/// A request of the fast path's shape.
struct Parsed<'a> {
    /// The question section as received (name with its case, type, class).
    question: &'a [u8],
    qtype: u16,
    /// EDNS present: the client's payload size.
    edns_payload: Option<u16>,
    /// The ECS option: (family, source prefix, address octets as sent, address).
    ecs: Option<(u16, u8, &'a [u8], IpAddr)>,
}

/// Answers `request` into `out` if it has the fast path's shape; returns `false` (with `out` in an
/// unspecified state) when the general path must answer instead.
pub(crate) fn answer_fast(
    ctx: &Context<'_>,
    memo: Option<&mut DecisionMemo>,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
    info: &mut AnswerInfo,
) -> bool {
    let mut lower = [0u8; 255];
    let Some(p) = parse(request, &mut lower) else {
        return false;
    };
    let qname_len = p.question.len() - 4;
    let Some(&service) = ctx.zones.steered.get(&lower[..qname_len]) else {
        return false;
    };
    let ecs_in = p.ecs.map(|(_, prefix, _, addr)| (addr, prefix));
    let (decision, scope) = steer_client(ctx, memo, service, ecs_in, src);
    if let Mode::NoAnswer(_) = decision.mode {
        return false;
    }
    let topology = &ctx.snapshot.topology;
    let svc = &topology.config().services()[service.get()];
    // The records straight from the chosen regions: no per-query collection.
    let ipv4 = answer_ipv4(topology, service, &decision.chosen);
    let ipv6 = answer_ipv6(topology, service, &decision.chosen);
    let count = if p.qtype == TYPE_A {
        ipv4.clone().count()
    } else {
        ipv6.clone().count()
    };
    if count == 0 {
        // NODATA needs the SOA: the general path builds it.
        return false;
    }

    out.clear();
    // Header: the id, QR=1, opcode QUERY, AA=1, RD as asked; RA=0, rcode NOERROR.
    out.extend_from_slice(&request[..2]);
    out.push(0x84 | (request[2] & 0x01));
    out.push(0x00);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(count as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&u16::from(p.edns_payload.is_some()).to_be_bytes());
    // The question as received: case preserved.
    out.extend_from_slice(p.question);
    let ttl = svc.ttl.to_be_bytes();
    let mut record = |rtype: u16, rdata: &[u8]| {
        // The owner is the question's name: a pointer to offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    };
    if p.qtype == TYPE_A {
        for a in ipv4 {
            record(TYPE_A, &a.octets());
        }
    } else {
        for a in ipv6 {
            record(TYPE_AAAA, &a.octets());
        }
    }
    if p.edns_payload.is_some() {
        out.push(0); // root
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // extended rcode, version 0, no flags
        match (p.ecs, scope) {
            (Some((family, prefix, addr, _)), Some(scope)) => {
                out.extend_from_slice(&(8 + addr.len() as u16).to_be_bytes());
                out.extend_from_slice(&OPTION_ECS.to_be_bytes());
                out.extend_from_slice(&(4 + addr.len() as u16).to_be_bytes());
                out.extend_from_slice(&family.to_be_bytes());
                out.push(prefix);
                out.push(scope);
                out.extend_from_slice(addr);
            }
            _ => out.extend_from_slice(&0u16.to_be_bytes()),
        }
    }
    let limit = match (transport, p.edns_payload) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(payload)) => usize::from(payload.clamp(512, MAX_UDP_PAYLOAD)),
        (Transport::Udp, None) => 512,
    };
    if out.len() > limit {
        // Truncation is the general path's business.
        return false;
    }
    info.rcode = Some(hickory_proto::op::ResponseCode::NoError);
    info.qtype = Some(hickory_proto::rr::RecordType::from(p.qtype));
    info.service = Some(service);
    info.region = decision.chosen.first().copied();
    info.reason = Some(decision.reason);
    info.ecs = p.ecs.is_some();
    info.truncated = false;
    info.fast = true;
    true
}

/// The address a request of the fast path's shape will be located by (its Client Subnet, else `src`);
/// `src` for any other request. Only for warming the GeoIP lookup ([`meridian_geoip::GeoDb::warm`]):
/// the answer decides again.
pub(crate) fn client_address(request: &[u8], src: IpAddr) -> IpAddr {
    let mut lower = [0u8; 255];
    parse(request, &mut lower)
        .and_then(|p| p.ecs)
        .map_or(src, |(_, _, _, addr)| addr)
}

/// Parses the fast path's shape, writing the lower-cased question name (wire form) into `lower`.
fn parse<'a>(req: &'a [u8], lower: &mut [u8; 255]) -> Option<Parsed<'a>> {
    let u16_at = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*req.get(i)?, *req.get(i + 1)?])) };
    if req.len() < 12 {
        return None;
    }
    // QR=0, opcode QUERY; one question, no answers or authority, at most the OPT record.
    if req[2] & 0xf8 != 0 || u16_at(4)? != 1 || u16_at(6)? != 0 || u16_at(8)? != 0 {
        return None;
    }
    let arcount = u16_at(10)?;
    if arcount > 1 {
        return None;
    }
    // The name: plain labels only (a pointer here is legal but rare; the general path takes it).
    let mut i = 12;
    let mut n = 0;
    loop {
        let len = usize::from(*req.get(i)?);
        if len == 0 {
            lower[n] = 0;
            i += 1;
            break;
        }
        if len > 63 || n + 1 + len + 1 > 255 {
            return None;
        }
        let label = req.get(i + 1..i + 1 + len)?;
        lower[n] = len as u8;
        for (d, s) in lower[n + 1..n + 1 + len].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        n += 1 + len;
        i += 1 + len;
    }
    let qtype = u16_at(i)?;
    if !(qtype == TYPE_A || qtype == TYPE_AAAA) || u16_at(i + 2)? != CLASS_IN {
        return None;
    }
    let question = &req[12..i + 4];
    i += 4;
    let mut parsed = Parsed {
        question,
        qtype,
        edns_payload: None,
        ecs: None,
    };
    if arcount == 1 {
        // OPT: root owner, type 41, class = payload, TTL = extended rcode 0, version 0, flags (ignored).
        if *req.get(i)? != 0 || u16_at(i + 1)? != TYPE_OPT || *req.get(i + 5)? != 0 || *req.get(i + 6)? != 0 {
            return None;
        }
        parsed.edns_payload = Some(u16_at(i + 3)?);
        let rdlen = usize::from(u16_at(i + 9)?);
        i += 11;
        let end = i + rdlen;
        if end != req.len() {
            return None;
        }
        while i < end {
            let code = u16_at(i)?;
            let len = usize::from(u16_at(i + 2)?);
            let data = req.get(i + 4..i + 4 + len)?;
            if code != OPTION_ECS || parsed.ecs.is_some() {
                return None;
            }
            parsed.ecs = Some(parse_ecs(data)?);
            i += 4 + len;
        }
        if i != end {
            return None;
        }
    } else if i != req.len() {
        return None;
    }
    Some(parsed)
}

/// A well-formed ECS option (RFC 7871 §6): known family, prefix within it, exactly the address octets
/// the prefix needs, zero bits past the prefix. Anything else is the general path's (it answers FORMERR).
fn parse_ecs(data: &[u8]) -> Option<(u16, u8, &[u8], IpAddr)> {
    let family = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
    let prefix = *data.get(2)?;
    let addr = data.get(4..)?;
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if prefix > max || addr.len() != usize::from(prefix).div_ceil(8) {
        return None;
    }
    if prefix % 8 != 0 && addr.last()? & (0xffu8 >> (prefix % 8)) != 0 {
        return None;
    }
    let ip = if family == 1 {
        let mut o = [0u8; 4];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::from(o)
    } else {
        let mut o = [0u8; 16];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::from(o)
    };
    Some((family, prefix, addr, ip))
}
