//! The Prometheus endpoint of a Meridian process: `GET /metrics` in the text exposition format.
//!
//! Deliberately tiny (HTTP/1.1, one request per connection, `Connection: close`): a scrape every few
//! seconds needs nothing more, and it keeps an HTTP framework out of processes that have no other HTTP
//! to serve. Bad requests get 400, other paths 404, other methods 405; a slow or oversized request head is
//! cut off.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time allowed to send the request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `registry` on `addr`; returns the address bound (port 0: a free port).
pub(crate) async fn serve(
    addr: SocketAddr,
    registry: Registry,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let _ = handle(stream, &registry).await;
            });
        }
    });
    Ok((bound, task))
}

async fn handle(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(HEAD_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 || head.len() + n > MAX_HEAD {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok(true)
    })
    .await;
    let (status, content_type, body) = match complete {
        Ok(Ok(true)) => route(&head, registry),
        _ => ("400 Bad Request", "text/plain", b"bad request\n".to_vec()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

fn route(head: &[u8], registry: &Registry) -> (&'static str, &'static str, Vec<u8>) {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return ("400 Bad Request", "text/plain", b"bad request line\n".to_vec());
    };
    if !version.starts_with(b"HTTP/1.") {
        return ("400 Bad Request", "text/plain", b"HTTP/1.x only\n".to_vec());
    }
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    if path != b"/metrics" {
        return (
            "404 Not Found",
            "text/plain",
            b"only /metrics is served here\n".to_vec(),
        );
    }
    if method != b"GET" {
        return ("405 Method Not Allowed", "text/plain", b"GET only\n".to_vec());
    }
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => ("200 OK", "text/plain; version=0.0.4", body),
        Err(e) => (
            "500 Internal Server Error",
            "text/plain",
            format!("{e}\n").into_bytes(),
        ),
    }
}
