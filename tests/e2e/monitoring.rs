//! The monitoring kit of `deploy/monitoring/` against the real tools: Debian's `promtool` checks the
//! alerting rules and runs their unit tests; every metric the rules and the Grafana dashboard name is
//! exported by a running `meridian up`; and a real Prometheus scraping `meridian up` fires the region-down
//! alert when a drill takes a region down.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Interrupted, ask, free_tcp_port, http_get, stderr, stdout, up_cli};
use crate::up::{Ports, start_with};

fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring")
}

fn promtool(args: &[&str]) -> (bool, String) {
    let o = Command::new("promtool")
        .args(args)
        .current_dir(kit())
        .output()
        .expect("promtool (Debian prometheus; scripts/install-deps installs it)");
    (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
}

#[test]
fn promtool_accepts_the_alerting_rules_and_their_unit_tests_pass() {
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"]);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS: 7 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let (ok, out) = promtool(&["check", "config", "prometheus.yml"]);
    assert!(ok, "{out}");
}

#[test]
fn promtool_rejects_a_broken_rule_file() {
    // The check above could only fail if promtool reads the file: a broken copy must fail.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(kit().join("alerts.yml")).unwrap();
    let broken = text.replacen(
        "max by (region) (meridian_region_down) == 1",
        "max by (region (",
        1,
    );
    let path = dir.path().join("alerts.yml");
    std::fs::write(&path, broken).unwrap();
    let (ok, out) = promtool(&["check", "rules", path.to_str().unwrap()]);
    assert!(!ok, "{out}");
}

/// Every `meridian_...` name in the kit's files (histogram series reduced to their family).
fn kit_metric_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(kit().join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("meridian_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(family.to_owned());
            rest = &tail[end..];
        }
    }
    names
}

/// The proxy address of `region` in the banner.
fn proxy_of(banner: &str, region: &str) -> SocketAddr {
    let line = banner
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("region    {region} ")))
        .unwrap();
    let at = line.find("proxy http://").unwrap() + "proxy http://".len();
    line[at..].split('/').next().unwrap().parse().unwrap()
}

#[test]
fn every_metric_the_kit_names_is_exported_by_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let (_up, banner) = start_with(&ports, dir.path(), &[]);
    let names = kit_metric_names();
    assert!(names.len() >= 20, "{names:?}");

    // Traffic that makes every labelled family appear: DNS queries (some limited by RRL: one client
    // asking one name far above 20 per second), proxied requests, a spill (waw drained: its proxy sends
    // requests on).
    let host = "meet.gslb.example.";
    for _ in 0..3 {
        assert!(ask(ports.dns, host, "83.0.0.0").is_some(), "DNS answers");
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let query = {
        use hickory_proto::op::{Message, MessageType, OpCode, Query};
        use hickory_proto::rr::{Name, RecordType};
        let mut m = Message::new(9, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(host).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    };
    for _ in 0..300 {
        sock.send_to(&query, ports.dns).unwrap();
    }
    let waw = proxy_of(&banner, "waw");
    up_cli(
        ports.admin,
        dir.path(),
        &["region", "drain", "waw", "--reason", "spill for the metrics test"],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut missing: Vec<String>;
    loop {
        let _ = crate::up::http_get_host(waw, "meet.gslb.example");
        let (status, text) = http_get(ports.metrics, "/metrics");
        assert_eq!(status, 200);
        missing = names
            .iter()
            .filter(|n| !text.contains(&format!("# TYPE {n} ")))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        missing.is_empty(),
        "named by deploy/monitoring but not exported: {missing:?}"
    );
}

#[test]
fn prometheus_scraping_meridian_up_fires_region_down_during_a_drill() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let (_up, _banner) = start_with(&ports, dir.path(), &[]);
    let prom_port = free_tcp_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: meridian\n    static_configs:\n      - targets: ['{metrics}']\n",
            rules = kit().join("alerts.yml").display(),
            metrics = ports.metrics,
        ),
    )
    .unwrap();
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian; scripts/install-deps installs it)");
    let _prometheus = Interrupted(prometheus);
    let prom: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let alerts = || {
        let (status, body) = http_get(prom, "/api/v1/alerts");
        if status != 200 {
            return Vec::new();
        }
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        doc["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "MeridianRegionDown")
            .map(|a| {
                (
                    a["labels"]["region"].as_str().unwrap_or("").to_owned(),
                    a["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Prometheus has scraped the node (the target is up) and nothing is down.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(prom, "/api/v1/query?query=meridian_region_down");
        if status == 200 && body.contains("\"region\":\"waw\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape meridian up within 30 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(alerts().is_empty(), "{:?}", alerts());

    up_cli(
        ports.admin,
        dir.path(),
        &[
            "drill",
            "start",
            "--region",
            "waw",
            "--mode",
            "down",
            "--for",
            "5m",
            "--reason",
            "alert test",
        ],
    );
    // `for: 10s`, scrapes and evaluations every second: firing within about 12 s.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(40);
    loop {
        let now = alerts();
        if now.iter().any(|(r, s)| r == "waw" && s == "firing") {
            assert!(now.iter().all(|(r, _)| r == "waw"), "only waw is down: {now:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "MeridianRegionDown did not fire for waw within 40 s: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "MeridianRegionDown firing {:?} after the drill started",
        started.elapsed()
    );
}
