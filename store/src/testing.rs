//! A real etcd for tests and benchmarks: Debian's `etcd` on free loopback ports, in a temporary directory,
//! stopped by PID when dropped. Never skips: if `etcd` is not installed, it fails and says what to install.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        let addr = self.client_url.trim_start_matches("http://").to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd exited during start-up ({status}); log: {}", self.log());
            }
            // Serving means answering the version endpoint, not merely accepting connections.
            if let Ok(out) = Command::new("curl")
                .args(["-sf", "--max-time", "1"])
                .arg(format!("http://{addr}/health"))
                .output()
                && out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("true")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd did not become healthy within 20 s; log: {}", self.log());
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
