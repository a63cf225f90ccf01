//! Where an upstream response's body ends (RFC 9112 §6.3): its framing from the head, then the octets
//! fed as they arrive, so that the fast path forwards exactly the body and knows whether the upstream
//! connection can be reused.

/// How an upstream response's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The body framing of a response (RFC 9112 §6.3) and whether its connection may be reused; `None` for
/// a response whose length cannot be trusted (conflicting `Content-Length`s).
pub(super) fn framing_of(resp: &httparse::Response<'_, '_>, status: u16) -> Option<(Framing, bool)> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    let mut close = resp.version != Some(1);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value).ok()?.trim().parse::<u64>().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            chunked = h
                .value
                .split(|b| *b == b',')
                .next_back()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            if lists(h.value, "close") {
                close = true;
            } else if lists(h.value, "keep-alive") && resp.version == Some(0) {
                close = false;
            }
        }
    }
    let framing = if status == 204 || status == 304 {
        Framing::None
    } else if encoded {
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Some((framing, !close))
}

/// Where a response body ends, fed the octets as they arrive.
pub(super) struct Body {
    framing: Framing,
    /// Length: octets still due. Chunked: octets of the current chunk's data (and its CRLF) still due.
    left: u64,
    chunk: ChunkState,
    line: Vec<u8>,
    finished: bool,
    pub(super) spoiled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    Size,
    /// Inside chunk data plus its trailing CRLF (`left` octets).
    Data,
    /// Reading trailer lines after the last chunk, until an empty one.
    Trailer,
}

impl Body {
    pub(super) fn new(framing: Framing) -> Self {
        Self {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunk: ChunkState::Size,
            line: Vec::new(),
            finished: matches!(framing, Framing::None | Framing::Length(0)),
            spoiled: false,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.finished
    }

    /// Takes octets of `data` that belong to the body; returns how many (fewer than given only when
    /// the body ended inside `data`).
    pub(super) fn feed(&mut self, data: &[u8]) -> usize {
        match self.framing {
            Framing::None => 0,
            Framing::UntilClose => data.len(),
            Framing::Length(_) => {
                let take = (data.len() as u64).min(self.left) as usize;
                self.left -= take as u64;
                self.finished = self.left == 0;
                take
            }
            Framing::Chunked => {
                let mut i = 0;
                while i < data.len() && !self.finished {
                    match self.chunk {
                        ChunkState::Data => {
                            let take = ((data.len() - i) as u64).min(self.left) as usize;
                            self.left -= take as u64;
                            i += take;
                            if self.left == 0 {
                                self.chunk = ChunkState::Size;
                            }
                        }
                        ChunkState::Size | ChunkState::Trailer => {
                            let b = data[i];
                            i += 1;
                            self.line.push(b);
                            if self.line.len() > 4096 {
                                // A size or trailer line this long is not HTTP: end here, spoiled.
                                self.finished = true;
                                self.spoiled = true;
                                break;
                            }
                            if b != b'\n' {
                                continue;
                            }
                            if self.chunk == ChunkState::Trailer {
                                if self.line == b"\r\n" || self.line == b"\n" {
                                    self.finished = true;
                                }
                                self.line.clear();
                                continue;
                            }
                            match httparse::parse_chunk_size(&self.line) {
                                Ok(httparse::Status::Complete((_, 0))) => self.chunk = ChunkState::Trailer,
                                Ok(httparse::Status::Complete((_, size))) => {
                                    self.chunk = ChunkState::Data;
                                    self.left = size.saturating_add(2);
                                }
                                _ => {
                                    self.finished = true;
                                    self.spoiled = true;
                                }
                            }
                            self.line.clear();
                        }
                    }
                }
                i
            }
        }
    }
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn feed_all(framing: Framing, parts: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut body = Body::new(framing);
        let mut taken = Vec::new();
        for p in parts {
            let n = body.feed(p);
            taken.extend_from_slice(&p[..n]);
        }
        (taken, body.done())
    }

    #[test]
    fn chunked_bodies_end_after_the_last_chunk_and_trailers_whatever_the_split() {
        let body: &[u8] = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-t: 1\r\n\r\n";
        let mut next = body.to_vec();
        next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for split in 0..next.len() {
            let (taken, done) = feed_all(Framing::Chunked, &[&next[..split], &next[split..]]);
            assert!(done, "split at {split}");
            assert_eq!(taken, body, "split at {split}");
        }
        let (taken, done) = feed_all(Framing::Chunked, &[b"3\r\nab"]);
        assert!(!done);
        assert_eq!(taken, b"3\r\nab");
    }

    #[test]
    fn length_bodies_take_exactly_their_length() {
        let (taken, done) = feed_all(Framing::Length(4), &[b"ab", b"cdEXTRA"]);
        assert_eq!((taken.as_slice(), done), (&b"abcd"[..], true));
        assert!(Body::new(Framing::Length(0)).done());
        assert!(Body::new(Framing::None).done());
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let frame = |raw: &[u8], status| {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut headers);
            r.parse(raw).unwrap();
            framing_of(&r, status)
        };
        assert_eq!(
            frame(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", 200),
            Some((Framing::Length(3), true))
        );
        assert_eq!(
            frame(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
                200
            ),
            Some((Framing::Chunked, true))
        );
        assert_eq!(
            frame(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 200),
            Some((Framing::UntilClose, false))
        );
        assert_eq!(
            frame(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", 200),
            Some((Framing::Length(1), false))
        );
        assert_eq!(
            frame(
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                200
            ),
            Some((Framing::Length(1), true))
        );
        assert_eq!(
            frame(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 304),
            Some((Framing::None, true))
        );
        assert_eq!(
            frame(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                200
            ),
            None
        );
    }
}
