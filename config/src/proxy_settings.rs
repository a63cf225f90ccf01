//! Validation of the proxy parts of a configuration: `[proxy]`, `regions.ID.proxy-address`,
//! `services.NAME.backends` and `[services.NAME.proxy]`. Same rules as everywhere: every problem with its
//! path, nothing corrected.

use std::net::SocketAddr;

use indexmap::IndexMap;

use crate::checker::Checker;
use crate::model::{Affinity, BackendChecks, BackendTls, Balance, Cidr, ProxySettings, ServiceProxy};
use crate::names::path_key;
use crate::raw::{RawProxy, RawServiceProxy};

/// Upper bound on backends of one service in one region.
pub const MAX_BACKENDS_PER_REGION: usize = 256;

pub(crate) fn check_proxy_settings(c: &mut Checker, raw: Option<&RawProxy>) -> ProxySettings {
    let d = ProxySettings::default();
    let Some(raw) = raw else { return d };
    let mut trusted = Vec::new();
    for (i, s) in raw.trusted_proxies.iter().enumerate() {
        let p = format!("proxy.trusted-proxies[{i}]");
        match Cidr::parse(s) {
            Ok(n) if trusted.contains(&n) => c.err(p, format!("{s} is listed twice")),
            Ok(n) => trusted.push(n),
            Err(e) => c.err(p, e),
        }
    }
    let max_body = match raw.max_body_bytes {
        None => d.max_body_bytes,
        Some(v) if (0..=1 << 40).contains(&v) => v as u64,
        Some(v) => {
            c.err(
                "proxy.max-body-bytes",
                format!("{v} is out of range (0 to {})", 1u64 << 40),
            );
            d.max_body_bytes
        }
    };
    ProxySettings {
        trusted_proxies: trusted,
        connect_timeout_ms: c.int(
            "proxy.connect-timeout-ms",
            raw.connect_timeout_ms,
            d.connect_timeout_ms,
            10..=60_000,
        ),
        upstream_timeout_ms: c.int(
            "proxy.upstream-timeout-ms",
            raw.upstream_timeout_ms,
            d.upstream_timeout_ms,
            100..=3_600_000,
        ),
        client_timeout_ms: c.int(
            "proxy.client-timeout-ms",
            raw.client_timeout_ms,
            d.client_timeout_ms,
            100..=3_600_000,
        ),
        max_header_bytes: c.int(
            "proxy.max-header-bytes",
            raw.max_header_bytes,
            d.max_header_bytes,
            1024..=1024 * 1024,
        ),
        max_body_bytes: max_body,
        rate_limit_per_client: c.int(
            "proxy.rate-limit-per-client",
            raw.rate_limit_per_client,
            d.rate_limit_per_client,
            0..=10_000_000,
        ),
        websocket_idle_timeout_ms: c.int(
            "proxy.websocket-idle-timeout-ms",
            raw.websocket_idle_timeout_ms,
            d.websocket_idle_timeout_ms,
            100..=86_400_000,
        ),
        websocket_max_lifetime_ms: c.int(
            "proxy.websocket-max-lifetime-ms",
            raw.websocket_max_lifetime_ms,
            d.websocket_max_lifetime_ms,
            0..=30 * 86_400_000,
        ),
    }
}

pub(crate) fn check_proxy_address(c: &mut Checker, path: &str, raw: Option<&str>) -> Option<SocketAddr> {
    let s = raw?;
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            c.err(path, format!("{s:?}: port 0 is not an address to connect to"));
            None
        }
        Ok(a) if a.ip().is_unspecified() => {
            c.err(
                path,
                format!("{s:?}: an unspecified address (0.0.0.0, ::) is not an address to connect to"),
            );
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            c.err(
                path,
                format!("{s:?} is not IP:PORT (IPv6 as [ADDR]:PORT; host names are not resolved)"),
            );
            None
        }
    }
}

pub(crate) fn check_service_proxy(
    c: &mut Checker,
    path: &str,
    backends: &IndexMap<String, Vec<String>>,
    raw: Option<&RawServiceProxy>,
    service_regions: &[String],
) -> ServiceProxy {
    let out_backends = check_backends(c, path, backends, service_regions);
    let Some(raw) = raw else {
        return ServiceProxy {
            backends: out_backends,
            ..ServiceProxy::default()
        };
    };
    if backends.is_empty() {
        c.err(
            format!("{path}.proxy"),
            "the service has no backends (add services.NAME.backends, or remove this table: \
             a service without backends is DNS-only)",
        );
    }
    let pp = format!("{path}.proxy");
    ServiceProxy {
        backends: out_backends,
        balance: check_balance(c, &pp, raw),
        checks: check_backend_health(c, &pp, raw),
        backend_tls: check_backend_tls(c, &pp, raw),
    }
}

/// `services.NAME.backends`: each region among the service's, each with 1 to
/// [`MAX_BACKENDS_PER_REGION`] distinct addresses.
fn check_backends(
    c: &mut Checker,
    path: &str,
    backends: &IndexMap<String, Vec<String>>,
    service_regions: &[String],
) -> Vec<(String, Vec<SocketAddr>)> {
    let mut out_backends = Vec::new();
    for (region, list) in backends {
        let p = format!("{path}.backends.{}", path_key(region));
        if !service_regions.contains(region) {
            c.err(
                &p,
                format!(
                    "region {region:?} is not among this service's regions ({})",
                    service_regions.join(", ")
                ),
            );
            continue;
        }
        if list.is_empty() {
            c.err(&p, "must list at least one backend (omit the region instead)");
        }
        if list.len() > MAX_BACKENDS_PER_REGION {
            c.err(
                &p,
                format!(
                    "{} backends; at most {MAX_BACKENDS_PER_REGION} per region",
                    list.len()
                ),
            );
        }
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let bp = format!("{p}[{i}]");
            if let Some(a) = check_proxy_address(c, &bp, Some(s)) {
                if addrs.contains(&a) {
                    c.err(bp, format!("{s} is listed twice"));
                } else {
                    addrs.push(a);
                }
            }
        }
        out_backends.push((region.clone(), addrs));
    }
    out_backends
}

/// `balance` and the affinity it needs (only `consistent-hash` takes one).
fn check_balance(c: &mut Checker, pp: &str, raw: &RawServiceProxy) -> Balance {
    let balance = match raw.balance.as_deref().unwrap_or("round-robin") {
        "round-robin" => Balance::RoundRobin,
        "least-requests" => Balance::LeastRequests,
        "consistent-hash" => match (&raw.affinity_cookie, &raw.affinity_header) {
            (Some(ck), None) => {
                if !is_token(ck) {
                    c.err(
                        format!("{pp}.affinity-cookie"),
                        format!("{ck:?} is not a cookie name"),
                    );
                }
                Balance::ConsistentHash(Affinity::Cookie(ck.clone()))
            }
            (None, Some(h)) => {
                if !is_token(h) {
                    c.err(
                        format!("{pp}.affinity-header"),
                        format!("{h:?} is not a header name"),
                    );
                }
                Balance::ConsistentHash(Affinity::Header(h.to_ascii_lowercase()))
            }
            (Some(_), Some(_)) => {
                c.err(pp, "set affinity-cookie or affinity-header, not both");
                Balance::RoundRobin
            }
            (None, None) => {
                c.err(
                    pp,
                    "balance = \"consistent-hash\" needs affinity-cookie or affinity-header",
                );
                Balance::RoundRobin
            }
        },
        other => {
            c.err(
                format!("{pp}.balance"),
                format!("{other:?} is not \"round-robin\", \"least-requests\" or \"consistent-hash\""),
            );
            Balance::RoundRobin
        }
    };
    if !matches!(balance, Balance::ConsistentHash(_)) {
        for (field, set) in [
            ("affinity-cookie", raw.affinity_cookie.is_some()),
            ("affinity-header", raw.affinity_header.is_some()),
        ] {
            if set && raw.balance.as_deref() != Some("consistent-hash") {
                c.err(
                    format!("{pp}.{field}"),
                    "only applies to balance = \"consistent-hash\"",
                );
            }
        }
    }
    balance
}

/// The backend health checks and ejection: `health-*`, `eject-*`.
fn check_backend_health(c: &mut Checker, pp: &str, raw: &RawServiceProxy) -> BackendChecks {
    let d = BackendChecks::default();
    if let Some(path) = &raw.health_path
        && (!path.starts_with('/') || path.chars().any(|ch| ch.is_whitespace() || ch.is_control()))
    {
        c.err(
            format!("{pp}.health-path"),
            format!("{path:?} must start with '/' and contain no spaces"),
        );
    }
    let interval_ms = c.int(
        &format!("{pp}.health-interval-ms"),
        raw.health_interval_ms,
        d.interval_ms,
        100..=600_000,
    );
    let timeout_ms = c.int(
        &format!("{pp}.health-timeout-ms"),
        raw.health_timeout_ms,
        d.timeout_ms,
        10..=60_000,
    );
    if timeout_ms >= interval_ms {
        c.err(
            format!("{pp}.health-timeout-ms"),
            format!("{timeout_ms} ms must be shorter than health-interval-ms ({interval_ms} ms)"),
        );
    }
    BackendChecks {
        path: raw.health_path.clone(),
        interval_ms,
        timeout_ms,
        rise: c.int(&format!("{pp}.health-rise"), raw.health_rise, d.rise, 1..=100),
        fall: c.int(&format!("{pp}.health-fall"), raw.health_fall, d.fall, 1..=100),
        eject_after_failures: c.int(
            &format!("{pp}.eject-after-failures"),
            raw.eject_after_failures,
            d.eject_after_failures,
            0..=1000,
        ),
        eject_for_ms: c.int(
            &format!("{pp}.eject-for-ms"),
            raw.eject_for_ms,
            d.eject_for_ms,
            100..=3_600_000,
        ),
    }
}

/// `backend-tls` and what only applies with it (`backend-ca`, `backend-server-name`).
fn check_backend_tls(c: &mut Checker, pp: &str, raw: &RawServiceProxy) -> Option<BackendTls> {
    match raw.backend_tls {
        Some(true) => {
            let ca = raw.backend_ca.as_ref().and_then(|ca| {
                if ca.starts_with('/') {
                    Some(std::path::PathBuf::from(ca))
                } else {
                    c.err(
                        format!("{pp}.backend-ca"),
                        format!("{ca:?} is not an absolute path (every node reads it on its own disk)"),
                    );
                    None
                }
            });
            let server_name = raw.backend_server_name.clone();
            if let Some(n) = &server_name
                && crate::DomainName::parse(n).is_err()
            {
                c.err(
                    format!("{pp}.backend-server-name"),
                    format!("{n:?} is not a DNS name"),
                );
            }
            Some(BackendTls { ca, server_name })
        }
        _ => {
            for (field, set) in [
                ("backend-ca", raw.backend_ca.is_some()),
                ("backend-server-name", raw.backend_server_name.is_some()),
            ] {
                if set {
                    c.err(format!("{pp}.{field}"), "only applies with backend-tls = true");
                }
            }
            None
        }
    }
}

/// An HTTP token (RFC 9110): what header and cookie names are made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
