//! Webhook notifications (`--notify FILE`), received by a real HTTP server on loopback (a small Python
//! receiver that checks each signature with the shared secret and fails every first attempt, so the sender
//! must retry). `meridian up`: drill start and end, the region it takes down and back up, DNS RRL and the
//! proxy's rate limit engaging and subsiding, each webhook only its events; a webhook that never answers
//! is given up on and counted, without holding anything up; a bad file is refused at start with every
//! problem's path; etcd lost and regained. A fleet of `meridian dns` nodes on one etcd: the fleet's events
//! sent once, by one node, and by another when that one is killed or stops.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Interrupted, ask, free_tcp_port, http_get, meridian, stderr, up_cli};
use crate::up::{Ports, proxy_of, start_with};

const SECRET: &str = "webhook-secret-0123456789";

/// The receiver (`receiver.py PORT SECRET LOG [CERT KEY]`, HTTPS with CERT and KEY): logs one JSON line per request (signature valid?, attempt, status sent, the event);
/// answers 500 to every first attempt, 200 to the others.
const RECEIVER: &str = r#"
import hashlib, hmac, http.server, json, sys
port, secret, log = int(sys.argv[1]), sys.argv[2].encode(), open(sys.argv[3], "a", buffering=1)
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(want, self.headers.get("X-Meridian-Signature", ""))
        attempt = int(self.headers.get("X-Meridian-Attempt", "0"))
        status = 500 if attempt == 1 else 200
        log.write(json.dumps({"valid": valid, "attempt": attempt, "status": status,
                              "header_event": self.headers.get("X-Meridian-Event"),
                              "event": json.loads(body)}) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hook)
if len(sys.argv) > 5:
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[4], sys.argv[5])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

/// The receiver's log lines so far.
fn received(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until a delivered (status 200) request matches `pred`; returns every request of that event.
fn wait_for_event(log: &std::path::Path, what: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    wait_for_event_within(log, what, Duration::from_secs(15), pred)
}

/// [`wait_for_event`], waiting up to `within`.
fn wait_for_event_within(
    log: &std::path::Path,
    what: &str,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let all = received(log);
        let matching: Vec<Value> = all.iter().filter(|r| pred(&r["event"])).cloned().collect();
        if matching.iter().any(|r| r["status"] == 200) {
            return matching;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} delivered within {within:?}; received: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the receiver on `port` (HTTPS when `tls` gives a certificate and key), logging to `log`.
fn receiver(
    dir: &std::path::Path,
    port: u16,
    log: &std::path::Path,
    tls: Option<(&std::path::Path, &std::path::Path)>,
) -> Interrupted {
    let script = dir.join("receiver.py");
    std::fs::write(&script, RECEIVER).unwrap();
    let mut c = Command::new("python3");
    c.arg(&script).args([&port.to_string(), SECRET]).arg(log);
    if let Some((cert, key)) = tls {
        c.arg(cert).arg(key);
    }
    let child = Interrupted(c.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the receiver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// A receiver on a free port logging to `DIR/received.jsonl`, and `DIR/notify.toml` sending it the events
/// of one webhook (`name`, more settings in `extra`: TOML lines); returns the receiver, its log and the
/// file.
fn hook(
    dir: &std::path::Path,
    name: &str,
    extra: &str,
) -> (Interrupted, std::path::PathBuf, std::path::PathBuf) {
    let port = free_tcp_port();
    let log = dir.join("received.jsonl");
    let receiver = receiver(dir, port, &log, None);
    let notify = dir.join("notify.toml");
    std::fs::write(
        &notify,
        format!("[[webhook]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{port}/\"\nsecret = \"{SECRET}\"\n{extra}"),
    )
    .unwrap();
    (receiver, log, notify)
}

#[test]
fn webhooks_receive_signed_events_with_retries_and_a_dead_webhook_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let hook_port = free_tcp_port();
    // A webhook that never answers: connections are taken (the listen backlog) and left unanswered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = silent.local_addr().unwrap().port();
    let log = dir.path().join("received.jsonl");
    let _receiver = receiver(dir.path(), hook_port, &log, None);
    // A second receiver over HTTPS, with a certificate from a private CA the webhook names.
    let pki = crate::edge_tls::Pki::new(dir.path());
    let (cert, key) = pki.leaf("hook", "ec", "ca", "localhost", &["localhost"]);
    let tls_port = free_tcp_port();
    let tls_log = dir.path().join("received-tls.jsonl");
    let _tls_receiver = receiver(dir.path(), tls_port, &tls_log, Some((&cert, &key)));
    // Not "hook.key": that is the HTTPS receiver's private key, in the same directory (the receiver may
    // still be reading it: it listens before it loads its certificate).
    std::fs::write(dir.path().join("webhook-secret"), format!("{SECRET}\n")).unwrap();
    let notify = dir.path().join("notify.toml");
    std::fs::write(
        &notify,
        format!(
            "[[webhook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nsecret-file = \"webhook-secret\"\nmax-attempts = 3\n\n\
             [[webhook]]\nname = \"dead\"\nurl = \"http://127.0.0.1:{dead_port}/\"\nsecret = \"{SECRET}\"\nevents = [\"drill-start\"]\nmax-attempts = 2\ntimeout-ms = 500\n\n\
             [[webhook]]\nname = \"tls\"\nurl = \"https://localhost:{tls_port}/hook\"\nsecret = \"{SECRET}\"\nevents = [\"drill-start\"]\nca-file = \"{ca}\"\n",
            ca = pki.ca().display()
        ),
    )
    .unwrap();
    // The example deployment with a per-client rate limit low enough to reach from a test.
    let example = std::fs::read_to_string(crate::support::example()).unwrap();
    let limited = example.replace("rate-limit-per-client = 1000", "rate-limit-per-client = 5");
    assert_ne!(limited, example, "the example sets rate-limit-per-client = 1000");
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, limited).unwrap();
    let ports = Ports::free();
    let (_up, banner) = start_with(
        &ports,
        &dir.path().join("data"),
        &[
            "--notify",
            notify.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let data = dir.path().join("data");

    up_cli(
        ports.admin,
        &data,
        &[
            "drill",
            "start",
            "--region",
            "waw",
            "--mode",
            "down",
            "--for",
            "10m",
            "--id",
            "hook-drill",
            "--reason",
            "webhooks",
        ],
    );
    let start = wait_for_event(&log, "drill-start", |e| {
        e["event"] == "drill-start" && e["drill"] == "hook-drill"
    });
    // The first attempt got a 500; the retry was delivered; both carried a valid signature.
    assert_eq!(start.len(), 2, "{start:#?}");
    assert_eq!(
        (start[0]["attempt"].as_u64(), start[0]["status"].as_u64()),
        (Some(1), Some(500))
    );
    assert_eq!(
        (start[1]["attempt"].as_u64(), start[1]["status"].as_u64()),
        (Some(2), Some(200))
    );
    assert!(start.iter().all(|r| r["valid"] == true), "{start:#?}");
    assert_eq!(start[1]["header_event"], "drill-start");
    assert_eq!(start[1]["event"]["region"], "waw");
    assert_eq!(start[1]["event"]["mode"], "down");
    let node = start[1]["event"]["node"].as_str().unwrap_or_default();
    assert!(
        node.starts_with("up/"),
        "the sender names itself ROLE/INSTANCE: {node:?}"
    );
    // Over HTTPS too, verified against the webhook's CA.
    let tls_start = wait_for_event(&tls_log, "drill-start over https", |e| {
        e["event"] == "drill-start"
    });
    assert!(tls_start.iter().all(|r| r["valid"] == true), "{tls_start:#?}");
    let down = wait_for_event(&log, "region-down", |e| {
        e["event"] == "region-down" && e["region"] == "waw"
    });
    assert_eq!(down.last().unwrap()["event"]["cause"], "drill hook-drill");

    up_cli(ports.admin, &data, &["drill", "stop", "hook-drill"]);
    wait_for_event(&log, "drill-end", |e| {
        e["event"] == "drill-end" && e["drill"] == "hook-drill"
    });
    wait_for_event(&log, "region-up", |e| {
        e["event"] == "region-up" && e["region"] == "waw"
    });

    // RRL: one client asking one name far above its rate.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let query = {
        use hickory_proto::op::{Message, MessageType, OpCode, Query};
        use hickory_proto::rr::{Name, RecordType};
        let mut m = Message::new(9, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("meet.gslb.example.").unwrap(),
            RecordType::A,
        ));
        m.to_vec().unwrap()
    };
    for _ in 0..300 {
        sock.send_to(&query, ports.dns).unwrap();
    }
    // The proxy's per-client limit (5 per second): one client asking 30 times at once.
    let waw = proxy_of(&banner, "waw");
    let refused = (0..30).filter(|_| http_get(waw, "/").0 == 429).count();
    assert!(refused >= 20, "{refused} of 30 requests refused with 429");
    wait_for_event(&log, "rrl-engaged", |e| e["event"] == "rrl-engaged");
    let engaged = wait_for_event(&log, "rate-limit-engaged", |e| e["event"] == "rate-limit-engaged");
    assert!(
        engaged.last().unwrap()["event"]["limited_responses"].as_u64() >= Some(1),
        "{engaged:#?}"
    );
    // Both subside after 10 s without a limited response.
    wait_for_event(&log, "rrl-subsided", |e| e["event"] == "rrl-subsided");
    wait_for_event(&log, "rate-limit-subsided", |e| {
        e["event"] == "rate-limit-subsided"
    });
    assert!(
        received(&log).iter().all(|r| r["valid"] == true),
        "every signature is valid"
    );
    // The HTTPS webhook asked for drill starts only, and got nothing else.
    let tls_events: Vec<Value> = received(&tls_log)
        .iter()
        .map(|r| r["event"]["event"].clone())
        .collect();
    assert!(
        !tls_events.is_empty() && tls_events.iter().all(|e| e == "drill-start"),
        "{tls_events:?}"
    );

    // The silent webhook: both attempts timed out, the event was given up on and counted; the node
    // answered all along.
    assert!(ask(ports.dns, "meet.gslb.example.", "83.0.0.0").is_some());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = http_get(ports.metrics, "/metrics");
        let gave_up = metrics
            .lines()
            .any(|l| l == "meridian_webhook_deliveries_total{result=\"gave-up\",webhook=\"dead\"} 1");
        let attempts = metrics
            .lines()
            .any(|l| l == "meridian_webhook_failed_attempts_total{webhook=\"dead\"} 2");
        let delivered = metrics.lines().any(|l| {
            l.starts_with("meridian_webhook_deliveries_total{result=\"delivered\",webhook=\"ops\"}")
        });
        if gave_up && attempts && delivered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhook metrics:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("webhook"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(silent);
}

#[test]
fn a_bad_notifications_file_is_refused_at_start_with_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.toml");
    std::fs::write(
        &notify,
        "[[webhook]]\nname = \"ops\"\nurl = \"http://hooks.example/x\"\nsecret = \"short\"\nevents = [\"region-dwon\"]\n",
    )
    .unwrap();
    let ports = Ports::free();
    let o = meridian()
        .args([
            "up",
            "--admin-listen",
            &ports.admin.to_string(),
            "--dns-listen",
            &ports.dns.to_string(),
        ])
        .args([
            "--metrics-listen",
            &ports.metrics.to_string(),
            "--proxy-port",
            "0",
            "--https-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--notify")
        .arg(&notify)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    for want in [
        "webhook[0].url: \"http://hooks.example/x\": plain http is only allowed to a loopback address",
        "webhook[0].secret: the secret must have at least 16 characters",
        "webhook[0].events[0]: unknown event \"region-dwon\"",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains(&notify.display().to_string()), "{err}");
    // Nothing started: the admin port is free.
    assert!(std::net::TcpStream::connect(ports.admin).is_err());
}

#[test]
fn losing_and_regaining_etcd_is_notified() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = meridian_store::testing::EtcdServer::start();
    let (_receiver, log, notify) = hook(
        dir.path(),
        "store",
        "events = [\"store-lost\", \"store-regained\"]\n",
    );
    let ports = Ports::free();
    let mut command = crate::up::up_on_etcd(&ports, &etcd.client_url, &dir.path().join("data"));
    command.arg("--notify").arg(&notify);
    let (_up, _) = crate::up::start_command(command);

    etcd.kill();
    let lost = wait_for_event(&log, "store-lost", |e| e["event"] == "store-lost");
    assert!(lost.iter().all(|r| r["valid"] == true), "{lost:#?}");
    // The node kept answering from its snapshot meanwhile.
    assert!(ask(ports.dns, "meet.gslb.example.", "83.0.0.0").is_some());
    etcd.restart();
    wait_for_event(&log, "store-regained", |e| e["event"] == "store-regained");
    // Only the events this webhook asked for.
    assert!(
        received(&log)
            .iter()
            .all(|r| r["event"]["event"] == "store-lost" || r["event"]["event"] == "store-regained"),
        "{:#?}",
        received(&log)
    );
}

/// One `meridian dns` of a fleet on a shared etcd, with `--notify`.
struct FleetNode {
    metrics: SocketAddr,
    admin: SocketAddr,
    process: Interrupted,
}

impl FleetNode {
    fn start(etcd: &str, notify: &std::path::Path, token: &std::path::Path) -> Self {
        let dns = format!("127.0.0.1:{}", crate::support::free_udp_port());
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let process = Interrupted(
            meridian()
                .args(["dns", "--rrl-rate", "0", "--listen", &dns, "--etcd", etcd])
                .args(["--metrics-listen", &metrics.to_string()])
                .args(["--admin-listen", &admin.to_string()])
                .arg("--admin-token-file")
                .arg(token)
                .arg("--notify")
                .arg(notify)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(metrics, "/metrics").0 != 200 {
            assert!(Instant::now() < deadline, "meridian dns did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            metrics,
            admin,
            process,
        }
    }

    /// Whether it says it sends the fleet's events (`None`: it does not answer).
    fn sender(&self) -> Option<bool> {
        let (status, metrics) = http_get(self.metrics, "/metrics");
        (status == 200).then(|| metrics.lines().any(|l| l == "meridian_webhook_fleet_sender 1"))
    }

    /// `meridian drill start` through its admin API.
    fn drill(&self, token: &std::path::Path, id: &str, region: &str, mode: &str) {
        let o = meridian()
            .args([
                "drill", "start", "--region", region, "--mode", mode, "--for", "10m",
            ])
            .args(["--id", id, "--reason", "fleet notifications"])
            .args(["--server", &format!("http://{}", self.admin)])
            .arg("--token-file")
            .arg(token)
            .output()
            .unwrap();
        assert!(o.status.success(), "drill start {id}: {}", stderr(&o));
    }
}

/// Waits until exactly one of `nodes` (those still running) says it sends the fleet's events; its index.
fn the_sender(nodes: &[&FleetNode], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let says: Vec<Option<bool>> = nodes.iter().map(|n| n.sender()).collect();
        let senders: Vec<usize> = (0..nodes.len()).filter(|&i| says[i] == Some(true)).collect();
        if senders.len() == 1 {
            return senders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single sender within {within:?}: {says:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that `event` about `subject` was delivered exactly once.
fn assert_delivered_once(log: &std::path::Path, event: &str, subject: &str) {
    let n = delivered(log, event, subject).len();
    assert_eq!(
        n,
        1,
        "{event} {subject} delivered {n} times: {:#?}",
        received(log)
    );
}

/// The delivered (status 200) requests of `event` about `subject` (its drill or region).
fn delivered(log: &std::path::Path, event: &str, subject: &str) -> Vec<Value> {
    received(log)
        .into_iter()
        .filter(|r| r["status"] == 200 && r["event"]["event"] == event)
        .filter(|r| r["event"]["drill"] == subject || r["event"]["region"] == subject)
        .collect()
}

#[test]
fn a_fleet_sends_its_events_once_and_hands_over_when_the_sender_dies_or_stops() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = meridian_store::testing::EtcdServer::start();
    let applied = meridian()
        .args(["config", "apply", crate::support::example().to_str().unwrap()])
        .args(["--author", "test", "--etcd", &etcd.client_url])
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", stderr(&applied));
    let (_receiver, log, notify) = hook(dir.path(), "fleet", "max-attempts = 3\n");
    let token = dir.path().join("token");
    std::fs::write(&token, "fleet-token-0123456789\n").unwrap();

    let mut nodes = vec![
        FleetNode::start(&etcd.client_url, &notify, &token),
        FleetNode::start(&etcd.client_url, &notify, &token),
    ];
    let first = the_sender(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(10));

    // Both nodes see the drill; one sends it, once.
    nodes[1 - first].drill(&token, "fleet-1", "waw", "down");
    wait_for_event(&log, "drill-start fleet-1", |e| {
        e["event"] == "drill-start" && e["drill"] == "fleet-1"
    });
    wait_for_event(&log, "region-down waw", |e| {
        e["event"] == "region-down" && e["region"] == "waw"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_delivered_once(&log, "drill-start", "fleet-1");
    assert_delivered_once(&log, "region-down", "waw");
    let sender_name = delivered(&log, "drill-start", "fleet-1")[0]["event"]["node"].clone();

    // The sender killed (no clean stop: its lock stays until its lease expires), and a drill started at
    // once: the other node takes over and sends what the dead one could not.
    let killed = Instant::now();
    nodes[first].process.0.kill().unwrap();
    nodes[first].process.0.wait().unwrap();
    let survivor = nodes.remove(1 - first);
    // (Not down: with waw down, the European services would be left without a region.)
    survivor.drill(&token, "fleet-2", "fra", "capacity=50");
    let two = wait_for_event_within(&log, "drill-start fleet-2", Duration::from_secs(25), |e| {
        e["event"] == "drill-start" && e["drill"] == "fleet-2"
    });
    eprintln!(
        "fleet-2 delivered {:?} after the sender was killed",
        killed.elapsed()
    );
    let sent = &two.last().unwrap()["event"];
    assert_eq!(
        sent["handover"], true,
        "sent as missed by the previous sender: {sent}"
    );
    assert_ne!(sent["node"], sender_name, "{sent}");
    assert_eq!(survivor.sender(), Some(true));
    // What the first sender had sent is not sent again.
    std::thread::sleep(Duration::from_secs(2));
    assert_delivered_once(&log, "drill-start", "fleet-1");
    assert_delivered_once(&log, "drill-start", "fleet-2");

    // A clean stop hands over at once.
    let mut survivor = survivor;
    let third = FleetNode::start(&etcd.client_url, &notify, &token);
    assert_eq!(third.sender(), Some(false));
    let stopped = Instant::now();
    assert!(survivor.process.interrupt().success());
    let took_over = the_sender(&[&third], Duration::from_secs(5));
    assert_eq!(took_over, 0);
    eprintln!("handed over {:?} after a clean stop", stopped.elapsed());
    third.drill(&token, "fleet-3", "bhs", "capacity=50");
    wait_for_event(&log, "drill-start fleet-3", |e| {
        e["event"] == "drill-start" && e["drill"] == "fleet-3"
    });
    // Nodes starting (connecting to etcd) or being killed are no store events of the others.
    let store_events: Vec<Value> = received(&log)
        .into_iter()
        .filter(|r| {
            r["event"]["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("store-"))
        })
        .collect();
    assert!(store_events.is_empty(), "{store_events:#?}");
}
