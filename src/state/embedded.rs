//! The embedded state backend: one redb file, the default when no Aerospike is configured.
//!
//! redb was picked over fjall by measuring smsgate's own pattern (perf/RESULTS.md, "State
//! store: fjall vs redb"): at 50,000 msg/s in durable group-commit batches it kept up (batch
//! commit p50 ~1 ms, p99 ~4 ms) where fjall stalled for up to 190 ms and fell behind to ~41k
//! msg/s, and it used ~40 % less CPU per message and less than half the bytes on disk.
//!
//! Tables:
//! - `messages`: MessageId as 8 big-endian bytes → serde_json of [`MessageRecord`].
//! - `smsc_index`: link + 0x00 + SMSC message id → MessageId as 8 big-endian bytes.
//! - `parked_receipts`: the same key as `smsc_index` → serde_json of [`Receipt`], for receipts
//!   that arrived before the `Put` that carries their SMSC id.
//! - `inbound`: InboundId → serde_json of [`InboundMessage`] (MO).
//! - `inbound_parts`: `MoPart::group_key` → serde_json of [`MoGroup`], parts of concatenated
//!   MO waiting for their partners (few: a group leaves when complete or timed out).
//! - the webhook outbox tables below.
//!
//! One `apply` is one redb write transaction committed with `Durability::Immediate`: one sync
//! per batch, all or nothing. Reads inside the transaction see its earlier writes, so a later op
//! of a batch sees what an earlier op of the same batch did without an overlay of our own.

use super::record::{MessageRecord, Receipt, ReceiptEffect, Status};
use super::store::{Op, OpOutcome, OutboxRead, StateStore, StoreError};
use crate::ids::{InboundId, LinkId, MessageId, SmscMessageId};
use crate::notify::mo::{self, InboundMessage, MoGroup, MoPart, MoRouter};
use crate::notify::outbox::{self, Event, OutboxEntry, WebhookTargets};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("messages");
const SMSC_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("smsc_index");
const PARKED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("parked_receipts");
const INBOUND: TableDefinition<u64, &[u8]> = TableDefinition::new("inbound");
const INBOUND_PARTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("inbound_parts");
/// Webhooks owed: outbox sequence number → `OutboxEntry` (JSON).
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("webhook_outbox");
/// Webhooks given up after their max age, kept for inspection: sequence → `OutboxEntry`.
const FAILED: TableDefinition<u64, &[u8]> = TableDefinition::new("webhook_failed");
/// When each message's oldest pending event is next due: (next_at_ms, sequence). Only the
/// head event of a message is here, so events of one message go in order, and a backlog
/// for a dead receiver never hides another client's due events from `due_webhooks`.
const DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("webhook_due");
/// Pending events per message: (message id, sequence). Its first key is the head event.
const BY_MESSAGE: TableDefinition<(u64, u64), ()> = TableDefinition::new("webhook_by_message");
/// Pending events per client, for `webhooks.max_pending_per_client`.
const PER_CLIENT: TableDefinition<&str, u64> = TableDefinition::new("webhook_pending_per_client");

/// The file inside the state directory.
const FILE_NAME: &str = "state.redb";

/// redb page cache, bytes.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The embedded backend. Owned by the writer thread; `get` may also run there.
pub struct EmbeddedStore {
    /// Shared with the outbox reader of the webhook sender (redb: one writer, many readers).
    db: Arc<Database>,
    /// Each client's default webhook; which events are owed.
    targets: WebhookTargets,
    /// Where inbound messages go (`[[mo_routes]]`, swapped by a reload).
    mo_router: Arc<MoRouter>,
    /// The next outbox sequence number: one above the highest ever used (kept in the outbox
    /// or the failed table, so it never goes back after a restart).
    next_seq: u64,
}

// === impl EmbeddedStore ===

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, creating the directory and the tables.
    /// After a crash redb checks and repairs the file here, which takes longer on a big file.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(format!("create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        // redb's page cache defaults to 1 GiB, which a gateway holding a million messages that
        // await receipts would fill; the working set (recent records and index pages) is far
        // smaller. The OS page cache still holds the rest of the file.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| StoreError::Io(format!("open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(io)?;
        txn.open_table(MESSAGES).map_err(io)?;
        txn.open_table(SMSC_INDEX).map_err(io)?;
        txn.open_table(PARKED).map_err(io)?;
        txn.open_table(INBOUND).map_err(io)?;
        txn.open_table(INBOUND_PARTS).map_err(io)?;
        let last_owed = txn.open_table(OUTBOX).map_err(io)?.last().map_err(io)?.map(|(k, _)| k.value());
        let last_failed = txn.open_table(FAILED).map_err(io)?.last().map_err(io)?.map(|(k, _)| k.value());
        txn.open_table(DUE).map_err(io)?;
        txn.open_table(BY_MESSAGE).map_err(io)?;
        txn.open_table(PER_CLIENT).map_err(io)?;
        txn.commit().map_err(io)?;
        let next_seq = last_owed.max(last_failed).map_or(1, |s| s + 1);
        Ok(EmbeddedStore { db: Arc::new(db), targets: WebhookTargets::default(), mo_router: Arc::default(), next_seq })
    }

    /// Sets the clients' webhook defaults (`[[clients]] webhook_url`, `webhook_events`).
    pub fn with_webhooks(mut self, targets: WebhookTargets) -> Self {
        self.targets = targets;
        self
    }

    /// Sets the router of inbound messages (without one, every MO is kept unrouted).
    pub fn with_mo_router(mut self, router: Arc<MoRouter>) -> Self {
        self.mo_router = router;
        self
    }
}

impl StateStore for EmbeddedStore {
    fn apply(&mut self, batch: &[Op]) -> Result<Vec<OpOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut txn = self.db.begin_write().map_err(io)?;
        txn.set_durability(Durability::Immediate).map_err(io)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let next_seq;
        {
            let mut tables = Tables {
                messages: txn.open_table(MESSAGES).map_err(io)?,
                index: txn.open_table(SMSC_INDEX).map_err(io)?,
                parked: txn.open_table(PARKED).map_err(io)?,
                outbox: txn.open_table(OUTBOX).map_err(io)?,
                failed: txn.open_table(FAILED).map_err(io)?,
                due: txn.open_table(DUE).map_err(io)?,
                by_message: txn.open_table(BY_MESSAGE).map_err(io)?,
                per_client: txn.open_table(PER_CLIENT).map_err(io)?,
                inbound: txn.open_table(INBOUND).map_err(io)?,
                inbound_parts: txn.open_table(INBOUND_PARTS).map_err(io)?,
                targets: &self.targets,
                mo_router: &self.mo_router,
                next_seq: self.next_seq,
            };
            for op in batch {
                outcomes.push(match op {
                    Op::Put(rec) => tables.put(rec)?,
                    Op::Receipt(r) => tables.receipt(r)?,
                    Op::WebhookDone(seq) => tables.webhook_done(*seq)?,
                    Op::WebhookRetry { seq, next_at_ms } => tables.webhook_retry(*seq, *next_at_ms)?,
                    Op::WebhookFailed(seq) => tables.webhook_failed(*seq)?,
                    Op::Inbound(part) => tables.inbound_part(part)?,
                    Op::InboundExpire { before_ms } => tables.inbound_expire(*before_ms)?,
                });
            }
            next_seq = tables.next_seq;
        }
        // An early return above drops `txn` uncommitted: redb aborts it, nothing is written.
        txn.commit().map_err(io)?;
        self.next_seq = next_seq;
        Ok(outcomes)
    }

    fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let messages = txn.open_table(MESSAGES).map_err(io)?;
        let stored = messages.get(id.to_bytes().as_slice()).map_err(io)?;
        stored.map(|v| decode(v.value())).transpose()
    }

    fn get_inbound(&self, id: InboundId) -> Result<Option<InboundMessage>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let inbound = txn.open_table(INBOUND).map_err(io)?;
        let stored = inbound.get(id.0).map_err(io)?;
        stored.map(|v| decode(v.value())).transpose()
    }

    fn outbox_reader(&self) -> Box<dyn OutboxRead> {
        Box::new(EmbeddedOutbox { db: Arc::clone(&self.db) })
    }
}

/// The webhook sender's read path: read transactions on the shared database, beside the writer.
struct EmbeddedOutbox {
    db: Arc<Database>,
}

impl OutboxRead for EmbeddedOutbox {
    fn pending(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let outbox = txn.open_table(OUTBOX).map_err(io)?;
        outbox.len().map_err(io)
    }

    fn oldest_inbound_group(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let parts = txn.open_table(INBOUND_PARTS).map_err(io)?;
        let mut oldest: Option<u64> = None;
        for row in parts.iter().map_err(io)? {
            let (_, v) = row.map_err(io)?;
            let group: MoGroup = decode(v.value())?;
            oldest = Some(oldest.map_or(group.first_at_ms, |o| o.min(group.first_at_ms)));
        }
        Ok(oldest)
    }

    fn due_webhooks(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let outbox = txn.open_table(OUTBOX).map_err(io)?;
        let due = txn.open_table(DUE).map_err(io)?;
        let mut entries = Vec::new();
        for row in due.range((0, 0)..=(now_ms, u64::MAX)).map_err(io)?.take(limit) {
            let (key, _) = row.map_err(io)?;
            let (_, seq) = key.value();
            let stored = outbox.get(seq).map_err(io)?;
            let Some(entry) = stored.map(|v| decode::<OutboxEntry>(v.value())).transpose()? else {
                return Err(StoreError::Corrupt(format!("webhook_due names event {seq}, which is missing")));
            };
            entries.push(entry);
        }
        Ok(entries)
    }
}

// === impl Tables ===

/// The tables open in one write transaction, and what the outbox needs.
struct Tables<'txn, 'a> {
    messages: Table<'txn, &'static [u8], &'static [u8]>,
    index: Table<'txn, &'static [u8], &'static [u8]>,
    parked: Table<'txn, &'static [u8], &'static [u8]>,
    outbox: Table<'txn, u64, &'static [u8]>,
    failed: Table<'txn, u64, &'static [u8]>,
    due: Table<'txn, (u64, u64), ()>,
    by_message: Table<'txn, (u64, u64), ()>,
    per_client: Table<'txn, &'static str, u64>,
    inbound: Table<'txn, u64, &'static [u8]>,
    inbound_parts: Table<'txn, &'static [u8], &'static [u8]>,
    targets: &'a WebhookTargets,
    mo_router: &'a MoRouter,
    next_seq: u64,
}

impl Tables<'_, '_> {
    fn put(&mut self, rec: &MessageRecord) -> Result<OpOutcome, StoreError> {
        let mut rec = rec.clone();
        // Only read the previous version when an event may be owed (the usual put is new).
        let before = if self.targets.wants_any(&rec) {
            let stored = self.messages.get(rec.id.to_bytes().as_slice()).map_err(io)?;
            Some(stored.map(|v| decode::<MessageRecord>(v.value())).transpose()?.map(|r| r.status))
        } else {
            None
        };
        for part in 0..rec.parts.len() {
            let Some(smsc) = rec.parts[part].smsc_message_id.clone() else {
                continue;
            };
            let key = smsc_key(&rec.link, &smsc);
            self.index.insert(key.as_slice(), index_value(rec.id, part).as_slice()).map_err(io)?;
            let parked = self.parked.remove(key.as_slice()).map_err(io)?;
            let parked: Option<Receipt> = parked.map(|v| decode(v.value())).transpose()?;
            if let Some(receipt) = parked {
                rec.apply_receipt(part, &receipt);
            }
        }
        self.write_record(&rec)?;
        if let Some(before) = before {
            let submitted = rec.transitions.iter().any(|t| t.status == Status::Submitted);
            if submitted && before.is_none_or(|s| s == Status::Accepted) {
                self.owe(&rec, Event::Submitted, now_of(&rec))?;
            }
            if rec.status.is_final() && !before.is_some_and(Status::is_final) {
                self.owe(&rec, Event::Final, now_of(&rec))?;
            }
        }
        Ok(OpOutcome::Stored)
    }

    fn receipt(&mut self, r: &Receipt) -> Result<OpOutcome, StoreError> {
        let key = smsc_key(&r.link, &r.smsc_message_id);
        let indexed = self.index.get(key.as_slice()).map_err(io)?;
        let Some((id, part)) = indexed.map(|v| from_index_value(v.value())).transpose()? else {
            return self.park(&key, r);
        };
        let stored = self.messages.get(id.to_bytes().as_slice()).map_err(io)?;
        let Some(mut rec) = stored.map(|v| decode::<MessageRecord>(v.value())).transpose()? else {
            return Err(StoreError::Corrupt(format!("smsc index points to message {id}, which is missing")));
        };
        let was_final = rec.status.is_final();
        if rec.apply_receipt(part, r) == ReceiptEffect::Duplicate {
            return Ok(OpOutcome::ReceiptDuplicate(id));
        }
        self.write_record(&rec)?;
        if !was_final && rec.status.is_final() {
            self.owe(&rec, Event::Final, r.received_at_ms)?;
        }
        Ok(OpOutcome::ReceiptApplied(id, rec.client.clone()))
    }

    fn park(&mut self, key: &[u8], r: &Receipt) -> Result<OpOutcome, StoreError> {
        let earlier = self.parked.get(key).map_err(io)?;
        let earlier: Option<Receipt> = earlier.map(|v| decode(v.value())).transpose()?;
        let keep_earlier = earlier.is_some_and(|e| e.status.is_final() && !r.status.is_final());
        if !keep_earlier {
            self.parked.insert(key, encode(r)?.as_slice()).map_err(io)?;
        }
        Ok(OpOutcome::ReceiptParked)
    }

    /// Writes the outbox entry of `event` for `rec`, if it has a URL for it.
    fn owe(&mut self, rec: &MessageRecord, event: Event, now_ms: u64) -> Result<(), StoreError> {
        let Some(url) = self.targets.url_for(rec, event) else {
            return Ok(());
        };
        let body = serde_json::to_string(&outbox::payload(rec, event))
            .map_err(|e| StoreError::Corrupt(format!("encode webhook: {e}")))?;
        let url = url.to_owned();
        self.enqueue(outbox::event_id(rec.id, event), rec.id, &rec.client, url, body, now_ms)
    }

    /// Queues one webhook: in the outbox, behind the earlier events of `message_id`, within
    /// its client's share (`webhooks.max_pending_per_client`).
    fn enqueue(
        &mut self,
        event_id: String,
        message_id: MessageId,
        client: &crate::ids::ClientId,
        url: String,
        body: String,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = OutboxEntry {
            seq,
            event_id,
            message_id,
            client: client.clone(),
            url,
            body,
            created_at_ms: now_ms,
            attempts: 0,
            next_at_ms: now_ms,
        };
        let client = client.as_str();
        let pending = self.per_client.get(client).map_err(io)?.map_or(0, |v| v.value());
        if pending >= self.targets.max_pending_per_client() {
            // The client's share of the outbox is full (its receiver has been failing for
            // long): the event is kept in the failed table and counted, never queued.
            self.failed.insert(seq, encode(&entry)?.as_slice()).map_err(io)?;
            self.targets.count_overflow();
            if let Some(suppressed) = crate::observe::events::log_due(client, "webhook_outbox_full") {
                tracing::warn!(client, pending, suppressed, "webhook outbox share full; event kept as failed");
            }
            return Ok(());
        }
        self.per_client.insert(client, pending + 1).map_err(io)?;
        self.outbox.insert(seq, encode(&entry)?.as_slice()).map_err(io)?;
        let id = message_id.0;
        let waits_behind_another = self.by_message.range((id, 0)..=(id, u64::MAX)).map_err(io)?.next().is_some();
        self.by_message.insert((id, seq), ()).map_err(io)?;
        if !waits_behind_another {
            self.due.insert((now_ms, seq), ()).map_err(io)?;
        }
        Ok(())
    }

    /// Keeps one inbound part; a whole message, or the part that completes one, makes the
    /// message.
    fn inbound_part(&mut self, part: &MoPart) -> Result<OpOutcome, StoreError> {
        self.mo_router.stats().parts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(key) = part.group_key() else {
            return self.keep_inbound(std::slice::from_ref(part), part.received_at_ms);
        };
        let stored = self.inbound_parts.get(key.as_slice()).map_err(io)?;
        let mut group: MoGroup = stored.map(|v| decode(v.value())).transpose()?.unwrap_or_default();
        if !group.add(part.clone()) {
            self.mo_router.stats().duplicate_parts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(OpOutcome::InboundPartDuplicate);
        }
        if group.is_complete() {
            self.inbound_parts.remove(key.as_slice()).map_err(io)?;
            return self.keep_inbound(&group.parts, part.received_at_ms);
        }
        self.inbound_parts.insert(key.as_slice(), encode(&group)?.as_slice()).map_err(io)?;
        Ok(OpOutcome::InboundPartKept)
    }

    /// Closes the groups whose first part came at or before `before_ms` with what they have.
    fn inbound_expire(&mut self, before_ms: u64) -> Result<OpOutcome, StoreError> {
        let mut expired = Vec::new();
        for row in self.inbound_parts.iter().map_err(io)? {
            let (k, v) = row.map_err(io)?;
            let group: MoGroup = decode(v.value())?;
            if group.first_at_ms <= before_ms {
                expired.push((k.value().to_vec(), group));
            }
        }
        for (key, group) in &expired {
            self.inbound_parts.remove(key.as_slice()).map_err(io)?;
            self.keep_inbound(&group.parts, before_ms)?;
        }
        Ok(OpOutcome::InboundExpired(expired.len()))
    }

    /// Assembles, routes and keeps an inbound message, and owes its webhook.
    fn keep_inbound(&mut self, parts: &[MoPart], now_ms: u64) -> Result<OpOutcome, StoreError> {
        let Some(mut msg) = mo::assemble(parts, now_ms) else {
            return Err(StoreError::Corrupt("an inbound group without parts".to_owned()));
        };
        let routed = self.mo_router.route(&msg.to, msg.text.as_deref()).map(|(c, url)| (c, url.to_owned()));
        msg.client = routed.as_ref().map(|(c, _)| c.clone());
        self.inbound.insert(msg.id.0, encode(&msg)?.as_slice()).map_err(io)?;
        self.mo_router.count(&msg);
        if let Some((client, url)) = routed {
            let body = serde_json::to_string(&mo::payload(&msg))
                .map_err(|e| StoreError::Corrupt(format!("encode webhook: {e}")))?;
            self.enqueue(mo::event_id(msg.id), MessageId(msg.id.0), &client, url, body, now_ms)?;
        } else if let Some(suppressed) = crate::observe::events::log_due(msg.link.as_str(), "mo_unrouted") {
            tracing::warn!(id = %msg.id, to = %msg.to, link = %msg.link, suppressed, "inbound message matches no [[mo_routes]] entry; kept, not delivered");
        }
        Ok(OpOutcome::InboundKept(Box::new(msg)))
    }

    /// Removes a settled event from the outbox and its indexes, and makes the message's next
    /// event (if any) due. Returns the removed entry's stored bytes.
    fn settle(&mut self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let removed = self.outbox.remove(seq).map_err(io)?.map(|v| v.value().to_vec());
        let Some(bytes) = removed else {
            return Ok(None);
        };
        let entry: OutboxEntry = decode(&bytes)?;
        let id = entry.message_id.0;
        let client = entry.client.as_str();
        let pending = self.per_client.get(client).map_err(io)?.map_or(0, |v| v.value());
        if pending > 1 {
            self.per_client.insert(client, pending - 1).map_err(io)?;
        } else {
            self.per_client.remove(client).map_err(io)?;
        }
        self.due.remove((entry.next_at_ms, seq)).map_err(io)?;
        self.by_message.remove((id, seq)).map_err(io)?;
        let next = self.by_message.range((id, 0)..=(id, u64::MAX)).map_err(io)?.next().transpose().map_err(io)?;
        if let Some((key, _)) = next {
            let (_, next_seq) = key.value();
            let stored = self.outbox.get(next_seq).map_err(io)?;
            let next_entry: Option<OutboxEntry> = stored.map(|v| decode(v.value())).transpose()?;
            if let Some(n) = next_entry {
                self.due.insert((n.next_at_ms, next_seq), ()).map_err(io)?;
            }
        }
        Ok(Some(bytes))
    }

    fn webhook_done(&mut self, seq: u64) -> Result<OpOutcome, StoreError> {
        self.settle(seq)?;
        Ok(OpOutcome::Stored)
    }

    fn webhook_retry(&mut self, seq: u64, next_at_ms: u64) -> Result<OpOutcome, StoreError> {
        let stored = self.outbox.get(seq).map_err(io)?;
        let Some(mut entry) = stored.map(|v| decode::<OutboxEntry>(v.value())).transpose()? else {
            return Ok(OpOutcome::Stored);
        };
        let was_due = self.due.remove((entry.next_at_ms, seq)).map_err(io)?.is_some();
        entry.attempts = entry.attempts.saturating_add(1);
        entry.next_at_ms = next_at_ms;
        self.outbox.insert(seq, encode(&entry)?.as_slice()).map_err(io)?;
        if was_due {
            self.due.insert((next_at_ms, seq), ()).map_err(io)?;
        }
        Ok(OpOutcome::Stored)
    }

    fn webhook_failed(&mut self, seq: u64) -> Result<OpOutcome, StoreError> {
        if let Some(bytes) = self.settle(seq)? {
            self.failed.insert(seq, bytes.as_slice()).map_err(io)?;
        }
        Ok(OpOutcome::Stored)
    }

    fn write_record(&mut self, rec: &MessageRecord) -> Result<(), StoreError> {
        self.messages.insert(rec.id.to_bytes().as_slice(), encode(rec)?.as_slice()).map_err(io)?;
        Ok(())
    }
}

// === helpers ===

/// When a put's event happened: its last transition.
fn now_of(rec: &MessageRecord) -> u64 {
    rec.transitions.last().map_or(0, |t| t.at_ms)
}

/// link + 0x00 + SMSC id: link names never contain NUL, so the key is unambiguous.
/// Index key: link, 0x00, the SMSC id lower-cased without leading zeros, so `0A1B` from a
/// receipt finds `a1b` from a submit_sm_resp.
fn smsc_key(link: &LinkId, smsc: &SmscMessageId) -> Vec<u8> {
    let link = link.as_str().as_bytes();
    let trimmed = smsc.as_str().trim_start_matches('0');
    let smsc = if trimmed.is_empty() && !smsc.as_str().is_empty() { "0" } else { trimmed };
    let mut key = Vec::with_capacity(link.len() + 1 + smsc.len());
    key.extend_from_slice(link);
    key.push(0);
    key.extend(smsc.bytes().map(|b| b.to_ascii_lowercase()));
    key
}

/// Index value: the message id (8 bytes, big-endian) and the part (2 bytes, big-endian).
fn index_value(id: MessageId, part: usize) -> [u8; 10] {
    let mut v = [0u8; 10];
    v[..8].copy_from_slice(&id.to_bytes());
    v[8..].copy_from_slice(&(part as u16).to_be_bytes());
    v
}

fn from_index_value(b: &[u8]) -> Result<(MessageId, usize), StoreError> {
    let v =
        <[u8; 10]>::try_from(b).map_err(|_| StoreError::Corrupt(format!("smsc index value of {} bytes", b.len())))?;
    let id = u64::from_be_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
    Ok((MessageId(id), usize::from(u16::from_be_bytes([v[8], v[9]]))))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(format!("encode: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(format!("decode: {e}")))
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ClientId;
    use crate::state::record::Status;
    use crate::state::test_util::{receipt, record};

    fn statuses(rec: &MessageRecord) -> Vec<Status> {
        rec.transitions.iter().map(|t| t.status).collect()
    }

    #[test]
    fn put_then_get() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        let rec = record(1, None);
        let out = store.apply(&[Op::Put(rec.clone())]).unwrap();
        assert_eq!(out, vec![OpOutcome::Stored]);
        assert_eq!(store.get(MessageId(1)).unwrap(), Some(rec));
        assert_eq!(store.get(MessageId(2)).unwrap(), None);
    }

    #[test]
    fn receipt_after_put_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        store.apply(&[Op::Put(record(1, None))]).unwrap();
        store.apply(&[Op::Put(record(1, Some("ab12")))]).unwrap();
        let out = store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
        assert_eq!(out, vec![OpOutcome::ReceiptApplied(MessageId(1), ClientId::new("acme"))]);
        let rec = store.get(MessageId(1)).unwrap().unwrap();
        assert_eq!(rec.status, Status::Delivered);
        assert_eq!(statuses(&rec), [Status::Accepted, Status::Submitted, Status::Delivered]);
        assert_eq!(rec.transitions[2].error_code.as_deref(), Some("000"));
    }

    #[test]
    fn receipt_before_put_is_parked_then_applied() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        let out = store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
        assert_eq!(out, vec![OpOutcome::ReceiptParked]);
        store.apply(&[Op::Put(record(1, Some("ab12")))]).unwrap();
        let rec = store.get(MessageId(1)).unwrap().unwrap();
        assert_eq!(rec.status, Status::Delivered);
        // The parked receipt is gone: a second one is a duplicate, not parked again.
        let out = store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
        assert_eq!(out, vec![OpOutcome::ReceiptDuplicate(MessageId(1))]);
        let txn = store.db.begin_read().unwrap();
        assert!(txn.open_table(PARKED).unwrap().first().unwrap().is_none());
    }

    #[test]
    fn duplicate_receipt_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        store.apply(&[Op::Put(record(1, Some("ab12")))]).unwrap();
        store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
        let before = store.get(MessageId(1)).unwrap();
        let out = store.apply(&[Op::Receipt(receipt("ab12", Status::Undeliverable))]).unwrap();
        assert_eq!(out, vec![OpOutcome::ReceiptDuplicate(MessageId(1))]);
        assert_eq!(store.get(MessageId(1)).unwrap(), before);
    }

    #[test]
    fn later_ops_in_a_batch_see_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        let out = store
            .apply(&[
                Op::Receipt(receipt("p1", Status::Delivered)),
                Op::Put(record(1, None)),
                Op::Put(record(1, Some("p1"))),
                Op::Put(record(2, Some("ab12"))),
                Op::Receipt(receipt("ab12", Status::Expired)),
                Op::Receipt(receipt("ab12", Status::Delivered)),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                OpOutcome::ReceiptParked,
                OpOutcome::Stored,
                OpOutcome::Stored,
                OpOutcome::Stored,
                OpOutcome::ReceiptApplied(MessageId(2), ClientId::new("acme")),
                OpOutcome::ReceiptDuplicate(MessageId(2)),
            ]
        );
        assert_eq!(store.get(MessageId(1)).unwrap().unwrap().status, Status::Delivered);
        assert_eq!(store.get(MessageId(2)).unwrap().unwrap().status, Status::Expired);
    }

    #[test]
    fn parked_final_receipt_is_not_hidden_by_a_late_intermediate_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        store
            .apply(&[Op::Receipt(receipt("ab12", Status::Delivered)), Op::Receipt(receipt("ab12", Status::Unknown))])
            .unwrap();
        store.apply(&[Op::Put(record(1, Some("ab12")))]).unwrap();
        let rec = store.get(MessageId(1)).unwrap().unwrap();
        assert_eq!(rec.status, Status::Delivered);
    }

    #[test]
    fn reopen_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = EmbeddedStore::open(dir.path()).unwrap();
            store
                .apply(&[
                    Op::Put(record(1, Some("ab12"))),
                    Op::Receipt(receipt("ab12", Status::Delivered)),
                    Op::Receipt(receipt("later", Status::Delivered)),
                    Op::Put(record(3, None)),
                ])
                .unwrap();
        }
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get(MessageId(1)).unwrap().unwrap().status, Status::Delivered);
        assert_eq!(store.get(MessageId(3)).unwrap(), Some(record(3, None)));
        // Index and parked receipt survived too.
        let out =
            store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered)), Op::Put(record(2, Some("later")))]).unwrap();
        assert_eq!(out, vec![OpOutcome::ReceiptDuplicate(MessageId(1)), OpOutcome::Stored]);
        assert_eq!(store.get(MessageId(2)).unwrap().unwrap().status, Status::Delivered);
    }

    fn hooked(dir: &Path, events: &str) -> EmbeddedStore {
        let toml = format!(
            "name = \"acme\"\napi_key = \"k\"\nwebhook_url = \"http://127.0.0.1:9/h\"\nwebhook_events = {events}\n"
        );
        let client: crate::config::ClientConfig = toml::from_str(&toml).unwrap();
        EmbeddedStore::open(dir).unwrap().with_webhooks(WebhookTargets::new(&[client], 1_000, Arc::default()))
    }

    fn seqs(entries: &[OutboxEntry]) -> Vec<(u64, String)> {
        entries.iter().map(|e| (e.seq, e.event_id.clone())).collect()
    }

    #[test]
    fn a_final_receipt_owes_one_webhook_in_the_same_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = hooked(dir.path(), "[\"final\"]");
        store.apply(&[Op::Put(record(1, Some("ab12")))]).unwrap();
        assert!(store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap().is_empty(), "submitted not asked for");
        store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
        store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
        let due = store.outbox_reader().due_webhooks(2_000, 10).unwrap();
        assert_eq!(seqs(&due), [(1, format!("{}.final", MessageId(1)))], "duplicates owe nothing");
        assert_eq!(due[0].url, "http://127.0.0.1:9/h");
        let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
        assert_eq!(body["status"], "delivered");
        assert_eq!(body["client_ref"], "ref-1");
        assert_eq!(body["smsc_done_date"], serde_json::Value::Null);
        assert_eq!(body["timestamps"]["smsc_done_date"], "2511231204");
        assert!(store.outbox_reader().due_webhooks(1_999, 10).unwrap().is_empty(), "not due before it was owed");
    }

    #[test]
    fn events_of_one_message_are_due_in_order_and_settled_durably() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = hooked(dir.path(), "[\"submitted\", \"final\"]");
            store
                .apply(&[
                    Op::Put(record(1, Some("a"))),
                    Op::Put(record(2, Some("b"))),
                    Op::Receipt(receipt("a", Status::Delivered)),
                ])
                .unwrap();
            let due = store.outbox_reader().due_webhooks(5_000, 10).unwrap();
            // Message 1's final waits behind its submitted event.
            assert_eq!(due.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
            store.apply(&[Op::WebhookRetry { seq: 1, next_at_ms: 9_000 }, Op::WebhookDone(2)]).unwrap();
            assert!(
                store.outbox_reader().due_webhooks(5_000, 10).unwrap().is_empty(),
                "1.final is held behind 1.submitted"
            );
            let due = store.outbox_reader().due_webhooks(9_000, 10).unwrap();
            assert_eq!((due[0].seq, due[0].attempts), (1, 1));
        }
        let mut store = hooked(dir.path(), "[\"submitted\", \"final\"]");
        store.apply(&[Op::WebhookDone(1)]).unwrap();
        let due = store.outbox_reader().due_webhooks(9_000, 10).unwrap();
        assert_eq!(seqs(&due), [(3, format!("{}.final", MessageId(1)))]);
        store.apply(&[Op::WebhookFailed(3), Op::Receipt(receipt("b", Status::Expired))]).unwrap();
        let due = store.outbox_reader().due_webhooks(9_000, 10).unwrap();
        assert_eq!(due.iter().map(|e| e.seq).collect::<Vec<_>>(), [4], "sequence numbers never go back");
        let txn = store.db.begin_read().unwrap();
        assert!(txn.open_table(FAILED).unwrap().get(3).unwrap().is_some());
    }

    #[test]
    fn a_parked_receipt_applied_by_a_put_owes_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = hooked(dir.path(), "[\"submitted\", \"final\"]");
        store.apply(&[Op::Receipt(receipt("ab12", Status::Undeliverable)), Op::Put(record(1, Some("ab12")))]).unwrap();
        let due = store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap();
        assert_eq!(due.len(), 1, "the final waits behind the submitted");
        store.apply(&[Op::WebhookDone(due[0].seq)]).unwrap();
        let due = store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap();
        let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
        assert_eq!(body["status"], "undeliverable");
    }

    #[test]
    fn a_backlog_waiting_for_retries_hides_no_due_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = hooked(dir.path(), "[\"final\"]");
        let mut ops = Vec::new();
        for i in 0..500u64 {
            ops.push(Op::Put(record(i, Some(&format!("s{i}")))));
            ops.push(Op::Receipt(receipt(&format!("s{i}"), Status::Delivered)));
        }
        store.apply(&ops).unwrap();
        let reader = store.outbox_reader();
        let backlog = reader.due_webhooks(2_000, 1_000).unwrap();
        assert_eq!(backlog.len(), 500);
        let retries: Vec<Op> = backlog.iter().map(|e| Op::WebhookRetry { seq: e.seq, next_at_ms: 60_000 }).collect();
        store.apply(&retries).unwrap();
        store.apply(&[Op::Put(record(900, Some("late"))), Op::Receipt(receipt("late", Status::Delivered))]).unwrap();
        let due = reader.due_webhooks(2_000, 1).unwrap();
        assert_eq!(due.iter().map(|e| e.message_id).collect::<Vec<_>>(), [MessageId(900)]);
        assert_eq!(reader.pending().unwrap(), 501);
        assert_eq!(reader.due_webhooks(60_000, 1_000).unwrap().len(), 501);
    }

    #[test]
    fn a_full_client_share_keeps_new_events_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let client: crate::config::ClientConfig =
            toml::from_str("name = \"acme\"\napi_key = \"k\"\nwebhook_url = \"http://127.0.0.1:9/h\"\n").unwrap();
        let overflowed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let targets = WebhookTargets::new(&[client], 2, Arc::clone(&overflowed));
        let mut store = EmbeddedStore::open(dir.path()).unwrap().with_webhooks(targets);
        let mut ops = Vec::new();
        for i in 0..3u64 {
            ops.push(Op::Put(record(i, Some(&format!("s{i}")))));
            ops.push(Op::Receipt(receipt(&format!("s{i}"), Status::Delivered)));
        }
        store.apply(&ops).unwrap();
        let reader = store.outbox_reader();
        assert_eq!(reader.pending().unwrap(), 2);
        assert_eq!(overflowed.load(std::sync::atomic::Ordering::Relaxed), 1);
        let txn = store.db.begin_read().unwrap();
        assert_eq!(txn.open_table(FAILED).unwrap().len().unwrap(), 1);
        drop(txn);
        // A settled event frees its place.
        store.apply(&[Op::WebhookDone(1)]).unwrap();
        store.apply(&[Op::Put(record(9, Some("s9"))), Op::Receipt(receipt("s9", Status::Delivered))]).unwrap();
        assert_eq!(reader.pending().unwrap(), 2);
        assert_eq!(overflowed.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn without_a_url_nothing_is_owed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        store.apply(&[Op::Put(record(1, Some("ab12"))), Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
        assert!(store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap().is_empty());
        let mut rec = record(2, Some("cd34"));
        rec.callback_url = Some("http://127.0.0.1:9/own".to_owned());
        store.apply(&[Op::Put(rec), Op::Receipt(receipt("cd34", Status::Delivered))]).unwrap();
        let due = store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap();
        assert_eq!(due.iter().map(|e| e.url.as_str()).collect::<Vec<_>>(), ["http://127.0.0.1:9/own"]);
    }

    fn mo_store(dir: &Path) -> (EmbeddedStore, Arc<MoRouter>) {
        let client: crate::config::ClientConfig =
            toml::from_str("name = \"acme\"\napi_key = \"k\"\nmo_url = \"http://127.0.0.1:9/mo\"\n").unwrap();
        let rules: crate::config::Rules = toml::from_str("[[mo_routes]]\nto = \"12345\"\nclient = \"acme\"\n").unwrap();
        let router = Arc::new(MoRouter::new(std::slice::from_ref(&client), &rules.mo_routes, Arc::default()));
        let store = EmbeddedStore::open(dir)
            .unwrap()
            .with_webhooks(WebhookTargets::new(&[client], 1_000, Arc::default()))
            .with_mo_router(Arc::clone(&router));
        (store, router)
    }

    fn mo(id: u64, to: &str, part: Option<(u8, u8)>, text: &str, at: u64) -> Op {
        Op::Inbound(MoPart {
            id: InboundId(id),
            link: LinkId::new("100"),
            from: "4915112345678".into(),
            to: to.into(),
            data_coding: 0,
            part_of: part.map(|(total, seq)| crate::smpp::concat::PartOf { reference: 42, total, seq }),
            octets: crate::smpp::encoding::encode(text).bytes,
            received_at_ms: at,
        })
    }

    #[test]
    fn an_mo_is_kept_routed_and_owes_its_webhook_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, router) = mo_store(dir.path());
        let out =
            store.apply(&[mo(7, "12345", None, "Hello @ €", 1_000), mo(8, "99999", None, "lost?", 1_001)]).unwrap();
        let OpOutcome::InboundKept(m) = &out[0] else { panic!("{out:?}") };
        assert_eq!((m.text.as_deref(), m.client.as_ref().map(|c| c.as_str())), (Some("Hello @ €"), Some("acme")));
        let OpOutcome::InboundKept(unrouted) = &out[1] else { panic!("{out:?}") };
        assert_eq!(unrouted.client, None);
        assert_eq!(store.get_inbound(InboundId(8)).unwrap().unwrap().text.as_deref(), Some("lost?"), "kept");
        let due = store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap();
        assert_eq!(due.len(), 1, "the unrouted one is posted nowhere");
        assert_eq!(
            (due[0].url.as_str(), due[0].event_id.clone()),
            ("http://127.0.0.1:9/mo", format!("{}.inbound", InboundId(7)))
        );
        let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
        assert_eq!((body["text"].as_str(), body["to"].as_str()), (Some("Hello @ €"), Some("12345")));
        let s = router.stats();
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!((s.parts.load(Relaxed), s.messages.load(Relaxed), s.unrouted.load(Relaxed)), (2, 2, 1));
    }

    #[test]
    fn mo_parts_wait_for_their_partners_across_batches_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, _) = mo_store(dir.path());
            let out =
                store.apply(&[mo(3, "12345", Some((3, 3)), "!", 10), mo(1, "12345", Some((3, 1)), "Hel", 11)]).unwrap();
            assert_eq!(out, vec![OpOutcome::InboundPartKept, OpOutcome::InboundPartKept]);
            assert_eq!(store.outbox_reader().oldest_inbound_group().unwrap(), Some(10));
        }
        let (mut store, router) = mo_store(dir.path());
        let out = store.apply(&[mo(9, "12345", Some((3, 1)), "XXX", 12)]).unwrap();
        assert_eq!(out, vec![OpOutcome::InboundPartDuplicate]);
        let out = store.apply(&[mo(2, "12345", Some((3, 2)), "lo", 13)]).unwrap();
        let OpOutcome::InboundKept(m) = &out[0] else { panic!("{out:?}") };
        assert_eq!((m.id, m.text.as_deref(), m.incomplete), (InboundId(1), Some("Hello!"), false));
        assert_eq!(store.outbox_reader().oldest_inbound_group().unwrap(), None, "the group is gone");
        assert_eq!(router.stats().duplicate_parts.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn expired_groups_are_delivered_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = mo_store(dir.path());
        store.apply(&[mo(1, "12345", Some((3, 1)), "Hel", 100), mo(5, "12345", Some((2, 2)), "late", 500)]).unwrap();
        let out = store.apply(&[Op::InboundExpire { before_ms: 200 }]).unwrap();
        assert_eq!(out, vec![OpOutcome::InboundExpired(1)]);
        let m = store.get_inbound(InboundId(1)).unwrap().unwrap();
        assert_eq!(
            (m.text.as_deref(), m.incomplete, m.parts_received.clone(), m.completed_at_ms),
            (Some("Hel"), true, vec![1], 200)
        );
        assert_eq!(store.outbox_reader().oldest_inbound_group().unwrap(), Some(500), "the younger group waits on");
        let due = store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap();
        let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
        assert_eq!(
            (body["incomplete"].as_bool(), body["segments"]["received"].clone()),
            (Some(true), serde_json::json!([1]))
        );
    }

    #[test]
    fn empty_batch_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.apply(&[]).unwrap(), Vec::new());
    }
}
