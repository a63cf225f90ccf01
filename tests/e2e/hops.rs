//! Hops between regions over mutual TLS, with two `meridian proxy` processes (waw, fra): a request that
//! leaves waw reaches fra's hop listener over TLS, both sides verified against the hop CA (WebSocket
//! included); a client without a hop certificate, or with one from another CA, is refused by the hop
//! listener; and a peer whose certificate is not from the configured CA is never sent a request.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_proxy::testing::{Origin, get};

use crate::edge_tls::{Pki, websocket};
use crate::support::{Interrupted, free_tcp_port, http_get};

struct Hops {
    ca: String,
    cert: String,
    key: String,
}

/// The two-region deployment of the proxy tests, its proxies' addresses being their hop listeners, with
/// `[tls]`: the hop certificate serves as the edge's too (no HTTPS listener runs here).
fn config(origins: [SocketAddr; 2], hop_listeners: [SocketAddr; 2], hops: &Hops) -> String {
    format!(
        r#"{}
[tls]
[[tls.certificates]]
cert = "{}"
key = "{}"
[tls.hops]
ca = "{}"
cert = "{}"
key = "{}"
"#,
        crate::proxy::config(origins, hop_listeners),
        hops.cert,
        hops.key,
        hops.ca,
        hops.cert,
        hops.key
    )
}

struct Node {
    http: SocketAddr,
    hop: SocketAddr,
    metrics: SocketAddr,
    _process: Interrupted,
}

fn start(region: &str, file: &Path, data: &Path, hop: SocketAddr) -> Node {
    let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let process = Interrupted(
        Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["proxy", "--region", region, "--grace-period", "1"])
            .args(["--listen", &http.to_string(), "--hop-listen", &hop.to_string()])
            .args(["--metrics-listen", &metrics.to_string()])
            .arg("--config")
            .arg(file)
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(hop).is_err() || http_get(metrics, "/metrics").0 != 200 {
        assert!(Instant::now() < deadline, "{region}'s proxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Node {
        http,
        hop,
        metrics,
        _process: process,
    }
}

fn metric(addr: SocketAddr, line_start: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// curl straight to a hop listener with `extra` arguments: its exit code and output.
fn curl_hop(node: &Node, ca: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-H", "Host: api.gslb.example"])
        .arg("--cacert")
        .arg(ca)
        .args([
            "--resolve",
            &format!("fra.hop.meridian:{}:127.0.0.1", node.hop.port()),
        ])
        .args(extra)
        .arg(format!("https://fra.hop.meridian:{}/", node.hop.port()))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn spilled_requests_cross_regions_over_mutual_tls_and_strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (cert, key) = pki.leaf(
        "hop",
        "ec",
        "ca",
        "hops",
        &["waw.hop.meridian", "fra.hop.meridian", "api.gslb.example"],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let waw_origin = rt.block_on(Origin::start("waw")).unwrap();
    let fra_origin = rt.block_on(Origin::start("fra")).unwrap();
    let hop_ports: [SocketAddr; 2] =
        [0, 1].map(|_| format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap());
    let hops = Hops {
        ca: pki.ca().display().to_string(),
        cert: cert.display().to_string(),
        key: key.display().to_string(),
    };
    let file = dir.path().join("meridian.toml");
    std::fs::write(
        &file,
        config([waw_origin.addr, fra_origin.addr], hop_ports, &hops),
    )
    .unwrap();
    let waw = start("waw", &file, &dir.path().join("d-waw"), hop_ports[0]);
    let fra = start("fra", &file, &dir.path().join("d-fra"), hop_ports[1]);

    // waw's origin dies: requests leave waw for fra over the hop (both engines: a GET on the fast path,
    // a POST through pingora, and a WebSocket upgrade). fra believes waw's forwarding headers: the
    // client fra's origin sees is the one waw saw.
    waw_origin.kill();
    let client = [("x-forwarded-for", "83.1.2.3")];
    for _ in 0..3 {
        let r = rt.block_on(get(waw.http, "api.gslb.example", &client)).unwrap();
        assert_eq!(
            (r.status, r.header("x-meridian-region")),
            (200, Some("fra")),
            "{r:?}"
        );
        assert!(r.body.contains("x-meridian-hop=waw"), "{}", r.body);
        assert!(
            r.body.contains("x-forwarded-for=83.1.2.3, 127.0.0.1"),
            "{}",
            r.body
        );
    }
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "-d", "x=1", "-H", "Host: api.gslb.example"])
        .arg(format!("http://{}/", waw.http))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("region=fra"));
    let url = format!("ws://api.gslb.example:{}/chat", waw.http.port());
    assert_eq!(websocket(&url, waw.http, &["over the hop"]), ["fra:over the hop"]);
    let ok = metric(
        fra.metrics,
        "meridian_proxy_tls_handshakes_total{listener=\"hop\",region=\"fra\",result=\"ok\"}",
    );
    assert!(ok >= 1.0, "hops were not made over TLS: {ok}");

    // The hop listener: a client with the hop certificate is served; one without a certificate, or with
    // a certificate from another CA, is refused in the handshake.
    let (code, text) = curl_hop(&fra, &pki.ca(), &["--cert", &hops.cert, "--key", &hops.key]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("region=fra"), "{text}");
    let (code, text) = curl_hop(&fra, &pki.ca(), &[]);
    assert_ne!(code, 0, "served without a client certificate: {text}");
    let other = tempfile::tempdir().unwrap();
    let rogue = Pki::new(other.path());
    let (rcert, rkey) = rogue.leaf("rogue", "ec", "ca", "rogue", &["waw.hop.meridian"]);
    let (code, text) = curl_hop(
        &fra,
        &pki.ca(),
        &["--cert", rcert.to_str().unwrap(), "--key", rkey.to_str().unwrap()],
    );
    assert_ne!(code, 0, "served a client certificate from another CA: {text}");
    assert!(!text.contains("region=fra"), "{text}");
}

#[test]
fn a_peer_whose_certificate_is_not_from_the_hop_ca_gets_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (cert, key) = pki.leaf(
        "hop",
        "ec",
        "ca",
        "hops",
        &["waw.hop.meridian", "api.gslb.example"],
    );
    // fra's hop material comes from another CA altogether (its own configuration trusts that CA).
    let other = tempfile::tempdir().unwrap();
    let rogue = Pki::new(other.path());
    let (rcert, rkey) = rogue.leaf(
        "hop",
        "ec",
        "ca",
        "rogue fra",
        &["fra.hop.meridian", "api.gslb.example"],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let waw_origin = rt.block_on(Origin::start("waw")).unwrap();
    let fra_origin = rt.block_on(Origin::start("fra")).unwrap();
    let hop_ports: [SocketAddr; 2] =
        [0, 1].map(|_| format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap());
    let good = Hops {
        ca: pki.ca().display().to_string(),
        cert: cert.display().to_string(),
        key: key.display().to_string(),
    };
    let bad = Hops {
        ca: rogue.ca().display().to_string(),
        cert: rcert.display().to_string(),
        key: rkey.display().to_string(),
    };
    let waw_file = dir.path().join("waw.toml");
    let fra_file = dir.path().join("fra.toml");
    let origins = [waw_origin.addr, fra_origin.addr];
    std::fs::write(&waw_file, config(origins, hop_ports, &good)).unwrap();
    std::fs::write(&fra_file, config(origins, hop_ports, &bad)).unwrap();
    let waw = start("waw", &waw_file, &dir.path().join("d-waw"), hop_ports[0]);
    let _fra = start("fra", &fra_file, &dir.path().join("d-fra"), hop_ports[1]);

    waw_origin.kill();
    let r = rt.block_on(get(waw.http, "api.gslb.example", &[])).unwrap();
    assert!(matches!(r.status, 502 | 503), "{r:?}");
    assert_eq!(fra_origin.hits(), 0, "fra's origin must see nothing");
    let failed = metric(
        waw.metrics,
        "meridian_proxy_upstream_errors_total{kind=\"connect\",region=\"waw\",upstream=\"fra\"}",
    );
    assert!(failed >= 1.0, "the refused hop was not counted: {failed}");
}
