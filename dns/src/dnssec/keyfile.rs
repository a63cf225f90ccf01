//! BIND's key file format, as `dnssec-keygen` and `ldns-keygen` write it: `K<zone>.+<alg>+<tag>.key`
//! holds the DNSKEY record in zone-file form (`gslb.example. IN DNSKEY 257 3 13 <base64>`), and
//! `K<zone>.+<alg>+<tag>.private` the private key (`Private-key-format: v1.3`, `Algorithm: 13
//! (ECDSAP256SHA256)`, `PrivateKey: <base64>`: the P-256 scalar, or the Ed25519 seed). Reading a pair
//! ([`read_pair`]) checks that the halves belong together and to the zone; [`keygen`] writes a new pair.

use std::io::Write;
use std::path::{Path, PathBuf};

use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::rdata::DNSKEY;
use hickory_proto::dnssec::{Algorithm, PublicKey, PublicKeyBuf, SigningKey, Verifier};
use hickory_proto::rr::Name;
use meridian_config::KeyFiles;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

use super::{ZoneKey, key_base, same_public_key, supported};

/// DNSKEY flags: zone key (bit 7), secure entry point (bit 15), revoked (bit 8).
const FLAG_ZONE: u16 = 0x0100;
const FLAG_SEP: u16 = 0x0001;
const FLAG_REVOKE: u16 = 0x0080;

/// An algorithm a new key may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256 (13).
    EcdsaP256,
    /// Ed25519 (15).
    Ed25519,
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "13" | "ecdsap256sha256" | "ecdsa" | "p256" => Ok(Self::EcdsaP256),
            "15" | "ed25519" => Ok(Self::Ed25519),
            _ => Err(format!("{s:?}: expected ecdsap256sha256 (13) or ed25519 (15)")),
        }
    }
}

/// What a new key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// Key-signing key (flags 257): signs the DNSKEY set; its DS goes to the registrar.
    Ksk,
    /// Zone-signing key (flags 256): signs everything else.
    Zsk,
    /// Combined signing key (flags 257, alone): signs everything.
    Csk,
}

impl std::str::FromStr for KeyRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ksk" => Ok(Self::Ksk),
            "zsk" => Ok(Self::Zsk),
            "csk" => Ok(Self::Csk),
            _ => Err(format!("{s:?}: expected ksk, zsk or csk")),
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The DNSKEY of a `.key` file, checked to be a zone key of `apex`.
fn read_public(path: &Path, apex: &Name) -> Result<DNSKEY, String> {
    let text = read(path)?;
    let at = |m: &str| format!("{}: {m}", path.display());
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or_default();
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = tokens.iter().position(|t| t.eq_ignore_ascii_case("DNSKEY")) else {
            continue;
        };
        let owner = tokens.first().copied().unwrap_or_default();
        let owner = Name::from_ascii(owner).map_err(|e| at(&format!("owner {owner:?}: {e}")))?;
        if !owner.is_fqdn() || owner.to_lowercase() != apex.to_lowercase() {
            return Err(at(&format!("the key belongs to {owner}, not to the zone {apex}")));
        }
        let [flags, protocol, alg, key @ ..] = &tokens[i + 1..] else {
            return Err(at("a DNSKEY needs flags, protocol, algorithm and the public key"));
        };
        let flags: u16 = flags
            .parse()
            .map_err(|_| at(&format!("flags {flags:?} are not a number")))?;
        if flags & FLAG_ZONE == 0 {
            return Err(at(&format!(
                "flags {flags}: not a zone key (expected 256 or 257)"
            )));
        }
        if flags & FLAG_REVOKE != 0 {
            return Err(at(&format!("flags {flags}: the key is revoked")));
        }
        if *protocol != "3" {
            return Err(at(&format!("protocol {protocol}: must be 3")));
        }
        let alg = Algorithm::from_u8(
            alg.parse()
                .map_err(|_| at(&format!("algorithm {alg:?} is not a number")))?,
        );
        if !supported(alg) {
            return Err(at(&format!(
                "algorithm {} is not supported (ECDSAP256SHA256 = 13, ED25519 = 15)",
                u8::from(alg)
            )));
        }
        let public = data_encoding::BASE64
            .decode(key.concat().as_bytes())
            .map_err(|e| at(&format!("the public key is not base64: {e}")))?;
        let want = if alg == Algorithm::ED25519 { 32 } else { 64 };
        if public.len() != want {
            return Err(at(&format!(
                "the public key has {} octets, algorithm {} needs {want}",
                public.len(),
                u8::from(alg)
            )));
        }
        return Ok(DNSKEY::with_flags(flags, PublicKeyBuf::new(public, alg)));
    }
    Err(at("no DNSKEY record in the file"))
}

/// The signing key of a `.private` file for `dnskey` (its public half).
fn read_private(path: &Path, dnskey: &DNSKEY) -> Result<Box<dyn SigningKey>, String> {
    let text = read(path)?;
    let at = |m: &str| format!("{}: {m}", path.display());
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    };
    if field("Private-key-format").is_none_or(|v| !v.starts_with("v1.")) {
        return Err(at(
            "not a private key file (no \"Private-key-format: v1.x\" line)",
        ));
    }
    let alg = field("Algorithm")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u8>().ok())
        .ok_or_else(|| at("no \"Algorithm:\" line with a number"))?;
    if alg != u8::from(dnskey.algorithm()) {
        return Err(at(&format!(
            "algorithm {alg}, but the .key file says {}",
            u8::from(dnskey.algorithm())
        )));
    }
    let private = field("PrivateKey")
        .ok_or_else(|| at("no \"PrivateKey:\" line"))
        .and_then(|v| {
            data_encoding::BASE64
                .decode(v.as_bytes())
                .map_err(|e| at(&format!("the private key is not base64: {e}")))
        })?;
    if private.len() != 32 {
        return Err(at(&format!(
            "the private key has {} octets, algorithm {alg} needs 32",
            private.len()
        )));
    }
    let public = dnskey.public_key().public_bytes();
    let mismatch = || at("the private key does not match the public key in the .key file");
    let key: Box<dyn SigningKey> = if dnskey.algorithm() == Algorithm::ED25519 {
        let pair = Ed25519KeyPair::from_seed_and_public_key(&private, public).map_err(|_| mismatch())?;
        Box::new(Ed25519SigningKey::from_ed25519(pair))
    } else {
        // ring wants the public point uncompressed, with its 0x04 prefix (DNSKEY drops it).
        let mut point = Vec::with_capacity(65);
        point.push(4);
        point.extend_from_slice(public);
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &private,
            &point,
            &SystemRandom::new(),
        )
        .map_err(|_| mismatch())?;
        Box::new(EcdsaSigningKey::from_ecdsa(pair, Algorithm::ECDSAP256SHA256))
    };
    if !same_public_key(dnskey, key.as_ref()) {
        return Err(mismatch());
    }
    Ok(key)
}

/// Reads the key pair at `files` for the zone `apex`: the `.key` file always, the `.private` file when
/// the key signs.
pub(super) fn read_pair(files: &KeyFiles, apex: &Name, signs: bool) -> Result<ZoneKey, String> {
    let dnskey = read_public(&files.public(), apex)?;
    let tag = dnskey
        .calculate_key_tag()
        .map_err(|e| format!("{}: key tag: {e}", files.public().display()))?;
    let signing = if signs {
        Some(read_private(&files.private(), &dnskey)?)
    } else {
        None
    };
    Ok(ZoneKey {
        files: files.clone(),
        sep: dnskey.flags() & FLAG_SEP != 0,
        dnskey,
        tag,
        signing,
    })
}

/// The private scalar of ring's PKCS#8 document for a P-256 key: ring writes a fixed template in which the
/// ECPrivateKey's `privateKey` is the only OCTET STRING of 32 octets after the version 1 (`02 01 01 04 20`).
/// The caller checks the scalar against the public key.
fn p256_scalar(pkcs8: &[u8]) -> Option<[u8; 32]> {
    const MARK: [u8; 5] = [0x02, 0x01, 0x01, 0x04, 0x20];
    let at = pkcs8.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    pkcs8.get(at..at + 32)?.try_into().ok()
}

/// Creates a key pair for `origin` in `dir` (BIND's format, the private file readable by its owner only)
/// and returns its base path (`dir/K<zone>.+<alg>+<tag>`).
pub fn keygen(dir: &Path, origin: &Name, alg: KeyAlgorithm, role: KeyRole) -> Result<PathBuf, String> {
    let rng = SystemRandom::new();
    let (alg, private, public) = match alg {
        KeyAlgorithm::Ed25519 => {
            let mut seed = [0u8; 32];
            rng.fill(&mut seed).map_err(|_| "no randomness".to_owned())?;
            let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| e.to_string())?;
            (
                Algorithm::ED25519,
                seed.to_vec(),
                pair.public_key().as_ref().to_vec(),
            )
        }
        KeyAlgorithm::EcdsaP256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| "cannot generate a P-256 key".to_owned())?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng)
                .map_err(|e| e.to_string())?;
            let scalar = p256_scalar(doc.as_ref()).ok_or("unexpected PKCS#8 layout from ring")?;
            let point = pair.public_key().as_ref();
            // Proof that the scalar is the key's: ring rebuilds the pair from it and the public point.
            EcdsaKeyPair::from_private_key_and_public_key(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &scalar,
                point,
                &rng,
            )
            .map_err(|_| "unexpected PKCS#8 layout from ring".to_owned())?;
            (Algorithm::ECDSAP256SHA256, scalar.to_vec(), point[1..].to_vec())
        }
    };
    let flags = match role {
        KeyRole::Zsk => FLAG_ZONE,
        KeyRole::Ksk | KeyRole::Csk => FLAG_ZONE | FLAG_SEP,
    };
    let b64 = data_encoding::BASE64.encode(&public);
    let dnskey = DNSKEY::with_flags(flags, PublicKeyBuf::new(public, alg));
    let tag = dnskey.calculate_key_tag().map_err(|e| e.to_string())?;
    let alg_n = u8::from(alg);
    let base = key_base(dir, origin, alg_n, tag);
    let files = KeyFiles { base: base.clone() };
    let (role_text, mnemonic) = match role {
        KeyRole::Ksk => ("key-signing key", "KSK"),
        KeyRole::Zsk => ("zone-signing key", "ZSK"),
        KeyRole::Csk => ("combined signing key", "CSK"),
    };
    let alg_name = if alg == Algorithm::ED25519 {
        "ED25519"
    } else {
        "ECDSAP256SHA256"
    };
    let public_text = format!(
        "; This is a {role_text} ({mnemonic}), keyid {tag}, for {origin}\n; Created by meridian dnssec keygen\n\
         {origin} IN DNSKEY {flags} 3 {alg_n} {b64}\n"
    );
    let private_text = format!(
        "Private-key-format: v1.3\nAlgorithm: {alg_n} ({alg_name})\nPrivateKey: {}\n",
        data_encoding::BASE64.encode(&private)
    );
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |path: PathBuf, text: &str, mode: u32| -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(files.private(), &private_text, 0o600)?;
    write(files.public(), &public_text, 0o644)?;
    Ok(base)
}
