//! The web dashboard the admin API serves (`/dashboard`, `docs/dashboard.md`): a map of the regions with
//! their health, load, weight, drains and drills, the countries coloured by where steering sends their
//! clients now, residency fences, explain, the audit log and drill history, and drill/drain controls —
//! all through the API's own endpoints, so a change made on the page passes the same validation, safety
//! checks and `force` semantics as one made with the CLI.
//!
//! Owns: the pages and their assets (embedded with `include_str!`: no CDN, nothing fetched from
//! elsewhere), the login that turns the bearer token into a session cookie ([`session`]), the live state
//! document ([`view`]) and its server-sent event stream (pushed when the snapshot's revision changes, and
//! every second for what changes with time alone: staleness, drill expiry).

pub(crate) mod session;
pub(crate) mod view;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::api::ApiError;
use crate::{AdminContext, Auth, now_ms, ops};

const APP_HTML: &str = include_str!("assets/app.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const LOGIN_JS: &str = include_str!("assets/login.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// The header a page's own writes carry when authenticated by the cookie: a cross-site form cannot send
/// it, and a cross-site script would need a CORS preflight this server never grants (a second fence
/// behind `SameSite=Strict`).
pub(crate) const WRITE_HEADER: &str = "x-meridian-dashboard";

/// How a request proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Credential {
    /// `Authorization: Bearer TOKEN`.
    Bearer,
    /// The dashboard's session cookie.
    Session,
    /// The node runs without authentication (loopback only).
    None,
}

/// The connection a request came on, put in its extensions by the accept loop (`server::serve`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Connection {
    /// The address the client connected to (this side of the connection).
    pub(crate) local: SocketAddr,
    /// Whether the connection speaks TLS.
    pub(crate) tls: bool,
}

impl Connection {
    /// Whether a browser keeps the session cookie, which is always `Secure`, set over this connection:
    /// over HTTPS, or over plain HTTP to a loopback address (`http://127.0.0.1`, `http://[::1]`,
    /// `http://localhost` are "potentially trustworthy" origins, where browsers accept `Secure` cookies).
    /// An IPv4 client of a dual-stack listener arrives at `::ffff:127.0.0.1`: canonical form first.
    pub(crate) fn keeps_secure_cookies(&self) -> bool {
        self.tls || self.local.ip().to_canonical().is_loopback()
    }
}

fn now_s() -> u64 {
    now_ms() / 1000
}

/// Checks a request's credentials: the bearer token, or else a valid session cookie (which may write
/// only with [`WRITE_HEADER`]).
pub(crate) fn authenticate(
    ctx: &AdminContext,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Credential, ApiError> {
    let Auth::Token(token) = &ctx.auth else {
        return Ok(Credential::None);
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    if let Some(given) = bearer {
        return if crate::server::constant_time_eq(given.as_bytes(), token.as_bytes()) {
            Ok(Credential::Bearer)
        } else {
            Err(ApiError::unauthorized(
                "the bearer token is not valid for this node",
            ))
        };
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::from_cookie_header);
    match cookie {
        Some(value) if session::valid(token, value, now_s()) => {
            let reads = matches!(*method, Method::GET | Method::HEAD);
            if reads || headers.contains_key(WRITE_HEADER) {
                Ok(Credential::Session)
            } else {
                Err(ApiError::unauthorized(format!(
                    "a write authenticated by the dashboard's cookie must carry the {WRITE_HEADER} header"
                )))
            }
        }
        Some(_) => Err(ApiError::unauthorized(
            "the dashboard session has expired or the token changed: log in again",
        )),
        None => Err(ApiError::unauthorized(
            "authentication required: send Authorization: Bearer TOKEN (the CLI reads $MERIDIAN_TOKEN or --token-file), or log in at /dashboard",
        )),
    }
}

/// Headers every page and asset carries: nothing from elsewhere may load, nothing may frame the page.
fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The dashboard, or the login form when the request carries no valid credential.
async fn dashboard(State(ctx): State<Arc<AdminContext>>, headers: HeaderMap) -> Response {
    match authenticate(&ctx, &Method::GET, &headers) {
        Ok(_) => page("text/html; charset=utf-8", APP_HTML),
        Err(_) => page("text/html; charset=utf-8", LOGIN_HTML),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

/// `POST /dashboard/login {"token": "..."}`: a session cookie for the right token, 401 for any other;
/// 403 `needs-https` over plain HTTP to an address that is not loopback, where the browser would drop the
/// (`Secure`) cookie and the page would ask for the token again without saying why.
async fn login(
    State(ctx): State<Arc<AdminContext>>,
    Extension(connection): Extension<Connection>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    if !connection.keeps_secure_cookies() {
        return Err(ApiError::new(
            403,
            "needs-https",
            format!(
                "this admin API is plain HTTP on {}, not a loopback address: a browser keeps the dashboard's \
                 session cookie (Secure) only over HTTPS or on a loopback address, so a login here cannot last. \
                 Serve the admin API over HTTPS (--admin-tls-cert and --admin-tls-key), or reach it through an \
                 SSH tunnel to a loopback address (ssh -L 9090:{} HOST, then http://127.0.0.1:9090/dashboard)",
                connection.local, connection.local
            ),
        ));
    }
    let body: Login = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("request body: {e} (expected {{\"token\": \"...\"}})")))?;
    let value = match &ctx.auth {
        Auth::Token(token) => {
            let given = body.token.trim();
            if given.is_empty() {
                return Err(ApiError::bad_request(
                    "token: empty (paste the node's admin token)",
                ));
            }
            if !crate::server::constant_time_eq(given.as_bytes(), token.as_bytes()) {
                return Err(ApiError::unauthorized("the token is not valid for this node"));
            }
            session::issue(token, now_s())
        }
        Auth::InsecureNone => "none".to_owned(),
    };
    let mut r = StatusCode::NO_CONTENT.into_response();
    let cookie = HeaderValue::from_str(&session::set_cookie(&value))
        .map_err(|e| ApiError::internal(format!("session cookie: {e}")))?;
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(r)
}

/// `POST /dashboard/logout`: ends the browser's session.
async fn logout() -> Result<Response, ApiError> {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let cookie = HeaderValue::from_str(&session::clear_cookie())
        .map_err(|e| ApiError::internal(format!("session cookie: {e}")))?;
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(r)
}

/// `GET /v1/dashboard/state`: the document the page draws.
pub(crate) async fn get_state(
    State(ctx): State<Arc<AdminContext>>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let snap = ops::snapshot(&ctx)?;
    Ok(axum::Json(view::state(&ctx, &snap, now_ms())))
}

/// `GET /v1/dashboard/events`: the same document as server-sent events (`event: state`), sent at once,
/// then on every snapshot revision and at least every second; `event: error` while the node has no
/// configuration.
pub(crate) async fn get_events(State(ctx): State<Arc<AdminContext>>) -> impl IntoResponse {
    let revisions = ctx.watcher.revisions();
    let stream = futures_util::stream::unfold((ctx, revisions, true), |(ctx, mut rx, first)| async move {
        if !first {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The watcher is gone (the node is stopping): keep to the timer.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let event = match ctx.watcher.snapshot() {
            Some(snap) => Event::default()
                .event("state")
                .data(view::state(&ctx, &snap, now_ms()).to_string()),
            None => Event::default()
                .event("error")
                .data(json!({ "message": "this node has no configuration yet" }).to_string()),
        };
        Some((Ok::<_, Infallible>(event), (ctx, rx, false)))
    });
    let mut r = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The pages and assets (no node data in them: they are served without credentials; the page's data
/// comes from `/v1/...`, which requires them).
pub(crate) fn routes(ctx: Arc<AdminContext>) -> Router {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/dashboard/", get(dashboard))
        .route("/dashboard/login", post(login))
        .route("/dashboard/logout", post(logout))
        .route(
            "/dashboard/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/login.js",
            get(|| async { page("text/javascript; charset=utf-8", LOGIN_JS) }),
        )
        .route(
            "/dashboard/favicon.svg",
            get(|| async { page("image/svg+xml", FAVICON) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { page("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/dashboard/map.json",
            get(|| async { page("application/json", view::MAP_JSON) }),
        )
        .with_state(ctx)
}

#[cfg(test)]
mod tests {
    use super::Connection;

    #[test]
    fn a_secure_cookie_is_kept_over_tls_or_on_loopback() {
        let kept = |local: &str, tls: bool| {
            Connection {
                local: local.parse().unwrap(),
                tls,
            }
            .keeps_secure_cookies()
        };
        for loopback in [
            "127.0.0.1:9090",
            "127.8.9.10:1",
            "[::1]:9090",
            "[::ffff:127.0.0.1]:9090",
        ] {
            assert!(kept(loopback, false), "{loopback}");
        }
        for elsewhere in [
            "192.0.2.2:9090",
            "[2001:db8::1]:9090",
            "[::ffff:192.0.2.2]:9090",
            "0.0.0.0:9090",
        ] {
            assert!(!kept(elsewhere, false), "{elsewhere}");
            assert!(kept(elsewhere, true), "{elsewhere} over TLS");
        }
    }
}
