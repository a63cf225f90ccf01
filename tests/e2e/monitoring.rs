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
use crate::up::{Ports, proxy_of, start_with};

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
    assert!(out.contains("SUCCESS: 9 rules found"), "{out}");
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

/// Every panel of a Grafana dashboard, those inside rows too.
fn grafana_panels(panels: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut all = Vec::new();
    for p in panels.as_array().map_or(&[][..], Vec::as_slice) {
        all.push(p);
        all.extend(grafana_panels(&p["panels"]));
    }
    all
}

/// The Grafana dashboard read as the JSON document Grafana imports: a `datasource` variable over
/// Prometheus that every panel and query uses, the `instance` variable its queries filter on, panels with
/// unique ids on the 24-column grid, every query with an `expr` — and every `expr` valid PromQL
/// (`promtool check rules` on them as recording rules, with the variables substituted).
#[test]
fn the_grafana_dashboard_is_well_formed() {
    let text = std::fs::read_to_string(kit().join("grafana-dashboard.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("grafana-dashboard.json is JSON");
    for key in ["title", "uid"] {
        assert!(doc[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    assert!(doc["schemaVersion"].is_u64(), "schemaVersion");
    let vars = doc["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let ds = var("datasource");
    assert_eq!(
        (&ds["type"], &ds["query"]),
        (&serde_json::json!("datasource"), &serde_json::json!("prometheus"))
    );
    let source = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    assert_eq!(var("instance")["datasource"], source, "the node variable");
    let defined: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();

    let panels = grafana_panels(&doc["panels"]);
    let mut ids = BTreeSet::new();
    let mut rules = Vec::new();
    let mut queries = 0;
    for p in &panels {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("a panel without an id: {p}"));
        assert!(ids.insert(id), "panel id {id} used twice");
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "panel {id} has no title");
        let grid = &p["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            grid["h"].as_u64().unwrap() > 0 && w > 0 && x + w <= 24,
            "panel {id}: {grid}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert!(
            ["stat", "timeseries", "table", "gauge", "bargauge"].contains(&p["type"].as_str().unwrap_or("")),
            "panel {id}: type {}",
            p["type"]
        );
        assert_eq!(p["datasource"], source, "panel {id} ({title})");
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {id} ({title}) has no targets"));
        assert!(!targets.is_empty(), "panel {id} ({title}) has no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                expr.contains("meridian_"),
                "panel {id} ({title}): a target without a meridian expr: {t}"
            );
            assert!(
                refs.insert(t["refId"].as_str().unwrap_or_default()),
                "panel {id}: refId twice: {t}"
            );
            if !t["datasource"].is_null() {
                assert_eq!(t["datasource"], source, "panel {id} ({title})");
            }
            // Every variable it uses is defined (or one of Grafana's own, `$__...`).
            for (i, _) in expr.match_indices('$') {
                let name: String = expr[i + 1..]
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || defined.contains(name.as_str()),
                    "panel {id} ({title}): ${name} is not a variable of the dashboard: {expr}"
                );
            }
            queries += 1;
            rules.push(serde_json::json!({
                "record": format!("grafana:panel_{id}:{}", t["refId"].as_str().unwrap_or("A").to_lowercase()),
                "expr": expr.replace("$instance", ".*").replace("$__rate_interval", "5m").replace("$__interval", "1m"),
            }));
        }
    }
    assert!(queries >= 20, "{queries} queries");
    // JSON is YAML: promtool reads the queries as recording rules.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grafana-queries.yml");
    let groups = serde_json::json!({"groups": [{"name": "grafana", "rules": rules}]});
    std::fs::write(&file, groups.to_string()).unwrap();
    let (ok, out) = promtool(&["check", "rules", file.to_str().unwrap()]);
    assert!(ok, "a Grafana query is not valid PromQL: {out}");
    assert!(out.contains(&format!("SUCCESS: {queries} rules found")), "{out}");
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

#[test]
fn every_metric_the_kit_names_is_exported_by_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    // A webhook nobody answers: its failures are what the webhook rules count.
    let notify = dir.path().join("notify.toml");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::write(
        &notify,
        format!(
            "[[webhook]]\nname = \"ops\"\nurl = \"http://{}/\"\nsecret = \"monitoring-secret-0123456789\"\nmax-attempts = 1\ntimeout-ms = 200\n",
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let (_up, banner) = start_with(&ports, dir.path(), &["--notify", notify.to_str().unwrap()]);
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
