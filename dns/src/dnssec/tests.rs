//! Key files (both algorithms, every way one can be wrong), which key signs what, and the signature cache.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::dnssec::Verifier;
use hickory_proto::dnssec::rdata::{DNSSECRData, RRSIG};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use meridian_config::{DnssecSettings, DomainName, KeyFiles};

use super::*;

fn origin() -> DomainName {
    DomainName::parse("gslb.example").unwrap()
}

fn apex() -> Name {
    Name::from_ascii("gslb.example.").unwrap()
}

fn settings(keys: &[&Path], publish: &[&Path]) -> DnssecSettings {
    let files = |l: &[&Path]| {
        l.iter()
            .map(|p| KeyFiles {
                base: p.to_path_buf(),
            })
            .collect()
    };
    DnssecSettings {
        keys: files(keys),
        publish: files(publish),
        signature_validity_days: 14,
    }
}

fn problems(dir: &Path, keys: &[&Path]) -> Vec<String> {
    let _ = dir;
    match ZoneKeys::load(&origin(), &settings(keys, &[])) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(ToString::to_string).collect(),
    }
}

fn a_rrset(owner: &str, addrs: &[[u8; 4]]) -> Vec<Record> {
    let name = Name::from_ascii(owner).unwrap();
    addrs
        .iter()
        .map(|a| Record::from_rdata(name.clone(), 60, RData::A(A(Ipv4Addr::from(*a)))))
        .collect()
}

fn rrsig(r: &Record) -> &RRSIG {
    match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(s)) => s,
        other => panic!("not an RRSIG: {other:?}"),
    }
}

/// Verifies every signature in `sigs` over `rrset` with the zone key whose tag it names.
fn verify(keys: &ZoneKeys, rrset: &[Record], sigs: &[Record]) {
    assert!(!sigs.is_empty(), "no signature");
    for s in sigs {
        let sig = rrsig(s);
        let key = keys.keys.iter().find(|k| k.tag == sig.input().key_tag).unwrap();
        key.dnskey
            .verify_rrsig(&rrset[0].name, DNSClass::IN, sig, rrset.iter())
            .expect("signature verifies");
    }
}

#[test]
fn generated_keys_load_and_sign_for_both_algorithms() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let dir = tempfile::tempdir().unwrap();
        let csk = keygen(dir.path(), &apex(), alg, KeyRole::Csk).unwrap();
        let name = csk.file_name().unwrap().to_str().unwrap().to_owned();
        let n = if alg == KeyAlgorithm::Ed25519 {
            "015"
        } else {
            "013"
        };
        assert!(name.starts_with(&format!("Kgslb.example.+{n}+")), "{name}");
        let keys = ZoneKeys::load(&origin(), &settings(&[&csk], &[])).unwrap();
        assert!(keys.keys[0].sep);
        let signer = ZoneSigner::new(Arc::new(keys), 3600, TestHook::None);
        let rrset = a_rrset("Meet.gslb.example.", &[[192, 0, 2, 1], [192, 0, 2, 2]]);
        let sigs = signer.rrsigs(&rrset, 1_800_000_000_000, true);
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].name, rrset[0].name);
        let input = rrsig(&sigs[0]).input();
        assert_eq!(input.signer_name, apex());
        assert_eq!(input.original_ttl, 60);
        assert_eq!(input.num_labels, 3);
        let (inc, exp) = (input.sig_inception.get(), input.sig_expiration.get());
        assert_eq!(inc, 1_800_000_000 - 3600);
        assert!(exp <= 1_800_000_000 + 14 * 86_400 && exp > 1_800_000_000 + 12 * 86_400);
        verify(signer.keys(), &rrset, &sigs);
        // The private file is the owner's alone.
        let mode = std::fs::metadata(KeyFiles { base: csk }.private()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn ksk_signs_the_dnskey_set_and_zsk_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let ksk = keygen(dir.path(), &apex(), KeyAlgorithm::EcdsaP256, KeyRole::Ksk).unwrap();
    let zsk = keygen(dir.path(), &apex(), KeyAlgorithm::EcdsaP256, KeyRole::Zsk).unwrap();
    let next = keygen(dir.path(), &apex(), KeyAlgorithm::EcdsaP256, KeyRole::Zsk).unwrap();
    let keys = ZoneKeys::load(&origin(), &settings(&[&ksk, &zsk], &[&next])).unwrap();
    let (ksk_tag, zsk_tag) = (keys.keys[0].tag, keys.keys[1].tag);
    let signer = ZoneSigner::new(Arc::new(keys), 3600, TestHook::None);
    assert_eq!(
        signer.dnskeys().len(),
        3,
        "the published key is in the DNSKEY set"
    );
    let dnskey_sigs = signer.rrsigs(signer.dnskeys(), 1_800_000_000_000, true);
    assert_eq!(dnskey_sigs.len(), 1);
    assert_eq!(rrsig(&dnskey_sigs[0]).input().key_tag, ksk_tag);
    verify(signer.keys(), signer.dnskeys(), &dnskey_sigs);
    let rrset = a_rrset("meet.gslb.example.", &[[192, 0, 2, 1]]);
    let sigs = signer.rrsigs(&rrset, 1_800_000_000_000, true);
    assert_eq!(sigs.len(), 1);
    assert_eq!(rrsig(&sigs[0]).input().key_tag, zsk_tag);
    verify(signer.keys(), &rrset, &sigs);

    let ds = ds_records(signer.keys(), 3600);
    assert_eq!(ds.len(), 1, "DS only for the SEP key: {ds:?}");
    assert!(
        ds[0].starts_with(&format!("gslb.example. 3600 IN DS {ksk_tag} 13 2 ")),
        "{}",
        ds[0]
    );
}

#[test]
fn signatures_are_cached_per_rrset_and_renewed_at_half_validity() {
    let dir = tempfile::tempdir().unwrap();
    let csk = keygen(dir.path(), &apex(), KeyAlgorithm::EcdsaP256, KeyRole::Csk).unwrap();
    let keys = ZoneKeys::load(&origin(), &settings(&[&csk], &[])).unwrap();
    let signer = ZoneSigner::new(Arc::new(keys), 3600, TestHook::None);
    let now = 1_800_000_000_000;
    let one = a_rrset("meet.gslb.example.", &[[192, 0, 2, 1], [192, 0, 2, 2]]);
    // The same set in another order, another case, with a duplicate: the same RRset.
    let mut same = a_rrset(
        "MEET.gslb.example.",
        &[[192, 0, 2, 2], [192, 0, 2, 1], [192, 0, 2, 2]],
    );
    let first = signer.rrsigs(&one, now, true);
    // ECDSA signatures are randomised: equal bytes mean the cache answered.
    let again = signer.rrsigs(&same, now + 1000, true);
    assert_eq!(rrsig(&first[0]).sig(), rrsig(&again[0]).sig());
    assert_eq!(again[0].name, same[0].name, "the owner is spelled as asked");
    assert_eq!(signer.cached(), 1);
    same.truncate(1);
    let other = signer.rrsigs(&same, now, true);
    assert_ne!(rrsig(&first[0]).sig(), rrsig(&other[0]).sig());
    assert_eq!(signer.cached(), 2);
    // Uncached signing (denials) leaves the cache alone.
    signer.rrsigs(&a_rrset("x.gslb.example.", &[[192, 0, 2, 9]]), now, false);
    assert_eq!(signer.cached(), 2);
    // Past half the validity, a new signature with a new inception.
    let later = now + 7 * 86_400_000 + 1000;
    let renewed = signer.rrsigs(&one, later, true);
    assert_ne!(rrsig(&first[0]).sig(), rrsig(&renewed[0]).sig());
    assert_eq!(
        rrsig(&renewed[0]).input().sig_inception.get(),
        (later / 1000 - 3600) as u32
    );
    verify(signer.keys(), &one, &renewed);
}

#[test]
fn test_hooks_spoil_the_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let csk = keygen(dir.path(), &apex(), KeyAlgorithm::Ed25519, KeyRole::Csk).unwrap();
    let keys = Arc::new(ZoneKeys::load(&origin(), &settings(&[&csk], &[])).unwrap());
    let rrset = a_rrset("meet.gslb.example.", &[[192, 0, 2, 1]]);
    let now = 1_800_000_000_000;
    let tampered = ZoneSigner::new(keys.clone(), 3600, TestHook::Tamper).rrsigs(&rrset, now, true);
    let sig = rrsig(&tampered[0]);
    assert!(
        keys.keys[0]
            .dnskey
            .verify_rrsig(&rrset[0].name, DNSClass::IN, sig, rrset.iter())
            .is_err()
    );
    let expired = ZoneSigner::new(keys, 3600, TestHook::Expired).rrsigs(&rrset, now, true);
    assert!(u64::from(rrsig(&expired[0]).input().sig_expiration.get()) < now / 1000);
}

#[test]
fn compact_denial_names_no_other_name() {
    let owner = Name::from_ascii("nothere.gslb.example.").unwrap();
    let nsec = compact_nsec(&owner, 60, [NXNAME]).unwrap();
    let RData::DNSSEC(DNSSECRData::NSEC(n)) = &nsec.data else {
        panic!()
    };
    assert_eq!(n.next_domain_name().to_ascii(), "\\000.nothere.gslb.example.");
    let types: Vec<RecordType> = n.type_bit_maps().collect();
    assert_eq!(types, vec![RecordType::RRSIG, RecordType::NSEC, NXNAME]);
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn key_file_problems_name_the_path_and_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = keygen(d, &apex(), KeyAlgorithm::EcdsaP256, KeyRole::Csk).unwrap();
    let good_files = KeyFiles { base: good.clone() };
    let public = std::fs::read_to_string(good_files.public()).unwrap();
    let private = std::fs::read_to_string(good_files.private()).unwrap();
    let case = |name: &str, public: &str, private: &str| {
        let base = d.join(name);
        let f = KeyFiles { base: base.clone() };
        write(&f.public(), public);
        write(&f.private(), private);
        base
    };
    let expect = |base: &Path, want: &str| {
        let p = problems(d, &[base]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("zones.\"gslb.example\".dnssec.keys[0]: ") && p[0].contains(want),
            "{:?} should say {want:?}",
            p[0]
        );
    };

    expect(&d.join("Kmissing"), "cannot read");
    let other = keygen(
        d,
        &Name::from_ascii("other.example.").unwrap(),
        KeyAlgorithm::Ed25519,
        KeyRole::Csk,
    )
    .unwrap();
    expect(&other, "belongs to other.example., not to the zone gslb.example.");
    expect(
        &case("Kalg8", &public.replace(" 257 3 13 ", " 257 3 8 "), &private),
        "algorithm 8 is not supported",
    );
    expect(
        &case("Kflags", &public.replace(" 257 3 ", " 1 3 "), &private),
        "not a zone key",
    );
    expect(
        &case("Krevoked", &public.replace(" 257 3 ", " 385 3 "), &private),
        "revoked",
    );
    expect(
        &case(
            "Kshort",
            &public.replace(" 257 3 13 ", " 257 3 13 AAAA"),
            &private,
        ),
        "octets",
    );
    expect(
        &case("Kb64", &public.replace(" 257 3 13 ", " 257 3 13 !"), &private),
        "not base64",
    );
    expect(
        &case("Knodnskey", "; nothing here\n", &private),
        "no DNSKEY record",
    );
    expect(
        &case(
            "Knoformat",
            &public,
            &private.replace("Private-key-format: v1.3\n", ""),
        ),
        "not a private key file",
    );
    expect(
        &case(
            "Kalgmix",
            &public,
            &private.replace("Algorithm: 13", "Algorithm: 15"),
        ),
        "the .key file says 13",
    );
    let other_private = std::fs::read_to_string(KeyFiles { base: other }.private()).unwrap();
    expect(
        &case(
            "Kmismatch",
            &public,
            &other_private.replace("Algorithm: 15 (ED25519)", "Algorithm: 13"),
        ),
        "does not match",
    );

    // A zone mixing algorithms, and one with no key listed, are refused whole.
    let ed = keygen(d, &apex(), KeyAlgorithm::Ed25519, KeyRole::Zsk).unwrap();
    let p = problems(d, &[&good, &ed]);
    assert!(p.iter().any(|m| m.contains("share one algorithm")), "{p:?}");
    // Published keys need only their .key file.
    std::fs::remove_file(KeyFiles { base: ed.clone() }.private()).unwrap();
    assert!(ZoneKeys::load(&origin(), &settings(&[&good], &[])).is_ok());
    let mixed = ZoneKeys::load(&origin(), &settings(&[&good], &[&ed]));
    assert!(mixed.is_err(), "published keys share the algorithm too");
    let ecdsa_zsk = keygen(d, &apex(), KeyAlgorithm::EcdsaP256, KeyRole::Zsk).unwrap();
    std::fs::remove_file(
        KeyFiles {
            base: ecdsa_zsk.clone(),
        }
        .private(),
    )
    .unwrap();
    assert!(ZoneKeys::load(&origin(), &settings(&[&good], &[&ecdsa_zsk])).is_ok());
}
