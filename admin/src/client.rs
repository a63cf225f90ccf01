//! The admin API's client (what the `meridian` CLI uses): one HTTP/1.1 request per connection, over TCP
//! or TLS, with a deadline, the bearer token, and errors that say what went wrong — the server could not be
//! reached, refused the token, or answered with an API error (its code and message).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::http::uri::{Scheme, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::api::{ErrorBody, ErrorDocument};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL or TLS settings are unusable.
    #[error("{0}")]
    Setup(String),
    /// Nothing answered (refused, timed out, TLS failed).
    #[error("cannot reach the admin API at {url}: {cause}")]
    Unreachable {
        /// The server.
        url: String,
        /// What happened.
        cause: String,
    },
    /// The API answered with an error document.
    #[error("{}", error.message)]
    Api {
        /// HTTP status.
        status: u16,
        /// The error: code, message, and `current` or `violations` where the error has them.
        error: ErrorBody,
    },
    /// The answer was not what the API sends.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol {
        /// The server.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A parsed `http(s)://host:port[/base]` URL.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    tls: bool,
    host: String,
    port: u16,
    base: String,
    display: String,
}

impl Target {
    /// The path to request (the URL's path, `/` if none).
    pub(crate) fn path_uri(&self) -> String {
        if self.base.is_empty() {
            "/".to_owned()
        } else {
            self.base.clone()
        }
    }

    /// `host:port` for the Host header (an IPv6 address in brackets).
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

pub(crate) fn parse_url(url: &str) -> Result<Target, ClientError> {
    let bad =
        |why: &str| ClientError::Setup(format!("server URL {url:?}: {why} (e.g. http://127.0.0.1:9090)"));
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP => false,
        Some(s) if *s == Scheme::HTTPS => true,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let base = uri.path().trim_end_matches('/').to_owned();
    Ok(Target {
        tls,
        host,
        port,
        base,
        display: url.trim_end_matches('/').to_owned(),
    })
}

pub(crate) fn client_tls(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ClientError::Setup(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| ClientError::Setup(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Setup(format!("{}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(target: &Target, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Box<dyn Io>, String> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok(Box::new(tcp));
    }
    let config = tls.ok_or("no TLS configuration")?;
    let name = ServerName::try_from(target.host.clone()).map_err(|e| format!("TLS server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(Box::new(stream))
}

/// One request on a fresh connection: (status, headers, body).
pub(crate) async fn exchange(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
    let io = connect(target, tls).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| e.to_string());
    let result = match response {
        Ok(r) => {
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            r.into_body()
                .collect()
                .await
                .map(|b| (status, headers, b.to_bytes()))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    driver.abort();
    result
}

/// A client of one node's admin API.
#[derive(Clone, Debug)]
pub struct AdminClient {
    target: Target,
    token: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

impl AdminClient {
    /// A client of the API at `url` (`http://127.0.0.1:9090`, `https://lb1.example:9090`), sending `token`;
    /// `ca_file` holds the CA certificates to trust over HTTPS (default: the web PKI roots).
    pub fn new(
        url: &str,
        token: Option<String>,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let target = parse_url(url)?;
        let tls = if target.tls {
            Some(client_tls(ca_file)?)
        } else {
            None
        };
        Ok(Self {
            target,
            token,
            tls,
            timeout,
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.target.display
    }

    /// `GET path` (`/v1/status`).
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send("GET", path, None).await
    }

    /// `GET path`, its answer read as `R` (one of the answers in [`crate::api`]).
    pub async fn get_as<R: DeserializeOwned>(&self, path: &str) -> Result<R, ClientError> {
        let value = self.get(path).await?;
        self.typed(path, value)
    }

    /// A request with a body of one of [`crate::api`]'s request types, its answer read as `R`.
    pub async fn send_as<B: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let body =
            serde_json::to_value(body).map_err(|e| ClientError::Setup(format!("request body: {e}")))?;
        let value = self.send(method, path, Some(&body)).await?;
        self.typed(path, value)
    }

    fn typed<R: DeserializeOwned>(&self, path: &str, value: Value) -> Result<R, ClientError> {
        serde_json::from_value(value).map_err(|e| ClientError::Protocol {
            url: self.target.display.clone(),
            detail: format!("the answer to {path} is not what this version reads: {e}"),
        })
    }

    /// A request with an optional JSON body; the JSON answer, or the API's error.
    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let uri = format!("{}{path}", self.target.base);
        let authority = if self.target.host.contains(':') {
            format!("[{}]:{}", self.target.host, self.target.port)
        } else {
            format!("{}:{}", self.target.host, self.target.port)
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", authority)
            .header("user-agent", concat!("meridian/", env!("CARGO_PKG_VERSION")))
            .header("accept", "application/json");
        if let Some(t) = &self.token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        let bytes = match body {
            Some(b) => {
                builder = builder.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(b).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let url = self.target.display.clone();
        let (status, _, body) =
            tokio::time::timeout(self.timeout, exchange(&self.target, self.tls.as_ref(), request))
                .await
                .map_err(|_| ClientError::Unreachable {
                    url: url.clone(),
                    cause: format!("no answer within {} ms", self.timeout.as_millis()),
                })?
                .map_err(|cause| ClientError::Unreachable {
                    url: url.clone(),
                    cause,
                })?;
        let value: Value = serde_json::from_slice(&body).map_err(|_| ClientError::Protocol {
            url: url.clone(),
            detail: format!(
                "HTTP {status} with a body that is not JSON: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        })?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        // Something in between (a proxy) may answer with JSON that is not the API's error document.
        let error = serde_json::from_value::<ErrorDocument>(value)
            .map(|d| d.error)
            .unwrap_or_else(|_| ErrorBody {
                code: "unknown".to_owned(),
                current: None,
                message: format!("HTTP {status}"),
                violations: Vec::new(),
            });
        Err(ClientError::Api { status, error })
    }
}

/// `GET url` with an optional `Host` header: (status, the value of `header` if present). For watching
/// which region a proxy serves from (`x-meridian-region`).
pub async fn get_header(
    url: &str,
    host: Option<&str>,
    header: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<(u16, Option<String>), String> {
    let target = parse_url(url).map_err(|e| e.to_string())?;
    let tls = if target.tls {
        Some(client_tls(ca_file).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let path = Uri::try_from(url)
        .ok()
        .and_then(|u| u.path_and_query().map(|p| p.as_str().to_owned()))
        .unwrap_or_else(|| "/".to_owned());
    let host_header = host.map_or_else(|| format!("{}:{}", target.host, target.port), str::to_owned);
    let request = Request::builder()
        .method("GET")
        .uri(path)
        .header("host", host_header)
        .header(
            "user-agent",
            concat!("meridian-drill/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let (status, headers, _) = tokio::time::timeout(timeout, exchange(&target, tls.as_ref(), request))
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))??;
    let value = headers
        .get(header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((status, value))
}
