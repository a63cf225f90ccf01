//! The general path's answer to any request, over hickory-proto's message model: EDNS and ECS checks,
//! the zone, then a steered name's records (decided by [`crate::decide`], as the fast path's are) or the
//! zone's static data — NOERROR with data, NODATA or NXDOMAIN with the SOA in authority, CNAMEs followed
//! once within the zone, NS with glue, ANY answered with one RRset (RFC 8482), zone transfers REFUSED.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use meridian_steer::{Mode, answer_addresses};

use crate::context::{Context, MAX_UDP_PAYLOAD};
use crate::decide::steer_client;
use crate::info::AnswerInfo;
use crate::request::valid_ecs;
use crate::zone::{ZoneData, glue};

/// Fills `resp` (the response skeleton: id, opcode, RD, the question) with what answers `req` and returns
/// its response code.
pub(crate) fn resolve(
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
