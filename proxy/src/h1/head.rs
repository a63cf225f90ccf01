//! Reading a client's request head and telling whether it has the fast path's shape (`GET`/`HEAD`,
//! HTTP/1.1, one `Host`, no body): what [`super::FastH1`] serves itself, the rest being handed over.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::ReadBuf;

use super::{CHUNK, MAX_HEADERS};
use crate::service::RequestHead;

/// A parsed request head of the fast path's shape (borrowing the read buffer).
pub(super) struct Head<'b> {
    pub(super) method: &'b str,
    pub(super) path: &'b str,
    pub(super) headers: Vec<(&'b str, &'b [u8])>,
    pub(super) len: usize,
    /// The client asked to close the connection after this request.
    pub(super) close: bool,
}

impl RequestHead for Head<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn authority(&self) -> Option<&[u8]> {
        self.header("host")
    }

    fn head_size(&self) -> usize {
        self.len
    }

    fn idempotent(&self) -> bool {
        true // GET and HEAD only
    }

    fn target(&self) -> &[u8] {
        self.path.as_bytes()
    }
}

/// What reading a request head gave.
pub(super) enum Read {
    /// The buffer holds a whole head (its end, an empty line, has arrived).
    Head,
    /// The client closed (or went idle, or the server is stopping) before a request began.
    Gone,
    /// Something pingora must judge: hand the connection over with what was read.
    HandOver,
    /// Part of a head came, then nothing for the client timeout: answered `408` and closed here (a
    /// hand-over would start pingora's own, longer, wait again).
    TimedOut,
}

pub(super) async fn read_head(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    limit: usize,
    timeout: Duration,
    shutdown: &ShutdownWatch,
) -> Read {
    let mut shutdown = shutdown.clone();
    loop {
        if !buf.is_empty() {
            // The whole head is here: `fast_shape` parses it (once). Part of it: parse only to refuse
            // garbage at once rather than wait for an end that will not come.
            if has_head_end(buf) {
                return Read::Head;
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Partial) if buf.len() <= limit => {}
                _ => return Read::HandOver,
            }
        }
        let start = buf.len();
        let read = tokio::select! {
            r = tokio::time::timeout(timeout, read_more(stream, buf)) => r,
            // Stopping: an idle keep-alive connection is closed; a request already begun is read on.
            _ = shutdown.wait_for(|s| *s), if start == 0 => return Read::Gone,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Err(_) if start > 0 => return Read::TimedOut,
            // Closed (or idle before a request began): nothing to answer.
            _ => return Read::Gone,
        }
    }
}

thread_local! {
    /// What a read from a client lands in before it is copied to the connection's own buffer.
    static READ_BUF: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; CHUNK].into_boxed_slice());
}

/// Reads what the client sent next and appends it to `buf`; `Ok(0)`: the client closed.
///
/// Why through a per-thread buffer: a connection waiting for its next request then holds no read buffer
/// of its own, and its `buf` is allocated when octets arrive, to their size (bench/RESULTS.md, issue 19:
/// nginx too allocates a connection's request buffer only when a request arrives). The copy is of a
/// request head, a few hundred octets.
pub(super) async fn read_more(stream: &mut Stream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ_BUF.with(|tmp| {
            let mut tmp = tmp.borrow_mut();
            let mut read = ReadBuf::new(&mut tmp[..]);
            match Pin::new(&mut **stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(read.filled());
                    Poll::Ready(Ok(read.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

/// Whether `buf` holds the empty line that ends a head (lines end in CRLF or, leniently, LF).
pub(super) fn has_head_end(buf: &[u8]) -> bool {
    buf.windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && buf.get(i + 2) == Some(&b'\n')))
}

/// Parses the head at the start of `buf` if it has the fast path's shape.
pub(super) fn fast_shape(buf: &[u8]) -> Option<Head<'_>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(buf).ok()? else {
        return None;
    };
    let method = req.method?;
    let path = req.path?;
    if !(method == "GET" || method == "HEAD") || req.version != Some(1) || !path.starts_with('/') {
        return None;
    }
    let mut hosts = 0;
    let mut close = false;
    let mut out = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("content-length") || is("transfer-encoding") || is("upgrade") || is("expect") || is("te") {
            return None;
        }
        if is("connection") {
            if h.value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if !h.value.eq_ignore_ascii_case(b"keep-alive") {
                return None;
            }
        }
        if is("host") {
            hosts += 1;
        }
        out.push((name, h.value));
    }
    if hosts != 1 {
        return None;
    }
    Some(Head {
        method,
        path,
        headers: out,
        len,
        close,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_head_ends_at_its_first_empty_line() {
        assert!(has_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(has_head_end(b"GET / HTTP/1.1\nHost: x\n\nGET"));
        assert!(!has_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        assert!(!has_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r"));
        let two = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(fast_shape(two).unwrap().len, two.len() / 2);
    }

    #[test]
    fn only_plain_gets_and_heads_take_the_fast_path() {
        let ok = b"GET /a?b HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n\r\n";
        let head = fast_shape(ok).unwrap();
        assert_eq!((head.method, head.path), ("GET", "/a?b"));
        assert_eq!(head.header("cookie"), Some(&b"a=1"[..]));
        assert!(!head.close);
        let close = b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        assert!(fast_shape(close).unwrap().close);
        for refused in [
            &b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, te\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
        ] {
            assert!(
                fast_shape(refused).is_none(),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }
}
