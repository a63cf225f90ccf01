//! A real etcd for tests and benchmarks: Debian's `etcd` on free loopback ports, in a temporary directory,
//! stopped by PID when dropped. Never skips: if `etcd` is not installed, it fails and says what to install.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Waits until the etcd at `client_url` reports itself healthy (serving means answering `/health`, not
/// merely accepting connections); `false` after `within`, or as soon as `alive` says the process is gone.
fn healthy_within(client_url: &str, within: Duration, mut alive: impl FnMut() -> bool) -> bool {
    let url = format!("{client_url}/health");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !alive() {
            return false;
        }
        if let Ok(out) = Command::new("curl")
            .args(["-sf", "--max-time", "1", &url])
            .output()
            && out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("true")
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A running etcd.
pub struct EtcdServer {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub client_url: String,
    peer_url: String,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    // Bind port 0 and release it; a race with another process is possible but etcd then fails to start,
    // loudly, rather than talking to a stranger.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl EtcdServer {
    /// Starts etcd and waits until it serves requests.
    ///
    /// # Panics
    /// If `etcd` is not installed or does not come up within 20 s: a test that needs etcd must not pass
    /// without it.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let mut server = Self {
            child: None,
            client_url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            dir,
        };
        server.spawn();
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))
            .unwrap_or_else(|e| panic!("cannot create the etcd log file: {e}"));
        let child = Command::new("etcd")
            .args(["--name", "meridian-test", "--data-dir"])
            .arg(self.data_dir())
            .args([
                "--listen-client-urls",
                &self.client_url,
                "--advertise-client-urls",
                &self.client_url,
            ])
            .args([
                "--listen-peer-urls",
                &self.peer_url,
                "--initial-advertise-peer-urls",
                &self.peer_url,
            ])
            .arg(format!("--initial-cluster=meridian-test={}", self.peer_url))
            // Short raft timers: leases can be as short as 1 s, and start-up is quick.
            .args(["--heartbeat-interval", "50", "--election-timeout", "250"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start etcd ({e}). Tests of the etcd store need Debian's etcd-server: \
                     run scripts/install-deps (apt-get install etcd-server)"
                )
            });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let url = self.client_url.clone();
        let mut exited = None;
        let child = &mut self.child;
        let ok = healthy_within(&url, Duration::from_secs(20), || {
            if let Some(c) = child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                exited = Some(status);
                return false;
            }
            true
        });
        if let Some(status) = exited {
            panic!("etcd exited during start-up ({status}); log: {}", self.log());
        }
        if !ok {
            panic!("etcd did not become healthy within 20 s; log: {}", self.log());
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills etcd (SIGKILL, by PID) and waits for it to exit. Data stays for [`EtcdServer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One member of an [`EtcdCluster`].
struct ClusterMember {
    name: String,
    client_url: String,
    peer_url: String,
    child: Option<Child>,
}

/// A real etcd cluster of several members on loopback (Debian's `etcd`), each on its own ports and
/// data directory, stopped by PID when dropped.
pub struct EtcdCluster {
    members: Vec<ClusterMember>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one serves.
    ///
    /// # Panics
    /// If `etcd` is not installed or the cluster does not come up within 30 s.
    pub fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let members: Vec<ClusterMember> = (0..n)
            .map(|i| ClusterMember {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                child: None,
            })
            .collect();
        let mut cluster = Self { members, dir };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        for i in 0..n {
            cluster.wait_ready(i);
        }
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial = self.initial_cluster();
        let data = self.dir.path().join(&self.members[i].name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", self.members[i].name)))
            .unwrap_or_else(|e| panic!("cannot create the etcd log file: {e}"));
        let m = &mut self.members[i];
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir"])
            .arg(data)
            .args([
                "--listen-client-urls",
                &m.client_url,
                "--advertise-client-urls",
                &m.client_url,
            ])
            .args([
                "--listen-peer-urls",
                &m.peer_url,
                "--initial-advertise-peer-urls",
                &m.peer_url,
            ])
            .args(["--initial-cluster", &initial, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", "meridian-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start etcd ({e}): run scripts/install-deps (apt-get install etcd-server)")
            });
        m.child = Some(child);
    }

    fn wait_ready(&mut self, i: usize) {
        if !healthy_within(&self.members[i].client_url, Duration::from_secs(30), || true) {
            panic!("etcd member {i} did not become healthy within 30 s");
        }
    }

    /// The members' client URLs.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The member that is the raft leader now, as its members see it (`None`: no leader, or no answer).
    pub fn leader(&self) -> Option<usize> {
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let Ok(out) = Command::new("curl")
                .args(["-sf", "--max-time", "1", "-X", "POST", "-d", "{}"])
                .arg(format!("{}/v3/maintenance/status", m.client_url))
                .output()
            else {
                continue;
            };
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let field = |name: &str| {
                let at = text.find(&format!("\"{name}\":\""))? + name.len() + 4;
                Some(text[at..].split('"').next()?.to_owned())
            };
            let (Some(me), Some(leader)) = (field("member_id"), field("leader")) else {
                continue;
            };
            if me == leader {
                return self.members.iter().position(|x| x.client_url == m.client_url);
            }
            // Ask the leader itself to say so (member ids are only known to the cluster).
        }
        None
    }

    /// Kills member `i` (SIGKILL, by PID); its data stays for [`EtcdCluster::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts every member that is down again, and returns as soon as the cluster serves (a member
    /// reports healthy, which takes a quorum): the moment "the store answers again".
    pub fn restart_all(&mut self) {
        let down: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_none())
            .collect();
        for &i in &down {
            self.spawn(i, "existing");
        }
        if let Some(&first) = down.first() {
            self.wait_ready(first);
        }
    }

    /// Starts member `i` again with its data, and waits until it serves.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, "existing");
        self.wait_ready(i);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
