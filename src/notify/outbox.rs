//! The webhook outbox: which events a message owes its client, and the JSON each carries.
//!
//! The state store writes an [`OutboxEntry`] in the same transaction that changes the record
//! (`state/embedded.rs`), so "receipt kept" and "webhook owed" are durable together before the
//! SMSC gets its deliver_sm_resp. The sender thread (`notify/webhook.rs`) reads due entries
//! and posts them. Nothing here does I/O.

use crate::config::{ClientConfig, WebhookEvent};
use crate::ids::{ClientId, MessageId};
use crate::state::record::{MessageRecord, Status};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Longest `callback_url` / `webhook_url` accepted, characters.
pub const MAX_URL: usize = 512;

/// Which event of a message's life an entry reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The SMSC accepted the submit (only for clients with `webhook_events` containing it).
    Submitted,
    /// The message reached a final status.
    Final,
}

/// One webhook owed, as the outbox keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Outbox key: increasing in the order events were owed (so per message, in order).
    pub seq: u64,
    /// `<message id>.<event>`: the same for every attempt, sent as the idempotency header.
    pub event_id: String,
    pub message_id: MessageId,
    pub client: ClientId,
    pub url: String,
    /// The JSON body, exactly as it is posted and signed.
    pub body: String,
    /// Unix ms when the event was owed; the max age counts from here.
    pub created_at_ms: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix ms of the next attempt.
    pub next_at_ms: u64,
}

/// Each client's default webhook and the events it wants (from `[[clients]]`), and the bound
/// on each client's pending events (`webhooks.max_pending_per_client`).
#[derive(Clone, Debug)]
pub struct WebhookTargets {
    clients: HashMap<ClientId, ClientHook>,
    max_pending_per_client: u64,
    /// Events not queued because their client's outbox share was full (kept as failed).
    overflowed: Arc<AtomicU64>,
}

impl Default for WebhookTargets {
    fn default() -> Self {
        WebhookTargets { clients: HashMap::new(), max_pending_per_client: u64::MAX, overflowed: Arc::default() }
    }
}

#[derive(Clone, Debug, Default)]
struct ClientHook {
    url: Option<String>,
    submitted: bool,
}

impl WebhookTargets {
    /// `overflowed` counts events refused by the bound (shared with the metrics).
    pub fn new(clients: &[ClientConfig], max_pending_per_client: u64, overflowed: Arc<AtomicU64>) -> Self {
        let clients = clients
            .iter()
            .map(|c| {
                let hook = ClientHook {
                    url: c.webhook_url.clone(),
                    submitted: c.webhook_events.contains(&WebhookEvent::Submitted),
                };
                (c.name.clone(), hook)
            })
            .collect();
        WebhookTargets { clients, max_pending_per_client, overflowed }
    }

    /// Most events one client may have pending in the outbox.
    pub fn max_pending_per_client(&self) -> u64 {
        self.max_pending_per_client
    }

    /// Counts an event refused by the bound.
    pub fn count_overflow(&self) {
        self.overflowed.fetch_add(1, Ordering::Relaxed);
    }

    /// Where `event` of `rec` goes, if anywhere: the message's `callback_url`, else its
    /// client's `webhook_url`. `submitted` only if the client asked for it.
    pub fn url_for<'a>(&'a self, rec: &'a MessageRecord, event: Event) -> Option<&'a str> {
        let hook = self.clients.get(&rec.client);
        if event == Event::Submitted && !hook.is_some_and(|h| h.submitted) {
            return None;
        }
        rec.callback_url.as_deref().or_else(|| hook.and_then(|h| h.url.as_deref()))
    }

    /// Whether `rec` may owe any event (it has a `callback_url` or its client a `webhook_url`):
    /// the store reads the previous version of a put record only then.
    /// A refused message owes no event: its client had the refusal as the answer.
    pub fn wants_any(&self, rec: &MessageRecord) -> bool {
        rec.status != Status::Refused
            && (rec.callback_url.is_some() || self.clients.get(&rec.client).is_some_and(|h| h.url.is_some()))
    }
}

/// Checks a callback URL: `http://host[:port][/path]`, at most [`MAX_URL`] characters, no
/// spaces or control characters. `https` is refused: this build carries no TLS stack.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.chars().count() > MAX_URL || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("at most {MAX_URL} characters, without spaces or control characters"));
    }
    if url.starts_with("https://") {
        return Err("https is not supported by this build (no TLS stack); use http://".to_owned());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err("must start with http://".to_owned());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("must not carry user:password".to_owned());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => return Err("an IPv6 host needs its closing ]".to_owned()),
        },
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("must name a host".to_owned());
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err("the port must be a number 1-65535".to_owned());
    }
    Ok(())
}

/// The status name a webhook carries.
fn status_name(s: Status) -> &'static str {
    match s {
        Status::Accepted => "accepted",
        Status::Submitted => "submitted",
        Status::Rejected | Status::ReceiptRejected => "rejected",
        Status::Delivered => "delivered",
        Status::Undeliverable => "undeliverable",
        Status::Expired => "expired",
        Status::Deleted => "failed",
        Status::Unknown => "unknown",
        Status::Refused => "refused",
    }
}

/// The event id of `event` of message `id`.
pub fn event_id(id: MessageId, event: Event) -> String {
    match event {
        Event::Submitted => format!("{id}.submitted"),
        Event::Final => format!("{id}.final"),
    }
}

/// The JSON body of `event` for `rec` (schema in README.md, "Delivery-report webhooks").
pub fn payload(rec: &MessageRecord, event: Event) -> serde_json::Value {
    let at = |s: Status| rec.transitions.iter().find(|t| t.status == s).map(|t| t.at_ms);
    let last = rec.transitions.last();
    let done = (event == Event::Final).then(|| last.map(|t| t.at_ms)).flatten();
    let parts: Vec<serde_json::Value> = rec
        .parts
        .iter()
        .map(|p| {
            serde_json::json!({
                "smsc_message_id": p.smsc_message_id.as_ref().map(|s| s.as_str()),
                "status": p.status.map(status_name),
                "command_status": p.command_status,
                "network_error_code": p.error_code,
                "smsc_done_date": p.smsc_done_date,
            })
        })
        .collect();
    serde_json::json!({
        "event_id": event_id(rec.id, event),
        "event": event,
        "message_id": rec.id.to_string(),
        "client_ref": rec.client_ref,
        "status": status_name(rec.status),
        "link": rec.link.as_str(),
        "smsc_message_ids": rec.parts.iter().filter_map(|p| p.smsc_message_id.as_ref().map(|s| s.as_str())).collect::<Vec<_>>(),
        "segments": { "count": rec.segments, "parts": parts },
        "error": {
            "command_status": last.and_then(|t| t.command_status),
            "network_error_code": last.and_then(|t| t.error_code.clone()),
        },
        "timestamps": {
            "accepted_ms": at(Status::Accepted),
            "submitted_ms": at(Status::Submitted),
            "done_ms": done,
            "smsc_done_date": (event == Event::Final).then(|| last.and_then(|t| t.smsc_done_date.clone())).flatten(),
        },
    })
}

/// The delay before attempt `attempts + 1`: `initial × 2^attempts`, at most `max`, with ±20 %
/// jitter from `noise` (any number; the caller mixes time and event into it).
pub fn backoff_ms(attempts: u32, initial_ms: u64, max_ms: u64, noise: u64) -> u64 {
    let base = initial_ms.saturating_mul(1u64 << attempts.min(32)).min(max_ms).max(1);
    let spread = base / 5;
    // xorshift64* scramble of the noise, then a value in [base - spread, base + spread].
    let mut x = noise | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    base - spread + r % (2 * spread + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("http://example.com").is_ok());
        assert!(check_url("http://example.com?x=1").is_ok());
        assert!(check_url("ftp://example.com").is_err());
        assert!(check_url("https://example.com").is_err());
        assert!(check_url("http://").is_err());
        assert!(check_url("http://u:p@example.com/").is_err());
        assert!(check_url("http://exa mple.com/").is_err());
        assert!(check_url("http://example.com:x/").is_err());
        assert!(check_url(&format!("http://example.com/{}", "a".repeat(MAX_URL))).is_err());
    }

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        for noise in [0, 1, 42, u64::MAX] {
            let d0 = backoff_ms(0, 1_000, 60_000, noise);
            assert!((800..=1_200).contains(&d0), "{d0}");
            let d3 = backoff_ms(3, 1_000, 60_000, noise);
            assert!((6_400..=9_600).contains(&d3), "{d3}");
            let big = backoff_ms(40, 1_000, 60_000, noise);
            assert!((48_000..=72_000).contains(&big), "{big}");
        }
    }
}
