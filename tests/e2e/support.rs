//! Running the binary and reading what it printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn meridian() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
}

pub(crate) fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/meridian.toml")
}

pub(crate) fn run(args: &[&str]) -> Output {
    meridian().args(args).output().expect("meridian runs")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A process of ours, stopped by PID with SIGINT (its clean-shutdown signal) when dropped.
pub(crate) struct Interrupted(pub(crate) std::process::Child);

impl Interrupted {
    /// Sends SIGINT and waits for the exit status; a process still running 15 s later is killed (its
    /// status then says so, and a test expecting a clean stop fails instead of hanging). Why the bound:
    /// a program that finds SIGINT ignored when it starts keeps ignoring it (Go's runtime, so Pebble,
    /// does; a shell's background job starts so), and waiting for it would hang the test binary.
    pub(crate) fn interrupt(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        self.0.wait().expect("waiting for our child")
    }
}

impl Drop for Interrupted {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.interrupt();
        }
    }
}

/// A loopback port free right now for both UDP and TCP (a DNS server binds both).
///
/// Why not `bind(":0")`: the kernel hands those out of the ephemeral range, the same range every
/// outgoing connection of every test running alongside draws its local port from, so a port that was
/// free here can be some connection's source port by the time the server under test binds it (seen in
/// CI). Ports are taken instead from below the ephemeral range (20000-32767), each at most once per
/// test process, starting at a point that depends on the process id.
pub(crate) fn free_udp_port() -> u16 {
    free_port()
}

/// A loopback TCP port free right now (and free for UDP too; see [`free_udp_port`]).
pub(crate) fn free_tcp_port() -> u16 {
    free_port()
}

fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000-32767")
}

/// A plain HTTP/1.1 GET: (status, body); status 0 when nothing listens.
pub(crate) fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// One `A` query for `name` with an EDNS Client Subnet option for `subnet`/24, over UDP; `None` when
/// nothing answered within 300 ms or the answer did not parse.
pub(crate) fn ask(
    addr: std::net::SocketAddr,
    name: &str,
    subnet: &str,
) -> Option<hickory_proto::op::Message> {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut e = Edns::new();
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        subnet.parse().unwrap(),
        24,
        0,
    )));
    m.set_edns(e);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    sock.send_to(&m.to_vec().unwrap(), addr).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Message::from_vec(&buf[..n]).ok()
}

/// The addresses of the `A` records of an answer.
pub(crate) fn a_records(m: &hickory_proto::op::Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The CLI pointed at the admin API of a `meridian up` whose data directory is `dir` (its token there);
/// what it printed, after checking it succeeded.
pub(crate) fn up_cli(admin: std::net::SocketAddr, dir: &Path, args: &[&str]) -> String {
    let token = std::fs::read_to_string(dir.join("admin-token")).unwrap();
    let o = meridian()
        .env("MERIDIAN_SERVER", format!("http://{admin}"))
        .env("MERIDIAN_TOKEN", token.trim())
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}
