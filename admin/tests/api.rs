//! The admin API over HTTP on loopback, one battery run against both back ends (an in-memory embedded
//! store and a real etcd), like the store's conformance battery: authentication, status, weights, drains,
//! drills (and their expiry without any store event), safety refusals and `force`, compare-and-swap
//! conflicts, explain, configuration, the audit log, and JSON errors.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_admin::api::{
    ConfigApplied, DrillAnswer, ExplainAnswer, ExplainLocation, NodeList, PutConfig, RegionAnswer,
    RegionList, Status,
};
use meridian_admin::client::{AdminClient, ClientError};
use meridian_admin::{AdminContext, AdminServer, Auth, serve};
use meridian_config::Config;
use meridian_geoip::GeoDb;
use meridian_store::testing::EtcdServer;
use meridian_store::*;
use serde_json::{Value, json};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/meridian.toml");

/// Keeps whatever the back end needs alive (the etcd process) for the duration of a test.
enum Guard {
    None,
    Etcd(EtcdServer),
}

fn embedded() -> (Arc<dyn KvStore>, Guard) {
    (Arc::new(EmbeddedStore::in_memory()), Guard::None)
}

fn etcd() -> (Arc<dyn KvStore>, Guard) {
    let server = EtcdServer::start();
    let mut opts = EtcdOptions::new(vec![server.client_url.clone()]);
    opts.request_timeout = Duration::from_secs(1);
    opts.connect_timeout = Duration::from_secs(1);
    let store = EtcdStore::new(opts).unwrap();
    (Arc::new(store), Guard::Etcd(server))
}

struct Node {
    server: AdminServer,
    client: AdminClient,
    watcher: Arc<SnapshotWatcher>,
    geo: Arc<GeoDb>,
}

async fn node(store: Arc<dyn KvStore>) -> Node {
    node_with_tls(store, None, None).await
}

/// A node serving HTTPS with `tls` when given, and its client trusting the CA certificates in `ca_file`.
async fn node_with_tls(
    store: Arc<dyn KvStore>,
    tls: Option<Arc<rustls::ServerConfig>>,
    ca_file: Option<&std::path::Path>,
) -> Node {
    node_at(store, tls, ca_file, "127.0.0.1:0").await
}

/// A node listening on `bind`.
async fn node_at(
    store: Arc<dyn KvStore>,
    tls: Option<Arc<rustls::ServerConfig>>,
    ca_file: Option<&std::path::Path>,
    bind: &str,
) -> Node {
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let mut options = WatcherOptions::new(keys.clone());
    options.bootstrap = Some(Arc::new(Config::load(std::path::Path::new(EXAMPLE)).unwrap()));
    let watcher = Arc::new(SnapshotWatcher::spawn(store.clone(), options));
    assert!(watcher.wait_for(1, Duration::from_secs(10)).await || watcher.snapshot().is_some());
    let geo = Arc::new(GeoDb::bundled().unwrap());
    let g = geo.clone();
    let ctx = AdminContext {
        store,
        keys,
        watcher: watcher.clone(),
        geo: Arc::new(move || g.clone()),
        auth: Auth::token(TOKEN).unwrap(),
        tls,
        node: "test".into(),
    };
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let server = serve(listener, ctx).await.unwrap();
    let client =
        AdminClient::new(&server.url(), Some(TOKEN.into()), ca_file, Duration::from_secs(5)).unwrap();
    Node {
        server,
        client,
        watcher,
        geo,
    }
}

fn api_error(r: Result<Value, ClientError>) -> (u16, String, Value) {
    match r {
        Err(ClientError::Api { status, error }) => {
            let code = error.code.clone();
            (status, code, serde_json::to_value(&error).unwrap())
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// An answer read as the API's typed document, which must hold all of it: written back, it is the same
/// JSON (no field the type lacks, none it adds or renames).
fn same_as_sent<T: serde::de::DeserializeOwned + serde::Serialize>(answer: &Value) -> T {
    let typed: T = serde_json::from_value(answer.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&typed).unwrap(), answer);
    typed
}

fn region<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
}

/// The first region of the decision for a client (through the API's explain, on the live snapshot).
async fn decision(n: &Node, client: &str) -> String {
    let v = n
        .client
        .get(&format!("/v1/explain?service=meet&client={client}"))
        .await
        .unwrap();
    v["report"]["decision"]["regions"][0]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn unauthenticated_is_401(store: Arc<dyn KvStore>) {
    let n = node(store).await;
    for token in [None, Some("not-the-token-at-all".to_owned())] {
        let c = AdminClient::new(&n.server.url(), token, None, Duration::from_secs(5)).unwrap();
        for path in ["/v1/status", "/v1/audit", "/v1/config"] {
            let (status, code, _) = api_error(c.get(path).await);
            assert_eq!((status, code.as_str()), (401, "unauthorized"), "{path}");
        }
        let (status, _, _) = api_error(
            c.send("PUT", "/v1/regions/waw/drain", Some(&json!({"reason": "x"})))
                .await,
        );
        assert_eq!(status, 401);
    }
    // Nothing was written by the refused requests.
    assert!(
        n.client.get("/v1/audit").await.unwrap()["records"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn weights_drains_and_audit(store: Arc<dyn KvStore>) {
    let n = node(store).await;
    let status = n.client.get("/v1/status").await.unwrap();
    assert_eq!(region(&status, "fra")["weight"], 200);
    assert_eq!(region(&status, "fra")["health"]["state"], "unknown");
    assert_eq!(region(&status, "waw")["usable"], true);

    let r = n
        .client
        .send(
            "PUT",
            "/v1/regions/fra/weight",
            Some(&json!({"weight": 50, "reason": "half load", "author": "alice"})),
        )
        .await
        .unwrap();
    let rev = r["revision"].as_i64().unwrap();
    // Read-your-writes: the answer comes once this node's snapshot has the change.
    let status = n.client.get("/v1/status").await.unwrap();
    assert!(status["revision"].as_i64().unwrap() >= rev);
    let fra = region(&status, "fra");
    assert_eq!(fra["weight"], 50);
    assert_eq!(fra["configured_weight"], 200);
    assert_eq!(fra["weight_override"]["author"], "alice");
    assert_eq!(fra["weight_override"]["reason"], "half load");

    n.client
        .send(
            "PUT",
            "/v1/regions/waw/drain",
            Some(&json!({"reason": "rack move", "author": "bob"})),
        )
        .await
        .unwrap();
    let status = n.client.get("/v1/status").await.unwrap();
    let waw = region(&status, "waw");
    assert_eq!(waw["drained"]["reason"], "rack move");
    assert_eq!(waw["usable"], false);
    assert_eq!(waw["excluded"], "drained");
    let typed: Status = same_as_sent(&status);
    let fra = typed.regions.iter().find(|r| r.id == "fra").unwrap();
    assert_eq!(fra.weight_override.as_ref().unwrap().author, "alice");
    assert!(
        matches!(typed.nodes, Some(NodeList::Listed { .. })),
        "{:?}",
        typed.nodes
    );
    let regions: RegionList = same_as_sent(&n.client.get("/v1/regions").await.unwrap());
    assert_eq!(regions.regions.len(), typed.regions.len());
    let one: RegionAnswer = same_as_sent(&n.client.get("/v1/regions/waw").await.unwrap());
    assert_eq!(one.region.drained.unwrap().author, "bob");
    assert_eq!(
        decision(&n, "83.0.0.1").await,
        "fra",
        "a Polish client leaves drained Warsaw"
    );

    n.client
        .send(
            "DELETE",
            "/v1/regions/waw/drain",
            Some(&json!({"reason": "done"})),
        )
        .await
        .unwrap();
    n.client
        .send("DELETE", "/v1/regions/fra/weight", None)
        .await
        .unwrap();
    let status = n.client.get("/v1/status").await.unwrap();
    assert_eq!(region(&status, "fra")["weight"], 200);
    assert!(region(&status, "waw")["drained"].is_null());
    assert_eq!(decision(&n, "83.0.0.1").await, "waw");

    let audit = n.client.get("/v1/audit").await.unwrap();
    let what: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["what"].as_str().unwrap())
        .collect();
    assert_eq!(
        what,
        [
            "region clear-weight fra",
            "region undrain waw: done",
            "region drain waw",
            "region set-weight fra 50",
        ],
        "newest first"
    );
    let first = &audit["records"][3];
    assert_eq!(first["who"], "alice");
    assert!(first["before"].is_null());
    assert_eq!(first["after"]["weight"], 50);
    assert_eq!(audit["records"][0]["before"]["document"]["weight"], 50);
    let limited = n.client.get("/v1/audit?limit=1").await.unwrap();
    assert_eq!(limited["records"].as_array().unwrap().len(), 1);
    assert_eq!(limited["total"], 4);
}

async fn bad_requests_are_clear(store: Arc<dyn KvStore>) {
    let n = node(store).await;
    let c = &n.client;
    let (s, code, e) = api_error(
        c.send(
            "PUT",
            "/v1/regions/xyz/weight",
            Some(&json!({"weight": 5, "reason": "r"})),
        )
        .await,
    );
    assert_eq!((s, code.as_str()), (404, "unknown-region"));
    assert!(e["message"].as_str().unwrap().contains("known: waw, fra"), "{e}");
    let (s, _, e) = api_error(
        c.send(
            "PUT",
            "/v1/regions/waw/weight",
            Some(&json!({"weight": 10001, "reason": "r"})),
        )
        .await,
    );
    assert_eq!(s, 400);
    assert!(e["message"].as_str().unwrap().contains("maximum 10000"));
    let (s, _, e) = api_error(c.send("PUT", "/v1/regions/waw/drain", Some(&json!({}))).await);
    assert_eq!(s, 400);
    assert!(e["message"].as_str().unwrap().contains("reason is required"));
    let (s, _, e) = api_error(
        c.send(
            "PUT",
            "/v1/regions/waw/weight",
            Some(&json!({"weight": "x", "reason": "r"})),
        )
        .await,
    );
    assert_eq!(s, 400);
    assert!(e["message"].as_str().unwrap().starts_with("request body"), "{e}");
    let (s, _, e) = api_error(
        c.send(
            "PUT",
            "/v1/regions/waw/drain",
            Some(&json!({"reason": "r", "forse": true})),
        )
        .await,
    );
    assert_eq!(s, 400, "unknown fields are refused: {e}");
    let (s, code, _) = api_error(c.get("/v1/nothing").await);
    assert_eq!((s, code.as_str()), (404, "not-found"));
    let (s, code, _) = api_error(c.send("POST", "/v1/status", None).await);
    assert_eq!((s, code.as_str()), (405, "method-not-allowed"));
    let (s, code, _) = api_error(c.get("/v1/explain?service=nope&client=1.2.3.4").await);
    assert_eq!((s, code.as_str()), (404, "unknown-service"));
    let (s, _, _) = api_error(c.get("/v1/explain?service=meet&client=banana").await);
    assert_eq!(s, 400);
    let (s, _, e) = api_error(
        c.send(
            "POST",
            "/v1/drills",
            Some(&json!({"region": "waw", "mode": "sideways", "duration_ms": 1000, "reason": "r"})),
        )
        .await,
    );
    assert_eq!(s, 400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("down, drain or capacity=PCT")
    );
    let (s, _, _) = api_error(
        c.send(
            "POST",
            "/v1/drills",
            Some(&json!({"region": "waw", "mode": "down", "duration_ms": 0, "reason": "r"})),
        )
        .await,
    );
    assert_eq!(s, 400);
    // None of it reached the store.
    assert_eq!(c.get("/v1/audit").await.unwrap()["total"], 0);
}

/// One raw HTTP/1.1 request with the bearer token (a body that is not JSON cannot go through the
/// client): (status, body as JSON).
async fn raw(n: &Node, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, _, body) = raw_to(n.server.addr, method, path, body).await;
    (status, body)
}

/// One raw HTTP/1.1 request to `addr`: (status, head, body as JSON).
async fn raw_to(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.get(9..12).unwrap().parse().unwrap();
    (
        status,
        head.to_owned(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// A 400 whose message names `field` (and says `also`), from a raw request.
async fn refused_naming(n: &Node, method: &str, path: &str, body: &str, field: &str, also: &str) {
    let (status, doc) = raw(n, method, path, body).await;
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (400, Some("bad-request")),
        "{method} {path} {body}: {doc}"
    );
    assert!(
        message.contains(field) && message.contains(also),
        "{method} {path} {body}: the message should name {field:?} and say {also:?}: {message}"
    );
}

/// Bad input on every write the dashboard makes (drill start, undrain, drill stop) and on the audit
/// log's query: a 400 naming the field, and nothing changed — the drain and the drill stay, the audit log
/// has no new record.
async fn bad_input_changes_nothing(store: Arc<dyn KvStore>) {
    let n = node(store).await;
    let c = &n.client;
    c.send("PUT", "/v1/regions/waw/drain", Some(&json!({"reason": "before"})))
        .await
        .unwrap();
    c.send(
        "POST",
        "/v1/drills",
        Some(&json!({"region": "bhs", "mode": "drain", "duration_ms": 600_000, "reason": "r", "id": "kept"})),
    )
    .await
    .unwrap();
    let total = c.get("/v1/audit").await.unwrap()["total"].clone();
    assert_eq!(total, 2);

    // Drill start.
    let drill = |extra: Value| {
        let mut b = json!({"region": "vin", "mode": "down", "duration_ms": 60_000, "reason": "r"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string()
    };
    for (body, field, also) in [
        (
            drill(json!({"mode": "capacity=150"})),
            "capacity=150",
            "from 0 to 100",
        ),
        (
            drill(json!({"mode": "capacity=-5"})),
            "capacity=-5",
            "from 0 to 100",
        ),
        (
            drill(json!({"mode": "capacity=half"})),
            "capacity=half",
            "from 0 to 100",
        ),
        (drill(json!({"duration_ms": -1})), "duration_ms", "invalid value"),
        (drill(json!({"duration_ms": 1e20})), "duration_ms", "invalid type"),
        (
            drill(json!({"duration_ms": 300_000_000})),
            "duration_ms",
            "72 hours",
        ),
        (drill(json!({"region": "nowhere"})), "nowhere", "known"),
        (drill(json!({"reason": ""})), "reason", "required"),
        (drill(json!({"force": "yes"})), "force", "expected a boolean"),
        (drill(json!({"id": "Has Spaces"})), "drill id", "a-z"),
        (drill(json!({"minutes": 5})), "minutes", "unknown field"),
        ("{\"region\": \"bhs\"".to_owned(), "request body", "EOF"),
        ("[]".to_owned(), "request body", "invalid type"),
    ] {
        let (status, doc) = raw(&n, "POST", "/v1/drills", &body).await;
        let message = doc["error"]["message"].as_str().unwrap_or_default();
        // An unknown region is a 404 (its own code); everything else a 400.
        let want = if field == "nowhere" { 404 } else { 400 };
        assert_eq!(status, want, "{body}: {doc}");
        assert!(
            message.contains(field) && message.contains(also),
            "{body}: the message should name {field:?} and say {also:?}: {message}"
        );
    }
    // Undrain and drill stop: their bodies are optional, but a body given must be right.
    for path in ["/v1/regions/waw/drain", "/v1/drills/kept"] {
        for (body, field, also) in [
            ("{\"reason\": 5}", "reason", "expected a string"),
            ("{\"force\": \"yes\"}", "force", "expected a boolean"),
            ("{\"expect_revision\": \"x\"}", "expect_revision", "expected i64"),
            ("{\"forse\": true}", "forse", "unknown field"),
            ("reason=done", "request body", "expected value"),
            ("{} {}", "request body", "trailing characters"),
        ] {
            refused_naming(&n, "DELETE", path, body, field, also).await;
        }
        let long = json!({"reason": "x".repeat(1001)}).to_string();
        refused_naming(&n, "DELETE", path, &long, "reason", "longer than 1000").await;
    }
    // The audit log's limit.
    for limit in ["abc", "-1", "0", "1001", "99999999999999999999999", "1.5", ""] {
        refused_naming(
            &n,
            "GET",
            &format!("/v1/audit?limit={limit}"),
            "",
            &format!("limit: {limit:?}"),
            "from 1 to 1000",
        )
        .await;
    }
    refused_naming(
        &n,
        "GET",
        "/v1/audit?limt=5",
        "",
        "\"limt\"",
        "unknown query parameter",
    )
    .await;
    refused_naming(&n, "GET", "/v1/drills?all=maybe", "", "all", "not true or false").await;

    // Nothing changed: waw is still drained, the drill still runs, no drill on vin, no new record.
    let status = c.get("/v1/status").await.unwrap();
    assert_eq!(region(&status, "waw")["drained"]["reason"], "before", "{status}");
    assert_eq!(region(&status, "bhs")["drills"][0]["id"], "kept", "{status}");
    assert_eq!(region(&status, "vin")["drills"], json!([]), "{status}");
    assert_eq!(c.get("/v1/audit").await.unwrap()["total"], total);
    // And the same bodies, right, do apply.
    c.send("DELETE", "/v1/drills/kept", Some(&json!({"reason": "done"})))
        .await
        .unwrap();
    c.send("DELETE", "/v1/regions/waw/drain", Some(&json!({"force": false})))
        .await
        .unwrap();
    assert_eq!(c.get("/v1/audit?limit=1000").await.unwrap()["total"], 4);
}

async fn concurrent_edits_one_wins(store: Arc<dyn KvStore>) {
    let n = node(store).await;
    let read = n.client.get("/v1/status").await.unwrap()["revision"]
        .as_i64()
        .unwrap();
    let body =
        |w: u32, who: &str| json!({"weight": w, "reason": "r", "author": who, "expect_revision": read});
    let (alice, bob) = (body(10, "alice"), body(20, "bob"));
    let (a, b) = tokio::join!(
        n.client.send("PUT", "/v1/regions/waw/weight", Some(&alice)),
        n.client.send("PUT", "/v1/regions/waw/weight", Some(&bob))
    );
    let (winner, loser) = match (a, b) {
        (Ok(_), Err(e)) => (10, e),
        (Err(e), Ok(_)) => (20, e),
        (a, b) => panic!("exactly one must win: {a:?} / {b:?}"),
    };
    let ClientError::Api { status, error } = loser else {
        panic!("{loser:?}")
    };
    assert_eq!(status, 409);
    assert_eq!(
        error.current.unwrap()["document"]["weight"],
        winner,
        "the conflict names the current value"
    );
    let status = n.client.get("/v1/status").await.unwrap();
    assert_eq!(region(&status, "waw")["weight"], winner);
    assert_eq!(
        n.client.get("/v1/audit").await.unwrap()["total"],
        1,
        "one change, one record"
    );

    // A stale revision is a conflict too, and a fresh one applies.
    let (s, _, _) = api_error(
        n.client
            .send("PUT", "/v1/regions/waw/weight", Some(&body(30, "carol")))
            .await,
    );
    assert_eq!(s, 409);
    let fresh = status["revision"].as_i64().unwrap();
    n.client
        .send(
            "PUT",
            "/v1/regions/waw/weight",
            Some(&json!({"weight": 30, "reason": "r", "expect_revision": fresh})),
        )
        .await
        .unwrap();
}

async fn safety_refuses_unless_forced(store: Arc<dyn KvStore>) {
    let n = node(store).await;
    let drain = |r: &'static str, force: bool| {
        let c = n.client.clone();
        async move {
            c.send(
                "PUT",
                &format!("/v1/regions/{r}/drain"),
                Some(&json!({"reason": "maintenance", "force": force})),
            )
            .await
        }
    };
    for r in ["sbg", "gra", "waw"] {
        drain(r, false).await.unwrap();
    }
    // fra is the last EU region (GDPR clients of meet and api) and files' last region.
    let (s, code, e) = api_error(drain("fra", false).await);
    assert_eq!((s, code.as_str()), (422, "refused"));
    let v = e["violations"].as_array().unwrap();
    assert!(
        v.contains(&json!({"kind": "no-usable-region", "service": "files"})),
        "{e}"
    );
    assert!(
        v.contains(&json!({"kind": "residency-without-region", "service": "meet", "rule": "gdpr", "jurisdiction": "eu"})),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap().contains("use force"));
    // Weight 0 and drills count the same.
    let (s, _, _) = api_error(
        n.client
            .send(
                "PUT",
                "/v1/regions/fra/weight",
                Some(&json!({"weight": 0, "reason": "r"})),
            )
            .await,
    );
    assert_eq!(s, 422);
    let (s, _, _) = api_error(
        n.client
            .send(
                "POST",
                "/v1/drills",
                Some(&json!({"region": "fra", "mode": "down", "duration_ms": 60000, "reason": "r"})),
            )
            .await,
    );
    assert_eq!(s, 422);
    // A capacity drill excludes nothing.
    let d = n
        .client
        .send(
            "POST",
            "/v1/drills",
            Some(&json!({"region": "fra", "mode": "capacity=50", "duration_ms": 60000, "reason": "r"})),
        )
        .await
        .unwrap();
    n.client
        .send(
            "DELETE",
            &format!("/v1/drills/{}", d["id"].as_str().unwrap()),
            None,
        )
        .await
        .unwrap();

    let r = drain("fra", true).await.unwrap();
    assert_eq!(r["forced"].as_array().unwrap().len(), 2, "{r}");
    let audit = n.client.get("/v1/audit?limit=1").await.unwrap();
    assert_eq!(audit["records"][0]["what"], "region drain fra");
    assert_eq!(
        audit["records"][0]["after"]["forced"].as_array().unwrap().len(),
        2
    );
    // Already broken: an unrelated change is not blocked, and repairing is allowed.
    drain("lon", false).await.unwrap();
    n.client
        .send("DELETE", "/v1/regions/fra/drain", None)
        .await
        .unwrap();
}

async fn drills_act_and_expire_on_their_own(store: Arc<dyn KvStore>) {
    let n = node(store).await;
    assert_eq!(decision(&n, "83.0.0.1").await, "waw");
    let started = n
        .client
        .send(
            "POST",
            "/v1/drills",
            Some(&json!({"region": "waw", "mode": "down", "duration_ms": 1500, "reason": "failover drill", "author": "alice"})),
        )
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("waw-down-"), "{id}");
    assert_eq!(started["drill"]["active"], true);
    assert_eq!(
        decision(&n, "83.0.0.1").await,
        "fra",
        "drilled down: a Polish client moves"
    );
    let status = n.client.get("/v1/status").await.unwrap();
    let waw = region(&status, "waw");
    assert_eq!(waw["usable"], false);
    assert_eq!(waw["excluded"], format!("drill {id} (down)"));
    assert_eq!(waw["drills"][0]["id"], id.as_str());
    assert_eq!(status["drills"].as_array().unwrap().len(), 1);
    let typed: Status = same_as_sent(&status);
    assert_eq!(typed.drills[0].id, id);
    let listed = n.client.get("/v1/drills").await.unwrap();
    assert_eq!(listed["drills"][0]["reason"], "failover drill");
    let one = n.client.get(&format!("/v1/drills/{id}")).await.unwrap();
    assert_eq!(one["drill"]["mode"], "down");
    let _: DrillAnswer = same_as_sent(&one);

    // One drill per region at a time.
    let (s, code, _) = api_error(
        n.client
            .send(
                "POST",
                "/v1/drills",
                Some(&json!({"region": "waw", "mode": "drain", "duration_ms": 1000, "reason": "again"})),
            )
            .await,
    );
    assert_eq!((s, code.as_str()), (409, "conflict"));

    // The drill ends at its expiry with nothing written to the store: readers enforce it.
    let rev = n.watcher.snapshot().unwrap().revision;
    let expires = started["drill"]["expires_at_ms"].as_u64().unwrap();
    let now = meridian_now();
    tokio::time::sleep(Duration::from_millis(expires.saturating_sub(now) + 50)).await;
    assert_eq!(decision(&n, "83.0.0.1").await, "waw", "back at expiry");
    assert_eq!(
        n.watcher.snapshot().unwrap().revision,
        rev,
        "no store event was needed"
    );
    let status = n.client.get("/v1/status").await.unwrap();
    assert_eq!(region(&status, "waw")["usable"], true);
    assert!(status["drills"].as_array().unwrap().is_empty());
    let all = n.client.get("/v1/drills?all=true").await.unwrap();
    assert_eq!(all["drills"][0]["active"], false);

    // Stopping removes the document; stopping again is 404.
    n.client
        .send(
            "DELETE",
            &format!("/v1/drills/{id}"),
            Some(&json!({"reason": "cleanup"})),
        )
        .await
        .unwrap();
    let (s, code, _) = api_error(n.client.send("DELETE", &format!("/v1/drills/{id}"), None).await);
    assert_eq!((s, code.as_str()), (404, "unknown-drill"));
}

fn meridian_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn explain_matches_the_library(store: Arc<dyn KvStore>) {
    let n = node(store).await;
    let v = n
        .client
        .get("/v1/explain?service=meet.gslb.example&client=83.0.0.1")
        .await
        .unwrap();
    let snap = n.watcher.snapshot().unwrap();
    let ip: IpAddr = "83.0.0.1".parse().unwrap();
    let local = meridian_admin::explain::explain(
        &snap.topology,
        &snap.states,
        &n.geo,
        "meet",
        ip,
        None,
        meridian_now(),
    )
    .unwrap();
    assert_eq!(v["text"].as_str().unwrap(), local.text);
    let answer: ExplainAnswer = same_as_sent(&v);
    assert_eq!(answer.text, local.text);
    assert_eq!(answer.report.decision, local.report.decision);
    assert!(
        matches!(&answer.report.client.location, ExplainLocation::Known { country: Some(c), .. } if c == "PL"),
        "{:?}",
        answer.report.client.location
    );
    assert!(local.text.contains("decision   waw (normal)"), "{}", local.text);
    assert_eq!(v["report"]["client"]["location"]["country"], "PL");
    // A client nowhere: the other form of the location, typed too.
    let nowhere = n
        .client
        .get("/v1/explain?service=meet&client=10.1.2.3")
        .await
        .unwrap();
    let answer: ExplainAnswer = same_as_sent(&nowhere);
    assert!(
        matches!(&answer.report.client.location, ExplainLocation::Unknown { known: false, reason } if reason == "non-routable"),
        "{nowhere}"
    );
}

async fn config_get_and_put(store: Arc<dyn KvStore>) {
    let n = node(store).await;
    let (s, code, _) = api_error(n.client.get("/v1/config").await);
    assert_eq!((s, code.as_str()), (404, "no-config"));
    let toml = std::fs::read_to_string(EXAMPLE).unwrap();
    let r = n
        .client
        .send(
            "PUT",
            "/v1/config",
            Some(&json!({"toml": toml, "expect_revision": 0, "author": "alice"})),
        )
        .await
        .unwrap();
    assert_eq!(r["outcome"], "applied");
    let rev = r["revision"].as_i64().unwrap();
    let got = n.client.get("/v1/config").await.unwrap();
    assert_eq!(got["revision"], rev);
    assert_eq!(got["author"], "alice");
    let status = n.client.get("/v1/status").await.unwrap();
    assert_eq!(status["config"]["source"], "store");
    // A second writer who read "no configuration" loses.
    let (s, _, e) = api_error(
        n.client
            .send(
                "PUT",
                "/v1/config",
                Some(&json!({"toml": toml.replace("ttl = 30", "ttl = 31"), "expect_revision": 0})),
            )
            .await,
    );
    assert_eq!(s, 409);
    assert_eq!(e["current"]["revision"], rev);
    let (s, _, e) = api_error(
        n.client
            .send(
                "PUT",
                "/v1/config",
                Some(&json!({"toml": "schema-version = 1\n[regions.x]\n"})),
            )
            .await,
    );
    assert_eq!(s, 400);
    assert!(e["message"].as_str().unwrap().contains("invalid"), "{e}");
    let same = n
        .client
        .send("PUT", "/v1/config", Some(&json!({"toml": toml})))
        .await
        .unwrap();
    assert_eq!(same["outcome"], "unchanged");
}

/// `PUT /v1/config` passes the safety checks every other write passes: a configuration that takes the
/// last usable EU region away from a residency rule, or the last usable region from a service, given the
/// operators' drains, is refused unless forced; a forced one is recorded as such.
async fn config_changes_are_checked_for_safety(store: Arc<dyn KvStore>) {
    let n = node(store).await;
    let put = |toml: &str, force: bool| {
        let (c, toml) = (n.client.clone(), toml.to_owned());
        async move {
            c.send_as::<_, ConfigApplied>(
                "PUT",
                "/v1/config",
                &PutConfig {
                    toml,
                    expect_revision: None,
                    author: Some("alice".into()),
                    force,
                },
            )
            .await
        }
    };
    // fra is left as the only usable EU region (each drain leaves it, so none is refused).
    for r in ["waw", "sbg", "gra"] {
        n.client
            .send(
                "PUT",
                &format!("/v1/regions/{r}/drain"),
                Some(&json!({"reason": "maintenance"})),
            )
            .await
            .unwrap();
    }
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let meet = r#"regions = ["waw", "fra", "lon", "sbg", "gra", "bhs", "vin", "hil"]
residency = ["gdpr"]
unknown-location = ["fra", "vin"]"#;
    assert!(example.contains(meet));
    // A valid configuration (meet keeps EU regions) without fra for meet: its GDPR clients would get no
    // answer. Refused, nothing written.
    let without_fra = example.replace(
        meet,
        r#"regions = ["waw", "lon", "sbg", "gra", "bhs", "vin", "hil"]
residency = ["gdpr"]
unknown-location = ["waw", "vin"]"#,
    );
    let gdpr =
        json!({"kind": "residency-without-region", "service": "meet", "rule": "gdpr", "jurisdiction": "eu"});
    let (s, code, e) = api_error(
        n.client
            .send("PUT", "/v1/config", Some(&json!({"toml": without_fra})))
            .await,
    );
    assert_eq!((s, code.as_str()), (422, "refused"), "{e}");
    assert_eq!(e["violations"], json!([gdpr]), "{e}");
    assert!(e["message"].as_str().unwrap().contains("use force"), "{e}");
    let (s, code, _) = api_error(n.client.get("/v1/config").await);
    assert_eq!((s, code.as_str()), (404, "no-config"), "nothing was written");

    // Forced: applied, and the answer and the audit record say what was forced.
    let r = put(&without_fra, true).await.unwrap();
    let ConfigApplied::Applied { revision, forced, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(serde_json::to_value(&forced).unwrap(), json!([gdpr]));
    let got = n.client.get("/v1/config").await.unwrap();
    assert_eq!(got["toml"], without_fra);
    assert_eq!(got["revision"], revision);
    let audit = n.client.get("/v1/audit?limit=1").await.unwrap();
    let record = &audit["records"][0];
    assert_eq!(record["what"], "config apply", "{record}");
    assert_eq!(record["who"], "alice", "{record}");
    assert_eq!(record["after"]["forced"], json!([gdpr]), "{record}");
    assert_eq!(record["after"]["toml"], without_fra);

    // Already broken: an unrelated change is not blocked; the same text again is unchanged.
    let ttl = without_fra.replace("ttl = 30", "ttl = 31");
    let r = put(&ttl, false).await.unwrap();
    assert!(
        matches!(&r, ConfigApplied::Applied { forced, .. } if forced.is_empty()),
        "{r:?}"
    );
    assert!(matches!(
        put(&ttl, false).await.unwrap(),
        ConfigApplied::Unchanged { .. }
    ));

    // Drains count under the new configuration: files = [waw], waw drained, has no usable region.
    let files = r#"regions = ["waw", "fra"]
ttl = 60"#;
    assert!(ttl.contains(files));
    let only_waw = ttl.replace(files, "regions = [\"waw\"]\nttl = 60");
    let (s, _, e) = api_error(put(&only_waw, false).await.map(|r| json!(r)));
    assert_eq!(s, 422, "{e}");
    assert_eq!(
        e["violations"],
        json!([{"kind": "no-usable-region", "service": "files"}]),
        "{e}"
    );
    // Once waw is back, it is fine.
    n.client
        .send("DELETE", "/v1/regions/waw/drain", None)
        .await
        .unwrap();
    put(&only_waw, false).await.unwrap();
}

macro_rules! battery {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unauthenticated_is_401() {
                let (s, _g) = super::$backend();
                super::unauthenticated_is_401(s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn weights_drains_and_audit() {
                let (s, _g) = super::$backend();
                super::weights_drains_and_audit(s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_requests_are_clear() {
                let (s, _g) = super::$backend();
                super::bad_requests_are_clear(s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_input_changes_nothing() {
                let (s, _g) = super::$backend();
                super::bad_input_changes_nothing(s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_edits_one_wins() {
                let (s, _g) = super::$backend();
                super::concurrent_edits_one_wins(s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn safety_refuses_unless_forced() {
                let (s, _g) = super::$backend();
                super::safety_refuses_unless_forced(s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn drills_act_and_expire_on_their_own() {
                let (s, _g) = super::$backend();
                super::drills_act_and_expire_on_their_own(s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn explain_matches_the_library() {
                let (s, _g) = super::$backend();
                super::explain_matches_the_library(s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn config_get_and_put() {
                let (s, _g) = super::$backend();
                super::config_get_and_put(s).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn config_changes_are_checked_for_safety() {
                let (s, _g) = super::$backend();
                super::config_changes_are_checked_for_safety(s).await;
            }
        }
    };
}

battery!(embedded);
battery!(etcd);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_unreachable_is_503_and_status_still_answers() {
    let (store, guard) = etcd();
    let n = node(store).await;
    let Guard::Etcd(mut etcd) = guard else {
        unreachable!()
    };
    etcd.kill();
    let (s, code, _) = api_error(
        n.client
            .send("PUT", "/v1/regions/waw/drain", Some(&json!({"reason": "r"})))
            .await,
    );
    assert_eq!((s, code.as_str()), (503, "unavailable"));
    // Status reads the last snapshot: it answers, and says the store is out of sight.
    let start = Instant::now();
    loop {
        let status = n.client.get("/v1/status").await.unwrap();
        if status["connected"] == false {
            // The registrations cannot be read either: the status says why.
            let typed: Status = same_as_sent(&status);
            assert!(
                matches!(typed.nodes, Some(NodeList::Unreadable { .. })),
                "{status}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_no_auth_is_loopback_only() {
    let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::in_memory());
    let keys = Keys::new(DEFAULT_PREFIX).unwrap();
    let watcher = Arc::new(SnapshotWatcher::spawn(
        store.clone(),
        WatcherOptions::new(keys.clone()),
    ));
    let geo = Arc::new(GeoDb::bundled().unwrap());
    let ctx = AdminContext {
        store,
        keys,
        watcher,
        geo: Arc::new(move || geo.clone()),
        auth: Auth::InsecureNone,
        tls: None,
        node: "test".into(),
    };
    let any = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = serve(any, ctx.clone()).await.unwrap_err();
    assert!(err.contains("only loopback"), "{err}");
    let lo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve(lo, ctx).await.unwrap();
    let c = AdminClient::new(&server.url(), None, None, Duration::from_secs(5)).unwrap();
    // No configuration anywhere yet: 503, not a crash.
    let (s, _, e) = api_error(c.get("/v1/status").await);
    assert_eq!(s, 503, "{e}");
    // The first configuration can come through the API (checked for safety against nothing served).
    let toml = std::fs::read_to_string(EXAMPLE).unwrap();
    let r = c
        .send("PUT", "/v1/config", Some(&json!({"toml": toml})))
        .await
        .unwrap();
    assert_eq!(
        (&r["outcome"], &r["forced"]),
        (&json!("applied"), &json!([])),
        "{r}"
    );
    assert_eq!(c.get("/v1/status").await.unwrap()["config"]["source"], "store");
    assert!(Auth::token("short").is_err());
    assert!(Auth::token("has a space in the middle!").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = AdminClient::new(
        &format!("http://127.0.0.1:{port}"),
        None,
        None,
        Duration::from_secs(2),
    )
    .unwrap();
    let e = c.get("/v1/status").await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("cannot reach the admin API"), "{e}");
    assert!(AdminClient::new("ftp://x", None, None, Duration::from_secs(1)).is_err());
}

/// Certificates for a TLS test: a CA, and a server certificate for 127.0.0.1 signed by it.
struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "meridian test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

/// The API over HTTPS: a client trusting the CA gets answers; one trusting only the web PKI, and a
/// plain-HTTP client, are refused with an error, not an answer; bad certificate files are named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca() {
    let pki = TestPki::new();
    let tls = meridian_admin::tls_config(&pki.path("cert.pem"), &pki.path("key.pem")).unwrap();
    let n = node_with_tls(embedded().0, Some(tls), Some(&pki.path("ca.pem"))).await;
    let url = n.server.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // Trusting the test CA: the API answers, and the token is still required.
    let status = n.client.get("/v1/status").await.unwrap();
    assert_eq!(status["node"], "test", "{status}");
    assert!(
        status["regions"].as_array().is_some_and(|r| !r.is_empty()),
        "{status}"
    );
    let anonymous = AdminClient::new(&url, None, Some(&pki.path("ca.pem")), Duration::from_secs(5)).unwrap();
    let (s, _, _) = api_error(anonymous.get("/v1/status").await);
    assert_eq!(s, 401);

    // Trusting only the web PKI roots: the handshake fails, nothing is answered.
    let web = AdminClient::new(&url, Some(TOKEN.into()), None, Duration::from_secs(5)).unwrap();
    let e = web.get("/v1/status").await.unwrap_err();
    assert!(!matches!(e, ClientError::Api { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    // The dashboard's login over HTTPS sets a Secure cookie (with curl, a real client).
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(["-X", "POST", "-H", "Content-Type: application/json", "--data"])
        .arg(format!("{{\"token\": \"{TOKEN}\"}}"))
        .arg(format!("{url}/dashboard/login"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 204"), "{head}");
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_default();
    assert!(
        cookie.contains("; secure") && cookie.contains("httponly") && cookie.contains("samesite=strict"),
        "{head}"
    );

    // Plain HTTP to the HTTPS port: an error, not an answer.
    let plain_url = url.replacen("https://", "http://", 1);
    let plain = AdminClient::new(&plain_url, Some(TOKEN.into()), None, Duration::from_secs(5)).unwrap();
    assert!(plain.get("/v1/status").await.is_err());

    // Bad files are named.
    let missing = pki.path("missing.pem");
    let e = meridian_admin::tls_config(&missing, &pki.path("key.pem")).unwrap_err();
    assert!(e.contains("missing.pem"), "{e}");
    let e = meridian_admin::tls_config(&pki.path("key.pem"), &pki.path("key.pem")).unwrap_err();
    assert!(e.contains("key.pem") && e.contains("no certificate"), "{e}");
    let e = meridian_admin::tls_config(&pki.path("cert.pem"), &pki.path("ca.pem")).unwrap_err();
    assert!(e.contains("ca.pem"), "{e}");
    // A CA file that is not PEM is refused by the client, naming it.
    let e = AdminClient::new(&url, None, Some(&pki.path("missing.pem")), Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
}

/// The dashboard's session cookie is always Secure, and a login over plain HTTP on loopback gets it (also
/// an IPv4 client of a dual-stack listener, at ::ffff:127.0.0.1). The refusal on another local address is
/// tested end to end in a network namespace (`tests/e2e/dashboard.rs`), the address rule by a unit test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_login_over_plain_http_on_loopback() {
    let login = json!({ "token": TOKEN }).to_string();
    let cookie_of = |head: &str| {
        head.lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .map(str::to_owned)
    };
    let n = node_at(embedded().0, None, None, "127.0.0.1:0").await;
    let (status, head, doc) = raw_to(n.server.addr, "POST", "/dashboard/login", &login).await;
    assert_eq!(status, 204, "{head}{doc}");
    let cookie = cookie_of(&head).unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.ends_with("; Secure"),
        "{cookie}"
    );

    // A dual-stack listener: an IPv4 client on loopback arrives at ::ffff:127.0.0.1, still loopback.
    let v6 = node_at(embedded().0, None, None, "[::]:0").await;
    let (status, head, doc) = raw_to(
        ([127, 0, 0, 1], v6.server.addr.port()).into(),
        "POST",
        "/dashboard/login",
        &login,
    )
    .await;
    assert_eq!(status, 204, "{head}{doc}");
    assert!(cookie_of(&head).unwrap().ends_with("; Secure"), "{head}");
}
