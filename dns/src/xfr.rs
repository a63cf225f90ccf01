//! Zone transfers to secondaries (AXFR, and IXFR answered with the whole zone or, when the secondary is
//! current, the SOA alone — RFC 1995 §4), TSIG (RFC 8945, HMAC-SHA256, hickory-proto's `TSigner`) on
//! transfers and on any signed query, and NOTIFY (RFC 1996) to the secondaries when a zone's serial moves
//! (it follows the configuration's store revision).
//!
//! What a transfer carries: the apex SOA and NS, the static records, and for each steered name one
//! representative answer — the one Meridian gives a client it cannot locate, as of the transfer. So a
//! secondary answers every name of the zone (a steered name missing there would be NXDOMAIN, cached by
//! resolvers), but without steering; it is refreshed with each configuration revision, not each health
//! change. DNSKEY: when the zone is signed, the records of the zone's apex as `ZoneIndex` holds them go
//! with it (the hook is [`transfer_records`]: whatever the apex carries is transferred).
//!
//! Who may transfer: a request over TCP, signed with a key of the secondaries file, from the address of a
//! secondary of that zone that uses that key. Anything else is refused and counted
//! (`meridian_dns_xfr_refused_total`): unsigned (REFUSED), unknown key or bad MAC or time (NOTAUTH with
//! the TSIG error, unsigned, as RFC 8945 §5.2 says), or not allowed (REFUSED). Transfers are one message:
//! a zone whose records do not fit 64 KiB is answered SERVFAIL and logged.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType, TSigResponseContext, TSigner};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use meridian_config::secondaries::Secondaries;

use crate::context::{Context, Transport};
use crate::guard::GuardMetrics;
use crate::respond::respond_general;
use crate::zone::ZoneData;

/// Seconds of clock difference a TSIG signature may show (RFC 8945 §10 recommends 300).
const FUDGE: u16 = 300;

/// Who may transfer what, with which key; and whom to NOTIFY.
pub struct XfrPolicy {
    keys: HashMap<LowerName, TSigner>,
    zones: HashMap<LowerName, Vec<Peer>>,
}

struct Peer {
    address: SocketAddr,
    key: LowerName,
    notify: bool,
}

fn key_name(name: &str) -> Result<Name, String> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|e| e.to_string())
}

impl XfrPolicy {
    /// The policy of a secondaries file, its secrets read now; an error names the file and the path.
    pub fn from_config(config: &Secondaries) -> Result<Self, String> {
        use base64::Engine;
        let mut keys = HashMap::new();
        for (name, k) in &config.keys {
            let path = format!("keys.{name}.secret-file");
            let text = std::fs::read_to_string(&k.secret_file)
                .map_err(|e| format!("{path}: cannot read {}: {e}", k.secret_file.display()))?;
            let secret = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| format!("{path}: {} is not base64: {e}", k.secret_file.display()))?;
            if secret.len() < 16 {
                return Err(format!(
                    "{path}: {}: a secret of {} octets is too short (at least 16)",
                    k.secret_file.display(),
                    secret.len()
                ));
            }
            let name = key_name(name).map_err(|e| format!("keys.{name}: {e}"))?;
            let signer = TSigner::new(secret, TsigAlgorithm::HmacSha256, name.clone(), FUDGE)
                .map_err(|e| format!("keys.{name}: {e}"))?;
            keys.insert(LowerName::new(&name), signer);
        }
        let mut zones = HashMap::new();
        for (origin, list) in &config.zones {
            let origin = key_name(origin.as_str()).map_err(|e| format!("zones.{origin}: {e}"))?;
            let peers = list
                .iter()
                .map(|s| {
                    Ok(Peer {
                        address: s.address,
                        key: LowerName::new(&key_name(&s.key)?),
                        notify: s.notify,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            zones.insert(LowerName::new(&origin), peers);
        }
        Ok(Self { keys, zones })
    }

    /// The zones with secondaries to NOTIFY, and where.
    fn notify_targets(&self) -> impl Iterator<Item = (&LowerName, SocketAddr, &TSigner)> {
        self.zones.iter().flat_map(move |(origin, peers)| {
            peers
                .iter()
                .filter(|p| p.notify)
                .filter_map(move |p| Some((origin, p.address, self.keys.get(&p.key)?)))
        })
    }
}

fn now_s() -> u64 {
    meridian_store::now_ms() / 1000
}

/// Why a transfer was refused: the index into [`crate::guard`]'s reasons.
#[derive(Clone, Copy)]
pub(crate) enum Refused {
    /// No TSIG.
    Unsigned = 0,
    /// Unknown key, bad MAC or time.
    BadKey = 1,
    /// A good key, but not this zone's secondary, or not over TCP.
    NotAllowed = 2,
}

/// Answers `request` when it is the transfer side's: a zone transfer (AXFR/IXFR) or a TSIG-signed query.
/// `None`: not ours, answer it as any query. `Some(octets)`: the response (empty: send nothing).
pub(crate) fn intercept(
    policy: Option<&XfrPolicy>,
    ctx: &Context<'_>,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    metrics: &GuardMetrics,
) -> Option<Vec<u8>> {
    if !maybe_ours(request, policy.is_some()) {
        return None;
    }
    let req = Message::from_vec(request).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let transfer = matches!(
        req.queries.as_slice(),
        [q] if matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR)
    );
    if !transfer && req.signature.is_none() {
        return None;
    }
    let refuse = |why: Refused| {
        metrics.xfr_refused[why as usize].fetch_add(1, Ordering::Relaxed);
    };
    // The key, and the request's MAC (a signed response chains to it).
    let mut signer_mac = None;
    if let Some(sig) = &req.signature {
        let Some(policy) = policy else {
            // Signed, but this node has no keys: not a secondary of ours.
            if transfer {
                refuse(Refused::BadKey);
            }
            return Some(tsig_error(&req, None, &sig.name, TsigError::BadKey));
        };
        let Some(signer) = policy.keys.get(&LowerName::new(&sig.name)) else {
            if transfer {
                refuse(Refused::BadKey);
            }
            return Some(tsig_error(&req, None, &sig.name, TsigError::BadKey));
        };
        match signer.verify_message_byte(request, None, true) {
            Ok((mac, _, window)) => {
                if !window.contains(&now_s()) {
                    if transfer {
                        refuse(Refused::BadKey);
                    }
                    // BADTIME is signed, chained to the request's MAC (RFC 8945 §5.2.3).
                    let context = TSigResponseContext::new(
                        req.metadata.id,
                        now_s(),
                        signer.clone(),
                        mac,
                        Some(TsigError::BadTime),
                    );
                    return Some(append_tsig(header_response(&req, ResponseCode::NotAuth), context));
                }
                signer_mac = Some((signer.clone(), mac));
            }
            Err(_) => {
                if transfer {
                    refuse(Refused::BadKey);
                }
                return Some(tsig_error(&req, Some(signer), &sig.name, TsigError::BadSig));
            }
        }
    }
    let response = if transfer {
        match transfer_response(policy, ctx, &req, src, transport, signer_mac.as_ref()) {
            Ok(bytes) => {
                metrics.xfr_served.fetch_add(1, Ordering::Relaxed);
                bytes
            }
            Err((why, rcode)) => {
                refuse(why);
                header_response(&req, rcode)
            }
        }
    } else {
        // A signed ordinary query (a secondary checking the SOA serial): the usual answer, signed.
        respond_general(ctx, request, src, transport).0?
    };
    Some(match signer_mac {
        Some((signer, mac)) => sign(&req, response, signer, mac),
        None => response,
    })
}

/// Whether `request` may be the transfer side's, from its octets alone (most queries that miss the fast
/// path are not, and need not be parsed twice): a question of type AXFR or IXFR; or, when this node has
/// secondaries, an additional section that is more than one OPT record (a TSIG record is the last one).
/// `true` when unsure (a compressed question, records in answer or authority).
fn maybe_ours(request: &[u8], keys: bool) -> bool {
    let count = |at: usize| {
        request
            .get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 {
        return keys && ar > 0;
    }
    let mut i = 12;
    while let Some(&len) = request.get(i) {
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return true;
        }
        i += 1 + usize::from(len);
    }
    let qtype = count(i + 1);
    if qtype == u16::from(RecordType::AXFR) || qtype == u16::from(RecordType::IXFR) {
        return true;
    }
    if !keys || ar == 0 {
        return false;
    }
    if ar > 1 || an > 0 || ns > 0 {
        return true;
    }
    // One additional record, after the question (name, type, class): OPT has the root owner and type 41.
    let at = i + 5;
    !(request.get(at) == Some(&0) && count(at + 1) == u16::from(RecordType::OPT))
}

/// The response to a transfer, or why it is refused and with which code.
fn transfer_response(
    policy: Option<&XfrPolicy>,
    ctx: &Context<'_>,
    req: &Message,
    src: IpAddr,
    transport: Transport,
    signer: Option<&(TSigner, Vec<u8>)>,
) -> Result<Vec<u8>, (Refused, ResponseCode)> {
    let (Some(policy), Some((signer, _))) = (policy, signer) else {
        return Err((Refused::Unsigned, ResponseCode::Refused));
    };
    if transport != Transport::Tcp {
        return Err((Refused::NotAllowed, ResponseCode::Refused));
    }
    let q = &req.queries[0];
    let origin = LowerName::new(q.name());
    let key = LowerName::new(signer.signer_name());
    let allowed = policy
        .zones
        .get(&origin)
        .is_some_and(|peers| peers.iter().any(|p| p.address.ip() == src && p.key == key));
    if !allowed {
        return Err((Refused::NotAllowed, ResponseCode::Refused));
    }
    let Some(zone) = ctx.zones.find(&origin).filter(|z| z.origin == origin) else {
        return Err((Refused::NotAllowed, ResponseCode::NotAuth));
    };
    let serial = match &zone.soa.data {
        RData::SOA(soa) => soa.serial,
        _ => 0,
    };
    // IXFR from a serial at least ours (serial arithmetic, RFC 1982): the SOA alone, "you are current".
    let client_serial = req.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) if q.query_type() == RecordType::IXFR => Some(soa.serial),
        _ => None,
    });
    let records = match client_serial {
        Some(c) if serial.wrapping_sub(c) as i32 <= 0 => vec![zone.soa.clone()],
        _ => transfer_records(ctx, zone),
    };
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.authoritative = true;
    resp.add_query(q.clone());
    resp.add_answers(records);
    let bytes = resp
        .to_vec()
        .map_err(|_| (Refused::NotAllowed, ResponseCode::ServFail))?;
    if bytes.len() > usize::from(u16::MAX) - 512 {
        tracing::error!(zone = %origin, octets = bytes.len(), "zone too large for a one-message transfer");
        return Ok(header_response(req, ResponseCode::ServFail));
    }
    Ok(bytes)
}

/// The records of a full transfer, SOA first and last: the apex's records (SOA, NS, and whatever else the
/// zone's apex holds — DNSKEY when the zone is signed), the static records, and one answer per steered
/// name (the answer for a client that cannot be located).
pub(crate) fn transfer_records(ctx: &Context<'_>, zone: &ZoneData) -> Vec<Record> {
    let mut out = vec![zone.soa.clone()];
    let mut owners: Vec<&LowerName> = zone.records.keys().collect();
    // Apex first, then by name: a stable order, so two transfers of one serial are the same octets.
    owners.sort_by_key(|n| (**n != zone.origin, n.to_string()));
    for owner in owners {
        out.extend(
            zone.records[owner]
                .iter()
                .filter(|r| r.record_type() != RecordType::SOA)
                .cloned(),
        );
    }
    let mut steered: Vec<&LowerName> = zone.services.keys().collect();
    steered.sort_by_key(|n| n.to_string());
    // An address no GeoIP database locates (TEST-NET-1): the unlocated client's answer.
    let nowhere = IpAddr::from([192, 0, 2, 0]);
    for name in steered {
        let owner: Name = name.clone().into();
        for qtype in [RecordType::A, RecordType::AAAA] {
            let mut q = Message::new(0, MessageType::Query, OpCode::Query);
            q.add_query(Query::query(owner.clone(), qtype));
            let Ok(bytes) = q.to_vec() else { continue };
            if let (Some(resp), _) = respond_general(ctx, &bytes, nowhere, Transport::Tcp)
                && let Ok(m) = Message::from_vec(&resp)
            {
                out.extend(m.answers.into_iter().filter(|r| r.record_type() == qtype));
            }
        }
    }
    out.push(zone.soa.clone());
    out
}

/// A header-and-question response with `rcode`.
fn header_response(req: &Message, rcode: ResponseCode) -> Vec<u8> {
    let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    resp.metadata.response_code = rcode;
    resp.add_queries(req.queries.iter().cloned());
    resp.to_vec().unwrap_or_default()
}

/// Appends the TSIG record signing `response` (unsigned octets) with `signer`, chained to the request's
/// `mac`.
fn sign(req: &Message, response: Vec<u8>, signer: TSigner, mac: Vec<u8>) -> Vec<u8> {
    let context = TSigResponseContext::new(req.metadata.id, now_s(), signer, mac, None);
    append_tsig(response, context)
}

/// NOTAUTH with an unsigned TSIG record carrying BADKEY (no signer: the key is unknown) or BADSIG (RFC
/// 8945 §5.2).
fn tsig_error(req: &Message, signer: Option<&TSigner>, key: &Name, error: TsigError) -> Vec<u8> {
    let response = header_response(req, ResponseCode::NotAuth);
    let context = match (signer, error) {
        (Some(s), TsigError::BadSig) => {
            TSigResponseContext::bad_signature(req.metadata.id, now_s(), s.clone())
        }
        (Some(s), _) => TSigResponseContext::bad_signature(req.metadata.id, now_s(), s.clone()),
        (None, _) => TSigResponseContext::unknown_key(req.metadata.id, now_s(), key.clone()),
    };
    append_tsig(response, context)
}

fn append_tsig(mut response: Vec<u8>, context: TSigResponseContext) -> Vec<u8> {
    let Ok(record) = context.sign(&response) else {
        return response;
    };
    let mut tail = Vec::with_capacity(128);
    let mut encoder = BinEncoder::new(&mut tail);
    if record.emit(&mut encoder).is_err() || response.len() < 12 {
        return response;
    }
    let arcount = u16::from_be_bytes([response[10], response[11]]).saturating_add(1);
    response[10..12].copy_from_slice(&arcount.to_be_bytes());
    response.extend_from_slice(&tail);
    response
}

/// Sends NOTIFY for every zone whose serial changes from now on, to its secondaries, signed with their
/// key; each one is retried (three times, a second apart) until the secondary answers.
pub fn spawn_notifier(
    state: Arc<crate::server::DnsState>,
    policy: Arc<XfrPolicy>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: HashMap<LowerName, u32> = HashMap::new();
        loop {
            let serials: Vec<(LowerName, Record)> = state.zone_soas(policy.zones.keys());
            for (origin, soa) in serials {
                let serial = match &soa.data {
                    RData::SOA(s) => s.serial,
                    _ => continue,
                };
                let before = seen.insert(origin.clone(), serial);
                if before.is_none() || before == Some(serial) {
                    continue;
                }
                for (o, address, signer) in policy.notify_targets() {
                    if *o != origin {
                        continue;
                    }
                    let (soa, signer, metrics) = (soa.clone(), signer.clone(), state.guard_metrics().clone());
                    tokio::spawn(async move {
                        metrics.notify_sent[0].fetch_add(1, Ordering::Relaxed);
                        if notify(address, &soa, &signer).await {
                            metrics.notify_sent[1].fetch_add(1, Ordering::Relaxed);
                            tracing::info!(zone = %soa.name, %address, serial, "NOTIFY acknowledged");
                        } else {
                            tracing::warn!(zone = %soa.name, %address, serial, "NOTIFY not acknowledged");
                        }
                    });
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// One NOTIFY to `address`, retried until acknowledged (true) or three attempts failed.
async fn notify(address: SocketAddr, soa: &Record, signer: &TSigner) -> bool {
    let bind: SocketAddr = if address.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(address)
    } else {
        "[::]:0".parse().unwrap_or(address)
    };
    let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else {
        return false;
    };
    for attempt in 0..3u16 {
        let id = (now_s() as u16).wrapping_add(attempt).wrapping_mul(7919);
        let mut m = Message::new(id, MessageType::Query, OpCode::Notify);
        m.metadata.authoritative = true;
        m.add_query(Query::query(soa.name.clone(), RecordType::SOA));
        m.add_answer(soa.clone());
        let Ok((tsig, _)) = signer.sign_message(&m, now_s()) else {
            return false;
        };
        m.signature = Some(tsig);
        let Ok(bytes) = m.to_vec() else { return false };
        if socket.send_to(&bytes, address).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 1500];
        if let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await
            && from == address
            && let Ok(r) = Message::from_vec(&buf[..n])
            && r.metadata.id == id
            && r.metadata.message_type == MessageType::Response
        {
            return r.metadata.response_code == ResponseCode::NoError;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    use hickory_proto::rr::{Name, RecordType, TSigner};

    use super::maybe_ours;

    fn query(qtype: RecordType, edns: bool, signed: bool) -> Vec<u8> {
        let mut m = Message::new(1, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii("gslb.example.").unwrap(), qtype));
        if edns {
            m.set_edns(Edns::new());
        }
        if signed {
            let signer = TSigner::new(
                vec![1; 32],
                TsigAlgorithm::HmacSha256,
                Name::from_ascii("k.").unwrap(),
                300,
            )
            .unwrap();
            m.signature = Some(signer.sign_message(&m, 1).unwrap().0);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn only_transfers_and_signed_requests_are_parsed_again() {
        for keys in [false, true] {
            assert!(maybe_ours(&query(RecordType::AXFR, false, false), keys));
            assert!(maybe_ours(&query(RecordType::IXFR, true, false), keys));
            assert!(!maybe_ours(&query(RecordType::SOA, true, false), keys));
            assert!(!maybe_ours(&query(RecordType::MX, false, false), keys));
        }
        for edns in [false, true] {
            assert!(maybe_ours(&query(RecordType::SOA, edns, true), true));
            assert!(!maybe_ours(&query(RecordType::SOA, edns, true), false));
        }
    }
}
