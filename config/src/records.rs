//! Static DNS records of a zone: their types and the parsing of their data from zone-file presentation
//! format (`10 mail.gslb.example.`), so that a typo is caught by `config check`, not by the DNS server.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::DomainName;

/// The data of a static record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// An alias.
    Cname(DomainName),
    /// Free text (split into 255-octet character strings on the wire).
    Txt(String),
    /// A mail exchanger.
    Mx {
        /// Lower is preferred.
        preference: u16,
        /// The exchanger's name.
        exchange: DomainName,
    },
    /// A service location (RFC 2782).
    Srv {
        /// Lower is preferred.
        priority: u16,
        /// Relative weight among equal priorities.
        weight: u16,
        /// TCP or UDP port.
        port: u16,
        /// The host providing the service.
        target: DomainName,
    },
    /// A certification authority authorisation (RFC 8659).
    Caa {
        /// 0, or 128 for "issuer critical".
        flags: u8,
        /// `issue`, `issuewild`, `iodef`, ...
        tag: String,
        /// The property value, unquoted.
        value: String,
    },
}

impl RecordData {
    /// The record type mnemonic (`A`, `AAAA`, `MX`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::A(_) => "A",
            Self::Aaaa(_) => "AAAA",
            Self::Cname(_) => "CNAME",
            Self::Txt(_) => "TXT",
            Self::Mx { .. } => "MX",
            Self::Srv { .. } => "SRV",
            Self::Caa { .. } => "CAA",
        }
    }

    /// Parses `data` as a record of type `rtype` (upper-case mnemonic). Names in the data follow zone-file
    /// rules: relative to `origin` unless they end in a dot.
    pub(crate) fn parse(rtype: &str, data: &str, origin: &DomainName) -> Result<Self, String> {
        let fields: Vec<&str> = data.split_whitespace().collect();
        let name = |s: &str| DomainName::resolve(s, origin);
        let number = |s: &str, what: &str| -> Result<u16, String> {
            s.parse::<u16>()
                .map_err(|_| format!("{what} {s:?} is not a number from 0 to 65535"))
        };
        let arity = |n: usize, shape: &str| -> Result<(), String> {
            if fields.len() == n {
                Ok(())
            } else {
                Err(format!("{rtype} data must be \"{shape}\", got {data:?}"))
            }
        };
        match rtype {
            "A" => data
                .parse()
                .map(Self::A)
                .map_err(|_| format!("{data:?} is not an IPv4 address")),
            "AAAA" => data
                .parse()
                .map(Self::Aaaa)
                .map_err(|_| format!("{data:?} is not an IPv6 address")),
            "CNAME" => {
                arity(1, "TARGET")?;
                name(fields[0]).map(Self::Cname)
            }
            "TXT" => {
                if data.len() > 4000 {
                    Err("TXT data is longer than 4000 octets".to_owned())
                } else {
                    Ok(Self::Txt(data.to_owned()))
                }
            }
            "MX" => {
                arity(2, "PREFERENCE EXCHANGE")?;
                Ok(Self::Mx {
                    preference: number(fields[0], "preference")?,
                    exchange: name(fields[1])?,
                })
            }
            "SRV" => {
                arity(4, "PRIORITY WEIGHT PORT TARGET")?;
                Ok(Self::Srv {
                    priority: number(fields[0], "priority")?,
                    weight: number(fields[1], "weight")?,
                    port: number(fields[2], "port")?,
                    target: name(fields[3])?,
                })
            }
            "CAA" => parse_caa(data),
            other => Err(format!(
                "unsupported record type {other:?} (supported: A, AAAA, CNAME, TXT, MX, SRV, CAA; \
                 NS and SOA are set by the zone's `ns` and `soa`)"
            )),
        }
    }
}

fn parse_caa(data: &str) -> Result<RecordData, String> {
    let shape = || format!("CAA data must be \"FLAGS TAG \\\"VALUE\\\"\", got {data:?}");
    let mut parts = data.trim().splitn(3, char::is_whitespace);
    let (Some(flags), Some(tag), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(shape());
    };
    let flags: u8 = flags
        .parse()
        .map_err(|_| format!("CAA flags {flags:?} is not a number from 0 to 255"))?;
    if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "CAA tag {tag:?} must be letters and digits (issue, issuewild, iodef)"
        ));
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(|| format!("CAA value {value:?} must be in double quotes"))?;
    Ok(RecordData::Caa {
        flags,
        tag: tag.to_ascii_lowercase(),
        value: value.to_owned(),
    })
}

impl fmt::Display for RecordData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::A(a) => write!(f, "{a}"),
            Self::Aaaa(a) => write!(f, "{a}"),
            Self::Cname(n) => write!(f, "{n:?}"),
            Self::Txt(t) => write!(f, "{t:?}"),
            Self::Mx { preference, exchange } => write!(f, "{preference} {exchange:?}"),
            Self::Srv {
                priority,
                weight,
                port,
                target,
            } => write!(f, "{priority} {weight} {port} {target:?}"),
            Self::Caa { flags, tag, value } => write!(f, "{flags} {tag} {value:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> DomainName {
        DomainName::parse("gslb.example").unwrap()
    }

    #[test]
    fn parses_every_type() {
        let o = origin();
        assert_eq!(
            RecordData::parse("A", "192.0.2.1", &o).unwrap().to_string(),
            "192.0.2.1"
        );
        assert_eq!(
            RecordData::parse("AAAA", "2001:db8::1", &o).unwrap().to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            RecordData::parse("CNAME", "meet", &o).unwrap().to_string(),
            "meet.gslb.example."
        );
        assert_eq!(
            RecordData::parse("CNAME", "x.other.", &o).unwrap().to_string(),
            "x.other."
        );
        assert_eq!(
            RecordData::parse("MX", "10 mail.gslb.example.", &o)
                .unwrap()
                .to_string(),
            "10 mail.gslb.example."
        );
        assert_eq!(
            RecordData::parse("SRV", "0 5 5060 sip", &o).unwrap().to_string(),
            "0 5 5060 sip.gslb.example."
        );
        assert_eq!(
            RecordData::parse("CAA", "0 issue \"letsencrypt.org\"", &o)
                .unwrap()
                .to_string(),
            "0 issue \"letsencrypt.org\""
        );
        assert_eq!(
            RecordData::parse("TXT", "v=spf1 -all", &o).unwrap().type_name(),
            "TXT"
        );
    }

    #[test]
    fn rejects_bad_data_with_a_reason() {
        let o = origin();
        let err = |t: &str, d: &str| RecordData::parse(t, d, &o).unwrap_err();
        assert!(err("A", "192.0.2.300").contains("not an IPv4"));
        assert!(err("A", "2001:db8::1").contains("not an IPv4"));
        assert!(err("MX", "mail.gslb.example.").contains("PREFERENCE EXCHANGE"));
        assert!(err("MX", "x mail.").contains("preference"));
        assert!(err("SRV", "0 5 99999 sip").contains("port"));
        assert!(err("CAA", "0 issue letsencrypt.org").contains("double quotes"));
        assert!(err("CAA", "300 issue \"x\"").contains("flags"));
        assert!(err("NS", "ns1").contains("unsupported record type"));
        assert!(err("TXT", &"x".repeat(4001)).contains("4000"));
    }
}
