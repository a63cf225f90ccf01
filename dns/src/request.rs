//! Reading a request: whether a packet deserves any response ([`answerable`]); the one shape that is
//! nearly all of a GeoDNS server's traffic, parsed straight from the wire ([`FastRequest`]); and the
//! checks the general path adds to hickory's parsing ([`valid_ecs`]).
//!
//! The shape: a single A or AAAA question, class IN, plain labels, optionally EDNS(0) (version 0)
//! carrying nothing or one well-formed Client Subnet option, and nothing else. Anything unusual about it
//! (compression in the question, other EDNS options, trailing octets) is not that shape: the general
//! path, over hickory-proto's message model, reads it instead.

use std::net::IpAddr;

use hickory_proto::rr::rdata::opt::ClientSubnet;

pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_AAAA: u16 = 28;
pub(crate) const TYPE_OPT: u16 = 41;
pub(crate) const TYPE_RRSIG: u16 = 46;
pub(crate) const CLASS_IN: u16 = 1;
pub(crate) const OPTION_ECS: u16 = 8;

/// Whether a packet deserves any response: not when it is shorter than a header, nor when it is itself a
/// response (answering responses could feed a reflection loop between two servers).
pub(crate) fn answerable(request: &[u8]) -> bool {
    request.len() >= 12 && request[2] & 0x80 == 0
}

/// A request of the fast path's shape, borrowed from the packet.
pub(crate) struct FastRequest<'a> {
    /// The question section as received (name with its case, type, class).
    pub(crate) question: &'a [u8],
    /// The question name lower-cased, in wire form: the key of the steered names.
    pub(crate) lower_name: &'a [u8],
    /// [`TYPE_A`] or [`TYPE_AAAA`].
    pub(crate) qtype: u16,
    /// EDNS present: the client's payload size.
    pub(crate) edns_payload: Option<u16>,
    /// The Client Subnet option.
    pub(crate) ecs: Option<Ecs<'a>>,
    /// EDNS's DO bit: the client wants DNSSEC records.
    pub(crate) dnssec_ok: bool,
}

/// A well-formed Client Subnet option of a [`FastRequest`].
#[derive(Clone, Copy)]
pub(crate) struct Ecs<'a> {
    /// 1 (IPv4) or 2 (IPv6).
    pub(crate) family: u16,
    /// The source prefix length.
    pub(crate) source_prefix: u8,
    /// The address octets as sent (as many as the prefix needs).
    pub(crate) octets: &'a [u8],
    /// The address they spell, zero-filled.
    pub(crate) addr: IpAddr,
}

impl<'a> FastRequest<'a> {
    /// Parses `req` if it has the fast path's shape, writing the lower-cased question name into `lower`
    /// (a buffer of the caller's stack: nothing is allocated).
    pub(crate) fn parse(req: &'a [u8], lower: &'a mut [u8; 255]) -> Option<Self> {
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
        // Written: from here on the name is only read, for as long as the request lives.
        let lower: &'a [u8; 255] = lower;
        let qtype = u16_at(i)?;
        if !(qtype == TYPE_A || qtype == TYPE_AAAA) || u16_at(i + 2)? != CLASS_IN {
            return None;
        }
        let question = &req[12..i + 4];
        i += 4;
        let mut parsed = Self {
            question,
            lower_name: &lower[..question.len() - 4],
            qtype,
            edns_payload: None,
            ecs: None,
            dnssec_ok: false,
        };
        if arcount == 1 {
            // OPT: root owner, type 41, class = payload, TTL = extended rcode 0, version 0, flags (DO
            // read, the others ignored).
            if *req.get(i)? != 0
                || u16_at(i + 1)? != TYPE_OPT
                || *req.get(i + 5)? != 0
                || *req.get(i + 6)? != 0
            {
                return None;
            }
            parsed.edns_payload = Some(u16_at(i + 3)?);
            parsed.dnssec_ok = *req.get(i + 7)? & 0x80 != 0;
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
                parsed.ecs = Some(Ecs::parse(data)?);
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
}

impl<'a> Ecs<'a> {
    /// A well-formed ECS option (RFC 7871 §6): known family, prefix within it, exactly the address octets
    /// the prefix needs, zero bits past the prefix. Anything else is the general path's (it answers
    /// FORMERR).
    fn parse(data: &'a [u8]) -> Option<Self> {
        let family = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
        let source_prefix = *data.get(2)?;
        let octets = data.get(4..)?;
        let max = match family {
            1 => 32,
            2 => 128,
            _ => return None,
        };
        if source_prefix > max || octets.len() != usize::from(source_prefix).div_ceil(8) {
            return None;
        }
        if source_prefix % 8 != 0 && octets.last()? & (0xffu8 >> (source_prefix % 8)) != 0 {
            return None;
        }
        let addr = if family == 1 {
            let mut o = [0u8; 4];
            o[..octets.len()].copy_from_slice(octets);
            IpAddr::from(o)
        } else {
            let mut o = [0u8; 16];
            o[..octets.len()].copy_from_slice(octets);
            IpAddr::from(o)
        };
        Some(Self {
            family,
            source_prefix,
            octets,
            addr,
        })
    }
}

/// The address a request of the fast path's shape will be located by (its Client Subnet, else `src`);
/// `src` for any other request. Only for warming the GeoIP lookup ([`meridian_geoip::GeoDb::warm`]):
/// answering decides again.
pub(crate) fn client_address(request: &[u8], src: IpAddr) -> IpAddr {
    let mut lower = [0u8; 255];
    FastRequest::parse(request, &mut lower)
        .and_then(|p| p.ecs)
        .map_or(src, |ecs| ecs.addr)
}

/// RFC 7871 §6, for an option hickory parsed: the family must match the address, the source prefix fit
/// it, and address bits past the source prefix be zero. (Unknown families and over-long prefixes already
/// fail to parse.)
pub(crate) fn valid_ecs(s: &ClientSubnet) -> Option<&ClientSubnet> {
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
