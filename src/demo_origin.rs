//! The demo origin of `meridian up`: a tiny HTTP/1.1 server standing in for a region's application, so a
//! newcomer can see which region served a request. Every path answers `200` with a line naming the region
//! (and an `x-demo-region` header); `/healthz` answers `ok` for the probers. Keep-alive, bodies read and
//! discarded by `Content-Length`; anything it cannot parse gets `400` and the connection closed.
//!
//! Not a production component: it exists for `meridian up` and the tests that run it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body read (and discarded).
const MAX_BODY: usize = 1 << 20;
/// An idle keep-alive connection is closed after this.
const IDLE: Duration = Duration::from_secs(30);

/// A running demo origin.
pub(crate) struct DemoOrigin {
    /// The address it listens on.
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for DemoOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DemoOrigin {
    /// Listens on `addr` (port 0: a free port) and answers as region `region` (`name`).
    pub(crate) async fn start(addr: SocketAddr, region: &str, name: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let body: std::sync::Arc<str> = format!("served by region {region} ({name})\n").into();
        let region: std::sync::Arc<str> = region.into();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (region, body) = (region.clone(), body.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &region, &body).await;
                });
            }
        });
        Ok(Self { addr, task })
    }
}

async fn serve(mut stream: TcpStream, region: &str, body: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        // Read one request head.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return reply(
                    &mut stream,
                    "400 Bad Request",
                    "x",
                    "request head too large\n",
                    true,
                )
                .await;
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout(IDLE, stream.read(&mut chunk)).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            };
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        if head.contains('\u{fffd}') {
            return reply(
                &mut stream,
                "400 Bad Request",
                region,
                "request head is not UTF-8\n",
                true,
            )
            .await;
        }
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default();
        let mut parts = line.split(' ');
        let (Some(_method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
            return reply(&mut stream, "400 Bad Request", region, "bad request line\n", true).await;
        };
        let mut length = 0usize;
        let mut close = version == "HTTP/1.0";
        for h in lines {
            let Some((name, value)) = h.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                match value.parse::<usize>() {
                    Ok(n) if n <= MAX_BODY => length = n,
                    _ => {
                        return reply(
                            &mut stream,
                            "400 Bad Request",
                            region,
                            "bad content-length\n",
                            true,
                        )
                        .await;
                    }
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return reply(
                    &mut stream,
                    "411 Length Required",
                    region,
                    "send a content-length\n",
                    true,
                )
                .await;
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        buf.drain(..end);
        while buf.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..length);
        let path = target.split('?').next().unwrap_or_default();
        let text = if path == "/healthz" { "ok\n" } else { body };
        reply(&mut stream, "200 OK", region, text, close).await?;
        if close {
            return Ok(());
        }
    }
}

async fn reply(
    stream: &mut TcpStream,
    status: &str,
    region: &str,
    body: &str,
    close: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nx-demo-region: {region}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    stream.write_all(format!("{head}{body}").as_bytes()).await
}
