//! Writing responses: the fast path's steered answer straight onto the wire into a reused buffer
//! ([`steered_answer`]), the general path's hickory `Message` encoded within the size limit, truncated
//! when it does not fit ([`encode`]), and the bare header of a response to a request that cannot be read
//! ([`header_only`]).

use hickory_proto::op::{Message, ResponseCode};

use crate::context::MAX_UDP_PAYLOAD;
use crate::request::{CLASS_IN, FastRequest, OPTION_ECS, TYPE_OPT, TYPE_RRSIG};

/// Writes into `out` (cleared first) the NOERROR response to `req` (parsed from `request`) answering
/// with `addresses` as records of the question's type (A: 4 octets, AAAA: 16) and TTL `ttl`, followed by
/// RRSIG records with the rdatas `rrsigs` (wire form; empty when unsigned), and `scope` as the ECS scope;
/// the DO bit echoed (RFC 3225).
/// Returns `false` (with `out` in an unspecified state) when the general path must answer instead: no
/// address (NODATA needs the SOA) or a response larger than `limit` (truncation).
// Every argument is a borrowed part of the one answer, written in one pass without collecting anything.
#[allow(clippy::too_many_arguments)]
pub(crate) fn steered_answer<const N: usize>(
    out: &mut Vec<u8>,
    request: &[u8],
    req: &FastRequest<'_>,
    ttl: u32,
    addresses: impl Iterator<Item = [u8; N]> + Clone,
    scope: Option<u8>,
    limit: usize,
    rrsigs: &[Vec<u8>],
) -> bool {
    let count = addresses.clone().count();
    if count == 0 {
        return false;
    }
    out.clear();
    // Header: the id, QR=1, opcode QUERY, AA=1, RD as asked; RA=0, rcode NOERROR.
    out.extend_from_slice(&request[..2]);
    out.push(0x84 | (request[2] & 0x01));
    out.push(0x00);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&((count + rrsigs.len()) as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&u16::from(req.edns_payload.is_some()).to_be_bytes());
    // The question as received: case preserved.
    out.extend_from_slice(req.question);
    let ttl = ttl.to_be_bytes();
    for rdata in addresses {
        // The owner is the question's name: a pointer to offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&req.qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl);
        out.extend_from_slice(&(N as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    for rdata in rrsigs {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_RRSIG.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    }
    if req.edns_payload.is_some() {
        out.push(0); // root
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        // Extended rcode 0, version 0, flags: DO as asked.
        out.extend_from_slice(&[0, 0, if req.dnssec_ok { 0x80 } else { 0 }, 0]);
        match (req.ecs, scope) {
            (Some(ecs), Some(scope)) => {
                let octets = ecs.octets;
                out.extend_from_slice(&(8 + octets.len() as u16).to_be_bytes());
                out.extend_from_slice(&OPTION_ECS.to_be_bytes());
                out.extend_from_slice(&(4 + octets.len() as u16).to_be_bytes());
                out.extend_from_slice(&ecs.family.to_be_bytes());
                out.push(ecs.source_prefix);
                out.push(scope);
                out.extend_from_slice(octets);
            }
            _ => out.extend_from_slice(&0u16.to_be_bytes()),
        }
    }
    // Truncation is the general path's business.
    out.len() <= limit
}

/// `resp` in wire form within `limit` octets, and whether it had to be truncated (TC=1, records dropped)
/// to fit; a bare SERVFAIL header if it cannot be encoded.
pub(crate) fn encode(resp: &Message, request: &[u8], limit: usize) -> (Vec<u8>, bool) {
    match resp.to_vec() {
        Ok(b) if b.len() <= limit => (b, false),
        Ok(_) => {
            let mut t = resp.truncate();
            t.metadata.truncation = true;
            let bytes = t
                .to_vec()
                .unwrap_or_else(|_| header_only(request, ResponseCode::ServFail));
            (bytes, true)
        }
        Err(_) => (header_only(request, ResponseCode::ServFail), false),
    }
}

/// A response carrying only the request's id, opcode and RD flag, and `rcode`: for requests that cannot
/// be parsed (FORMERR), and before any configuration is known (SERVFAIL).
pub(crate) fn header_only(request: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut h = vec![0u8; 12];
    h[0] = request[0];
    h[1] = request[1];
    // QR=1, the request's opcode, AA=0, TC=0, RD as asked.
    h[2] = 0x80 | (request[2] & 0x79);
    h[3] = u16::from(rcode) as u8 & 0x0f;
    h
}
