//! Events: one function per thing that happens, recording its metric (and its log line where
//! an operator cares) in one place, as vector's `internal_events`. Labels are bounded: layer,
//! reason, link, status; never a phone number, a text or a `client_ref`.
//!
//! | event | called from | metric | log |
//! | --- | --- | --- | --- |
//! | [`finished`] | `Pipeline::submit` (every answer of stages 3-8) | outcome, rejection, API latency | — |
//! | [`refused`] | `Pipeline::submit_json` (stages 1-2) | outcome, rejection | — |
//! | [`smsc_answered`] | `smpp::session` (submit_sm_resp) | command_status, SMSC latency, submitted | — |
//! | [`receipt`] | `inbound` (final receipt) | receipts by status, delivered / failed | — |
//! | [`session_error`] | `smpp::session` | link errors, last error | the session logs it |
//! | [`LinkWatch`] | shard 0's publisher, every 250 ms | — | link state change: info / warn |
//!
//! With `[history]` on, the same places also hand history events to `crate::history`
//! ([`refusal`], which also feeds the dashboard's live feed, [`history_recorded`], [`history_receipt`], [`history_webhook`]):
//! built only when history is on, sent with `try_send`, never waited for.

use super::metrics::{self, Outcome, Reason, RejectLabel};
use crate::history::{self, EventKind, HistoryEvent};
use crate::ids::{ClientId, LinkId, MessageId};
use crate::notify::mo::InboundMessage;
use crate::pipeline::auth::AuthError;
use crate::pipeline::limit::Layer;
use crate::pipeline::route::RouteError;
use crate::pipeline::submit::SubmitFailure;
use crate::pipeline::{Rejection, Submitted};
use crate::smpp::link::{LinkState, LinkTable};
use crate::smpp::pdu::CommandStatus;
use crate::smpp::session::SubmitError;
use crate::state::record::Status;
use crate::state::record::{MessageRecord, Receipt};
use crate::state::store::StoreError;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A submit answered by stages 3-8 (every ingress passes here): counts its outcome and its
/// answer time since `started`, and hands the result back unchanged.
pub fn finished(started: Instant, result: Result<Submitted, Rejection>) -> Result<Submitted, Rejection> {
    if !metrics::enabled() {
        return result;
    }
    let now = Instant::now();
    let latency = Some(now.saturating_duration_since(started));
    let (outcome, label) = match &result {
        Ok(_) => (Outcome::Accepted, None),
        Err(r) => classify(r),
    };
    metrics::with(|m| m.answer(outcome, label, latency, now));
    result
}

/// A request refused before stage 3 (bad input, bad API key): counted, handed back.
pub fn refused(r: Rejection) -> Rejection {
    if !metrics::enabled() {
        return r;
    }
    let (outcome, label) = classify(&r);
    metrics::with(|m| m.answer(outcome, label, None, Instant::now()));
    r
}

/// A refusal of `client`'s message (None: no valid API key) to `to` (None before parsing
/// succeeded): into the live feed, and into history when the client is known and no record
/// was kept (refusals with a record, the SMSC refused or did not answer, reach history
/// through [`history_recorded`]).
pub fn refusal(client: Option<ClientId>, to: Option<String>, r: &Rejection, at_ms: u64) {
    let (outcome, label) = classify(r);
    let Some(label) = label.filter(|_| outcome == Outcome::Rejected) else { return };
    if metrics::enabled() {
        super::feed::record(metrics::shard_id(), client.clone(), label.clone(), at_ms);
    }
    let Some(client) = client.filter(|_| history::enabled()) else { return };
    if matches!(r, Rejection::SmscRejected { .. } | Rejection::SmscTimeout { .. }) {
        return;
    }
    let label = Some(label);
    let mut e = HistoryEvent::new(EventKind::Refused, at_ms);
    e.client = Some(client);
    e.to = to;
    e.status = Some(Cow::Borrowed("refused"));
    if let Some(label) = label {
        e.layer = Some(Cow::Borrowed(label.layer));
        e.reason = Some(match label.reason {
            Reason::Named(n) => Cow::Borrowed(n),
            other => Cow::Owned(other.to_string()),
        });
    }
    history::emit(e);
}

/// History events of a record about to be kept: `accepted`, then the submit's result. Built
/// before the record moves into the store; emitted once it is durable ([`history_emit`]).
pub fn history_recorded(record: &MessageRecord) -> Vec<HistoryEvent> {
    record
        .transitions
        .iter()
        .map(|t| {
            let kind = if t.status == Status::Accepted { EventKind::Accepted } else { EventKind::Submitted };
            let mut e = HistoryEvent::new(kind, t.at_ms);
            e.client = Some(record.client.clone());
            e.message_id = Some(record.id);
            e.to = Some(record.to.to_string());
            e.link = Some(record.link.clone());
            e.status = Some(Cow::Borrowed(status_name(t.status)));
            e.segments = record.segments;
            e.detail = t.command_status.map(|s| CommandStatus(s).to_string());
            e
        })
        .collect()
}

pub fn history_emit(events: Vec<HistoryEvent>) {
    events.into_iter().for_each(history::emit);
}

/// History: a final receipt applied to `client`'s message `id`.
pub fn history_receipt(id: MessageId, client: ClientId, r: &Receipt) {
    let mut e = HistoryEvent::new(EventKind::Receipt, r.received_at_ms);
    e.client = Some(client);
    e.message_id = Some(id);
    e.link = Some(r.link.clone());
    e.status = Some(Cow::Borrowed(status_name(r.status)));
    e.detail = r.error_code.clone();
    history::emit(e);
}

/// History: a delivery-report webhook delivered (`delivered` true) or given up; `detail`
/// names the webhook event and, for a failure, the last reason.
pub fn history_webhook(id: MessageId, client: ClientId, delivered: bool, detail: String, at_ms: u64) {
    let kind = if delivered { EventKind::WebhookDelivered } else { EventKind::WebhookFailed };
    let mut e = HistoryEvent::new(kind, at_ms);
    e.client = Some(client);
    e.message_id = Some(id);
    e.detail = Some(detail);
    history::emit(e);
}

/// History: an inbound message (MO) kept; `client` is None when no route matched.
pub fn history_mo(m: &InboundMessage) {
    let mut e = HistoryEvent::new(EventKind::Mo, m.completed_at_ms);
    e.client = m.client.clone();
    e.message_id = Some(MessageId(m.id.0));
    e.to = Some(m.from.clone());
    e.link = Some(m.link.clone());
    e.status = Some(Cow::Borrowed(if m.incomplete { "incomplete" } else { "received" }));
    e.segments = u16::from(m.total_parts);
    e.detail = Some(m.to.clone());
    history::emit(e);
}

/// The outcome and, for a refusal, its layer and reason.
pub fn classify(r: &Rejection) -> (Outcome, Option<RejectLabel>) {
    let named = |layer, reason| (Outcome::Rejected, Some(RejectLabel { layer, reason: Reason::Named(reason) }));
    match r {
        Rejection::Parse(e) => named("parse", e.code),
        Rejection::Auth(e) => named(
            "auth",
            match e {
                AuthError::Missing => "missing",
                AuthError::Malformed => "malformed",
                AuthError::UnknownKey => "unknown_key",
            },
        ),
        Rejection::Route(e) => named("route", route_reason(e)),
        Rejection::Limited(l) => {
            let layer = match l.layer {
                Layer::L1 => "l1",
                Layer::L2 => "l2",
                Layer::Client => "client",
            };
            (Outcome::Rejected, Some(RejectLabel { layer, reason: Reason::Key(l.key.clone()) }))
        }
        Rejection::Policy(p) => named("policy", p.status.as_str()),
        Rejection::NotSubmitted(f) => named("submit", submit_reason(f)),
        Rejection::SmscRejected { status, .. } => {
            (Outcome::Rejected, Some(RejectLabel { layer: "smsc", reason: Reason::Status(status.0) }))
        }
        Rejection::SmscTimeout { .. } => (Outcome::Unknown, None),
        Rejection::State(StoreError::Busy) => named("state", "busy"),
        Rejection::State(StoreError::Down) => named("state", "down"),
        Rejection::State(_) => named("state", "unavailable"),
        // Not answers of a submit (GET /api/v1/messages/{id}); stages added later land here
        // until they name their layer above.
        _ => named("other", "other"),
    }
}

fn route_reason(e: &RouteError) -> &'static str {
    match e {
        RouteError::UnknownLink(_) => "unknown_link",
        RouteError::UnknownPool(_) => "unknown_pool",
        RouteError::NoRoute => "no_route",
        RouteError::PoolUnavailable(_) => "pool_unavailable",
    }
}

fn submit_reason(f: &SubmitFailure) -> &'static str {
    match f {
        SubmitFailure::NoSession(_) => "no_session",
        SubmitFailure::Busy => "busy",
        SubmitFailure::Smpp(e) => match e {
            SubmitError::NotBound => "not_bound",
            SubmitError::WindowFull(_) => "window_full",
            SubmitError::Paced(_) => "paced",
            SubmitError::Timeout(_) => "timeout",
            SubmitError::ConnectionLost => "connection_lost",
            SubmitError::Unencodable(_) => "unencodable",
        },
    }
}

/// The SMSC answered a submit_sm written at `sent`.
pub fn smsc_answered(link: &LinkId, status: CommandStatus, sent: Instant) {
    if !metrics::enabled() {
        return;
    }
    let now = Instant::now();
    metrics::with(|m| m.smsc_answer(link, status.0, now.saturating_duration_since(sent), now));
}

/// A final receipt for a message of `link`.
pub fn receipt(link: &LinkId, status: Status) {
    if !metrics::enabled() {
        return;
    }
    metrics::with(|m| m.receipt(link, status_name(status), Instant::now()));
}

/// The status names of `smsgate_receipts_total{status}`, as the record's `status` field.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Accepted => "accepted",
        Status::Submitted => "submitted",
        Status::Rejected => "rejected",
        Status::Delivered => "delivered",
        Status::Undeliverable => "undeliverable",
        Status::Expired => "expired",
        Status::Deleted => "deleted",
        Status::ReceiptRejected => "receipt_rejected",
        Status::Unknown => "unknown",
        Status::Refused => "refused",
    }
}

/// A session of `link` failed: `bind_failed`, `session_lost`, `enquire_link_missed`,
/// `response_timeout` or `throttled`. The session logs the details; for errors that can come
/// once per message (throttled), it logs only when this returns `Some` (see [`log_due`]).
pub fn session_error(link: &LinkId, kind: &'static str) -> Option<u64> {
    metrics::link_error_now(link, kind);
    log_due(link.as_str(), kind)
}

/// Lines of one kind a shard logs at most once per this, so a failure that hits every message
/// (throttling, a full store, MO traffic) is one line per 10 s, not one per message.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// (scope, kind, last line logged, lines suppressed since).
type GateEntry = (Box<str>, &'static str, Instant, u64);

thread_local! {
    /// (scope, kind) → (last line logged, lines suppressed since). A handful of entries.
    static LOG_GATE: RefCell<Vec<GateEntry>> = const { RefCell::new(Vec::new()) };
}

/// Whether a line about `kind` in `scope` (a link name, or "" for the node) may be logged now:
/// `Some(lines suppressed since the last one)` at most once per [`LOG_EVERY`] per shard, else
/// `None` (counted, to be reported with the next line). The metrics count every occurrence.
pub fn log_due(scope: &str, kind: &'static str) -> Option<u64> {
    let now = Instant::now();
    LOG_GATE.with(|g| {
        let mut g = g.borrow_mut();
        match g.iter_mut().find(|(s, k, _, _)| *k == kind && &**s == scope) {
            Some((_, _, last, suppressed)) if now.saturating_duration_since(*last) < LOG_EVERY => {
                *suppressed += 1;
                None
            }
            Some((_, _, last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                g.push((scope.into(), kind, now, 0));
                Some(0)
            }
        }
    })
}

/// Logs each link's state change, once per change for the node (run by one shard).
#[derive(Default)]
pub struct LinkWatch {
    last: HashMap<LinkId, LinkState>,
}

impl LinkWatch {
    pub fn check(&mut self, links: &LinkTable, now_ms: u64) {
        for (link, entry) in links.iter() {
            let state = entry.state(now_ms);
            let bound = entry.slots.iter().filter(|s| s.is_bound()).count();
            let sessions = entry.slots.len();
            let before = self.last.insert(link.clone(), state);
            if before == Some(state) {
                continue;
            }
            // The start-up state is `down` until the binds answer: not worth a warning.
            let from = before.map_or("start", state_name);
            match (before, state) {
                (None, LinkState::Down) => {}
                (_, LinkState::Bound) => {
                    tracing::info!(%link, from, to = "bound", bound, sessions, "link state changed")
                }
                (_, to) => {
                    tracing::warn!(%link, from, to = state_name(to), bound, sessions, "link state changed")
                }
            }
        }
    }
}

pub fn state_name(s: LinkState) -> &'static str {
    match s {
        LinkState::Bound => "bound",
        LinkState::Degraded => "degraded",
        LinkState::Down => "down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MessageId;

    #[test]
    fn labels_are_bounded_names() {
        let (o, l) = classify(&Rejection::Auth(AuthError::UnknownKey));
        assert_eq!(
            (o, l.map(|l| (l.layer, l.reason.to_string()))),
            (Outcome::Rejected, Some(("auth", "unknown_key".into())))
        );
        let id = MessageId::parse("0000000000000001").expect("id");
        let (o, l) = classify(&Rejection::SmscRejected { id, status: CommandStatus(0x45) });
        assert_eq!(o, Outcome::Rejected);
        assert_eq!(l.map(|l| l.reason.to_string()), Some("ESME_RSUBMITFAIL".into()));
        assert_eq!(classify(&Rejection::SmscTimeout { id }).0, Outcome::Unknown);
    }

    #[test]
    fn repeated_lines_are_gated() {
        assert_eq!(log_due("100", "test_kind"), Some(0));
        assert_eq!(log_due("100", "test_kind"), None);
        assert_eq!(log_due("100", "test_kind"), None);
        assert_eq!(log_due("200", "test_kind"), Some(0), "per scope");
    }
}
