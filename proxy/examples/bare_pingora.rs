//! The floor under Meridian's proxy: pingora with nothing of Meridian in it — one fixed upstream, no
//! routing, no headers added, no metrics. `bench/proxy/run` measures it beside the real proxy, so
//! the report can tell what pingora itself costs per request on this machine from what Meridian adds.
//!
//! Usage: bare_pingora LISTEN UPSTREAM THREADS   (e.g. 127.0.0.1:18094 127.0.0.1:18081 1)

#![allow(clippy::expect_used)]

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().expect("LISTEN");
    let upstream = args.next().expect("UPSTREAM");
    let threads: usize = args.next().map_or(1, |t| t.parse().expect("THREADS"));
    let conf = ServerConf {
        threads,
        work_stealing: threads > 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut service = http_proxy_service(&server.configuration, Bare { upstream });
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
