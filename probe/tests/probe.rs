//! Probes against real endpoints on loopback, and three probers (three vantage points) sharing one store:
//! an endpoint killed is declared down within the 3 s target and comes back after the rise threshold; an
//! endpoint that refuses only one vantage point does not fail over; a stopped prober's opinions vanish and
//! the decision is recomputed from the others.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_config::{CheckTarget, Config, HttpCheck, StatusMatch};
use meridian_health::State;
use meridian_probe::testing::Endpoint;
use meridian_probe::*;
use meridian_store::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

fn http(url: &str) -> HttpCheck {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let (host, port) = authority.rsplit_once(':').unwrap();
    HttpCheck {
        url: url.into(),
        tls: false,
        host: host.into(),
        port: port.parse().unwrap(),
        path: format!("/{path}"),
        host_header: None,
        expect_status: StatusMatch::Success,
        body_match: None,
    }
}

const T: Duration = Duration::from_millis(700);

#[tokio::test]
async fn http_probe_sends_host_and_user_agent_and_checks_status_and_body() {
    let e = Endpoint::start().await;
    let mut check = http(&e.url());
    check.host_header = Some("meet.gslb.example".into());
    let ua = user_agent("v7");
    let o = probe(&CheckTarget::Http(check.clone()), &ua, T).await;
    assert!(o.ok, "{o:?}");
    assert!(o.latency < T);
    let head = e.heads().pop().unwrap();
    assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nHost: meet.gslb.example\r\n"), "{head}");
    assert!(
        head.contains("\r\nUser-Agent: meridian-health/0.1.0 (vantage v7)\r\n"),
        "{head}"
    );

    check.body_match = Some("ok".into());
    assert!(probe(&CheckTarget::Http(check.clone()), &ua, T).await.ok);
    check.body_match = Some("healthy".into());
    let o = probe(&CheckTarget::Http(check.clone()), &ua, T).await;
    assert!(!o.ok);
    assert_eq!(o.detail.as_deref(), Some("body does not contain \"healthy\""));

    check.body_match = None;
    check.expect_status = StatusMatch::AnyOf(vec![204]);
    let o = probe(&CheckTarget::Http(check.clone()), &ua, T).await;
    assert_eq!(o.detail.as_deref(), Some("status 200"));

    check.expect_status = StatusMatch::Success;
    e.refuse(Some("(vantage v7)"));
    let o = probe(&CheckTarget::Http(check.clone()), &ua, T).await;
    assert_eq!(o.detail.as_deref(), Some("status 503"));
    assert!(
        probe(&CheckTarget::Http(check), &user_agent("v8"), T).await.ok,
        "only v7 is refused"
    );
}

#[tokio::test]
async fn refused_silent_and_non_http_endpoints_fail_with_a_reason() {
    let mut e = Endpoint::start().await;
    let check = CheckTarget::Http(http(&e.url()));
    e.kill();
    let o = probe(&check, "t", T).await;
    assert!(!o.ok);
    assert!(
        o.detail.as_deref().unwrap().starts_with("connect 127.0.0.1:"),
        "{o:?}"
    );
    let tcp = CheckTarget::Tcp {
        host: "127.0.0.1".into(),
        port: e.addr().port(),
    };
    assert!(!probe(&tcp, "t", T).await.ok);
    e.revive().await;
    assert!(probe(&tcp, "t", T).await.ok, "revived on the same port");
    assert!(probe(&check, "t", T).await.ok);

    // Accepts, never answers: the timeout decides, on time.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let start = Instant::now();
    let o = probe(
        &CheckTarget::Http(http(&format!("http://{addr}/x"))),
        "t",
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(o.detail.as_deref(), Some("timeout after 300 ms"));
    assert!(
        start.elapsed() < Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );

    // Speaks something else; and TLS to a plain HTTP server fails in the handshake.
    let garbage = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gaddr = garbage.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = garbage.accept().await {
            let mut b = [0u8; 1024];
            let _ = c.read(&mut b).await;
            let _ = c.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        }
    });
    let o = probe(&CheckTarget::Http(http(&format!("http://{gaddr}/"))), "t", T).await;
    assert!(
        o.detail.as_deref().unwrap().starts_with("not an HTTP response"),
        "{o:?}"
    );
    let mut tls = http(&format!("http://{gaddr}/"));
    tls.tls = true;
    let o = probe(&CheckTarget::Http(tls), "t", T).await;
    assert!(
        o.detail
            .as_deref()
            .unwrap()
            .starts_with("TLS handshake with 127.0.0.1"),
        "{o:?}"
    );
    hold.abort();
}

// ---------------------------------------------------------------------------------------------------------
// Three probers.

/// Three regions, each with one HTTP check (defaults: 1 s interval, 0.7 s timeout, rise 2, fall 2).
fn config(endpoints: &[&Endpoint; 3]) -> Arc<Config> {
    let mut text = String::from("schema-version = 1\n");
    for (i, (id, e)) in ["a", "b", "c"].iter().zip(endpoints).enumerate() {
        text.push_str(&format!(
            "[regions.{id}]\nname = \"{id}\"\nlat = {}\nlon = 0\ncountry = \"DE\"\nipv4 = [\"192.0.2.{}\"]\ncapacity = 10\n\
             [[regions.{id}.health-checks]]\nkind = \"http\"\nurl = \"{}\"\nbody-match = \"ok\"\n",
            10 * i,
            i + 1,
            e.url()
        ));
    }
    Arc::new(Config::from_toml_str(&text).unwrap())
}

struct World {
    store: Arc<dyn KvStore>,
    watcher: SnapshotWatcher,
    probers: Vec<Option<Prober>>,
    _config: watch::Sender<Arc<Config>>,
}

async fn world(endpoints: &[&Endpoint; 3]) -> World {
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let config = config(endpoints);
    let (tx, rx) = watch::channel(config.clone());
    let mut options = WatcherOptions::new(keys.clone());
    options.bootstrap = Some(config);
    let watcher = SnapshotWatcher::spawn(store.clone(), options);
    let mut probers = Vec::new();
    for v in ["v1", "v2", "v3"] {
        let mut o = ProberOptions::new(v, keys.clone());
        o.lease_ttl = Duration::from_secs(2);
        probers.push(Some(Prober::start(store.clone(), o, rx.clone()).await.unwrap()));
    }
    World {
        store,
        watcher,
        probers,
        _config: tx,
    }
}

impl World {
    fn state(&self, region: &str) -> State {
        self.watcher
            .snapshot()
            .and_then(|s| s.health.region(region).map(|r| r.state))
            .unwrap_or(State::Unknown)
    }

    /// Waits until `region` is in `state`; returns how long it took.
    async fn until(&self, region: &str, state: State, within: Duration) -> Duration {
        let start = Instant::now();
        while self.state(region) != state {
            assert!(
                start.elapsed() < within,
                "{region} not {state:?} within {within:?}: {:?}",
                self.watcher.snapshot().map(|s| s.health.clone())
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        start.elapsed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_endpoint_is_down_within_3_s_and_comes_back_after_rise() {
    let (mut a, b, c) = (
        Endpoint::start().await,
        Endpoint::start().await,
        Endpoint::start().await,
    );
    let w = world(&[&a, &b, &c]).await;
    for r in ["a", "b", "c"] {
        w.until(r, State::Up, Duration::from_secs(5)).await;
    }
    a.kill();
    let down = w.until("a", State::Down, Duration::from_secs(5)).await;
    assert!(down < Duration::from_secs(3), "declared down after {down:?}");
    let snap = w.watcher.snapshot().unwrap();
    let region = snap.health.region("a").unwrap();
    let (fresh, against) = region.votes();
    assert!(fresh == 3 && against >= 2, "{region:?}");
    assert_eq!(w.state("b"), State::Up, "the others stay up");
    assert!(!snap.health.panic);
    let detail = snap
        .observations
        .iter()
        .find(|(t, _, o)| t == "a" && !o.healthy)
        .and_then(|(_, _, o)| o.detail.clone())
        .unwrap();
    assert!(detail.contains("connect 127.0.0.1"), "{detail}");

    a.revive().await;
    let up = w.until("a", State::Up, Duration::from_secs(5)).await;
    // rise = 2: two successful probes, at least one interval apart, at two of the three probers.
    assert!(up >= Duration::from_millis(1000), "up again after only {up:?}");
    assert!(up < Duration::from_secs(3), "up again after {up:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_from_one_vantage_point_is_not_down() {
    let (a, b, c) = (
        Endpoint::start().await,
        Endpoint::start().await,
        Endpoint::start().await,
    );
    let w = world(&[&a, &b, &c]).await;
    w.until("a", State::Up, Duration::from_secs(5)).await;
    a.refuse(Some("(vantage v2)"));
    // v2 concludes "down" (fall = 2) and publishes it; the region stays up throughout.
    let start = Instant::now();
    let mut v2_down_seen = false;
    while start.elapsed() < Duration::from_secs(4) {
        assert_eq!(w.state("a"), State::Up, "after {:?}", start.elapsed());
        let snap = w.watcher.snapshot().unwrap();
        v2_down_seen |= snap
            .observations
            .iter()
            .any(|(t, v, o)| t == "a" && v == "v2" && !o.healthy);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(v2_down_seen, "v2 did see the region down");
    let snap = w.watcher.snapshot().unwrap();
    assert_eq!(snap.health.region("a").unwrap().votes(), (3, 1));
    // The refusal was aimed: v1 and v3 were answered 200 meanwhile.
    assert!(a.heads().iter().any(|h| h.contains("(vantage v1)")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_prober_stops_counting() {
    let (mut a, b, c) = (
        Endpoint::start().await,
        Endpoint::start().await,
        Endpoint::start().await,
    );
    let mut w = world(&[&a, &b, &c]).await;
    w.until("a", State::Up, Duration::from_secs(5)).await;
    a.kill();
    w.until("a", State::Down, Duration::from_secs(5)).await;
    // Every prober's own verdict is in (the quorum may have been reached by two of them).
    let start = Instant::now();
    while w.watcher.snapshot().unwrap().health.region("a").unwrap().votes() != (3, 3) {
        assert!(start.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    w.probers[2].take().unwrap().stop().await.unwrap();
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    assert!(
        w.store.get(&keys.health("a", "v3")).await.unwrap().is_none(),
        "v3's opinions went with its lease"
    );
    // Recomputed from v1 and v2: both still see it down.
    let start = Instant::now();
    loop {
        let snap = w.watcher.snapshot().unwrap();
        let r = snap.health.region("a").unwrap();
        if r.opinions.len() == 2 {
            assert_eq!((r.state, r.votes()), (State::Down, (2, 2)));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "{r:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // With v2 also gone and v1 seeing it back, one opinion decides.
    w.probers[1].take().unwrap().stop().await.unwrap();
    a.revive().await;
    w.until("a", State::Up, Duration::from_secs(4)).await;
    assert_eq!(
        w.watcher.snapshot().unwrap().health.region("a").unwrap().votes(),
        (1, 0)
    );
}

/// Configuration changes apply live: a check that changes target restarts; removed checks withdraw the
/// prober's opinion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_apply_live() {
    let (mut a, b, c) = (
        Endpoint::start().await,
        Endpoint::start().await,
        Endpoint::start().await,
    );
    let spare = Endpoint::start().await;
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let (tx, rx) = watch::channel(config(&[&a, &b, &c]));
    let prober = Prober::start(store.clone(), ProberOptions::new("v1", keys.clone()), rx)
        .await
        .unwrap();
    let healthy = |region: &'static str| {
        let (store, key) = (store.clone(), keys.health(region, "v1"));
        async move {
            store.get(&key).await.unwrap().map(|kv| {
                schema::decode::<schema::HealthObservation>(&kv.value)
                    .unwrap()
                    .healthy
            })
        }
    };
    let start = Instant::now();
    while healthy("a").await != Some(true) {
        assert!(start.elapsed() < Duration::from_secs(4));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Region a now points at the spare endpoint; the old one dies: a stays healthy.
    tx.send(config(&[&spare, &b, &c])).unwrap();
    a.kill();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(healthy("a").await, Some(true));
    assert!(spare.heads().len() >= 2, "the new target is probed");
    // Region c loses its checks: the opinion is withdrawn.
    let mut without_c = String::from("schema-version = 1\n");
    for (i, (id, e)) in ["a", "b", "c"].iter().zip([&spare, &b, &c]).enumerate() {
        without_c.push_str(&format!(
            "[regions.{id}]\nname = \"{id}\"\nlat = {}\nlon = 0\ncountry = \"DE\"\nipv4 = [\"192.0.2.{}\"]\ncapacity = 10\n",
            10 * i,
            i + 1
        ));
        if *id != "c" {
            without_c.push_str(&format!(
                "[[regions.{id}.health-checks]]\nkind = \"http\"\nurl = \"{}\"\n",
                e.url()
            ));
        }
    }
    tx.send(Arc::new(Config::from_toml_str(&without_c).unwrap()))
        .unwrap();
    let start = Instant::now();
    while healthy("c").await.is_some() {
        assert!(start.elapsed() < Duration::from_secs(2), "c's opinion withdrawn");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    prober.stop().await.unwrap();
    assert_eq!(healthy("b").await, None, "stopping revokes the lease");
}
