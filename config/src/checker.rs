//! The `Checker` every part of validation reports to: it collects [`Problem`]s (a path and a message) and
//! checks the shapes common to all sections — required fields, integers in range, identifiers, domain
//! names, country codes — in one wording everywhere.

use std::ops::RangeInclusive;

use crate::names::check_identifier;
use crate::{CountryCode, DomainName, Problem};

/// Collects every problem found; a value it cannot accept is reported and replaced by a default or `None`,
/// so the checks after it still run.
pub(crate) struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    /// A checker that has found nothing yet.
    pub(crate) fn new() -> Self {
        Self { problems: Vec::new() }
    }

    /// Everything found, in the order found.
    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    pub(crate) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(crate) fn required<T>(&mut self, path: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.err(path, "is required");
        }
        value
    }

    /// An integer field: absent -> default; present -> must lie in `range`.
    pub(crate) fn int(
        &mut self,
        path: &str,
        value: Option<i64>,
        default: u32,
        range: RangeInclusive<u32>,
    ) -> u32 {
        let Some(v) = value else { return default };
        match u32::try_from(v) {
            Ok(v) if range.contains(&v) => v,
            _ => {
                self.err(
                    path,
                    format!("{v} is out of range ({} to {})", range.start(), range.end()),
                );
                default
            }
        }
    }

    pub(crate) fn identifier(&mut self, path: &str, s: &str) {
        if let Err(e) = check_identifier(s) {
            self.err(path, e);
        }
    }

    pub(crate) fn domain(&mut self, path: &str, s: &str) -> Option<DomainName> {
        DomainName::parse(s).map_err(|e| self.err(path, e)).ok()
    }

    pub(crate) fn country(&mut self, path: &str, s: &str) -> Option<CountryCode> {
        let c = CountryCode::parse(s);
        if c.is_none() {
            let hint = if CountryCode::parse_any_case(s).is_some() {
                format!(" (write it in upper case: {:?})", s.to_ascii_uppercase())
            } else {
                String::new()
            };
            self.err(
                path,
                format!("{s:?} is not an ISO 3166-1 alpha-2 country code{hint}"),
            );
        }
        c
    }
}
