//! Message history on PostgreSQL: every message event, kept for `history.retention_days`.
//!
//! ```text
//! shards, inbound, webhook sender ──emit (try_send, never waits)──▶ bounded crossbeam queue
//!   ──▶ thread "history-spool": batches (batch_max events or flush_interval_ms); holds up to
//!       memory_events in memory, beyond that appends batches to spill files (fsync'd)
//!   ──▶ thread "history-writer": one batch or spill file at a time → PostgreSQL (COPY into a
//!       temporary table, INSERT … ON CONFLICT DO NOTHING: a batch written twice counts once),
//!       retries until PostgreSQL takes it; a spill file is deleted only after its commit
//! HTTP GET /api/v1/history/* ──▶ thread "history-query" (its own connection) ──▶ JSON
//! ```
//!
//! - [`config`]: `[history]` of smsgate.toml.
//! - [`spool`]: the spool thread and the spill files.
//! - [`writer`]: the PostgreSQL writer: migrations, day partitions, batches, retention.
//! - [`schema`]: versioned migrations and partition names.
//! - [`query`]: the two read endpoints and their thread.
//!
//! PostgreSQL slow or down never reaches a shard: [`emit`] is a `try_send`; the spool thread
//! only touches the local disk. Without `[history]`, [`emit`] is one atomic load.

pub mod config;
pub mod query;
pub mod schema;
pub mod spool;
pub mod writer;

use crate::ids::{ClientId, LinkId, MessageId};
use crossbeam_channel::{Sender, TrySendError};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// What happened to a message. A new kind needs no migration: the column is text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Passed every check; a record was kept (status `accepted`).
    Accepted,
    /// Refused by a gateway layer (`layer`, `reason`); never submitted, no record.
    Refused,
    /// The SMSC answered the submit: status `submitted`, `rejected` (detail: command_status)
    /// or `unknown` (no answer).
    Submitted,
    /// A final delivery receipt applied to the message (one per part).
    Receipt,
    /// A delivery-report webhook was taken by the receiver (2xx); detail: the webhook event.
    WebhookDelivered,
    /// A delivery-report webhook was given up after `webhooks.max_age_s`.
    WebhookFailed,
    /// An inbound message (MO) assembled and kept: status `received` or `incomplete`; the
    /// subscriber's number as the destination, the short code it was sent to as detail.
    Mo,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Accepted => "accepted",
            EventKind::Refused => "refused",
            EventKind::Submitted => "submitted",
            EventKind::Receipt => "receipt",
            EventKind::WebhookDelivered => "webhook_delivered",
            EventKind::WebhookFailed => "webhook_failed",
            EventKind::Mo => "mo",
        }
    }
}

/// An event's id: 128 bits, unique without coordination (a random 64-bit prefix per thread,
/// then that thread's counter). The writer inserts with ON CONFLICT DO NOTHING on it, so a
/// batch written again after a crash or a lost commit acknowledgement counts once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventId(pub u128);

impl EventId {
    pub fn next() -> EventId {
        thread_local! {
            static NEXT: Cell<(u64, u64)> = Cell::new((random_u64(), 0));
        }
        NEXT.with(|n| {
            let (prefix, seq) = n.get();
            n.set((prefix, seq.wrapping_add(1)));
            EventId((u128::from(prefix) << 64) | u128::from(seq))
        })
    }

    /// 32 hex digits (PostgreSQL's `uuid` input accepts them as they are).
    pub fn parse(s: &str) -> Option<EventId> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(EventId)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// 64 random bits from the standard library's per-process random hasher keys.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

/// One row of `history_events`. Labels are `Cow<'static, str>`: the hot path passes its
/// static names without allocating.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub id: EventId,
    /// Unix ms when smsgate recorded what happened.
    pub at_ms: u64,
    pub kind: EventKind,
    pub client: Option<ClientId>,
    pub message_id: Option<MessageId>,
    /// The destination number as submitted (E.164 with `+`); stored plain or as a keyed hash
    /// (`history.destination`).
    pub to: Option<String>,
    pub link: Option<LinkId>,
    /// The message's status after this event (`accepted`, `refused`, `submitted`, `rejected`,
    /// `unknown`, `delivered`, …); none for webhook events.
    pub status: Option<Cow<'static, str>>,
    /// Refusals: the layer (`l1`, `l2`, `client`, `policy`, `route`, `submit`, `state`, `parse`).
    pub layer: Option<Cow<'static, str>>,
    /// Refusals: the reason (a code or a limit key).
    pub reason: Option<Cow<'static, str>>,
    pub segments: u16,
    /// Per kind: the SMPP command_status of a refused submit, a receipt's error code, a
    /// webhook's event name and last failure.
    pub detail: Option<String>,
}

impl HistoryEvent {
    /// An event of `kind` now, every optional field empty.
    pub fn new(kind: EventKind, at_ms: u64) -> Self {
        HistoryEvent {
            id: EventId::next(),
            at_ms,
            kind,
            client: None,
            message_id: None,
            to: None,
            link: None,
            status: None,
            layer: None,
            reason: None,
            segments: 0,
            detail: None,
        }
    }
}

/// Counters of the history pipeline, for `/metrics`, the stats dashboard and tests. Relaxed:
/// monotonic counts and gauges.
#[derive(Debug, Default)]
pub struct HistoryStats {
    /// Events handed to the queue by [`emit`].
    pub emitted: AtomicU64,
    /// Events not queued: the queue to the spool thread was full (`history.queue_capacity`).
    pub dropped_queue_full: AtomicU64,
    /// Events dropped because the spill files reached `history.spill_max_bytes`.
    pub dropped_spill_full: AtomicU64,
    /// Events older than the retention when they reached PostgreSQL (after a long outage).
    pub dropped_expired: AtomicU64,
    /// Lines of a spill file that could not be read back (a write torn by a crash).
    pub dropped_corrupt: AtomicU64,
    /// Rows inserted into PostgreSQL.
    pub written: AtomicU64,
    /// Events already in PostgreSQL when written again (a batch retried after a lost
    /// acknowledgement or a crash): not inserted twice.
    pub duplicates: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Failed attempts to write a batch (connection refused, timeout, error).
    pub write_errors: AtomicU64,
    /// Events written to spill files.
    pub spilled: AtomicU64,
    /// Events waiting in the spool's memory (gauge).
    pub backlog_memory: AtomicU64,
    /// Events waiting in spill files (gauge).
    pub backlog_spilled: AtomicU64,
    /// Bytes of spill files on disk (gauge).
    pub spill_bytes: AtomicU64,
    /// 1 while the writer's last attempt reached PostgreSQL, else 0 (gauge).
    pub up: AtomicU64,
}

impl HistoryStats {
    /// Events not yet in PostgreSQL: in memory and in spill files.
    pub fn backlog(&self) -> u64 {
        self.backlog_memory.load(Ordering::Relaxed) + self.backlog_spilled.load(Ordering::Relaxed)
    }
}

/// The process's history queue, set once at start-up when `[history]` is configured.
struct Installed {
    queue: Sender<HistoryEvent>,
    stats: Arc<HistoryStats>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Whether history is on (build events only then).
pub fn enabled() -> bool {
    INSTALLED.get().is_some()
}

/// The history counters, when history is on.
pub fn stats() -> Option<&'static HistoryStats> {
    INSTALLED.get().map(|i| &*i.stats)
}

/// Hands an event to the spool thread without waiting. A full queue drops it and counts it
/// (`smsgate_history_dropped_total{reason="queue_full"}`): shards never wait for history.
pub fn emit(event: HistoryEvent) {
    let Some(i) = INSTALLED.get() else { return };
    match i.queue.try_send(event) {
        Ok(()) => {
            i.stats.emitted.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Full(_)) => {
            i.stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = crate::observe::events::log_due("", "history_queue_full") {
                tracing::warn!(suppressed, "history queue full: event dropped");
            }
        }
        Err(TrySendError::Disconnected(_)) => {
            i.stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The running history threads. [`History::shutdown`] (or drop) stops them: events still in
/// memory are written to a spill file and sent to PostgreSQL at the next start.
pub struct History {
    spool: Option<spool::SpoolHandle>,
    query: query::QueryHandle,
    stats: Arc<HistoryStats>,
}

impl History {
    /// Starts the spool, writer and query threads and installs the process's queue (once per
    /// process: a second call fails).
    pub fn start(cfg: &config::HistoryConfig) -> Result<History, String> {
        let stats = Arc::new(HistoryStats::default());
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_capacity);
        let spool = spool::SpoolHandle::start(cfg, rx, stats.clone())?;
        let query = query::QueryHandle::start(cfg).map_err(|e| format!("starting the history query thread: {e}"))?;
        INSTALLED
            .set(Installed { queue: tx, stats: stats.clone() })
            .map_err(|_| "history is already running in this process".to_owned())?;
        Ok(History { spool: Some(spool), query, stats })
    }

    /// The read side, for the HTTP endpoints.
    pub fn queries(&self) -> query::Queries {
        self.query.queries()
    }

    pub fn stats(&self) -> Arc<HistoryStats> {
        self.stats.clone()
    }

    /// Stops the threads after the producers (shards, webhook sender) have stopped.
    pub fn shutdown(mut self) {
        if let Some(s) = self.spool.take() {
            s.shutdown();
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        if let Some(s) = self.spool.take() {
            s.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_unique_and_round_trip() {
        let a = EventId::next();
        let b = EventId::next();
        assert_ne!(a, b);
        assert_eq!(EventId::parse(&a.to_string()), Some(a));
        assert_eq!(EventId::parse("xyz"), None);
        let other = std::thread::spawn(EventId::next).join().expect("thread");
        assert_ne!(other.0 >> 64, a.0 >> 64, "another thread has its own prefix");
    }
}
