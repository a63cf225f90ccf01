//! ACME end to end against Pebble (Let's Encrypt's test CA, real DNS-01 validation: `PEBBLE_VA_NOSLEEP`
//! and `PEBBLE_VA_ALWAYS_VALID` unset, no authorisation reused, a fifth of good nonces rejected, validation
//! sleeps of up to 5 s):
//! two `meridian dns` nodes and two `meridian proxy` nodes on one etcd; Pebble's resolver is the first DNS
//! node. A certificate for `meet.gslb.example` and `*.gslb.example` is issued and served (curl with
//! Pebble's root, fetched from its management API), its challenge TXT records answered by both DNS nodes
//! (kdig; the orderer waited for both nodes' registrations to report them) and gone after validation;
//! renewed at half its 40-second life. With Pebble's DNS node stopped, the CA finds the challenge invalid:
//! the order fails, the error shows in `meridian status` and the metrics, and the renewed certificate keeps
//! serving; with Pebble stopped too, the next order fails to connect, after a longer backoff.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_store::testing::EtcdServer;

use crate::edge_tls::Pki;
use crate::support::{Interrupted, free_tcp_port, free_udp_port, http_get, meridian, stderr, stdout};

const TOKEN: &str = "acme-test-token-0123456789";

fn config(origin: SocketAddr, dir: &Path, pebble: u16, file_cert: (&Path, &Path)) -> String {
    let extra = format!(
        r#"[tls]
reload-interval-ms = 300
[[tls.certificates]]
cert = "{cert}"
key = "{key}"

[acme]
directory = "https://localhost:{pebble}/dir"
contact = ["mailto:ops@gslb.example"]
ca-root = "{dir}/pki/ca.pem"
key-file = "{dir}/acme.key"
renew-fraction = 0.5
retry-initial-ms = 1000
retry-max-ms = 4000
propagation-delay-ms = 300
[[acme.certificates]]
names = ["meet.gslb.example", "*.gslb.example"]
# Its own account (other contacts than [acme]'s: the CA could be another one too).
directory = "https://localhost:{pebble}/dir"
contact = ["mailto:certs@gslb.example"]
ca-root = "{dir}/pki/ca.pem"
"#,
        cert = file_cert.0.display(),
        key = file_cert.1.display(),
        dir = dir.display(),
    );
    crate::edge_tls::waw_config(origin, &["meet", "www"], &extra)
}

/// The TXT values `addr` answers for `name` (kdig over UDP).
fn txt(addr: SocketAddr, name: &str) -> Vec<String> {
    let out = Command::new("kdig")
        .args([
            &format!("@{}", addr.ip()),
            "-p",
            &addr.port().to_string(),
            "+short",
            "+time=1",
            "+retry=0",
            name,
            "TXT",
        ])
        .output()
        .expect("kdig runs");
    stdout(&out)
        .lines()
        .map(|l| l.trim().trim_matches('"').to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with(";;"))
        .collect()
}

/// The serial and issuer of the certificate the proxy serves for `host`.
fn served(https: SocketAddr, host: &str) -> String {
    let mut s_client = Command::new("openssl")
        .args(["s_client", "-connect", &https.to_string(), "-servername", host])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-issuer"])
        .stdin(s_client.stdout.take().unwrap())
        .output()
        .unwrap();
    let _ = s_client.wait();
    stdout(&x509)
}

fn curl(https: SocketAddr, host: &str, ca: &Path) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("{host}:{}:127.0.0.1", https.port())])
        .arg(format!("https://{host}:{}/", https.port()))
        .output()
        .unwrap();
    (
        out.status.success() && stdout(&out) == "200",
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

fn metric(addr: SocketAddr, line_start: &str) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The failures in a row `meridian status` shows for the certificate (`last error (N failure(s), ...`).
fn failures(status: &str) -> u32 {
    status
        .split("last error (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failure count in {status}"))
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Pebble {
    acme: u16,
    management: u16,
    process: Interrupted,
}

/// Pebble, asking `dns` for the challenge records; its output goes to DIR/pebble.log.
fn start_pebble(dir: &Path, pki: &Pki, dns: SocketAddr) -> Pebble {
    let (cert, key) = pki.leaf("pebble", "ec", "ca", "localhost", &["localhost"]);
    let (acme, management) = (free_tcp_port(), free_tcp_port());
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": free_tcp_port(),
            "tlsPort": free_tcp_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": 40
        }
    });
    let file = dir.join("pebble.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
    let process = Interrupted(
        Command::new("pebble")
            .arg("-config")
            .arg(&file)
            .args(["-dnsserver", &dns.to_string()])
            // Real validation, with Pebble's random delay before each validation (up to 15 s by
            // default) kept at up to 5 s, and a fifth of good nonces rejected (instant-acme retries a
            // badNonce twice; a third in a row fails the order into backoff).
            .env_remove("PEBBLE_VA_NOSLEEP")
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .env("PEBBLE_VA_SLEEPTIME", "5")
            .env("PEBBLE_WFE_NONCEREJECT", "20")
            // Every order validated anew (Pebble reuses half of the valid authorisations by default).
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble runs (scripts/install-deps installs it)"),
    );
    wait_for("Pebble to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", acme)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", management)).is_ok()
    });
    Pebble {
        acme,
        management,
        process,
    }
}

fn start_dns(
    etcd: &EtcdServer,
    file: &Path,
    admin: Option<(SocketAddr, &Path)>,
) -> (SocketAddr, Interrupted) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let mut cmd = meridian();
    cmd.args(["dns", "--rrl-rate", "0", "--listen", &addr.to_string()])
        .arg("--config")
        .arg(file)
        .args(["--etcd", &etcd.client_url]);
    if let Some((admin, token)) = admin {
        cmd.args(["--admin-listen", &admin.to_string()])
            .arg("--admin-token-file")
            .arg(token);
    }
    let log = file.with_file_name(format!("dns-{}.log", addr.port()));
    let process = Interrupted(
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Command::new("kdig")
        .args([
            &format!("@{}", addr.ip()),
            "-p",
            &addr.port().to_string(),
            "+time=1",
            "+retry=0",
        ])
        .args(["ns1.gslb.example", "A", "+short"])
        .output()
        .is_ok_and(|o| stdout(&o).contains("203.0.113.53"))
    {
        assert!(
            Instant::now() < deadline,
            "a DNS node did not answer: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (addr, process)
}

#[test]
fn pebble_issues_renews_and_a_failing_ca_keeps_the_old_certificate_serving() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    eprintln!("logs in {}", d.display());
    std::fs::create_dir(d.join("pki")).unwrap();
    let pki = Pki::new(&d.join("pki"));
    let file_cert = pki.leaf("api", "ec", "ca", "api.gslb.example", &["api.gslb.example"]);
    std::fs::write(d.join("acme.key"), format!("{}\n", "5a".repeat(32))).unwrap();
    let token = d.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let origin = rt
        .block_on(meridian_proxy::testing::Origin::start("waw"))
        .unwrap();
    let etcd = EtcdServer::start();

    // Two DNS nodes on the store; Pebble asks the first.
    let placeholder = config(origin.addr, d, 1, (&file_cert.0, &file_cert.1));
    let file = d.join("meridian.toml");
    std::fs::write(&file, &placeholder).unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let (dns1, mut dns1_process) = start_dns(&etcd, &file, None);
    let (dns2, _dns2) = start_dns(&etcd, &file, Some((admin, &token)));
    let mut pebble = start_pebble(d, &pki, dns1);
    let text = config(origin.addr, d, pebble.acme, (&file_cert.0, &file_cert.1));
    std::fs::write(&file, &text).unwrap();
    let check = meridian().args(["config", "check"]).arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let applied = meridian()
        .args(["config", "apply"])
        .arg(&file)
        .args(["--author", "test", "--etcd", &etcd.client_url])
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", stderr(&applied));

    // Pebble's issuing root, from its management API.
    let root = d.join("pebble-root.pem");
    let got = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(pki.ca())
        .arg(format!("https://localhost:{}/roots/0", pebble.management))
        .arg("-o")
        .arg(&root)
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", stderr(&got));

    // Watch both DNS nodes for the challenge records from before the proxy starts ordering.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen: Vec<(Vec<String>, Vec<String>)> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let a = txt(dns1, "_acme-challenge.meet.gslb.example");
                if !a.is_empty() {
                    let b = txt(dns2, "_acme-challenge.meet.gslb.example");
                    seen.push((a, b));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        })
    };

    // Two proxies of the region, each running the renewal loop: one orders at a time.
    let proxy = |name: &str| {
        let https: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let process = Interrupted(
            meridian()
                .args([
                    "proxy",
                    "--region",
                    "waw",
                    "--grace-period",
                    "1",
                    "--instance",
                    name,
                ])
                .args([
                    "--listen",
                    &http.to_string(),
                    "--https-listen",
                    &https.to_string(),
                ])
                .args(["--metrics-listen", &metrics.to_string()])
                .arg("--config")
                .arg(&file)
                .args(["--etcd", &etcd.client_url])
                // The orderer's steps (which DNS nodes it waited for) are logged at info.
                .env("RUST_LOG", "warn,meridian_acme=info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join(format!("{name}.log"))).unwrap())
                .spawn()
                .unwrap(),
        );
        (https, metrics, process)
    };
    let (https, metrics, _proxy) = proxy("proxy");
    let (https2, metrics2, _proxy2) = proxy("proxy2");
    let orders = || {
        [metrics, metrics2]
            .iter()
            .filter_map(|m| metric(*m, "meridian_acme_orders_total{result=\"ok\"}"))
            .sum::<f64>()
    };

    // Issued and served for the name and, by the wildcard, for another one.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !served(https, "meet.gslb.example").contains("Pebble") {
        assert!(
            Instant::now() < deadline,
            "no ACME certificate served; the proxy said: {}",
            std::fs::read_to_string(d.join("proxy.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let first = served(https, "meet.gslb.example");
    // The certificate's own account, not [acme]'s: kept apart in the store, sealed.
    {
        use meridian_store::{DEFAULT_PREFIX, EtcdOptions, EtcdStore, Keys, KvStore};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let keys = Keys::new(DEFAULT_PREFIX).unwrap();
        let store = EtcdStore::new(EtcdOptions::new(vec![etcd.client_url.clone()])).unwrap();
        let listed = rt
            .block_on(store.list(&format!("{DEFAULT_PREFIX}acme/")))
            .unwrap();
        let accounts: Vec<&str> = listed
            .kvs
            .iter()
            .map(|kv| kv.key.as_str())
            .filter(|k| k.contains("/acme/account"))
            .collect();
        assert_eq!(accounts.len(), 1, "{accounts:?}");
        assert!(accounts[0].starts_with(&keys.acme_account_at("")), "{accounts:?}");
        let doc = &listed.kvs.iter().find(|kv| kv.key == accounts[0]).unwrap().value;
        assert!(
            !String::from_utf8_lossy(doc).contains("BEGIN"),
            "sealed, no key in clear"
        );
    }
    // The other proxy serves the same certificate, and only one order was made.
    wait_for("the second proxy to serve it", Duration::from_secs(10), || {
        served(https2, "meet.gslb.example") == first
    });
    assert_eq!(orders(), 1.0, "one order for the fleet");
    for host in ["meet.gslb.example", "www.gslb.example"] {
        let (ok, out) = curl(https, host, &root);
        assert!(ok, "{host} with Pebble's root: {out}");
    }
    // The file certificate still serves its own name.
    assert!(!served(https, "api.gslb.example").contains("Pebble"));
    // Gone after validation, on both nodes.
    assert!(txt(dns1, "_acme-challenge.meet.gslb.example").is_empty());
    assert!(txt(dns2, "_acme-challenge.gslb.example").is_empty());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = seen.join().unwrap();
    assert!(
        !seen.is_empty(),
        "the challenge TXT record was never seen on the first DNS node"
    );
    assert!(
        seen.iter().any(|(a, b)| a == b),
        "the second DNS node never answered the same challenge values: {seen:?}"
    );
    // The orderer waited for both DNS nodes' registrations to report the challenge records.
    let logs = || {
        ["proxy.log", "proxy2.log"]
            .iter()
            .map(|f| std::fs::read_to_string(d.join(f)).unwrap_or_default())
            .collect::<String>()
    };
    let waited = logs();
    let line = waited
        .lines()
        .find(|l| l.contains("challenge records served by DNS nodes"))
        .unwrap_or_else(|| panic!("the orderer did not wait for the DNS nodes:\n{waited}"));
    assert_eq!(
        line.split("DNS nodes [")
            .nth(1)
            .and_then(|l| l.split(']').next())
            .map(|l| l.matches('"').count()),
        Some(4),
        "both DNS nodes: {line}"
    );
    assert!(!waited.contains("DNS nodes lag"), "{waited}");

    // The per-certificate expiry metric covers it.
    let expiry = metric(
        metrics,
        "meridian_tls_certificate_expiry_timestamp_seconds{name=\"meet.gslb.example\"}",
    );
    assert!(expiry.is_some(), "no expiry metric for the ACME certificate");

    // Renewed at half its life: another serial, still valid for curl.
    wait_for("a renewal", Duration::from_secs(90), || {
        let now = served(https, "meet.gslb.example");
        now.contains("Pebble") && now != first
    });
    let renewed = served(https, "meet.gslb.example");
    wait_for(
        "the second proxy to serve the renewal",
        Duration::from_secs(10),
        || served(https2, "meet.gslb.example") == renewed,
    );
    assert_eq!(orders(), 2.0, "one order per renewal for the fleet");
    assert!(curl(https, "www.gslb.example", &root).0);

    // Pebble's DNS node stops: the CA cannot find the challenge records, the order fails; status says
    // why, the metrics say it fails, the renewed certificate keeps serving.
    dns1_process.interrupt();
    let status = || {
        let out = meridian()
            .args(["status", "--server", &format!("http://{admin}")])
            .arg("--token-file")
            .arg(&token)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    // (A badNonce rejected three times in a row also fails an order: wait for the CA's own reason.)
    wait_for(
        "the invalid challenge in meridian status",
        Duration::from_secs(90),
        || {
            let text = status();
            text.contains("last error (") && text.contains("Error retrieving TXT records")
        },
    );
    let invalid = status();
    eprintln!("{invalid}");
    let failures_then = failures(&invalid);
    wait_for(
        "the renewal failure in the metrics",
        Duration::from_secs(10),
        || {
            [metrics, metrics2]
                .iter()
                .all(|m| metric(*m, "meridian_acme_renewal_failing{name=\"meet.gslb.example\"}") == Some(1.0))
        },
    );
    let (_, body) = http_get(metrics, "/metrics");
    assert!(
        body.lines()
            .any(|l| l.starts_with("meridian_acme_last_error_info{certificate=\"meet.gslb.example\",error=")),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("meridian_acme_certificate_info{")
                && l.contains("names=\"meet.gslb.example,*.gslb.example\"")
                && l.contains("issuer=\"CN=Pebble")),
        "{body}"
    );
    assert_eq!(
        metric(
            metrics,
            &format!(
                "meridian_acme_key_file_ok{{file=\"{}\"}}",
                d.join("acme.key").display()
            )
        ),
        Some(1.0)
    );
    let errors = || {
        [metrics, metrics2]
            .iter()
            .filter_map(|m| metric(*m, "meridian_acme_orders_total{result=\"error\"}"))
            .sum::<f64>()
    };
    assert!(errors() >= 1.0);
    // (An order already validated when the node stopped may have renewed it once more: the certificate
    // serving now is the one that must keep serving.)
    let kept = served(https, "meet.gslb.example");
    assert!(kept.contains("Pebble"), "{kept}");
    assert!(curl(https, "meet.gslb.example", &root).0);

    // The CA itself goes away: the next order (after a doubled wait) cannot connect.
    pebble.process.interrupt();
    wait_for(
        "the connection error in meridian status",
        Duration::from_secs(60),
        || {
            let text = status();
            text.contains("(Connect)") && failures(&text) > failures_then
        },
    );
    let status_text = status();
    eprintln!("{status_text}");
    assert!(
        status_text.contains("meet.gslb.example, *.gslb.example: issuer CN=Pebble"),
        "status shows the certificate: {status_text}"
    );
    // Pebble does not log the good nonces it rejects, but it logs every request: over this many POSTs
    // at a 20 % rejection rate, some were rejected (the chance of none is 0.8^25 < 0.4 %), and every
    // order above was made through them. (A run makes 35-60 POSTs: how often the orders are polled
    // varies with Pebble's random validation delays.)
    let pebble_log = std::fs::read_to_string(d.join("pebble.log")).unwrap_or_default();
    let posts = pebble_log
        .lines()
        .filter(|l| l.contains(" POST /") && l.contains("-> calling handler()"))
        .count();
    assert!(posts >= 25, "only {posts} POSTs to Pebble:\n{pebble_log}");
    // The last issued certificate keeps serving, valid.
    assert_eq!(served(https, "meet.gslb.example"), kept);
    let (ok, out) = curl(https, "meet.gslb.example", &root);
    assert!(ok, "the renewed certificate stopped serving: {out}");
}

#[test]
fn acme_without_a_directory_or_with_a_bad_key_file_is_rejected_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("pki")).unwrap();
    let pki = Pki::new(&d.join("pki"));
    let cert = pki.leaf("api", "ec", "ca", "api.gslb.example", &["api.gslb.example"]);
    let origin: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let good = config(origin, d, 14000, (&cert.0, &cert.1));
    let file = d.join("m.toml");

    let no_directory = good.replace("directory = \"https://localhost:14000/dir\"\n", "");
    std::fs::write(&file, no_directory).unwrap();
    let out = meridian().args(["config", "check"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("acme.directory: is required"),
        "{}",
        stderr(&out)
    );

    std::fs::write(d.join("acme.key"), "not a key").unwrap();
    std::fs::write(&file, &good).unwrap();
    let out = meridian().args(["config", "check"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("acme.key-file") && err.contains(&d.join("acme.key").display().to_string()),
        "{err}"
    );

    // A proxy does not start without a usable key file either, and says which.
    let https = free_tcp_port();
    let out = meridian()
        .args(["proxy", "--region", "waw", "--grace-period", "1"])
        .args(["--listen", &format!("127.0.0.1:{}", free_tcp_port())])
        .args(["--https-listen", &format!("127.0.0.1:{https}")])
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(d.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("acme.key-file") && err.contains(&d.join("acme.key").display().to_string()),
        "{err}"
    );

    let outside = good.replace("\"*.gslb.example\"", "\"*.elsewhere.example\"");
    std::fs::write(d.join("acme.key"), "ab".repeat(32)).unwrap();
    std::fs::write(&file, outside).unwrap();
    let out = meridian().args(["config", "check"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("acme.certificates[0].names[1]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_acme_alert_rules_pass_promtool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    for args in [
        ["check", "rules", "acme.rules.yml"],
        ["test", "rules", "acme.rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs (scripts/install-deps installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

/// `meridian up --acme-directory --acme-ca` against Pebble, whose resolver is `up`'s DNS server: every
/// service hostname's certificate comes from Pebble and is served by the regions' proxies.
#[test]
fn meridian_up_gets_its_certificates_from_a_local_acme_ca() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("pki")).unwrap();
    let pki = Pki::new(&d.join("pki"));
    let dns: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let pebble = start_pebble(d, &pki, dns);
    let mut child = meridian()
        .args([
            "up",
            "--dns-listen",
            &dns.to_string(),
            "--metrics-listen",
            &metrics.to_string(),
        ])
        .args([
            "--admin-listen",
            &admin.to_string(),
            "--proxy-port",
            "0",
            "--https-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(d.join("data"))
        .args([
            "--acme-directory",
            &format!("https://localhost:{}/dir", pebble.acme),
        ])
        .arg("--acme-ca")
        .arg(pki.ca())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(d.join("up.log")).unwrap())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let _up = Interrupted(child);
    let mut banner = String::new();
    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Ctrl-C stops everything") {
            break;
        }
    }
    assert!(
        banner.starts_with("meridian up: ready"),
        "{banner}{}",
        std::fs::read_to_string(d.join("up.log")).unwrap_or_default()
    );
    // Warsaw's HTTPS address, from its banner line.
    let https: SocketAddr = banner
        .lines()
        .find(|l| l.trim_start().starts_with("region    waw"))
        .and_then(|l| l.split("https://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no HTTPS address for waw in:\n{banner}"));
    let root = d.join("pebble-root.pem");
    let got = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(pki.ca())
        .arg(format!("https://localhost:{}/roots/0", pebble.management))
        .arg("-o")
        .arg(&root)
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", stderr(&got));
    let deadline = Instant::now() + Duration::from_secs(120);
    for host in ["meet.gslb.example", "api.gslb.example"] {
        while !served(https, host).contains("Pebble") {
            assert!(
                Instant::now() < deadline,
                "no ACME certificate for {host}; up said: {}",
                std::fs::read_to_string(d.join("up.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        let (ok, out) = curl(https, host, &root);
        assert!(ok, "{host} with Pebble's root: {out}");
    }
    let status = meridian()
        .args(["status", "--server", &format!("http://{admin}")])
        .arg("--token-file")
        .arg(d.join("data/admin-token"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stdout(&status).contains("certificates (ACME):"),
        "{}",
        stdout(&status)
    );
}
