//! The read side: `GET /api/v1/history/messages` and `GET /api/v1/history/usage`.
//!
//! A shard parses and checks the query string here ([`parse_messages`], [`parse_usage`]; bad
//! input is a 400 naming the parameter and touches nothing), then hands the query to thread
//! "history-query" (its own PostgreSQL connection, so reads never queue behind a write
//! backlog) through a bounded queue, and awaits the answer without blocking.
#![allow(clippy::disallowed_methods)] // the query thread: blocking I/O is its job

use super::config::{Destination, HistoryConfig};
use super::writer::{describe, dest_value, pg_config};
use super::EventId;
use crate::clock::{Clock, SystemClock};
use crate::ids::{ClientId, MessageId, Msisdn};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_lite::future::FutureExt;
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use serde_json::{json, Value};
use std::thread::JoinHandle;
use std::time::Duration;

/// Queries waiting for the query thread; beyond, 503 `history_busy`.
const QUEUE: usize = 64;
/// Default page size of `messages`.
const DEFAULT_LIMIT: u32 = 100;
/// Most buckets one `usage` answer may hold.
const MAX_BUCKETS: u64 = 1_500;
/// Receipts and webhooks of a message are looked for this long after its acceptance.
const MESSAGE_SPAN_MS: i64 = 8 * 86_400_000;
/// Statuses a message can have in history (the `status` filter).
pub const STATUSES: [&str; 12] = [
    "accepted",
    "refused",
    "submitted",
    "rejected",
    "unknown",
    "delivered",
    "undeliverable",
    "expired",
    "deleted",
    "receipt_rejected",
    "received",
    "incomplete",
];

/// Why a history request got no data; `ingress/reply.rs` turns it into the answer.
#[derive(Debug, PartialEq, Eq)]
pub enum HistoryError {
    /// No `[history]` in the configuration (404 `history_disabled`).
    Disabled,
    /// A query parameter is wrong (400 `invalid_parameter`).
    InvalidParameter { field: &'static str, message: String },
    /// A client asked for another client's history (403 `history_forbidden`).
    Forbidden,
    /// PostgreSQL could not answer (503 `history_unavailable`).
    Unavailable(String),
    /// Too many queries waiting (503 `history_busy`).
    Busy,
}

/// Who asks: the admin key sees every client; a client key only its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    Admin,
    Client(ClientId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagesQuery {
    pub client: Option<ClientId>,
    /// E.164 with `+`.
    pub to: Option<String>,
    pub status: Option<&'static str>,
    pub from_ms: u64,
    pub until_ms: u64,
    /// Rows strictly older than this (at_ms, event id), from `next_cursor`.
    pub cursor: Option<(u64, EventId)>,
    pub limit: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    fn ms(self) -> u64 {
        match self {
            Bucket::Minute => 60_000,
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// The range asked for when `from` is not given: 1 h of minutes, 48 h of hours, 30 days.
    fn default_span_ms(self) -> u64 {
        self.ms()
            * match self {
                Bucket::Minute => 60,
                Bucket::Hour => 48,
                Bucket::Day => 30,
            }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    pub client: Option<ClientId>,
    pub bucket: Bucket,
    pub from_ms: u64,
    pub until_ms: u64,
}

// === parsing ===

/// `%XX` decoded; `+` stays `+` (phone numbers have no spaces).
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn invalid(field: &'static str, message: impl Into<String>) -> HistoryError {
    HistoryError::InvalidParameter { field, message: message.into() }
}

/// The query string as (name, value) pairs; a parameter not in `known` or given twice is an
/// error naming it.
fn pairs(query: Option<&str>, known: &[&'static str]) -> Result<Vec<(&'static str, String)>, HistoryError> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let Some(&name) = known.iter().find(|k| **k == name) else {
            return Err(invalid("query", format!("unknown parameter `{}`", decode(name).unwrap_or_default())));
        };
        let value = decode(value).ok_or_else(|| invalid(name, "is not valid percent-encoded UTF-8"))?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(invalid(name, "is given twice"));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn get<'a>(pairs: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

fn millis(pairs: &[(&'static str, String)], name: &'static str) -> Result<Option<u64>, HistoryError> {
    get(pairs, name)
        .map(|v| v.parse::<u64>().map_err(|_| invalid(name, "must be Unix milliseconds (a whole number)")))
        .transpose()
}

/// The client a viewer may see: a client only itself (naming another is 403), the admin
/// whoever it names, or everyone.
fn client_for(viewer: &Viewer, asked: Option<&str>) -> Result<Option<ClientId>, HistoryError> {
    match (viewer, asked) {
        (Viewer::Admin, asked) => Ok(asked.map(ClientId::new)),
        (Viewer::Client(own), None) => Ok(Some(own.clone())),
        (Viewer::Client(own), Some(asked)) if asked == own.as_str() => Ok(Some(own.clone())),
        (Viewer::Client(_), Some(_)) => Err(HistoryError::Forbidden),
    }
}

/// `from`/`until` with their defaults (`until` now, `from` `default_span` before it).
fn range(pairs: &[(&'static str, String)], now_ms: u64, default_span: u64) -> Result<(u64, u64), HistoryError> {
    let until = millis(pairs, "until")?.unwrap_or(now_ms + 1);
    let from = millis(pairs, "from")?.unwrap_or(until.saturating_sub(default_span));
    if from >= until {
        return Err(invalid("from", "must be before `until`"));
    }
    if until > i64::MAX as u64 {
        return Err(invalid("until", "is out of range"));
    }
    Ok((from, until))
}

/// `GET /api/v1/history/messages?client=&to=&status=&from=&until=&cursor=&limit=`.
pub fn parse_messages(
    viewer: &Viewer,
    query: Option<&str>,
    now_ms: u64,
    max_page: u32,
) -> Result<MessagesQuery, HistoryError> {
    let p = pairs(query, &["client", "to", "status", "from", "until", "cursor", "limit"])?;
    let client = client_for(viewer, get(&p, "client"))?;
    let to = get(&p, "to")
        .map(|t| {
            Msisdn::parse_e164(t)
                .map(|m| m.to_string())
                .ok_or_else(|| invalid("to", "must be E.164: + and 8-15 digits (%2B for + in a URL)"))
        })
        .transpose()?;
    let status = get(&p, "status")
        .map(|s| {
            STATUSES
                .iter()
                .copied()
                .find(|k| *k == s)
                .ok_or_else(|| invalid("status", format!("must be one of {}", STATUSES.join(", "))))
        })
        .transpose()?;
    let (from_ms, until_ms) = range(&p, now_ms, 86_400_000)?;
    let cursor = get(&p, "cursor")
        .map(|c| {
            c.split_once('_')
                .and_then(|(at, id)| Some((at.parse::<u64>().ok()?, EventId::parse(id)?)))
                .ok_or_else(|| invalid("cursor", "is not a cursor this endpoint returned"))
        })
        .transpose()?;
    let limit = match get(&p, "limit") {
        None => DEFAULT_LIMIT.min(max_page),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=max_page).contains(l))
            .ok_or_else(|| invalid("limit", format!("must be 1 to {max_page}")))?,
    };
    Ok(MessagesQuery { client, to, status, from_ms, until_ms, cursor, limit })
}

/// `GET /api/v1/history/usage?client=&bucket=minute|hour|day&from=&until=`.
pub fn parse_usage(viewer: &Viewer, query: Option<&str>, now_ms: u64) -> Result<UsageQuery, HistoryError> {
    let p = pairs(query, &["client", "bucket", "from", "until"])?;
    let client = client_for(viewer, get(&p, "client"))?;
    let bucket = match get(&p, "bucket") {
        None | Some("hour") => Bucket::Hour,
        Some("minute") => Bucket::Minute,
        Some("day") => Bucket::Day,
        Some(_) => return Err(invalid("bucket", "must be minute, hour or day")),
    };
    let (from_ms, until_ms) = range(&p, now_ms, bucket.default_span_ms())?;
    if (until_ms - from_ms).div_ceil(bucket.ms()) > MAX_BUCKETS {
        return Err(invalid("from", format!("at most {MAX_BUCKETS} buckets per answer: narrow the range")));
    }
    Ok(UsageQuery { client, bucket, from_ms, until_ms })
}

// === the thread ===

enum Request {
    Messages(MessagesQuery, futures_channel::oneshot::Sender<Result<Value, HistoryError>>),
    Usage(UsageQuery, futures_channel::oneshot::Sender<Result<Value, HistoryError>>),
}

/// The read side as the shards see it; cheap to clone. Disabled without `[history]`.
#[derive(Clone)]
pub struct Queries {
    queue: Option<Sender<Request>>,
    max_page: u32,
    /// How long a shard waits for an answer: connect + statement timeouts and a second.
    /// A PostgreSQL that accepts connections and never answers holds the query thread (the
    /// client library bounds the TCP connect, not the handshake); askers stop waiting here.
    wait: Duration,
}

impl Queries {
    /// History off: every query answers [`HistoryError::Disabled`].
    pub fn disabled() -> Self {
        Queries { queue: None, max_page: 0, wait: Duration::ZERO }
    }

    pub fn max_page(&self) -> u32 {
        self.max_page
    }

    pub fn is_enabled(&self) -> bool {
        self.queue.is_some()
    }

    pub async fn messages(&self, q: MessagesQuery) -> Result<Value, HistoryError> {
        self.ask(|reply| Request::Messages(q, reply)).await
    }

    pub async fn usage(&self, q: UsageQuery) -> Result<Value, HistoryError> {
        self.ask(|reply| Request::Usage(q, reply)).await
    }

    async fn ask(
        &self,
        make: impl FnOnce(futures_channel::oneshot::Sender<Result<Value, HistoryError>>) -> Request,
    ) -> Result<Value, HistoryError> {
        let queue = self.queue.as_ref().ok_or(HistoryError::Disabled)?;
        let (reply, answer) = futures_channel::oneshot::channel();
        match queue.try_send(make(reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(HistoryError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(HistoryError::Unavailable("history is stopping".into())),
        }
        let answered = async { Some(answer.await) }.or(async {
            glommio::timer::sleep(self.wait).await;
            None
        });
        match answered.await {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(HistoryError::Unavailable("history is stopping".into())),
            None => Err(HistoryError::Unavailable("no answer in time".into())),
        }
    }
}

/// The query thread; it ends when every [`Queries`] handle is gone.
pub struct QueryHandle {
    queries: Queries,
    _thread: JoinHandle<()>,
}

impl QueryHandle {
    pub fn start(cfg: &HistoryConfig) -> std::io::Result<QueryHandle> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let reader = Reader { cfg: cfg.clone(), client: None };
        let thread = std::thread::Builder::new().name("history-query".into()).spawn(move || reader.run(rx))?;
        let wait = Duration::from_millis(cfg.connect_timeout_ms + cfg.statement_timeout_ms + 1_000);
        Ok(QueryHandle { queries: Queries { queue: Some(tx), max_page: cfg.max_page, wait }, _thread: thread })
    }

    pub fn queries(&self) -> Queries {
        self.queries.clone()
    }
}

struct Reader {
    cfg: HistoryConfig,
    client: Option<Client>,
}

impl Reader {
    fn run(mut self, requests: Receiver<Request>) {
        for request in requests.iter() {
            match request {
                Request::Messages(q, reply) => {
                    let answer = self.with_client(|c, cfg| messages(c, cfg, &q));
                    let _asker_may_be_gone = reply.send(answer);
                }
                Request::Usage(q, reply) => {
                    let answer = self.with_client(|c, _| usage(c, &q));
                    let _asker_may_be_gone = reply.send(answer);
                }
            }
        }
    }

    fn with_client(
        &mut self,
        f: impl FnOnce(&mut Client, &HistoryConfig) -> Result<Value, postgres::Error>,
    ) -> Result<Value, HistoryError> {
        if self.client.is_none() {
            let connected = pg_config(&self.cfg).and_then(|c| c.connect(NoTls)).map_err(|e| {
                if let Some(suppressed) = crate::observe::events::log_due("", "history_query_connect") {
                    tracing::warn!(error = %describe(&e), suppressed, "history query: PostgreSQL unreachable");
                }
                HistoryError::Unavailable(describe(&e))
            });
            self.client = Some(connected?);
        }
        let Some(client) = self.client.as_mut() else {
            return Err(HistoryError::Unavailable("not connected".into()));
        };
        f(client, &self.cfg).map_err(|e| {
            if e.is_closed() || e.as_db_error().is_none() {
                self.client = None;
            }
            tracing::warn!(error = %describe(&e), "history query failed");
            HistoryError::Unavailable(describe(&e))
        })
    }
}

fn message_id_hex(id: Option<i64>) -> Value {
    id.map_or(Value::Null, |v| Value::String(MessageId(v as u64).to_string()))
}

fn messages(client: &mut Client, cfg: &HistoryConfig, q: &MessagesQuery) -> Result<Value, postgres::Error> {
    let (from, until) = (q.from_ms as i64, q.until_ms as i64);
    let mut params: Vec<Box<dyn ToSql + Sync>> = vec![Box::new(from), Box::new(until), Box::new(MESSAGE_SPAN_MS)];
    let mut filters = String::new();
    let param = |v: Box<dyn ToSql + Sync>, params: &mut Vec<Box<dyn ToSql + Sync>>| {
        params.push(v);
        params.len()
    };
    if let Some(c) = &q.client {
        let n = param(Box::new(c.as_str().to_owned()), &mut params);
        filters.push_str(&format!(" AND e.client = ${n}"));
    }
    if let Some(to) = &q.to {
        let n = param(Box::new(dest_value(cfg, to)), &mut params);
        filters.push_str(&format!(" AND e.dest = ${n}"));
    }
    if let Some((at, id)) = q.cursor {
        let a = param(Box::new(at as i64), &mut params);
        let i = param(Box::new(id.to_string()), &mut params);
        filters.push_str(&format!(" AND (e.at_ms, e.event_id) < (${a}, ${i}::text::uuid)"));
    }
    let status_filter = match q.status {
        Some(s) => {
            let n = param(Box::new(s.to_owned()), &mut params);
            format!(" WHERE m.status = ${n}")
        }
        None => String::new(),
    };
    let limit = param(Box::new(i64::from(q.limit) + 1), &mut params);
    let rank = "CASE x.kind WHEN 'accepted' THEN 0 WHEN 'refused' THEN 0 WHEN 'submitted' THEN 1 WHEN 'receipt' THEN 2 ELSE 3 END";
    let sql = format!(
        "SELECT * FROM (
           SELECT replace(e.event_id::text, '-', '') AS event_id, e.at_ms, e.kind, e.client, e.message_id, e.dest,
                  e.link, e.layer, e.reason, e.segments, e.detail,
                  COALESCE(ev.last_status, e.status) AS status, ev.events::text AS events
           FROM history_events e
           LEFT JOIN LATERAL (
             SELECT (array_agg(x.status ORDER BY x.at_ms DESC, {rank} DESC) FILTER (WHERE x.status IS NOT NULL))[1] AS last_status,
                    json_agg(json_build_object('event', x.kind, 'status', x.status, 'at_ms', x.at_ms,
                                               'link', x.link, 'detail', x.detail) ORDER BY x.at_ms, {rank}) AS events
             FROM history_events x
             WHERE e.message_id IS NOT NULL AND x.message_id = e.message_id
               AND x.at_ms >= e.at_ms - 60000 AND x.at_ms < e.at_ms + $3
           ) ev ON true
           WHERE e.kind IN ('accepted', 'refused', 'mo') AND e.at_ms >= $1 AND e.at_ms < $2{filters}
         ) m{status_filter}
         ORDER BY m.at_ms DESC, m.event_id DESC
         LIMIT ${limit}"
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&sql, &refs)?;
    let hashed = cfg.destination == Destination::Hashed;
    let mut out = Vec::with_capacity(rows.len());
    let mut next_cursor = Value::Null;
    for (i, row) in rows.iter().enumerate() {
        let event_id: String = row.get("event_id");
        let at_ms: i64 = row.get("at_ms");
        if i == q.limit as usize {
            break;
        }
        if i + 1 == q.limit as usize && rows.len() > q.limit as usize {
            next_cursor = Value::String(format!("{at_ms}_{event_id}"));
        }
        let events: Option<String> = row.get("events");
        let events: Value = events.and_then(|e| serde_json::from_str(&e).ok()).unwrap_or(Value::Array(Vec::new()));
        let dest: Option<String> = row.get("dest");
        let mut m = json!({
            "id": message_id_hex(row.get("message_id")),
            "event_id": event_id,
            "at_ms": at_ms,
            "kind": row.get::<_, String>("kind"),
            "client": row.get::<_, Option<String>>("client"),
            "link": row.get::<_, Option<String>>("link"),
            "segments": row.get::<_, i16>("segments"),
            "status": row.get::<_, Option<String>>("status"),
            "layer": row.get::<_, Option<String>>("layer"),
            "reason": row.get::<_, Option<String>>("reason"),
            "events": events,
        });
        m[if hashed { "to_hash" } else { "to" }] = dest.map_or(Value::Null, Value::String);
        out.push(m);
    }
    Ok(json!({"messages": out, "next_cursor": next_cursor}))
}

fn usage(client: &mut Client, q: &UsageQuery) -> Result<Value, postgres::Error> {
    let bucket = q.bucket.ms() as i64;
    let mut params: Vec<Box<dyn ToSql + Sync>> =
        vec![Box::new(bucket), Box::new(q.from_ms as i64), Box::new(q.until_ms as i64)];
    let mut filter = String::new();
    if let Some(c) = &q.client {
        params.push(Box::new(c.as_str().to_owned()));
        filter = format!(" AND client = ${}", params.len());
    }
    let sql = format!(
        "SELECT (at_ms / $1) * $1 AS start_ms,
                count(*) FILTER (WHERE kind = 'accepted') AS accepted,
                COALESCE(sum(segments) FILTER (WHERE kind = 'accepted'), 0)::bigint AS segments,
                count(*) FILTER (WHERE kind = 'refused') AS refused,
                count(*) FILTER (WHERE kind = 'submitted' AND status = 'submitted') AS submitted,
                count(*) FILTER (WHERE kind = 'submitted' AND status <> 'submitted') AS submit_failed,
                count(*) FILTER (WHERE kind = 'receipt' AND status = 'delivered') AS delivered,
                count(*) FILTER (WHERE kind = 'receipt' AND status <> 'delivered') AS undelivered,
                count(*) FILTER (WHERE kind = 'mo') AS mo
         FROM history_events WHERE at_ms >= $2 AND at_ms < $3{filter}
         GROUP BY 1 ORDER BY 1"
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&sql, &refs)?;
    let buckets: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "start_ms": r.get::<_, i64>("start_ms"),
                "accepted": r.get::<_, i64>("accepted"),
                "segments": r.get::<_, i64>("segments"),
                "refused": r.get::<_, i64>("refused"),
                "submitted": r.get::<_, i64>("submitted"),
                "submit_failed": r.get::<_, i64>("submit_failed"),
                "delivered": r.get::<_, i64>("delivered"),
                "undelivered": r.get::<_, i64>("undelivered"),
                "mo": r.get::<_, i64>("mo"),
            })
        })
        .collect();
    Ok(json!({
        "client": q.client.as_ref().map(|c| c.as_str()),
        "bucket": q.bucket.name(),
        "from_ms": q.from_ms,
        "until_ms": q.until_ms,
        "buckets": buckets,
    }))
}

/// Now, for the default ranges.
pub fn now_ms() -> u64 {
    SystemClock.now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str) -> Viewer {
        Viewer::Client(ClientId::new(name))
    }

    #[test]
    fn a_client_sees_only_itself() {
        let q = parse_messages(&client("acme"), None, 1_000_000_000, 500).expect("ok");
        assert_eq!(q.client, Some(ClientId::new("acme")));
        assert_eq!(q.until_ms - q.from_ms, 86_400_000);
        assert_eq!(parse_messages(&client("acme"), Some("client=other"), 1, 500), Err(HistoryError::Forbidden));
        let admin = parse_messages(&Viewer::Admin, Some("client=other"), 1, 500).expect("ok");
        assert_eq!(admin.client, Some(ClientId::new("other")));
        assert_eq!(parse_messages(&Viewer::Admin, None, 1, 500).expect("ok").client, None);
    }

    #[test]
    fn parameters_are_checked() {
        let field = |r: Result<MessagesQuery, HistoryError>| match r {
            Err(HistoryError::InvalidParameter { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let a = Viewer::Admin;
        assert_eq!(field(parse_messages(&a, Some("to=123"), 1, 500)), "to");
        assert_eq!(field(parse_messages(&a, Some("status=nope"), 1, 500)), "status");
        assert_eq!(field(parse_messages(&a, Some("from=5&until=4"), 1, 500)), "from");
        assert_eq!(field(parse_messages(&a, Some("from=x"), 1, 500)), "from");
        assert_eq!(field(parse_messages(&a, Some("limit=501"), 1, 500)), "limit");
        assert_eq!(field(parse_messages(&a, Some("cursor=abc"), 1, 500)), "cursor");
        assert_eq!(field(parse_messages(&a, Some("bogus=1"), 1, 500)), "query");
        assert_eq!(field(parse_messages(&a, Some("to=%2B4915&to=%2B4916"), 1, 500)), "to");
        let q = parse_messages(&a, Some("to=%2B4915112345678&status=delivered&limit=10"), 1, 500).expect("ok");
        assert_eq!(q.to.as_deref(), Some("+4915112345678"));
        assert_eq!(q.status, Some("delivered"));
        assert_eq!(q.limit, 10);
        let id = EventId(7);
        let q = parse_messages(&a, Some(&format!("cursor=123_{id}")), 1, 500).expect("ok");
        assert_eq!(q.cursor, Some((123, id)));
    }

    #[test]
    fn usage_buckets_are_bounded() {
        let a = Viewer::Admin;
        let q = parse_usage(&a, Some("bucket=minute"), 10_000_000).expect("ok");
        assert_eq!((q.bucket, q.until_ms - q.from_ms), (Bucket::Minute, 3_600_000));
        assert!(matches!(
            parse_usage(&a, Some("bucket=minute&from=0&until=999999999"), 1),
            Err(HistoryError::InvalidParameter { field: "from", .. })
        ));
        assert!(matches!(
            parse_usage(&a, Some("bucket=week"), 1),
            Err(HistoryError::InvalidParameter { field: "bucket", .. })
        ));
    }
}
