//! The HTTP API on one shard: HTTP/1.1 keep-alive and HTTP/2 (cleartext, prior knowledge) on
//! the shard's own SO_REUSEPORT listener.
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | POST | /api/v1/messages | submit (see `pipeline.rs`) |
//! | GET | /api/v1/messages/{id} | the lifecycle record |
//! | POST | /api/v1/campaigns, /api/v1/campaigns/{id}/build | campaigns (CP1 on-build) |
//! | GET, DELETE | /api/v1/campaigns/{id} | a campaign; cancel it |
//! | GET | /healthz | liveness and bound sessions per link |
//! | GET | /api/v1/dashboard/stats, /api/v1/dashboard/smpp-links, /metrics | docs/metrics.md |
//! | GET | /api/v1/history/messages, /api/v1/history/usage | history on PostgreSQL (`history::query`) |
//! | GET | /dashboard, /dashboard/assets/* | the web dashboard (`observe::web`) |
//! | GET | /api/v1/dashboard/whoami, /api/v1/dashboard/refusals | who a key is; live refusals (SSE) |

use super::grpc::{self, GrpcShard, ResponseBody};
use super::hyper_glommio::{Io, ShardExecutor, ShardTimer};
use super::reply::{error_response, json_response, ErrorReply, HttpError};
use crate::history::query::{self as history_query, Queries, Viewer};
use crate::ids::ClientId;
use crate::observe::{dashboard, feed, web};
use crate::pipeline::policy::{self, blacklist::ReloadHandle};
use crate::pipeline::{Pipeline, Rejection};
use crate::reload::Summary;
use crate::smpp::link::LinkTable;
use bytes::Bytes;
use futures_lite::future::FutureExt;
use glommio::net::TcpListener;
use glommio::sync::Gate;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::server::conn::auto;
use shards::Shutdown;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub struct HttpSettings {
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    /// The history read side (disabled without `[history]`: 404 `history_disabled`).
    pub history: Queries,
    pub admin: Admin,
}

/// What a reload answers: what changed, or why the rules file was refused.
pub type ReloadFuture = Pin<Box<dyn Future<Output = Result<Summary, String>>>>;

/// The admin API (`POST /api/v1/admin/reload`, `POST /api/v1/admin/blacklist/reload`) with
/// `Authorization: Bearer <admin.api_key>`.
pub struct Admin {
    /// None: the admin API is off (403 `admin_disabled`).
    pub api_key: Option<String>,
    /// Reloads smpp_rules.toml on every shard; the summary, or why the file was refused.
    pub reload: Box<dyn Fn() -> ReloadFuture>,
    /// Asks the blacklist thread to load every source now.
    pub blacklist: ReloadHandle,
}

/// The HTTP API on this shard: the accept loop of [`serve_connections`] with smsgate's routes.
pub async fn serve(
    listener: TcpListener,
    pipeline: Rc<Pipeline>,
    settings: Rc<HttpSettings>,
    grpc: Rc<GrpcShard>,
    shutdown: Shutdown,
) {
    let timeout = settings.header_read_timeout;
    serve_connections(listener, timeout, shutdown, move || {
        let (pipeline, settings, grpc) = (pipeline.clone(), settings.clone(), grpc.clone());
        hyper::service::service_fn(move |req| {
            let (pipeline, settings, grpc) = (pipeline.clone(), settings.clone(), grpc.clone());
            async move { Ok::<_, std::convert::Infallible>(route(req, &pipeline, &settings, &grpc).await) }
        })
    })
    .await
}

/// One shard's accept loop for any hyper service (smsgate's API; perf's bare server):
/// HTTP/1.1 keep-alive and h2c on the shard's SO_REUSEPORT listener, TCP_NODELAY on every
/// connection. Accepts until shutdown, then lets every open connection finish its in-flight
/// requests (HTTP/1.1 closes after the current response, HTTP/2 sends GOAWAY) and returns
/// once all have closed.
pub async fn serve_connections<F, S, B>(
    listener: TcpListener,
    header_read_timeout: Duration,
    shutdown: Shutdown,
    make_service: F,
) where
    F: Fn() -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + 'static,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connections = Gate::new();
    let mut builder = auto::Builder::new(ShardExecutor);
    builder.http1().timer(ShardTimer).header_read_timeout(header_read_timeout).keep_alive(true);
    builder.http2().timer(ShardTimer);
    let builder = Rc::new(builder);
    loop {
        let accepted = async { Some(listener.accept().await) }.or(async {
            shutdown.wait().await;
            None
        });
        let stream = match accepted.await {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on a client connection");
        }
        let (service, builder, shutdown) = (make_service(), builder.clone(), shutdown.clone());
        let spawned = connections.spawn(async move {
            let conn = builder.serve_connection(Io(stream), service);
            let mut conn = std::pin::pin!(conn);
            let finished = async { Some(conn.as_mut().await) }.or(async {
                shutdown.wait().await;
                None
            });
            let result = match finished.await {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
        });
        match spawned {
            // A dropped glommio task is cancelled: detach it, the gate still tracks it.
            Ok(task) => {
                task.detach();
            }
            Err(e) => tracing::warn!(error = %e, "could not start a connection task"),
        }
    }
    drop(listener);
    if let Err(e) = connections.close().await {
        tracing::warn!(error = %e, "draining client connections failed");
    }
}

async fn route(
    req: Request<Incoming>,
    pipeline: &Rc<Pipeline>,
    settings: &HttpSettings,
    grpc: &Rc<GrpcShard>,
) -> Response<ResponseBody> {
    if grpc::is_grpc(&req) {
        return grpc::serve(req, grpc).await;
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    if let (&Method::GET, ["api", "v1", "dashboard", "refusals"]) = (req.method(), segments.as_slice()) {
        return match viewer(&req, pipeline, settings) {
            Ok(viewer) => live_refusals(viewer, &grpc.shutdown),
            Err(e) => error_response(e.into()).map(Either::Left),
        };
    }
    let result = match (req.method(), segments.as_slice()) {
        (&Method::POST, ["api", "v1", "messages"]) => submit(req, pipeline, settings).await,
        (&Method::GET, ["api", "v1", "messages", id]) => Ok(found(match authenticate(&req, pipeline) {
            Ok(client) => pipeline.message(&client, id).await,
            Err(r) => Err(r),
        })),
        (&Method::GET, ["api", "v1", "inbound", id]) => Ok(found(match authenticate(&req, pipeline) {
            Ok(client) => pipeline.inbound_message(&client, id).await,
            Err(r) => Err(r),
        })),
        (&Method::POST, ["api", "v1", "campaigns"]) => create_campaign(req, pipeline, settings).await,
        (&Method::GET, ["api", "v1", "campaigns", id]) => campaign(&req, pipeline, id, CampaignCall::Get).await,
        (&Method::POST, ["api", "v1", "campaigns", id, "build"]) => {
            campaign(&req, pipeline, id, CampaignCall::Build).await
        }
        (&Method::DELETE, ["api", "v1", "campaigns", id]) => campaign(&req, pipeline, id, CampaignCall::Cancel).await,
        (&Method::POST, ["api", "v1", "admin", "reload"]) => admin_reload(&req, &settings.admin).await,
        (&Method::POST, ["api", "v1", "admin", "blacklist", "reload"]) => blacklist_reload(&req, &settings.admin).await,
        (&Method::GET, ["healthz"]) => Ok(json_response(StatusCode::OK, &health(pipeline))),
        (&Method::GET, ["api", "v1", "dashboard", "stats"]) => Ok(dashboard::stats_response(pipeline.limit_stats())),
        (&Method::GET, ["api", "v1", "dashboard", "smpp-links"]) => Ok({
            let router = pipeline.router();
            dashboard::links_response(router.links(), router.pools())
        }),
        (&Method::GET, ["dashboard", rest @ ..]) => web::asset(rest).ok_or_else(|| HttpError::NotFound.into()),
        (&Method::GET, ["api", "v1", "dashboard", "whoami"]) => {
            viewer(&req, pipeline, settings).map_err(Into::into).map(|v| {
                let body = match v {
                    Viewer::Admin => serde_json::json!({"role": "admin"}),
                    Viewer::Client(c) => serde_json::json!({"role": "client", "client": c}),
                };
                json_response(StatusCode::OK, &body)
            })
        }
        (&Method::GET, ["api", "v1", "history", kind @ ("messages" | "usage")]) => {
            history(&req, kind, pipeline, settings).await
        }
        (&Method::GET, ["metrics"]) => Ok(dashboard::metrics_response(&pipeline.links(), pipeline.limit_stats())),
        (_, ["api", "v1", "messages"])
        | (_, ["api", "v1", "messages", _])
        | (_, ["api", "v1", "campaigns"])
        | (_, ["api", "v1", "campaigns", _])
        | (_, ["api", "v1", "campaigns", _, "build"])
        | (_, ["api", "v1", "inbound", _])
        | (_, ["healthz"]) => Err(HttpError::MethodNotAllowed.into()),
        _ => Err(HttpError::NotFound.into()),
    };
    result.unwrap_or_else(error_response).map(Either::Left)
}

fn authenticate(req: &Request<Incoming>, pipeline: &Pipeline) -> Result<ClientId, Rejection> {
    pipeline.authenticate(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))
}

/// A read's answer: 200 with the JSON, or the error's answer.
fn found<T: serde::Serialize>(read: Result<T, Rejection>) -> Response<Full<Bytes>> {
    match read {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(r) => error_response(r.into()),
    }
}

/// `POST /api/v1/admin/reload`: 200 with what changed, or 400 `invalid_rules` naming file, key
/// and reason (the running rules stay).
async fn admin_reload(req: &Request<Incoming>, admin: &Admin) -> Result<Response<Full<Bytes>>, ErrorReply> {
    admin_only(req, admin)?;
    match (admin.reload)().await {
        Ok(summary) => Ok(json_response(StatusCode::OK, &serde_json::json!({"status": "reloaded", "links": summary}))),
        Err(reason) => Err(HttpError::InvalidRules(reason).into()),
    }
}

/// `POST /api/v1/admin/blacklist/reload`: every blacklist source loaded now; 200 with the
/// count, or why the previous list stays.
async fn blacklist_reload(req: &Request<Incoming>, admin: &Admin) -> Result<Response<Full<Bytes>>, ErrorReply> {
    admin_only(req, admin)?;
    match admin.blacklist.reload().await {
        Ok(loaded) => {
            Ok(json_response(StatusCode::OK, &serde_json::json!({"status": "reloaded", "blacklist": loaded})))
        }
        Err(e) => Err(HttpError::BlacklistReload(e).into()),
    }
}

/// The admin API is on and the request carries its key.
fn admin_only(req: &Request<Incoming>, admin: &Admin) -> Result<(), HttpError> {
    let Some(key) = &admin.api_key else {
        return Err(HttpError::AdminDisabled);
    };
    let given = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.map(str::trim) != Some(key.as_str()) {
        return Err(HttpError::AdminUnauthorized);
    }
    Ok(())
}

/// Who a dashboard or history request comes from: the admin key, or a client's key.
fn viewer(req: &Request<Incoming>, pipeline: &Pipeline, settings: &HttpSettings) -> Result<Viewer, Rejection> {
    let auth = req.headers().get(AUTHORIZATION);
    let bearer = auth.and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    match (&settings.admin.api_key, bearer) {
        (Some(admin), Some(given)) if admin == given => Ok(Viewer::Admin),
        _ => Ok(Viewer::Client(pipeline.authenticate(auth.map(|v| v.as_bytes()))?)),
    }
}

/// How often a live feed looks for new refusals (the shards publish every 250 ms).
const FEED_POLL: Duration = Duration::from_millis(250);
/// A comment line this often keeps idle proxies from closing the stream.
const FEED_KEEPALIVE: Duration = Duration::from_secs(15);

/// `GET /api/v1/dashboard/refusals`: Server-Sent Events, one `refusal` event per refusal the
/// viewer may see (the admin: all; a client: its own), starting with the last minute's.
fn live_refusals(viewer: Viewer, shutdown: &Shutdown) -> Response<ResponseBody> {
    let (mut resp, mut responder) = grpc::wire::streaming(shutdown);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.remove("grpc-accept-encoding");
    let visible = move |i: &feed::FeedItem| match &viewer {
        Viewer::Admin => true,
        Viewer::Client(c) => i.client.as_ref() == Some(c),
    };
    glommio::spawn_local(async move {
        let mut cursor = feed::Cursor::default();
        let recent = history_query::now_ms().saturating_sub(60_000);
        let mut pending: Vec<feed::FeedItem> = feed::since(&mut cursor, |i| i.at_ms >= recent && visible(i));
        let mut quiet_since = Instant::now();
        let mut out = String::from(": smsgate refusals\n\n");
        loop {
            for item in pending.drain(..) {
                out.push_str("event: refusal\ndata: ");
                out.push_str(&serde_json::to_string(&item).unwrap_or_else(|_| "{}".into()));
                out.push_str("\n\n");
            }
            if out.is_empty() && quiet_since.elapsed() >= FEED_KEEPALIVE {
                out.push_str(": keep-alive\n\n");
            }
            if !out.is_empty() {
                quiet_since = Instant::now();
                if responder.send_frame(Frame::data(Bytes::from(std::mem::take(&mut out)))).await.is_err() {
                    return;
                }
            }
            let stopped = async { Some(responder.stopped().await) };
            let tick = async {
                glommio::timer::sleep(FEED_POLL).await;
                None
            };
            if tick.or(stopped).await.is_some() {
                return;
            }
            pending = feed::since(&mut cursor, &visible);
        }
    })
    .detach();
    resp.map(Either::Right)
}

/// `GET /api/v1/history/{messages,usage}`: the admin key sees every client, a client key its
/// own messages only.
async fn history(
    req: &Request<Incoming>,
    kind: &str,
    pipeline: &Pipeline,
    settings: &HttpSettings,
) -> Result<Response<Full<Bytes>>, ErrorReply> {
    let queries = &settings.history;
    if !queries.is_enabled() {
        return Err(history_query::HistoryError::Disabled.into());
    }
    let viewer = viewer(req, pipeline, settings)?;
    let (query, now) = (req.uri().query(), history_query::now_ms());
    let answer = if kind == "messages" {
        queries.messages(history_query::parse_messages(&viewer, query, now, queries.max_page())?).await?
    } else {
        queries.usage(history_query::parse_usage(&viewer, query, now)?).await?
    };
    Ok(json_response(StatusCode::OK, &answer))
}

/// `{"status":"ok","links":{"100":{"sessions":2,"sessions_bound":2}}}`: the process is up; each
/// link says how many of its sessions are bound right now.
fn health(pipeline: &Pipeline) -> serde_json::Value {
    let links: serde_json::Map<String, serde_json::Value> = pipeline
        .links()
        .iter()
        .map(|(link, entry)| {
            let bound = entry.slots.iter().filter(|s| s.is_bound()).count();
            (
                link.to_string(),
                serde_json::json!({"sessions": entry.slots.len(), "sessions_bound": bound, "state": entry.state(LinkTable::now_ms())}),
            )
        })
        .collect();
    serde_json::json!({"status": "ok", "links": links})
}

/// The client of a request's `Authorization`, or the 401 answer.
fn client_of(req: &Request<Incoming>, pipeline: &Pipeline) -> Result<crate::ids::ClientId, Rejection> {
    pipeline.authenticate(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))
}

/// A JSON body (or one without Content-Type) of at most `limit` bytes.
async fn json_body(req: Request<Incoming>, limit: usize) -> Result<(hyper::http::request::Parts, Bytes), ErrorReply> {
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(HttpError::UnsupportedMediaType.into());
        }
    }
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, limit).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            HttpError::BodyTooLarge { limit }
        } else {
            HttpError::BodyRead
        }
    })?;
    Ok((parts, body.to_bytes()))
}

/// What is asked of an existing campaign.
enum CampaignCall {
    Get,
    Build,
    Cancel,
}

/// `GET /api/v1/campaigns/{id}`, `POST .../build`, `DELETE ...`: 200 with the campaign.
async fn campaign(
    req: &Request<Incoming>,
    pipeline: &Pipeline,
    id: &str,
    call: CampaignCall,
) -> Result<Response<Full<Bytes>>, ErrorReply> {
    let client = client_of(req, pipeline)?;
    let answer = match call {
        CampaignCall::Get => pipeline.campaign(&client, id).await.map(|c| json_response(StatusCode::OK, &c)),
        CampaignCall::Build => pipeline.build_campaign(&client, id).await.map(|c| json_response(StatusCode::OK, &c)),
        CampaignCall::Cancel => pipeline.cancel_campaign(&client, id).await.map(|c| json_response(StatusCode::OK, &c)),
    };
    answer.map_err(ErrorReply::from)
}

/// Most bytes of a `POST /api/v1/campaigns` body: every recipient as `"+<15 digits>",`.
const CAMPAIGN_BODY_BYTES: usize = 20 * policy::campaign::MAX_RECIPIENTS + 1024;

/// `POST /api/v1/campaigns`: 201 with the new draft.
async fn create_campaign(
    req: Request<Incoming>,
    pipeline: &Rc<Pipeline>,
    settings: &HttpSettings,
) -> Result<Response<Full<Bytes>>, ErrorReply> {
    let client = client_of(&req, pipeline)?;
    let (_, body) = json_body(req, CAMPAIGN_BODY_BYTES.max(settings.max_body_bytes)).await?;
    let created = pipeline.create_campaign(&client, &body).await.map_err(ErrorReply::from)?;
    Ok(json_response(StatusCode::CREATED, &created))
}

async fn submit(
    req: Request<Incoming>,
    pipeline: &Rc<Pipeline>,
    settings: &HttpSettings,
) -> Result<Response<Full<Bytes>>, ErrorReply> {
    let (parts, body) = json_body(req, settings.max_body_bytes).await?;
    let auth = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes().to_vec());
    // A detached task: if the client goes away mid-request, hyper drops this future, but a
    // message that reached the SMSC must still get its record.
    let pipeline = pipeline.clone();
    let task = glommio::spawn_local(async move { pipeline.submit_json(auth.as_deref(), &body).await }).detach();
    match task.await {
        Some(Ok(submitted)) => Ok(json_response(StatusCode::OK, &submitted)),
        Some(Err(r)) => Err(r.into()),
        None => Err(HttpError::BodyRead.into()),
    }
}
