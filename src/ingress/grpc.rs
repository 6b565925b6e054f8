//! The gRPC API (`proto/smsgate.proto`, service `smsgate.v1.Gateway`) on the same port and
//! connections as the HTTP API: HTTP/2 (cleartext, prior knowledge) requests whose
//! content-type is `application/grpc` come here from `http::route`.
//!
//! gRPC is done by hand over hyper (no tonic: it needs tokio): `wire` frames messages and
//! builds responses with trailers, `service` runs the five calls on the pipeline, `convert`
//! maps protobuf to and from the pipeline's types. Errors come from `reply::grpc_status`, the
//! one error table. docs/grpc.md is the client's view.

pub mod convert;
pub mod service;
pub mod wire;

/// The prost types generated from `proto/smsgate.proto` by build.rs.
#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/smsgate.v1.rs"));
}

use crate::notify::stream::{ShardInbound, ShardReceipts};
use crate::pipeline::Pipeline;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response};
use shards::Shutdown;
use std::rc::Rc;
use wire::GrpcBody;

/// The body of every answer on the shared port: JSON for HTTP, framed messages for gRPC.
pub type ResponseBody = Either<Full<Bytes>, GrpcBody>;

/// Largest request message, in bytes (gRPC's usual default). A batch of 1,000 messages of
/// 160 characters is ~250 KiB.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Most messages in one SubmitBatch call.
pub const MAX_BATCH: usize = 1000;

/// Messages of one SubmitBatch or SubmitStream call submitted at once; a stream reads no
/// further request until one of them has its result sent. Matches one session's SMPP window.
pub const IN_FLIGHT: usize = 256;

/// What the gRPC calls of one shard use.
pub struct GrpcShard {
    pub pipeline: Rc<Pipeline>,
    pub receipts: ShardReceipts,
    pub inbound: ShardInbound,
    /// Long-lived streams end with UNAVAILABLE when it fires, so the connection can drain.
    pub shutdown: Shutdown,
}

/// True for a request `http::route` should hand to [`serve`].
pub fn is_grpc(req: &Request<Incoming>) -> bool {
    req.headers().get(CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// Answers one gRPC call.
pub async fn serve(req: Request<Incoming>, shard: &Rc<GrpcShard>) -> Response<ResponseBody> {
    service::call(req, shard).await.map(Either::Right)
}
