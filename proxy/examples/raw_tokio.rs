//! The floor under any tokio-based HTTP/1.1 proxy: no pingora, no routing, no headers added — each
//! client connection gets its own keep-alive upstream connection, requests and responses are parsed
//! with `httparse` and forwarded as bytes. Only bodiless requests and `Content-Length` responses (what
//! the proxy benchmark sends and gets). `bench/proxy/run` measures it beside pingora, so the report can
//! tell what pingora's pipeline costs from what tokio and the kernel cost on this machine.
//!
//! Usage: raw_tokio LISTEN UPSTREAM   (e.g. 127.0.0.1:18095 127.0.0.1:18081); one thread.

#![allow(clippy::expect_used)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = args.get(1).expect("LISTEN").parse().expect("LISTEN: an address");
    let upstream: SocketAddr = args
        .get(2)
        .expect("UPSTREAM")
        .parse()
        .expect("UPSTREAM: an address");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = serve(client, upstream).await;
            });
        }
    });
}

/// Reads from `s` into `buf` (appending) until `complete(buf)` returns the message length.
async fn read_message(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    complete: impl Fn(&[u8]) -> Option<usize>,
) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(n) = complete(buf) {
            return Ok(Some(n));
        }
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn request_len(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Some(n),
        _ => None,
    }
}

fn response_len(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(head)) => {
            let body = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                .unwrap_or(0);
            (buf.len() >= head + body).then_some(head + body)
        }
        _ => None,
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut origin = TcpStream::connect(upstream).await?;
    origin.set_nodelay(true)?;
    let mut req = Vec::with_capacity(4096);
    let mut resp = Vec::with_capacity(4096);
    loop {
        let Some(n) = read_message(&mut client, &mut req, request_len).await? else {
            return Ok(());
        };
        origin.write_all(&req[..n]).await?;
        req.drain(..n);
        let Some(m) = read_message(&mut origin, &mut resp, response_len).await? else {
            return Ok(());
        };
        client.write_all(&resp[..m]).await?;
        resp.drain(..m);
    }
}
