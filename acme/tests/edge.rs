//! What the proxies make of the ACME documents in a snapshot: a certificate whose key was sealed with the
//! operator key opens and serves; the same documents are not opened twice; another key file, or a sealed
//! value moved to another store key, is an error naming why (the caller keeps its current set).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use meridian_acme::{EdgeCerts, OperatorKey};
use meridian_config::Config;
use meridian_store::schema::{AcmeCertDoc, encode};
use meridian_store::{DEFAULT_PREFIX, KeyValue, Keys, Snapshot, SnapshotBuilder};

const EXAMPLE: &str = include_str!("../../examples/meridian.toml");

fn config(key_file: &Path) -> Arc<Config> {
    let text = format!(
        "{EXAMPLE}\n[tls]\n[[tls.certificates]]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/c.key\"\n\
         [acme]\ndirectory = \"https://ca.example/dir\"\nkey-file = \"{}\"\n\
         [[acme.certificates]]\nnames = [\"meet.gslb.example\", \"*.gslb.example\"]\n",
        key_file.display()
    );
    Arc::new(Config::from_toml_str(&text).unwrap())
}

/// A snapshot holding `doc` at `acme/certs/meet.gslb.example`.
fn snapshot(config: Arc<Config>, doc: &AcmeCertDoc) -> Snapshot {
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let mut b = SnapshotBuilder::new(keys.clone(), Some(config));
    b.reset(
        vec![KeyValue {
            key: keys.acme_cert("meet.gslb.example"),
            value: encode(doc),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            lease: 0,
        }],
        2,
    );
    b.build(0).unwrap()
}

fn issued(key: &OperatorKey, aad: &str) -> AcmeCertDoc {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["meet.gslb.example".to_owned(), "*.gslb.example".to_owned()])
            .unwrap();
    let cert = params.self_signed(&kp).unwrap();
    AcmeCertDoc {
        schema: 1,
        names: vec!["meet.gslb.example".into(), "*.gslb.example".into()],
        chain_pem: cert.pem(),
        sealed_key: key.seal(aad, &kp.serialize_der()).unwrap(),
        key_id: key.id().to_owned(),
        issuer: "CN=test".into(),
        not_before_ms: 0,
        not_after_ms: 1,
        issued_at_ms: 0,
        ordered_by: "proxy/test".into(),
    }
}

#[test]
fn sealed_certificates_open_with_the_key_file_and_fail_clearly_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("acme.key");
    std::fs::write(&key_file, "11".repeat(32)).unwrap();
    let key = OperatorKey::load(&key_file).unwrap();
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let config = config(&key_file);
    let doc = issued(&key, &keys.acme_cert("meet.gslb.example"));
    let snap = snapshot(config.clone(), &doc);

    let mut edge = EdgeCerts::default();
    let extra = edge.current(&keys, &snap).unwrap();
    assert_eq!(extra.certs.len(), 1);
    assert_eq!(extra.certs[0].names, ["meet.gslb.example", "*.gslb.example"]);
    assert_ne!(extra.fingerprint, 0);
    // Unchanged documents: the same certificates (not opened again).
    let again = edge.current(&keys, &snap).unwrap();
    assert!(Arc::ptr_eq(&again.certs[0].key, &extra.certs[0].key));

    // Another key file on this node.
    std::fs::write(&key_file, "22".repeat(32)).unwrap();
    let errors = edge.current(&keys, &snap).unwrap_err();
    assert!(
        errors[0].contains("every node needs the same key file"),
        "{errors:?}"
    );

    // A value sealed for another store key does not open here.
    std::fs::write(&key_file, "11".repeat(32)).unwrap();
    let moved = issued(&key, &keys.acme_cert("other.gslb.example"));
    let errors = EdgeCerts::default()
        .current(&keys, &snapshot(config, &moved))
        .unwrap_err();
    assert!(errors[0].contains("does not open"), "{errors:?}");
}
