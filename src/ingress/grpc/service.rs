//! The six calls of `smsgate.v1.Gateway`, each a function from a request to a response.
//!
//! Every submit runs in its own detached task: once a message is handed to the SMSC its
//! record is kept even if the client cancels the call or resets the stream.

use super::convert;
use super::pb;
use super::wire::{self, send_on, trailers_only, MessageReader, Responder, Status, Stopped};
use super::{GrpcShard, IN_FLIGHT, MAX_BATCH, MAX_MESSAGE_BYTES};
use crate::ids::ClientId;
use crate::ingress::reply::GrpcCode;
use crate::notify::stream::{Event, Notice, Subscription};
use crate::pipeline::{parse, Rejection};
use futures_lite::future::FutureExt;
use glommio::sync::Semaphore;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, Version};
use std::rc::Rc;
use std::time::Duration;
use wire::GrpcBody;

const SERVICE: &str = "/smsgate.v1.Gateway/";

/// After shutdown fires, how long a stream waits for its in-flight submits' results.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Call {
    Submit,
    SubmitBatch,
    SubmitStream,
    GetMessage,
    WatchReceipts,
    WatchInbound,
}

/// Checks the call's framing headers and credentials, then runs it.
pub async fn call(req: Request<Incoming>, shard: &Rc<GrpcShard>) -> Response<GrpcBody> {
    let call = match req.uri().path().strip_prefix(SERVICE) {
        Some("Submit") => Call::Submit,
        Some("SubmitBatch") => Call::SubmitBatch,
        Some("SubmitStream") => Call::SubmitStream,
        Some("GetMessage") => Call::GetMessage,
        Some("WatchReceipts") => Call::WatchReceipts,
        Some("WatchInbound") => Call::WatchInbound,
        _ => return trailers_only(Status::new(GrpcCode::Unimplemented, format!("no method {}", req.uri().path()))),
    };
    if let Err(s) = check_framing(&req) {
        return trailers_only(s);
    }
    let auth = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    let client = match shard.pipeline.authenticate(auth) {
        Ok(c) => c,
        Err(r) => return trailers_only(Status::from_rejection(r)),
    };
    let mut reader = MessageReader::new(req.into_body(), MAX_MESSAGE_BYTES);
    match call {
        Call::Submit => wire::result(submit(shard, client, &mut reader).await),
        Call::SubmitBatch => wire::result(submit_batch(shard, client, &mut reader).await),
        Call::GetMessage => wire::result(get_message(shard, client, &mut reader).await),
        Call::SubmitStream => {
            let (resp, out) = wire::streaming(&shard.shutdown);
            let shard = shard.clone();
            glommio::spawn_local(submit_stream(shard, client, reader, out)).detach();
            resp
        }
        Call::WatchReceipts => {
            if let Err(s) = reader.unary::<pb::WatchReceiptsRequest>().await {
                return trailers_only(s);
            }
            // Subscribed before the headers go out: a client that has the headers is watching.
            let sub = shard.receipts.subscribe(client);
            let (resp, out) = wire::streaming(&shard.shutdown);
            glommio::spawn_local(watch(sub, out, |missed, e| pb::WatchReceiptsResponse {
                missed,
                receipt: e.map(convert::receipt),
            }))
            .detach();
            resp
        }
        Call::WatchInbound => {
            if let Err(s) = reader.unary::<pb::WatchInboundRequest>().await {
                return trailers_only(s);
            }
            let sub = shard.inbound.subscribe(client);
            let (resp, out) = wire::streaming(&shard.shutdown);
            glommio::spawn_local(watch(sub, out, |missed, e| pb::WatchInboundResponse {
                missed,
                message: e.map(|e| convert::inbound(&e.message)),
            }))
            .detach();
            resp
        }
    }
}

/// POST over HTTP/2, protobuf, identity encoding.
fn check_framing(req: &Request<Incoming>) -> Result<(), Status> {
    if req.method() != Method::POST {
        return Err(Status::new(GrpcCode::Unimplemented, "gRPC calls are POST"));
    }
    if req.version() != Version::HTTP_2 {
        return Err(Status::new(
            GrpcCode::Unimplemented,
            "gRPC needs HTTP/2 (cleartext, prior knowledge, on this port)",
        ));
    }
    let ct = req.headers().get(hyper::header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or_default();
    if ct != b"application/grpc" && ct != b"application/grpc+proto" {
        return Err(Status::new(GrpcCode::Unimplemented, "only application/grpc (protobuf) is served"));
    }
    let encoding = req.headers().get("grpc-encoding").map(|v| v.as_bytes());
    if encoding.is_some_and(|e| e != b"identity") {
        return Err(Status::new(GrpcCode::Unimplemented, "only grpc-encoding identity is served (no compression)"));
    }
    Ok(())
}

// === Submit, SubmitBatch ===

async fn submit(
    shard: &Rc<GrpcShard>,
    client: ClientId,
    reader: &mut MessageReader,
) -> Result<pb::SubmitResponse, Status> {
    let req: pb::SubmitRequest = reader.unary().await?;
    let task = glommio::spawn_local(submit_task(shard.clone(), client, req)).detach();
    match task.await {
        Some(Ok(s)) => Ok(s),
        Some(Err(r)) => Err(Status::from_rejection(r)),
        None => Err(Status::new(GrpcCode::Internal, "the submit task was lost")),
    }
}

/// Stages 1 and 3-8 for one message (the call authenticated once).
async fn submit_task(
    shard: Rc<GrpcShard>,
    client: ClientId,
    req: pb::SubmitRequest,
) -> Result<pb::SubmitResponse, Rejection> {
    let req = parse::validate(convert::fields(req)?)?;
    let submitted = shard.pipeline.submit(client, req).await?;
    Ok(convert::submitted(submitted))
}

fn result(r: Result<pb::SubmitResponse, Rejection>) -> pb::SubmitResult {
    use pb::submit_result::Outcome;
    pb::SubmitResult {
        outcome: Some(match r {
            Ok(s) => Outcome::Accepted(s),
            Err(r) => Outcome::Refused(wire::refusal(r)),
        }),
    }
}

async fn submit_batch(
    shard: &Rc<GrpcShard>,
    client: ClientId,
    reader: &mut MessageReader,
) -> Result<pb::SubmitBatchResponse, Status> {
    let batch: pb::SubmitBatchRequest = reader.unary().await?;
    let n = batch.messages.len();
    if n == 0 || n > MAX_BATCH {
        let mut s = Status::new(
            GrpcCode::InvalidArgument,
            format!("`messages` holds {n} messages; a batch holds 1 to {MAX_BATCH}"),
        );
        s.set("smsgate-field", "messages");
        s.set("smsgate-code", "invalid_batch_size");
        return Err(s);
    }
    let slots = Rc::new(Semaphore::new(IN_FLIGHT as u64));
    let mut tasks = Vec::with_capacity(n);
    for m in batch.messages {
        let permit =
            slots.acquire_static_permit(1).await.map_err(|e| Status::new(GrpcCode::Internal, e.to_string()))?;
        let (shard, client) = (shard.clone(), client.clone());
        tasks.push(
            glommio::spawn_local(async move {
                let r = submit_task(shard, client, m).await;
                drop(permit);
                r
            })
            .detach(),
        );
    }
    let mut results = Vec::with_capacity(n);
    for t in tasks {
        results.push(match t.await {
            Some(r) => result(r),
            None => pb::SubmitResult {
                outcome: Some(pb::submit_result::Outcome::Refused(pb::Refusal {
                    grpc_code: GrpcCode::Internal as u32,
                    code: "internal".into(),
                    message: "the submit task was lost".into(),
                    ..Default::default()
                })),
            },
        });
    }
    Ok(pb::SubmitBatchResponse { results })
}

// === SubmitStream ===

enum Step<T> {
    Go(T),
    Stop(Stopped),
}

async fn submit_stream(shard: Rc<GrpcShard>, client: ClientId, mut reader: MessageReader, mut out: Responder) {
    let slots = Rc::new(Semaphore::new(IN_FLIGHT as u64));
    let end = loop {
        let slot = async { Step::Go(slots.acquire_static_permit(1).await) }
            .or(async { Step::Stop(out.stopped().await) })
            .await;
        let permit = match slot {
            Step::Go(Ok(p)) => p,
            Step::Go(Err(e)) => break Err(Status::new(GrpcCode::Internal, e.to_string())),
            Step::Stop(s) => break Ok(Some(s)),
        };
        let next = async { Step::Go(reader.next().await) }.or(async { Step::Stop(out.stopped().await) }).await;
        let bytes = match next {
            Step::Go(Ok(Some(b))) => b,
            Step::Go(Ok(None)) => break Ok(None),
            Step::Go(Err(s)) => break Err(s),
            Step::Stop(s) => break Ok(Some(s)),
        };
        let req: pb::SubmitStreamRequest = match wire::decode(bytes) {
            Ok(r) => r,
            Err(s) => break Err(s),
        };
        let correlation_id = req.correlation_id;
        let (shard, client, mut tx) = (shard.clone(), client.clone(), out.sender());
        glommio::spawn_local(async move {
            let r = match req.message {
                Some(m) => submit_task(shard, client, m).await,
                None => Err(Rejection::Parse(parse::ParseError {
                    code: "missing_field",
                    field: Some("message".into()),
                    message: "`message` is required".into(),
                })),
            };
            let answer = pb::SubmitStreamResponse { correlation_id, result: Some(result(r)) };
            // False when the client is gone: its result is in the state store regardless.
            send_on(&mut tx, &answer).await;
            drop(permit);
        })
        .detach();
    };
    let status = match end {
        Ok(Some(Stopped::ClientGone)) => return,
        Ok(Some(Stopped::Shutdown)) => Status::new(GrpcCode::Unavailable, "the server is shutting down"),
        Ok(None) => Status::ok(),
        Err(s) => s,
    };
    // Every result before the status: wait until all slots are free again.
    let all = IN_FLIGHT as u64;
    let drained = async { Step::Go(slots.acquire(all).await) }.or(async { Step::Stop(out.stopped().await) }).await;
    match drained {
        Step::Go(_) => out.finish(status),
        Step::Stop(Stopped::ClientGone) => {}
        Step::Stop(Stopped::Shutdown) => {
            let drained = async { slots.acquire(all).await.is_ok() }
                .or(async {
                    glommio::timer::sleep(DRAIN).await;
                    false
                })
                .await;
            if !drained {
                tracing::debug!("gRPC stream ends at shutdown with submits in flight");
            }
            out.finish(Status::new(GrpcCode::Unavailable, "the server is shutting down"));
        }
    }
}

// === GetMessage ===

async fn get_message(
    shard: &Rc<GrpcShard>,
    client: ClientId,
    reader: &mut MessageReader,
) -> Result<pb::Message, Status> {
    let req: pb::GetMessageRequest = reader.unary().await?;
    match shard.pipeline.message(&client, &req.id).await {
        Ok(rec) => Ok(convert::message(rec)),
        Err(r) => Err(Status::from_rejection(r)),
    }
}

// === WatchReceipts, WatchInbound ===

/// Streams a subscription's events until the call ends: `response(missed, event)` makes each
/// answer (`event` is `None` when the answer only reports losses).
async fn watch<E, R>(mut sub: Subscription<E>, mut out: Responder, response: impl Fn(u64, Option<&E>) -> R)
where
    E: Event,
    R: prost::Message,
{
    loop {
        let next = async { Step::Go(sub.next().await) }.or(async { Step::Stop(out.stopped().await) }).await;
        let answer = match next {
            Step::Go(Notice::Event(w)) => response(w.missed, Some(&w.event)),
            Step::Go(Notice::Missed(n)) => response(n, None),
            Step::Stop(s) => break ended(s, out),
        };
        if let Err(s) = out.send(&answer).await {
            break ended(s, out);
        }
    }
}

fn ended(s: Stopped, out: Responder) {
    if s == Stopped::Shutdown {
        out.finish(Status::new(GrpcCode::Unavailable, "the server is shutting down"));
    }
}
