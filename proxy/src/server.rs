//! Running proxies: one pingora `Server` with one HTTP service per region, on a dedicated thread, stopped
//! gracefully from the outside.
//!
//! Why a thread: pingora's `Server::run_forever` calls `process::exit` and installs its own signal
//! handlers, and `Server::run` builds its own tokio runtimes (one per service) and blocks. It cannot run
//! inside the caller's runtime. So [`ProxyServer::start`] builds the `Server` with a configuration made
//! here (no command line, no YAML, no daemon), adds one service per region, and calls `Server::run` on a
//! thread of its own with a custom `ShutdownSignalWatch` — no signal handlers are installed; the caller
//! decides when to stop (Ctrl-C, SIGINT, its own reasons).
//!
//! [`ProxyServer::shutdown`] asks pingora for a graceful terminate: the listeners close at once, requests in
//! flight finish, idle keep-alive connections are closed. It returns as soon as no request is in flight
//! (or when the grace period is over), without waiting for pingora's own fixed sleep of
//! `grace_period_seconds` (pingora always sleeps the whole of it, 300 s by default, which is why it is set
//! here from the grace period): a process exiting then loses nothing.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use tokio::sync::watch;

use crate::h1::FastH1;
use crate::node::{Listener, ProxyNode};
use crate::service::RegionService;
use crate::tls::ListenKind;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Worker threads per region's service.
    pub threads: usize,
    /// Longest time a graceful shutdown waits for requests in flight.
    pub grace: Duration,
    /// Idle upstream connections kept for reuse (shared by all upstreams).
    pub upstream_keepalive_pool: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            grace: Duration::from_secs(5),
            upstream_keepalive_pool: 256,
        }
    }
}

/// Why the proxies could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Two listeners were given the same address.
    #[error(
        "{0} is given to two listeners (each region's HTTP, HTTPS and hop listener needs its own address)"
    )]
    Duplicate(SocketAddr),
    /// The server did not start answering in time.
    #[error("the proxy did not start listening on {0} within 10 s")]
    NotListening(SocketAddr),
    /// The server thread could not be started.
    #[error("cannot start the proxy thread: {0}")]
    Thread(std::io::Error),
    /// Nothing to run.
    #[error("no listener given")]
    Empty,
}

struct StopSignal(watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        // A dropped sender is a stop too.
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::GracefulTerminate
    }
}

/// Proxies running on their own thread.
#[derive(Debug)]
pub struct ProxyServer {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    listeners: Vec<Listener>,
    grace: Duration,
}

impl ProxyServer {
    /// Starts one HTTP service per listener in one pingora server, and waits until every address
    /// accepts connections. The nodes' background work ([`ProxyNode::start`]) is the caller's.
    pub async fn start(listeners: Vec<Listener>, options: &ServerOptions) -> Result<Self, StartError> {
        if listeners.is_empty() {
            return Err(StartError::Empty);
        }
        // pingora binds inside its service thread and only logs a failure: check first, so a taken
        // address is an error here rather than a proxy that silently serves nothing. Two listeners on one
        // address must be refused here too: pingora would not fail — it keeps one table of listening
        // sockets by address, so the second service would take the first one's socket as its own, two
        // owners of one file descriptor (accepting each other's connections, and closing it twice at
        // shutdown, which debug builds abort on: "IO Safety violation").
        let mut seen = std::collections::HashSet::new();
        if let Some(l) = listeners.iter().find(|l| !seen.insert(l.addr)) {
            return Err(StartError::Duplicate(l.addr));
        }
        for l in &listeners {
            TcpListener::bind(l.addr).map_err(|source| StartError::Bind { addr: l.addr, source })?;
        }
        let conf = ServerConf {
            threads: options.threads.max(1),
            grace_period_seconds: Some(options.grace.as_secs_f64().ceil() as u64),
            graceful_shutdown_timeout_seconds: Some(1),
            upstream_keepalive_pool_size: options.upstream_keepalive_pool,
            // One thread has nobody to steal from: pingora then runs a single-threaded tokio runtime,
            // which skips the work-stealing scheduler's cross-thread queues and atomics per wake-up.
            work_stealing: options.threads > 1,
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        for l in &listeners {
            let region = RegionService::for_listener(l.node.clone(), &l.kind);
            let pingora_proxy = http_proxy(&server.configuration, region.clone());
            let mut service = Service::new(
                format!("meridian proxy {} ({})", l.node.region(), l.kind.label()),
                FastH1::new(region, pingora_proxy, l.kind.clone()),
            );
            // No L4 read buffer: pingora's default is 64 KiB per accepted connection, zero-filled, so all
            // resident — most of an idle connection's memory (bench/RESULTS.md, issue 19). Both engines
            // read into their own buffers; the throughput did not change without it. No write buffer
            // under TLS either: rustls writes whole records, and the fast path flushes after each
            // response, so the 1,460 octets per connection would only hold what is sent at once.
            let write = match l.kind {
                ListenKind::Http { .. } => 1460,
                ListenKind::Https(_) | ListenKind::Hop(_) => 0,
            };
            service.add_listener(
                ListenerConfig::tcp(l.addr.to_string()).l4_buffer(L4BufferSettings::new(0, write)),
            );
            server.add_service(service);
        }
        let (stop, rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("meridian-proxy".into())
            .spawn(move || {
                server.run(RunArgs {
                    shutdown_signal: Box::new(StopSignal(rx)),
                });
            })
            .map_err(StartError::Thread)?;
        let this = Self {
            stop,
            thread: Some(thread),
            listeners,
            grace: options.grace,
        };
        for l in &this.listeners {
            let addr = l.addr;
            let up = tokio::task::spawn_blocking(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            })
            .await
            .unwrap_or(false);
            if !up {
                let _ = this.stop.send(true);
                return Err(StartError::NotListening(addr));
            }
        }
        Ok(this)
    }

    /// The listeners.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Requests being handled by every region's proxy.
    pub fn active_requests(&self) -> u32 {
        self.listeners.iter().map(|l| l.node.active_requests()).sum()
    }

    /// Stops accepting connections, waits for requests in flight (at most the grace period), then stops
    /// the nodes' background work (their load reports are withdrawn). Returns the requests still in
    /// flight when it gave up waiting (0 after a clean drain).
    pub async fn shutdown(mut self) -> u32 {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + self.grace;
        // Let pingora see the signal and close its listeners before counting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while self.active_requests() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.active_requests();
        let nodes: Vec<Arc<ProxyNode>> = self.listeners.iter().map(|l| l.node.clone()).collect();
        for n in nodes {
            n.stop().await;
        }
        // pingora's thread sleeps out its grace period before exiting: join it only if it is done.
        if let Some(t) = self.thread.take()
            && t.is_finished()
        {
            let _ = t.join();
        }
        left
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
