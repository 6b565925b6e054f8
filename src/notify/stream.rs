//! Live event streams: events made on one shard (applied receipts, inbound messages),
//! delivered to the watchers of their client on any shard (gRPC `WatchReceipts`,
//! `WatchInbound`). One [`Hub`] per kind of event ([`ReceiptHub`], [`InboundHub`]).
//!
//! Guarantees, and what is not guaranteed:
//! - **At most once.** A receipt reaches the watchers open when it is applied. Nothing is
//!   stored or replayed: a receipt applied while no watch is open, or between a reconnect
//!   and the new watch, is never streamed. The state record (GetMessage) is the truth; the
//!   durable, retried way is the webhook outbox (issue 11).
//! - **Never blocks the inbound path.** Publishing is a few non-waiting sends: a full queue
//!   drops the event and counts it. The SMSC's deliver_sm_resp never waits for a watcher.
//! - **A slow watcher is told.** Each watcher has a bounded queue ([`WATCHER_QUEUE`]); the
//!   events it loses are counted and handed to it with its next event ([`Watched::missed`]).
//!   When a shard's mesh queue is full, every watcher on that shard is told it may have
//!   missed that many events (the shard cannot know whose they were).
//! - **Order**: events from one publishing shard reach a watcher in the order they were
//!   published; events from different shards interleave in any order.
//!
//! How: shared nothing. Each shard keeps its own watchers (`Rc`/`RefCell`); a receipt goes to
//! the publishing shard's own watchers directly and over a dedicated [`Mesh`] to every other
//! shard that has at least one watcher (an atomic count per shard, so a node with no watchers
//! sends nothing). The receiving shard fans out to the watchers of that client.

use crate::ids::{ClientId, MessageId};
use crate::notify::mo::InboundMessage;
use crate::state::record::Receipt;
use shards::{Mesh, MeshSender};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Events one watcher may hold before it loses the newest: ~1 s of receipts for a busy client
/// at 1,000/s, ~300 KiB at worst.
pub const WATCHER_QUEUE: usize = 1024;

/// Events in flight from one shard to another before the publisher drops and counts them.
pub const MESH_CAPACITY: usize = 1024;

/// An event a stream carries: it goes to the watchers of one client.
pub trait Event: std::fmt::Debug + Send + Sync + 'static {
    fn client(&self) -> &ClientId;
}

/// One applied receipt, addressed to its message's client.
#[derive(Debug)]
pub struct ReceiptEvent {
    pub client: ClientId,
    pub id: MessageId,
    pub receipt: Receipt,
}

impl Event for ReceiptEvent {
    fn client(&self) -> &ClientId {
        &self.client
    }
}

/// One inbound message (MO), addressed to the client its route names.
#[derive(Debug)]
pub struct InboundEvent {
    pub client: ClientId,
    pub message: InboundMessage,
}

impl Event for InboundEvent {
    fn client(&self) -> &ClientId {
        &self.client
    }
}

/// The receipt stream (gRPC `WatchReceipts`).
pub type ReceiptHub = Hub<ReceiptEvent>;
pub type ShardReceipts = ShardStream<ReceiptEvent>;
/// The inbound message stream (gRPC `WatchInbound`).
pub type InboundHub = Hub<InboundEvent>;
pub type ShardInbound = ShardStream<InboundEvent>;

/// What a watcher gets: an event, and how many it lost before it.
#[derive(Debug)]
pub struct Watched<E> {
    pub event: Arc<E>,
    /// Events this watcher lost since its previous one (slow reader or full mesh queue).
    pub missed: u64,
}

// === impl Hub ===

/// Built once before the shards start; each shard [`join`](Hub::join)s a clone.
pub struct Hub<E: Event> {
    mesh: Mesh<Arc<E>>,
    shared: Arc<Counters>,
}

impl<E: Event> Clone for Hub<E> {
    fn clone(&self) -> Self {
        Hub { mesh: self.mesh.clone(), shared: self.shared.clone() }
    }
}

/// The only state shared between shards: counters, no locks.
struct Counters {
    /// Open watchers per shard; a shard with none gets nothing over the mesh.
    watchers: Vec<AtomicUsize>,
    /// Events dropped because the mesh queue to that shard was full.
    mesh_dropped: Vec<AtomicU64>,
}

impl<E: Event> Hub<E> {
    pub fn new(nr_shards: usize) -> Self {
        Hub {
            mesh: Mesh::new(nr_shards, MESH_CAPACITY),
            shared: Arc::new(Counters {
                watchers: (0..nr_shards).map(|_| AtomicUsize::new(0)).collect(),
                mesh_dropped: (0..nr_shards).map(|_| AtomicU64::new(0)).collect(),
            }),
        }
    }

    /// Joins the hub from a shard: every shard must join before any returns.
    pub async fn join(self, shard: usize) -> std::io::Result<ShardStream<E>> {
        let registry = Rc::new(Registry::default());
        let on_peer = {
            let registry = registry.clone();
            let shared = self.shared.clone();
            move |_peer: usize, event: Arc<E>| {
                registry.fan_out(&shared, &event);
            }
        };
        let mesh = self.mesh.join(shard, on_peer).await?;
        // Set before this task yields, so before the mesh handlers can run.
        registry.me.set(mesh.me());
        Ok(ShardStream { inner: Rc::new(ShardInner { mesh, shared: self.shared, registry }) })
    }
}

// === impl ShardStream ===

/// One shard's side of the hub: publish from the inbound driver, subscribe from the gRPC
/// ingress. Cheap to clone inside the shard; `!Send` on purpose.
pub struct ShardStream<E: Event> {
    inner: Rc<ShardInner<E>>,
}

impl<E: Event> Clone for ShardStream<E> {
    fn clone(&self) -> Self {
        ShardStream { inner: self.inner.clone() }
    }
}

struct ShardInner<E: Event> {
    mesh: MeshSender<Arc<E>>,
    shared: Arc<Counters>,
    registry: Rc<Registry<E>>,
}

impl<E: Event> ShardStream<E> {
    /// True when some shard has a watcher: lets the inbound path skip copying the event.
    pub fn anyone_watching(&self) -> bool {
        self.inner.shared.watchers.iter().any(|w| w.load(Ordering::Relaxed) > 0)
    }

    /// Hands an event to every watcher of its client, on every shard. Never waits.
    pub fn publish(&self, event: E) {
        let inner = &self.inner;
        let event = Arc::new(event);
        let me = inner.mesh.me();
        for (shard, watchers) in inner.shared.watchers.iter().enumerate() {
            if watchers.load(Ordering::Relaxed) == 0 {
                continue;
            }
            if shard == me {
                inner.registry.fan_out(&inner.shared, &event);
            } else if inner.mesh.try_send(shard, event.clone()).is_err() {
                inner.shared.mesh_dropped[shard].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Starts watching `client`'s events on this shard, until the subscription is dropped.
    pub fn subscribe(&self, client: ClientId) -> Subscription<E> {
        let inner = &self.inner;
        let me = inner.mesh.me();
        let slot = Rc::new(Slot::default());
        // Losses of the mesh before this subscription are not this watcher's.
        inner.registry.catch_up(&inner.shared, me);
        inner.registry.by_client.borrow_mut().entry(client.clone()).or_default().push(slot.clone());
        inner.shared.watchers[me].fetch_add(1, Ordering::Relaxed);
        Subscription { hub: self.clone(), client, slot }
    }
}

// === impl Registry ===

/// This shard's watchers, by client.
struct Registry<E> {
    by_client: RefCell<HashMap<ClientId, Vec<Rc<Slot<E>>>>>,
    /// The value of this shard's `mesh_dropped` counter already charged to its watchers.
    mesh_dropped_seen: Cell<u64>,
    /// This shard's index, known once the mesh is joined.
    me: Cell<usize>,
}

impl<E> Default for Registry<E> {
    fn default() -> Self {
        Registry { by_client: RefCell::default(), mesh_dropped_seen: Cell::default(), me: Cell::default() }
    }
}

impl<E: Event> Registry<E> {
    fn fan_out(&self, shared: &Counters, event: &Arc<E>) {
        self.catch_up(shared, self.me.get());
        if let Some(slots) = self.by_client.borrow().get(event.client()) {
            for slot in slots {
                slot.push(event.clone());
            }
        }
    }

    /// Charges mesh losses to this shard since the last look to every watcher on it.
    fn catch_up(&self, shared: &Counters, me: usize) {
        let dropped = shared.mesh_dropped[me].load(Ordering::Relaxed);
        let new = dropped.saturating_sub(self.mesh_dropped_seen.get());
        if new == 0 {
            return;
        }
        self.mesh_dropped_seen.set(dropped);
        for slot in self.by_client.borrow().values().flatten() {
            slot.miss(new);
        }
    }
}

// === impl Slot ===

/// One watcher's queue.
struct Slot<E> {
    queue: RefCell<VecDeque<Arc<E>>>,
    missed: Cell<u64>,
    waker: RefCell<Option<Waker>>,
}

impl<E> Default for Slot<E> {
    fn default() -> Self {
        Slot { queue: RefCell::default(), missed: Cell::default(), waker: RefCell::default() }
    }
}

impl<E> Slot<E> {
    fn push(&self, event: Arc<E>) {
        {
            let mut queue = self.queue.borrow_mut();
            if queue.len() >= WATCHER_QUEUE {
                drop(queue);
                self.miss(1);
                return;
            }
            queue.push_back(event);
        }
        self.wake();
    }

    fn miss(&self, n: u64) {
        self.missed.set(self.missed.get().saturating_add(n));
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

// === impl Subscription ===

/// A watch on one client's events on this shard. Dropping it stops the watch.
pub struct Subscription<E: Event> {
    hub: ShardStream<E>,
    client: ClientId,
    slot: Rc<Slot<E>>,
}

/// What [`Subscription::poll_next`] yields.
#[derive(Debug)]
pub enum Notice<E> {
    Event(Watched<E>),
    /// Events were lost and none is queued to carry the count.
    Missed(u64),
}

impl<E: Event> Subscription<E> {
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Notice<E>> {
        let slot = &self.slot;
        if let Some(event) = slot.queue.borrow_mut().pop_front() {
            let missed = slot.missed.replace(0);
            return Poll::Ready(Notice::Event(Watched { event, missed }));
        }
        let missed = slot.missed.replace(0);
        if missed > 0 {
            return Poll::Ready(Notice::Missed(missed));
        }
        *slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }

    pub async fn next(&mut self) -> Notice<E> {
        poll_fn(|cx| self.poll_next(cx)).await
    }
}

impl<E: Event> Drop for Subscription<E> {
    fn drop(&mut self) {
        let inner = &self.hub.inner;
        let mut by_client = inner.registry.by_client.borrow_mut();
        if let Some(slots) = by_client.get_mut(&self.client) {
            slots.retain(|s| !Rc::ptr_eq(s, &self.slot));
            if slots.is_empty() {
                by_client.remove(&self.client);
            }
        }
        inner.shared.watchers[inner.mesh.me()].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{LinkId, SmscMessageId};
    use crate::state::record::Status;
    use std::time::Duration;

    fn receipt(client: &ClientId, n: u64) -> ReceiptEvent {
        let receipt = Receipt {
            link: LinkId::new("100"),
            smsc_message_id: SmscMessageId::new(&format!("s{n}")),
            status: Status::Delivered,
            error_code: None,
            smsc_done_date: None,
            received_at_ms: n,
        };
        ReceiptEvent { client: client.clone(), id: MessageId(n), receipt }
    }

    /// Runs `f` on one glommio executor per shard, all joined to one hub.
    fn on_shards<F, Fut>(n: usize, f: F)
    where
        F: Fn(usize, ShardReceipts) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let hub = ReceiptHub::new(n);
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (hub, f) = (hub.clone(), f.clone());
                glommio::LocalExecutorBuilder::default()
                    .name(&format!("hub-test-{i}"))
                    .spawn(move || async move {
                        let receipts = hub.join(i).await.expect("join");
                        f(i, receipts).await;
                    })
                    .expect("executor")
            })
            .collect();
        for h in handles {
            h.join().expect("shard ran");
        }
    }

    #[test]
    fn a_watcher_on_another_shard_gets_its_clients_receipts_only() {
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<()>(1);
        on_shards(2, move |shard, receipts| {
            let (ready_tx, ready_rx) = (ready_tx.clone(), ready_rx.clone());
            async move {
                let acme = ClientId::new("acme");
                if shard == 0 {
                    let mut sub = receipts.subscribe(acme);
                    ready_tx.send(()).expect("ready");
                    for n in [1, 3] {
                        match sub.next().await {
                            Notice::Event(w) => {
                                assert_eq!(w.event.id, MessageId(n));
                                assert_eq!(w.missed, 0);
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                } else {
                    // Polls without blocking the executor: the mesh needs it running.
                    while ready_rx.try_recv().is_err() {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                    assert!(receipts.anyone_watching());
                    receipts.publish(receipt(&acme, 1));
                    receipts.publish(receipt(&ClientId::new("other"), 2));
                    receipts.publish(receipt(&acme, 3));
                }
            }
        });
    }

    #[test]
    fn a_slow_watcher_loses_the_newest_and_is_told_how_many() {
        on_shards(1, |_, receipts| async move {
            let acme = ClientId::new("acme");
            assert!(!receipts.anyone_watching());
            let mut sub = receipts.subscribe(acme.clone());
            let total = WATCHER_QUEUE as u64 + 5;
            for n in 0..total {
                receipts.publish(receipt(&acme, n));
            }
            let mut got = 0;
            let mut missed = 0;
            while got < WATCHER_QUEUE {
                match sub.next().await {
                    Notice::Event(w) => {
                        assert_eq!(w.event.id, MessageId(got as u64), "oldest first");
                        missed += w.missed;
                        got += 1;
                    }
                    Notice::Missed(n) => missed += n,
                }
            }
            assert_eq!(missed, 5);
            drop(sub);
            assert!(!receipts.anyone_watching());
            // Nobody watching: publishing is a no-op.
            receipts.publish(receipt(&acme, 9));
        });
    }
}
