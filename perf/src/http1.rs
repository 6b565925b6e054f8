//! A minimal HTTP/1.1 keep-alive client: one request in flight per connection, the request
//! written as prepared bytes, the response head scanned for its status, `Content-Length` and
//! `Connection: close`, the body skipped. No chunked bodies (smsgate and the bare server
//! always send `Content-Length`). Why not hyper's client: this costs a write and a read per
//! request and nothing else, so one load generator thread outruns the servers it measures.

use std::io;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest response head accepted, in octets: hyper's heads are ~100.
const MAX_HEAD: usize = 16 * 1024;

/// Free space kept before each read, in octets: a whole response of the servers measured.
const READ_CHUNK: usize = 4096;

/// What the client needs of a response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Octets of the head, the blank line included.
    pub head_len: usize,
    pub content_length: usize,
    /// The server said `Connection: close`: open a new connection for the next request.
    pub close: bool,
}

/// Parses a response head from the start of `buf`. `Ok(None)`: not complete yet.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(bad("response head too long"));
        }
        return Ok(None);
    };
    let head = &buf[..end];
    if head.len() < 12 || !head.starts_with(b"HTTP/1.") {
        return Err(bad("not an HTTP/1 status line"));
    }
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("bad status code"))?;
    let mut content_length = 0;
    let mut close = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.eq_ignore_ascii_case(b"close");
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(bad("chunked responses are not supported"));
        }
    }
    Ok(Some(Head { status, head_len: end + 4, content_length, close }))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::with_capacity(READ_CHUNK) })
    }

    /// Writes `request` (a complete HTTP/1.1 request) and reads its response. After an error
    /// or a `close` answer the connection must not be used again.
    pub async fn exchange(&mut self, request: &[u8]) -> io::Result<Head> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                let total = head.head_len + head.content_length;
                while self.buf.len() < total {
                    self.read_more().await?;
                }
                self.buf.drain(..total);
                return Ok(head);
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> io::Result<()> {
        self.buf.reserve(READ_CHUNK);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_length_and_close() {
        let r = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 12\r\nConnection: close\r\n\r\n{\"x\":\"abc\"}\n";
        let h = parse_head(r).unwrap().unwrap();
        assert_eq!(h.status, 429);
        assert_eq!(h.content_length, 12);
        assert!(h.close);
        assert_eq!(&r[h.head_len..], b"{\"x\":\"abc\"}\n");
    }

    #[test]
    fn incomplete_head_waits() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
    }

    #[test]
    fn refuses_chunked_and_garbage() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"SMPP nonsense here\r\n\r\n").is_err());
    }
}
