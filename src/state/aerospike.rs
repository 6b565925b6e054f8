//! The Aerospike state backend: the production store, behind the same [`StateStore`] contract
//! and the same group-commit writer as the embedded one (`[state] backend = "aerospike"`).
//!
//! Threads: the official client is tokio-based. It lives on the thread "aerospike-io", which
//! does nothing but drive a current-thread tokio runtime (the client's connections, timers and
//! cluster tending). The writer thread and the webhook sender run their commands on it with
//! `Handle::block_on` (they are side threads, blocking is their job); shards never see tokio.
//!
//! Records, all in one set, keyed by a kind byte and a payload (`Kind`):
//! - `m` + message id: the [`MessageRecord`] as JSON in bin `rec`; TTL `ttl_s`.
//! - `l` + (link, SMSC id) ([`smsc_key`]): the receipt lookup, bins `mid` and `part`, and a
//!   receipt parked there (`rcpt`, JSON) until the submit that carries the id; TTL `ttl_s`.
//! - `o` + seq: an outbox entry (`e`, JSON) and, for the head event of its message only,
//!   `smsgate_due` (next attempt, unix ms), which a secondary index covers: see
//!   [`AerospikeOutbox`].
//! - `q` + message id: the message's pending events in the order owed (`seqs`, a list).
//! - `f` + seq: an entry given up; TTL `ttl_s`.
//! - `c` + client (`c` alone: all clients): pending events (`n`), updated with atomic adds.
//! - `s`: the outbox sequence, reserved in blocks with an atomic add (unique across nodes).
//! - `i` + inbound id: an inbound message (MO) as JSON in `rec`; TTL `ttl_s`.
//! - `g` + group key: inbound parts waiting for their partners (`grp`), its key (`gkey`) and
//!   when its first part came (`smsgate_mo`, under a secondary index for the expiry scan).
//!
//! One `apply`: read what the batch needs in batch calls (lookups, then messages and outbox
//! queues: see `overlay.rs`), run the ops on that overlay ([`apply_op`]), then write every
//! changed record in batch calls of `max_batch_records`, `max_in_flight` at once, commit level
//! all, and check each row's result code. The batch is acknowledged only if every row was;
//! the whole batch has `apply_timeout_ms`. Aerospike has no multi-record transactions in CE:
//! a failed batch may be partly written, which is why every op is safe to apply twice (a put
//! replaces, a receipt already applied is a duplicate, settling a settled event is a no-op).
//!
//! Several nodes: a receipt can arrive on node B while node A is writing the submit that
//! names its message. B parks it with one atomic step that also reads the lookup's message id;
//! A writes the id with one atomic step that also takes any parked receipt (`overlay.rs`). In
//! either order exactly one of them sees both and applies the receipt before answering its
//! batch. A writes its lookups after its records, so B never follows a lookup to a record that
//! is not there yet.
//!
//! Removal: CE has no durable deletes (a deleted record can come back after a cold restart of
//! the server), so a settled outbox entry is overwritten with a `gone` tombstone that expires
//! after `ttl_s` instead of being deleted.

mod config;
mod overlay;

pub use config::AerospikeConfig;

use super::ops::{apply_op, decode, smsc_key};
use super::record::MessageRecord;
use super::store::{Op, OpOutcome, OutboxRead, StateStore, StoreError};
use crate::ids::{InboundId, MessageId};
use crate::notify::mo::{InboundMessage, MoRouter};
use crate::notify::outbox::{OutboxEntry, WebhookTargets};
use aerospike::operations::scalar;
use aerospike::policy::{AdminPolicy, BatchPolicy, ClientPolicy, CommitLevel, Expiration, QueryPolicy, WritePolicy};
use aerospike::query::{CollectionIndexType, Filter, IndexType, PartitionFilter, Statement};
use aerospike::{BatchOperation, BatchReadPolicy, Bin, Bins, Client, Key, Record, ResultCode, Task, Value};
use futures_lite::StreamExt;
use overlay::{Overlay, Raced, SeqBlock};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rounds of receipts that raced another node's write, per batch, before the batch fails.
const MAX_RACE_ROUNDS: usize = 3;

/// Pause between attempts to reach the cluster at start-up.
const CONNECT_RETRY: Duration = Duration::from_millis(200);

/// Bin names (Aerospike allows at most 15 bytes).
const BIN_REC: &str = "rec";
const BIN_MID: &str = "mid";
const BIN_PART: &str = "part";
const BIN_RCPT: &str = "rcpt";
const BIN_ENTRY: &str = "e";
/// Named for this product: the outbox index covers every set of the namespace (below).
const BIN_DUE: &str = "smsgate_due";
/// The secondary index over [`BIN_DUE`], one per namespace.
const DUE_INDEX: &str = "smsgate_due";
/// On a group of inbound parts waiting for its partners: when its first part came (unix ms).
const BIN_MO: &str = "smsgate_mo";
/// The secondary index over [`BIN_MO`], one per namespace.
const MO_INDEX: &str = "smsgate_mo";
/// A group's own key (queries answer records without their keys).
const BIN_GKEY: &str = "gkey";
/// A waiting group of inbound parts, JSON.
const BIN_GROUP: &str = "grp";
const BIN_GONE: &str = "gone";
const BIN_SEQS: &str = "seqs";
const BIN_N: &str = "n";

/// What a record is: the first byte of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
enum Kind {
    Message = b'm',
    Lookup = b'l',
    Outbox = b'o',
    Queue = b'q',
    Failed = b'f',
    Pending = b'c',
    Seq = b's',
    Inbound = b'i',
    MoGroup = b'g',
}

/// Counters of the backend, for the metrics module. Relaxed atomics.
#[derive(Debug, Default)]
pub struct AerospikeStats {
    /// Batch calls made (reads and writes).
    pub calls: AtomicU64,
    /// Records read and written by those calls.
    pub records: AtomicU64,
    /// Commands or batches that ran past their deadline.
    pub timeouts: AtomicU64,
    /// Commands that failed otherwise (node down, a row refused).
    pub errors: AtomicU64,
}

/// The client, the runtime it runs on, and the policies every command uses.
struct Io {
    client: Client,
    /// The runtime of the thread "aerospike-io".
    handle: tokio::runtime::Handle,
    /// Dropping it stops the runtime thread.
    stop: Option<(tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
    namespace: String,
    set: String,
    /// TTL of message records, lookups, tombstones and failed entries.
    ttl: Expiration,
    command_timeout: Duration,
    apply_timeout: Duration,
    max_batch_records: usize,
    max_in_flight: usize,
    probe_interval: Duration,
    read_policy: BatchPolicy,
    write_policy: BatchPolicy,
    stats: Arc<AerospikeStats>,
}

/// The backend. Owned by the writer thread.
pub struct AerospikeStore {
    io: Arc<Io>,
    targets: WebhookTargets,
    /// Where inbound messages go (`[[mo_routes]]`, swapped by a reload).
    mo_router: Arc<MoRouter>,
    /// Outbox sequence numbers reserved from the cluster and not used yet.
    seqs: SeqBlock,
}

// === impl AerospikeStore ===

impl AerospikeStore {
    /// Starts the runtime thread, connects to the cluster (within `connect_timeout_ms`) and
    /// makes sure the outbox index exists. Fails with a message naming what to fix.
    pub fn open(cfg: &AerospikeConfig) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("aerospike runtime: {e}")))?;
        let handle = rt.handle().clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("aerospike-io".to_owned())
            .spawn(move || {
                // Drives the client's I/O, timers and tending until the store is dropped.
                rt.block_on(async {
                    stop_rx.await.ok();
                });
            })
            .map_err(|e| StoreError::Io(format!("aerospike thread: {e}")))?;
        let client_policy = ClientPolicy {
            timeout: cfg.connect_timeout_ms,
            connect_timeout: cfg.connect_timeout_ms,
            fail_if_not_connected: true,
            ..ClientPolicy::default()
        };
        let hosts = cfg.hosts.join(",");
        let connect = Duration::from_millis(u64::from(cfg.connect_timeout_ms));
        // A node that is starting (or a cluster still forming) refuses clients for a moment:
        // try again until the deadline.
        let client = handle.block_on(async {
            let deadline = tokio::time::Instant::now() + connect;
            loop {
                let last = match tokio::time::timeout_at(deadline, Client::new(&client_policy, &hosts)).await {
                    Ok(Ok(client)) => return Ok(client),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer".to_owned(),
                };
                if tokio::time::Instant::now() + CONNECT_RETRY >= deadline {
                    return Err(StoreError::Io(format!(
                        "cannot connect to Aerospike at {hosts} within {connect:?}: {last}"
                    )));
                }
                tokio::time::sleep(CONNECT_RETRY).await;
            }
        })?;
        let command = Duration::from_millis(u64::from(cfg.timeout_ms));
        let timeouts = |p: &mut aerospike::policy::BasePolicy| {
            p.total_timeout = cfg.timeout_ms;
            p.socket_timeout = cfg.timeout_ms;
        };
        let mut read_policy = BatchPolicy::default();
        timeouts(&mut read_policy.base_policy);
        // No retries on writes: a retried list append would apply twice (FACTS.md).
        let mut write_policy = BatchPolicy::write_default();
        timeouts(&mut write_policy.base_policy);
        let io = Io {
            client,
            handle,
            stop: Some((stop_tx, thread)),
            namespace: cfg.namespace.clone(),
            set: cfg.set.clone(),
            ttl: Expiration::Seconds(cfg.ttl_s),
            command_timeout: command,
            apply_timeout: Duration::from_millis(u64::from(cfg.apply_timeout_ms)),
            max_batch_records: cfg.max_batch_records,
            max_in_flight: cfg.max_in_flight,
            probe_interval: Duration::from_millis(u64::from(cfg.probe_interval_ms)),
            read_policy,
            write_policy,
            stats: Arc::default(),
        };
        io.ensure_index(BIN_DUE, DUE_INDEX, connect)?;
        io.ensure_index(BIN_MO, MO_INDEX, connect)?;
        Ok(AerospikeStore {
            io: Arc::new(io),
            targets: WebhookTargets::default(),
            mo_router: Arc::default(),
            seqs: SeqBlock::default(),
        })
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

    /// The backend's counters.
    pub fn stats(&self) -> Arc<AerospikeStats> {
        Arc::clone(&self.io.stats)
    }
}

impl StateStore for AerospikeStore {
    fn apply(&mut self, batch: &[Op]) -> Result<Vec<OpOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + self.io.apply_timeout;
        let (mut outcomes, mut raced) = self.apply_once(batch, deadline)?;
        // Receipts that raced a put on another node: applied now, before the batch is
        // answered. Each round can race again only with yet another node's write.
        for _ in 0..MAX_RACE_ROUNDS {
            if raced.is_empty() {
                break;
            }
            let ops: Vec<Op> = raced.iter().map(|r| Op::Receipt(r.receipt.clone())).collect();
            let (again, next) = self.apply_once(&ops, deadline)?;
            for (r, outcome) in raced.iter().zip(again) {
                if !r.parked_here {
                    continue;
                }
                let parked_it = batch.iter().zip(outcomes.iter_mut()).rev().find(|(op, out)| {
                    **out == OpOutcome::ReceiptParked
                        && matches!(op, Op::Receipt(x) if smsc_key(&x.link, &x.smsc_message_id) == r.key)
                });
                if let Some((_, out)) = parked_it {
                    *out = outcome;
                }
            }
            raced = next;
        }
        if !raced.is_empty() {
            return Err(StoreError::Io("aerospike: receipts kept racing other nodes' writes".to_owned()));
        }
        Ok(outcomes)
    }

    fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let key = self.io.key(Kind::Message, &id.to_bytes())?;
        let deadline = Instant::now() + self.io.command_timeout;
        let record = self.io.get(deadline, key)?;
        record.map(|r| blob(&r, BIN_REC).and_then(|b| decode(b.unwrap_or_default()))).transpose()
    }

    fn get_inbound(&self, id: InboundId) -> Result<Option<InboundMessage>, StoreError> {
        let key = self.io.key(Kind::Inbound, &id.0.to_be_bytes())?;
        let record = self.io.get(Instant::now() + self.io.command_timeout, key)?;
        record.map(|r| blob(&r, BIN_REC).and_then(|b| decode(b.unwrap_or_default()))).transpose()
    }

    fn outbox_reader(&self) -> Box<dyn OutboxRead> {
        Box::new(AerospikeOutbox { io: Arc::clone(&self.io) })
    }

    fn probe_interval(&self) -> Option<Duration> {
        Some(self.io.probe_interval)
    }

    fn check(&mut self) -> Result<(), StoreError> {
        let key = self.io.key(Kind::Seq, &[])?;
        self.io.get(Instant::now() + self.io.command_timeout, key).map(drop)
    }
}

impl AerospikeStore {
    /// One pass: prefetch, the ops on the overlay, the writes.
    fn apply_once(&mut self, batch: &[Op], deadline: Instant) -> Result<(Vec<OpOutcome>, Vec<Raced>), StoreError> {
        let mut overlay = Overlay::new(&self.io, &self.targets, &self.mo_router, &mut self.seqs, deadline);
        overlay.prefetch(batch)?;
        let outcomes = batch.iter().map(|op| apply_op(&mut overlay, op)).collect::<Result<Vec<_>, _>>()?;
        let raced = overlay.flush()?;
        Ok((outcomes, raced))
    }
}

// === impl Io ===

impl Io {
    fn key(&self, kind: Kind, payload: &[u8]) -> Result<Key, StoreError> {
        let mut k = Vec::with_capacity(1 + payload.len());
        k.push(kind as u8);
        k.extend_from_slice(payload);
        Key::new(self.namespace.as_str(), self.set.as_str(), Value::Blob(k))
            .map_err(|e| StoreError::Corrupt(format!("aerospike key: {e}")))
    }

    /// Runs `fut` on the runtime thread's reactor, failing at `deadline`.
    fn block<T>(&self, deadline: Instant, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        match self.handle.block_on(async { tokio::time::timeout_at(deadline, fut).await }) {
            Ok(r) => r,
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Io("aerospike: no answer within the deadline".to_owned()))
            }
        }
    }

    /// Reads one record; `None` if it does not exist.
    fn get(&self, deadline: Instant, key: Key) -> Result<Option<Record>, StoreError> {
        let mut rows = self.read(deadline, vec![key])?;
        Ok(rows.pop().flatten())
    }

    /// Reads records in batch calls; one answer per key, in order.
    fn read(&self, deadline: Instant, keys: Vec<Key>) -> Result<Vec<Option<Record>>, StoreError> {
        let policy = BatchReadPolicy::default();
        let ops = keys.into_iter().map(|k| BatchOperation::read(&policy, k, Bins::All)).collect();
        let rows = self.block(deadline, self.batches(&self.read_policy, ops))?;
        rows.into_iter()
            .map(|mut row| match row.result_code() {
                Some(ResultCode::Ok) => Ok(row.take_record()),
                Some(ResultCode::KeyNotFoundError) => Ok(None),
                code => Err(self.row_error("read", code, &row)),
            })
            .collect()
    }

    /// Writes in batch calls; every row must succeed. Returns the rows (with what their read
    /// operations answered), in order.
    fn write(&self, deadline: Instant, ops: Vec<BatchOperation>) -> Result<Vec<BatchOperation>, StoreError> {
        let rows = self.block(deadline, self.batches(&self.write_policy, ops))?;
        match rows.iter().find(|r| r.result_code() != Some(ResultCode::Ok)) {
            Some(row) => Err(self.row_error("write", row.result_code(), row)),
            None => Ok(rows),
        }
    }

    fn row_error(&self, what: &str, code: Option<ResultCode>, row: &BatchOperation) -> StoreError {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let code = code.map_or_else(|| "no answer".to_owned(), |c| format!("{c:?}"));
        let detail = row.error().map(|e| format!(": {e}")).unwrap_or_default();
        StoreError::Io(format!("aerospike {what} refused ({code}){detail}"))
    }

    /// Splits `ops` into batch calls of `max_batch_records`, at most `max_in_flight` at once,
    /// and returns the rows in their original order.
    async fn batches(&self, policy: &BatchPolicy, ops: Vec<BatchOperation>) -> Result<Vec<BatchOperation>, StoreError> {
        let mut chunks: Vec<Vec<BatchOperation>> = Vec::new();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            chunks.push(ops.by_ref().take(self.max_batch_records).collect());
        }
        let mut done = Vec::with_capacity(chunks.len());
        let mut chunks = chunks.into_iter();
        loop {
            let wave: Vec<Vec<BatchOperation>> = chunks.by_ref().take(self.max_in_flight).collect();
            if wave.is_empty() {
                break;
            }
            let calls = wave.into_iter().map(|mut chunk| async move {
                self.stats.calls.fetch_add(1, Ordering::Relaxed);
                self.stats.records.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                let r = self.client.batch(policy, &mut chunk).await;
                (r, chunk)
            });
            for (r, chunk) in futures_util::future::join_all(calls).await {
                if let Err(e) = r {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(StoreError::Io(format!("aerospike batch: {e}")));
                }
                done.extend(chunk);
            }
        }
        Ok(done)
    }

    /// Reserves `n` outbox sequence numbers: returns the last of them.
    fn reserve_seqs(&self, deadline: Instant, n: u64) -> Result<u64, StoreError> {
        let key = self.key(Kind::Seq, &[])?;
        let mut policy = WritePolicy::default();
        policy.base_policy.total_timeout = self.command_timeout.as_millis() as u32;
        policy.commit_level = CommitLevel::CommitAll;
        policy.expiration = Expiration::Never;
        let add = Bin::new(BIN_N, Value::Int(n as i64));
        let ops = [scalar::add(&add), scalar::get_bin(BIN_N)];
        let record = self.block(deadline, async {
            self.client.operate(&policy, &key, &ops).await.map_err(|e| StoreError::Io(format!("aerospike seq: {e}")))
        })?;
        last_int(record.bins.get(BIN_N))
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| StoreError::Corrupt("aerospike outbox sequence is not a number".to_owned()))
    }

    /// Creates the numeric secondary index `name` on `bin`, unless it exists. One index for the
    /// namespace, not one per set: each index costs the server a fixed amount of memory (~16 MB
    /// measured on CE 8.1), and a query names its set, which the server filters on.
    fn ensure_index(&self, bin: &str, name: &str, budget: Duration) -> Result<(), StoreError> {
        let policy = AdminPolicy { timeout: budget.as_millis() as u32 };
        let created = self.handle.block_on(async {
            let task = self
                .client
                .create_index_on_bin(
                    &policy,
                    &self.namespace,
                    "",
                    bin,
                    name,
                    IndexType::Numeric,
                    CollectionIndexType::Default,
                    None,
                )
                .await;
            match task {
                Ok(task) => task.wait_till_complete(Some(budget)).await.map(drop),
                Err(e) if e.server_result_code() == Some(ResultCode::IndexFound) => Ok(()),
                Err(e) => Err(e),
            }
        });
        created.map_err(|e| StoreError::Io(format!("aerospike index {name} on namespace {}: {e}", self.namespace)))
    }

    /// The records of this set whose indexed `bin` is in `lo..=hi`, about `max` at most (0: all),
    /// in no order, tombstones left out.
    fn query(&self, deadline: Instant, bin: &str, lo: u64, hi: u64, max: u64) -> Result<Vec<Record>, StoreError> {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut statement = Statement::new(self.namespace.as_str(), self.set.as_str(), Bins::All);
        statement.set_filter(Filter::range(bin, int(lo), int(hi)));
        let mut policy = QueryPolicy::default();
        policy.base_policy.total_timeout = self.command_timeout.as_millis() as u32;
        policy.max_records = max;
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let records = self.block(deadline, async {
            let set = self
                .client
                .query(&policy, PartitionFilter::all(), statement)
                .await
                .map_err(|e| StoreError::Io(format!("aerospike query on {bin}: {e}")))?;
            let mut stream = set.into_stream();
            let mut records = Vec::new();
            while let Some(r) = stream.next().await {
                records.push(r.map_err(|e| StoreError::Io(format!("aerospike query on {bin}: {e}")))?);
            }
            Ok(records)
        })?;
        self.stats.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(records.into_iter().filter(|r| !r.bins.contains_key(BIN_GONE)).collect())
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.stop.take() {
            let closed = self.handle.block_on(self.client.close());
            if let Err(e) = closed {
                tracing::debug!(error = %e, "closing the aerospike client");
            }
            stop.send(()).ok();
            if thread.join().is_err() {
                tracing::error!("aerospike-io thread panicked");
            }
        }
    }
}

// === the outbox reader ===

/// The webhook sender's read of the outbox.
///
/// Due entries are found with a query on the secondary index over `smsgate_due`, a bin only the head
/// event of each message carries, so a poll reads the due entries only: not the whole set,
/// and not the entries waiting behind another or the ones whose next attempt is later (the
/// index holds their future time; the range stops at now). The query answers in no order:
/// the reader takes up to `4 × limit` (at least 256) due entries and returns the earliest
/// `limit`. With more due entries than that, the order is earliest-of-a-sample, and every
/// entry still goes out (each sent or retried entry leaves the range). The pending count is
/// the `c` counter, updated with atomic adds.
struct AerospikeOutbox {
    io: Arc<Io>,
}

impl OutboxRead for AerospikeOutbox {
    fn due_webhooks(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let deadline = Instant::now() + self.io.apply_timeout;
        let records = self.io.query(deadline, BIN_DUE, 0, now_ms, limit.saturating_mul(4).max(256) as u64)?;
        let mut entries = Vec::with_capacity(records.len());
        for r in &records {
            if let Some(bytes) = blob(r, BIN_ENTRY)? {
                let due = last_int(r.bins.get(BIN_DUE)).unwrap_or(i64::MAX);
                entries.push((due, decode::<OutboxEntry>(bytes)?));
            }
        }
        entries.sort_by_key(|(due, e)| (*due, e.seq));
        Ok(entries.into_iter().take(limit).map(|(_, e)| e).collect())
    }

    fn oldest_inbound_group(&self) -> Result<Option<u64>, StoreError> {
        let deadline = Instant::now() + self.io.apply_timeout;
        let records = self.io.query(deadline, BIN_MO, 0, u64::MAX, 0)?;
        Ok(records.iter().filter_map(|r| last_int(r.bins.get(BIN_MO))).min().map(|t| t.max(0) as u64))
    }

    fn pending(&self) -> Result<u64, StoreError> {
        let key = self.io.key(Kind::Pending, &[])?;
        let record = self.io.get(Instant::now() + self.io.command_timeout, key)?;
        Ok(record.and_then(|r| last_int(r.bins.get(BIN_N))).map_or(0, |n| n.max(0) as u64))
    }
}

// === value helpers ===

/// A blob bin, if present.
fn blob<'r>(r: &'r Record, bin: &str) -> Result<Option<&'r [u8]>, StoreError> {
    match r.bins.get(bin) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Blob(b)) => Ok(Some(b)),
        Some(other) => Err(StoreError::Corrupt(format!("aerospike bin {bin}: expected bytes, found {other:?}"))),
    }
}

/// An integer bin; for an operate that answered the bin more than once, its last integer.
fn last_int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Int(i) => Some(*i),
        Value::MultiResult(vs) => vs.iter().rev().find_map(|v| last_int(Some(v))),
        _ => None,
    }
}
