//! A tiny HTTP endpoint for Prometheus: `GET /metrics` returns the registry in the text format; anything
//! else is 404. One request per connection; nothing here is on a serving path.

use std::net::SocketAddr;

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Binds `addr` and serves in the background; returns the bound address.
pub(crate) async fn serve(addr: SocketAddr, registry: Registry) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let registry = registry.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = if head.starts_with(b"GET /metrics ") {
                    let mut body = Vec::new();
                    let _ = TextEncoder::new().encode(&registry.gather(), &mut body);
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                } else {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
                };
                let _ = conn.write_all(&response).await;
            });
        }
    });
    Ok(bound)
}
