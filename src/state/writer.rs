//! The group-commit writer: one thread that owns the state backend and turns whatever the shards
//! sent meanwhile into one durable batch.
//!
//! Shards hold a [`StateHandle`] (`Send + Sync`, cheap to clone). Each call submits at once with
//! `try_send` on a bounded crossbeam channel (full: [`StoreError::Busy`], never a hidden queue)
//! and returns a future that resolves when the writer answers on a oneshot. The writer blocks on
//! the first request, drains what else is queued up to `max_batch`, applies the writes with one
//! `StateStore::apply` (one sync), serves the reads of the batch after the writes, then answers.
//! A write's future resolves only once it is durable.
//!
//! The oneshot is completed from the writer thread, a thread foreign to the glommio executor
//! that awaits it; glommio wakers accept wakes from other threads (tested below).

use super::record::{MessageRecord, Receipt};
use super::store::{Op, OpOutcome, StateStore, StoreError};
use crate::ids::{InboundId, MessageId};
use crate::notify::mo::{InboundMessage, MoPart};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use futures_channel::oneshot;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Sizes of the writer. Both bound memory and latency; neither hides a queue.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Most requests (writes and reads) taken into one batch. Bounds one sync's latency: a batch
    /// of 1,000 ops commits in ~3-4 ms (p50) on the benchmark disk (perf/RESULTS.md).
    pub max_batch: usize,
    /// Requests waiting for the writer, at most. Bounded: when full, submissions fail at once
    /// with [`StoreError::Busy`] and the caller rejects (429), never queues elsewhere.
    pub queue_capacity: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch: 1_000,
            // ~0.4 s of work at 50,000 msg/s (three writes per message).
            queue_capacity: 65_536,
        }
    }
}

/// Counters for the metrics module. Relaxed atomics: each is a gauge or a monotonic count.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Batches applied (one sync each), failed ones included.
    pub batches: AtomicU64,
    /// Writes applied, failed ones included.
    pub ops: AtomicU64,
    /// Reads served.
    pub reads: AtomicU64,
    /// Requests (writes and reads) in the most recent batch.
    pub last_batch: AtomicU64,
    /// Batches whose `apply` failed.
    pub failed_batches: AtomicU64,
    /// Answers nobody waited for any more (the caller dropped its future). The op itself was
    /// still applied.
    pub abandoned: AtomicU64,
    /// The backend is unreachable: a batch failed with an I/O error and no probe has
    /// succeeded since (only for backends with a probe, `StateStore::probe_interval`). While
    /// set, shards refuse new messages before sending them (`StateHandle::check_up`).
    pub down: AtomicBool,
    /// Times the backend went down.
    pub outages: AtomicU64,
}

/// Where the writer answers a write and a read.
type WriteReply = oneshot::Sender<Result<OpOutcome, StoreError>>;
type ReadReply = oneshot::Sender<Result<Option<MessageRecord>, StoreError>>;
type InboundReply = oneshot::Sender<Result<Option<InboundMessage>, StoreError>>;

/// A read served after the writes of its batch.
enum Read {
    Message(MessageId, ReadReply),
    Inbound(InboundId, InboundReply),
}

/// One request to the writer thread.
// Nearly every request is a `Write`: boxing its op would allocate once per write for nothing.
#[allow(clippy::large_enum_variant)]
enum Request {
    Write {
        op: Op,
        reply: WriteReply,
    },
    Get(Read),
    /// Sent by [`Writer::shutdown`]: finish what is queued, then stop.
    Stop,
}

/// State shared by the writer and every handle.
#[derive(Debug, Default)]
struct Shared {
    /// Set by shutdown: handles refuse new requests with [`StoreError::Closed`].
    closed: AtomicBool,
    stats: Arc<WriterStats>,
}

/// A shard's way to the writer. `Send + Sync`; clone it freely.
#[derive(Clone)]
pub struct StateHandle {
    tx: Sender<Request>,
    shared: Arc<Shared>,
}

/// The writer thread. Dropping it shuts it down like [`Writer::shutdown`], without the result.
pub struct Writer {
    thread: Option<JoinHandle<Result<(), StoreError>>>,
    tx: Sender<Request>,
    shared: Arc<Shared>,
}

// === impl StateHandle ===

impl StateHandle {
    /// Inserts or replaces a record. Submitted now (so calls keep their order whatever order
    /// the futures are polled in); the future resolves once the record is durable.
    pub fn put(&self, rec: MessageRecord) -> impl Future<Output = Result<OpOutcome, StoreError>> + Send + 'static {
        self.write(Op::Put(rec))
    }

    /// Records a delivery receipt. Submitted now; resolves once durable, with what it did.
    pub fn receipt(&self, r: Receipt) -> impl Future<Output = Result<OpOutcome, StoreError>> + Send + 'static {
        self.write(Op::Receipt(r))
    }

    /// Reads a record. Served after the writes of the batch it lands in, so it sees every write
    /// this handle submitted before it.
    pub fn get(
        &self,
        id: MessageId,
    ) -> impl Future<Output = Result<Option<MessageRecord>, StoreError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let sent = self.submit(Request::Get(Read::Message(id, reply)));
        answer(sent, rx)
    }

    /// Keeps an inbound message part (`Op::Inbound`); resolves once durable, with what it did.
    pub fn inbound(&self, part: MoPart) -> impl Future<Output = Result<OpOutcome, StoreError>> + Send + 'static {
        self.write(Op::Inbound(part))
    }

    /// Closes the groups of inbound parts that waited since `before_ms` or longer
    /// (`Op::InboundExpire`); resolves once durable.
    pub fn expire_inbound(
        &self,
        before_ms: u64,
    ) -> impl Future<Output = Result<OpOutcome, StoreError>> + Send + 'static {
        self.write(Op::InboundExpire { before_ms })
    }

    /// Reads an inbound message, like [`StateHandle::get`].
    pub fn get_inbound(
        &self,
        id: InboundId,
    ) -> impl Future<Output = Result<Option<InboundMessage>, StoreError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let sent = self.submit(Request::Get(Read::Inbound(id, reply)));
        answer(sent, rx)
    }

    /// Settles an outbox entry (`Op::WebhookDone`, `WebhookRetry`, `WebhookFailed`); resolves
    /// once durable.
    pub fn webhook(&self, op: Op) -> impl Future<Output = Result<OpOutcome, StoreError>> + Send + 'static {
        self.write(op)
    }

    /// `Err(StoreError::Down)` while the backend is known unreachable: checked before a message
    /// is sent, so that an outage refuses new messages instead of sending them and then failing
    /// to keep their record.
    pub fn check_up(&self) -> Result<(), StoreError> {
        if self.shared.stats.down.load(Ordering::Relaxed) {
            return Err(StoreError::Down);
        }
        Ok(())
    }

    /// Requests waiting for the writer now.
    pub fn queue_depth(&self) -> usize {
        self.tx.len()
    }

    /// The writer's counters, for the metrics module.
    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.shared.stats)
    }

    fn write(&self, op: Op) -> impl Future<Output = Result<OpOutcome, StoreError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let sent = self.submit(Request::Write { op, reply });
        answer(sent, rx)
    }

    fn submit(&self, req: Request) -> Result<(), StoreError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.tx.try_send(req).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Busy,
            TrySendError::Disconnected(_) => StoreError::Closed,
        })
    }
}

/// The future of one submitted request. A reply sender dropped unanswered means the writer
/// stopped before serving it: nothing is known durable, so `Closed`.
async fn answer<T>(
    sent: Result<(), StoreError>,
    rx: oneshot::Receiver<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    sent?;
    rx.await.unwrap_or(Err(StoreError::Closed))
}

// === impl Writer ===

impl Writer {
    /// Starts the thread "state-writer", which owns `store` until shutdown.
    pub fn spawn<S: StateStore>(store: S, cfg: WriterConfig) -> std::io::Result<(Writer, StateHandle)> {
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_capacity.max(1));
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            let max_batch = cfg.max_batch.max(1);
            std::thread::Builder::new()
                .name("state-writer".to_owned())
                .spawn(move || run(store, &rx, max_batch, &shared.stats))?
        };
        let handle = StateHandle { tx: tx.clone(), shared: Arc::clone(&shared) };
        let writer = Writer { thread: Some(thread), tx, shared };
        Ok((writer, handle))
    }

    /// The writer's counters, for the metrics module.
    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Stops taking requests, applies and syncs what is queued, answers it, and joins the
    /// thread. Returns the error of a batch that failed while finishing, if any.
    pub fn shutdown(mut self) -> Result<(), StoreError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), StoreError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.shared.closed.store(true, Ordering::Release);
        // Blocking send: the queue may be full; the writer is draining it. An error means the
        // thread is gone already, which `join` reports.
        if self.tx.send(Request::Stop).is_err() {
            tracing::warn!("state writer exited before shutdown");
        }
        thread.join().map_err(|_| StoreError::Io("state writer thread panicked".to_owned()))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "state writer failed while shutting down");
        }
    }
}

// === the writer loop ===

/// Runs until a `Stop` request; then finishes what is queued. Returns the first error of a batch
/// applied after `Stop` (errors before are answered to their callers and counted).
fn run<S: StateStore>(
    mut store: S,
    rx: &Receiver<Request>,
    max_batch: usize,
    stats: &WriterStats,
) -> Result<(), StoreError> {
    let mut batch = Batch::with_capacity(max_batch);
    let mut stopping = false;
    let mut result = Ok(());
    let probe_interval = store.probe_interval();
    loop {
        if !stopping {
            let next = match probe_interval.filter(|_| stats.down.load(Ordering::Relaxed)) {
                Some(interval) => match rx.recv_timeout(interval) {
                    Ok(req) => Some(req),
                    Err(RecvTimeoutError::Timeout) => {
                        probe(&mut store, stats);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
                None => rx.recv().ok(),
            };
            match next {
                Some(req) => stopping |= batch.push(req),
                // Unreachable while `Writer` holds a sender; stop all the same.
                None => return result,
            }
        }
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(req) => stopping |= batch.push(req),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if batch.len() == 0 {
            // Only reachable while stopping: the queue is empty, everything is answered.
            return result;
        }
        match batch.run(&mut store, stats) {
            Ok(()) => mark_up(stats),
            Err(e) => {
                if probe_interval.is_some()
                    && matches!(e, StoreError::Io(_))
                    && !stats.down.swap(true, Ordering::Relaxed)
                {
                    stats.outages.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "state store unreachable; refusing new messages until it answers");
                }
                if stopping && result.is_ok() {
                    result = Err(e);
                }
            }
        }
    }
}

/// One round trip to a backend that is down; marks it up if it answered.
fn probe<S: StateStore>(store: &mut S, stats: &WriterStats) {
    match store.check() {
        Ok(()) => mark_up(stats),
        Err(e) => tracing::debug!(error = %e, "state store probe failed"),
    }
}

fn mark_up(stats: &WriterStats) {
    if stats.down.swap(false, Ordering::Relaxed) {
        tracing::info!("state store reachable again");
    }
}

/// The requests of one batch, split into writes and reads.
struct Batch {
    ops: Vec<Op>,
    write_replies: Vec<WriteReply>,
    reads: Vec<Read>,
}

impl Batch {
    fn with_capacity(n: usize) -> Self {
        Batch { ops: Vec::with_capacity(n), write_replies: Vec::with_capacity(n), reads: Vec::new() }
    }

    fn len(&self) -> usize {
        self.ops.len() + self.reads.len()
    }

    /// Adds a request; true if it was `Stop`.
    fn push(&mut self, req: Request) -> bool {
        match req {
            Request::Write { op, reply } => {
                self.ops.push(op);
                self.write_replies.push(reply);
            }
            Request::Get(read) => self.reads.push(read),
            Request::Stop => return true,
        }
        false
    }

    /// Applies the writes (one sync), serves the reads, answers everyone, and empties itself.
    /// Returns the apply error, which every write of the batch was also given. Counters are
    /// updated before the answers, so a caller that got its answer sees its batch counted.
    fn run<S: StateStore>(&mut self, store: &mut S, stats: &WriterStats) -> Result<(), StoreError> {
        stats.last_batch.store(self.len() as u64, Ordering::Relaxed);
        let mut result = Ok(());
        if !self.ops.is_empty() {
            let applied = store.apply(&self.ops);
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.ops.fetch_add(self.ops.len() as u64, Ordering::Relaxed);
            self.ops.clear();
            match applied {
                Ok(outcomes) => {
                    let mut outcomes = outcomes.into_iter();
                    for reply in self.write_replies.drain(..) {
                        // A backend that returned too few outcomes: the rest are not known durable.
                        let answer = outcomes
                            .next()
                            .ok_or_else(|| StoreError::Corrupt("backend returned too few outcomes".to_owned()));
                        deliver(reply, answer, stats);
                    }
                }
                Err(e) => {
                    stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, ops = self.write_replies.len(), "state batch failed");
                    for reply in self.write_replies.drain(..) {
                        deliver(reply, Err(same_error(&e)), stats);
                    }
                    result = Err(e);
                }
            }
        }
        for read in self.reads.drain(..) {
            stats.reads.fetch_add(1, Ordering::Relaxed);
            match read {
                Read::Message(id, reply) => deliver(reply, store.get(id), stats),
                Read::Inbound(id, reply) => deliver(reply, store.get_inbound(id), stats),
            }
        }
        result
    }
}

/// Answers one waiter. A waiter that is gone dropped its future; its op was still applied.
fn deliver<T>(reply: oneshot::Sender<T>, answer: T, stats: &WriterStats) {
    if reply.send(answer).is_err() {
        stats.abandoned.fetch_add(1, Ordering::Relaxed);
    }
}

/// A copy of a batch's error for each of its waiters (`StoreError` is not `Clone`).
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Io(s) => StoreError::Io(s.clone()),
        StoreError::Corrupt(s) => StoreError::Corrupt(s.clone()),
        StoreError::Busy => StoreError::Busy,
        StoreError::Closed => StoreError::Closed,
        StoreError::Down => StoreError::Down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ClientId;
    use crate::state::embedded::EmbeddedStore;
    use crate::state::record::Status;
    use crate::state::test_util::{receipt, record};
    use futures_lite::future::block_on;
    use std::time::Duration;

    /// A backend whose first `apply` waits until the test opens the gate, so that requests pile
    /// up in the queue meanwhile; optionally fails every batch.
    struct Gated<S> {
        inner: S,
        /// Told when the first `apply` starts, before it waits for the gate.
        entered: crossbeam_channel::Sender<()>,
        gate: Option<crossbeam_channel::Receiver<()>>,
        fail: bool,
    }

    impl<S: StateStore> StateStore for Gated<S> {
        fn apply(&mut self, batch: &[Op]) -> Result<Vec<OpOutcome>, StoreError> {
            if let Some(gate) = self.gate.take() {
                self.entered.send(()).ok();
                gate.recv().ok();
            }
            if self.fail {
                return Err(StoreError::Io("disk on fire".to_owned()));
            }
            self.inner.apply(batch)
        }
        fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
            self.inner.get(id)
        }
        fn get_inbound(&self, id: InboundId) -> Result<Option<InboundMessage>, StoreError> {
            self.inner.get_inbound(id)
        }
        fn outbox_reader(&self) -> Box<dyn crate::state::store::OutboxRead> {
            self.inner.outbox_reader()
        }
    }

    /// The test's side of a [`Gated`] store.
    struct Gate {
        open: crossbeam_channel::Sender<()>,
        entered: crossbeam_channel::Receiver<()>,
    }

    impl Gate {
        fn open(&self) {
            self.open.send(()).unwrap();
        }
        /// Returns once the writer is inside its first `apply`, its queue no longer drained.
        fn wait_entered(&self) {
            self.entered.recv().unwrap();
        }
    }

    fn gated(dir: &std::path::Path, cfg: WriterConfig, fail: bool) -> (Writer, StateHandle, Gate) {
        let (open, gate) = crossbeam_channel::bounded(1);
        let (entered_tx, entered) = crossbeam_channel::bounded(1);
        let store = Gated { inner: EmbeddedStore::open(dir).unwrap(), entered: entered_tx, gate: Some(gate), fail };
        let (writer, handle) = Writer::spawn(store, cfg).unwrap();
        (writer, handle, Gate { open, entered })
    }

    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<StateHandle>();
    }

    #[test]
    fn concurrent_puts_share_batches() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig { max_batch: 256, queue_capacity: 2_000 };
        let (writer, handle, gate) = gated(dir.path(), cfg, false);
        // Submitted at call time, awaited later: 1,000 puts in flight at once.
        let pending: Vec<_> = (0..1_000).map(|i| handle.put(record(i, None))).collect();
        gate.open();
        for p in pending {
            block_on(p).unwrap();
        }
        let batches = writer.stats().batches.load(Ordering::Relaxed);
        // The first batch held what arrived before the gate; the rest went 256 at a time.
        assert!(batches <= 1 + 999_u64.div_ceil(256), "{batches} batches");
        assert_eq!(writer.stats().ops.load(Ordering::Relaxed), 1_000);
        assert_eq!(block_on(handle.get(MessageId(999))).unwrap(), Some(record(999, None)));
        writer.shutdown().unwrap();
    }

    #[test]
    fn full_queue_is_busy_not_a_hidden_queue() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig { max_batch: 8, queue_capacity: 4 };
        let (writer, handle, gate) = gated(dir.path(), cfg, false);
        let first = handle.put(record(0, None));
        gate.wait_entered();
        assert_eq!(handle.queue_depth(), 0);
        let queued: Vec<_> = (1..=4).map(|i| handle.put(record(i, None))).collect();
        assert!(matches!(block_on(handle.put(record(5, None))), Err(StoreError::Busy)));
        gate.open();
        block_on(first).unwrap();
        for q in queued {
            block_on(q).unwrap();
        }
        writer.shutdown().unwrap();
    }

    #[test]
    fn a_failed_batch_fails_each_of_its_ops() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, handle, gate) = gated(dir.path(), WriterConfig::default(), true);
        let puts: Vec<_> = (0..10).map(|i| handle.put(record(i, None))).collect();
        let r = handle.receipt(receipt("x", Status::Delivered));
        gate.open();
        for p in puts {
            assert!(matches!(block_on(p), Err(StoreError::Io(_))));
        }
        assert!(matches!(block_on(r), Err(StoreError::Io(_))));
        assert!(writer.stats().failed_batches.load(Ordering::Relaxed) >= 1);
        drop(writer);
    }

    #[test]
    fn shutdown_finishes_what_is_queued_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, handle, gate) = gated(dir.path(), WriterConfig::default(), false);
        let pending: Vec<_> = (0..100).map(|i| handle.put(record(i, None))).collect();
        gate.open();
        writer.shutdown().unwrap();
        for p in pending {
            block_on(p).unwrap();
        }
        assert!(matches!(block_on(handle.put(record(7, None))), Err(StoreError::Closed)));
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get(MessageId(99)).unwrap(), Some(record(99, None)));
    }

    /// A backend that fails while `broken` is set, and can be probed. A stand-in for a remote
    /// cluster going away (tests/aerospike_outage.rs does it with a real server).
    struct Flaky {
        inner: EmbeddedStore,
        broken: Arc<AtomicBool>,
    }

    impl StateStore for Flaky {
        fn apply(&mut self, batch: &[Op]) -> Result<Vec<OpOutcome>, StoreError> {
            if self.broken.load(Ordering::Relaxed) {
                return Err(StoreError::Io("cluster gone".to_owned()));
            }
            self.inner.apply(batch)
        }
        fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
            self.inner.get(id)
        }
        fn get_inbound(&self, id: InboundId) -> Result<Option<InboundMessage>, StoreError> {
            self.inner.get_inbound(id)
        }
        fn outbox_reader(&self) -> Box<dyn crate::state::store::OutboxRead> {
            self.inner.outbox_reader()
        }
        fn probe_interval(&self) -> Option<Duration> {
            Some(Duration::from_millis(5))
        }
        fn check(&mut self) -> Result<(), StoreError> {
            match self.broken.load(Ordering::Relaxed) {
                true => Err(StoreError::Io("cluster gone".to_owned())),
                false => Ok(()),
            }
        }
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_failed_batch_marks_the_store_down_until_a_probe_answers() {
        let dir = tempfile::tempdir().unwrap();
        let broken = Arc::new(AtomicBool::new(true));
        let store = Flaky { inner: EmbeddedStore::open(dir.path()).unwrap(), broken: Arc::clone(&broken) };
        let (writer, handle) = Writer::spawn(store, WriterConfig::default()).unwrap();
        assert!(handle.check_up().is_ok(), "up until a batch fails");
        assert!(matches!(block_on(handle.put(record(1, None))), Err(StoreError::Io(_))));
        wait_for("down", || matches!(handle.check_up(), Err(StoreError::Down)));
        assert_eq!(writer.stats().outages.load(Ordering::Relaxed), 1);
        broken.store(false, Ordering::Relaxed);
        // No request needed: the writer's probe finds it back.
        wait_for("up again", || handle.check_up().is_ok());
        block_on(handle.put(record(2, None))).unwrap();
        assert_eq!(block_on(handle.get(MessageId(2))).unwrap(), Some(record(2, None)));
        writer.shutdown().unwrap();
    }

    #[test]
    fn a_store_without_a_probe_is_never_marked_down() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, handle, gate) = gated(dir.path(), WriterConfig::default(), true);
        let put = handle.put(record(1, None));
        gate.open();
        assert!(block_on(put).is_err());
        assert!(handle.check_up().is_ok());
        drop(writer);
    }

    /// The oneshot is completed on the writer thread; the glommio executor awaiting it must be
    /// woken by that foreign thread (and not only by its own reactor).
    #[test]
    fn glommio_executor_is_woken_from_the_writer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let (writer, handle) = Writer::spawn(store, WriterConfig::default()).unwrap();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let shard = std::thread::spawn(move || {
            let ex = glommio::LocalExecutorBuilder::default().spawn(move || async move {
                for i in 0..100 {
                    handle.put(record(i, Some(&format!("g{i}")))).await?;
                }
                let out = handle.receipt(receipt("g7", Status::Delivered)).await?;
                let rec = handle.get(MessageId(7)).await?;
                Ok::<_, StoreError>((out, rec))
            });
            let result = ex.map(|ex| ex.join());
            done_tx.send(result).ok();
        });
        // A missed wake would hang the executor forever: fail after a bound instead.
        let result =
            done_rx.recv_timeout(Duration::from_secs(20)).expect("glommio executor was not woken by the writer thread");
        let (out, rec) = result.unwrap().unwrap().unwrap();
        assert_eq!(out, OpOutcome::ReceiptApplied(MessageId(7), ClientId::new("acme")));
        assert_eq!(rec.unwrap().status, Status::Delivered);
        shard.join().unwrap();
        writer.shutdown().unwrap();
    }
}
