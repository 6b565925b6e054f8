//! The contract every state backend fulfils (embedded by default, Aerospike in production).
//!
//! A backend is owned by one writer thread (`state/writer.rs`), which hands it whole batches:
//! `apply` must make every op of the batch durable before it returns (one sync per batch:
//! group commit), because the writer acknowledges the shards only after it returns.

use super::record::{MessageRecord, Receipt};
use crate::ids::{ClientId, MessageId};

/// One write in a batch.
#[derive(Clone, Debug)]
pub enum Op {
    /// Insert or replace a message record. If it carries an SMSC message id, index
    /// (link, SMSC id) → message id, and apply a receipt parked for that key, if any.
    Put(MessageRecord),
    /// A delivery receipt: find the message by (link, SMSC id) and append the receipt's
    /// transition. If no message has that key yet, park the receipt durably under the key;
    /// the `Put` that brings the key applies it.
    Receipt(Receipt),
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
    /// No message has this (link, SMSC id) yet; the receipt is parked until one does.
    ReceiptParked,
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
}

/// A state backend. Runs on its own thread; blocking is fine here and nowhere else.
pub trait StateStore: Send + 'static {
    /// Applies the ops in order and makes all of them durable with one sync.
    /// Returns one outcome per op, in order. An `Err` means none may be assumed durable.
    fn apply(&mut self, batch: &[Op]) -> Result<Vec<OpOutcome>, StoreError>;

    /// Reads one record.
    fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError>;
}
