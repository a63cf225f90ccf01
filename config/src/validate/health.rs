//! How health is judged: the `[health]` section (quorum, staleness, panic threshold, checked against the
//! probe intervals it must outlast) and each region's `health-checks` (HTTP(S) or TCP targets, intervals,
//! timeouts, jitter, rise and fall).

use std::net::Ipv6Addr;

use crate::checker::Checker;
use crate::model::{CheckTarget, HealthCheck, HealthSettings, HttpCheck, Quorum, Region, StatusMatch};
use crate::names::path_key;
use crate::raw::{RawHealth, RawHealthCheck};

// Health-check defaults, chosen so a dead region is down everywhere within 3 s and one lost probe changes
// nothing: `fall` = 2 consecutive failures, probes every 1 s plus up to 0.1 s of jitter, each failing
// after at most 0.7 s. Worst case at one prober: the probe just before the death passes, the next two
// start at most 1.1 s apart and the second takes 0.7 s to time out: 2 x 1.1 + 0.7 = 2.9 s (a refused
// connection fails at once: 2.2 s). Publishing and the snapshot watchers add milliseconds. With a
// majority quorum the region turns down when the second-fastest of three probers gets there.
const DEFAULT_CHECK_INTERVAL_MS: u32 = 1000;
const DEFAULT_CHECK_TIMEOUT_MS: u32 = 700;
const DEFAULT_CHECK_JITTER_MS: u32 = 100;
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 2;

pub(super) fn check_health_settings(
    c: &mut Checker,
    raw: Option<&RawHealth>,
    regions: &[Region],
) -> HealthSettings {
    let defaults = HealthSettings::default();
    let settings = match raw {
        None => defaults,
        Some(raw) => HealthSettings {
            quorum: match raw.healthy_above_percent {
                None => Quorum::Majority,
                Some(_) => Quorum::HealthyAbove {
                    percent: c.int(
                        "health.healthy-above-percent",
                        raw.healthy_above_percent,
                        50,
                        0..=99,
                    ) as u8,
                },
            },
            stale_after_ms: u64::from(c.int(
                "health.stale-after-ms",
                raw.stale_after_ms,
                defaults.stale_after_ms as u32,
                1000..=3_600_000,
            )),
            panic_below_percent: c.int(
                "health.panic-below-percent",
                raw.panic_below_percent,
                u32::from(defaults.panic_below_percent),
                0..=100,
            ) as u8,
        },
    };
    // A prober re-publishes an unchanged opinion at least once per probe: an opinion must stay fresh
    // across the gap between two probes, with room for one slow one.
    for r in regions {
        for (i, hc) in r.health_checks.iter().enumerate() {
            let gap = 2 * (u64::from(hc.interval_ms) + u64::from(hc.jitter_ms));
            if settings.stale_after_ms < gap {
                c.err(
                    "health.stale-after-ms",
                    format!(
                        "{} ms is shorter than two probe intervals of regions.{}.health-checks[{i}] \
                         ({gap} ms): its opinions would go stale between probes",
                        settings.stale_after_ms,
                        path_key(&r.id)
                    ),
                );
            }
        }
    }
    settings
}

pub(super) fn check_health_check(c: &mut Checker, path: &str, raw: &RawHealthCheck) -> Option<HealthCheck> {
    let interval_ms = c.int(
        &format!("{path}.interval-ms"),
        raw.interval_ms,
        DEFAULT_CHECK_INTERVAL_MS,
        100..=3_600_000,
    );
    let timeout_ms = c.int(
        &format!("{path}.timeout-ms"),
        raw.timeout_ms,
        DEFAULT_CHECK_TIMEOUT_MS,
        10..=60_000,
    );
    // A probe still running when the next is due would overlap it: the verdict of one interval would
    // count twice, or a slow target would pile up connections.
    if timeout_ms >= interval_ms {
        c.err(
            format!("{path}.timeout-ms"),
            format!("{timeout_ms} ms must be less than interval-ms ({interval_ms} ms)"),
        );
    }
    let jitter_ms = c.int(
        &format!("{path}.jitter-ms"),
        raw.jitter_ms,
        DEFAULT_CHECK_JITTER_MS.min(interval_ms / 2),
        0..=60_000,
    );
    if raw.jitter_ms.is_some() && jitter_ms >= interval_ms {
        c.err(
            format!("{path}.jitter-ms"),
            format!("{jitter_ms} ms must be less than interval-ms ({interval_ms} ms)"),
        );
    }
    let rise = c.int(&format!("{path}.rise"), raw.rise, DEFAULT_RISE, 1..=100);
    let fall = c.int(&format!("{path}.fall"), raw.fall, DEFAULT_FALL, 1..=100);
    let http_only = |c: &mut Checker, field: &str, present: bool| {
        if present {
            c.err(format!("{path}.{field}"), "only applies to kind = \"http\"");
        }
    };
    let target = match raw.kind.as_deref() {
        None => {
            c.err(format!("{path}.kind"), "is required (\"http\" or \"tcp\")");
            None
        }
        Some("http") => {
            if raw.address.is_some() {
                c.err(
                    format!("{path}.address"),
                    "only applies to kind = \"tcp\" (an http check has a url)",
                );
            }
            let url = c.required(&format!("{path}.url"), raw.url.as_deref());
            let parsed = url.and_then(|u| parse_url(u).map_err(|e| c.err(format!("{path}.url"), e)).ok());
            let host_header = raw.host.as_ref().and_then(|h| {
                let bad = h.is_empty() || h.chars().any(|ch| ch.is_whitespace() || ch.is_control());
                if bad {
                    c.err(
                        format!("{path}.host"),
                        format!("{h:?} is not a host name (no spaces or control characters, not empty)"),
                    );
                    None
                } else {
                    Some(h.clone())
                }
            });
            let expect_status = match &raw.expect_status {
                None => StatusMatch::Success,
                Some(codes) => {
                    if codes.is_empty() {
                        c.err(
                            format!("{path}.expect-status"),
                            "must list at least one status code (omit it for any 2xx or 3xx)",
                        );
                    }
                    let mut out: Vec<u16> = Vec::new();
                    for (i, code) in codes.iter().enumerate() {
                        let p = format!("{path}.expect-status[{i}]");
                        match u16::try_from(*code) {
                            Ok(v) if (100..=599).contains(&v) && out.contains(&v) => {
                                c.err(p, format!("{v} is listed twice"));
                            }
                            Ok(v) if (100..=599).contains(&v) => out.push(v),
                            _ => c.err(p, format!("{code} is not an HTTP status code (100 to 599)")),
                        }
                    }
                    StatusMatch::AnyOf(out)
                }
            };
            if raw.body_match.as_deref() == Some("") {
                c.err(
                    format!("{path}.body-match"),
                    "must not be empty (omit it to accept any body)",
                );
            }
            parsed.map(|(tls, host, port, path)| {
                CheckTarget::Http(HttpCheck {
                    url: url.unwrap_or_default().to_owned(),
                    tls,
                    host,
                    port,
                    path,
                    host_header,
                    expect_status,
                    body_match: raw.body_match.clone().filter(|b| !b.is_empty()),
                })
            })
        }
        Some("tcp") => {
            http_only(c, "url", raw.url.is_some());
            http_only(c, "host", raw.host.is_some());
            http_only(c, "expect-status", raw.expect_status.is_some());
            http_only(c, "body-match", raw.body_match.is_some());
            let address = c.required(&format!("{path}.address"), raw.address.as_deref());
            address.and_then(|a| {
                parse_host_port(a, None)
                    .map(|(host, port)| CheckTarget::Tcp { host, port })
                    .map_err(|e| c.err(format!("{path}.address"), e))
                    .ok()
            })
        }
        Some(other) => {
            c.err(
                format!("{path}.kind"),
                format!("{other:?} is not \"http\" or \"tcp\""),
            );
            None
        }
    };
    Some(HealthCheck {
        target: target?,
        interval_ms,
        timeout_ms,
        jitter_ms,
        rise,
        fall,
    })
}

/// `http://host[:port][/path]` or `https://...` into (tls, host, port, path).
fn parse_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    if url.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(format!("{url:?} contains spaces or control characters"));
    }
    if url.contains('#') {
        return Err(format!("{url:?} has a fragment (#...), which is never sent"));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    if authority.contains('@') {
        return Err(format!("{url:?}: credentials in URLs are not supported"));
    }
    let (host, port) =
        parse_host_port(authority, Some(if tls { 443 } else { 80 })).map_err(|e| format!("{url:?}: {e}"))?;
    Ok((tls, host, port, path))
}

/// `host:port`, `[v6]:port`, or (with a default port) `host` / `[v6]`.
fn parse_host_port(s: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed '[' around an IPv6 address"))?;
        if h.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{h:?} is not an IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("{s:?}: unexpected text after ']'")),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            Some(_) => {
                return Err(format!(
                    "{s:?}: write an IPv6 address in brackets ([2001:db8::1]:443)"
                ));
            }
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let port = match (port, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("{p:?} is not a port (1 to 65535)")),
        },
        (None, Some(d)) => d,
        (None, None) => return Err(format!("{s:?} has no port (host:port)")),
    };
    Ok((host.to_owned(), port))
}
