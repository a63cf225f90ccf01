//! Node registration: real `meridian dns` and `meridian proxy` processes on etcd register themselves;
//! `meridian status` lists them, flags a frozen one as silent and one whose store view is old as lagging,
//! and a node that stops cleanly disappears at once.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_store::testing::EtcdServer;
use meridian_store::{EtcdOptions, EtcdStore, Keys, KvStore};

use crate::support::{
    Interrupted, example, free_tcp_port, free_udp_port, http_get, meridian, stderr, stdout,
};

const TOKEN: &str = "nodes-test-token";

fn status(admin: SocketAddr, token: &std::path::Path) -> String {
    let out = meridian()
        .args(["status", "--server", &format!("http://{admin}")])
        .arg("--token-file")
        .arg(token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn status_lists_the_nodes_and_flags_silent_and_lagging_ones() {
    let etcd = EtcdServer::start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let dns: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let _dns = Interrupted(
        meridian()
            .args(["dns", "--config", example().to_str().unwrap()])
            .args(["--listen", &dns.to_string(), "--admin-listen", &admin.to_string()])
            .arg("--admin-token-file")
            .arg(&token)
            .args(["--etcd", &etcd.client_url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let proxy_addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let mut proxy = Interrupted(
        meridian()
            .args([
                "proxy",
                "--region",
                "waw",
                "--instance",
                "proxy-waw-1",
                "--grace-period",
                "1",
            ])
            .args(["--config", example().to_str().unwrap()])
            .args(["--listen", &proxy_addr.to_string(), "--etcd", &etcd.client_url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until("the admin API answers", Duration::from_secs(20), || {
        http_get(admin, "/v1/status").0 == 401
    });
    until("both nodes registered", Duration::from_secs(10), || {
        let s = status(admin, &token);
        s.contains("ok       dns (") && s.contains("ok       proxy in waw (proxy-waw-1, v")
    });
    let s = status(admin, &token);
    assert!(s.contains("nodes (2; store at revision"), "{s}");

    // Frozen (SIGSTOP): its reports stop while its lease lives on: silent.
    let pid = proxy.0.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    until("the frozen proxy is flagged", Duration::from_secs(10), || {
        status(admin, &token).contains("SILENT   proxy in waw (proxy-waw-1")
    });
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    until("the thawed proxy is back", Duration::from_secs(10), || {
        status(admin, &token).contains("ok       proxy in waw (proxy-waw-1")
    });

    // A node whose store view is 5 s old (as a node cut off from the store would report it).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = EtcdStore::new(EtcdOptions::new(vec![etcd.client_url.clone()])).unwrap();
    let keys = Keys::new(meridian_store::DEFAULT_PREFIX).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let report = meridian_store::schema::NodeReport {
        schema: 1,
        role: "dns".into(),
        region: Some("bhs".into()),
        instance: "dns-bhs-1".into(),
        version: "0.1.0".into(),
        revision: 3,
        staleness_ms: 5_000,
        connected: false,
        started_at_ms: now - 60_000,
        reported_at_ms: now,
    };
    rt.block_on(store.put(
        &keys.node("dns", "dns-bhs-1"),
        meridian_store::schema::encode(&report),
        None,
    ))
    .unwrap();
    let s = status(admin, &token);
    let line = s
        .lines()
        .find(|l| l.contains("dns-bhs-1"))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        line.contains("LAGGING  dns in bhs (dns-bhs-1, v0.1.0) serves revision 3, the store is at")
            && line.contains("5.0 s stale (disconnected from the store)"),
        "{line}"
    );

    // A clean stop takes the registration with it at once.
    proxy.interrupt();
    let s = status(admin, &token);
    assert!(!s.contains("proxy-waw-1"), "{s}");
}
