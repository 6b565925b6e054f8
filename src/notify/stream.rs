//! The live receipt stream: receipts applied on one shard, delivered to the watchers of the
//! message's client on any shard (gRPC `WatchReceipts`).
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

/// One applied receipt, addressed to its message's client.
#[derive(Debug)]
pub struct ReceiptEvent {
    pub client: ClientId,
    pub id: MessageId,
    pub receipt: Receipt,
}

/// What a watcher gets: an event, and how many it lost before it.
#[derive(Debug)]
pub struct Watched {
    pub event: Arc<ReceiptEvent>,
    /// Events this watcher lost since its previous one (slow reader or full mesh queue).
    pub missed: u64,
}

// === impl ReceiptHub ===

/// Built once before the shards start; each shard [`join`](ReceiptHub::join)s a clone.
#[derive(Clone)]
pub struct ReceiptHub {
    mesh: Mesh<Arc<ReceiptEvent>>,
    shared: Arc<Counters>,
}

/// The only state shared between shards: counters, no locks.
struct Counters {
    /// Open watchers per shard; a shard with none gets nothing over the mesh.
    watchers: Vec<AtomicUsize>,
    /// Events dropped because the mesh queue to that shard was full.
    mesh_dropped: Vec<AtomicU64>,
}

impl ReceiptHub {
    pub fn new(nr_shards: usize) -> Self {
        ReceiptHub {
            mesh: Mesh::new(nr_shards, MESH_CAPACITY),
            shared: Arc::new(Counters {
                watchers: (0..nr_shards).map(|_| AtomicUsize::new(0)).collect(),
                mesh_dropped: (0..nr_shards).map(|_| AtomicU64::new(0)).collect(),
            }),
        }
    }

    /// Joins the hub from a shard: every shard must join before any returns.
    pub async fn join(self, shard: usize) -> std::io::Result<ShardReceipts> {
        let registry = Rc::new(Registry::default());
        let on_peer = {
            let registry = registry.clone();
            let shared = self.shared.clone();
            move |_peer: usize, event: Arc<ReceiptEvent>| {
                registry.fan_out(&shared, &event);
            }
        };
        let mesh = self.mesh.join(shard, on_peer).await?;
        // Set before this task yields, so before the mesh handlers can run.
        registry.me.set(mesh.me());
        Ok(ShardReceipts { inner: Rc::new(ShardInner { mesh, shared: self.shared, registry }) })
    }
}

// === impl ShardReceipts ===

/// One shard's side of the hub: publish from the inbound driver, subscribe from the gRPC
/// ingress. Cheap to clone inside the shard; `!Send` on purpose.
#[derive(Clone)]
pub struct ShardReceipts {
    inner: Rc<ShardInner>,
}

struct ShardInner {
    mesh: MeshSender<Arc<ReceiptEvent>>,
    shared: Arc<Counters>,
    registry: Rc<Registry>,
}

impl ShardReceipts {
    /// True when some shard has a watcher: lets the inbound path skip copying the receipt.
    pub fn anyone_watching(&self) -> bool {
        self.inner.shared.watchers.iter().any(|w| w.load(Ordering::Relaxed) > 0)
    }

    /// Hands an applied receipt to every watcher of `client`, on every shard. Never waits.
    pub fn publish(&self, client: ClientId, id: MessageId, receipt: Receipt) {
        let inner = &self.inner;
        let event = Arc::new(ReceiptEvent { client, id, receipt });
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

    /// Starts watching `client`'s receipts on this shard, until the subscription is dropped.
    pub fn subscribe(&self, client: ClientId) -> Subscription {
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
#[derive(Default)]
struct Registry {
    by_client: RefCell<HashMap<ClientId, Vec<Rc<Slot>>>>,
    /// The value of this shard's `mesh_dropped` counter already charged to its watchers.
    mesh_dropped_seen: Cell<u64>,
    /// This shard's index, known once the mesh is joined.
    me: Cell<usize>,
}

impl Registry {
    fn fan_out(&self, shared: &Counters, event: &Arc<ReceiptEvent>) {
        self.catch_up(shared, self.me.get());
        if let Some(slots) = self.by_client.borrow().get(&event.client) {
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
#[derive(Default)]
struct Slot {
    queue: RefCell<VecDeque<Arc<ReceiptEvent>>>,
    missed: Cell<u64>,
    waker: RefCell<Option<Waker>>,
}

impl Slot {
    fn push(&self, event: Arc<ReceiptEvent>) {
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

/// A watch on one client's receipts on this shard. Dropping it stops the watch.
pub struct Subscription {
    hub: ShardReceipts,
    client: ClientId,
    slot: Rc<Slot>,
}

/// What [`Subscription::poll_next`] yields.
#[derive(Debug)]
pub enum Notice {
    Receipt(Watched),
    /// Events were lost and none is queued to carry the count.
    Missed(u64),
}

impl Subscription {
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Notice> {
        let slot = &self.slot;
        if let Some(event) = slot.queue.borrow_mut().pop_front() {
            let missed = slot.missed.replace(0);
            return Poll::Ready(Notice::Receipt(Watched { event, missed }));
        }
        let missed = slot.missed.replace(0);
        if missed > 0 {
            return Poll::Ready(Notice::Missed(missed));
        }
        *slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }

    pub async fn next(&mut self) -> Notice {
        poll_fn(|cx| self.poll_next(cx)).await
    }
}

impl Drop for Subscription {
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

    fn receipt(n: u64) -> Receipt {
        Receipt {
            link: LinkId::new("100"),
            smsc_message_id: SmscMessageId::new(&format!("s{n}")),
            status: Status::Delivered,
            error_code: None,
            smsc_done_date: None,
            received_at_ms: n,
        }
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
                            Notice::Receipt(w) => {
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
                    receipts.publish(acme.clone(), MessageId(1), receipt(1));
                    receipts.publish(ClientId::new("other"), MessageId(2), receipt(2));
                    receipts.publish(acme, MessageId(3), receipt(3));
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
                receipts.publish(acme.clone(), MessageId(n), receipt(n));
            }
            let mut got = 0;
            let mut missed = 0;
            while got < WATCHER_QUEUE {
                match sub.next().await {
                    Notice::Receipt(w) => {
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
            receipts.publish(acme, MessageId(9), receipt(9));
        });
    }
}
