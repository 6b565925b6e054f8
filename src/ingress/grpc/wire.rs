//! gRPC over HTTP/2 on the wire (grpc/doc/PROTOCOL-HTTP2.md): length-prefixed messages in,
//! a body of length-prefixed messages and a trailers frame out, with the status in
//! `grpc-status`/`grpc-message` (or in the headers alone: a trailers-only response).
//!
//! Nothing a client sends can panic here: a bad prefix, an oversized or compressed message or
//! a broken stream ends the call with a status, and the connection and shard carry on.

use super::pb;
use crate::ingress::reply::{grpc_status, GrpcCode, GrpcReply};
use crate::pipeline::Rejection;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_channel::{mpsc, oneshot};
use futures_lite::future::FutureExt;
use futures_lite::Stream;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::Response;
use shards::Shutdown;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Length prefix: 1 byte compressed flag, 4 bytes big-endian length.
const PREFIX: usize = 5;

/// Frames a streaming response buffers before its producer waits: HTTP/2 flow control does
/// the rest (hyper polls the body only when the stream has window).
const STREAM_BUFFER: usize = 16;

// === impl Status ===

/// How a call ends: code, message and extra trailers.
#[derive(Debug)]
pub struct Status {
    pub code: GrpcCode,
    pub message: String,
    /// Extra trailers (name, value); values are ours: ids, codes, numbers.
    pub meta: Vec<(&'static str, String)>,
}

impl Status {
    pub fn new(code: GrpcCode, message: impl Into<String>) -> Self {
        Status { code, message: message.into(), meta: Vec::new() }
    }

    pub fn ok() -> Self {
        Status::new(GrpcCode::Ok, "")
    }

    /// A pipeline refusal, with the facts of `reply.rs` as trailers: `smsgate-code`,
    /// `smsgate-field`, `smsgate-limit`, `message-id`, `smpp-command-status`, `retry-after-ms`.
    pub fn from_rejection(r: Rejection) -> Self {
        let refusal = refusal(r);
        let mut s = Status::new(code_of(refusal.grpc_code), refusal.message);
        s.set("smsgate-code", &refusal.code);
        if !refusal.field.is_empty() {
            s.set("smsgate-field", &refusal.field);
        }
        if !refusal.limit.is_empty() {
            s.set("smsgate-limit", &refusal.limit);
        }
        if !refusal.id.is_empty() {
            s.set("message-id", &refusal.id);
        }
        if let Some(c) = refusal.smpp_command_status {
            s.set("smpp-command-status", &c.to_string());
        }
        if let Some(ms) = refusal.retry_after_ms {
            s.set("retry-after-ms", &ms.to_string());
        }
        s
    }

    /// Adds a trailer. `name` must be a lower-case header name.
    pub fn set(&mut self, name: &'static str, value: &str) {
        self.meta.push((name, value.to_owned()));
    }

    fn write_to(self, map: &mut HeaderMap) {
        map.insert("grpc-status", HeaderValue::from(self.code as u16));
        if !self.message.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&percent_encode(&self.message)) {
                map.insert("grpc-message", v);
            }
        }
        for (name, value) in self.meta {
            // A value that is not a valid header value is dropped: we only set values we
            // made, from ids, codes and numbers.
            if let Ok(v) = HeaderValue::from_str(&value) {
                map.insert(HeaderName::from_static(name), v);
            }
        }
    }
}

/// A refusal of one message in a batch or stream: the same facts as a unary call's status.
pub fn refusal(r: Rejection) -> pb::Refusal {
    let GrpcReply { code, retry_after_ms, reply } = grpc_status(r);
    pb::Refusal {
        grpc_code: code as u32,
        code: reply.code.to_owned(),
        message: reply.message,
        field: reply.field.unwrap_or_default(),
        id: reply.id.unwrap_or_default(),
        smpp_command_status: reply.command_status,
        retry_after_ms,
        limit: reply.limit.unwrap_or_default(),
    }
}

fn code_of(n: u32) -> GrpcCode {
    use GrpcCode::*;
    [
        Ok,
        Cancelled,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        ResourceExhausted,
        FailedPrecondition,
        Unimplemented,
        Internal,
        Unavailable,
        Unauthenticated,
    ]
    .into_iter()
    .find(|c| *c as u32 == n)
    .unwrap_or(Internal)
}

/// grpc-message is percent-encoded: every byte outside printable ASCII, and `%` itself.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// === impl MessageReader ===

/// Reads length-prefixed messages from a request body.
pub struct MessageReader {
    body: Incoming,
    buf: BytesMut,
    /// Largest message accepted, in bytes (the prefix excluded).
    max: usize,
    eof: bool,
}

impl MessageReader {
    pub fn new(body: Incoming, max: usize) -> Self {
        MessageReader { body, buf: BytesMut::new(), max, eof: false }
    }

    /// The next message, `None` at the end of the request stream. Cancel-safe: dropping the
    /// future loses nothing.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Status>> {
        loop {
            if let Some(m) = self.split()? {
                return Poll::Ready(Ok(Some(m)));
            }
            if self.eof {
                return Poll::Ready(if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Status::new(GrpcCode::Internal, "the request stream ended inside a message"))
                });
            }
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.eof = true,
                Poll::Ready(Some(Ok(frame))) => {
                    // Request trailers carry nothing for us.
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(Status::new(
                        GrpcCode::Cancelled,
                        format!("reading the request failed: {e}"),
                    )))
                }
            }
        }
    }

    /// One whole message off the front of the buffer, if there is one.
    fn split(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buf.len() < PREFIX {
            return Ok(None);
        }
        let compressed = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        match compressed {
            0 => {}
            1 => {
                return Err(Status::new(
                    GrpcCode::Internal,
                    "compressed message, but the call's grpc-encoding is identity",
                ))
            }
            f => {
                return Err(Status::new(GrpcCode::Internal, format!("invalid compressed-flag {f} in a message prefix")))
            }
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.max {
            return Err(Status::new(
                GrpcCode::ResourceExhausted,
                format!("message of {len} bytes is larger than the limit of {} bytes", self.max),
            ));
        }
        if self.buf.len() < PREFIX + len {
            return Ok(None);
        }
        self.buf.advance(PREFIX);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Reads the one message of a unary request and checks that nothing follows it.
    pub async fn unary<M: prost::Message + Default>(&mut self) -> Result<M, Status> {
        let Some(bytes) = self.next().await? else {
            return Err(Status::new(GrpcCode::Internal, "the request has no message"));
        };
        let msg = decode(bytes)?;
        if self.next().await?.is_some() {
            return Err(Status::new(GrpcCode::Internal, "a unary call got more than one request message"));
        }
        Ok(msg)
    }
}

pub fn decode<M: prost::Message + Default>(bytes: Bytes) -> Result<M, Status> {
    M::decode(bytes)
        .map_err(|e| Status::new(GrpcCode::InvalidArgument, format!("the request message is not valid protobuf: {e}")))
}

/// A message with its length prefix, ready to send.
pub fn encode<M: prost::Message>(msg: &M) -> Bytes {
    let len = msg.encoded_len();
    let mut b = BytesMut::with_capacity(PREFIX + len);
    b.put_u8(0);
    // A response over 4 GiB cannot be built from our messages; saturate rather than wrap.
    b.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    msg.encode_raw(&mut b);
    b.freeze()
}

// === impl GrpcBody ===

/// A gRPC response body: frames ready now, then frames from a producer task, if any.
/// Shard-local (`!Send` is fine: hyper runs the connection on this shard's executor).
pub struct GrpcBody {
    ready: VecDeque<Frame<Bytes>>,
    rx: Option<mpsc::Receiver<Frame<Bytes>>>,
    /// Dropped with the body (stream reset, connection gone): tells the producer to stop.
    _alive: Option<oneshot::Sender<()>>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(f) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        let Some(rx) = this.rx.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(rx).poll_next(cx) {
            Poll::Ready(Some(f)) => Poll::Ready(Some(Ok(f))),
            Poll::Ready(None) => {
                this.rx = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.rx.is_none()
    }
}

fn response(body: GrpcBody) -> Response<GrpcBody> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-accept-encoding", HeaderValue::from_static("identity"));
    resp
}

/// An error answer with no messages: the status goes in the headers, the stream ends there.
pub fn trailers_only(status: Status) -> Response<GrpcBody> {
    let mut resp = response(GrpcBody { ready: VecDeque::new(), rx: None, _alive: None });
    status.write_to(resp.headers_mut());
    resp
}

/// One message, then status OK.
pub fn unary<M: prost::Message>(msg: &M) -> Response<GrpcBody> {
    let mut trailers = HeaderMap::new();
    Status::ok().write_to(&mut trailers);
    response(GrpcBody {
        ready: VecDeque::from([Frame::data(encode(msg)), Frame::trailers(trailers)]),
        rx: None,
        _alive: None,
    })
}

pub fn result<M: prost::Message>(r: Result<M, Status>) -> Response<GrpcBody> {
    match r {
        Ok(m) => unary(&m),
        Err(s) => trailers_only(s),
    }
}

/// A streaming answer: the response to return now, and the producer's side.
pub fn streaming(shutdown: &Shutdown) -> (Response<GrpcBody>, Responder) {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let (alive, gone) = oneshot::channel();
    let resp = response(GrpcBody { ready: VecDeque::new(), rx: Some(rx), _alive: Some(alive) });
    let (shutdown, _watch) = watch_shutdown(shutdown);
    (resp, Responder { tx, stop: Stop { gone, shutdown, _watch } })
}

// === impl Responder ===

/// Why a streaming call stops before its natural end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The client reset the stream or the connection closed: nobody to answer.
    ClientGone,
    /// The shard is shutting down: end the call with UNAVAILABLE.
    Shutdown,
}

/// The producer's side of a streaming response.
pub struct Responder {
    tx: mpsc::Sender<Frame<Bytes>>,
    stop: Stop,
}

struct Stop {
    gone: oneshot::Receiver<()>,
    shutdown: oneshot::Receiver<()>,
    /// Dropped with the responder: ends the task that watches for shutdown.
    _watch: oneshot::Sender<()>,
}

impl Stop {
    fn poll_stop(&mut self, cx: &mut Context<'_>) -> Poll<Stopped> {
        // Nothing is ever sent on `gone`: it resolves only when the body is dropped.
        if Pin::new(&mut self.gone).poll(cx).is_ready() {
            return Poll::Ready(Stopped::ClientGone);
        }
        if Pin::new(&mut self.shutdown).poll(cx).is_ready() {
            return Poll::Ready(Stopped::Shutdown);
        }
        Poll::Pending
    }
}

/// A one-shot view of the shard's shutdown that any number of polls cannot bloat:
/// `Shutdown::wait` keeps a waker per poll, so one helper task waits on it, once, per stream.
fn watch_shutdown(shutdown: &Shutdown) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
    let (fire, fired) = oneshot::channel();
    let (done, ended) = oneshot::channel::<()>();
    let shutdown = shutdown.clone();
    glommio::spawn_local(async move {
        let is_shutdown = async {
            shutdown.wait().await;
            true
        }
        .or(async {
            // Resolves (with Canceled) when the responder is dropped.
            ended.await.ok();
            false
        })
        .await;
        if is_shutdown {
            // The responder may be gone already; then nobody needs telling.
            fire.send(()).ok();
        }
    })
    .detach();
    (fired, done)
}

impl Responder {
    /// Another sender for tasks that answer on the same stream (their sends wait on the same
    /// flow control; they fail once the client is gone).
    pub fn sender(&self) -> mpsc::Sender<Frame<Bytes>> {
        self.tx.clone()
    }

    /// Resolves when the call must stop (client gone or shutdown).
    pub async fn stopped(&mut self) -> Stopped {
        poll_fn(|cx| self.stop.poll_stop(cx)).await
    }

    /// Sends one message, waiting for flow control, unless the call must stop first.
    pub async fn send<M: prost::Message>(&mut self, msg: &M) -> Result<(), Stopped> {
        self.send_frame(Frame::data(encode(msg))).await
    }

    /// Sends one frame as it is (the dashboard's event stream reuses this body for
    /// Server-Sent Events), waiting for flow control, unless the call must stop first.
    pub async fn send_frame(&mut self, frame: Frame<Bytes>) -> Result<(), Stopped> {
        let (tx, stop) = (&mut self.tx, &mut self.stop);
        poll_fn(|cx| {
            if let Poll::Ready(s) = stop.poll_stop(cx) {
                return Poll::Ready(Err(s));
            }
            tx.poll_ready(cx).map_err(|_| Stopped::ClientGone)
        })
        .await?;
        self.tx.start_send(frame).map_err(|_| Stopped::ClientGone)
    }

    /// Ends the call with `status`. Does not wait: if the client is not reading and the
    /// buffer is full, the trailers are lost and the client sees the stream end without a
    /// status (an error on its side). Closing the channel also ends any other sender.
    pub fn finish(mut self, status: Status) {
        let mut trailers = HeaderMap::new();
        status.write_to(&mut trailers);
        if self.tx.try_send(Frame::trailers(trailers)).is_err() {
            tracing::debug!("gRPC stream ended without its trailers: client not reading");
        }
        self.tx.close_channel();
    }
}

/// Sends one message from a helper task (see [`Responder::sender`]); false if the client is
/// gone.
pub async fn send_on<M: prost::Message>(tx: &mut mpsc::Sender<Frame<Bytes>>, msg: &M) -> bool {
    let frame = Frame::data(encode(msg));
    if poll_fn(|cx| tx.poll_ready(cx)).await.is_err() {
        return false;
    }
    tx.start_send(frame).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("a b%c\nü"), "a b%25c%0A%C3%BC");
    }

    #[test]
    fn every_code_round_trips() {
        for c in [GrpcCode::Unauthenticated, GrpcCode::Ok, GrpcCode::Unavailable] {
            assert_eq!(code_of(c as u32), c);
        }
        assert_eq!(code_of(99), GrpcCode::Internal);
    }

    #[test]
    fn encode_prefixes_the_length() {
        let m = pb::GetMessageRequest { id: "ab".into() };
        let b = encode(&m);
        assert_eq!(&b[..5], &[0, 0, 0, 0, 4]);
        let back: pb::GetMessageRequest = decode(b.slice(5..)).unwrap();
        assert_eq!(back.id, "ab");
    }
}
