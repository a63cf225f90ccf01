//! The zones of a configuration, compiled for answering: every owner name with its static records, the
//! service it steers (if any), SOA and NS at the apex, and the set of names that exist (so that an empty
//! non-terminal answers NODATA, not NXDOMAIN). Built once per configuration version.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};
use meridian_config::{DomainName, RecordData};
use meridian_steer::{ServiceIndex, Topology};

use crate::dnssec::{TestHook, ZoneKeys, ZoneSigner};

/// One zone, ready to answer from.
#[derive(Debug)]
pub(crate) struct ZoneData {
    pub(crate) origin: LowerName,
    /// The SOA record (owner: the apex).
    pub(crate) soa: Record,
    /// Negative-caching TTL: min(SOA TTL, SOA minimum) (RFC 2308).
    pub(crate) negative_ttl: u32,
    /// Static records by owner.
    pub(crate) records: HashMap<LowerName, Vec<Record>>,
    /// Steered names.
    pub(crate) services: HashMap<LowerName, ServiceIndex>,
    /// Every name that exists: owners, service names and their ancestors up to the apex.
    pub(crate) existing: HashSet<LowerName>,
    /// The zone's signer, when it is signed (its DNSKEY set is then among the apex's records).
    pub(crate) signer: Option<Arc<ZoneSigner>>,
}

/// A steered name's service, and its zone's signer when the zone is signed.
pub(crate) type SteeredName = (ServiceIndex, Option<Arc<ZoneSigner>>);

/// Every zone of a configuration.
#[derive(Debug)]
pub struct ZoneIndex {
    pub(crate) zones: Vec<ZoneData>,
    /// Steered names in lower-case wire form (`\x04meet\x04gslb\x07example\x00`), for the fast path,
    /// which looks a question up without building a `Name`. Only names whose closest zone steers them.
    /// foldhash, not SipHash (it showed in the profile): the map is built from the configuration and
    /// only looked up with query names, so chosen names cannot degrade it.
    /// With the zone's signer, when the zone is signed.
    pub(crate) steered: HashMap<Box<[u8]>, SteeredName, foldhash::fast::RandomState>,
}

fn name(d: &DomainName) -> Name {
    // Validated domain names are always valid DNS names; the root is the (unreachable) fallback.
    Name::from_ascii(format!("{}.", d.as_str())).unwrap_or_else(|_| Name::root())
}

fn rdata(data: &RecordData) -> Option<RData> {
    Some(match data {
        RecordData::A(a) => RData::A(A(*a)),
        RecordData::Aaaa(a) => RData::AAAA(AAAA(*a)),
        RecordData::Cname(n) => RData::CNAME(CNAME(name(n))),
        // Character strings are at most 255 octets: long texts are split.
        RecordData::Txt(t) => RData::TXT(TXT::new(
            t.as_bytes()
                .chunks(255)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect(),
        )),
        RecordData::Mx { preference, exchange } => RData::MX(MX::new(*preference, name(exchange))),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target))),
        RecordData::Caa { flags, tag, value } => {
            // Encoded by hand and decoded by hickory: its CAA constructors cover only some tags.
            let mut wire = vec![*flags, tag.len() as u8];
            wire.extend_from_slice(tag.as_bytes());
            wire.extend_from_slice(value.as_bytes());
            let mut decoder = BinDecoder::new(&wire);
            RData::read(&mut decoder, RecordType::CAA, Restrict::new(wire.len() as u16)).ok()?
        }
    })
}

impl ZoneIndex {
    /// Compiles the zones of `topology`'s configuration, unsigned; `serial` is the SOA serial (it follows
    /// configuration changes).
    pub fn new(topology: &Topology, serial: u32) -> Self {
        Self::with_keys(topology, serial, &[], TestHook::None)
    }

    /// [`ZoneIndex::new`], signing the zones whose origin has keys in `keys` (each with a new signer,
    /// so signatures cached for an older configuration are not reused; `hook`: a test-only fault).
    pub fn with_keys(topology: &Topology, serial: u32, keys: &[Arc<ZoneKeys>], hook: TestHook) -> Self {
        let config = topology.config();
        let zones = config
            .zones()
            .iter()
            .map(|z| {
                let origin = name(&z.origin);
                let soa_rdata = SOA::new(
                    name(&z.soa.mname),
                    name(&z.soa.rname),
                    serial,
                    z.soa.refresh as i32,
                    z.soa.retry as i32,
                    z.soa.expire as i32,
                    z.soa.minimum,
                );
                let soa = Record::from_rdata(origin.clone(), z.ttl, RData::SOA(soa_rdata));
                let mut records: HashMap<LowerName, Vec<Record>> = HashMap::new();
                records
                    .entry(LowerName::new(&origin))
                    .or_default()
                    .push(soa.clone());
                let signer = keys
                    .iter()
                    .find(|k| LowerName::new(&k.origin) == LowerName::new(&origin))
                    .map(|k| Arc::new(ZoneSigner::new(k.clone(), z.ttl, hook)));
                if let Some(s) = &signer {
                    records
                        .entry(LowerName::new(&origin))
                        .or_default()
                        .extend(s.dnskeys().iter().cloned());
                }
                for ns in &z.ns {
                    records
                        .entry(LowerName::new(&origin))
                        .or_default()
                        .push(Record::from_rdata(origin.clone(), z.ttl, RData::NS(NS(name(ns)))));
                }
                for r in &z.records {
                    if let Some(data) = rdata(&r.data) {
                        let owner = name(&r.name);
                        records
                            .entry(LowerName::new(&owner))
                            .or_default()
                            .push(Record::from_rdata(owner, r.ttl, data));
                    }
                }
                let services: HashMap<LowerName, ServiceIndex> = config
                    .services()
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.zone == z.origin)
                    .filter_map(|(_, s)| {
                        Some((
                            LowerName::new(&name(&s.hostname)),
                            topology.service_index(&s.name)?,
                        ))
                    })
                    .collect();
                let mut existing = HashSet::new();
                let origin_lower = LowerName::new(&origin);
                for owner in records.keys().chain(services.keys()) {
                    let mut n: Name = owner.clone().into();
                    while n.num_labels() >= origin.num_labels() {
                        existing.insert(LowerName::new(&n));
                        if n.num_labels() == 0 {
                            break;
                        }
                        n = n.base_name();
                    }
                }
                ZoneData {
                    origin: origin_lower,
                    negative_ttl: z.ttl.min(z.soa.minimum),
                    soa,
                    records,
                    services,
                    existing,
                    signer,
                }
            })
            .collect::<Vec<_>>();
        let mut index = Self {
            zones,
            steered: HashMap::default(),
        };
        let mut steered = HashMap::default();
        for (i, zone) in index.zones.iter().enumerate() {
            for (owner, &service) in &zone.services {
                let closest = index.find(owner).map(|z| std::ptr::eq(z, &index.zones[i]));
                if closest == Some(true) {
                    steered.insert(wire_lower(owner), (service, index.zones[i].signer.clone()));
                }
            }
        }
        index.steered = steered;
        index
    }

    /// Adds the ACME DNS-01 answers of the snapshot (`_acme-challenge.NAME` -> TXT values) to the zones
    /// that hold their names, as static TXT records with a TTL of 1 s (a CA's resolver should not keep an
    /// old value): answered, and signed when the zone is, as any other static record. A name no zone holds
    /// is left out (configuration validation keeps ACME names inside the zones).
    pub fn with_acme_challenges(mut self, challenges: &BTreeMap<String, Vec<String>>) -> Self {
        for (owner, values) in challenges {
            let Ok(owner) = Name::from_ascii(format!("{owner}.")) else {
                continue;
            };
            let lower = LowerName::new(&owner);
            let Some(i) = self
                .zones
                .iter()
                .enumerate()
                .filter(|(_, z)| z.origin.zone_of(&lower))
                .max_by_key(|(_, z)| z.origin.num_labels())
                .map(|(i, _)| i)
            else {
                continue;
            };
            let zone = &mut self.zones[i];
            let records = zone.records.entry(lower.clone()).or_default();
            for v in values {
                records.push(Record::from_rdata(
                    owner.clone(),
                    1,
                    RData::TXT(TXT::new(vec![v.clone()])),
                ));
            }
            let mut n = owner.clone();
            while n.num_labels() >= zone.origin.num_labels() {
                zone.existing.insert(LowerName::new(&n));
                if n.num_labels() == 0 {
                    break;
                }
                n = n.base_name();
            }
        }
        self
    }

    /// The zone that holds `name` (the longest matching origin).
    pub(crate) fn find(&self, name: &LowerName) -> Option<&ZoneData> {
        self.zones
            .iter()
            .filter(|z| z.origin.zone_of(name))
            .max_by_key(|z| z.origin.num_labels())
    }
}

/// A name in lower-case, uncompressed wire form.
fn wire_lower(name: &LowerName) -> Box<[u8]> {
    let n: Name = name.clone().into();
    let mut out = Vec::with_capacity(n.len() + 1);
    for label in n.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

/// The addresses of in-zone name servers, for glue.
pub(crate) fn glue<'a>(zone: &'a ZoneData, ns_names: impl Iterator<Item = &'a Name>) -> Vec<Record> {
    let mut out = Vec::new();
    for n in ns_names {
        if let Some(rs) = zone.records.get(&LowerName::new(n)) {
            out.extend(
                rs.iter()
                    .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
                    .cloned(),
            );
        }
    }
    out
}
