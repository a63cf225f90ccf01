//! Which state store a command talks to: `--etcd URL` (production) or the embedded store in `--data-dir`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use meridian_store::{DEFAULT_PREFIX, EmbeddedStore, EtcdOptions, EtcdStore, Keys, KvStore};

/// Store selection, shared by every command that reads or writes state.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// etcd client URL; repeat or separate with commas for several. Without it, the embedded store is used.
    #[arg(long = "etcd", value_name = "URL", value_delimiter = ',')]
    etcd: Vec<String>,
    /// Data directory of the embedded store [default: $MERIDIAN_DATA_DIR, else $XDG_STATE_HOME/meridian,
    /// else ~/.local/state/meridian].
    #[arg(long, value_name = "DIR", conflicts_with = "etcd")]
    data_dir: Option<PathBuf>,
    /// Key prefix of Meridian's state.
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// etcd user name (the password comes from $MERIDIAN_ETCD_PASSWORD or --etcd-password-file).
    #[arg(long, value_name = "USER", requires = "etcd")]
    etcd_user: Option<String>,
    /// File holding the etcd password.
    #[arg(long, value_name = "FILE", requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
    /// PEM CA bundle for etcd over TLS.
    #[arg(long, value_name = "FILE", requires = "etcd")]
    etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd mutual TLS (with --etcd-key).
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "etcd_key"])]
    etcd_cert: Option<PathBuf>,
    /// PEM client key for etcd mutual TLS.
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// Deadline of each etcd request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    etcd_timeout_ms: u64,
}

impl StoreArgs {
    /// The key layout.
    pub(crate) fn keys(&self) -> anyhow::Result<Keys> {
        Ok(Keys::new(&self.prefix)?)
    }

    /// The embedded store's data directory (None with etcd): where the default admin token file lives.
    pub(crate) fn embedded_dir(&self) -> Option<PathBuf> {
        if self.etcd.is_empty() {
            Some(self.data_dir.clone().unwrap_or_else(default_data_dir))
        } else {
            None
        }
    }

    /// Opens the selected store.
    pub(crate) fn open(&self) -> anyhow::Result<Arc<dyn KvStore>> {
        if self.etcd.is_empty() {
            let dir = match &self.data_dir {
                Some(d) => d.clone(),
                None => default_data_dir(),
            };
            return Ok(Arc::new(EmbeddedStore::open(&dir)?));
        }
        self.open_etcd(&self.etcd, "--etcd")
    }

    /// The global store's etcd client URLs (empty for the embedded store).
    pub(crate) fn etcd_urls(&self) -> &[String] {
        &self.etcd
    }

    /// Opens an etcd cluster at `urls` with this command's etcd TLS, auth and timeout flags (`flag`: what
    /// an error names: `--etcd`, or `--health-etcd` for a zone's health store).
    pub(crate) fn open_etcd(&self, urls: &[String], flag: &str) -> anyhow::Result<Arc<dyn KvStore>> {
        for url in urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("{flag} {url:?}: expected a URL such as http://127.0.0.1:2379");
            }
        }
        let mut opts = EtcdOptions::new(urls.to_vec());
        opts.request_timeout = Duration::from_millis(self.etcd_timeout_ms);
        opts.connect_timeout = Duration::from_millis(self.etcd_timeout_ms);
        if let Some(user) = &self.etcd_user {
            let password = match &self.etcd_password_file {
                Some(f) => std::fs::read_to_string(f)
                    .with_context(|| format!("--etcd-password-file {}", f.display()))?
                    .trim_end()
                    .to_owned(),
                None => std::env::var("MERIDIAN_ETCD_PASSWORD").context(
                    "--etcd-user needs a password: set MERIDIAN_ETCD_PASSWORD or --etcd-password-file",
                )?,
            };
            opts.auth = Some((user.clone(), password));
        }
        opts.ca_file = self.etcd_ca.clone();
        opts.client_cert = self.etcd_cert.clone().zip(self.etcd_key.clone());
        Ok(Arc::new(EtcdStore::new(opts)?))
    }
}

/// `$MERIDIAN_DATA_DIR`, else `$XDG_STATE_HOME/meridian`, else `~/.local/state/meridian`, else
/// `./meridian-data`.
pub(crate) fn default_data_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("MERIDIAN_DATA_DIR")
        .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("meridian")))
        .or_else(|| env("HOME").map(|h| h.join(".local/state/meridian")))
        .unwrap_or_else(|| PathBuf::from("meridian-data"))
}
