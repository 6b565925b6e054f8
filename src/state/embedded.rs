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
//!
//! One `apply` is one redb write transaction committed with `Durability::Immediate`: one sync
//! per batch, all or nothing. Reads inside the transaction see its earlier writes, so a later op
//! of a batch sees what an earlier op of the same batch did without an overlay of our own.

use super::record::{MessageRecord, Receipt, ReceiptEffect, Status};
use super::store::{Op, OpOutcome, OutboxRead, StateStore, StoreError};
use crate::ids::{LinkId, MessageId, SmscMessageId};
use crate::notify::outbox::{self, Event, OutboxEntry, WebhookTargets};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("messages");
const SMSC_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("smsc_index");
const PARKED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("parked_receipts");
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
        let last_owed = txn.open_table(OUTBOX).map_err(io)?.last().map_err(io)?.map(|(k, _)| k.value());
        let last_failed = txn.open_table(FAILED).map_err(io)?.last().map_err(io)?.map(|(k, _)| k.value());
        txn.open_table(DUE).map_err(io)?;
        txn.open_table(BY_MESSAGE).map_err(io)?;
        txn.open_table(PER_CLIENT).map_err(io)?;
        txn.commit().map_err(io)?;
        let next_seq = last_owed.max(last_failed).map_or(1, |s| s + 1);
        Ok(EmbeddedStore { db: Arc::new(db), targets: WebhookTargets::default(), next_seq })
    }

    /// Sets the clients' webhook defaults (`[[clients]] webhook_url`, `webhook_events`).
    pub fn with_webhooks(mut self, targets: WebhookTargets) -> Self {
        self.targets = targets;
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
                targets: &self.targets,
                next_seq: self.next_seq,
            };
            for op in batch {
                outcomes.push(match op {
                    Op::Put(rec) => tables.put(rec)?,
                    Op::Receipt(r) => tables.receipt(r)?,
                    Op::WebhookDone(seq) => tables.webhook_done(*seq)?,
                    Op::WebhookRetry { seq, next_at_ms } => tables.webhook_retry(*seq, *next_at_ms)?,
                    Op::WebhookFailed(seq) => tables.webhook_failed(*seq)?,
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
    targets: &'a WebhookTargets,
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
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = OutboxEntry {
            seq,
            event_id: outbox::event_id(rec.id, event),
            message_id: rec.id,
            client: rec.client.clone(),
            url: url.to_owned(),
            body,
            created_at_ms: now_ms,
            attempts: 0,
            next_at_ms: now_ms,
        };
        let client = rec.client.as_str();
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
        let id = rec.id.0;
        let waits_behind_another = self.by_message.range((id, 0)..=(id, u64::MAX)).map_err(io)?.next().is_some();
        self.by_message.insert((id, seq), ()).map_err(io)?;
        if !waits_behind_another {
            self.due.insert((now_ms, seq), ()).map_err(io)?;
        }
        Ok(())
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

    #[test]
    fn empty_batch_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.apply(&[]).unwrap(), Vec::new());
    }
}
