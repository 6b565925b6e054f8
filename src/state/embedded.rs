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
//! - `wal`: the sequence of the last write-ahead-log record applied (`applied`).
//!
//! One `apply` logs the batch in the write-ahead log ([`super::wal`]) and syncs it, then runs
//! the ops in one redb write transaction committed with `Durability::None` (no sync of its own),
//! which also records the log sequence applied: all or nothing. A checkpoint (a durable redb
//! commit) runs before a batch once `state.checkpoint_interval_ms` has passed since the last one
//! or when the current log file is full, and when the store is dropped; opening the
//! store replays the records a crash left above redb's durable sequence, then checkpoints. Reads
//! inside the transaction see its earlier writes, so a later op of a batch sees what an earlier
//! op of the same batch did without an overlay of our own. Readers (the webhook sender, `get`)
//! see a batch only after its log record is durable.

use super::ops::{apply_op, decode, encode, Tables};
use super::record::{MessageRecord, Receipt};
use super::store::{Op, OpOutcome, OutboxRead, StateStore, StoreError};
use super::wal::{Recovered, Wal};
use crate::ids::{ClientId, InboundId, MessageId};
use crate::notify::mo::{InboundMessage, MoGroup, MoRouter};
use crate::notify::outbox::{OutboxEntry, WebhookTargets};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// `"applied"` → the sequence of the last write-ahead-log record applied.
const WAL: TableDefinition<&str, u64> = TableDefinition::new("wal");
const APPLIED: &str = "applied";

/// The file inside the state directory.
const FILE_NAME: &str = "state.redb";

/// `state.checkpoint_interval_ms` when not set.
const DEFAULT_CHECKPOINT_MS: u64 = 20;

/// redb page cache, bytes.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The embedded backend's counters, for the metrics module.
#[derive(Debug, Default)]
pub struct EmbeddedStats {
    /// Checkpoints (durable redb commits) made.
    pub checkpoints: AtomicU64,
    /// Time they took, microseconds: the writer takes no batch meanwhile.
    pub checkpoint_us: AtomicU64,
    /// The longest one since start, microseconds.
    pub checkpoint_max_us: AtomicU64,
    /// Logged batches replayed at start-up after an unclean stop.
    pub replayed: AtomicU64,
}

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
    /// Batches are durable here before redb applies them.
    wal: Wal,
    /// Logged batches a crash left unapplied, until [`EmbeddedStore::recover`] applies them.
    unapplied: Vec<Recovered>,
    /// When the last checkpoint ran, and how long the store waits before the next.
    last_checkpoint: Instant,
    checkpoint_every: Duration,
    stats: Arc<EmbeddedStats>,
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
        let applied = txn.open_table(WAL).map_err(io)?.get(APPLIED).map_err(io)?.map_or(0, |v| v.value());
        txn.commit().map_err(io)?;
        let next_seq = last_owed.max(last_failed).map_or(1, |s| s + 1);
        let (wal, unapplied) = Wal::open(dir, applied)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            targets: WebhookTargets::default(),
            mo_router: Arc::default(),
            next_seq,
            wal,
            unapplied,
            last_checkpoint: Instant::now(),
            checkpoint_every: Duration::from_millis(DEFAULT_CHECKPOINT_MS),
            stats: Arc::default(),
        })
    }

    /// Applies the batches a crash left in the write-ahead log but not in redb, in order, then
    /// checkpoints. Call it once the webhook targets and the MO router are set (replayed ops owe
    /// webhooks and route MO like the originals); `apply` calls it too, so that nothing new
    /// overtakes them. A batch that fails again is skipped with an error in the log.
    pub fn recover(&mut self) -> Result<(), StoreError> {
        if self.unapplied.is_empty() {
            return Ok(());
        }
        let unapplied = std::mem::take(&mut self.unapplied);
        let (first, last) = (unapplied[0].seq, unapplied[unapplied.len() - 1].seq);
        self.stats.replayed.fetch_add(unapplied.len() as u64, Ordering::Relaxed);
        for r in unapplied {
            let replayed = decode::<Vec<Op>>(&r.payload).and_then(|ops| self.commit(&ops, r.seq, Durability::None));
            if let Err(e) = replayed {
                tracing::error!(seq = r.seq, error = %e, "state: a logged batch could not be replayed; skipped");
                self.commit(&[], r.seq, Durability::None)?;
            }
        }
        self.checkpoint()?;
        tracing::info!(first, last, "state: replayed the write-ahead log after an unclean stop");
        Ok(())
    }

    /// Makes every commit so far durable in redb, after which the log is not needed for them:
    /// the log starts its other file.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut txn = self.db.begin_write().map_err(io)?;
        txn.set_durability(Durability::Immediate).map_err(io)?;
        txn.commit().map_err(io)?;
        self.wal.restart();
        self.last_checkpoint = Instant::now();
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.stats.checkpoint_us.fetch_add(took, Ordering::Relaxed);
        self.stats.checkpoint_max_us.fetch_max(took, Ordering::Relaxed);
        Ok(())
    }

    /// The store's counters, for the metrics module.
    pub fn stats(&self) -> Arc<EmbeddedStats> {
        Arc::clone(&self.stats)
    }

    /// Runs `batch` in one redb transaction that also records `seq` as applied.
    fn commit(&mut self, batch: &[Op], seq: u64, durability: Durability) -> Result<Vec<OpOutcome>, StoreError> {
        let mut txn = self.db.begin_write().map_err(io)?;
        txn.set_durability(durability).map_err(io)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let next_seq;
        {
            let mut tables = RedbTables {
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
                outcomes.push(apply_op(&mut tables, op)?);
            }
            next_seq = tables.next_seq;
            txn.open_table(WAL).map_err(io)?.insert(APPLIED, seq).map_err(io)?;
        }
        // An early return above drops `txn` uncommitted: redb aborts it, nothing is written.
        txn.commit().map_err(io)?;
        self.next_seq = next_seq;
        Ok(outcomes)
    }

    /// Sets the clients' webhook defaults (`[[clients]] webhook_url`, `webhook_events`).
    pub fn with_webhooks(mut self, targets: WebhookTargets) -> Self {
        self.targets = targets;
        self
    }

    /// Sets the longest time between checkpoints while writes come (`state.checkpoint_interval_ms`).
    /// Longer: fewer durable redb commits, but each takes longer (it holds up the batches behind
    /// it) and a crash leaves more to replay. 0 checkpoints before every batch.
    pub fn with_checkpoint_interval(mut self, every: Duration) -> Self {
        self.checkpoint_every = every;
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
        self.recover()?;
        let payload = encode(&batch)?;
        if !self.wal.fits(payload.len()) || self.last_checkpoint.elapsed() >= self.checkpoint_every {
            self.checkpoint()?;
        }
        let seq = self.wal.append(&payload)?;
        self.commit(batch, seq, Durability::None)
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
struct RedbTables<'txn, 'a> {
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

impl Tables for RedbTables<'_, '_> {
    fn targets(&self) -> &WebhookTargets {
        self.targets
    }

    fn message(&mut self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let stored = self.messages.get(id.to_bytes().as_slice()).map_err(io)?;
        stored.map(|v| decode(v.value())).transpose()
    }

    fn set_message(&mut self, rec: &MessageRecord) -> Result<(), StoreError> {
        self.messages.insert(rec.id.to_bytes().as_slice(), encode(rec)?.as_slice()).map_err(io)?;
        Ok(())
    }

    fn lookup(&mut self, key: &[u8]) -> Result<Option<(MessageId, usize)>, StoreError> {
        let indexed = self.index.get(key).map_err(io)?;
        indexed.map(|v| from_index_value(v.value())).transpose()
    }

    fn set_lookup(&mut self, key: &[u8], id: MessageId, part: usize) -> Result<(), StoreError> {
        self.index.insert(key, index_value(id, part).as_slice()).map_err(io)?;
        Ok(())
    }

    fn parked(&mut self, key: &[u8]) -> Result<Option<Receipt>, StoreError> {
        let stored = self.parked.get(key).map_err(io)?;
        stored.map(|v| decode(v.value())).transpose()
    }

    fn set_parked(&mut self, key: &[u8], r: &Receipt) -> Result<(), StoreError> {
        self.parked.insert(key, encode(r)?.as_slice()).map_err(io)?;
        Ok(())
    }

    fn take_parked(&mut self, key: &[u8]) -> Result<Option<Receipt>, StoreError> {
        let removed = self.parked.remove(key).map_err(io)?;
        removed.map(|v| decode(v.value())).transpose()
    }

    fn outbox(&mut self, seq: u64) -> Result<Option<OutboxEntry>, StoreError> {
        let stored = self.outbox.get(seq).map_err(io)?;
        stored.map(|v| decode(v.value())).transpose()
    }

    fn set_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.outbox.insert(entry.seq, encode(entry)?.as_slice()).map_err(io)?;
        Ok(())
    }

    fn remove_outbox(&mut self, seq: u64) -> Result<Option<OutboxEntry>, StoreError> {
        let removed = self.outbox.remove(seq).map_err(io)?;
        removed.map(|v| decode(v.value())).transpose()
    }

    fn add_failed(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.failed.insert(entry.seq, encode(entry)?.as_slice()).map_err(io)?;
        Ok(())
    }

    fn set_due(&mut self, at_ms: u64, seq: u64) -> Result<(), StoreError> {
        self.due.insert((at_ms, seq), ()).map_err(io)?;
        Ok(())
    }

    fn remove_due(&mut self, at_ms: u64, seq: u64) -> Result<bool, StoreError> {
        Ok(self.due.remove((at_ms, seq)).map_err(io)?.is_some())
    }

    fn queue_head(&mut self, id: MessageId) -> Result<Option<u64>, StoreError> {
        let first = self.by_message.range((id.0, 0)..=(id.0, u64::MAX)).map_err(io)?.next().transpose().map_err(io)?;
        Ok(first.map(|(key, _)| key.value().1))
    }

    fn enqueue(&mut self, id: MessageId, seq: u64) -> Result<(), StoreError> {
        self.by_message.insert((id.0, seq), ()).map_err(io)?;
        Ok(())
    }

    fn dequeue(&mut self, id: MessageId, seq: u64) -> Result<(), StoreError> {
        self.by_message.remove((id.0, seq)).map_err(io)?;
        Ok(())
    }

    fn pending_of(&mut self, client: &ClientId) -> Result<u64, StoreError> {
        Ok(self.per_client.get(client.as_str()).map_err(io)?.map_or(0, |v| v.value()))
    }

    fn add_pending(&mut self, client: &ClientId, delta: i64) -> Result<(), StoreError> {
        let n = self.pending_of(client)?.saturating_add_signed(delta);
        if n == 0 {
            self.per_client.remove(client.as_str()).map_err(io)?;
        } else {
            self.per_client.insert(client.as_str(), n).map_err(io)?;
        }
        Ok(())
    }

    fn next_seq(&mut self) -> Result<u64, StoreError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    fn mo_router(&self) -> &MoRouter {
        self.mo_router
    }

    fn inbound_group(&mut self, key: &[u8]) -> Result<Option<MoGroup>, StoreError> {
        let stored = self.inbound_parts.get(key).map_err(io)?;
        stored.map(|v| decode(v.value())).transpose()
    }

    fn set_inbound_group(&mut self, key: &[u8], group: &MoGroup) -> Result<(), StoreError> {
        self.inbound_parts.insert(key, encode(group)?.as_slice()).map_err(io)?;
        Ok(())
    }

    fn remove_inbound_group(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.inbound_parts.remove(key).map_err(io)?;
        Ok(())
    }

    fn inbound_groups_before(&mut self, before_ms: u64) -> Result<Vec<(Vec<u8>, MoGroup)>, StoreError> {
        let mut expired = Vec::new();
        for row in self.inbound_parts.iter().map_err(io)? {
            let (k, v) = row.map_err(io)?;
            let group: MoGroup = decode(v.value())?;
            if group.first_at_ms <= before_ms {
                expired.push((k.value().to_vec(), group));
            }
        }
        Ok(expired)
    }

    fn set_inbound(&mut self, msg: &InboundMessage) -> Result<(), StoreError> {
        self.inbound.insert(msg.id.0, encode(msg)?.as_slice()).map_err(io)?;
        Ok(())
    }
}

// === helpers ===

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

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl Drop for EmbeddedStore {
    /// A clean stop leaves nothing to replay.
    fn drop(&mut self) {
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "state: checkpoint at close failed; the next start replays the log");
        }
    }
}

// The behaviour every backend shares is tested once for both in tests/state_conformance.rs;
// these look at redb's own tables.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::record::Status;
    use crate::state::test_util::{receipt, record};

    /// What a crash now would leave on disk: a copy of the files of the store open in `dir`,
    /// taken before it is closed (redb's own close would commit durably; a crash does not).
    fn crash_copy(dir: &Path) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        for name in [FILE_NAME, "wal-0", "wal-1"] {
            std::fs::copy(dir.join(name), copy.path().join(name)).unwrap();
        }
        copy
    }

    #[test]
    fn a_crash_between_checkpoints_loses_nothing_logged() {
        let dir = tempfile::tempdir().unwrap();
        let never = Duration::from_secs(3600);
        let mut store = EmbeddedStore::open(dir.path()).unwrap().with_checkpoint_interval(never);
        store.apply(&[Op::Put(record(1, Some("a1")))]).unwrap();
        store.apply(&[Op::Put(record(2, Some("a2"))), Op::Receipt(receipt("a1", Status::Delivered))]).unwrap();
        store.apply(&[Op::Receipt(receipt("a3", Status::Delivered))]).unwrap();
        let copy = crash_copy(dir.path());
        drop(store);
        let dir = copy;

        let mut store = EmbeddedStore::open(dir.path()).unwrap().with_checkpoint_interval(never);
        assert_eq!(store.unapplied.len(), 3, "redb alone lost the batches: the log has them");
        store.recover().unwrap();
        assert_eq!(store.stats().replayed.load(Ordering::Relaxed), 3);
        assert_eq!(store.stats().checkpoints.load(Ordering::Relaxed), 1, "recovery ends with a checkpoint");
        assert_eq!(store.get(MessageId(1)).unwrap().unwrap().status, Status::Delivered);
        assert_eq!(store.get(MessageId(2)).unwrap().unwrap().status, Status::Submitted);
        // The parked receipt came back too: the put that brings its SMSC id applies it.
        let out = store.apply(&[Op::Put(record(3, Some("a3")))]).unwrap();
        assert!(matches!(&out[0], OpOutcome::StoredWithReceipts(r) if r.len() == 1), "{out:?}");
        drop(store);

        // A clean close checkpointed: nothing to replay, and nothing applied twice.
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(store.unapplied.is_empty());
        let rec = store.get(MessageId(1)).unwrap().unwrap();
        assert_eq!(rec.transitions.iter().filter(|t| t.status == Status::Delivered).count(), 1);
    }

    #[test]
    fn a_full_log_file_checkpoints_and_carries_on_in_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap().with_checkpoint_interval(Duration::from_secs(3600));
        // ~1 MiB batches: 16 MiB log files fill twice over.
        let mut big = record(0, None);
        big.route = "r".repeat(1 << 20);
        for i in 1..=40u64 {
            big.id = MessageId(i);
            store.apply(&[Op::Put(big.clone())]).unwrap();
        }
        let copy = crash_copy(dir.path());
        drop(store);
        let dir = copy;
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(!store.unapplied.is_empty() && store.unapplied.len() < 16, "{} to replay", store.unapplied.len());
        store.recover().unwrap();
        for i in 1..=40u64 {
            assert!(store.get(MessageId(i)).unwrap().is_some(), "message {i}");
        }
    }

    #[test]
    fn a_used_parked_receipt_leaves_no_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = EmbeddedStore::open(dir.path()).unwrap();
        store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered)), Op::Put(record(1, Some("ab12")))]).unwrap();
        let txn = store.db.begin_read().unwrap();
        assert!(txn.open_table(PARKED).unwrap().first().unwrap().is_none());
    }

    #[test]
    fn given_up_and_overflowing_events_land_in_the_failed_table() {
        let dir = tempfile::tempdir().unwrap();
        let client: crate::config::ClientConfig =
            toml::from_str("name = \"acme\"\napi_key = \"k\"\nwebhook_url = \"http://127.0.0.1:9/h\"\n").unwrap();
        let targets = WebhookTargets::new(&[client], 2, Arc::default());
        let mut store = EmbeddedStore::open(dir.path()).unwrap().with_webhooks(targets);
        let mut ops = Vec::new();
        for i in 0..3u64 {
            ops.push(Op::Put(record(i, Some(&format!("s{i}")))));
            ops.push(Op::Receipt(receipt(&format!("s{i}"), Status::Delivered)));
        }
        store.apply(&ops).unwrap();
        store.apply(&[Op::WebhookFailed(1)]).unwrap();
        let txn = store.db.begin_read().unwrap();
        let failed = txn.open_table(FAILED).unwrap();
        let seqs: Vec<u64> = failed.iter().unwrap().map(|r| r.unwrap().0.value()).collect();
        assert_eq!(seqs, [1, 3]);
        assert_eq!(txn.open_table(OUTBOX).unwrap().len().unwrap(), 1);
    }
}
