//! What each [`Op`] means, written once over the [`Tables`] every backend provides.
//!
//! A backend maps these logical tables onto its storage (redb tables in `embedded.rs`, records
//! of one Aerospike set in `aerospike.rs`) and runs [`apply_op`] for each op of a batch inside
//! whatever makes the batch durable. Later ops of a batch must see what earlier ops wrote:
//! redb gives that inside its transaction, the Aerospike backend with its per-batch overlay.

use super::record::{MessageRecord, Receipt, ReceiptEffect, Status};
use super::store::{Op, OpOutcome, StoreError};
use crate::ids::{ClientId, LinkId, MessageId, SmscMessageId};
use crate::notify::mo::{self, InboundMessage, MoGroup, MoPart, MoRouter};
use crate::notify::outbox::{self, Event, OutboxEntry, WebhookTargets};
use std::sync::atomic::Ordering;

/// The logical tables of the state store, as one batch sees them.
pub trait Tables {
    /// Each client's webhook defaults and the per-client bound.
    fn targets(&self) -> &WebhookTargets;

    fn message(&mut self, id: MessageId) -> Result<Option<MessageRecord>, StoreError>;
    fn set_message(&mut self, rec: &MessageRecord) -> Result<(), StoreError>;

    /// The receipt index: [`smsc_key`] → (message, part).
    fn lookup(&mut self, key: &[u8]) -> Result<Option<(MessageId, usize)>, StoreError>;
    fn set_lookup(&mut self, key: &[u8], id: MessageId, part: usize) -> Result<(), StoreError>;

    /// A receipt parked under [`smsc_key`] until the put that carries its SMSC id.
    fn parked(&mut self, key: &[u8]) -> Result<Option<Receipt>, StoreError>;
    fn set_parked(&mut self, key: &[u8], r: &Receipt) -> Result<(), StoreError>;
    fn take_parked(&mut self, key: &[u8]) -> Result<Option<Receipt>, StoreError>;

    /// Webhooks owed, by sequence number.
    fn outbox(&mut self, seq: u64) -> Result<Option<OutboxEntry>, StoreError>;
    fn set_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError>;
    fn remove_outbox(&mut self, seq: u64) -> Result<Option<OutboxEntry>, StoreError>;
    /// Webhooks given up (max age, or the client's share was full), kept for inspection.
    fn add_failed(&mut self, entry: &OutboxEntry) -> Result<(), StoreError>;

    /// Marks event `seq` due at `at_ms` (only the head event of a message is due).
    fn set_due(&mut self, at_ms: u64, seq: u64) -> Result<(), StoreError>;
    /// Unmarks it; true if it was marked.
    fn remove_due(&mut self, at_ms: u64, seq: u64) -> Result<bool, StoreError>;

    /// The pending events of a message, in the order they were owed: the first one.
    fn queue_head(&mut self, id: MessageId) -> Result<Option<u64>, StoreError>;
    fn enqueue(&mut self, id: MessageId, seq: u64) -> Result<(), StoreError>;
    fn dequeue(&mut self, id: MessageId, seq: u64) -> Result<(), StoreError>;

    /// Events pending for one client.
    fn pending_of(&mut self, client: &ClientId) -> Result<u64, StoreError>;
    fn add_pending(&mut self, client: &ClientId, delta: i64) -> Result<(), StoreError>;

    /// A fresh outbox sequence number, above every one used before (restarts included).
    fn next_seq(&mut self) -> Result<u64, StoreError>;

    /// Where inbound messages go (`[[mo_routes]]`).
    fn mo_router(&self) -> &MoRouter;
    /// Inbound parts waiting for their partners, by `MoPart::group_key`.
    fn inbound_group(&mut self, key: &[u8]) -> Result<Option<MoGroup>, StoreError>;
    fn set_inbound_group(&mut self, key: &[u8], group: &MoGroup) -> Result<(), StoreError>;
    fn remove_inbound_group(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// The waiting groups whose first part arrived at or before `before_ms`.
    fn inbound_groups_before(&mut self, before_ms: u64) -> Result<Vec<(Vec<u8>, MoGroup)>, StoreError>;
    /// Keeps an assembled inbound message.
    fn set_inbound(&mut self, msg: &InboundMessage) -> Result<(), StoreError>;
}

/// Applies one op to `t`.
pub fn apply_op<T: Tables + ?Sized>(t: &mut T, op: &Op) -> Result<OpOutcome, StoreError> {
    match op {
        Op::Put(rec) => put(t, rec),
        Op::Receipt(r) => receipt(t, r),
        Op::WebhookDone(seq) => {
            settle(t, *seq)?;
            Ok(OpOutcome::Stored)
        }
        Op::WebhookRetry { seq, next_at_ms } => webhook_retry(t, *seq, *next_at_ms),
        Op::Inbound(part) => inbound_part(t, part),
        Op::InboundExpire { before_ms } => inbound_expire(t, *before_ms),
        Op::WebhookFailed(seq) => {
            if let Some(entry) = settle(t, *seq)? {
                t.add_failed(&entry)?;
            }
            Ok(OpOutcome::Stored)
        }
    }
}

fn put<T: Tables + ?Sized>(t: &mut T, rec: &MessageRecord) -> Result<OpOutcome, StoreError> {
    let mut rec = rec.clone();
    // Only read the previous version when an event may be owed (the usual put is new).
    let before = if t.targets().wants_any(&rec) { Some(t.message(rec.id)?.map(|r| r.status)) } else { None };
    let mut applied = Vec::new();
    for part in 0..rec.parts.len() {
        let Some(smsc) = rec.parts[part].smsc_message_id.clone() else {
            continue;
        };
        let key = smsc_key(&rec.link, &smsc);
        t.set_lookup(&key, rec.id, part)?;
        if let Some(receipt) = t.take_parked(&key)? {
            rec.apply_receipt(part, &receipt);
            applied.push((part, receipt));
        }
    }
    t.set_message(&rec)?;
    if let Some(before) = before {
        let submitted = rec.transitions.iter().any(|t| t.status == Status::Submitted);
        if submitted && before.is_none_or(|s| s == Status::Accepted) {
            owe(t, &rec, Event::Submitted, now_of(&rec))?;
        }
        if rec.parts.len() > 1 {
            for (part, receipt) in &applied {
                owe(t, &rec, Event::Segment(segment_number(*part)), receipt.received_at_ms)?;
            }
        }
        if rec.status.is_final() && !before.is_some_and(Status::is_final) {
            owe(t, &rec, Event::Final, now_of(&rec))?;
        }
    }
    Ok(if applied.is_empty() {
        OpOutcome::Stored
    } else {
        OpOutcome::StoredWithReceipts(applied.into_iter().map(|(_, r)| r).collect())
    })
}

fn receipt<T: Tables + ?Sized>(t: &mut T, r: &Receipt) -> Result<OpOutcome, StoreError> {
    let key = smsc_key(&r.link, &r.smsc_message_id);
    let Some((id, part)) = t.lookup(&key)? else {
        let earlier = t.parked(&key)?;
        // A final receipt parked first is not hidden by an intermediate one that follows.
        let keep_earlier = earlier.is_some_and(|e| e.status.is_final() && !r.status.is_final());
        if !keep_earlier {
            t.set_parked(&key, r)?;
        }
        return Ok(OpOutcome::ReceiptParked);
    };
    let Some(mut rec) = t.message(id)? else {
        return Err(StoreError::Corrupt(format!("smsc index points to message {id}, which is missing")));
    };
    let was_final = rec.status.is_final();
    if rec.apply_receipt(part, r) == ReceiptEffect::Duplicate {
        return Ok(OpOutcome::ReceiptDuplicate(id));
    }
    t.set_message(&rec)?;
    if rec.parts.len() > 1 {
        owe(t, &rec, Event::Segment(segment_number(part)), r.received_at_ms)?;
    }
    if !was_final && rec.status.is_final() {
        owe(t, &rec, Event::Final, r.received_at_ms)?;
    }
    Ok(OpOutcome::ReceiptApplied(id, rec.client.clone()))
}

/// The 1-based number of part index `part` in segment events.
fn segment_number(part: usize) -> u16 {
    u16::try_from(part + 1).unwrap_or(u16::MAX)
}

/// Writes the outbox entry of `event` for `rec`, if it has a URL for it.
fn owe<T: Tables + ?Sized>(t: &mut T, rec: &MessageRecord, event: Event, now_ms: u64) -> Result<(), StoreError> {
    let Some(url) = t.targets().url_for(rec, event).map(str::to_owned) else {
        return Ok(());
    };
    let body = serde_json::to_string(&outbox::payload(rec, event))
        .map_err(|e| StoreError::Corrupt(format!("encode webhook: {e}")))?;
    enqueue(t, outbox::event_id(rec.id, event), rec.id, &rec.client, url, body, now_ms)
}

/// Queues one webhook: in the outbox, behind the earlier events of `message_id`, within its
/// client's share (`webhooks.max_pending_per_client`).
fn enqueue<T: Tables + ?Sized>(
    t: &mut T,
    event_id: String,
    message_id: MessageId,
    client: &ClientId,
    url: String,
    body: String,
    now_ms: u64,
) -> Result<(), StoreError> {
    let entry = OutboxEntry {
        seq: t.next_seq()?,
        event_id,
        message_id,
        client: client.clone(),
        url,
        body,
        created_at_ms: now_ms,
        attempts: 0,
        next_at_ms: now_ms,
    };
    let pending = t.pending_of(client)?;
    if pending >= t.targets().max_pending_per_client() {
        // The client's share of the outbox is full (its receiver has been failing for long):
        // the event is kept in the failed table and counted, never queued.
        t.add_failed(&entry)?;
        t.targets().count_overflow();
        let client = client.as_str();
        if let Some(suppressed) = crate::observe::events::log_due(client, "webhook_outbox_full") {
            tracing::warn!(client, pending, suppressed, "webhook outbox share full; event kept as failed");
        }
        return Ok(());
    }
    t.add_pending(client, 1)?;
    t.set_outbox(&entry)?;
    let waits_behind_another = t.queue_head(message_id)?.is_some();
    t.enqueue(message_id, entry.seq)?;
    if !waits_behind_another {
        t.set_due(now_ms, entry.seq)?;
    }
    Ok(())
}

/// Keeps one inbound part; a whole message, or the part that completes one, makes the message.
fn inbound_part<T: Tables + ?Sized>(t: &mut T, part: &MoPart) -> Result<OpOutcome, StoreError> {
    t.mo_router().stats().parts.fetch_add(1, Ordering::Relaxed);
    let Some(key) = part.group_key() else {
        return keep_inbound(t, std::slice::from_ref(part), part.received_at_ms);
    };
    let mut group = t.inbound_group(&key)?.unwrap_or_default();
    if !group.add(part.clone()) {
        t.mo_router().stats().duplicate_parts.fetch_add(1, Ordering::Relaxed);
        return Ok(OpOutcome::InboundPartDuplicate);
    }
    if group.is_complete() {
        t.remove_inbound_group(&key)?;
        return keep_inbound(t, &group.parts, part.received_at_ms);
    }
    t.set_inbound_group(&key, &group)?;
    Ok(OpOutcome::InboundPartKept)
}

/// Closes the groups whose first part came at or before `before_ms` with what they have.
fn inbound_expire<T: Tables + ?Sized>(t: &mut T, before_ms: u64) -> Result<OpOutcome, StoreError> {
    let expired = t.inbound_groups_before(before_ms)?;
    for (key, group) in &expired {
        t.remove_inbound_group(key)?;
        keep_inbound(t, &group.parts, before_ms)?;
    }
    Ok(OpOutcome::InboundExpired(expired.len()))
}

/// Assembles, routes and keeps an inbound message, and owes its webhook.
fn keep_inbound<T: Tables + ?Sized>(t: &mut T, parts: &[MoPart], now_ms: u64) -> Result<OpOutcome, StoreError> {
    let Some(mut msg) = mo::assemble(parts, now_ms) else {
        return Err(StoreError::Corrupt("an inbound group without parts".to_owned()));
    };
    let routed = t.mo_router().route(&msg.to, msg.text.as_deref()).map(|(c, url)| (c, url.to_owned()));
    msg.client = routed.as_ref().map(|(c, _)| c.clone());
    t.set_inbound(&msg)?;
    t.mo_router().count(&msg);
    if let Some((client, url)) = routed {
        let body = serde_json::to_string(&mo::payload(&msg))
            .map_err(|e| StoreError::Corrupt(format!("encode webhook: {e}")))?;
        enqueue(t, mo::event_id(msg.id), MessageId(msg.id.0), &client, url, body, now_ms)?;
    } else if let Some(suppressed) = crate::observe::events::log_due(msg.link.as_str(), "mo_unrouted") {
        tracing::warn!(id = %msg.id, to = %msg.to, link = %msg.link, suppressed, "inbound message matches no [[mo_routes]] entry; kept, not delivered");
    }
    Ok(OpOutcome::InboundKept(Box::new(msg)))
}

/// Removes a settled event from the outbox and its indexes, and makes the message's next
/// event (if any) due. Returns the removed entry.
fn settle<T: Tables + ?Sized>(t: &mut T, seq: u64) -> Result<Option<OutboxEntry>, StoreError> {
    let Some(entry) = t.outbox(seq)? else {
        return Ok(None);
    };
    t.remove_due(entry.next_at_ms, seq)?;
    t.remove_outbox(seq)?;
    t.add_pending(&entry.client, -1)?;
    t.dequeue(entry.message_id, seq)?;
    if let Some(next_seq) = t.queue_head(entry.message_id)? {
        if let Some(next) = t.outbox(next_seq)? {
            t.set_due(next.next_at_ms, next_seq)?;
        }
    }
    Ok(Some(entry))
}

fn webhook_retry<T: Tables + ?Sized>(t: &mut T, seq: u64, next_at_ms: u64) -> Result<OpOutcome, StoreError> {
    let Some(mut entry) = t.outbox(seq)? else {
        return Ok(OpOutcome::Stored);
    };
    let was_due = t.remove_due(entry.next_at_ms, seq)?;
    entry.attempts = entry.attempts.saturating_add(1);
    entry.next_at_ms = next_at_ms;
    t.set_outbox(&entry)?;
    if was_due {
        t.set_due(next_at_ms, seq)?;
    }
    Ok(OpOutcome::Stored)
}

/// When a put's event happened: its last transition.
fn now_of(rec: &MessageRecord) -> u64 {
    rec.transitions.last().map_or(0, |t| t.at_ms)
}

/// Index key: link, 0x00, the SMSC id lower-cased without leading zeros, so `0A1B` from a
/// receipt finds `a1b` from a submit_sm_resp. Link names never contain NUL, so the key is
/// unambiguous.
pub fn smsc_key(link: &LinkId, smsc: &SmscMessageId) -> Vec<u8> {
    let link = link.as_str().as_bytes();
    let trimmed = smsc.as_str().trim_start_matches('0');
    let smsc = if trimmed.is_empty() && !smsc.as_str().is_empty() { "0" } else { trimmed };
    let mut key = Vec::with_capacity(link.len() + 1 + smsc.len());
    key.extend_from_slice(link);
    key.push(0);
    key.extend(smsc.bytes().map(|b| b.to_ascii_lowercase()));
    key
}

/// JSON, the encoding of every stored value (records, receipts, outbox entries).
pub fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(format!("encode: {e}")))
}

pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(format!("decode: {e}")))
}
