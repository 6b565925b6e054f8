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

use super::record::{MessageRecord, Receipt, ReceiptEffect};
use super::store::{Op, OpOutcome, StateStore, StoreError};
use crate::ids::{LinkId, MessageId, SmscMessageId};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition};
use std::path::Path;

const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("messages");
const SMSC_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("smsc_index");
const PARKED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("parked_receipts");

/// The file inside the state directory.
const FILE_NAME: &str = "state.redb";

/// redb page cache, bytes.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The embedded backend. Owned by the writer thread; `get` may also run there.
pub struct EmbeddedStore {
    db: Database,
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
        txn.commit().map_err(io)?;
        Ok(EmbeddedStore { db })
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
        {
            let mut tables = Tables {
                messages: txn.open_table(MESSAGES).map_err(io)?,
                index: txn.open_table(SMSC_INDEX).map_err(io)?,
                parked: txn.open_table(PARKED).map_err(io)?,
            };
            for op in batch {
                outcomes.push(match op {
                    Op::Put(rec) => tables.put(rec)?,
                    Op::Receipt(r) => tables.receipt(r)?,
                });
            }
        }
        // An early return above drops `txn` uncommitted: redb aborts it, nothing is written.
        txn.commit().map_err(io)?;
        Ok(outcomes)
    }

    fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let messages = txn.open_table(MESSAGES).map_err(io)?;
        let stored = messages.get(id.to_bytes().as_slice()).map_err(io)?;
        stored.map(|v| decode(v.value())).transpose()
    }
}

// === impl Tables ===

/// The three tables open in one write transaction.
struct Tables<'txn> {
    messages: Table<'txn, &'static [u8], &'static [u8]>,
    index: Table<'txn, &'static [u8], &'static [u8]>,
    parked: Table<'txn, &'static [u8], &'static [u8]>,
}

impl Tables<'_> {
    fn put(&mut self, rec: &MessageRecord) -> Result<OpOutcome, StoreError> {
        let mut rec = rec.clone();
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
        if rec.apply_receipt(part, r) == ReceiptEffect::Duplicate {
            return Ok(OpOutcome::ReceiptDuplicate(id));
        }
        self.write_record(&rec)?;
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

    fn write_record(&mut self, rec: &MessageRecord) -> Result<(), StoreError> {
        self.messages.insert(rec.id.to_bytes().as_slice(), encode(rec)?.as_slice()).map_err(io)?;
        Ok(())
    }
}

// === helpers ===

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
    use crate::ids::{ClientId, Msisdn};
    use crate::state::record::{Part, Status, Transition};

    fn record(id: u64, smsc: Option<&str>) -> MessageRecord {
        let mut rec = MessageRecord {
            id: MessageId(id),
            client: ClientId::new("acme"),
            to: Msisdn("4915112345678".to_owned()),
            from: "ACME".to_owned(),
            link: LinkId::new("vf-1"),
            route: String::new(),
            client_ref: Some("ref-1".to_owned()),
            segments: 1,
            parts: vec![Part::default()],
            status: Status::Accepted,
            transitions: Vec::new(),
        };
        rec.push(Transition::at(Status::Accepted, 1_000));
        if let Some(s) = smsc {
            rec.parts[0].smsc_message_id = Some(SmscMessageId::new(s));
            rec.parts[0].status = Some(Status::Submitted);
            rec.push(Transition::at(Status::Submitted, 1_010));
        }
        rec
    }

    fn receipt(smsc: &str, status: Status) -> Receipt {
        Receipt {
            link: LinkId::new("vf-1"),
            smsc_message_id: SmscMessageId::new(smsc),
            status,
            error_code: Some("000".to_owned()),
            smsc_done_date: Some("2511231204".to_owned()),
            received_at_ms: 2_000,
        }
    }

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

    #[test]
    fn empty_batch_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.apply(&[]).unwrap(), Vec::new());
    }
}
