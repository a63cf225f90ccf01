//! A minimal HTTP/1.1 GET over TCP or TLS: one request per connection (`Connection: close`), enough to
//! read a status line, headers and the first 64 KiB of a body. Health endpoints answer small documents;
//! a full client (pools, redirects, HTTP/2) would only add ways to fail differently from real clients.

use std::sync::{Arc, OnceLock};

use meridian_config::HttpCheck;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How much of the body a `body-match` looks at (and the most a probe reads).
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
const HEAD_LIMIT: usize = 16 * 1024;

/// Runs the check once; `Err` says why it failed. No timeout here: the caller bounds the whole probe.
pub(crate) async fn probe(check: &HttpCheck, user_agent: &str) -> Result<(), String> {
    let tcp = TcpStream::connect((check.host.as_str(), check.port))
        .await
        .map_err(|e| format!("connect {}:{}: {e}", check.host, check.port))?;
    // Probes are tiny: waiting to coalesce them only adds latency.
    let _ = tcp.set_nodelay(true);
    if check.tls {
        // The TLS server name is the Host header's (without a port), else the URL's host.
        let server = match &check.host_header {
            Some(h) => without_port(h),
            None => check.host.clone(),
        };
        let server_name =
            ServerName::try_from(server.clone()).map_err(|e| format!("TLS server name {server:?}: {e}"))?;
        let stream = tls_connector()?
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {server}: {e}"))?;
        exchange(stream, check, user_agent).await
    } else {
        exchange(tcp, check, user_agent).await
    }
}

fn without_port(host: &str) -> String {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_owned();
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h.to_owned(),
        _ => host.to_owned(),
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        // An explicit provider: the process-wide default is ambiguous when several are compiled in.
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| format!("TLS set-up: {e}"))
    });
    config.clone().map(tokio_rustls::TlsConnector::from)
}

/// The `Host` header: the configured one, else the URL's authority (port only when not the default).
fn host_header(check: &HttpCheck) -> String {
    if let Some(h) = &check.host_header {
        return h.clone();
    }
    let host = if check.host.contains(':') {
        format!("[{}]", check.host)
    } else {
        check.host.clone()
    };
    let default = if check.tls { 443 } else { 80 };
    if check.port == default {
        host
    } else {
        format!("{host}:{}", check.port)
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    check: &HttpCheck,
    user_agent: &str,
) -> Result<(), String> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        check.path,
        host_header(check)
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let (status, head_len, framing) = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before a complete response head".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                break (status, len, Framing::of(response.headers));
            }
            Ok(httparse::Status::Partial) if buf.len() < HEAD_LIMIT => {}
            Ok(httparse::Status::Partial) => return Err(format!("response head over {HEAD_LIMIT} bytes")),
            Err(e) => return Err(format!("not an HTTP response: {e}")),
        }
    };
    if !check.expect_status.accepts(status) {
        return Err(format!("status {status}"));
    }
    let Some(needle) = &check.body_match else {
        return Ok(());
    };
    let mut body = buf.split_off(head_len);
    loop {
        if body.len() >= BODY_LIMIT || framing.complete(&body) {
            break;
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            // A body cut short may still hold the text: judge what arrived.
            Err(_) => break,
        }
    }
    let body = framing.decode(body);
    let limit = body.len().min(BODY_LIMIT);
    if contains(&body[..limit], needle.as_bytes()) {
        Ok(())
    } else {
        Err(format!("body does not contain {needle:?}"))
    }
}

/// How the body's end is known.
#[derive(Clone, Copy, Debug)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl Framing {
    fn of(headers: &[httparse::Header<'_>]) -> Self {
        let get = |name: &str| {
            headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
        };
        if get("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
            Self::Chunked
        } else if let Some(n) = get("content-length").and_then(|v| v.parse().ok()) {
            Self::Length(n)
        } else {
            Self::UntilClose
        }
    }

    fn complete(self, body: &[u8]) -> bool {
        match self {
            Self::Length(n) => body.len() >= n,
            Self::Chunked => body.ends_with(b"0\r\n\r\n"),
            Self::UntilClose => false,
        }
    }

    fn decode(self, body: Vec<u8>) -> Vec<u8> {
        match self {
            Self::Length(n) => body.into_iter().take(n).collect(),
            Self::UntilClose => body,
            Self::Chunked => {
                let mut out = Vec::with_capacity(body.len());
                let mut rest = body.as_slice();
                while let Some(eol) = find(rest, b"\r\n") {
                    let size = std::str::from_utf8(&rest[..eol]).ok().and_then(|s| {
                        usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok()
                    });
                    let Some(size) = size.filter(|s| *s > 0) else {
                        break;
                    };
                    let data = &rest[eol + 2..];
                    let take = size.min(data.len());
                    out.extend_from_slice(&data[..take]);
                    rest = data.get(take + 2..).unwrap_or(&[]);
                }
                out
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        let body = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n3\r\nok!\r\n0\r\n\r\n".to_vec();
        assert!(Framing::Chunked.complete(&body));
        assert_eq!(Framing::Chunked.decode(body), b"Wikipedia ok!");
        assert_eq!(Framing::Length(3).decode(b"abcdef".to_vec()), b"abc");
    }
}
