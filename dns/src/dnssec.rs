//! DNSSEC online signing: a zone's keys read from BIND key files ([`ZoneKeys`], never from the shared
//! store), the signatures of answer RRsets with a cache per RRset ([`ZoneSigner`]), the apex DNSKEY set
//! ([`apex_dnskeys`], also for zone transfers), the DS records for the registrar ([`ds_records`]), new
//! keys ([`keygen`]) and what `meridian config check` says about the key files ([`check`]).
//!
//! Keys: a key with the SEP flag (257, a KSK) signs the DNSKEY RRset; one without (256, a ZSK) signs the
//! rest; when no signing key is a ZSK, the SEP keys sign everything (combined signing keys, CSKs). Keys
//! listed under `publish` are in the DNSKEY set and sign nothing (pre-published or retiring, for
//! rollovers). Algorithms: ECDSA P-256/SHA-256 (13) and Ed25519 (15), all keys of a zone the same one.
//!
//! Signatures: inception an hour back (clock skew), expiry after the zone's validity less a jitter of up to
//! a tenth of it (derived from the RRset, so that a zone's signatures do not all expire at once), renewed
//! when half the validity has passed. The answers a GeoDNS zone gives are a finite set (the regions'
//! address sets, the static records), so signatures are cached per RRset (owner, type, TTL and the
//! canonical rdata set) for the life of the [`ZoneSigner`], which is rebuilt with the zones for each
//! configuration: the query path signs only the first time an RRset is seen, and for denials of names that
//! do not exist (NSEC "black lies", RFC 9824: one NSEC per query name, never cached, so random names
//! cannot evict the answers).
//!
//! Nothing here names another answering module (it sits below `zone`, which holds a zone's signer).

mod keyfile;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, NSEC, RRSIG, SigInput};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKey, PublicKeyBuf, SigningKey, TBS, Verifier};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use meridian_config::{Config, DnssecSettings, DomainName, KeyFiles};

pub use keyfile::{KeyAlgorithm, KeyRole, keygen};

/// RFC 9824's NXNAME meta-type: in the NSEC of a name that does not exist (hickory 0.26 has no name for it).
pub const NXNAME: RecordType = RecordType::Unknown(128);

/// Cached RRsets per zone before the cache is emptied (a bound against unusual query mixes; a GeoDNS zone's
/// answers are far fewer).
const MAX_CACHED_RRSETS: usize = 65_536;

/// One key of a zone, loaded.
pub struct ZoneKey {
    /// Where it was read from.
    pub files: KeyFiles,
    /// Its DNSKEY record data.
    pub dnskey: DNSKEY,
    /// Its key tag.
    pub tag: u16,
    /// Whether it has the SEP flag (257: a KSK or CSK).
    pub sep: bool,
    /// The private key, for signing keys (`None`: published only).
    signing: Option<Box<dyn SigningKey>>,
}

impl std::fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneKey")
            .field("files", &self.files)
            .field("tag", &self.tag)
            .field("sep", &self.sep)
            .field("signing", &self.signing.is_some())
            .finish()
    }
}

/// A zone's keys, read from their files.
#[derive(Debug)]
pub struct ZoneKeys {
    /// The zone apex.
    pub origin: Name,
    /// Signing keys first (configuration order), then published ones.
    pub keys: Vec<ZoneKey>,
    /// Signature validity, seconds.
    pub validity_s: u32,
}

/// A problem with one key file, with the configuration path that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyProblem {
    /// Configuration path (`zones."gslb.example".dnssec.keys[0]`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The configuration path of a zone (as validation writes it).
fn zone_path(origin: &DomainName) -> String {
    let o = origin.as_str();
    if o.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        format!("zones.{o}")
    } else {
        format!("zones.{o:?}")
    }
}

/// The apex name of a configured zone.
fn apex(origin: &DomainName) -> Name {
    Name::from_ascii(format!("{}.", origin.as_str())).unwrap_or_else(|_| Name::root())
}

impl ZoneKeys {
    /// Reads the keys `settings` names for the zone `origin`; every problem found, with its configuration
    /// path, if any key cannot be used.
    pub fn load(origin: &DomainName, settings: &DnssecSettings) -> Result<Self, Vec<KeyProblem>> {
        let apex = apex(origin);
        let base = format!("{}.dnssec", zone_path(origin));
        let mut problems = Vec::new();
        let mut keys = Vec::new();
        let lists = [
            ("keys", &settings.keys, true),
            ("publish", &settings.publish, false),
        ];
        for (field, list, signs) in lists {
            for (i, files) in list.iter().enumerate() {
                match keyfile::read_pair(files, &apex, signs) {
                    Ok(key) => keys.push(key),
                    Err(message) => problems.push(KeyProblem {
                        path: format!("{base}.{field}[{i}]"),
                        message,
                    }),
                }
            }
        }
        if problems.is_empty() {
            if let Some(first) = keys.first() {
                let alg = first.dnskey.algorithm();
                for (i, k) in keys.iter().enumerate() {
                    if k.dnskey.algorithm() != alg {
                        problems.push(KeyProblem {
                            path: format!("{base}.keys"),
                            message: format!(
                                "{} uses algorithm {} but {} uses {}: a zone's keys share one algorithm \
                                 (algorithm rollovers are not supported)",
                                keys[i].files.base.display(),
                                u8::from(k.dnskey.algorithm()),
                                first.files.base.display(),
                                u8::from(alg)
                            ),
                        });
                        break;
                    }
                }
            }
            let tags: Vec<u16> = keys.iter().map(|k| k.tag).collect();
            if let Some(dup) = tags.iter().enumerate().find(|(i, t)| tags[..*i].contains(t)) {
                problems.push(KeyProblem {
                    path: format!("{base}.keys"),
                    message: format!("two keys have the key tag {}: create another key", dup.1),
                });
            }
        }
        if problems.is_empty() {
            Ok(Self {
                origin: apex,
                keys,
                validity_s: settings.signature_validity_days.saturating_mul(86_400),
            })
        } else {
            Err(problems)
        }
    }

    /// Whether a signing key signs RRsets of `covered`: SEP keys sign the DNSKEY set; ZSKs the rest; with
    /// no signing ZSK, the SEP keys sign everything.
    fn signs(&self, key: &ZoneKey, covered: RecordType) -> bool {
        let any_zsk = self.keys.iter().any(|k| k.signing.is_some() && !k.sep);
        key.signing.is_some() && (!any_zsk || (key.sep == (covered == RecordType::DNSKEY)))
    }
}

/// Reads the keys of every signed zone of `config`, as the DNS server will: what is wrong with them (each
/// problem names the configuration path of the key). Used by `meridian config check`.
pub fn check(config: &Config) -> Vec<KeyProblem> {
    config
        .zones()
        .iter()
        .filter_map(|z| Some((z, z.dnssec.as_ref()?)))
        .flat_map(|(z, d)| ZoneKeys::load(&z.origin, d).err().unwrap_or_default())
        .collect()
}

/// The apex DNSKEY RRset of a zone: every key, signing or published, with the zone's TTL `ttl`.
pub fn apex_dnskeys(keys: &ZoneKeys, ttl: u32) -> Vec<Record> {
    keys.keys
        .iter()
        .map(|k| {
            Record::from_rdata(
                keys.origin.clone(),
                ttl,
                RData::DNSSEC(DNSSECRData::DNSKEY(k.dnskey.clone())),
            )
        })
        .collect()
}

/// The DS records (SHA-256 digests) of the zone's SEP keys, in zone-file form, for the registrar: one
/// line per key, with a comment saying whether it signs or is published only.
pub fn ds_records(keys: &ZoneKeys, ttl: u32) -> Vec<String> {
    keys.keys
        .iter()
        .filter(|k| k.sep)
        .filter_map(|k| {
            let digest = k.dnskey.to_digest(&keys.origin, DigestType::SHA256).ok()?;
            Some(format!(
                "{} {ttl} IN DS {} {} 2 {} ; {} key, {}",
                keys.origin,
                k.tag,
                u8::from(k.dnskey.algorithm()),
                data_encoding::HEXUPPER.encode(digest.as_ref()),
                if k.signing.is_some() {
                    "signing"
                } else {
                    "published"
                },
                k.files.base.display()
            ))
        })
        .collect()
}

/// A test-only fault in the signatures, to prove that validators notice (`MERIDIAN_DNSSEC_TEST_HOOK`:
/// `tamper` or `expired`; never set it in production).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TestHook {
    /// Honest signatures.
    #[default]
    None,
    /// One octet of every signature flipped.
    Tamper,
    /// Every signature expired half its validity ago.
    Expired,
}

impl TestHook {
    /// The hook the environment asks for (`MERIDIAN_DNSSEC_TEST_HOOK`), read once when the server starts.
    pub fn from_env() -> Self {
        match std::env::var("MERIDIAN_DNSSEC_TEST_HOOK").as_deref() {
            Ok("tamper") => Self::Tamper,
            Ok("expired") => Self::Expired,
            _ => Self::None,
        }
    }
}

/// The signatures of one RRset, and when to make new ones.
pub struct Signed {
    rrsigs: Vec<Record>,
    /// Each RRSIG's rdata in wire form (the signer's name uncompressed, as RFC 4034 wants), for the fast
    /// path, which writes them after its answer records.
    wire: Vec<Vec<u8>>,
    refresh_at_s: u64,
}

impl Signed {
    /// The RRSIG rdatas in wire form.
    pub fn wire(&self) -> &[Vec<u8>] {
        &self.wire
    }
}

/// Signs a zone's RRsets, caching the signatures per RRset.
pub struct ZoneSigner {
    keys: Arc<ZoneKeys>,
    dnskeys: Vec<Record>,
    hook: TestHook,
    cache: RwLock<HashMap<Box<[u8]>, Arc<Signed>, foldhash::fast::RandomState>>,
    jitter_seed: foldhash::fast::FixedState,
}

impl std::fmt::Debug for ZoneSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneSigner")
            .field("origin", &self.keys.origin)
            .field("keys", &self.keys.keys.len())
            .finish()
    }
}

impl ZoneSigner {
    /// A signer for `keys`, publishing the DNSKEY set with TTL `dnskey_ttl`.
    pub fn new(keys: Arc<ZoneKeys>, dnskey_ttl: u32, hook: TestHook) -> Self {
        let dnskeys = apex_dnskeys(&keys, dnskey_ttl);
        Self {
            keys,
            dnskeys,
            hook,
            cache: RwLock::default(),
            jitter_seed: foldhash::fast::FixedState::with_seed(0x6d65_7269_6469_616e),
        }
    }

    /// The zone's keys.
    pub fn keys(&self) -> &Arc<ZoneKeys> {
        &self.keys
    }

    /// The apex DNSKEY RRset.
    pub fn dnskeys(&self) -> &[Record] {
        &self.dnskeys
    }

    /// How many RRsets have cached signatures.
    pub fn cached(&self) -> usize {
        self.cache.read().map_or(0, |c| c.len())
    }

    /// The RRSIG records over `rrset` (records of one owner, type and class; duplicates ignored) as of
    /// `now_ms`, owned by the RRset's name as given; from the cache when `cache` and a fresh entry is
    /// there. Empty if the set cannot be encoded.
    pub fn rrsigs(&self, rrset: &[Record], now_ms: u64, cache: bool) -> Vec<Record> {
        let Some(first) = rrset.first() else {
            return Vec::new();
        };
        let Some(key) = canonical_rrset(rrset) else {
            return Vec::new();
        };
        let signed = self.signed(&key, now_ms, cache, || rrset.to_vec());
        with_owner(&signed.rrsigs, &first.name)
    }

    /// The signatures of a steered answer as the fast path holds it: the owner `lower_name` (lower-case
    /// wire form), type `qtype` (A or AAAA), `ttl` and the rdatas `addresses` — the same cache entry as
    /// [`ZoneSigner::rrsigs`] for the same RRset.
    pub fn steered_rrsigs<const N: usize>(
        &self,
        lower_name: &[u8],
        qtype: u16,
        ttl: u32,
        addresses: impl Iterator<Item = [u8; N]>,
        now_ms: u64,
    ) -> Option<Arc<Signed>> {
        let mut rdatas: Vec<[u8; N]> = addresses.collect();
        rdatas.sort_unstable();
        rdatas.dedup();
        if rdatas.is_empty() {
            return None;
        }
        let mut key = Vec::with_capacity(lower_name.len() + 10 + rdatas.len() * (N + 2));
        key.extend_from_slice(lower_name);
        key.extend_from_slice(&qtype.to_be_bytes());
        key.extend_from_slice(&1u16.to_be_bytes());
        key.extend_from_slice(&ttl.to_be_bytes());
        for r in &rdatas {
            key.extend_from_slice(&(N as u16).to_be_bytes());
            key.extend_from_slice(r);
        }
        // The records themselves are needed only to sign (a cache miss).
        let build = || {
            let Some(owner) = wire_labels(lower_name).and_then(|l| Name::from_labels(l).ok()) else {
                return Vec::new();
            };
            rdatas
                .iter()
                .filter_map(|r| {
                    let data = match N {
                        4 => RData::A(A(Ipv4Addr::from(<[u8; 4]>::try_from(&r[..]).ok()?))),
                        16 => RData::AAAA(AAAA(Ipv6Addr::from(<[u8; 16]>::try_from(&r[..]).ok()?))),
                        _ => return None,
                    };
                    Some(Record::from_rdata(owner.clone(), ttl, data))
                })
                .collect()
        };
        Some(self.signed(&key, now_ms, true, build))
    }

    /// The cached signatures of the RRset whose canonical form is `key`, or new ones over `rrset()`.
    fn signed(
        &self,
        key: &[u8],
        now_ms: u64,
        cache: bool,
        rrset: impl FnOnce() -> Vec<Record>,
    ) -> Arc<Signed> {
        let now_s = now_ms / 1000;
        if cache
            && let Ok(c) = self.cache.read()
            && let Some(s) = c.get(key)
            && now_s < s.refresh_at_s
        {
            return s.clone();
        }
        let signed = Arc::new(self.sign(&rrset(), key, now_s));
        if cache && let Ok(mut c) = self.cache.write() {
            if c.len() >= MAX_CACHED_RRSETS {
                c.clear();
            }
            c.insert(key.into(), signed.clone());
        }
        signed
    }

    fn sign(&self, rrset: &[Record], canonical: &[u8], now_s: u64) -> Signed {
        let mut out = Signed {
            rrsigs: Vec::new(),
            wire: Vec::new(),
            refresh_at_s: 0,
        };
        let Some(first) = rrset.first() else {
            return out;
        };
        let covered = first.record_type();
        let validity = u64::from(self.keys.validity_s);
        let mut h = self.jitter_seed.build_hasher();
        h.write(canonical);
        let jitter = h.finish() % (validity / 10).max(1);
        let (inception, expiration) = match self.hook {
            // Expired half a validity ago (at least a day): beyond validators' clock-skew allowance
            // (Unbound's is a tenth of the signature's lifetime, up to a day).
            TestHook::Expired => (
                now_s.saturating_sub(2 * validity),
                now_s.saturating_sub(validity / 2),
            ),
            _ => (now_s.saturating_sub(3600), now_s + validity - jitter),
        };
        let mut records: Vec<Record> = rrset.to_vec();
        records.sort_by(|a, b| a.data.cmp(&b.data));
        records.dedup_by(|a, b| a.data == b.data);
        let owner = first.name.to_lowercase();
        for key in &self.keys.keys {
            if !self.keys.signs(key, covered) {
                continue;
            }
            let Some(signing) = &key.signing else { continue };
            let input = SigInput {
                type_covered: covered,
                algorithm: key.dnskey.algorithm(),
                num_labels: owner.num_labels(),
                original_ttl: first.ttl,
                // Serial number arithmetic (RFC 1982): the low 32 bits.
                sig_expiration: SerialNumber::new(expiration as u32),
                sig_inception: SerialNumber::new(inception as u32),
                key_tag: key.tag,
                signer_name: self.keys.origin.to_lowercase(),
            };
            let Ok(tbs) = TBS::from_input(&owner, first.dns_class, &input, records.iter()) else {
                continue;
            };
            let Ok(mut sig) = signing.sign(&tbs) else { continue };
            if self.hook == TestHook::Tamper
                && let Some(b) = sig.first_mut()
            {
                *b ^= 0x01;
            }
            let rrsig = RRSIG::from_sig(input, sig);
            let mut wire = Vec::new();
            if rrsig.emit(&mut BinEncoder::new(&mut wire)).is_err() {
                continue;
            }
            out.wire.push(wire);
            out.rrsigs.push(Record::from_rdata(
                owner.clone(),
                first.ttl,
                RData::DNSSEC(DNSSECRData::RRSIG(rrsig)),
            ));
        }
        out.refresh_at_s = now_s + validity / 2;
        out
    }
}

/// The labels of a name in uncompressed wire form.
fn wire_labels(wire: &[u8]) -> Option<Vec<&[u8]>> {
    let mut labels = Vec::new();
    let mut i = 0;
    loop {
        let len = usize::from(*wire.get(i)?);
        if len == 0 {
            return Some(labels);
        }
        labels.push(wire.get(i + 1..i + 1 + len)?);
        i += 1 + len;
    }
}

/// `records` with their owner set to `owner` (the name as the question spelled it).
fn with_owner(records: &[Record], owner: &Name) -> Vec<Record> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.name = owner.clone();
            r
        })
        .collect()
}

/// The cache key of an RRset: its owner lower-cased, type, class, TTL and rdata in canonical form, sorted
/// and without duplicates — everything its signature covers but the signature's own fields.
fn canonical_rrset(rrset: &[Record]) -> Option<Vec<u8>> {
    let first = rrset.first()?;
    let mut rdatas: Vec<Vec<u8>> = Vec::with_capacity(rrset.len());
    for r in rrset {
        let mut buf = Vec::new();
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_canonical_form(true);
        enc.set_name_encoding(NameEncoding::UncompressedLowercase);
        r.data.emit(&mut enc).ok()?;
        rdatas.push(buf);
    }
    rdatas.sort();
    rdatas.dedup();
    let mut out = Vec::with_capacity(64);
    let mut enc = BinEncoder::new(&mut out);
    enc.set_canonical_form(true);
    enc.set_name_encoding(NameEncoding::UncompressedLowercase);
    first.name.emit(&mut enc).ok()?;
    out.extend_from_slice(&u16::from(first.record_type()).to_be_bytes());
    out.extend_from_slice(&u16::from(first.dns_class).to_be_bytes());
    out.extend_from_slice(&first.ttl.to_be_bytes());
    for d in rdatas {
        out.extend_from_slice(&(d.len() as u16).to_be_bytes());
        out.extend_from_slice(&d);
    }
    Some(out)
}

/// The NSEC record of a compact denial (RFC 9824) at `owner`: the next name is `\000.owner` (nothing
/// else in the zone is revealed), the bitmap `types` plus NSEC and RRSIG.
pub fn compact_nsec(owner: &Name, ttl: u32, types: impl IntoIterator<Item = RecordType>) -> Option<Record> {
    let next = Name::from_labels([&[0u8][..]]).ok()?.append_name(owner).ok()?;
    Some(Record::from_rdata(
        owner.clone(),
        ttl,
        RData::DNSSEC(DNSSECRData::NSEC(NSEC::new_cover_self(next, types))),
    ))
}

/// Loads every signed zone's keys of `config` for the server; a zone whose keys cannot be read is
/// reported (logged by the caller) and served unsigned.
pub fn load_all(config: &Config) -> (Vec<Arc<ZoneKeys>>, Vec<KeyProblem>) {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for z in config.zones() {
        let Some(d) = &z.dnssec else { continue };
        match ZoneKeys::load(&z.origin, d) {
            Ok(k) => keys.push(Arc::new(k)),
            Err(p) => problems.extend(p),
        }
    }
    (keys, problems)
}

/// Whether `dnskey` is the public half of `signing` (a key file pair that does not match is refused).
fn same_public_key(dnskey: &DNSKEY, signing: &dyn SigningKey) -> bool {
    signing
        .to_public_key()
        .is_ok_and(|p: PublicKeyBuf| p.into_inner() == dnskey.public_key().public_bytes())
}

/// The algorithms a zone's keys may use.
fn supported(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::ECDSAP256SHA256 | Algorithm::ED25519)
}

/// The base path (`dir/K<zone>.+<alg>+<tag>`) of a key of `origin`.
fn key_base(dir: &Path, origin: &Name, alg: u8, tag: u16) -> PathBuf {
    let zone = origin.to_ascii();
    dir.join(format!("K{zone}+{alg:03}+{tag:05}"))
}

#[cfg(test)]
mod tests;
