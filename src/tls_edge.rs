//! The TLS of a node's proxies: the edge certificates loaded from the files `[tls]` names, kept current
//! (every `tls.reload-interval-ms`, and at once on SIGHUP, against the configuration the node serves now),
//! and the hop listener's configuration. Shared by `meridian proxy` and `meridian up`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use meridian_acme::EdgeCerts;
use meridian_config::{Config, HopTls, TlsSettings};
use meridian_store::{Keys, SnapshotWatcher};
use meridian_tls::{EdgeTls, HopMaterial, TlsMetrics};

/// The `[tls]` section of the configuration the node serves: the watcher's, else the file it started with.
fn current_tls(watcher: &SnapshotWatcher, bootstrap: Option<&Config>) -> Option<TlsSettings> {
    match watcher.snapshot() {
        Some(s) => s.topology.config().tls().cloned(),
        None => bootstrap.and_then(|c| c.tls().cloned()),
    }
}

/// Loads the edge certificates and starts keeping them current. Fails (naming every file that does not
/// load) when the configuration has no `[tls]` certificates or one of them is unusable: a proxy asked to
/// serve HTTPS does not start without them.
/// `first`: the configuration to load from now (`meridian up`, which applies its configuration only
/// once everything listens); else the one the node serves now.
pub(crate) fn start_edge(
    watcher: Arc<SnapshotWatcher>,
    keys: Keys,
    bootstrap: Option<&Config>,
    first: Option<&Config>,
    registry: &prometheus::Registry,
) -> anyhow::Result<Arc<EdgeTls>> {
    let settings = match first {
        Some(c) => c.tls().cloned(),
        None => current_tls(&watcher, bootstrap),
    };
    let Some(settings) = settings else {
        bail!("HTTPS needs certificates: the configuration has no [tls] section (docs/proxy.md, \"HTTPS\")");
    };
    // [acme]'s key file opens every ACME certificate: a proxy that cannot read it does not start.
    let acme = match first {
        Some(c) => c.acme().cloned(),
        None => match watcher.snapshot() {
            Some(s) => s.topology.config().acme().cloned(),
            None => bootstrap.and_then(|c| c.acme().cloned()),
        },
    };
    if let Some(acme) = acme
        && let Err(e) = meridian_acme::OperatorKey::load(&acme.key_file)
    {
        bail!("acme.key-file: {e}");
    }
    let metrics = TlsMetrics::new();
    metrics.register(registry).context("registering TLS metrics")?;
    let edge = match EdgeTls::new(&settings, metrics) {
        Ok(e) => Arc::new(e),
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            bail!("the edge certificates of [tls] do not load:\n{}", list.join("\n"));
        }
    };
    let hup = Arc::new(tokio::sync::Notify::new());
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let notify = hup.clone();
    tokio::spawn(async move {
        while signal.recv().await.is_some() {
            notify.notify_one();
        }
    });
    let bootstrap = bootstrap.cloned();
    let reloading = edge.clone();
    let mut acme = EdgeCerts::default();
    tokio::spawn(async move {
        let mut interval = Duration::from_millis(u64::from(settings.reload_interval_ms));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = hup.notified() => {}
            }
            // A configuration without [tls] now keeps the last certificates: stopping HTTPS is a restart.
            if let Some(now) = current_tls(&watcher, bootstrap.as_ref()) {
                interval = Duration::from_millis(u64::from(now.reload_interval_ms));
                // ACME certificates from the store join the files' in one set: a key that does not
                // open keeps the whole previous set serving, as a broken file does.
                let extra = match watcher.snapshot() {
                    Some(s) => acme.current(&keys, &s),
                    None => Ok(meridian_tls::Extra::default()),
                };
                match extra {
                    Ok(extra) => {
                        reloading.reload_with(&now, &extra);
                    }
                    Err(errors) => {
                        reloading.reload_failed();
                        for e in errors {
                            tracing::warn!(
                                "ACME certificates not loaded, the previous ones keep serving: {e}"
                            );
                        }
                    }
                }
            }
        }
    });
    Ok(edge)
}

/// The `[tls.hops]` of the configuration the node serves (`first` wins, as in [`start_edge`]).
pub(crate) fn hops_of(
    watcher: &SnapshotWatcher,
    bootstrap: Option<&Config>,
    first: Option<&Config>,
) -> Option<HopTls> {
    match first {
        Some(c) => c.tls().and_then(|t| t.hops.clone()),
        None => current_tls(watcher, bootstrap).and_then(|t| t.hops),
    }
}

/// The hop listener's rustls configuration (`[tls.hops]`: this node's certificate, a client certificate
/// from the hop CA required), read at start.
pub(crate) fn hop_server(hops: Option<&HopTls>) -> anyhow::Result<Arc<meridian_tls::rustls::ServerConfig>> {
    let Some(hops) = hops else {
        bail!("a hop listener needs [tls.hops] (the hop CA, and this node's hop certificate and key)");
    };
    let material = HopMaterial::load(hops).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Arc::new(
        material
            .server_config()
            .context("building the hop listener's TLS configuration")?,
    ))
}
