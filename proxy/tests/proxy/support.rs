//! A three-region deployment on loopback: origins and proxies for waw and fra (EU) and vin (US), all
//! proxies in one pingora server (the embedding `meridian up` uses), over one store and one watcher.

use std::sync::Arc;
use std::time::Duration;

use meridian_config::Config;
use meridian_geoip::GeoDb;
use meridian_proxy::testing::{Origin, free_port};
use meridian_proxy::{Listener, NodeOptions, ProxyMetrics, ProxyNode, ProxyServer, ServerOptions};
use meridian_store::schema::{DrainOverride, encode};
use meridian_store::{EmbeddedStore, Keys, KvStore, SnapshotWatcher, WatcherOptions};

pub(crate) const REGIONS: [&str; 3] = ["waw", "fra", "vin"];
/// Located in Poland by the bundled database (an EU client).
pub(crate) const EU_CLIENT: &str = "83.1.2.3";
/// Located in the United States.
pub(crate) const US_CLIENT: &str = "8.8.8.8";

pub(crate) struct World {
    pub(crate) origins: Vec<Origin>,
    pub(crate) proxies: Vec<std::net::SocketAddr>,
    pub(crate) nodes: Vec<Arc<ProxyNode>>,
    pub(crate) server: Option<ProxyServer>,
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) keys: Keys,
    pub(crate) registry: prometheus::Registry,
    pub(crate) watcher: Arc<SnapshotWatcher>,
}

pub(crate) struct Setup {
    pub(crate) capacity: u32,
    pub(crate) extra_proxy: &'static str,
    pub(crate) store: Option<Arc<dyn KvStore>>,
    /// Appended to the configuration (more tables for the services).
    pub(crate) extra_config: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            capacity: 1000,
            extra_proxy: "",
            store: None,
            extra_config: "",
        }
    }
}

pub(crate) fn config_text(
    origins: &[std::net::SocketAddr],
    proxies: &[std::net::SocketAddr],
    setup: &Setup,
) -> String {
    let coords = [
        ("52.23", "21.01", "PL", "eu"),
        ("50.11", "8.68", "DE", "eu"),
        ("38.75", "-77.67", "US", "us"),
    ];
    let mut t = format!(
        "schema-version = 1\n[proxy]\ntrusted-proxies = [\"127.0.0.1/32\"]\nmax-header-bytes = 4096\nmax-body-bytes = 1000\n{}\n",
        setup.extra_proxy
    );
    for (i, r) in REGIONS.iter().enumerate() {
        let (lat, lon, cc, j) = coords[i];
        t.push_str(&format!(
            "[regions.{r}]\nname = \"{r}\"\nlat = {lat}\nlon = {lon}\ncountry = \"{cc}\"\njurisdictions = [\"{j}\"]\n\
             ipv4 = [\"192.0.2.{}\"]\ncapacity = {}\nproxy-address = \"{}\"\n",
            i + 1,
            setup.capacity,
            proxies[i]
        ));
    }
    t.push_str(
        "[residency.gdpr]\ncountry-groups = [\"EEA\"]\njurisdiction = \"eu\"\n\
         [zones.\"gslb.example\"]\nns = [\"ns1.gslb.example.\"]\n\
         [zones.\"gslb.example\".soa]\nmname = \"ns1.gslb.example.\"\nrname = \"hostmaster.gslb.example.\"\n\
         [[zones.\"gslb.example\".records]]\nname = \"ns1\"\ntype = \"A\"\ndata = \"203.0.113.53\"\n",
    );
    let backends = |t: &mut String, svc: &str| {
        t.push_str(&format!("[services.{svc}.backends]\n"));
        for (i, r) in REGIONS.iter().enumerate() {
            t.push_str(&format!("{r} = [\"{}\"]\n", origins[i]));
        }
        t.push_str(&format!(
            "[services.{svc}.proxy]\nhealth-path = \"/healthz\"\nhealth-interval-ms = 300\nhealth-timeout-ms = 200\n\
             eject-after-failures = 3\n"
        ));
    };
    t.push_str(
        "[services.api]\nhostname = \"api.gslb.example\"\npolicy = \"nearest\"\nregions = [\"waw\", \"fra\", \"vin\"]\n\
         residency = [\"gdpr\"]\nunknown-location = [\"fra\", \"waw\", \"vin\"]\n",
    );
    backends(&mut t, "api");
    t.push_str(
        "[services.open]\nhostname = \"open.gslb.example\"\npolicy = \"nearest\"\nregions = [\"waw\", \"fra\", \"vin\"]\n",
    );
    backends(&mut t, "open");
    t.push_str(
        "[services.dnsonly]\nhostname = \"dnsonly.gslb.example\"\npolicy = \"nearest\"\nregions = [\"waw\", \"fra\", \"vin\"]\n",
    );
    t.push_str(setup.extra_config);
    t
}

impl World {
    pub(crate) async fn start(setup: Setup) -> Self {
        let mut origins = Vec::new();
        for r in REGIONS {
            origins.push(Origin::start(r).await.unwrap());
        }
        let proxies: Vec<std::net::SocketAddr> = REGIONS
            .iter()
            .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
            .collect();
        let addrs: Vec<_> = origins.iter().map(|o| o.addr).collect();
        let text = config_text(&addrs, &proxies, &setup);
        let config = Arc::new(Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}")));
        let store: Arc<dyn KvStore> = match &setup.store {
            Some(s) => s.clone(),
            None => Arc::new(EmbeddedStore::in_memory()),
        };
        let keys = Keys::new(&format!("/test-{}/", free_port())).unwrap();
        let mut options = WatcherOptions::new(keys.clone());
        options.bootstrap = Some(config);
        let watcher = Arc::new(SnapshotWatcher::spawn(store.clone(), options));
        for _ in 0..200 {
            if watcher.snapshot().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let geo = Arc::new(GeoDb::bundled().unwrap());
        let registry = prometheus::Registry::new();
        let metrics = ProxyMetrics::new();
        metrics.register(&registry).unwrap();
        let mut nodes = Vec::new();
        let mut listeners = Vec::new();
        for (i, r) in REGIONS.iter().enumerate() {
            let node = ProxyNode::new(
                NodeOptions {
                    region: (*r).to_owned(),
                    instance: format!("test-{r}"),
                    capacity: None,
                    keys: keys.clone(),
                },
                watcher.clone(),
                geo.clone(),
                metrics.clone(),
            );
            node.start(Some(store.clone()));
            listeners.push(Listener::http(node.clone(), proxies[i]));
            nodes.push(node);
        }
        let server = ProxyServer::start(
            listeners,
            &ServerOptions {
                threads: 2,
                grace: Duration::from_secs(3),
                ..ServerOptions::default()
            },
        )
        .await
        .unwrap();
        Self {
            origins,
            proxies,
            nodes,
            server: Some(server),
            store,
            keys,
            registry,
            watcher,
        }
    }

    pub(crate) fn proxy(&self, region: &str) -> std::net::SocketAddr {
        self.proxies[REGIONS.iter().position(|r| *r == region).unwrap()]
    }

    pub(crate) fn origin(&self, region: &str) -> &Origin {
        &self.origins[REGIONS.iter().position(|r| *r == region).unwrap()]
    }

    /// The local backend pool of `host` (a host route's name) in `region`'s current routing table.
    pub(crate) fn pool(&self, region: &str, host: &str) -> Arc<meridian_proxy::pool::Pool> {
        let node = &self.nodes[REGIONS.iter().position(|r| *r == region).unwrap()];
        let table = node.table().unwrap();
        let route = table.hosts.iter().find(|h| h.name == host).unwrap();
        route.pool.clone().unwrap()
    }

    /// Puts a document and waits until every proxy's routing table reflects it.
    pub(crate) async fn put(&self, key: String, value: Vec<u8>) {
        let rev = self.store.put(&key, value, None).await.unwrap();
        self.settle(rev).await;
    }

    pub(crate) async fn settle(&self, rev: i64) {
        assert!(self.watcher.wait_for(rev, Duration::from_secs(5)).await);
        for _ in 0..100 {
            if self
                .nodes
                .iter()
                .all(|n| n.table().is_some_and(|t| t.snapshot.revision >= rev))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("proxies did not pick up revision {rev}");
    }

    pub(crate) async fn drain_region(&self, region: &str) {
        let doc = DrainOverride {
            schema: 1,
            author: "test".into(),
            reason: "test".into(),
            at_ms: 1,
        };
        self.put(self.keys.drain(region), encode(&doc)).await;
    }

    pub(crate) async fn drain_backend(&self, service: &str, backend: std::net::SocketAddr) {
        let doc = DrainOverride {
            schema: 1,
            author: "test".into(),
            reason: "test".into(),
            at_ms: 1,
        };
        self.put(
            self.keys.backend_drain(service, &backend.to_string()),
            encode(&doc),
        )
        .await;
    }

    pub(crate) fn metrics_text(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    pub(crate) async fn stop(mut self) -> u32 {
        match self.server.take() {
            Some(s) => s.shutdown().await,
            None => 0,
        }
    }
}
