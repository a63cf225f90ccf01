//! The regional L7 proxy (`meridian proxy --region ID`), on `pingora`.
//!
//! Owns: balancing over a region's backends (round robin, least outstanding requests, consistent hashing
//! with cookie or header affinity; pingora's active health checks with rise/fall thresholds; passive
//! ejection after consecutive failures; backend drains from the store), cross-region spillover decided by
//! the same `meridian_steer::steer` as DNS ([`route`], pure), residency at L7, the hop guard, limits,
//! load reports to the store, and the proxy's metrics.
//!
//! Must not depend on: hickory or the DNS server, the probers. It reads state only from the
//! `SnapshotWatcher`'s snapshots (never the store on a request), and writes only its load reports.
//!
//! # Embedding (one process, several regions)
//! ```text
//! let metrics = ProxyMetrics::new();           metrics.register(&registry)?;
//! let node = ProxyNode::new(NodeOptions { region, instance, capacity, keys }, watcher.clone(), geo.clone(), metrics.clone());
//! node.start(Some(store.clone()));            // routing table follows snapshots; load reports every second
//! let server = ProxyServer::start(vec![Listener { node, addr }, ...], &ServerOptions::default()).await?;
//! ...                                          // Ctrl-C
//! server.shutdown().await;                     // listeners closed, in-flight requests drained (≤ grace)
//! ```
//! Every region's proxy shares the process's `Arc<dyn KvStore>`, `Arc<SnapshotWatcher>` and GeoIP
//! database; one pingora `Server` runs one service per region on a dedicated thread (see [`server`] for
//! why pingora cannot run on the caller's runtime, and how shutdown avoids its signal handlers and its
//! fixed grace sleep).
//!
//! Operator reference: `docs/proxy.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod h1;
pub mod latency;
pub mod node;
pub mod pool;
pub mod route;
pub mod server;
pub mod service;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
mod upstream;

pub use node::{Listener, NodeOptions, ProxyNode, RouteTable};
pub use server::{ProxyServer, ServerOptions, StartError};
pub use service::{HOP_HEADER, REASON_HEADER, REGION_HEADER, RegionService};
pub use stats::ProxyMetrics;
pub use tls::ListenKind;
