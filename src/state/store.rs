//! The contract every state backend fulfils (embedded by default, Aerospike in production).
//!
//! A backend is owned by one writer thread (`state/writer.rs`), which hands it whole batches:
//! `apply` must make every op of the batch durable before it returns (one sync per batch:
//! group commit), because the writer acknowledges the shards only after it returns.
//!
//! Webhook outbox: when an op moves a message to a final status (or to `submitted`, for a
//! client that asked for it) and the message has a webhook URL, the backend writes an
//! [`OutboxEntry`] in the same durable batch as the record, so a receipt acknowledged to the
//! SMSC always has its webhook owed. The sender thread reads due entries with
//! [`OutboxRead::due_webhooks`] (from [`StateStore::outbox_reader`]) and settles them with the `Webhook*` ops.
//!
//! Inbound messages (MO, `notify::mo`): `Op::Inbound` keeps one part durably. A whole message,
//! or the part that completes a concatenated one, is assembled (`mo::assemble`), routed
//! (`MoRouter::route`), kept under its `InboundId` and owes its webhook (an [`OutboxEntry`]
//! whose `message_id` holds the inbound id and whose event id ends in `.inbound`), all in the
//! same batch. Parts still waiting are closed by `Op::InboundExpire` (the sender thread sends
//! it when [`OutboxRead::oldest_inbound_group`] is past `inbound.reassembly_timeout_ms`).
use super::record::{MessageRecord, Receipt};
use crate::ids::{ClientId, InboundId, MessageId};
use crate::notify::mo::{InboundMessage, MoPart};
use crate::notify::outbox::OutboxEntry;

/// One write in a batch. Serializable: the embedded store logs batches ahead of applying them.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Op {
    /// Insert or replace a message record. If it carries an SMSC message id, index
    /// (link, SMSC id) → message id, and apply a receipt parked for that key, if any.
    Put(MessageRecord),
    /// A delivery receipt: find the message by (link, SMSC id) and append the receipt's
    /// transition. If no message has that key yet, park the receipt durably under the key;
    /// the `Put` that brings the key applies it.
    Receipt(Receipt),
    /// The webhook of outbox entry `seq` got a 2xx: remove it.
    WebhookDone(u64),
    /// The webhook of outbox entry `seq` failed: count the attempt, try again at `next_at_ms`.
    WebhookRetry { seq: u64, next_at_ms: u64 },
    /// The webhook of outbox entry `seq` is past its max age: move it to the failed table.
    WebhookFailed(u64),
    /// One inbound message part (a whole message is one part). Kept with its partners until
    /// all have arrived (a part whose number is already kept is ignored); the part that
    /// completes a message makes the message: assembled, routed, kept, webhook owed.
    Inbound(MoPart),
    /// Assembles every group of parts whose first part arrived at or before `before_ms` from
    /// the parts it has, marked incomplete, and keeps it like a whole message.
    InboundExpire { before_ms: u64 },
}

/// What one op did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    Stored,
    /// The receipt was applied to this message, which belongs to this client (the receipt
    /// stream, `notify::stream`, tells that client's watchers).
    ReceiptApplied(MessageId, ClientId),
    /// The receipt's message already had a final status; the receipt was kept as an extra
    /// transition-free duplicate and changed nothing.
    ReceiptDuplicate(MessageId),
    /// A put that applied receipts parked for its parts (they came before the record was
    /// kept), in part order: the message's history needs them (`observe::events`).
    StoredWithReceipts(Vec<Receipt>),
    /// No message has this (link, SMSC id) yet; the receipt is parked until one does.
    ReceiptParked,
    /// An inbound message was assembled and kept (its `client` is `None` when unrouted).
    InboundKept(Box<InboundMessage>),
    /// An inbound part was kept; its message waits for the other parts.
    InboundPartKept,
    /// An inbound part whose number its group already had: nothing changed.
    InboundPartDuplicate,
    /// `InboundExpire` closed this many groups.
    InboundExpired(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store I/O: {0}")]
    Io(String),
    #[error("state store record is corrupt: {0}")]
    Corrupt(String),
    #[error("state store queue is full")]
    Busy,
    #[error("state store is shut down")]
    Closed,
    /// The backend's last batch failed and it has not answered a probe since: refused before
    /// anything is sent, so the caller may retry safely.
    #[error("state store is unreachable")]
    Down,
}

/// A state backend. Runs on its own thread; blocking is fine here and nowhere else.
pub trait StateStore: Send + 'static {
    /// Applies the ops in order and makes all of them durable with one sync.
    /// Returns one outcome per op, in order. An `Err` means none may be assumed durable.
    fn apply(&mut self, batch: &[Op]) -> Result<Vec<OpOutcome>, StoreError>;

    /// Reads one record.
    fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError>;

    /// Reads one inbound message.
    fn get_inbound(&self, id: InboundId) -> Result<Option<InboundMessage>, StoreError>;

    /// A reader of the webhook outbox for the sender thread. It reads beside the writer (a
    /// snapshot; it never blocks a batch) and never writes: the sender settles entries with
    /// `Webhook*` ops through the writer, the one writer of the store.
    fn outbox_reader(&self) -> Box<dyn OutboxRead>;

    /// How often the writer probes a backend whose last batch failed, if it can fail for a
    /// while and come back by itself (a remote cluster). `None` (the embedded store): the writer
    /// never refuses up front and only the next batch tells.
    fn probe_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// A cheap round trip that succeeds when the backend can take writes again.
    fn check(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl StateStore for Box<dyn StateStore> {
    fn apply(&mut self, batch: &[Op]) -> Result<Vec<OpOutcome>, StoreError> {
        (**self).apply(batch)
    }
    fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        (**self).get(id)
    }
    fn get_inbound(&self, id: InboundId) -> Result<Option<InboundMessage>, StoreError> {
        (**self).get_inbound(id)
    }
    fn outbox_reader(&self) -> Box<dyn OutboxRead> {
        (**self).outbox_reader()
    }
    fn probe_interval(&self) -> Option<std::time::Duration> {
        (**self).probe_interval()
    }
    fn check(&mut self) -> Result<(), StoreError> {
        (**self).check()
    }
}

/// The sender thread's read of the outbox.
pub trait OutboxRead: Send + 'static {
    /// Up to `limit` outbox entries due at `now_ms`, earliest due first. An entry is left out
    /// while an earlier entry of the same message is still pending, so the events of one
    /// message are delivered in order. Sees every batch committed before the call. Entries
    /// not due cost nothing here: a long backlog for a dead receiver hides no other entry.
    fn due_webhooks(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Entries in the outbox (due or not), for the pending gauge.
    fn pending(&self) -> Result<u64, StoreError>;

    /// When the first part of the oldest group of inbound parts still waiting for its
    /// partners arrived (Unix ms), if any group waits.
    fn oldest_inbound_group(&self) -> Result<Option<u64>, StoreError>;
}
