//! DNSSEC against real validators on loopback: `meridian dns` serving the reference zone signed with keys
//! from `meridian dnssec keygen`; Unbound (a validating resolver with the zone's DS from `meridian dnssec
//! ds` as its trust anchor, stubbing the zone to Meridian, sending ECS with its subnetcache module) sets
//! AD on steered answers for clients in several countries, on NXDOMAIN and on NODATA, and answers
//! SERVFAIL when the signatures are tampered with or expired (the test-only `MERIDIAN_DNSSEC_TEST_HOOK`);
//! BIND's `delv` verifies `kdig +dnssec`-style answers straight from Meridian.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Interrupted, example, free_udp_port, meridian, run, stderr, stdout};

/// A signed copy of the reference deployment in a temporary directory.
struct Zone {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The DS records, one per line (Unbound's `trust-anchor-file`).
    ds_file: PathBuf,
    /// The same, as BIND's `trust-anchors` statement (delv's `-a`).
    delv_anchors: PathBuf,
}

/// The reference deployment signed with new keys of `algorithm` in `roles` (`ksk`, `zsk`, `csk`).
fn signed_zone(algorithm: &str, roles: &[&str]) -> Zone {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    for role in roles {
        let out = run(&[
            "dnssec",
            "keygen",
            "--zone",
            "gslb.example",
            "--algorithm",
            algorithm,
            "--role",
            role,
            "--dir",
            dir.path().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "keygen: {}", stderr(&out));
        keys.push(format!("{:?}", stdout(&out).trim()));
    }
    let mut text = std::fs::read_to_string(example()).unwrap();
    text += &format!(
        "\n[zones.\"gslb.example\".dnssec]\nkeys = [{}]\n",
        keys.join(", ")
    );
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, text).unwrap();
    let check = run(&["config", "check", config.to_str().unwrap()]);
    assert!(check.status.success(), "config check: {}", stderr(&check));

    let ds = run(&["dnssec", "ds", config.to_str().unwrap()]);
    assert!(ds.status.success(), "dnssec ds: {}", stderr(&ds));
    let mut anchor_lines = String::new();
    let mut delv = String::from("trust-anchors {\n");
    for line in stdout(&ds).lines() {
        // `gslb.example. 3600 IN DS TAG ALG 2 DIGEST ; ...`
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&f[..4], ["gslb.example.", "3600", "IN", "DS"], "{line}");
        anchor_lines += &format!("{}\n", f[..8].join(" "));
        delv += &format!(
            "  gslb.example. static-ds {} {} {} \"{}\";\n",
            f[4], f[5], f[6], f[7]
        );
    }
    delv += "};\n";
    let expected_ds = roles.iter().filter(|r| **r != "zsk").count();
    assert_eq!(anchor_lines.lines().count(), expected_ds, "one DS per SEP key");
    let ds_file = dir.path().join("anchor.ds");
    std::fs::write(&ds_file, anchor_lines).unwrap();
    let delv_anchors = dir.path().join("anchors.conf");
    std::fs::write(&delv_anchors, delv).unwrap();
    Zone {
        dir,
        config,
        ds_file,
        delv_anchors,
    }
}

/// `kdig` with `args`, to `server`: its output.
fn kdig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+timeout=2", "+retry=1"])
        .args(args)
        .output()
        .expect("kdig runs (scripts/install-deps installs knot-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `server` answers a query (`args`), up to 15 s.
fn wait_answering(server: SocketAddr, args: &[&str]) {
    let start = Instant::now();
    while !kdig(server, args).contains("status: ") {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{server} never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `meridian dns` serving `zone` (with the test-only signature fault `hook`, if any), answering.
fn start_meridian(zone: &Zone, hook: Option<&str>) -> (Interrupted, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let mut c = meridian();
    c.args([
        "dns",
        "--config",
        zone.config.to_str().unwrap(),
        "--listen",
        &addr.to_string(),
    ])
    .arg("--data-dir")
    .arg(zone.dir.path().join(format!("data-{}", addr.port())))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(h) = hook {
        c.env("MERIDIAN_DNSSEC_TEST_HOOK", h);
    }
    let server = Interrupted(c.spawn().unwrap());
    wait_answering(addr, &["meet.gslb.example", "A"]);
    (server, addr)
}

/// Unbound validating with `zone`'s trust anchor, the zone stubbed to `meridian`, forwarding clients'
/// ECS to it (subnetcache). Its cache is its own: one resolver per scenario.
fn start_unbound(zone: &Zone, meridian: SocketAddr) -> (Interrupted, SocketAddr) {
    let port = free_udp_port();
    let dir = zone.dir.path();
    let conf = dir.join(format!("unbound-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n  use-syslog: no\n  \
             logfile: \"\"\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  \
             do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  trust-anchor-file: \"{anchor}\"\n  \
             module-config: \"subnetcache validator iterator\"\n  send-client-subnet: 127.0.0.1\n  \
             do-not-query-localhost: no\n  qname-minimisation: no\n  val-log-level: 2\n\
             stub-zone:\n  name: \"gslb.example\"\n  stub-addr: 127.0.0.1@{mport}\n\
             remote-control:\n  control-enable: no\n",
            dir = dir.display(),
            anchor = zone.ds_file.display(),
            mport = meridian.port(),
        ),
    )
    .unwrap();
    let child = Command::new("unbound")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unbound runs (scripts/install-deps installs it)");
    let resolver = Interrupted(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_answering(addr, &["id.server", "CH", "TXT"]);
    (resolver, addr)
}

/// The header flags of a kdig answer (`qr rd ra ad`).
fn flags(out: &str) -> Vec<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(";; Flags: "))
        .map(|l| {
            l.split(';')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn status(out: &str) -> String {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The A or AAAA addresses of a kdig answer section.
fn addresses(out: &str, rtype: &str) -> Vec<String> {
    let mut a: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[3] == rtype).then(|| f[4].to_owned())
        })
        .collect();
    a.sort();
    a
}

fn assert_validated(out: &str, want_status: &str, what: &str) {
    assert_eq!(status(out), want_status, "{what}:\n{out}");
    assert!(flags(out).iter().any(|f| f == "ad"), "{what}: no AD flag:\n{out}");
}

#[test]
fn unbound_validates_steered_answers_and_denials() {
    let zone = signed_zone("ecdsap256sha256", &["ksk", "zsk"]);
    let (_meridian, m) = start_meridian(&zone, None);
    let (_unbound, u) = start_unbound(&zone, m);
    // Clients in four countries, located by the ECS Unbound passes on: each its region, each validated.
    for (subnet, want) in [
        ("83.0.0.0/24", "192.0.2.10"),     // Poland: Warsaw
        ("217.0.0.0/24", "192.0.2.20"),    // Germany: Frankfurt
        ("81.2.69.0/24", "192.0.2.30"),    // the UK: London
        ("24.48.0.0/24", "198.51.100.10"), // Canada: Beauharnois
    ] {
        let out = kdig(
            u,
            &["meet.gslb.example", "A", &format!("+subnet={subnet}"), "+dnssec"],
        );
        assert_validated(&out, "NOERROR", subnet);
        let a = addresses(&out, "A");
        assert!(a.contains(&want.to_owned()), "{subnet}: {a:?} should hold {want}");
    }
    let out = kdig(u, &["meet.gslb.example", "AAAA", "+subnet=83.0.0.0/24"]);
    assert_validated(&out, "NOERROR", "AAAA");
    assert!(!addresses(&out, "AAAA").is_empty(), "{out}");
    // Static data, the apex, a CNAME.
    for (name, rtype) in [
        ("gslb.example", "MX"),
        ("gslb.example", "SOA"),
        ("www.gslb.example", "A"),
    ] {
        assert_validated(&kdig(u, &[name, rtype]), "NOERROR", &format!("{name} {rtype}"));
    }
    // NXDOMAIN: a compact denial (NOERROR, no answer), validated.
    let out = kdig(u, &["nosuch.gslb.example", "A", "+dnssec"]);
    assert_validated(&out, "NOERROR", "a name that does not exist");
    assert!(addresses(&out, "A").is_empty());
    // NODATA: a type the steered name lacks.
    let out = kdig(u, &["meet.gslb.example", "TXT", "+dnssec"]);
    assert_validated(&out, "NOERROR", "NODATA");
    assert!(out.contains("ANSWER: 0"), "{out}");
}

#[test]
fn unbound_validates_an_ed25519_combined_key() {
    let zone = signed_zone("ed25519", &["csk"]);
    let (_meridian, m) = start_meridian(&zone, None);
    let (_unbound, u) = start_unbound(&zone, m);
    let out = kdig(u, &["meet.gslb.example", "A", "+subnet=83.0.0.0/24"]);
    assert_validated(&out, "NOERROR", "Ed25519");
    assert_eq!(addresses(&out, "A"), ["192.0.2.10", "192.0.2.11"]);
    assert_validated(
        &kdig(u, &["nosuch.gslb.example", "AAAA"]),
        "NOERROR",
        "Ed25519 denial",
    );
}

#[test]
fn tampered_or_expired_signatures_make_unbound_servfail() {
    let zone = signed_zone("ecdsap256sha256", &["csk"]);
    for hook in ["tamper", "expired"] {
        let (_meridian, m) = start_meridian(&zone, Some(hook));
        let (_unbound, u) = start_unbound(&zone, m);
        let out = kdig(u, &["meet.gslb.example", "A", "+subnet=83.0.0.0/24"]);
        assert_eq!(status(&out), "SERVFAIL", "{hook}:\n{out}");
        // Checking disabled (CD), the same resolver hands over the data: validation is what failed.
        let out = kdig(u, &["meet.gslb.example", "A", "+subnet=83.0.0.0/24", "+cd"]);
        assert_eq!(status(&out), "NOERROR", "{hook} with CD:\n{out}");
        assert!(!flags(&out).iter().any(|f| f == "ad"), "{out}");
    }
}

/// `delv` (BIND's validating lookup) asking Meridian directly, with the zone's DS as trust anchor.
fn delv(zone: &Zone, server: SocketAddr, args: &[&str]) -> Output {
    Command::new("delv")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "-a"])
        .arg(&zone.delv_anchors)
        .arg("+root=gslb.example")
        .args(args)
        .output()
        .expect("delv runs (scripts/install-deps installs bind9-dnsutils)")
}

#[test]
fn kdig_dnssec_answers_carry_signatures_that_delv_verifies() {
    let zone = signed_zone("ecdsap256sha256", &["ksk", "zsk"]);
    let (_meridian, m) = start_meridian(&zone, None);
    // kdig +dnssec straight from Meridian: the answer and its RRSIG; without +dnssec, no RRSIG.
    let out = kdig(m, &["meet.gslb.example", "A", "+subnet=81.2.69.0/24", "+dnssec"]);
    assert!(
        out.lines().any(|l| l.contains("\tRRSIG\tA 13 3 ")),
        "no RRSIG over the A set:\n{out}"
    );
    assert!(out.contains("flags: do"), "DO echoed:\n{out}");
    let plain = kdig(m, &["meet.gslb.example", "A", "+subnet=81.2.69.0/24"]);
    assert!(!plain.contains("RRSIG"), "{plain}");
    let out = kdig(m, &["gslb.example", "DNSKEY", "+dnssec"]);
    assert_eq!(out.matches("\tDNSKEY\t").count(), 2, "{out}");
    // delv validates every kind of answer from the zone's trust anchor.
    for (name, rtype, want) in [
        ("meet.gslb.example", "A", "; fully validated"),
        ("meet.gslb.example", "AAAA", "; fully validated"),
        ("gslb.example", "DNSKEY", "; fully validated"),
        ("gslb.example", "NS", "; fully validated"),
        ("gslb.example", "TXT", "; fully validated"),
        ("_sip._tcp.meet.gslb.example", "SRV", "; fully validated"),
        ("nosuch.gslb.example", "A", "; negative response, fully validated"),
        ("meet.gslb.example", "MX", "; negative response, fully validated"),
        ("meet.gslb.example", "NSEC", "; fully validated"),
    ] {
        let out = delv(&zone, m, &[name, rtype]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(text.contains(want), "delv {name} {rtype}:\n{text}");
    }
    // A tampered signature is caught by delv too.
    drop(_meridian);
    let (_bad, b) = start_meridian(&zone, Some("tamper"));
    let out = delv(&zone, b, &["meet.gslb.example", "A"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains("fully validated"), "{text}");
}

#[test]
fn config_check_reads_the_key_files() {
    let zone = signed_zone("ed25519", &["csk"]);
    let text = std::fs::read_to_string(&zone.config).unwrap();
    let key_line = text.lines().last().unwrap().to_owned();
    // A key that is not there, and one of another zone.
    let other = run(&[
        "dnssec",
        "keygen",
        "--zone",
        "example.org",
        "--dir",
        zone.dir.path().to_str().unwrap(),
    ]);
    let other = stdout(&other).trim().to_owned();
    let broken = text.replace(
        &key_line,
        &format!("keys = [\"/nonexistent/Kgslb.example.+015+00001\", {other:?}]"),
    );
    let path = zone.dir.path().join("broken.toml");
    std::fs::write(&path, broken).unwrap();
    let out = run(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "zones.\"gslb.example\".dnssec.keys[0]: cannot read /nonexistent/Kgslb.example.+015+00001.key"
        ),
        "{err}"
    );
    assert!(
        err.contains("zones.\"gslb.example\".dnssec.keys[1]: ") && err.contains("belongs to example.org."),
        "{err}"
    );
    let out = run(&["dnssec", "ds", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // Unsigned configurations have no DS to print.
    let out = run(&["dnssec", "ds", example().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no signed zone"), "{}", stderr(&out));
}

/// ACME's DNS-01 records (issue 25) in a signed zone, end to end: a challenge document written to the
/// store as the orderer writes it is answered by `meridian dns` with its RRSIG (delv validates it), and
/// once deleted the name is denied with a signed NSEC (delv validates the denial).
#[test]
fn acme_challenge_records_from_the_store_are_signed_and_denied_signed_once_gone() {
    use meridian_store::schema::{AcmeChallengeDoc, encode};
    use meridian_store::{DEFAULT_PREFIX, EtcdOptions, EtcdStore, Keys, KvStore};

    let zone = signed_zone("ecdsap256sha256", &["ksk", "zsk"]);
    let etcd = meridian_store::testing::EtcdServer::start();
    let config = zone.config.to_str().unwrap();
    let applied = run(&[
        "config",
        "apply",
        config,
        "--author",
        "test",
        "--etcd",
        &etcd.client_url,
    ]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let _dns = Interrupted(
        meridian()
            .args(["dns", "--config", config, "--listen", &addr.to_string()])
            .args(["--etcd", &etcd.client_url])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(zone.dir.path().join("dns.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !kdig(addr, &["meet.gslb.example", "A"]).contains("status: ") {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "meridian dns never answered: {}",
            std::fs::read_to_string(zone.dir.path().join("dns.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let key = keys.acme_challenge("meet.gslb.example");
    let store = rt.block_on(async { EtcdStore::new(EtcdOptions::new(vec![etcd.client_url.clone()])) });
    let store = store.unwrap();
    let doc = AcmeChallengeDoc {
        schema: 1,
        values: vec!["challenge-value-0123456789".into()],
        holder: "proxy/test".into(),
    };
    rt.block_on(store.put(&key, encode(&doc), None)).unwrap();

    let name = "_acme-challenge.meet.gslb.example";
    let start = Instant::now();
    let mut out = String::new();
    while !out.contains("challenge-value-0123456789") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the challenge never answered:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
        out = kdig(addr, &[name, "TXT", "+dnssec"]);
    }
    assert!(
        out.lines().any(|l| l.contains("\tRRSIG\tTXT 13 4 ")),
        "no RRSIG over the challenge TXT set:\n{out}"
    );
    let v = delv(&zone, addr, &[name, "TXT"]);
    let text = format!("{}{}", stdout(&v), stderr(&v));
    assert!(
        text.contains("; fully validated") && text.contains("challenge-value-0123456789"),
        "delv {name} TXT:\n{text}"
    );

    rt.block_on(store.delete(&key)).unwrap();
    let start = Instant::now();
    while out.contains("challenge-value-0123456789") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the challenge outlived its key:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
        out = kdig(addr, &[name, "TXT", "+dnssec"]);
    }
    assert!(
        out.lines().any(|l| l.contains("\tNSEC\t")) && out.lines().any(|l| l.contains("\tRRSIG\tNSEC 13 ")),
        "no signed denial:\n{out}"
    );
    let v = delv(&zone, addr, &[name, "TXT"]);
    let text = format!("{}{}", stdout(&v), stderr(&v));
    assert!(
        text.contains("; negative response, fully validated"),
        "delv {name} TXT after removal:\n{text}"
    );
}
