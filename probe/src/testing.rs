//! Health endpoints for tests and benchmarks: minimal HTTP servers on loopback that answer `200 ok`, and
//! can be killed (connections refused), revived on the same port, made to hang (accept, never answer),
//! or told to answer 503 to requests whose
//! head contains a given text (a User-Agent naming one vantage point: "unreachable from there only").

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Behaviour {
    refuse: Option<String>,
    hang: bool,
    heads: Vec<String>,
}

/// A test endpoint. Dropping it stops it.
pub struct Endpoint {
    addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    task: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Serves on a free loopback port.
    ///
    /// # Panics
    /// If no loopback port can be bound (a test fixture that cannot start is a failed test).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let task = Some(tokio::spawn(serve(listener, behaviour.clone())));
        Self {
            addr,
            behaviour,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/healthz`.
    pub fn url(&self) -> String {
        format!("http://{}/healthz", self.addr)
    }

    /// Stops listening: connections are refused from now on.
    pub fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    ///
    /// # Panics
    /// If the port was taken meanwhile.
    pub async fn revive(&mut self) {
        self.kill();
        let listener = TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("cannot bind {} again: {e}", self.addr));
        self.task = Some(tokio::spawn(serve(listener, self.behaviour.clone())));
    }

    /// Answers 503 to requests whose head contains `text` (`None`: answer everyone).
    pub fn refuse(&self, text: Option<&str>) {
        self.lock().refuse = text.map(str::to_owned);
    }

    /// Accepts connections but never answers (a black hole: only the probe timeout notices), or answers
    /// again.
    pub fn hang(&self, hang: bool) {
        self.lock().hang = hang;
    }

    /// The heads of the requests received so far.
    pub fn heads(&self) -> Vec<String> {
        self.lock().heads.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Behaviour> {
        self.behaviour.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve(listener: TcpListener, behaviour: Arc<Mutex<Behaviour>>) {
    while let Ok((mut conn, _)) = listener.accept().await {
        let behaviour = behaviour.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 2048];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let (refused, hang) = {
                let mut b = behaviour.lock().unwrap_or_else(PoisonError::into_inner);
                let refused = b.refuse.as_ref().is_some_and(|r| head.contains(r.as_str()));
                b.heads.push(head);
                (refused, b.hang)
            };
            if hang {
                // Hold the connection open, silent, until the client gives up.
                let _ = conn.read(&mut buf).await;
                return;
            }
            let response: &[u8] = if refused {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
            };
            let _ = conn.write_all(response).await;
            let _ = conn.shutdown().await;
        });
    }
}
