//! Loopback HTTP origins and a minimal HTTP/1.1 client, for tests and benchmarks (feature `testing`).
//!
//! An [`Origin`] answers every request with `200` and a body naming its region and the forwarding headers
//! it received (`region=waw`, `x-forwarded-for=...`, `x-meridian-hop=...`), `GET /healthz` with `ok`. It
//! can be slowed down and killed (listener and every connection closed at once, as a crashed process).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A loopback origin server.
#[derive(Debug)]
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Origin {
    /// Starts an origin for `region` on a free loopback port.
    pub async fn start(region: &str) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?, region).await
    }

    /// Starts an origin for `region` on `addr`.
    pub async fn start_on(addr: SocketAddr, region: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let region = region.to_owned();
        let (h, d, t) = (hits.clone(), delay_ms.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let conn = tokio::spawn(serve(stream, region.clone(), h.clone(), d.clone()));
                let mut tasks = t.lock().unwrap_or_else(|p| p.into_inner());
                tasks.retain(|a| !a.is_finished());
                tasks.push(conn.abort_handle());
            }
        });
        tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(accept.abort_handle());
        Ok(Self {
            addr,
            hits,
            delay_ms,
            tasks,
        })
    }

    /// Requests answered (health checks excluded).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Delays every answer by `ms`.
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Closes the listener and every connection, as if the process died.
    pub fn kill(&self) {
        for t in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve(mut stream: TcpStream, region: String, hits: Arc<AtomicU64>, delay: Arc<AtomicU64>) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > 1 << 20 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let header = |name: &str| {
            head.lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        };
        if header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            let key = header("sec-websocket-key").unwrap_or_default();
            let rest = buf[head_end..].to_vec();
            websocket_echo(stream, &key, &region, rest).await;
            return;
        }
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let body = if path == "/healthz" {
            "ok\n".to_owned()
        } else {
            hits.fetch_add(1, Ordering::Relaxed);
            let d = delay.load(Ordering::Relaxed);
            if d > 0 {
                tokio::time::sleep(Duration::from_millis(d)).await;
            }
            format!(
                "region={region}\nx-forwarded-for={}\nx-forwarded-proto={}\nforwarded={}\nx-meridian-hop={}\n",
                header("x-forwarded-for").unwrap_or_default(),
                header("x-forwarded-proto").unwrap_or_default(),
                header("forwarded").unwrap_or_default(),
                header("x-meridian-hop").unwrap_or_default(),
            )
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nx-origin-region: {region}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2): base64 of the SHA-1 of the key and the GUID.
pub fn websocket_accept(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    base64(digest.as_ref())
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Accepts a WebSocket upgrade and echoes every text or binary message, prefixed with `REGION:` so a
/// client sees which region's origin answered; answers a close with a close.
async fn websocket_echo(mut stream: TcpStream, key: &str, region: &str, mut buf: Vec<u8>) {
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {}\r\nx-origin-region: {region}\r\n\r\n",
        websocket_accept(key)
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut chunk = [0u8; 4096];
    loop {
        // One frame: FIN/opcode, mask bit and length, the masking key, the payload (RFC 6455 §5.2).
        let frame = loop {
            if let Some(f) = parse_frame(&buf) {
                break f;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > 1 << 20 {
                return;
            }
        };
        let (opcode, payload, used) = frame;
        buf.drain(..used);
        let reply = match opcode {
            0x8 => {
                let _ = stream.write_all(&frame_bytes(0x8, &payload)).await;
                return;
            }
            0x9 => frame_bytes(0xA, &payload),
            0x1 | 0x2 => {
                let mut p = format!("{region}:").into_bytes();
                p.extend_from_slice(&payload);
                frame_bytes(opcode, &p)
            }
            _ => continue,
        };
        if stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// A complete frame at the start of `buf`: (opcode, unmasked payload, octets used).
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => (usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
        127 => (
            usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let mask = if masked {
        let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let data = buf.get(at..at + len)?;
    let payload = match mask {
        Some(m) => data.iter().enumerate().map(|(i, b)| b ^ m[i % 4]).collect(),
        None => data.to_vec(),
    };
    Some((b0 & 0x0f, payload, at + len))
}

/// An unmasked final frame (server to client).
fn frame_bytes(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A response read by [`request`].
#[derive(Clone, Debug, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes on a new connection and reads until the server closes it (or 5 s pass).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).to_string())
}

/// One request on a new connection (`Connection: close`), with extra headers; the response parsed.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let text = raw(addr, req.as_bytes()).await?;
    parse_response(&text).ok_or_else(|| std::io::Error::other(format!("bad response: {text:?}")))
}

/// `GET` shorthand.
pub async fn get(addr: SocketAddr, host: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    request(addr, "GET", host, "/", headers).await
}

/// Parses an HTTP/1.1 response (body up to the end of the text).
pub fn parse_response(text: &str) -> Option<Response> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Response {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}
