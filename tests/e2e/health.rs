//! `meridian health` as real processes: three probers (three vantage points) against a real etcd and real
//! HTTP endpoints on loopback. A killed endpoint is down within the 3 s target; a prober killed with
//! SIGKILL is forgotten when its lease expires and the decision is recomputed from the other two; SIGINT
//! stops a prober cleanly and withdraws its opinions at once; metrics are served.

use std::io::Read;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_config::Config;
use meridian_probe::testing::Endpoint;
use meridian_store::testing::EtcdServer;
use meridian_store::{
    DEFAULT_PREFIX, EtcdOptions, EtcdStore, Keys, KvStore, SnapshotWatcher, WatcherOptions,
};

use crate::support::{Interrupted, free_tcp_port, http_get, meridian, stderr};

fn config_text(urls: &[String]) -> String {
    let mut text = String::from("schema-version = 1\n");
    for (i, (id, url)) in ["a", "b", "c"].iter().zip(urls).enumerate() {
        text.push_str(&format!(
            "[regions.{id}]\nname = \"{id}\"\nlat = {}\nlon = 0\ncountry = \"DE\"\nipv4 = [\"192.0.2.{}\"]\ncapacity = 10\n\
             [[regions.{id}.health-checks]]\nkind = \"http\"\nurl = \"{url}\"\n",
            10 * i,
            i + 1
        ));
    }
    text
}

fn state(w: &SnapshotWatcher, region: &str) -> Option<(meridian_health::State, (usize, usize), usize)> {
    let snap = w.snapshot()?;
    let r = snap.health.region(region)?;
    Some((r.state, r.votes(), r.opinions.len()))
}

async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_probers_against_etcd() {
    use meridian_health::State::{Down, Up};
    let etcd = EtcdServer::start();
    let mut endpoints = [
        Endpoint::start().await,
        Endpoint::start().await,
        Endpoint::start().await,
    ];
    let urls: Vec<String> = endpoints.iter().map(Endpoint::url).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    std::fs::write(&file, config_text(&urls)).unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    // v2 also serves the admin API, so an operator can ask a prober what it sees.
    let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "health-e2e-token-0123456789\n").unwrap();
    let mut probers: Vec<Interrupted> = ["v1", "v2", "v3"]
        .iter()
        .map(|v| {
            let mut c = meridian();
            c.args(["health", "--vantage", v, "--config"]).arg(&file).args([
                "--etcd",
                &etcd.client_url,
                "--lease-ttl-ms",
                "2000",
            ]);
            if *v == "v1" {
                c.args(["--metrics-listen", &metrics.to_string()]);
            }
            if *v == "v2" {
                c.args(["--admin-listen", &admin.to_string(), "--admin-token-file"])
                    .arg(&token_file);
            }
            Interrupted(c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
        })
        .collect();

    let store: Arc<dyn KvStore> =
        Arc::new(EtcdStore::new(EtcdOptions::new(vec![etcd.client_url.clone()])).unwrap());
    let mut options = WatcherOptions::new(Keys::new(DEFAULT_PREFIX).unwrap());
    options.bootstrap = Some(Arc::new(Config::from_toml_str(&config_text(&urls)).unwrap()));
    let w = SnapshotWatcher::spawn(store.clone(), options);
    until(
        "all regions up, three opinions each",
        Duration::from_secs(15),
        || {
            ["a", "b", "c"]
                .iter()
                .all(|r| state(&w, r) == Some((Up, (3, 0), 3)))
        },
    )
    .await;

    // The endpoint dies: down within the target.
    endpoints[0].kill();
    let took = until("a down", Duration::from_secs(5), || {
        state(&w, "a").is_some_and(|s| s.0 == Down)
    })
    .await;
    assert!(took < Duration::from_secs(3), "down after {took:?}");
    until("every prober sees it", Duration::from_secs(3), || {
        state(&w, "a") == Some((Down, (3, 3), 3))
    })
    .await;

    // The prober's admin API, through the CLI: region a down (by three vantages), b up.
    let out = meridian()
        .args([
            "status",
            "--json",
            "--server",
            &format!("http://{admin}"),
            "--token-file",
        ])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let region = |id: &str| {
        status["regions"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no region {id} in {status}"))
    };
    assert_eq!(region("a")["health"]["state"], "down", "{status}");
    assert_eq!(region("b")["health"]["state"], "up", "{status}");
    assert!(
        status.to_string().contains("meridian health --vantage v2"),
        "{status}"
    );
    // Without the token: refused.
    let out = meridian()
        .env_remove("MERIDIAN_TOKEN")
        .args(["status", "--server", &format!("http://{admin}"), "--token-file"])
        .arg(dir.path().join("no-such-token"))
        .output()
        .unwrap();
    assert!(!out.status.success());

    // v3 dies without a word: its opinions last until its lease (2 s) expires, then the decision is
    // recomputed from v1 and v2.
    probers[2].0.kill().unwrap();
    probers[2].0.wait().unwrap();
    let killed = Instant::now();
    until("v3's opinions expire", Duration::from_secs(6), || {
        state(&w, "a").is_some_and(|s| s.2 == 2)
    })
    .await;
    assert!(
        killed.elapsed() >= Duration::from_millis(500),
        "gone after {:?}: expired, not revoked",
        killed.elapsed()
    );
    assert_eq!(state(&w, "a"), Some((Down, (2, 2), 2)));
    assert_eq!(state(&w, "b"), Some((Up, (2, 0), 2)));

    // Back: up again from the two remaining probers.
    endpoints[0].revive().await;
    until("a up again", Duration::from_secs(5), || {
        state(&w, "a") == Some((Up, (2, 0), 2))
    })
    .await;

    let (status, text) = http_get(metrics, "/metrics");
    assert_eq!(status, 200, "{text}");
    for needle in [
        r#"meridian_probe_results_total{check=""#,
        r#"region="a",result="fail",vantage="v1"}"#,
        "meridian_probe_latency_seconds_bucket",
        r#"meridian_probe_transitions_total{check="#,
        r#"meridian_health_region_state{region="a"} 1"#,
        r#"meridian_health_transitions_total{region="a",to="down"} 1"#,
        "meridian_health_stale_regions 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }

    // SIGINT: a clean exit, and v1's opinions are withdrawn at once (revoked, not left to expire).
    let mut v1 = probers.remove(0);
    let status = v1.interrupt();
    assert!(status.success(), "{status:?}");
    let stopped = Instant::now();
    until("v1's opinions withdrawn", Duration::from_secs(1), || {
        state(&w, "b").is_some_and(|s| s.2 == 1)
    })
    .await;
    assert!(stopped.elapsed() < Duration::from_millis(1000));
    let mut err = String::new();
    v1.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(
        err.contains("meridian health: vantage v1 probing 3 check(s)"),
        "{err}"
    );
    assert!(err.contains("meridian health: stopping"), "{err}");
}

#[test]
fn a_bad_vantage_id_is_a_clear_error() {
    let out = meridian()
        .args([
            "health",
            "--vantage",
            "Fra 1",
            "--data-dir",
            "/nonexistent-meridian",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--vantage \"Fra 1\": expected"),
        "{}",
        stderr(&out)
    );
}
