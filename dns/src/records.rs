//! How answers on the TLS transports become TLS records and system calls.
//!
//! On tokio-rustls every `poll_write` seals TLS records and makes a `write` system call at once. Two
//! adapters decide what one write holds:
//!
//! - [`Batched`] (DNS-over-TLS), between hickory-net's RFC 7766 framing and the TLS stream. hickory's
//!   `TcpStream` writes and flushes each answer on its own: a client with 100 queries in flight cost the
//!   server 100 records and 100 system calls per round. Here writes are appended to a buffer that goes
//!   out as one TLS write (up to [`BATCH_LIMIT`] octets) when there is nothing more to read (the read
//!   would wait), at the end of the client's stream, or when the buffer is full. hickory's `TcpStream`
//!   polls its outbound answers before it reads, so every answer made before the read that finds nothing
//!   is in that write: a client never waits for an answer the server has made. `poll_flush` sends only a
//!   full buffer (hickory calls it after every answer; honouring it is the per-answer write this
//!   removes); `poll_shutdown` sends everything.
//! - [`OneAnswerPerRecord`] (DNS-over-HTTPS), between h2 and the TLS stream: a TLS record never holds
//!   more than one complete DoH answer (it ends after a DATA frame with END_STREAM). dnsperf 2.10's DoH
//!   client (and every release since, up to 2.14) takes one answer per `SSL_read`: when a second answer's
//!   DATA arrives in the same read it pauses nghttp2, which counts the paused chunk as consumed, so that
//!   answer comes out empty, is taken for "try again", and the rest of the record waits in dnsperf's
//!   buffer while it polls a socket with nothing more to read — the whole connection stalls until its
//!   queries time out (DNS-OARC/dnsperf issue 240: "HTTP/2 return codes said all responses received").
//!   h2 writes every frame it has in one `poll_write`, so under load one record held many answers. The
//!   records still leave together: the TCP stream under the TLS one is a `tokio::io::BufWriter`, sent when
//!   h2 flushes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most octets held before a write must wait for the buffer to go out (a TLS record holds 16 KiB).
pub const BATCH_LIMIT: usize = 16 * 1024;

/// A stream whose writes are held and sent together when the reader finds nothing to read (DoT).
pub struct Batched<S> {
    inner: S,
    out: Vec<u8>,
    /// How much of `out` the inner stream has taken.
    sent: usize,
}

impl<S> Batched<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            out: Vec::with_capacity(4096),
            sent: 0,
        }
    }

    /// The octets written and not yet sent.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }
}

impl<S: AsyncWrite + Unpin> Batched<S> {
    /// Sends the buffer to the inner stream and flushes it; `Ready` once all of it is taken.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Room for `len` more octets: sends the buffer first when it would pass [`BATCH_LIMIT`].
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<()>> {
        if self.pending() > 0 && self.pending() + len > BATCH_LIMIT {
            ready!(self.poll_send(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Batched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => Poll::Ready(Ok(())),
            // The end of the client's stream: the answers made so far go out before it is reported.
            Poll::Ready(Ok(())) => {
                if this.pending() > 0 {
                    ready!(this.poll_send(cx))?;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // Nothing more to read now: send what was answered (if the socket is full, the waker is
            // registered for it too, and the next poll sends the rest).
            Poll::Pending => {
                if this.pending() > 0
                    && let Poll::Ready(Err(e)) = this.poll_send(cx)
                {
                    return Poll::Ready(Err(e));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Batched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_room(cx, buf.len()))?;
        self.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        ready!(self.poll_room(cx, len))?;
        for b in bufs {
            self.out.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Sends only a full buffer: the read side sends the rest when nothing more is readable.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending() >= BATCH_LIMIT {
            ready!(self.poll_send(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream under h2 whose writes end after each answer: a DATA frame with END_STREAM (DoH).
///
/// It follows the HTTP/2 frames the server writes (a 9-octet header: 24-bit length, type, flags, stream)
/// and cuts a write short after the last octet of each DATA frame that ends its stream; h2 writes the
/// rest with its next `poll_write`.
pub struct OneAnswerPerRecord<S> {
    inner: S,
    frames: FrameCursor,
}

impl<S> OneAnswerPerRecord<S> {
    /// Wraps `inner`, which carries the server's side of an HTTP/2 connection from its first octet.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            frames: FrameCursor::default(),
        }
    }
}

/// Where the server's HTTP/2 frame stream is: in a frame header, or in a payload.
#[derive(Clone, Copy, Debug, Default)]
struct FrameCursor {
    header: [u8; 9],
    /// Octets of `header` read (9: in the payload).
    have: usize,
    /// Payload octets still to come.
    remaining: usize,
    /// The frame is DATA with END_STREAM: an answer ends with it.
    ends_answer: bool,
}

/// HTTP/2 frame type DATA and flag END_STREAM (RFC 9113 §6.1).
const DATA: u8 = 0x0;
const END_STREAM: u8 = 0x1;

impl FrameCursor {
    /// Moves over `bytes`; with `stop`, stops after the first answer's end. Returns the octets moved over.
    fn advance(&mut self, bytes: &[u8], stop: bool) -> usize {
        let mut pos = 0;
        while pos < bytes.len() {
            if self.have < 9 {
                let take = (9 - self.have).min(bytes.len() - pos);
                self.header[self.have..self.have + take].copy_from_slice(&bytes[pos..pos + take]);
                self.have += take;
                pos += take;
                if self.have < 9 {
                    break;
                }
                let h = self.header;
                self.remaining = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                self.ends_answer = h[3] == DATA && h[4] & END_STREAM != 0;
            } else {
                let take = self.remaining.min(bytes.len() - pos);
                self.remaining -= take;
                pos += take;
            }
            if self.have == 9 && self.remaining == 0 {
                let ended = self.ends_answer;
                self.have = 0;
                self.ends_answer = false;
                if ended && stop {
                    break;
                }
            }
        }
        pos
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for OneAnswerPerRecord<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for OneAnswerPerRecord<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let cut = this.frames.advance_copy(buf);
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..cut]))?;
        this.frames.advance(&buf[..n], false);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl FrameCursor {
    /// How many octets of `bytes` one write takes: up to and including the first answer's end.
    fn advance_copy(&self, bytes: &[u8]) -> usize {
        let mut probe = *self;
        probe.advance(bytes, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers written while queries are readable are held; they go out together when the reader waits.
    #[tokio::test]
    async fn writes_go_out_together_when_the_reader_would_wait() {
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let mut b = Batched::new(server);
        client.write_all(b"q1q2").await.unwrap();
        let mut two = [0u8; 2];
        b.read_exact(&mut two).await.unwrap();
        b.write_all(b"a1").await.unwrap();
        b.flush().await.unwrap();
        assert_eq!(b.pending(), 2, "held while queries are readable");
        b.read_exact(&mut two).await.unwrap();
        b.write_all(b"a2").await.unwrap();
        b.flush().await.unwrap();
        assert_eq!(b.pending(), 4);
        // The next read finds nothing: both answers leave.
        let mut more = [0u8; 2];
        let read = tokio::time::timeout(std::time::Duration::from_millis(50), b.read(&mut more)).await;
        assert!(read.is_err(), "nothing to read");
        assert_eq!(b.pending(), 0);
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"a1a2");
    }

    /// At the end of the client's stream the held answers are sent before the end is reported.
    #[tokio::test]
    async fn the_end_of_the_stream_sends_what_is_held() {
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let mut b = Batched::new(server);
        client.write_all(b"q").await.unwrap();
        client.shutdown().await.unwrap();
        let mut one = [0u8; 1];
        b.read_exact(&mut one).await.unwrap();
        b.write_all(b"answer").await.unwrap();
        assert_eq!(b.read(&mut one).await.unwrap(), 0, "end of stream");
        drop(b);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
    }

    /// A full buffer is sent by the write that would pass the limit: held octets stay bounded.
    #[tokio::test]
    async fn held_octets_stay_under_the_limit() {
        let (server, mut client) = tokio::io::duplex(4 * BATCH_LIMIT);
        let mut b = Batched::new(server);
        let chunk = vec![7u8; 1000];
        for _ in 0..40 {
            b.write_all(&chunk).await.unwrap();
            assert!(b.pending() <= BATCH_LIMIT);
        }
        b.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 40_000);
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Records the length of every write it takes.
    struct Writes(Vec<usize>, Vec<u8>);
    impl AsyncWrite for Writes {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.0.push(buf.len());
            self.1.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Three answers (HEADERS, DATA with END_STREAM) and control frames written at once leave as three
    /// writes, each ending with an answer's DATA; frames split across h2's writes are followed.
    #[tokio::test]
    async fn each_write_ends_after_one_answer() {
        let mut wire = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]); // SETTINGS
        let mut ends = Vec::new();
        for stream in [1u32, 3, 5] {
            wire.extend(frame(0x1, 0x4, stream, &[0x88; 20])); // HEADERS
            wire.extend(frame(DATA, END_STREAM, stream, &[0xab; 73]));
            ends.push(wire.len());
        }
        wire.extend(frame(0x8, 0, 0, &[0, 0, 0x10, 0])); // WINDOW_UPDATE, after the last answer
        let mut w = OneAnswerPerRecord::new(Writes(Vec::new(), Vec::new()));
        // h2 hands the octets over in two pieces, the second starting inside a frame header.
        let split = ends[0] + 4;
        w.write_all(&wire[..split]).await.unwrap();
        w.write_all(&wire[split..]).await.unwrap();
        let Writes(lens, bytes) = w.inner;
        assert_eq!(bytes, wire);
        let mut at = 0;
        let boundaries: Vec<usize> = lens
            .iter()
            .map(|l| {
                at += l;
                at
            })
            .collect();
        for end in &ends {
            assert!(
                boundaries.contains(end),
                "a write ends after the answer ending at {end}: {boundaries:?}"
            );
        }
        // Nothing else is cut: where h2's first piece ended, and the end of what it wrote.
        assert_eq!(boundaries, vec![ends[0], split, ends[1], ends[2], wire.len()]);
    }

    /// A DATA frame without END_STREAM (a body in pieces) does not end a write.
    #[test]
    fn only_the_end_of_a_stream_cuts() {
        let mut wire = frame(DATA, 0, 1, &[1; 10]);
        wire.extend(frame(DATA, END_STREAM, 1, &[2; 10]));
        wire.extend(frame(DATA, END_STREAM, 3, &[]));
        let c = FrameCursor::default();
        assert_eq!(c.advance_copy(&wire), 38);
        let mut c2 = c;
        c2.advance(&wire[..38], false);
        assert_eq!(
            c2.advance_copy(&wire[38..]),
            9,
            "an empty final DATA frame is an answer's end too"
        );
    }
}
