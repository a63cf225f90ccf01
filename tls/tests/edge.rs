//! The edge's certificate set and its reload, and the demo CA, against certificates made here (rcgen).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use meridian_config::{CertificateFiles, PlainHttp, TlsSettings, TlsVersion};
use meridian_tls::{EdgeTls, HopMaterial, Reload, TlsMetrics};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::client::danger::ServerCertVerifier;

/// A self-signed certificate for `names` with common name `cn`, as DIR/FILE.pem and DIR/FILE.key.
fn cert(dir: &Path, file: &str, cn: &str, names: &[&str]) -> CertificateFiles {
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let c = p.self_signed(&key).unwrap();
    let files = CertificateFiles {
        cert: dir.join(format!("{file}.pem")),
        key: dir.join(format!("{file}.key")),
    };
    std::fs::write(&files.cert, c.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}

fn settings(certificates: Vec<CertificateFiles>, default: usize) -> TlsSettings {
    TlsSettings {
        min_version: TlsVersion::Tls12,
        handshake_timeout_ms: 10_000,
        plain_http: PlainHttp::Redirect,
        hsts_max_age_s: 0,
        hsts_include_subdomains: false,
        expiry_warning_days: 14,
        reload_interval_ms: 5_000,
        certificates,
        default_certificate: default,
        hops: None,
    }
}

fn subject(edge: &EdgeTls, sni: Option<&str>) -> String {
    edge.current().pick(sni).subject.clone()
}

#[test]
fn sni_picks_an_exact_name_then_a_wildcard_then_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = settings(
        vec![
            cert(d, "api", "api", &["api.gslb.example"]),
            cert(d, "wild", "wild", &["*.gslb.example", "gslb.example"]),
            cert(d, "other", "other", &["other.example"]),
        ],
        2,
    );
    let edge = EdgeTls::new(&s, TlsMetrics::new()).unwrap();
    assert_eq!(subject(&edge, Some("api.gslb.example")), "CN=api");
    assert_eq!(subject(&edge, Some("API.GSLB.example.")), "CN=api");
    assert_eq!(subject(&edge, Some("meet.gslb.example")), "CN=wild");
    assert_eq!(subject(&edge, Some("gslb.example")), "CN=wild");
    assert_eq!(
        subject(&edge, Some("a.meet.gslb.example")),
        "CN=other",
        "a wildcard covers one label only"
    );
    assert_eq!(subject(&edge, Some("nope.example")), "CN=other");
    assert_eq!(subject(&edge, None), "CN=other");
    assert_eq!(
        edge.config().alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn a_reload_swaps_a_complete_new_set_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = cert(d, "api", "one", &["api.gslb.example"]);
    let s = settings(vec![files.clone()], 0);
    let metrics = TlsMetrics::new();
    let registry = prometheus::Registry::new();
    metrics.register(&registry).unwrap();
    let edge = EdgeTls::new(&s, metrics).unwrap();
    assert!(matches!(edge.reload(&s), Reload::Unchanged));

    // A new certificate and key: swapped.
    let next = cert(d, "next", "two", &["api.gslb.example"]);
    std::fs::copy(&next.cert, &files.cert).unwrap();
    std::fs::copy(&next.key, &files.key).unwrap();
    assert!(matches!(edge.reload(&s), Reload::Swapped));
    assert_eq!(subject(&edge, Some("api.gslb.example")), "CN=two");
    let held: Arc<_> = edge.current();

    // A key that is not the certificate's: nothing changes, and it is reported.
    let third = cert(d, "third", "three", &["api.gslb.example"]);
    std::fs::copy(&third.key, &files.key).unwrap();
    match edge.reload(&s) {
        Reload::Failed(errors) => {
            assert!(errors[0].to_string().contains("does not match"), "{errors:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(subject(&edge, Some("api.gslb.example")), "CN=two");
    // Garbage: the same.
    std::fs::write(&files.cert, "garbage").unwrap();
    assert!(matches!(edge.reload(&s), Reload::Failed(_)));
    assert!(Arc::ptr_eq(&held, &edge.current()));
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(text.contains("meridian_tls_reload_failures_total 2"), "{text}");
    assert!(text.contains("meridian_tls_reload_ok 0"), "{text}");
    assert!(text.contains("meridian_tls_reloads_total 1"), "{text}");

    // Fixed: swapped again.
    std::fs::copy(&third.cert, &files.cert).unwrap();
    assert!(matches!(edge.reload(&s), Reload::Swapped));
    assert_eq!(subject(&edge, Some("api.gslb.example")), "CN=three");
}

#[test]
fn the_demo_ca_is_kept_and_signs_edge_and_hop_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["meet.gslb.example".to_owned(), "*.gslb.example".to_owned()];
    let regions = vec!["waw".to_owned(), "fra".to_owned()];
    let first = meridian_tls::demo::ensure(dir.path(), &names, &regions).unwrap();
    let ca = std::fs::read(&first.ca).unwrap();
    let again = meridian_tls::demo::ensure(dir.path(), &names, &regions).unwrap();
    assert_eq!(std::fs::read(&again.ca).unwrap(), ca, "the CA is made once");
    // The hop certificate is accepted by the CA as a client (HopMaterial::load checks exactly that).
    let hops = meridian_config::HopTls {
        ca: again.ca.clone(),
        cert: again.hop_cert.clone(),
        key: again.hop_key.clone(),
    };
    let hop = HopMaterial::load(&hops).unwrap();
    assert!(hop.leaf.names.contains(&"fra.hop.meridian".to_owned()));
    // The edge certificate verifies against the CA for a service name.
    let edge = meridian_tls::certs::load(&again.edge_cert, &again.edge_key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(meridian_tls::certs::read_chain(&again.ca).unwrap());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let name = rustls::pki_types::ServerName::try_from("meet.gslb.example").unwrap();
    verifier
        .verify_server_cert(
            &edge.key.cert[0],
            &edge.key.cert[1..],
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .unwrap();
    // The key files are the user's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}
