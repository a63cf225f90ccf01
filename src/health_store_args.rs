//! `--health-etcd URLS`: the zone's own etcd cluster, which holds what must keep working inside a zone —
//! prober opinions, load reports, latency summaries — while configuration and operator state stay in the
//! global store (`--etcd`). docs/deployment.md, "The Atlantic cut, and the choice of topology".
//!
//! Taken by the roles that read or write those keys (`dns`, `proxy`, `health`); it uses the global
//! store's etcd TLS and authentication flags (`--etcd-ca`, `--etcd-cert`, `--etcd-user`...).

use std::sync::Arc;

use anyhow::bail;
use meridian_store::KvStore;

use crate::store_args::StoreArgs;

/// The zone's health store, if any.
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct HealthStoreArgs {
    /// etcd client URLs of this zone's own cluster (repeat or separate with commas): prober opinions, load
    /// and latency reports go there and are read from there, so a zone cut off from the global cluster's
    /// majority keeps detecting failures inside itself. Needs --etcd (the global store: configuration and
    /// operator state); uses its TLS and authentication flags.
    #[arg(long = "health-etcd", value_name = "URL", value_delimiter = ',')]
    health_etcd: Vec<String>,
}

impl HealthStoreArgs {
    /// Opens the health store (`None` without `--health-etcd`).
    pub(crate) fn open(&self, global: &StoreArgs) -> anyhow::Result<Option<Arc<dyn KvStore>>> {
        if self.health_etcd.is_empty() {
            return Ok(None);
        }
        if global.embedded_dir().is_some() {
            bail!(
                "--health-etcd needs --etcd: a zone's health store sits beside a global etcd cluster, not the embedded store"
            );
        }
        if let Some(same) = self.health_etcd.iter().find(|u| global.etcd_urls().contains(u)) {
            bail!(
                "--health-etcd {same}: also given to --etcd; the zone's health store must be a cluster of its own"
            );
        }
        global.open_etcd(&self.health_etcd, "--health-etcd").map(Some)
    }
}
