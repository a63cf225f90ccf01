//! The HTTP side: routes under `/v1`, bearer-token authentication, JSON bodies and JSON errors, optional
//! TLS, and the accept loop (HTTP/1.1 on hyper, one task per connection).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use meridian_store::schema::{AuditRecord, decode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::api::{
    ApiError, ChangeMeta, DrillAnswer, DrillList, ExplainAnswer, PutConfig, RegionAnswer, RegionList,
    SetWeight, StartDrill,
};
use crate::dashboard::Connection;
use crate::ops::RegionChange;
use crate::{AdminContext, Auth, now_ms, ops, status};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if self.status == 401 {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"meridian\""),
            );
        }
        response
    }
}

type ApiResult = Result<axum::Json<Value>, ApiError>;

/// A typed answer (`crate::api`) as the JSON document sent.
fn typed<T: serde::Serialize>(answer: &T) -> ApiResult {
    serde_json::to_value(answer)
        .map(axum::Json)
        .map_err(|e| ApiError::internal(format!("encoding the answer: {e}")))
}

/// Parses a JSON body; an empty body is `T::default()` when `empty` gives one.
fn body<T: DeserializeOwned>(bytes: &Bytes, empty: Option<T>) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace)
        && let Some(d) = empty
    {
        return Ok(d);
    }
    // Through serde_path_to_error, so a wrong value names its field (`request body: force: invalid
    // type: string "yes", expected a boolean ...`), not only its line and column.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A field that names itself already (`api::ChangeMeta`'s) is not named twice.
        if path == "." || inner.starts_with(&format!("{path}: ")) {
            ApiError::bad_request(format!("request body: {inner}"))
        } else {
            ApiError::bad_request(format!("request body: {path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    Ok(parsed)
}

/// The query parameters of a request, refusing any `allowed` does not name (a misspelt `limt=5` would
/// otherwise be ignored without a word).
fn params(q: BTreeMap<String, String>, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) if allowed.is_empty() => Err(ApiError::bad_request(format!(
            "unknown query parameter {k:?} (this endpoint takes none)"
        ))),
        Some(k) => Err(ApiError::bad_request(format!(
            "unknown query parameter {k:?} (this endpoint takes: {})",
            allowed.join(", ")
        ))),
        None => Ok(q),
    }
}

async fn auth(State(ctx): State<Arc<AdminContext>>, request: Request, next: Next) -> Response {
    // The bearer token, or the dashboard's session cookie (`dashboard::authenticate`).
    match crate::dashboard::authenticate(&ctx, request.method(), request.headers()) {
        Ok(_) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

async fn get_status(State(ctx): State<Arc<AdminContext>>) -> ApiResult {
    let snap = ops::snapshot(&ctx)?;
    let now = now_ms();
    let mut doc = status::status_doc(&ctx, &snap, now);
    doc.nodes = Some(status::nodes(&ctx, now).await);
    typed(&doc)
}

async fn get_regions(State(ctx): State<Arc<AdminContext>>) -> ApiResult {
    let snap = ops::snapshot(&ctx)?;
    typed(&RegionList {
        revision: snap.revision,
        regions: status::regions(&snap, now_ms()),
    })
}

async fn get_region(State(ctx): State<Arc<AdminContext>>, Path(id): Path<String>) -> ApiResult {
    let snap = ops::snapshot(&ctx)?;
    let region = status::region(&snap, &snap.topology, &id, now_ms())
        .ok_or_else(|| ops::unknown_region(&snap.topology, &id))?;
    typed(&RegionAnswer {
        revision: snap.revision,
        region,
    })
}

async fn put_weight(State(ctx): State<Arc<AdminContext>>, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    let b: SetWeight = body(&bytes, None)?;
    typed(&ops::region_change(&ctx, &id, RegionChange::SetWeight(b.weight), &b.meta).await?)
}

async fn delete_weight(
    State(ctx): State<Arc<AdminContext>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let meta: ChangeMeta = body(&bytes, Some(ChangeMeta::default()))?;
    typed(&ops::region_change(&ctx, &id, RegionChange::ClearWeight, &meta).await?)
}

async fn put_drain(State(ctx): State<Arc<AdminContext>>, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    let meta: ChangeMeta = body(&bytes, None)?;
    typed(&ops::region_change(&ctx, &id, RegionChange::Drain, &meta).await?)
}

async fn delete_drain(
    State(ctx): State<Arc<AdminContext>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let meta: ChangeMeta = body(&bytes, Some(ChangeMeta::default()))?;
    typed(&ops::region_change(&ctx, &id, RegionChange::Undrain, &meta).await?)
}

async fn list_drills(
    State(ctx): State<Arc<AdminContext>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult {
    let q = params(q, &["all"])?;
    let all = match q.get("all").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "all: {other:?} is not true or false"
            )));
        }
    };
    let snap = ops::snapshot(&ctx)?;
    let now = now_ms();
    typed(&DrillList {
        revision: snap.revision,
        now_ms: now,
        drills: status::drills(&snap, now, all),
    })
}

async fn post_drill(State(ctx): State<Arc<AdminContext>>, bytes: Bytes) -> Result<Response, ApiError> {
    let b: StartDrill = body(&bytes, None)?;
    let v = typed(&ops::start_drill(&ctx, b).await?)?;
    Ok((StatusCode::CREATED, v).into_response())
}

async fn get_drill(State(ctx): State<Arc<AdminContext>>, Path(id): Path<String>) -> ApiResult {
    let snap = ops::snapshot(&ctx)?;
    let now = now_ms();
    let (i, d) = snap
        .drills
        .iter()
        .find(|(i, _)| *i == id)
        .ok_or_else(|| ApiError::not_found("unknown-drill", format!("no drill {id:?}")))?;
    typed(&DrillAnswer {
        revision: snap.revision,
        drill: status::drill_view(i, d, now),
    })
}

async fn delete_drill(
    State(ctx): State<Arc<AdminContext>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let meta: ChangeMeta = body(&bytes, Some(ChangeMeta::default()))?;
    typed(&ops::stop_drill(&ctx, &id, meta).await?)
}

async fn get_explain(
    State(ctx): State<Arc<AdminContext>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult {
    let q = params(q, &["service", "client", "hash"])?;
    let snap = ops::snapshot(&ctx)?;
    let service = q
        .get("service")
        .ok_or_else(|| ApiError::bad_request("query parameter service is required"))?;
    let client = client_address(
        q.get("client")
            .ok_or_else(|| ApiError::bad_request("query parameter client is required"))?,
    )?;
    let hash = match q.get("hash") {
        Some(h) => Some(
            h.parse::<u64>()
                .map_err(|_| ApiError::bad_request("hash: not a whole number"))?,
        ),
        None => None,
    };
    let geo = (ctx.geo)();
    let e = crate::explain::explain(
        &snap.topology,
        &snap.states,
        &geo,
        service,
        client,
        hash,
        now_ms(),
    )
    .map_err(|m| ApiError::not_found("unknown-service", m))?;
    typed(&ExplainAnswer {
        revision: snap.revision,
        text: e.text,
        report: e.report,
    })
}

/// A client as an address, or a subnet (`192.0.2.0/24`: its first address, which is where the GeoIP
/// database places the subnet's clients when the subnet is within one of its ranges).
fn client_address(text: &str) -> Result<IpAddr, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "client: {text:?} is not an IP address or subnet (e.g. 192.0.2.1, 2001:db8::1 or 192.0.2.0/24)"
        ))
    };
    let text = text.trim();
    let Some((addr, len)) = text.split_once('/') else {
        return text.parse().map_err(|_| bad());
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    match addr {
        IpAddr::V4(a) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            Ok(IpAddr::V4((u32::from(a) & mask).into()))
        }
        IpAddr::V6(a) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            Ok(IpAddr::V6((u128::from(a) & mask).into()))
        }
        _ => Err(bad()),
    }
}

async fn get_config(State(ctx): State<Arc<AdminContext>>) -> ApiResult {
    match meridian_store::read_config(ctx.store.as_ref(), &ctx.keys).await {
        Ok(Some(c)) => Ok(axum::Json(json!({
            "revision": c.revision,
            "toml": c.doc.toml,
            "author": c.doc.author,
            "applied_at_ms": c.doc.applied_at_ms,
        }))),
        Ok(None) => Err(ApiError::not_found(
            "no-config",
            "the store holds no configuration (nodes serve the one they were started with)",
        )),
        Err(meridian_store::ConfigDocError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

async fn put_config(State(ctx): State<Arc<AdminContext>>, bytes: Bytes) -> ApiResult {
    let b: PutConfig = body(&bytes, None)?;
    typed(&ops::put_config(&ctx, b).await?)
}

async fn get_audit(
    State(ctx): State<Arc<AdminContext>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult {
    let q = params(q, &["limit"])?;
    let limit = match q.get("limit") {
        Some(l) => l
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit: {l:?} is not a whole number from 1 to 1000"))
            })?,
        None => 50,
    };
    let listing = ctx.store.list(&ctx.keys.audit_prefix()).await?;
    let records: Vec<Value> = listing
        .kvs
        .iter()
        .rev()
        .take(limit)
        .map(|kv| match decode::<AuditRecord>(&kv.value) {
            Ok(r) => json!({
                "key": kv.key,
                "revision": kv.mod_revision,
                "who": r.who,
                "what": r.what,
                "at_ms": r.at_ms,
                "before": r.before,
                "after": r.after,
            }),
            Err(e) => json!({ "key": kv.key, "revision": kv.mod_revision, "error": e }),
        })
        .collect();
    Ok(axum::Json(json!({
        "revision": listing.revision,
        "total": listing.kvs.len(),
        "records": records,
    })))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(
        "not-found",
        format!(
            "no such endpoint: {} {} (see docs/admin-api.md)",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        405,
        "method-not-allowed",
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
}

/// The API's routes over `ctx`.
pub(crate) fn router(ctx: Arc<AdminContext>) -> Router {
    Router::new()
        .route("/v1/status", get(get_status))
        .route("/v1/regions", get(get_regions))
        .route("/v1/regions/{id}", get(get_region))
        .route("/v1/regions/{id}/weight", put(put_weight).delete(delete_weight))
        .route("/v1/regions/{id}/drain", put(put_drain).delete(delete_drain))
        .route("/v1/drills", get(list_drills).post(post_drill))
        .route("/v1/drills/{id}", get(get_drill).delete(delete_drill))
        .route("/v1/explain", get(get_explain))
        .route("/v1/config", get(get_config).put(put_config))
        .route("/v1/audit", get(get_audit))
        .route("/v1/dashboard/state", get(crate::dashboard::get_state))
        .route("/v1/dashboard/events", get(crate::dashboard::get_events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(ctx.clone(), auth))
        .with_state(ctx.clone())
        .merge(crate::dashboard::routes(ctx))
}

/// A running admin API. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct AdminServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// The base URL clients use (`http://127.0.0.1:9090`).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the admin API on `listener` until the returned handle is dropped. Refuses
/// [`Auth::InsecureNone`] on anything but a loopback address.
pub async fn serve(listener: TcpListener, ctx: AdminContext) -> Result<AdminServer, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if matches!(ctx.auth, Auth::InsecureNone) && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to serve the admin API without authentication on {addr}: only loopback addresses may go without a token"
        ));
    }
    let tls = ctx.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let router = router(Arc::new(ctx));
    let is_tls = tls.is_some();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let router = router.clone();
            let tls = tls.clone();
            // The address this connection reached (not the listener's, which may be a wildcard): the
            // dashboard's login needs to know whether the browser is on a loopback origin.
            let connection = Connection {
                local: tcp.local_addr().unwrap_or(addr),
                tls: is_tls,
            };
            tokio::spawn(async move {
                let service = service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(connection);
                    let mut router = router.clone();
                    async move { tower::Service::call(&mut router, request).await }
                });
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10));
                let result = match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => http.serve_connection(TokioIo::new(stream), service).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "admin API: TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    None => http.serve_connection(TokioIo::new(tcp), service).await,
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "admin API connection ended with an error");
                }
            });
        }
    });
    Ok(AdminServer {
        addr,
        tls: is_tls,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::{client_address, constant_time_eq};

    #[test]
    fn explain_takes_an_address_or_a_subnet() {
        let ip = |s: &str| client_address(s).map(|a| a.to_string()).map_err(|e| e.message);
        assert_eq!(ip("192.0.2.7").unwrap(), "192.0.2.7");
        assert_eq!(ip("192.0.2.7/24").unwrap(), "192.0.2.0");
        assert_eq!(ip("192.0.2.7/0").unwrap(), "0.0.0.0");
        assert_eq!(ip("2001:db8::1/32").unwrap(), "2001:db8::");
        for bad in [
            "",
            "x",
            "192.0.2.1/33",
            "2001:db8::/129",
            "192.0.2.1/x",
            "1.2.3/8",
        ] {
            assert!(
                ip(bad).unwrap_err().contains("not an IP address or subnet"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
