//! Operators against a real 3-member etcd cluster (a `meridian dns` node with its admin API, given all
//! three URLs): with each member killed in turn, and right after the leader is killed, every operator call
//! succeeds — drills, weights, `meridian config get`, the audit log — and DNS keeps answering.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use meridian_store::testing::EtcdCluster;

use crate::support::{
    Interrupted, ask, example, free_tcp_port, free_udp_port, http_get, meridian, stderr, stdout,
};

const TOKEN: &str = "cluster-test-token";

struct Node {
    dns: SocketAddr,
    admin: SocketAddr,
    token: std::path::PathBuf,
    urls: String,
    _process: Interrupted,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(cluster: &EtcdCluster) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let dns: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let urls = cluster.client_urls().join(",");
        let applied = meridian()
            .args(["config", "apply", example().to_str().unwrap(), "--author", "test"])
            .args(["--etcd", &urls])
            .output()
            .unwrap();
        assert!(applied.status.success(), "{}", stderr(&applied));
        let process = Interrupted(
            meridian()
                .args(["dns", "--config", example().to_str().unwrap(), "--rrl-rate", "0"])
                .args(["--listen", &dns.to_string(), "--admin-listen", &admin.to_string()])
                .arg("--admin-token-file")
                .arg(&token)
                .args(["--etcd", &urls])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let start = Instant::now();
        while http_get(admin, "/v1/status").0 != 401 {
            assert!(start.elapsed() < Duration::from_secs(20), "node not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            dns,
            admin,
            token,
            urls,
            _process: process,
            _dir: dir,
        }
    }

    /// Runs the CLI against this node; panics with its output unless it succeeds.
    fn ok(&self, args: &[&str]) -> String {
        let out = meridian()
            .args(args)
            .args(["--server", &format!("http://{}", self.admin)])
            .arg("--token-file")
            .arg(&self.token)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}{}", stdout(&out), stderr(&out));
        stdout(&out)
    }

    /// `meridian config get` straight from the store, with every member's URL.
    fn config_get(&self) -> String {
        let out = meridian()
            .args(["config", "get", "--etcd", &self.urls])
            .output()
            .unwrap();
        assert!(out.status.success(), "config get: {}", stderr(&out));
        stdout(&out)
    }

    /// One round of operator calls; returns the slowest.
    fn round(&self, label: &str) -> Duration {
        let mut slowest = Duration::ZERO;
        for i in 0..3 {
            let start = Instant::now();
            let out = self.ok(&[
                "drill",
                "start",
                "--region",
                "waw",
                "--mode",
                "drain",
                "--for",
                "5m",
                "--reason",
                &format!("{label} {i}"),
            ]);
            // "drill ID started: ..."
            let id = out.split_whitespace().nth(1).unwrap().to_owned();
            let list = self.ok(&["drill", "list"]);
            assert!(list.contains(&id), "{list}");
            self.ok(&["drill", "stop", &id]);
            self.ok(&["region", "set-weight", "fra", "60", "--reason", label]);
            self.ok(&["region", "clear-weight", "fra"]);
            assert!(self.config_get().contains("[regions.waw]"));
            let (status, _) = http_get(self.admin, "/v1/audit");
            assert_eq!(status, 401, "the audit endpoint answers (without a token: 401)");
            assert!(
                ask(self.dns, "meet.gslb.example.", "83.0.0.0").is_some(),
                "DNS answers"
            );
            slowest = slowest.max(start.elapsed());
        }
        slowest
    }
}

#[test]
fn operators_do_not_notice_a_member_down_nor_the_leader_killed() {
    let mut cluster = EtcdCluster::start(3);
    let node = Node::start(&cluster);
    node.round("all up");
    for i in 0..3 {
        cluster.kill(i);
        let slowest = node.round(&format!("m{i} down"));
        eprintln!("member {i} down: slowest round of operator calls {slowest:?}");
        cluster.restart(i);
    }
    // The leader killed, and a drill started at once: it succeeds (retried across members within its
    // deadline) and takes effect.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        if let Some(l) = cluster.leader() {
            break l;
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(50));
    };
    cluster.kill(leader);
    let killed = Instant::now();
    node.ok(&[
        "drill",
        "start",
        "--region",
        "waw",
        "--mode",
        "down",
        "--for",
        "1m",
        "--reason",
        "after the kill",
    ]);
    let took = killed.elapsed();
    eprintln!("drill start right after killing the leader: {took:?}");
    let list = node.ok(&["drill", "list"]);
    assert!(list.contains("after the kill"), "{list}");
}
