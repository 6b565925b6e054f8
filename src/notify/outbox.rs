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
use std::net::IpAddr;
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
    /// The receipt of one part (1-based) of a message sent in several parts (only for clients
    /// with `webhook_events` containing `segment`).
    Segment(u16),
}

impl Event {
    /// The name the webhook's `event` field carries.
    pub fn name(self) -> &'static str {
        match self {
            Event::Submitted => "submitted",
            Event::Final => "final",
            Event::Segment(_) => "segment",
        }
    }
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
    /// `webhook_events`.
    events: Vec<WebhookEvent>,
}

impl ClientHook {
    /// `final` always; `submitted` and `segment` only when the client asked for them.
    fn wants(&self, event: Event) -> bool {
        match event {
            Event::Final => true,
            Event::Submitted => self.events.contains(&WebhookEvent::Submitted),
            Event::Segment(_) => self.events.contains(&WebhookEvent::Segment),
        }
    }
}

impl WebhookTargets {
    /// `overflowed` counts events refused by the bound (shared with the metrics).
    pub fn new(clients: &[ClientConfig], max_pending_per_client: u64, overflowed: Arc<AtomicU64>) -> Self {
        let clients = clients
            .iter()
            .map(|c| {
                let hook = ClientHook { url: c.webhook_url.clone(), events: c.webhook_events.clone() };
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
    /// client's `webhook_url`. `submitted` and `segment` only if the client asked for them.
    pub fn url_for<'a>(&'a self, rec: &'a MessageRecord, event: Event) -> Option<&'a str> {
        let hook = self.clients.get(&rec.client);
        if !hook.map_or(event == Event::Final, |h| h.wants(event)) {
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

/// Checks a callback URL's form: `http(s)://host[:port][/path]`, at most [`MAX_URL`]
/// characters, no spaces or control characters, no user:password. Which hosts it may name is
/// [`CallbackPolicy`]'s job.
pub fn check_url(url: &str) -> Result<(), String> {
    url_host(url).map(|_| ())
}

/// The host of a URL of the form [`check_url`] accepts (IPv6 without brackets).
pub fn url_host(url: &str) -> Result<&str, String> {
    if url.chars().count() > MAX_URL || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("at most {MAX_URL} characters, without spaces or control characters"));
    }
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Err("must start with http:// or https://".to_owned());
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
    Ok(host)
}

// === callback policy ===

/// Which hosts smsgate may call back (`webhooks.allowed_hosts`, `webhooks.allowed_networks`),
/// so that a client cannot make it reach addresses it was not meant to reach.
///
/// - A host name must match `allowed_hosts` (exact, or `*.example.com` for any name below
///   it), unless that list is empty (the default: any name).
/// - Every address a request goes to (an IP literal, or each address a name resolves to, at
///   send time) must be public, or inside one of `allowed_networks` (CIDR blocks or single
///   addresses; default none). Not public: loopback, private (RFC 1918, fc00::/7), link-local
///   (169.254/16 with the cloud metadata address, fe80::/10), shared (100.64/10),
///   unspecified, broadcast, multicast, documentation ranges, and IPv4-mapped forms of these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    /// Lower case; a leading `*.` kept as `.suffix`.
    hosts: Vec<String>,
    networks: Vec<(IpAddr, u8)>,
}

impl CallbackPolicy {
    /// Parses the two lists; an entry that is no host name (or `*.name`), address or CIDR
    /// block is an error naming it.
    pub fn new(hosts: &[String], networks: &[String]) -> Result<Self, String> {
        let hosts = hosts
            .iter()
            .map(|h| {
                let h = h.to_ascii_lowercase();
                let name = h.strip_prefix("*.").unwrap_or(&h);
                let ok = !name.is_empty()
                    && name
                        .split('.')
                        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
                if !ok {
                    return Err(format!("`{h}` is no host name (or *.name)"));
                }
                Ok(if h.starts_with("*.") { h[1..].to_owned() } else { h })
            })
            .collect::<Result<_, _>>()?;
        let networks = networks
            .iter()
            .map(|n| {
                let (addr, bits) = n.split_once('/').map_or((n.as_str(), None), |(a, b)| (a, Some(b)));
                let addr: IpAddr = addr.parse().map_err(|_| format!("`{n}` is no address or CIDR block"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let bits = match bits {
                    None => max,
                    Some(b) => {
                        b.parse::<u8>().ok().filter(|&b| b <= max).ok_or_else(|| format!("`{n}`: bad prefix length"))?
                    }
                };
                Ok((addr, bits))
            })
            .collect::<Result<_, String>>()?;
        Ok(CallbackPolicy { hosts, networks })
    }

    /// Whether a URL may be called at all: its name is allowed, or its IP literal is.
    pub fn check(&self, url: &str) -> Result<(), String> {
        let host = url_host(url)?;
        match host.parse::<IpAddr>() {
            Ok(ip) if self.allows_addr(ip) => Ok(()),
            Ok(ip) => Err(format!("{ip} is not a public address and not in webhooks.allowed_networks")),
            Err(_) if self.allows_name(host) => Ok(()),
            Err(_) => Err(format!("host `{host}` is not in webhooks.allowed_hosts")),
        }
    }

    fn allows_name(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.is_empty()
            || self.hosts.iter().any(|h| if h.starts_with('.') { host.ends_with(h.as_str()) } else { *h == host })
    }

    /// Whether a request may go to this address.
    pub fn allows_addr(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        is_public(ip) || self.networks.iter().any(|&(net, bits)| in_network(ip, net, bits))
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, ..] = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o0 == 0
                || (o0 == 100 && (64..128).contains(&o1))
                || o0 >= 240)
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80
                || s0 == 0x2001 && a.segments()[1] == 0x0db8)
        }
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
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
        Event::Segment(n) => format!("{id}.segment.{n}"),
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
    let mut body = serde_json::json!({
        "event_id": event_id(rec.id, event),
        "event": event.name(),
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
    });
    if let (Event::Segment(n), Some(obj)) = (event, body.as_object_mut()) {
        obj.insert("segment".to_owned(), serde_json::json!(n));
    }
    body
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
        assert!(check_url("https://example.com:8443/h").is_ok());
        assert!(check_url("http://").is_err());
        assert!(check_url("http://u:p@example.com/").is_err());
        assert!(check_url("http://exa mple.com/").is_err());
        assert!(check_url("http://example.com:x/").is_err());
        assert!(check_url(&format!("http://example.com/{}", "a".repeat(MAX_URL))).is_err());
    }

    #[test]
    fn callbacks_reach_public_addresses_and_what_is_allowed_only() {
        let open = CallbackPolicy::default();
        assert!(open.check("https://hooks.example.com/x").is_ok(), "any name by default");
        assert!(open.check("http://93.184.216.34/x").is_ok());
        for internal in [
            "http://127.0.0.1:8080/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://172.16.5.5/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]:80/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(open.check(internal).is_err(), "{internal}");
        }
        let p = CallbackPolicy::new(
            &["hooks.example.com".into(), "*.acme.test".into()],
            &["127.0.0.0/8".into(), "fd00::/8".into()],
        )
        .unwrap();
        assert!(p.check("http://127.0.0.1:9/").is_ok());
        assert!(p.check("http://[fd00::5]/").is_ok());
        assert!(p.check("http://10.0.0.1/").is_err());
        assert!(p.check("https://HOOKS.example.com/").is_ok());
        assert!(p.check("https://a.b.acme.test/").is_ok());
        assert!(p.check("https://acme.test.evil.com/").is_err());
        assert!(p.check("https://other.example.com/").is_err());
        assert!(p.allows_addr("127.9.9.9".parse().unwrap()) && !p.allows_addr("192.168.1.1".parse().unwrap()));
        assert!(CallbackPolicy::new(&["bad host".into()], &[]).is_err());
        assert!(CallbackPolicy::new(&[], &["10.0.0.0/33".into()]).is_err());
        assert!(CallbackPolicy::new(&[], &["nonsense".into()]).is_err());
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
