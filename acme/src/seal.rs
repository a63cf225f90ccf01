//! The operator's key and what it seals: private keys (of certificates and of the ACME account) are
//! stored encrypted with ChaCha20-Poly1305 (*ring*), a fresh random nonce per seal, the store key as
//! associated data (a sealed value moved to another key does not open). The key itself is a file on each
//! node's disk, never in the store.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The operator's sealing key, loaded from its file.
pub struct OperatorKey {
    key: LessSafeKey,
    id: String,
    path: PathBuf,
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorKey")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish()
    }
}

/// Parses a key file's contents: 64 hex digits (surrounding white space ignored) or exactly 32 bytes.
fn parse(bytes: &[u8]) -> Result<[u8; 32], String> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    if let Some(t) = text
        && t.len() == 64
        && t.bytes().all(|b| b.is_ascii_hexdigit())
    {
        let mut out = [0u8; 32];
        for (i, pair) in t.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            out[i] = u8::from_str_radix(s, 16).map_err(|e| e.to_string())?;
        }
        return Ok(out);
    }
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        format!(
            "expected a 256-bit key: 64 hex digits or 32 raw bytes, found {} bytes (make one with \
             `openssl rand -hex 32`)",
            bytes.len()
        )
    })
}

impl OperatorKey {
    /// Reads the key file; the error names the file and what is wrong with it.
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let raw = parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self::from_bytes(&raw, path))
    }

    /// A key from its 32 bytes (`path`: where it came from, for messages).
    pub fn from_bytes(raw: &[u8; 32], path: &Path) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, raw);
        let id = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let key = UnboundKey::new(&CHACHA20_POLY1305, raw)
            .unwrap_or_else(|_| unreachable!("a 32-byte key is a valid ChaCha20-Poly1305 key"));
        Self {
            key: LessSafeKey::new(key),
            id,
            path: path.to_owned(),
        }
    }

    /// Identifies the key without revealing it (the first 8 bytes of its SHA-256, hex).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plain` for store key `aad`: base64 of nonce, ciphertext and tag.
    pub fn seal(&self, aad: &str, plain: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a nonce".to_owned())?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| "sealing failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(STANDARD.encode(out))
    }

    /// Opens what [`OperatorKey::seal`] sealed for `aad`; `key_id`: the id the value was sealed with
    /// (a different one is reported as such, not as corruption).
    pub fn open(&self, aad: &str, key_id: &str, sealed: &str) -> Result<Vec<u8>, String> {
        if key_id != self.id {
            return Err(format!(
                "{aad}: sealed with operator key {key_id}, but {} holds key {} (every node needs the same \
                 key file)",
                self.path.display(),
                self.id
            ));
        }
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|e| format!("{aad}: sealed value is not base64: {e}"))?;
        if bytes.len() < NONCE_LEN {
            return Err(format!("{aad}: sealed value too short"));
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| format!("{aad}: bad nonce"))?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| format!("{aad}: sealed value does not open (altered, or sealed for another key)"))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_store_key() {
        let k = OperatorKey::from_bytes(&[7; 32], Path::new("/k"));
        let sealed = k.seal("/m/acme/certs/a", b"secret").unwrap();
        assert_eq!(k.open("/m/acme/certs/a", k.id(), &sealed).unwrap(), b"secret");
        assert!(
            k.open("/m/acme/certs/b", k.id(), &sealed)
                .unwrap_err()
                .contains("does not open")
        );
        let other = OperatorKey::from_bytes(&[8; 32], Path::new("/k2"));
        assert!(
            other
                .open("/m/acme/certs/a", k.id(), &sealed)
                .unwrap_err()
                .contains("every node")
        );
        assert_ne!(
            k.seal("x", b"same").unwrap(),
            k.seal("x", b"same").unwrap(),
            "fresh nonces"
        );
        let mut tampered = STANDARD.decode(&sealed).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(
            k.open("/m/acme/certs/a", k.id(), &STANDARD.encode(tampered))
                .is_err()
        );
    }

    #[test]
    fn key_files_are_hex_or_raw_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let hex = dir.path().join("hex");
        std::fs::write(&hex, format!("{}\n", "ab".repeat(32))).unwrap();
        assert!(OperatorKey::load(&hex).is_ok());
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [1u8; 32]).unwrap();
        assert!(OperatorKey::load(&raw).is_ok());
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "short").unwrap();
        let e = OperatorKey::load(&bad).unwrap_err();
        assert!(
            e.contains(&bad.display().to_string()) && e.contains("64 hex digits"),
            "{e}"
        );
        let e = OperatorKey::load(&dir.path().join("missing")).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
