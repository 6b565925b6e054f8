//! One batch's view of the Aerospike records: what it read, what it changed.
//!
//! [`Overlay::prefetch`] reads in a few batch calls what the ops will look at (round 1: the
//! receipt lookups of every SMSC id, the records of puts that may owe a webhook, the outbox
//! entries being settled; round 2: the messages those lookups name; then the outbox queues and
//! pending counters of every message that may owe or settle an event). The ops then run on the
//! overlay as on tables ([`Tables`]); a read the prefetch did not foresee costs one round trip.
//! [`Overlay::flush`] writes each changed record once, in batch calls.

use super::{
    blob, last_int, Io, Kind, BIN_DUE, BIN_ENTRY, BIN_GKEY, BIN_GONE, BIN_GROUP, BIN_MID, BIN_MO, BIN_N, BIN_PART,
    BIN_RCPT, BIN_REC, BIN_SEQS,
};
use crate::ids::{ClientId, MessageId};
use crate::notify::mo::{InboundMessage, MoGroup, MoRouter};
use crate::notify::outbox::{OutboxEntry, WebhookTargets};
use crate::state::ops::{decode, encode, smsc_key, Tables};
use crate::state::record::{MessageRecord, Receipt};
use crate::state::store::{Op, StoreError};
use aerospike::operations::scalar;
use aerospike::policy::{CommitLevel, Expiration};
use aerospike::{BatchOperation, BatchWritePolicy, Bin, Key, Record, Value};
use std::collections::HashMap;
use std::time::Instant;

/// Sequence numbers reserved per round trip to the `s` counter. Numbers of a block left unused
/// when the process stops are skipped, never reused.
const SEQ_BLOCK: u64 = 1_024;

/// Outbox sequence numbers reserved and not used yet: `next..=last`.
#[derive(Debug, Default)]
pub(super) struct SeqBlock {
    next: u64,
    last: u64,
}

/// A record as the batch sees it: `value` is `None` when absent (or removed by the batch).
struct Slot<T> {
    value: Option<T>,
    dirty: bool,
}

impl<T> Slot<T> {
    fn read(value: Option<T>) -> Self {
        Slot { value, dirty: false }
    }
}

/// The receipt lookup record of one (link, SMSC id).
#[derive(Clone, Default)]
struct Lookup {
    target: Option<(MessageId, usize)>,
    parked: Option<Receipt>,
    /// This batch set `target` (a put with this SMSC id).
    target_set: bool,
    /// This batch parked `parked` (a receipt before its message).
    parked_set: bool,
    /// The parked receipt this batch applied.
    taken: Option<Receipt>,
}

/// An outbox entry and, if it is its message's head event, when it is due.
#[derive(Clone)]
struct OutboxRow {
    entry: OutboxEntry,
    due: Option<u64>,
}

/// A pending counter: the value read and what this batch adds.
#[derive(Clone, Copy)]
struct Pending {
    read: u64,
    delta: i64,
}

pub(super) struct Overlay<'a> {
    io: &'a Io,
    targets: &'a WebhookTargets,
    mo_router: &'a MoRouter,
    seqs: &'a mut SeqBlock,
    deadline: Instant,
    messages: HashMap<MessageId, Slot<MessageRecord>>,
    lookups: HashMap<Vec<u8>, Slot<Lookup>>,
    outbox: HashMap<u64, Slot<OutboxRow>>,
    queues: HashMap<MessageId, Slot<Vec<u64>>>,
    pending: HashMap<ClientId, Pending>,
    /// Added to the all-clients counter.
    pending_total: i64,
    failed: Vec<OutboxEntry>,
    groups: HashMap<Vec<u8>, Slot<MoGroup>>,
    inbound: Vec<InboundMessage>,
}

// === reading ===

impl<'a> Overlay<'a> {
    pub(super) fn new(
        io: &'a Io,
        targets: &'a WebhookTargets,
        mo_router: &'a MoRouter,
        seqs: &'a mut SeqBlock,
        deadline: Instant,
    ) -> Self {
        Overlay {
            io,
            targets,
            mo_router,
            seqs,
            deadline,
            messages: HashMap::new(),
            lookups: HashMap::new(),
            outbox: HashMap::new(),
            queues: HashMap::new(),
            pending: HashMap::new(),
            pending_total: 0,
            failed: Vec::new(),
            groups: HashMap::new(),
            inbound: Vec::new(),
        }
    }

    /// Reads in batch calls what the ops of `batch` will look at.
    pub(super) fn prefetch(&mut self, batch: &[Op]) -> Result<(), StoreError> {
        let mut want = Want::default();
        for op in batch {
            match op {
                Op::Put(rec) => {
                    for smsc in rec.parts.iter().filter_map(|p| p.smsc_message_id.as_ref()) {
                        want.lookups.push(smsc_key(&rec.link, smsc));
                    }
                    if self.targets.wants_any(rec) {
                        want.messages.push(rec.id);
                    }
                }
                Op::Receipt(r) => want.lookups.push(smsc_key(&r.link, &r.smsc_message_id)),
                Op::WebhookDone(seq) | Op::WebhookFailed(seq) | Op::WebhookRetry { seq, .. } => want.outbox.push(*seq),
                Op::Inbound(part) => want.groups.extend(part.group_key()),
                // Found by a query when the op runs.
                Op::InboundExpire { .. } => {}
            }
        }
        self.fetch(want)?;
        // Round 2: the messages the lookups name.
        let mut want = Want::default();
        for slot in self.lookups.values() {
            if let Some((id, _)) = slot.value.as_ref().and_then(|l| l.target) {
                want.messages.push(id);
            }
        }
        self.fetch(want)?;
        // Round 3: outbox queues and counters of what may owe or settle an event.
        let mut want = Want::default();
        for op in batch {
            if let Op::Put(rec) = op {
                if self.targets.wants_any(rec) {
                    want.queues.push(rec.id);
                    want.pending.push(rec.client.clone());
                }
            }
        }
        for rec in self.messages.values().filter_map(|s| s.value.as_ref()) {
            if self.targets.wants_any(rec) {
                want.queues.push(rec.id);
                want.pending.push(rec.client.clone());
            }
        }
        for row in self.outbox.values().filter_map(|s| s.value.as_ref()) {
            want.queues.push(row.entry.message_id);
        }
        self.fetch(want)
    }

    /// Reads what is wanted and not cached yet, in one set of batch calls.
    fn fetch(&mut self, want: Want) -> Result<(), StoreError> {
        let mut keys = Vec::new();
        let mut what = Vec::new();
        for id in want.messages {
            if !self.messages.contains_key(&id) && !what.contains(&Wanted::Message(id)) {
                keys.push(self.io.key(Kind::Message, &id.to_bytes())?);
                what.push(Wanted::Message(id));
            }
        }
        for k in want.lookups {
            if !self.lookups.contains_key(&k) && !what.contains(&Wanted::Lookup(k.clone())) {
                keys.push(self.io.key(Kind::Lookup, &k)?);
                what.push(Wanted::Lookup(k));
            }
        }
        for seq in want.outbox {
            if !self.outbox.contains_key(&seq) && !what.contains(&Wanted::Outbox(seq)) {
                keys.push(self.io.key(Kind::Outbox, &seq.to_be_bytes())?);
                what.push(Wanted::Outbox(seq));
            }
        }
        for id in want.queues {
            if !self.queues.contains_key(&id) && !what.contains(&Wanted::Queue(id)) {
                keys.push(self.io.key(Kind::Queue, &id.to_bytes())?);
                what.push(Wanted::Queue(id));
            }
        }
        for c in want.pending {
            if !self.pending.contains_key(&c) && !what.contains(&Wanted::Pending(c.clone())) {
                keys.push(self.io.key(Kind::Pending, c.as_str().as_bytes())?);
                what.push(Wanted::Pending(c));
            }
        }
        for k in want.groups {
            if !self.groups.contains_key(&k) && !what.contains(&Wanted::Group(k.clone())) {
                keys.push(self.io.key(Kind::MoGroup, &k)?);
                what.push(Wanted::Group(k));
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let records = self.io.read(self.deadline, keys)?;
        for (w, r) in what.into_iter().zip(records) {
            self.fill(w, r.as_ref())?;
        }
        Ok(())
    }

    /// Reads one record the prefetch did not foresee.
    fn miss(&mut self, w: Wanted) -> Result<(), StoreError> {
        let key = match &w {
            Wanted::Message(id) => self.io.key(Kind::Message, &id.to_bytes())?,
            Wanted::Lookup(k) => self.io.key(Kind::Lookup, k)?,
            Wanted::Outbox(seq) => self.io.key(Kind::Outbox, &seq.to_be_bytes())?,
            Wanted::Queue(id) => self.io.key(Kind::Queue, &id.to_bytes())?,
            Wanted::Pending(c) => self.io.key(Kind::Pending, c.as_str().as_bytes())?,
            Wanted::Group(k) => self.io.key(Kind::MoGroup, k)?,
        };
        let r = self.io.get(self.deadline, key)?;
        self.fill(w, r.as_ref())
    }

    fn fill(&mut self, w: Wanted, r: Option<&Record>) -> Result<(), StoreError> {
        match w {
            Wanted::Message(id) => {
                let rec = match r {
                    Some(r) => blob(r, BIN_REC)?.map(decode).transpose()?,
                    None => None,
                };
                self.messages.insert(id, Slot::read(rec));
            }
            Wanted::Lookup(k) => {
                let lookup = r.map(read_lookup).transpose()?;
                self.lookups.insert(k, Slot::read(lookup));
            }
            Wanted::Outbox(seq) => {
                let row = match r {
                    Some(r) if !r.bins.contains_key(BIN_GONE) => blob(r, BIN_ENTRY)?
                        .map(|b| {
                            let due = last_int(r.bins.get(BIN_DUE)).and_then(|d| u64::try_from(d).ok());
                            decode(b).map(|entry| OutboxRow { entry, due })
                        })
                        .transpose()?,
                    _ => None,
                };
                self.outbox.insert(seq, Slot::read(row));
            }
            Wanted::Queue(id) => {
                let seqs = match r.and_then(|r| r.bins.get(BIN_SEQS)) {
                    Some(Value::List(vs)) => vs.iter().filter_map(|v| last_int(Some(v))).map(|s| s as u64).collect(),
                    _ => Vec::new(),
                };
                self.queues.insert(id, Slot::read(Some(seqs)));
            }
            Wanted::Pending(c) => {
                let n = r.and_then(|r| last_int(r.bins.get(BIN_N))).map_or(0, |n| n.max(0) as u64);
                self.pending.insert(c, Pending { read: n, delta: 0 });
            }
            Wanted::Group(k) => {
                let group = r.map(read_group).transpose()?.flatten();
                self.groups.insert(k, Slot::read(group));
            }
        }
        Ok(())
    }

    fn lookup_slot(&mut self, key: &[u8]) -> Result<&mut Slot<Lookup>, StoreError> {
        if !self.lookups.contains_key(key) {
            self.miss(Wanted::Lookup(key.to_vec()))?;
        }
        self.lookups.get_mut(key).ok_or_else(|| StoreError::Corrupt("lookup not cached".to_owned()))
    }

    fn outbox_slot(&mut self, seq: u64) -> Result<&mut Slot<OutboxRow>, StoreError> {
        if !self.outbox.contains_key(&seq) {
            self.miss(Wanted::Outbox(seq))?;
        }
        self.outbox.get_mut(&seq).ok_or_else(|| StoreError::Corrupt("outbox entry not cached".to_owned()))
    }

    fn queue_slot(&mut self, id: MessageId) -> Result<&mut Slot<Vec<u64>>, StoreError> {
        if !self.queues.contains_key(&id) {
            self.miss(Wanted::Queue(id))?;
        }
        self.queues.get_mut(&id).ok_or_else(|| StoreError::Corrupt("outbox queue not cached".to_owned()))
    }

    fn pending_slot(&mut self, client: &ClientId) -> Result<&mut Pending, StoreError> {
        if !self.pending.contains_key(client) {
            self.miss(Wanted::Pending(client.clone()))?;
        }
        self.pending.get_mut(client).ok_or_else(|| StoreError::Corrupt("pending counter not cached".to_owned()))
    }
}

/// What a batch wants read.
#[derive(Default)]
struct Want {
    messages: Vec<MessageId>,
    lookups: Vec<Vec<u8>>,
    outbox: Vec<u64>,
    queues: Vec<MessageId>,
    pending: Vec<ClientId>,
    groups: Vec<Vec<u8>>,
}

#[derive(PartialEq)]
enum Wanted {
    Message(MessageId),
    Lookup(Vec<u8>),
    Outbox(u64),
    Queue(MessageId),
    Pending(ClientId),
    Group(Vec<u8>),
}

/// A waiting group of inbound parts; `None` for a tombstone.
fn read_group(r: &Record) -> Result<Option<MoGroup>, StoreError> {
    if r.bins.contains_key(BIN_GONE) {
        return Ok(None);
    }
    blob(r, BIN_GROUP)?.map(decode).transpose()
}

fn read_lookup(r: &Record) -> Result<Lookup, StoreError> {
    let id = last_int(r.bins.get(BIN_MID));
    let part = last_int(r.bins.get(BIN_PART)).unwrap_or(0);
    let parked = blob(r, BIN_RCPT)?.map(decode).transpose()?;
    let target = id.map(|id| (MessageId(id as u64), part.max(0) as usize));
    Ok(Lookup { target, parked, ..Lookup::default() })
}

// === impl Tables ===

impl Tables for Overlay<'_> {
    fn targets(&self) -> &WebhookTargets {
        self.targets
    }

    fn message(&mut self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        if !self.messages.contains_key(&id) {
            self.miss(Wanted::Message(id))?;
        }
        Ok(self.messages.get(&id).and_then(|s| s.value.clone()))
    }

    fn set_message(&mut self, rec: &MessageRecord) -> Result<(), StoreError> {
        self.messages.insert(rec.id, Slot { value: Some(rec.clone()), dirty: true });
        Ok(())
    }

    fn lookup(&mut self, key: &[u8]) -> Result<Option<(MessageId, usize)>, StoreError> {
        Ok(self.lookup_slot(key)?.value.as_ref().and_then(|l| l.target))
    }

    fn set_lookup(&mut self, key: &[u8], id: MessageId, part: usize) -> Result<(), StoreError> {
        let slot = self.lookup_slot(key)?;
        let l = slot.value.get_or_insert_with(Lookup::default);
        l.target = Some((id, part));
        l.target_set = true;
        slot.dirty = true;
        Ok(())
    }

    fn parked(&mut self, key: &[u8]) -> Result<Option<Receipt>, StoreError> {
        Ok(self.lookup_slot(key)?.value.as_ref().and_then(|l| l.parked.clone()))
    }

    fn set_parked(&mut self, key: &[u8], r: &Receipt) -> Result<(), StoreError> {
        let slot = self.lookup_slot(key)?;
        let l = slot.value.get_or_insert_with(Lookup::default);
        l.parked = Some(r.clone());
        l.parked_set = true;
        slot.dirty = true;
        Ok(())
    }

    fn take_parked(&mut self, key: &[u8]) -> Result<Option<Receipt>, StoreError> {
        let slot = self.lookup_slot(key)?;
        let Some(l) = slot.value.as_mut() else {
            return Ok(None);
        };
        let taken = l.parked.take();
        l.taken.clone_from(&taken);
        slot.dirty |= taken.is_some();
        Ok(taken)
    }

    fn outbox(&mut self, seq: u64) -> Result<Option<OutboxEntry>, StoreError> {
        Ok(self.outbox_slot(seq)?.value.as_ref().map(|r| r.entry.clone()))
    }

    fn set_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let slot = self.outbox.entry(entry.seq).or_insert_with(|| Slot::read(None));
        let due = slot.value.as_ref().and_then(|r| r.due);
        slot.value = Some(OutboxRow { entry: entry.clone(), due });
        slot.dirty = true;
        Ok(())
    }

    fn remove_outbox(&mut self, seq: u64) -> Result<Option<OutboxEntry>, StoreError> {
        let slot = self.outbox_slot(seq)?;
        let removed = slot.value.take().map(|r| r.entry);
        slot.dirty = true;
        Ok(removed)
    }

    fn add_failed(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.failed.push(entry.clone());
        Ok(())
    }

    fn set_due(&mut self, at_ms: u64, seq: u64) -> Result<(), StoreError> {
        let slot = self.outbox_slot(seq)?;
        if let Some(row) = slot.value.as_mut() {
            row.due = Some(at_ms);
            slot.dirty = true;
        }
        Ok(())
    }

    fn remove_due(&mut self, _at_ms: u64, seq: u64) -> Result<bool, StoreError> {
        let slot = self.outbox_slot(seq)?;
        let was = slot.value.as_mut().and_then(|r| r.due.take()).is_some();
        slot.dirty |= was;
        Ok(was)
    }

    fn queue_head(&mut self, id: MessageId) -> Result<Option<u64>, StoreError> {
        Ok(self.queue_slot(id)?.value.as_ref().and_then(|q| q.first().copied()))
    }

    fn enqueue(&mut self, id: MessageId, seq: u64) -> Result<(), StoreError> {
        let slot = self.queue_slot(id)?;
        slot.value.get_or_insert_with(Vec::new).push(seq);
        slot.dirty = true;
        Ok(())
    }

    fn dequeue(&mut self, id: MessageId, seq: u64) -> Result<(), StoreError> {
        let slot = self.queue_slot(id)?;
        if let Some(q) = slot.value.as_mut() {
            q.retain(|s| *s != seq);
            slot.dirty = true;
        }
        Ok(())
    }

    fn pending_of(&mut self, client: &ClientId) -> Result<u64, StoreError> {
        let p = *self.pending_slot(client)?;
        Ok(p.read.saturating_add_signed(p.delta))
    }

    fn add_pending(&mut self, client: &ClientId, delta: i64) -> Result<(), StoreError> {
        self.pending_slot(client)?.delta += delta;
        self.pending_total += delta;
        Ok(())
    }

    fn mo_router(&self) -> &MoRouter {
        self.mo_router
    }

    fn inbound_group(&mut self, key: &[u8]) -> Result<Option<MoGroup>, StoreError> {
        if !self.groups.contains_key(key) {
            self.miss(Wanted::Group(key.to_vec()))?;
        }
        Ok(self.groups.get(key).and_then(|s| s.value.clone()))
    }

    fn set_inbound_group(&mut self, key: &[u8], group: &MoGroup) -> Result<(), StoreError> {
        self.groups.insert(key.to_vec(), Slot { value: Some(group.clone()), dirty: true });
        Ok(())
    }

    fn remove_inbound_group(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.groups.insert(key.to_vec(), Slot { value: None, dirty: true });
        Ok(())
    }

    fn inbound_groups_before(&mut self, before_ms: u64) -> Result<Vec<(Vec<u8>, MoGroup)>, StoreError> {
        for r in self.io.query(self.deadline, BIN_MO, 0, before_ms, 0)? {
            if let (Some(k), Some(group)) = (blob(&r, BIN_GKEY)?, read_group(&r)?) {
                // What this batch did to a group wins over what the query read.
                self.groups.entry(k.to_vec()).or_insert_with(|| Slot::read(Some(group)));
            }
        }
        let mut expired: Vec<(Vec<u8>, MoGroup)> = self
            .groups
            .iter()
            .filter_map(|(k, s)| {
                s.value.as_ref().filter(|g| g.first_at_ms <= before_ms).map(|g| (k.clone(), g.clone()))
            })
            .collect();
        expired.sort_by_key(|(_, g)| g.first_at_ms);
        Ok(expired)
    }

    fn set_inbound(&mut self, msg: &InboundMessage) -> Result<(), StoreError> {
        self.inbound.push(msg.clone());
        Ok(())
    }

    fn next_seq(&mut self) -> Result<u64, StoreError> {
        if self.seqs.next == 0 || self.seqs.next > self.seqs.last {
            let last = self.io.reserve_seqs(self.deadline, SEQ_BLOCK)?;
            self.seqs.next = last + 1 - SEQ_BLOCK;
            self.seqs.last = last;
        }
        let seq = self.seqs.next;
        self.seqs.next += 1;
        Ok(seq)
    }
}

// === writing ===

impl Overlay<'_> {
    /// Writes every record the batch changed, commit level all; fails unless every row is
    /// acknowledged.
    /// Returns the receipts that raced another node (see [`Raced`]).
    pub(super) fn flush(self) -> Result<Vec<Raced>, StoreError> {
        let io = self.io;
        let with_ttl =
            BatchWritePolicy { commit_level: CommitLevel::CommitAll, expiration: io.ttl, ..Default::default() };
        let forever = BatchWritePolicy { expiration: Expiration::Never, ..with_ttl.clone() };
        let mut ops = Vec::new();
        let (mut parks, mut ops_parks) = (Vec::new(), Vec::new());
        let put = |name: &str, v: Value| scalar::put(&Bin::new(name, v));
        let tombstone = || vec![put(BIN_GONE, Value::Int(1))];
        for (id, slot) in self.messages.into_iter().filter(|(_, s)| s.dirty) {
            if let Some(rec) = slot.value {
                let key = io.key(Kind::Message, &id.to_bytes())?;
                ops.push(BatchOperation::write(&with_ttl, key, vec![put(BIN_REC, Value::Blob(encode(&rec)?))]));
            }
        }
        // Lookups that name their message go in a second round, after the records they
        // point to: another node that finds the lookup then finds the record too.
        let mut named = Vec::new();
        for (k, slot) in self.lookups.into_iter().filter(|(_, s)| s.dirty) {
            let key = io.key(Kind::Lookup, &k)?;
            let l = slot.value.unwrap_or_default();
            match (l.target, l.target_set, &l.parked) {
                (Some((id, part)), true, _) => {
                    // Takes whatever receipt another node parked meanwhile, in the same step.
                    let ops = vec![
                        put(BIN_MID, Value::Int(id.0 as i64)),
                        put(BIN_PART, Value::Int(part as i64)),
                        scalar::get_bin(BIN_RCPT),
                        put(BIN_RCPT, Value::Nil),
                    ];
                    named.push((k, l.taken, BatchOperation::write(&with_ttl, key, ops)));
                }
                (_, _, Some(r)) if l.parked_set => {
                    // Parks, and learns in the same step whether another node named the
                    // message meanwhile.
                    let ops = vec![put(BIN_RCPT, Value::Blob(encode(r)?)), scalar::get_bin(BIN_MID)];
                    parks.push((k, r.clone()));
                    ops_parks.push(BatchOperation::write(&with_ttl, key, ops));
                }
                (_, _, parked) => {
                    let rcpt = match parked {
                        Some(r) => Value::Blob(encode(r)?),
                        None => Value::Nil,
                    };
                    let mut bins = vec![put(BIN_RCPT, rcpt)];
                    if l.target.is_none() && parked.is_none() {
                        bins.extend(tombstone());
                    }
                    ops.push(BatchOperation::write(&with_ttl, key, bins));
                }
            }
        }
        for (seq, slot) in self.outbox.into_iter().filter(|(_, s)| s.dirty) {
            let key = io.key(Kind::Outbox, &seq.to_be_bytes())?;
            ops.push(match slot.value {
                Some(row) => {
                    let due = row.due.map_or(Value::Nil, |d| Value::Int(d as i64));
                    let bins = vec![put(BIN_ENTRY, Value::Blob(encode(&row.entry)?)), put(BIN_DUE, due)];
                    BatchOperation::write(&forever, key, bins)
                }
                None => {
                    let mut bins = vec![put(BIN_ENTRY, Value::Nil), put(BIN_DUE, Value::Nil)];
                    bins.extend(tombstone());
                    BatchOperation::write(&with_ttl, key, bins)
                }
            });
        }
        for (id, slot) in self.queues.into_iter().filter(|(_, s)| s.dirty) {
            let key = io.key(Kind::Queue, &id.to_bytes())?;
            let seqs = slot.value.unwrap_or_default();
            ops.push(if seqs.is_empty() {
                let mut bins = vec![put(BIN_SEQS, Value::Nil)];
                bins.extend(tombstone());
                BatchOperation::write(&with_ttl, key, bins)
            } else {
                let list = seqs.into_iter().map(|s| Value::Int(s as i64)).collect();
                BatchOperation::write(&forever, key, vec![put(BIN_SEQS, Value::List(list))])
            });
        }
        for (k, slot) in self.groups.into_iter().filter(|(_, s)| s.dirty) {
            let key = io.key(Kind::MoGroup, &k)?;
            ops.push(match slot.value {
                Some(g) => {
                    let bins = vec![
                        put(BIN_GROUP, Value::Blob(encode(&g)?)),
                        put(BIN_GKEY, Value::Blob(k)),
                        put(BIN_MO, Value::Int(g.first_at_ms as i64)),
                    ];
                    BatchOperation::write(&with_ttl, key, bins)
                }
                None => {
                    let mut bins = vec![put(BIN_GROUP, Value::Nil), put(BIN_MO, Value::Nil)];
                    bins.extend(tombstone());
                    BatchOperation::write(&with_ttl, key, bins)
                }
            });
        }
        for msg in &self.inbound {
            let key = io.key(Kind::Inbound, &msg.id.0.to_be_bytes())?;
            ops.push(BatchOperation::write(&with_ttl, key, vec![put(BIN_REC, Value::Blob(encode(msg)?))]));
        }
        for entry in &self.failed {
            let key = io.key(Kind::Failed, &entry.seq.to_be_bytes())?;
            ops.push(BatchOperation::write(&with_ttl, key, vec![put(BIN_ENTRY, Value::Blob(encode(entry)?))]));
        }
        let counters = self.pending.into_iter().filter(|(_, p)| p.delta != 0).map(|(c, p)| (c, p.delta));
        let total = (self.pending_total != 0).then(|| (ClientId::new(""), self.pending_total));
        for (client, delta) in counters.chain(total) {
            let key: Key = io.key(Kind::Pending, client.as_str().as_bytes())?;
            ops.push(BatchOperation::write(&forever, key, vec![scalar::add(&Bin::new(BIN_N, Value::Int(delta)))]));
        }
        let mut raced = Vec::new();
        let first = ops.len();
        ops.extend(ops_parks);
        if !ops.is_empty() {
            let rows = io.write(self.deadline, ops)?;
            for ((k, r), row) in parks.into_iter().zip(&rows[first..]) {
                if row.record().is_some_and(|rec| last_int(rec.bins.get(BIN_MID)).is_some()) {
                    raced.push(Raced { key: k, receipt: r, parked_here: true });
                }
            }
        }
        if named.is_empty() {
            return Ok(raced);
        }
        let (meta, ops): (Vec<_>, Vec<_>) = named.into_iter().map(|(k, taken, op)| ((k, taken), op)).unzip();
        let rows = io.write(self.deadline, ops)?;
        for ((k, taken), row) in meta.into_iter().zip(&rows) {
            let found = match row.record() {
                Some(rec) => first_blob(rec.bins.get(BIN_RCPT)).map(decode::<Receipt>).transpose()?,
                None => None,
            };
            if let Some(r) = found.filter(|r| taken.as_ref() != Some(r)) {
                raced.push(Raced { key: k, receipt: r, parked_here: false });
            }
        }
        Ok(raced)
    }
}

/// A receipt parked by one node while another named its message: the lookup write that saw
/// both (exactly one of the two does) hands it back to be applied as a receipt now.
pub(super) struct Raced {
    pub(super) key: Vec<u8>,
    pub(super) receipt: Receipt,
    /// This batch parked it (its op answered "parked" and should answer what the receipt did).
    pub(super) parked_here: bool,
}

/// The first bytes value of a bin an operate answered (maybe more than once).
fn first_blob(v: Option<&Value>) -> Option<&[u8]> {
    match v? {
        Value::Blob(b) => Some(b),
        Value::MultiResult(vs) => vs.iter().find_map(|v| first_blob(Some(v))),
        _ => None,
    }
}
