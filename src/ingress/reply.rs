//! The one table from every refusal to its HTTP answer: status, stable `code`, message,
//! field, Retry-After. docs/errors.md lists the same table for clients.

use crate::history::query::HistoryError;
use crate::pipeline::auth::AuthError;
use crate::pipeline::policy::blacklist::ReloadError;
use crate::pipeline::policy::campaign::CampaignError;
use crate::pipeline::policy::PolicyStatus;
use crate::pipeline::route::RouteError;
use crate::pipeline::submit::SubmitFailure;
use crate::pipeline::Rejection;
use crate::smpp::pdu::CommandStatus;
use crate::smpp::session::SubmitError;
use crate::state::store::StoreError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// Refusals of the HTTP layer itself, before any stage runs.
#[derive(Debug)]
pub enum HttpError {
    NotFound,
    MethodNotAllowed,
    BodyTooLarge {
        limit: usize,
    },
    UnsupportedMediaType,
    BodyRead,
    /// The admin API is off (no `admin.api_key`).
    AdminDisabled,
    AdminUnauthorized,
    /// A reload refused the rules file: file, key and reason.
    InvalidRules(String),
    /// `POST /api/v1/admin/blacklist/reload` changed nothing.
    BlacklistReload(ReloadError),
}

/// An error answer, ready to send.
pub struct ErrorReply {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after_s: Option<u32>,
    /// For errors that happened after the message got an id (SMSC refused, no answer).
    pub id: Option<String>,
    pub command_status: Option<u32>,
    /// The limit that was hit (429): `link:100`, `pool:eu`, `client:acme:minute`, ...
    pub limit: Option<String>,
}

impl ErrorReply {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ErrorReply {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_s: None,
            id: None,
            command_status: None,
            limit: None,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<&'a str>,
}

impl From<HttpError> for ErrorReply {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::NotFound => ErrorReply::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
            HttpError::MethodNotAllowed => ErrorReply::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            ),
            HttpError::BodyTooLarge { limit } => ErrorReply::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body is larger than {limit} bytes"),
            ),
            HttpError::UnsupportedMediaType => ErrorReply::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be application/json",
            ),
            HttpError::AdminDisabled => {
                ErrorReply::new(StatusCode::FORBIDDEN, "admin_disabled", "the admin API is off: set admin.api_key")
            }
            HttpError::AdminUnauthorized => {
                ErrorReply::new(StatusCode::UNAUTHORIZED, "unauthorized", "admin API: invalid or missing admin key")
            }
            HttpError::InvalidRules(reason) => ErrorReply::new(
                StatusCode::BAD_REQUEST,
                "invalid_rules",
                format!("the rules file was refused; the running rules stay: {reason}"),
            ),
            HttpError::BlacklistReload(ReloadError::NotConfigured) => ErrorReply::new(
                StatusCode::NOT_FOUND,
                "no_blacklist",
                "no blacklist is configured (policy.blacklist_files, policy.blacklist_s3)",
            ),
            HttpError::BlacklistReload(ReloadError::Busy) => ErrorReply::new(
                StatusCode::CONFLICT,
                "reload_in_progress",
                "a blacklist reload is already running; ask again when it is done",
            ),
            HttpError::BlacklistReload(ReloadError::Failed(reason)) => ErrorReply::new(
                StatusCode::BAD_GATEWAY,
                "blacklist_not_reloaded",
                format!("the blacklist could not be loaded; the previous list stays: {reason}"),
            ),
            HttpError::BodyRead => {
                ErrorReply::new(StatusCode::BAD_REQUEST, "invalid_body", "request body could not be read")
            }
        }
    }
}

impl From<HistoryError> for ErrorReply {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::Disabled => ErrorReply::new(
                StatusCode::NOT_FOUND,
                "history_disabled",
                "message history is off: configure [history] with a PostgreSQL postgres_url",
            ),
            HistoryError::InvalidParameter { field, message } => ErrorReply {
                field: Some(field.into()),
                ..ErrorReply::new(StatusCode::BAD_REQUEST, "invalid_parameter", format!("`{field}` {message}"))
            },
            HistoryError::Forbidden => ErrorReply {
                field: Some("client".into()),
                ..ErrorReply::new(StatusCode::FORBIDDEN, "history_forbidden", "a client key sees its own history only")
            },
            // The reason is logged, not sent: it names hosts and database errors.
            HistoryError::Unavailable(_) => ErrorReply {
                retry_after_s: Some(1),
                ..ErrorReply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "history_unavailable",
                    "history is unavailable: PostgreSQL did not answer; retry later",
                )
            },
            HistoryError::Busy => ErrorReply {
                retry_after_s: Some(1),
                ..ErrorReply::new(StatusCode::SERVICE_UNAVAILABLE, "history_busy", "too many history queries waiting")
            },
        }
    }
}

impl From<Rejection> for ErrorReply {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Parse(e) => {
                ErrorReply { field: e.field, ..ErrorReply::new(StatusCode::BAD_REQUEST, e.code, e.message) }
            }
            Rejection::Campaign(e) => campaign_error(e),
            Rejection::Auth(e) => ErrorReply::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                match e {
                    AuthError::Missing => "missing Authorization: Bearer <api key>",
                    AuthError::Malformed => "Authorization must be `Bearer <api key>`",
                    AuthError::UnknownKey => "invalid API key",
                },
            ),
            Rejection::Route(RouteError::UnknownLink(l)) => ErrorReply {
                field: Some("link".into()),
                ..ErrorReply::new(StatusCode::NOT_FOUND, "unknown_link", format!("no link named `{l}`"))
            },
            Rejection::Route(RouteError::UnknownPool(p)) => ErrorReply {
                field: Some("pool".into()),
                ..ErrorReply::new(StatusCode::NOT_FOUND, "unknown_pool", format!("no pool named `{p}`"))
            },
            Rejection::Route(RouteError::NoRoute) => ErrorReply {
                field: Some("to".into()),
                ..ErrorReply::new(
                    StatusCode::NOT_FOUND,
                    "no_route",
                    "no `link` or `pool` given and no route of smpp_rules.toml matches this destination",
                )
            },
            Rejection::Route(RouteError::PoolUnavailable(p)) => ErrorReply {
                retry_after_s: Some(1),
                ..ErrorReply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "pool_unavailable",
                    format!("every link of pool `{p}` is down or has its windows full"),
                )
            },
            Rejection::Limited(l) => ErrorReply {
                retry_after_s: Some(u32::try_from(l.retry_after_secs()).unwrap_or(u32::MAX)),
                limit: Some(l.key.to_string()),
                ..ErrorReply::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("over the {:?} limit `{}`; retry after {} s", l.layer, l.key, l.retry_after_secs()),
                )
            },
            Rejection::Policy(p) => ErrorReply {
                id: p.id.map(|id| id.to_string()),
                ..ErrorReply::new(StatusCode::FORBIDDEN, p.status.as_str(), policy_message(p.status))
            },
            Rejection::NotSubmitted(f) => not_submitted(f),
            Rejection::SmscRejected { id, status }
                if status == CommandStatus::RTHROTTLED || status == CommandStatus::RMSGQFUL =>
            {
                ErrorReply {
                    id: Some(id.to_string()),
                    command_status: Some(status.0),
                    retry_after_s: Some(1),
                    ..ErrorReply::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "smsc_throttled",
                        format!(
                            "the SMSC is throttling this link ({status}); the message was not accepted, retry later"
                        ),
                    )
                }
            }
            Rejection::SmscRejected { id, status } => ErrorReply {
                id: Some(id.to_string()),
                command_status: Some(status.0),
                ..ErrorReply::new(
                    StatusCode::BAD_GATEWAY,
                    "smsc_rejected",
                    format!("the SMSC refused the message: {status}"),
                )
            },
            Rejection::SmscTimeout { id } => ErrorReply {
                id: Some(id.to_string()),
                ..ErrorReply::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "smsc_timeout",
                    "the SMSC did not answer in time; the outcome is unknown and the message is not retried",
                )
            },
            Rejection::State(StoreError::Busy) => ErrorReply {
                retry_after_s: Some(1),
                ..ErrorReply::new(StatusCode::SERVICE_UNAVAILABLE, "state_busy", "the state store is saturated")
            },
            Rejection::State(StoreError::Down) => ErrorReply {
                retry_after_s: Some(1),
                ..ErrorReply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "state_down",
                    "the state store is unreachable; the message was not sent",
                )
            },
            Rejection::State(e) => ErrorReply {
                retry_after_s: Some(1),
                ..ErrorReply::new(StatusCode::SERVICE_UNAVAILABLE, "state_unavailable", e.to_string())
            },
            Rejection::BadMessageId => ErrorReply {
                field: Some("id".into()),
                ..ErrorReply::new(StatusCode::BAD_REQUEST, "invalid_id", "an id is 16 hex digits")
            },
            Rejection::MessageNotFound => {
                ErrorReply::new(StatusCode::NOT_FOUND, "message_not_found", "no such message")
            }
            Rejection::InboundNotFound => {
                ErrorReply::new(StatusCode::NOT_FOUND, "inbound_not_found", "no such inbound message")
            }
        }
    }
}

fn campaign_error(e: CampaignError) -> ErrorReply {
    match e {
        CampaignError::Invalid { field, message } => {
            ErrorReply { field: Some(field), ..ErrorReply::new(StatusCode::BAD_REQUEST, "invalid_campaign", message) }
        }
        CampaignError::NotFound => ErrorReply::new(StatusCode::NOT_FOUND, "campaign_not_found", "no such campaign"),
        CampaignError::State { status } => ErrorReply::new(
            StatusCode::CONFLICT,
            "campaign_state",
            format!("the campaign is `{status}`: not possible in that state"),
        ),
        CampaignError::Unavailable(reason) => ErrorReply {
            retry_after_s: Some(1),
            ..ErrorReply::new(StatusCode::SERVICE_UNAVAILABLE, "campaigns_unavailable", reason)
        },
    }
}

fn policy_message(s: PolicyStatus) -> &'static str {
    match s {
        PolicyStatus::UnregisteredSender => "`from` is not a sender registered for this client",
        PolicyStatus::Blacklist => "the destination number is blacklisted",
        PolicyStatus::Duplicate => "the same text went to this number within the duplicate window",
        PolicyStatus::DailyCp => "this number has had its daily cap of messages (calendar day in policy.time_zone)",
        PolicyStatus::WeeklyCp => {
            "this number has had its weekly cap of messages (calendar week, Monday to Sunday, in policy.time_zone)"
        }
        PolicyStatus::NotInCampaign => {
            "the campaign holds no reservation for this number (not listed, refused at build, cancelled, or not built)"
        }
        PolicyStatus::AlreadySent => "the campaign already sent a message to this number",
    }
}

fn not_submitted(f: SubmitFailure) -> ErrorReply {
    let unavailable = |code, message: String| ErrorReply {
        retry_after_s: Some(1),
        ..ErrorReply::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    };
    match f {
        SubmitFailure::NoSession(link) => unavailable("no_session", format!("link `{link}` has no bound SMPP session")),
        SubmitFailure::Busy => unavailable("busy", "the shard that owns the session is saturated".into()),
        SubmitFailure::Smpp(SubmitError::WindowFull(d)) => {
            unavailable("window_full", format!("every SMPP window slot stayed busy for {} ms", d.as_millis()))
        }
        SubmitFailure::Smpp(SubmitError::Paced(d)) => unavailable(
            "paced",
            format!(
                "the link's sessions are slowed down after SMSC throttling; no send slot within {} ms",
                d.as_millis()
            ),
        ),
        SubmitFailure::Smpp(e) => unavailable("no_session", e.to_string()),
    }
}

/// Serialises the error body and sets the headers.
pub fn error_response(e: ErrorReply) -> Response<Full<Bytes>> {
    let body = ErrorBody {
        error: ErrorFields {
            code: e.code,
            message: &e.message,
            field: e.field.as_deref(),
            id: e.id.as_deref(),
            command_status: e.command_status,
            retry_after_s: e.retry_after_s,
            limit: e.limit.as_deref(),
        },
    };
    let mut resp = json_response(e.status, &body);
    if let Some(s) = e.retry_after_s {
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    if e.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    // Serialising our own plain structs cannot fail; fall back to an empty object regardless.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

// === gRPC ===

/// The gRPC status codes smsgate answers with (grpc/doc/statuscodes.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// The gRPC answer to a refusal.
pub struct GrpcReply {
    pub code: GrpcCode,
    /// The retry delay to the millisecond where the refusal knows it (rate limits); else
    /// `reply.retry_after_s` in ms.
    pub retry_after_ms: Option<u64>,
    /// The same facts the HTTP answer carries (message, stable `code`, field, id, limit, SMPP
    /// command_status), which the gRPC ingress sends as `grpc-message` and trailers.
    pub reply: ErrorReply,
}

/// One table: the HTTP mapping above gives the facts, this match only picks the gRPC code.
/// No wildcard arm: a new refusal must pick one.
pub fn grpc_status(r: Rejection) -> GrpcReply {
    let precise_ms = match &r {
        Rejection::Limited(l) => Some(u64::try_from(l.retry_after.as_millis()).unwrap_or(u64::MAX).max(1)),
        _ => None,
    };
    let code = match &r {
        Rejection::Parse(_) | Rejection::BadMessageId => GrpcCode::InvalidArgument,
        Rejection::Auth(_) => GrpcCode::Unauthenticated,
        Rejection::Route(RouteError::UnknownLink(_) | RouteError::UnknownPool(_) | RouteError::NoRoute)
        | Rejection::MessageNotFound
        | Rejection::InboundNotFound => GrpcCode::NotFound,
        Rejection::Route(RouteError::PoolUnavailable(_)) | Rejection::NotSubmitted(_) | Rejection::State(_) => {
            GrpcCode::Unavailable
        }
        // The SMSC's own rate limit: retry after the delay.
        Rejection::SmscRejected { status, .. }
            if *status == CommandStatus::RTHROTTLED || *status == CommandStatus::RMSGQFUL =>
        {
            GrpcCode::ResourceExhausted
        }
        // The SMSC refused it: the record is kept as `rejected`; resending the same message
        // unchanged would get the same answer. `smpp-command-status` says why.
        Rejection::SmscRejected { .. } => GrpcCode::FailedPrecondition,
        Rejection::SmscTimeout { .. } => GrpcCode::DeadlineExceeded,
        Rejection::Limited(_) => GrpcCode::ResourceExhausted,
        // A business rule refused it; the same message would be refused again.
        Rejection::Policy(_) => GrpcCode::FailedPrecondition,
        Rejection::Campaign(CampaignError::Invalid { .. }) => GrpcCode::InvalidArgument,
        Rejection::Campaign(CampaignError::NotFound) => GrpcCode::NotFound,
        Rejection::Campaign(CampaignError::State { .. }) => GrpcCode::FailedPrecondition,
        Rejection::Campaign(CampaignError::Unavailable(_)) => GrpcCode::Unavailable,
    };
    let reply = ErrorReply::from(r);
    let retry_after_ms = precise_ms.or(reply.retry_after_s.map(|s| u64::from(s) * 1000));
    GrpcReply { code, retry_after_ms, reply }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `state_down` is only reachable with a remote store (tests/aerospike_outage.rs shows it over
    /// HTTP against a real server); the table row is checked here for every build.
    #[test]
    fn an_unreachable_state_store_is_503_state_down_and_retryable() {
        let http = ErrorReply::from(Rejection::State(StoreError::Down));
        assert_eq!(
            (http.status, http.code, http.retry_after_s),
            (StatusCode::SERVICE_UNAVAILABLE, "state_down", Some(1))
        );
        assert!(http.message.contains("not sent"), "{}", http.message);
        let grpc = grpc_status(Rejection::State(StoreError::Down));
        assert!(matches!(grpc.code, GrpcCode::Unavailable));
        assert_eq!((grpc.reply.code, grpc.retry_after_ms), ("state_down", Some(1_000)));
    }
}
