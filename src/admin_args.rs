//! The admin API on both sides of the wire: the flags a node serves it with (`--admin-listen`,
//! `--admin-token-file` or `$MERIDIAN_ADMIN_TOKEN`, TLS), and the flags an operator command reaches it with
//! (`--server` or `$MERIDIAN_SERVER`, `$MERIDIAN_TOKEN` or `--token-file`, `--ca-file`).
//!
//! Both sides also look for the token in the data directory's `admin-token` file (what `meridian up`
//! writes), so a single-machine setup needs no flags at all. The operator side's requests (`call`,
//! `call_as`, `get_status`) explain the API's errors as an operator should read them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use meridian_admin::api::Status;
use meridian_admin::client::{AdminClient, ClientError};
use meridian_admin::safety::Violation;
use meridian_admin::{AdminContext, AdminServer, Auth, GeoSource};
use meridian_store::{Keys, KvStore, SnapshotWatcher};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::store_args::default_data_dir;

/// The CLI's default server.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:9090";
/// The token file's name in the data directory.
pub(crate) const TOKEN_FILE_NAME: &str = "admin-token";

/// How a node serves the admin API.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct AdminServeArgs {
    /// Serve the admin API (HTTP/JSON, docs/admin-api.md) on ADDR, e.g. 127.0.0.1:9090. Off by default.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// File holding the admin API's bearer token [default: $MERIDIAN_ADMIN_TOKEN, else DATA_DIR/admin-token].
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Serve the admin API without authentication (loopback addresses only; for local experiments).
    #[arg(long, conflicts_with = "admin_token_file")]
    admin_insecure_no_auth: bool,
    /// PEM certificate chain: serve the admin API over HTTPS (with --admin-tls-key).
    #[arg(long, value_name = "FILE", requires = "admin_tls_key")]
    admin_tls_cert: Option<PathBuf>,
    /// PEM private key of --admin-tls-cert.
    #[arg(long, value_name = "FILE", requires = "admin_tls_cert")]
    admin_tls_key: Option<PathBuf>,
}

impl AdminServeArgs {
    /// Starts the admin API if `--admin-listen` was given. `data_dir` is where a default token file may be.
    pub(crate) async fn start(
        &self,
        store: Arc<dyn KvStore>,
        keys: Keys,
        watcher: Arc<SnapshotWatcher>,
        geo: GeoSource,
        node: String,
        data_dir: Option<&Path>,
    ) -> anyhow::Result<Option<AdminServer>> {
        let Some(addr) = self.admin_listen else {
            return Ok(None);
        };
        let auth = if self.admin_insecure_no_auth {
            Auth::InsecureNone
        } else if let Some(f) = &self.admin_token_file {
            Auth::token_file(f).map_err(|e| anyhow!("--admin-token-file {e}"))?
        } else if let Some(t) = std::env::var("MERIDIAN_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
        {
            Auth::token(&t).map_err(|e| anyhow!("$MERIDIAN_ADMIN_TOKEN: {e}"))?
        } else {
            match data_dir.map(|d| d.join(TOKEN_FILE_NAME)).filter(|p| p.exists()) {
                Some(p) => Auth::token_file(&p).map_err(|e| anyhow!("{e}"))?,
                None => bail!(
                    "--admin-listen needs a token: --admin-token-file FILE or $MERIDIAN_ADMIN_TOKEN \
                     (make one with: openssl rand -hex 32 > admin-token), or --admin-insecure-no-auth on loopback"
                ),
            }
        };
        let tls = match (&self.admin_tls_cert, &self.admin_tls_key) {
            (Some(c), Some(k)) => {
                Some(meridian_admin::tls_config(c, k).map_err(|e| anyhow!("admin TLS: {e}"))?)
            }
            _ => None,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--admin-listen: cannot listen on {addr}"))?;
        let ctx = AdminContext {
            store,
            keys,
            watcher,
            geo,
            auth,
            tls,
            node,
        };
        let server = meridian_admin::serve(listener, ctx)
            .await
            .map_err(|e| anyhow!("--admin-listen: {e}"))?;
        Ok(Some(server))
    }
}

/// How an operator command reaches a node's admin API.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct AdminConnArgs {
    /// The admin API of a Meridian node [default: $MERIDIAN_SERVER, else http://127.0.0.1:9090].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// File holding the bearer token [default: $MERIDIAN_TOKEN, else DATA_DIR/admin-token if it exists].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for an https:// server [default: $MERIDIAN_CA_FILE, else the web PKI
    /// roots].
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Deadline of each request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u64,
}

impl AdminConnArgs {
    /// The client, with the token found by the rule above.
    pub(crate) fn client(&self) -> anyhow::Result<AdminClient> {
        let token = if let Some(f) = &self.token_file {
            Some(read_token(f).with_context(|| format!("--token-file {}", f.display()))?)
        } else if let Some(t) = std::env::var("MERIDIAN_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            Some(t.trim().to_owned())
        } else {
            let default = default_data_dir().join(TOKEN_FILE_NAME);
            match default.exists() {
                true => Some(read_token(&default).with_context(|| format!("{}", default.display()))?),
                false => None,
            }
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let server = self
            .server
            .clone()
            .or_else(|| env("MERIDIAN_SERVER"))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let ca_file = self
            .ca_file
            .clone()
            .or_else(|| env("MERIDIAN_CA_FILE").map(PathBuf::from));
        Ok(AdminClient::new(
            &server,
            token,
            ca_file.as_deref(),
            Duration::from_millis(self.timeout_ms.max(1)),
        )?)
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(path)?;
    let t = t.trim();
    if t.is_empty() {
        bail!("the file is empty");
    }
    Ok(t.to_owned())
}

/// A safety refusal as an operator should read it: each guarantee the change would break, and how to do
/// it anyway (`--force`).
pub(crate) fn refusal_text(violations: &[Violation]) -> String {
    let list: Vec<String> = violations.iter().map(|v| format!("  - {v}")).collect();
    format!(
        "refused: this change would break a safety guarantee:\n{}\nrepeat with --force to do it anyway",
        list.join("\n")
    )
}

/// An API error as an operator should read it.
pub(crate) fn explain_error(e: ClientError, client: &AdminClient) -> anyhow::Error {
    match &e {
        ClientError::Api { status: 401, error } => {
            let message = &error.message;
            let hint = if message.contains("MERIDIAN_TOKEN") {
                ""
            } else {
                "\n(the token comes from --token-file, else $MERIDIAN_TOKEN, else DATA_DIR/admin-token)"
            };
            anyhow!(
                "the admin API at {} refused the request: {message}{hint}",
                client.url()
            )
        }
        ClientError::Api { status: 422, error } if error.code == "refused" => {
            anyhow!("{}", refusal_text(&error.violations))
        }
        ClientError::Api { status: 409, error } => {
            let shown = match &error.current {
                None | Some(Value::Null) => String::new(),
                Some(current) => format!(
                    "\ncurrent value: {}",
                    serde_json::to_string(current).unwrap_or_default()
                ),
            };
            anyhow!("conflict: {}{shown}", error.message)
        }
        _ => anyhow!(e),
    }
}

/// A request with an optional untyped body, its answer as JSON (`--json` printing), or the error explained.
pub(crate) async fn call(
    client: &AdminClient,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    client
        .send(method, path, body)
        .await
        .map_err(|e| explain_error(e, client))
}

/// A request with one of the API's typed bodies, its answer read as the API's typed answer.
pub(crate) async fn call_as<B: Serialize, R: DeserializeOwned>(
    client: &AdminClient,
    method: &str,
    path: &str,
    body: &B,
) -> anyhow::Result<R> {
    client
        .send_as(method, path, body)
        .await
        .map_err(|e| explain_error(e, client))
}

/// `GET /v1/status`, read as the API's status document.
pub(crate) async fn get_status(client: &AdminClient) -> anyhow::Result<Status> {
    client
        .get_as("/v1/status")
        .await
        .map_err(|e| explain_error(e, client))
}
