//! Names in the model: region, service and rule identifiers, jurisdiction tags and DNS domain names.

use std::fmt;

/// Checks an identifier (region id, service name, rule or group name): 1–32 characters of `a-z`, `0-9` and
/// `-`, starting with a letter. Returns why it is not one.
pub fn check_identifier(s: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if s.is_empty() || s.len() > 32 {
        return Err(format!("{s:?} must be 1 to 32 characters long"));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) || !s.chars().all(ok_char) {
        return Err(format!(
            "{s:?} must start with a lower-case letter and contain only a-z, 0-9 and '-'"
        ));
    }
    Ok(())
}

/// A fully qualified DNS name in canonical form: lower case, no trailing dot (`meet.gslb.example`).
///
/// Labels are 1–63 octets of letters, digits, `-` and `_` (the underscore appears in SRV and TXT owner
/// names such as `_sip._tcp`); the whole name is at most 253 characters. The root name is not representable:
/// nothing in the model needs it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    /// Parses an absolute name, with or without the trailing dot; upper case is folded (DNS names are
    /// case-insensitive, so this is normalisation, not correction).
    pub fn parse(s: &str) -> Result<Self, String> {
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        if trimmed.is_empty() {
            return Err(format!("{s:?} is not a domain name"));
        }
        if trimmed.len() > 253 {
            return Err(format!("{s:?} is longer than 253 characters"));
        }
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(format!("{s:?} has an empty label"));
            }
            if label.len() > 63 {
                return Err(format!("{s:?} has a label longer than 63 characters"));
            }
            if label == "*" {
                return Err(format!("{s:?}: wildcard names are not supported"));
            }
            if !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "{s:?}: label {label:?} may contain only letters, digits, '-' and '_'"
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!("{s:?}: label {label:?} must not start or end with '-'"));
            }
        }
        Ok(Self(trimmed.to_ascii_lowercase()))
    }

    /// Resolves a name as a zone file would: `@` is the origin, a name ending in `.` is absolute, anything
    /// else is relative to the origin.
    pub fn resolve(s: &str, origin: &Self) -> Result<Self, String> {
        if s == "@" {
            Ok(origin.clone())
        } else if s.ends_with('.') {
            Self::parse(s)
        } else {
            Self::parse(&format!("{s}.{}", origin.0))
        }
    }

    /// Whether `self` equals `zone` or lies below it.
    pub fn is_within(&self, zone: &Self) -> bool {
        self.0 == zone.0
            || (self.0.len() > zone.0.len()
                && self.0.ends_with(&zone.0)
                && self.0.as_bytes()[self.0.len() - zone.0.len() - 1] == b'.')
    }

    /// The name without trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of labels (`gslb.example` has 2).
    pub fn label_count(&self) -> usize {
        self.0.split('.').count()
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.", self.0)
    }
}

/// Formats a map key for a problem path: bare when TOML would accept it bare, quoted otherwise
/// (`zones."gslb.example"`).
pub(crate) fn path_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(check_identifier("waw").is_ok());
        assert!(check_identifier("eu-west-2").is_ok());
        assert!(check_identifier("").is_err());
        assert!(check_identifier("Waw").is_err());
        assert!(check_identifier("2fa").is_err());
        assert!(check_identifier("a_b").is_err());
        assert!(check_identifier(&"a".repeat(33)).is_err());
    }

    #[test]
    fn domain_names() {
        let n = DomainName::parse("Meet.GSLB.example.").unwrap();
        assert_eq!(n.as_str(), "meet.gslb.example");
        assert_eq!(n.label_count(), 3);
        assert!(DomainName::parse("").is_err());
        assert!(DomainName::parse(".").is_err());
        assert!(DomainName::parse("a..b").is_err());
        assert!(DomainName::parse("-a.b").is_err());
        assert!(DomainName::parse("a b.c").is_err());
        assert!(DomainName::parse("*.c").is_err());
        assert!(DomainName::parse(&format!("{}.x", "a".repeat(64))).is_err());
        assert!(DomainName::parse("_sip._tcp.gslb.example").is_ok());
    }

    #[test]
    fn resolve_and_within() {
        let zone = DomainName::parse("gslb.example").unwrap();
        assert_eq!(DomainName::resolve("@", &zone).unwrap(), zone);
        assert_eq!(
            DomainName::resolve("www", &zone).unwrap().as_str(),
            "www.gslb.example"
        );
        assert_eq!(
            DomainName::resolve("x.other.", &zone).unwrap().as_str(),
            "x.other"
        );
        let www = DomainName::parse("www.gslb.example").unwrap();
        assert!(www.is_within(&zone));
        assert!(zone.is_within(&zone));
        assert!(!DomainName::parse("xgslb.example").unwrap().is_within(&zone));
        assert!(!zone.is_within(&www));
    }

    #[test]
    fn path_keys() {
        assert_eq!(path_key("meet"), "meet");
        assert_eq!(path_key("gslb.example"), "\"gslb.example\"");
    }
}
