//! What the proxies serve of ACME: every configured certificate in the snapshot, its key opened with the
//! operator's key, as `meridian-tls` certificates to add to the edge's set. Opened again only when the
//! documents (or the key file) change.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use meridian_config::AcmeSettings;
use meridian_store::{Keys, Snapshot};
use meridian_tls::Extra;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::seal::OperatorKey;

/// The ACME certificates of the last look, kept while nothing changes.
#[derive(Debug, Default)]
pub struct EdgeCerts {
    last: Option<(u64, Extra)>,
}

impl EdgeCerts {
    /// The certificates to serve beside the files' (none when `[acme]` is absent or none is issued).
    /// Errors name the store key or the key file; the caller keeps serving what it has.
    pub fn current(&mut self, keys: &Keys, snapshot: &Snapshot) -> Result<Extra, Vec<String>> {
        let Some(settings) = snapshot.topology.config().acme() else {
            return Ok(Extra::default());
        };
        let docs: Vec<_> = settings
            .certificates
            .iter()
            .filter_map(|c| snapshot.acme_certs.iter().find(|(id, _)| id == c.id()))
            .collect();
        if docs.is_empty() {
            return Ok(Extra::default());
        }
        let key_bytes = std::fs::read(&settings.key_file).ok();
        let mut h = DefaultHasher::new();
        key_bytes.hash(&mut h);
        for (id, d) in &docs {
            (id, &d.chain_pem, &d.sealed_key).hash(&mut h);
        }
        // Never 0, the fingerprint of "no extra certificates".
        let fingerprint = h.finish() | 1;
        if let Some((f, extra)) = &self.last
            && *f == fingerprint
        {
            return Ok(extra.clone());
        }
        let extra = open_all(keys, settings, &docs, fingerprint)?;
        self.last = Some((fingerprint, extra.clone()));
        Ok(extra)
    }
}

fn open_all(
    keys: &Keys,
    settings: &AcmeSettings,
    docs: &[&(String, meridian_store::schema::AcmeCertDoc)],
    fingerprint: u64,
) -> Result<Extra, Vec<String>> {
    let key = OperatorKey::load(&settings.key_file).map_err(|e| vec![format!("acme.key-file {e}")])?;
    let mut certs = Vec::new();
    let mut errors = Vec::new();
    for (id, doc) in docs {
        let store_key = keys.acme_cert(id);
        let label = Path::new(&store_key);
        let opened = key
            .open(&store_key, &doc.key_id, &doc.sealed_key)
            .and_then(|der| {
                let chain = meridian_tls::certs::parse_chain(label, doc.chain_pem.as_bytes())
                    .map_err(|e| e.to_string())?;
                meridian_tls::certs::from_parts(
                    label,
                    label,
                    chain,
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
                )
                .map_err(|e| e.to_string())
            });
        match opened {
            Ok(c) => certs.push(c),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(Extra { certs, fingerprint })
    } else {
        Err(errors)
    }
}
