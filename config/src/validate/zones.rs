//! `[zones]`: each zone's origin (no zone inside another), TTL, name servers, SOA and static records —
//! names inside the zone, no duplicates, the CNAME rules of RFC 1034 and glue for in-zone name servers.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use crate::checker::Checker;
use crate::model::{Soa, StaticRecord, Zone};
use crate::names::path_key;
use crate::raw::RawZone;
use crate::{DomainName, RecordData};

const DEFAULT_ZONE_TTL: u32 = 3600;

pub(super) fn check_zones(c: &mut Checker, raw: &IndexMap<String, RawZone>) -> Vec<Zone> {
    let mut out: Vec<Zone> = Vec::new();
    for (origin, z) in raw {
        let path = format!("zones.{}", path_key(origin));
        let Some(origin) = c.domain(&path, origin) else {
            continue;
        };
        if let Some(other) = out
            .iter()
            .find(|o| origin.is_within(&o.origin) || o.origin.is_within(&origin))
        {
            c.err(
                &path,
                format!("overlaps zone {} (nested zones are not supported)", other.origin),
            );
        }
        let ttl = c.int(&format!("{path}.ttl"), z.ttl, DEFAULT_ZONE_TTL, 1..=604_800);

        let mut ns = Vec::new();
        if z.ns.is_empty() {
            c.err(format!("{path}.ns"), "must list at least one name server");
        }
        for (i, n) in z.ns.iter().enumerate() {
            let p = format!("{path}.ns[{i}]");
            if let Some(n) = c.domain(&p, n) {
                if ns.contains(&n) {
                    c.err(p, format!("{n} is listed twice"));
                } else {
                    ns.push(n);
                }
            }
        }

        let soa = match &z.soa {
            None => {
                c.err(format!("{path}.soa"), "is required");
                None
            }
            Some(s) => {
                let sp = format!("{path}.soa");
                let mname = c
                    .required(&format!("{sp}.mname"), s.mname.as_deref())
                    .and_then(|m| c.domain(&format!("{sp}.mname"), m));
                let rname = c
                    .required(&format!("{sp}.rname"), s.rname.as_deref())
                    .and_then(|m| c.domain(&format!("{sp}.rname"), m));
                let refresh = c.int(&format!("{sp}.refresh"), s.refresh, 3600, 1..=u32::MAX);
                let retry = c.int(&format!("{sp}.retry"), s.retry, 600, 1..=u32::MAX);
                let expire = c.int(&format!("{sp}.expire"), s.expire, 604_800, 1..=u32::MAX);
                let minimum = c.int(&format!("{sp}.minimum"), s.minimum, 60, 0..=86_400);
                mname.zip(rname).map(|(mname, rname)| Soa {
                    mname,
                    rname,
                    refresh,
                    retry,
                    expire,
                    minimum,
                })
            }
        };

        let mut records = Vec::new();
        for (i, r) in z.records.iter().enumerate() {
            let rp = format!("{path}.records[{i}]");
            let name = c.required(&format!("{rp}.name"), r.name.as_deref());
            let rtype = c.required(&format!("{rp}.type"), r.rtype.as_deref());
            let data = c.required(&format!("{rp}.data"), r.data.as_deref());
            let rttl = c.int(&format!("{rp}.ttl"), r.ttl, ttl, 0..=604_800);
            let name = name.and_then(|n| match DomainName::resolve(n, &origin) {
                Ok(n) if n.is_within(&origin) => Some(n),
                Ok(n) => {
                    c.err(format!("{rp}.name"), format!("{n} is outside zone {origin}"));
                    None
                }
                Err(e) => {
                    c.err(format!("{rp}.name"), e);
                    None
                }
            });
            let data = match (rtype, data) {
                (Some(t), Some(d)) => RecordData::parse(t, d, &origin)
                    .map_err(|e| c.err(format!("{rp}.data"), e))
                    .ok(),
                _ => None,
            };
            if let (Some(name), Some(data)) = (name, data) {
                if records
                    .iter()
                    .any(|x: &StaticRecord| x.name == name && x.data == data)
                {
                    c.err(
                        &rp,
                        format!("duplicate record {name} {} {data}", data.type_name()),
                    );
                }
                records.push(StaticRecord {
                    name,
                    ttl: rttl,
                    data,
                });
            }
        }
        check_cname_rules(c, &path, &origin, &records);
        check_glue(c, &path, &origin, &ns, &records);
        let dnssec = z
            .dnssec
            .as_ref()
            .and_then(|d| crate::dnssec::check_dnssec(c, &format!("{path}.dnssec"), d));

        if let Some(soa) = soa {
            out.push(Zone {
                origin,
                ttl,
                ns,
                soa,
                records,
                dnssec,
            });
        }
    }
    out
}

/// RFC 1034: a CNAME owner has no other data, and the apex (which holds SOA and NS) cannot be a CNAME.
fn check_cname_rules(c: &mut Checker, path: &str, origin: &DomainName, records: &[StaticRecord]) {
    let mut by_name: BTreeMap<&DomainName, Vec<&StaticRecord>> = BTreeMap::new();
    for r in records {
        by_name.entry(&r.name).or_default().push(r);
    }
    for (name, rs) in by_name {
        let cnames = rs
            .iter()
            .filter(|r| matches!(r.data, RecordData::Cname(_)))
            .count();
        if cnames == 0 {
            continue;
        }
        if name == origin {
            c.err(
                format!("{path}.records"),
                format!("{name}: a CNAME cannot be at the zone apex"),
            );
        } else if rs.len() > 1 {
            c.err(
                format!("{path}.records"),
                format!("{name}: a CNAME cannot coexist with other records"),
            );
        }
    }
}

/// A name server inside its own zone needs an address record, or nobody can reach it (glue).
fn check_glue(c: &mut Checker, path: &str, origin: &DomainName, ns: &[DomainName], records: &[StaticRecord]) {
    for (i, n) in ns.iter().enumerate() {
        let has_address = records
            .iter()
            .any(|r| &r.name == n && matches!(r.data, RecordData::A(_) | RecordData::Aaaa(_)));
        if n.is_within(origin) && !has_address {
            c.err(
                format!("{path}.ns[{i}]"),
                format!("{n} is inside the zone but has no A or AAAA record (glue)"),
            );
        }
    }
}
