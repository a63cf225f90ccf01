//! What `meridian config check` says about the TLS files a configuration names: each with the path of
//! the configuration field that names it. Errors stop a deployment (unreadable, not PEM, key does not
//! match, expired or not yet valid, a proxied hostname no certificate covers); warnings do not
//! (expiring within `tls.expiry-warning-days`).

use meridian_config::{CertificateFiles, Config, Problem};

use crate::certs::{CertError, LoadedCert, load};
use crate::hops::HopMaterial;

/// The findings of a check.
#[derive(Debug, Default)]
pub struct Findings {
    /// Problems that make the configuration unusable on this node.
    pub errors: Vec<Problem>,
    /// Things to act on soon.
    pub warnings: Vec<Problem>,
}

fn field_of(files: &CertificateFiles, e: &CertError) -> &'static str {
    match e {
        CertError::Read { path, .. } if *path == files.cert => "cert",
        CertError::NoCertificate { .. } | CertError::BadCertificate { .. } => "cert",
        _ => "key",
    }
}

fn date(unix: i64) -> String {
    meridian_config::calendar::utc_date(u64::try_from(unix).unwrap_or(0))
}

fn validity(out: &mut Findings, path: &str, c: &LoadedCert, now: i64, warn_days: u32) {
    if c.not_after <= now {
        out.errors.push(Problem {
            path: path.to_owned(),
            message: format!(
                "certificate for {} expired on {}",
                c.names.join(", "),
                date(c.not_after)
            ),
        });
    } else if c.not_before > now {
        out.errors.push(Problem {
            path: path.to_owned(),
            message: format!(
                "certificate for {} is not valid before {}",
                c.names.join(", "),
                date(c.not_before)
            ),
        });
    } else if c.not_after - now < i64::from(warn_days) * 86_400 {
        out.warnings.push(Problem {
            path: path.to_owned(),
            message: format!(
                "certificate for {} expires on {} (in {} day(s))",
                c.names.join(", "),
                date(c.not_after),
                (c.not_after - now) / 86_400
            ),
        });
    }
}

/// Reads every TLS file `config` names and checks it at time `now` (Unix seconds).
pub fn check(config: &Config, now: i64) -> Findings {
    let mut out = Findings::default();
    for s in config.services() {
        if let Some(ca) = s.proxy.backend_tls.as_ref().and_then(|t| t.ca.as_ref())
            && let Err(e) = crate::backends::backend_client(Some(ca))
        {
            out.errors.push(Problem {
                path: format!("services.{}.proxy.backend-ca", s.name),
                message: e.to_string(),
            });
        }
    }
    let Some(tls) = config.tls() else {
        return out;
    };
    let mut loaded = Vec::new();
    for (i, files) in tls.certificates.iter().enumerate() {
        let p = format!("tls.certificates[{i}]");
        match load(&files.cert, &files.key) {
            Ok(c) => {
                validity(&mut out, &format!("{p}.cert"), &c, now, tls.expiry_warning_days);
                loaded.push(c);
            }
            Err(e) => out.errors.push(Problem {
                path: format!("{p}.{}", field_of(files, &e)),
                message: e.to_string(),
            }),
        }
    }
    // Only when every certificate loaded can coverage be judged.
    if loaded.len() == tls.certificates.len() {
        for s in config.services() {
            if s.proxy.backends.is_empty() {
                continue; // DNS-only: the proxies answer 404 for it anyway.
            }
            let host = s.hostname.to_string();
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            // A name an [acme] certificate covers is covered once it is issued.
            let acme = config.acme().is_some_and(|a| {
                a.certificates
                    .iter()
                    .any(|c| c.names.iter().any(|n| crate::certs::name_covers(n, &host)))
            });
            if !acme && !loaded.iter().any(|c| c.covers(&host)) {
                out.errors.push(Problem {
                    path: format!("services.{}", s.name),
                    message: format!(
                        "hostname {host} is covered by no certificate of tls.certificates (its HTTPS \
                         clients would get the default certificate, for {})",
                        loaded
                            .get(tls.default_certificate)
                            .map_or_else(String::new, |c| c.names.join(", "))
                    ),
                });
            }
        }
    }
    if let Some(hops) = &tls.hops {
        match HopMaterial::load(hops) {
            Ok(m) => validity(&mut out, "tls.hops.cert", &m.leaf, now, tls.expiry_warning_days),
            Err(e) => out.errors.push(e.into_problem()),
        }
    }
    out
}
