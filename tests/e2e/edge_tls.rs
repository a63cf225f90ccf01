//! `meridian proxy --https-listen` against real clients on loopback: curl (HTTP/1.1 and HTTP/2),
//! `openssl s_client` (SNI, the default certificate, ALPN, TLS 1.2, an RSA chain), wrk (a certificate
//! reload under load with no failed request), and raw sockets (TLS garbage, a stalled handshake). The
//! certificates are made by `openssl` for each test: an ECDSA CA, an RSA intermediate, ECDSA and RSA
//! leaves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_proxy::testing::Origin;

use crate::support::{Interrupted, free_tcp_port, http_get};

/// Test certificates made by `openssl` in a directory.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A CA (`ca.pem`), an RSA intermediate under it (`inter.pem`), and the leaves named in [`Pki::leaf`].
    pub(crate) fn new(dir: &Path) -> Self {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=Meridian test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        std::fs::write(
            dir.join("inter.ext"),
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "inter.key",
                "-out",
                "inter.csr",
                "-subj",
                "/CN=Meridian test intermediate",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "inter.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "inter.pem",
                "-days",
                "30",
                "-extfile",
                "inter.ext",
            ],
        );
        Self { dir: dir.to_owned() }
    }

    /// Makes `NAME.pem` (the leaf, then its issuer when that is the intermediate) and `NAME.key`:
    /// `kind` "ec" or "rsa", signed by "ca" or "inter", for DNS names `names`, subject `cn`.
    pub(crate) fn leaf(
        &self,
        name: &str,
        kind: &str,
        issuer: &str,
        cn: &str,
        names: &[&str],
    ) -> (PathBuf, PathBuf) {
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        std::fs::write(
            self.dir.join(format!("{name}.ext")),
            format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
                san.join(",")
            ),
        )
        .unwrap();
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let subj = format!("/CN={cn}");
        let mut req = vec![
            "req", "-new", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj,
        ];
        match kind {
            "ec" => req.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            _ => req.extend(["-newkey", "rsa:2048"]),
        }
        openssl(&self.dir, &req);
        let leaf = format!("{name}.leaf");
        let ext = format!("{name}.ext");
        let (ca, ca_key) = (format!("{issuer}.pem"), format!("{issuer}.key"));
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &leaf,
                "-days",
                "30",
                "-extfile",
                &ext,
            ],
        );
        let mut chain = std::fs::read_to_string(self.dir.join(&leaf)).unwrap();
        if issuer == "inter" {
            chain += &std::fs::read_to_string(self.dir.join("inter.pem")).unwrap();
        }
        let pem = self.dir.join(format!("{name}.pem"));
        std::fs::write(&pem, chain).unwrap();
        (pem, self.dir.join(key))
    }

    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

pub(crate) fn config(origin: SocketAddr, tls: &str) -> String {
    waw_config(origin, &["api", "www"], tls)
}

/// One region, waw, whose proxy serves each of `services` (hostname `NAME.gslb.example`) from `origin`, and
/// the zone gslb.example; then `extra` (the tests' `[tls]`, `[acme]`, ...).
pub(crate) fn waw_config(origin: SocketAddr, services: &[&str], extra: &str) -> String {
    let mut out = String::from(meridian_config::fixtures::ONE_REGION);
    for name in services {
        out += &format!(
            "\n[services.{name}]\nhostname = \"{name}.gslb.example\"\npolicy = \"nearest\"\nregions = [\"waw\"]\n\
             [services.{name}.backends]\nwaw = [\"{origin}\"]\n"
        );
    }
    out + "\n" + extra + "\n"
}

/// A running `meridian proxy` with HTTP, HTTPS and metrics listeners.
struct Edge {
    http: SocketAddr,
    https: SocketAddr,
    metrics: SocketAddr,
    process: Interrupted,
}

fn start_edge(dir: &Path, config_text: &str) -> Edge {
    let file = dir.join("meridian.toml");
    std::fs::write(&file, config_text).unwrap();
    let check = crate::support::run(&["config", "check", file.to_str().unwrap()]);
    assert!(check.status.success(), "{}", crate::support::stderr(&check));
    let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let https: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let process = Interrupted(
        Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["proxy", "--region", "waw", "--grace-period", "1"])
            .args([
                "--listen",
                &http.to_string(),
                "--https-listen",
                &https.to_string(),
            ])
            .args(["--metrics-listen", &metrics.to_string()])
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(https).is_err() || http_get(metrics, "/metrics").0 != 200 {
        assert!(Instant::now() < deadline, "the proxy did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Edge {
        http,
        https,
        metrics,
        process,
    }
}

/// curl over HTTPS to `host` at the edge: (HTTP version, status, response headers, body).
fn curl(edge: &Edge, ca: &Path, host: &str, path: &str, version: &str) -> (String, u16, String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            version,
            "-D",
            "-",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("{host}:{}:127.0.0.1", edge.https.port())])
        .arg(format!("https://{host}:{}{path}", edge.https.port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {host}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rest, last) = text.rsplit_once('\n').unwrap();
    let (version, code) = last.split_once(' ').unwrap();
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (
        version.to_owned(),
        code.parse().unwrap(),
        head.to_ascii_lowercase(),
        body.to_owned(),
    )
}

/// `openssl s_client` to the edge with `args`: what it printed (certificate subjects, ALPN, protocol).
fn s_client(edge: &Edge, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &edge.https.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The WebSocket client (python3-websockets): `url` through `addr`; its output lines.
pub(crate) fn websocket(url: &str, addr: SocketAddr, extra: &[&str]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/clients/ws_echo.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .args([url, &addr.to_string()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "websocket client: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn metric(edge: &Edge, line_start: &str) -> f64 {
    let (_, body) = http_get(edge.metrics, "/metrics");
    body.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn tls_section(pki: &Pki, extra: &str) -> String {
    let d = pki.dir.display();
    format!(
        r#"[tls]
handshake-timeout-ms = 500
hsts-max-age-s = 600
{extra}
[[tls.certificates]]
cert = "{d}/api.pem"
key = "{d}/api.key"
[[tls.certificates]]
cert = "{d}/www.pem"
key = "{d}/www.key"
default = true
"#
    )
}

/// What most tests start from: a CA with ECDSA leaves for api ("CN=`api_cn`") and www ("CN=www ecdsa"), a
/// runtime and the region's origin.
struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    _rt: tokio::runtime::Runtime,
    origin: Origin,
}

fn setup(api_cn: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    pki.leaf("api", "ec", "ca", api_cn, &["api.gslb.example"]);
    pki.leaf("www", "ec", "ca", "www ecdsa", &["www.gslb.example"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let origin = rt.block_on(Origin::start("waw")).unwrap();
    Setup {
        dir,
        pki,
        _rt: rt,
        origin,
    }
}

#[test]
fn https_clients_get_the_certificate_of_their_name_over_h2_and_http_1_1() {
    let Setup {
        dir,
        pki,
        _rt,
        origin,
    } = setup("api ecdsa");
    // www: an RSA leaf under the RSA intermediate (its chain carries the intermediate), with a wildcard.
    pki.leaf(
        "www",
        "rsa",
        "inter",
        "www rsa",
        &["www.gslb.example", "*.rsa.example"],
    );
    let edge = start_edge(dir.path(), &config(origin.addr, &tls_section(&pki, "")));

    // HTTP/1.1 and HTTP/2, each verified against the CA: the ECDSA leaf, and the RSA leaf whose chain
    // carries the intermediate.
    for (version, expect) in [("--http1.1", "1.1"), ("--http2", "2")] {
        for host in ["api.gslb.example", "www.gslb.example"] {
            let (v, status, head, body) = curl(&edge, &pki.ca(), host, "/x?y=1", version);
            assert_eq!((v.as_str(), status), (expect, 200), "{host} {version}: {head}");
            assert!(body.contains("region=waw"), "{body}");
            assert!(body.contains("x-forwarded-proto=https"), "{body}");
            assert!(body.contains("proto=https"), "{body}");
            assert!(head.contains("strict-transport-security: max-age=600"), "{head}");
            assert!(head.contains("x-meridian-region: waw"), "{head}");
        }
    }

    // HTTP/1.1 over TLS on one keep-alive connection: a GET (fast path), a POST (handed to pingora with
    // the octets already read put back), then a GET again (back on the fast path).
    let port = edge.https.port();
    let handshakes = "meridian_proxy_tls_handshakes_total{listener=\"https\",region=\"waw\",result=\"ok\"}";
    let (before, handed_before) = (
        metric(&edge, handshakes),
        metric(&edge, "meridian_proxy_handed_over_total{region=\"waw\"}"),
    );
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert", pki.ca().to_str().unwrap()])
        .args(["--resolve", &format!("api.gslb.example:{port}:127.0.0.1")])
        .arg(format!("https://api.gslb.example:{port}/one"))
        .args(["--next", "--http1.1", "-X", "POST", "-d", "x=1"])
        .args(["--cacert", pki.ca().to_str().unwrap()])
        .args(["--resolve", &format!("api.gslb.example:{port}:127.0.0.1")])
        .arg(format!("https://api.gslb.example:{port}/two"))
        .args(["--next", "--http1.1", "--cacert", pki.ca().to_str().unwrap()])
        .args(["--resolve", &format!("api.gslb.example:{port}:127.0.0.1")])
        .arg(format!("https://api.gslb.example:{port}/three"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("region=waw").count(), 3, "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).is_empty(), "{out:?}");
    assert_eq!(
        metric(&edge, handshakes),
        before + 1.0,
        "one connection for the three"
    );
    assert_eq!(
        metric(&edge, "meridian_proxy_handed_over_total{region=\"waw\"}"),
        handed_before + 1.0,
        "the POST was handed over"
    );

    // SNI picks the certificate; an unknown name or none gets the default (the RSA one).
    let out = s_client(
        &edge,
        &["-servername", "api.gslb.example", "-alpn", "h2,http/1.1"],
    );
    assert!(out.contains("CN = api ecdsa"), "{out}");
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    let out = s_client(&edge, &["-servername", "nope.example", "-alpn", "http/1.1"]);
    assert!(out.contains("CN = www rsa"), "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    let out = s_client(&edge, &["-noservername"]);
    assert!(out.contains("CN = www rsa"), "{out}");
    // A wildcard name of the RSA certificate, over TLS 1.2, with its chain verified.
    let ca = pki.ca();
    let out = s_client(
        &edge,
        &[
            "-servername",
            "a.rsa.example",
            "-tls1_2",
            "-CAfile",
            ca.to_str().unwrap(),
        ],
    );
    assert!(out.contains("CN = www rsa"), "{out}");
    assert!(out.contains("TLSv1.2"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("CN = Meridian test intermediate"), "{out}");

    // Plain HTTP redirects to the same URL over HTTPS (308), and curl follows it.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .args(["-H", "Host: api.gslb.example"])
        .arg(format!("http://{}/a/b?c=d", edge.http))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("308 https://api.gslb.example:{}/a/b?c=d", edge.https.port())
    );
    let out = Command::new("curl")
        .args([
            "-sS",
            "-L",
            "-X",
            "POST",
            "-d",
            "x=1",
            "--cacert",
            ca.to_str().unwrap(),
        ])
        .args([
            "--resolve",
            &format!("api.gslb.example:{}:127.0.0.1", edge.https.port()),
        ])
        .args([
            "--resolve",
            &format!("api.gslb.example:{}:127.0.0.1", edge.http.port()),
        ])
        .arg(format!("http://api.gslb.example:{}/post", edge.http.port()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("x-forwarded-proto=https"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        metric(
            &edge,
            "meridian_proxy_tls_handshakes_total{listener=\"https\",region=\"waw\",result=\"ok\"}"
        ) >= 8.0
    );

    // WebSocket over TLS through the proxy to the origin (residency and spills decided at the upgrade).
    let url = format!("wss://api.gslb.example:{}/chat", edge.https.port());
    let lines = websocket(
        &url,
        edge.https,
        &["--ca", ca.to_str().unwrap(), "hello", "again"],
    );
    assert_eq!(lines, ["waw:hello", "waw:again"]);
    drop(edge);
}

#[test]
fn websockets_close_after_their_idle_timeout() {
    let Setup {
        dir,
        pki,
        _rt,
        origin,
    } = setup("api ecdsa");
    let text = config(origin.addr, &tls_section(&pki, "plain-http = \"serve\"")).replace(
        "schema-version = 1\n",
        "schema-version = 1\n[proxy]\nwebsocket-idle-timeout-ms = 700\n",
    );
    let edge = start_edge(dir.path(), &text);
    let url = format!("ws://api.gslb.example:{}/chat", edge.http.port());
    // Messages keep the tunnel open past the idle timeout; silence closes it.
    let lines = websocket(&url, edge.http, &["--idle", "3", "a", "b", "c"]);
    assert_eq!(lines, ["waw:a", "waw:b", "waw:c", "CLOSED"]);
    let lines = websocket(&url, edge.http, &["--idle", "0.3", "x"]);
    assert_eq!(lines, ["waw:x", "OPEN"]);
}

#[test]
fn tls_garbage_and_stalled_handshakes_end_within_the_handshake_timeout() {
    let Setup {
        dir,
        pki,
        _rt,
        origin,
    } = setup("api ecdsa");
    let edge = start_edge(dir.path(), &config(origin.addr, &tls_section(&pki, "")));

    // A client that connects and says nothing: closed once the 500 ms handshake timeout is over.
    let start = Instant::now();
    let mut s = TcpStream::connect(edge.https).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(8),
        "{waited:?}"
    );

    // Plain HTTP and random octets on the HTTPS port: refused at once, never a hang.
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: api.gslb.example\r\n\r\n".to_vec(),
        (0..600u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ] {
        let start = Instant::now();
        let mut s = TcpStream::connect(edge.https).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&garbage);
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
        assert!(!String::from_utf8_lossy(&all).contains("HTTP/1.1 200"));
    }
    assert!(
        metric(
            &edge,
            "meridian_proxy_tls_handshakes_total{listener=\"https\",region=\"waw\",result=\"timeout\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &edge,
            "meridian_proxy_tls_handshakes_total{listener=\"https\",region=\"waw\",result=\"failed\"}"
        ) >= 2.0
    );
    // And the edge still serves.
    let (_, status, _, _) = curl(&edge, &pki.ca(), "api.gslb.example", "/", "--http2");
    assert_eq!(status, 200);
}

#[test]
fn a_certificate_reload_under_load_fails_no_request_and_a_broken_file_keeps_the_old_one() {
    let Setup {
        dir,
        pki,
        _rt,
        origin,
    } = setup("api one");
    let (next_cert, next_key) = pki.leaf("next", "ec", "ca", "api two", &["api.gslb.example"]);
    let edge = start_edge(
        dir.path(),
        &config(origin.addr, &tls_section(&pki, "reload-interval-ms = 200")),
    );
    let subject = |edge: &Edge| s_client(edge, &["-servername", "api.gslb.example"]);
    assert!(subject(&edge).contains("CN = api one"));

    // wrk keeps 8 HTTPS connections busy (and opens new ones when they close) while the files change.
    let wrk = Command::new("wrk")
        .args(["-t1", "-c8", "-d4s", "-H", "Host: api.gslb.example"])
        .arg(format!("https://127.0.0.1:{}/", edge.https.port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // Key first, then certificate, each replaced whole: between the two the pair does not match, and
    // the old certificate must keep serving until the new pair is complete.
    let swap = |from: &Path, to: &Path| {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    };
    swap(&next_key, &dir.path().join("api.key"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        subject(&edge).contains("CN = api one"),
        "a mismatched pair must not be served"
    );
    swap(&next_cert, &dir.path().join("api.pem"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !subject(&edge).contains("CN = api two") {
        assert!(Instant::now() < deadline, "the new certificate was not picked up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = wrk.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    assert!(!report.contains("Socket errors"), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");
    let requests: u64 = report
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    assert!(requests > 100, "{report}");

    // A broken file: reported, and the last good certificate keeps serving.
    std::fs::write(
        dir.path().join("api.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&edge, "meridian_tls_reload_ok") != 0.0 {
        assert!(Instant::now() < deadline, "the broken file was not reported");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric(&edge, "meridian_tls_reload_failures_total") >= 1.0);
    assert!(subject(&edge).contains("CN = api two"));
    let (_, status, _, _) = curl(&edge, &pki.ca(), "api.gslb.example", "/", "--http1.1");
    assert_eq!(status, 200);
    drop(edge.process);
}

#[test]
fn every_request_gets_an_answer_or_a_clean_close_within_the_client_timeout() {
    let Setup {
        dir,
        pki,
        _rt,
        origin,
    } = setup("api ecdsa");
    let text = config(origin.addr, &tls_section(&pki, "plain-http = \"serve\"")).replace(
        "schema-version = 1\n",
        "schema-version = 1\n[proxy]\nclient-timeout-ms = 1000\n",
    );
    let edge = start_edge(dir.path(), &text);
    let exchange = |bytes: &[u8]| {
        let start = Instant::now();
        let mut s = TcpStream::connect(edge.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        (String::from_utf8_lossy(&all).into_owned(), start.elapsed())
    };
    let host = "Host: api.gslb.example\r\n";
    // A GET with a body is forwarded whole and answered.
    let (out, _) = exchange(
        format!("GET /g HTTP/1.1\r\n{host}Content-Length: 5\r\nConnection: close\r\n\r\nhello").as_bytes(),
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // Requests that stop half-way: 408 and a close once the client timeout (1 s) is over, not a hang.
    for partial in [
        format!("GET /g HTTP/1.1\r\n{host}Content-Length: 5\r\n\r\nhel"),
        format!("GET /g HTTP/1.1\r\n{host}Content-Length: 5\r\n\r\n"),
        format!("POST /p HTTP/1.1\r\n{host}Content-Length: 5\r\n\r\nhe"),
        format!("GET /g HTTP/1.1\r\n{host}"),
    ] {
        let (out, took) = exchange(partial.as_bytes());
        assert!(out.starts_with("HTTP/1.1 408"), "{partial:?}: {out}");
        assert!(took < Duration::from_secs(10), "{partial:?}: {took:?}");
    }
}

/// A Python HTTPS origin on a free port, answering as `name` with `cert` and `key`.
fn tls_origin(cert: &Path, key: &Path, name: &str) -> (SocketAddr, Interrupted) {
    let port = free_tcp_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/clients/tls_origin.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .args([cert, key])
        .arg(name)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "READY");
    (format!("127.0.0.1:{port}").parse().unwrap(), Interrupted(child))
}

#[test]
fn backends_over_tls_are_verified_against_the_configured_ca() {
    let Setup { dir, pki, .. } = setup("api ecdsa");
    let (ocert, okey) = pki.leaf("origin", "rsa", "inter", "origin", &["api.gslb.example"]);
    let other = tempfile::tempdir().unwrap();
    let rogue = Pki::new(other.path());
    let (rcert, rkey) = rogue.leaf("origin", "ec", "ca", "rogue", &["api.gslb.example"]);
    let (good, _good_process) = tls_origin(&ocert, &okey, "tls-origin");
    let (bad, _bad_process) = tls_origin(&rcert, &rkey, "rogue-origin");
    let ca = pki.ca().display().to_string();
    let text = config(good, &tls_section(&pki, "plain-http = \"serve\""))
        .replacen(
            "[services.api.backends]",
            &format!(
                "[services.api.proxy]\nbackend-tls = true\nbackend-ca = \"{ca}\"\n[services.api.backends]"
            ),
            1,
        )
        .replacen(
            &format!("[services.www.backends]\nwaw = [\"{good}\"]"),
            &format!(
                "[services.www.proxy]\nbackend-tls = true\nbackend-ca = \"{ca}\"\n\
                 backend-server-name = \"api.gslb.example\"\n[services.www.backends]\nwaw = [\"{bad}\"]"
            ),
            1,
        );
    let edge = start_edge(dir.path(), &text);
    // Both engines (a GET on the fast path, a POST through pingora) reach the origin over verified TLS.
    for method in ["GET", "POST"] {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                "-X",
                method,
                "-H",
                "Host: api.gslb.example",
            ])
            .args(if method == "POST" {
                &["-d", "x=1"][..]
            } else {
                &[][..]
            })
            .arg(format!("http://{}/path", edge.http))
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.contains("origin=tls-origin"), "{method}: {body}");
        assert!(body.contains(&format!("method={method}")), "{body}");
    }
    // A backend whose certificate is not from the configured CA is never sent the request.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", "Host: www.gslb.example"])
        .arg(format!("http://{}/", edge.http))
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(code == "502" || code == "503", "{code}");
}

#[test]
fn sighup_reloads_the_certificates_at_once() {
    let Setup {
        dir,
        pki,
        _rt,
        origin,
    } = setup("api one");
    let (next_cert, next_key) = pki.leaf("next", "ec", "ca", "api two", &["api.gslb.example"]);
    // The files are looked at once an hour only: what follows is SIGHUP's doing.
    let edge = start_edge(
        dir.path(),
        &config(origin.addr, &tls_section(&pki, "reload-interval-ms = 3600000")),
    );
    let subject = |edge: &Edge| s_client(edge, &["-servername", "api.gslb.example"]);
    assert!(subject(&edge).contains("CN = api one"));
    std::fs::copy(&next_key, dir.path().join("api.key")).unwrap();
    std::fs::copy(&next_cert, dir.path().join("api.pem")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        subject(&edge).contains("CN = api one"),
        "reloaded without being asked"
    );
    Command::new("kill")
        .args(["-HUP", &edge.process.0.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !subject(&edge).contains("CN = api two") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificates"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
