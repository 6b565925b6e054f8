//! The cross-shard mesh: a bounded channel from every shard to every other shard.
//!
//! A shard hands work to the shard that owns a resource (an SMPP session) through its
//! [`MeshSender`]; `try_send` never waits: a full peer gives the item back so the caller can
//! answer "busy, retry later" at once instead of building a hidden queue.
//!
//! Built from glommio's `shared_channel`s, all created up front on the starting thread, one
//! pair of ends per ordered pair of shards; each shard takes its own ends when it joins.
//! (glommio's `MeshBuilder` shares an `Rc` between threads, whose non-atomic count is then
//! updated from several shards at once: that corrupted the heap at shutdown.)

use futures_lite::StreamExt;
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use glommio::{GlommioError, ResourceType};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// One shard's ends: a sender to every other shard, a receiver from every other shard.
struct Ends<T: Send + 'static> {
    senders: Vec<Option<SharedSender<T>>>,
    receivers: Vec<(usize, SharedReceiver<T>)>,
}

/// Built once before the shards start; each shard calls [`Mesh::join`] with its id.
pub struct Mesh<T: Send + 'static> {
    /// Each shard's ends until it joins. A std Mutex: touched once per shard at start.
    ends: Arc<Mutex<Vec<Option<Ends<T>>>>>,
}

impl<T: Send + 'static> Clone for Mesh<T> {
    fn clone(&self) -> Self {
        Mesh { ends: self.ends.clone() }
    }
}

/// A shard's sending side. Cheap to clone inside the shard.
pub struct MeshSender<T: Send + 'static> {
    senders: Rc<Vec<Option<ConnectedSender<T>>>>,
    me: usize,
}

impl<T: Send + 'static> Clone for MeshSender<T> {
    fn clone(&self) -> Self {
        MeshSender { senders: self.senders.clone(), me: self.me }
    }
}

impl<T: Send + 'static> Mesh<T> {
    /// `capacity`: items in flight from one shard to another before `try_send` refuses.
    pub fn new(nr_shards: usize, capacity: usize) -> Self {
        let mut ends: Vec<Ends<T>> = (0..nr_shards)
            .map(|_| Ends { senders: (0..nr_shards).map(|_| None).collect(), receivers: Vec::new() })
            .collect();
        for from in 0..nr_shards {
            for to in (0..nr_shards).filter(|&to| to != from) {
                let (tx, rx) = shared_channel::new_bounded(capacity);
                ends[from].senders[to] = Some(tx);
                ends[to].receivers.push((from, rx));
            }
        }
        Mesh { ends: Arc::new(Mutex::new(ends.into_iter().map(Some).collect())) }
    }

    /// Connects shard `me`'s ends and spawns one receiving task per peer that hands every
    /// arriving item to `handle`. Returns this shard's sender. Every shard must join.
    pub async fn join<H>(self, me: usize, handle: H) -> std::io::Result<MeshSender<T>>
    where
        H: Fn(usize, T) + Clone + 'static,
    {
        let ends = {
            let mut all = self.ends.lock().map_err(|_| std::io::Error::other("shard mesh lock poisoned"))?;
            all.get_mut(me).and_then(Option::take)
        };
        let ends =
            ends.ok_or_else(|| std::io::Error::other(format!("shard {me} joined the mesh twice or is unknown")))?;
        // Receivers first, in their own tasks: connecting waits for the other side, and every
        // shard connects its senders below, so nobody waits on a peer that waits on it.
        for (peer, rx) in ends.receivers {
            let handle = handle.clone();
            glommio::spawn_local(async move {
                let mut stream = rx.connect().await;
                while let Some(item) = stream.next().await {
                    handle(peer, item);
                }
            })
            .detach();
        }
        let mut senders = Vec::with_capacity(ends.senders.len());
        for tx in ends.senders {
            senders.push(match tx {
                Some(tx) => Some(tx.connect().await),
                None => None,
            });
        }
        Ok(MeshSender { senders: Rc::new(senders), me })
    }
}

impl<T: Send + 'static> MeshSender<T> {
    pub fn me(&self) -> usize {
        self.me
    }

    fn peer(&self, shard: usize) -> Option<&ConnectedSender<T>> {
        self.senders.get(shard).and_then(Option::as_ref)
    }

    /// Sends to `shard`, waiting while its queue is full: for rare control messages (a reload)
    /// that must arrive, never for requests. Gives the item back if the peer is gone.
    pub async fn send(&self, shard: usize, item: T) -> Result<(), T> {
        match self.peer(shard) {
            Some(tx) => tx.send(item).await.map_err(give_back),
            None => Err(item),
        }
    }

    /// Sends to `shard` without waiting. Gives the item back when that peer's queue is full or
    /// closed, or when `shard` is this shard (local work never goes through the mesh).
    pub fn try_send(&self, shard: usize, item: T) -> Result<(), T> {
        match self.peer(shard) {
            Some(tx) => tx.try_send(item).map_err(give_back),
            None => Err(item),
        }
    }
}

fn give_back<T>(e: GlommioError<T>) -> T {
    match e {
        GlommioError::Closed(ResourceType::Channel(t)) | GlommioError::WouldBlock(ResourceType::Channel(t)) => t,
        // A shared channel fails a send only as closed or full, both with the item inside.
        other => unreachable!("shared channel send failed without the item: {other}"),
    }
}
