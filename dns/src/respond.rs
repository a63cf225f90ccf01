//! The entry point: one DNS request to one response, as a function of the state it is answered from — no
//! sockets, no store, no clock but the one passed in. The server calls [`respond_with_memo`] for every
//! UDP packet and [`respond`] for every TCP query; tests and the fuzz target call them directly.
//!
//! Two paths, each in three steps — read the request, decide, write the response:
//! - the **fast path**, for the shape that is nearly all of a GeoDNS server's traffic (a single A or AAAA
//!   question for a steered name, optionally with EDNS and one ECS option): [`FastRequest::parse`], then
//!   [`decide::steer_client`] (through the worker's [`DecisionMemo`] when there is one), then
//!   [`write::steered_answer`] straight into the caller's buffer (with DO in a signed zone, followed by the
//!   RRSIGs the zone's signer caches for that address set). It declines (and the general path answers)
//!   anything else or anything unusual: other EDNS options, compression in the question, answers needing
//!   the SOA, SERVFAIL or truncation. Must not allocate per query (beyond what steering does), nor answer
//!   anything it has not fully checked.
//! - the **general path** ([`respond_general`]), for any request: hickory-proto parses it, [`resolve`]
//!   fills a hickory `Message` (deciding steered names with the same [`decide::steer_client`]), and
//!   [`write::encode`] encodes it within the size limit.
//!
//! The differential test `fast_path_matches_general_path` (tests/fast_path.rs) checks that for every
//! request the fast path answers, its response is byte for byte the general path's.
//!
//! DNSSEC: with DO, a signed zone's answers carry RRSIGs and its denials compact NSEC records (the general
//! path's `resolve`, and the fast path's cached signatures: `crate::dnssec`, below both), so every
//! transport that calls `respond` gets them.
//!
//! Authoritative behaviour: answers only for configured zones (REFUSED otherwise, and never recursion);
//! NOERROR with data, NODATA (NOERROR, SOA in authority) or NXDOMAIN (SOA in authority); zone transfers
//! refused; ANY answered minimally (one RRset, RFC 8482); EDNS(0) honoured with the client's payload size
//! (capped at 1232), TC set when a UDP answer does not fit; the question echoed with its case. Client
//! location comes from a well-formed EDNS Client Subnet option (a malformed one is FORMERR), else from the
//! source address; the response's ECS scope is as wide as the answer is constant.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::RecordType;
use meridian_steer::{Mode, answer_ipv4, answer_ipv6};

use crate::context::{Context, Transport};
use crate::decide;
use crate::dnssec::Signed;
use crate::info::AnswerInfo;
use crate::memo::DecisionMemo;
use crate::request::{FastRequest, TYPE_A, answerable};
use crate::resolve::resolve;
use crate::write::{self, header_only};

/// Answers `request` from `src` into `out` (cleared first; left empty when nothing is to be sent): by the
/// fast path when the request has its shape, else by the general path ([`respond_general`]). The two agree
/// byte for byte on every request the fast path takes (tested).
pub fn respond(
    ctx: &Context<'_>,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> AnswerInfo {
    respond_in(ctx, None, request, src, transport, out)
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
    respond_in(ctx, Some(memo), request, src, transport, out)
}

/// [`respond`] or [`respond_with_memo`], as `memo` says.
pub(crate) fn respond_in(
    ctx: &Context<'_>,
    memo: Option<&mut DecisionMemo>,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> AnswerInfo {
    if let Some(info) = respond_fast(ctx, memo, request, src, transport, out) {
        return info;
    }
    let (bytes, info) = respond_general(ctx, request, src, transport);
    out.clear();
    if let Some(b) = bytes {
        out.extend_from_slice(&b);
    }
    info
}

/// The fast path: answers `request` into `out` if it has the fast path's shape and the answer is a plain
/// NOERROR with records that fit; `None` (with `out` in an unspecified state) when the general path must
/// answer instead.
fn respond_fast(
    ctx: &Context<'_>,
    memo: Option<&mut DecisionMemo>,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Option<AnswerInfo> {
    // Read the request.
    let mut lower = [0u8; 255];
    let req = FastRequest::parse(request, &mut lower)?;
    let (service, signer) = ctx.zones.steered.get(req.lower_name)?;
    let service = *service;
    // A signed zone's records carry their signatures when the client asks for them (DO).
    let signer = signer.as_deref().filter(|_| req.dnssec_ok);

    // Decide.
    let ecs = req.ecs.map(|e| (e.addr, e.source_prefix));
    let (decision, scope) = match memo {
        Some(memo) => memo.steer_client(ctx, service, ecs, src),
        None => decide::steer_client(ctx, service, ecs, src),
    };
    if let Mode::NoAnswer(_) = decision.mode {
        // SERVFAIL: the general path's.
        return None;
    }

    // Write the answer records, straight from the chosen regions: no per-query collection.
    let topology = &ctx.snapshot.topology;
    let ttl = topology.config().services()[service.get()].ttl;
    let limit = transport.response_limit(req.edns_payload);
    // Signatures come from the signer's cache (keyed by the RRset): signing happens once per RRset.
    let written = if req.qtype == TYPE_A {
        let addresses = answer_ipv4(topology, service, &decision.chosen).map(|a| a.octets());
        let signed = match signer {
            Some(s) => {
                Some(s.steered_rrsigs(req.lower_name, req.qtype, ttl, addresses.clone(), ctx.now_ms)?)
            }
            None => None,
        };
        let rrsigs = signed.as_deref().map_or(&[][..], Signed::wire);
        write::steered_answer(out, request, &req, ttl, addresses, scope, limit, rrsigs)
    } else {
        let addresses = answer_ipv6(topology, service, &decision.chosen).map(|a| a.octets());
        let signed = match signer {
            Some(s) => {
                Some(s.steered_rrsigs(req.lower_name, req.qtype, ttl, addresses.clone(), ctx.now_ms)?)
            }
            None => None,
        };
        let rrsigs = signed.as_deref().map_or(&[][..], Signed::wire);
        write::steered_answer(out, request, &req, ttl, addresses, scope, limit, rrsigs)
    };
    written.then(|| AnswerInfo {
        rcode: Some(ResponseCode::NoError),
        qtype: Some(RecordType::from(req.qtype)),
        service: Some(service),
        region: decision.chosen.first().copied(),
        reason: Some(decision.reason),
        fast: true,
        ecs: req.ecs.is_some(),
        truncated: false,
    })
}

/// The general path: answers any `request` from `src` over hickory-proto's message model (the reference
/// the fast path is tested against). `None` means "send nothing" (not a query, or too short to answer).
pub fn respond_general(
    ctx: &Context<'_>,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
) -> (Option<Vec<u8>>, AnswerInfo) {
    let mut info = AnswerInfo::default();
    if !answerable(request) {
        return (None, info);
    }
    // Read the request.
    let Ok(req) = Message::from_vec(request) else {
        info.rcode = Some(ResponseCode::FormErr);
        return (Some(header_only(request, ResponseCode::FormErr)), info);
    };
    let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = false;
    resp.add_queries(req.queries.iter().cloned());

    // Decide, and fill the response's records.
    let rcode = resolve(ctx, &req, &mut resp, src, &mut info);
    resp.metadata.response_code = rcode;
    info.rcode = Some(rcode);

    // Write it.
    let limit = transport.response_limit(req.edns.as_ref().map(Edns::max_payload));
    let (bytes, truncated) = write::encode(&resp, request, limit);
    info.truncated = truncated;
    (Some(bytes), info)
}
