//! The general path's answer to any request, over hickory-proto's message model: EDNS and ECS checks,
//! the zone, then a steered name's records (decided by [`crate::decide`], as the fast path's are) or the
//! zone's static data — NOERROR with data, NODATA or NXDOMAIN with the SOA in authority, CNAMEs followed
//! once within the zone, NS with glue, ANY answered with one RRset (RFC 8482), zone transfers REFUSED.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use meridian_steer::{Mode, answer_addresses};

use crate::context::{Context, MAX_UDP_PAYLOAD};
use crate::decide::steer_client;
use crate::dnssec::{NXNAME, ZoneSigner, compact_nsec};
use crate::info::AnswerInfo;
use crate::request::valid_ecs;
use crate::zone::{ZoneData, glue};

/// Fills `resp` (the response skeleton: id, opcode, RD, the question) with what answers `req` and returns
/// its response code; signed (RRSIGs, and NSEC for denials) when the client set DO and the zone is signed.
pub(crate) fn resolve(
    ctx: &Context<'_>,
    req: &Message,
    resp: &mut Message,
    src: IpAddr,
    info: &mut AnswerInfo,
) -> ResponseCode {
    let rcode = answer(ctx, req, resp, src, info);
    let dnssec_ok = req.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    if !dnssec_ok {
        return rcode;
    }
    // RFC 3225: the DO bit is copied into the response.
    if let Some(e) = resp.edns.as_mut() {
        e.set_dnssec_ok(true);
    }
    let [q] = req.queries.as_slice() else {
        return rcode;
    };
    if !resp.metadata.authoritative || !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return rcode;
    }
    match ctx.zones.find(&LowerName::new(q.name())) {
        Some(zone) => match &zone.signer {
            Some(signer) => secure(ctx, zone, signer, q, resp, rcode),
            None => rcode,
        },
        None => rcode,
    }
}

/// Signs the answer `resp` holds (rcode `rcode`) for the question `q` of the signed `zone`: an RRSIG
/// after every RRset in every section, and for a denial a compact NSEC at the query name (RFC 9824):
/// NXDOMAIN becomes NOERROR with the NSEC listing only NSEC, RRSIG and NXNAME; NODATA's NSEC lists the
/// types that exist at the name, never the one asked for; a query for the NSEC type gets that NSEC as its
/// answer. Returns the response code to send.
fn secure(
    ctx: &Context<'_>,
    zone: &ZoneData,
    signer: &ZoneSigner,
    q: &Query,
    resp: &mut Message,
    rcode: ResponseCode,
) -> ResponseCode {
    let qtype = q.query_type();
    let denial: Option<Vec<RecordType>> = if rcode == ResponseCode::NXDomain {
        Some(vec![NXNAME])
    } else if resp.answers.is_empty() {
        Some(
            types_at(ctx, zone, &LowerName::new(q.name()))
                .into_iter()
                .filter(|t| *t != qtype)
                .collect(),
        )
    } else {
        None
    };
    let now = ctx.now_ms;
    resp.answers = with_rrsigs(signer, std::mem::take(&mut resp.answers), now);
    resp.additionals = with_rrsigs(signer, std::mem::take(&mut resp.additionals), now);
    let mut authorities = with_rrsigs(signer, std::mem::take(&mut resp.authorities), now);
    if let Some(types) = denial
        && let Some(nsec) = compact_nsec(q.name(), zone.negative_ttl, types)
    {
        // Not cached: the owner is whatever name was asked.
        let sigs = signer.rrsigs(std::slice::from_ref(&nsec), now, false);
        if qtype == RecordType::NSEC {
            // The name's NSEC is the data asked for (its bitmap lists NSEC: as a NODATA proof it would
            // contradict itself).
            resp.answers = std::iter::once(nsec).chain(sigs).collect();
            authorities.clear();
        } else {
            authorities.push(nsec);
            authorities.extend(sigs);
        }
    }
    resp.authorities = authorities;
    ResponseCode::NoError
}

/// `records` (a section, its RRsets contiguous or not) with the signatures of each RRset after it.
fn with_rrsigs(signer: &ZoneSigner, records: Vec<Record>, now_ms: u64) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::with_capacity(records.len() * 2);
    let mut sets: Vec<Vec<Record>> = Vec::new();
    for r in records {
        match sets
            .iter_mut()
            .find(|s| s[0].record_type() == r.record_type() && s[0].name == r.name)
        {
            Some(set) => set.push(r),
            None => sets.push(vec![r]),
        }
    }
    for set in sets {
        let sigs = signer.rrsigs(&set, now_ms, true);
        out.extend(set);
        out.extend(sigs);
    }
    out
}

/// The types that exist at `name` in `zone`: its static records (the DNSKEY set at a signed apex among
/// them), and A and AAAA at a steered name whose service has addresses of that family.
fn types_at(ctx: &Context<'_>, zone: &ZoneData, name: &LowerName) -> Vec<RecordType> {
    let mut types: Vec<RecordType> = zone
        .records
        .get(name)
        .map(|rs| rs.iter().map(Record::record_type).collect())
        .unwrap_or_default();
    if let Some(&service) = zone.services.get(name) {
        let config = ctx.snapshot.topology.config();
        let svc = &config.services()[service.get()];
        let regions = config.regions().iter().filter(|r| svc.regions.contains(&r.id));
        let (mut v4, mut v6) = (false, false);
        for r in regions {
            v4 |= !r.ipv4.is_empty();
            v6 |= !r.ipv6.is_empty();
        }
        if v4 {
            types.push(RecordType::A);
        }
        if v6 {
            types.push(RecordType::AAAA);
        }
    }
    types.sort();
    types.dedup();
    types
}

/// The unsigned answer: what [`resolve`] fills before signing.
fn answer(
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
        let (decision, scope) = steer_client(ctx, service, ecs_in, src);
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

fn negative_soa(zone: &ZoneData) -> Record {
    let mut soa = zone.soa.clone();
    soa.ttl = zone.negative_ttl;
    soa
}

fn nodata(resp: &mut Message, zone: &ZoneData) -> ResponseCode {
    resp.add_authority(negative_soa(zone));
    ResponseCode::NoError
}
