//! The cross-shard mesh: bounded channels between every pair of shards.
//!
//! A shard hands work to the shard that owns a resource (an SMPP session) through its
//! [`MeshSender`]; `try_send` never waits: a full peer gives the item back so the caller can
//! answer "busy, retry later" at once instead of building a hidden queue.

use futures_lite::StreamExt;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::{GlommioError, ResourceType};
use std::rc::Rc;

/// Built once before the shards start; each shard calls [`Mesh::join`] on a clone.
pub struct Mesh<T: Send + 'static> {
    builder: MeshBuilder<T, Full>,
}

impl<T: Send + 'static> Clone for Mesh<T> {
    fn clone(&self) -> Self {
        Mesh { builder: self.builder.clone() }
    }
}

/// A shard's sending side. Cheap to clone inside the shard.
pub struct MeshSender<T: Send + 'static> {
    senders: Rc<Senders<T>>,
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
        Mesh { builder: MeshBuilder::full(nr_shards, capacity) }
    }

    /// Joins the mesh (all shards must join before any returns) and spawns one receiving task
    /// per peer that hands every arriving item to `handle`. Returns this shard's sender.
    pub async fn join<H>(self, handle: H) -> std::io::Result<MeshSender<T>>
    where
        H: Fn(usize, T) + Clone + 'static,
    {
        let (senders, mut receivers) =
            self.builder.join().await.map_err(|_| std::io::Error::other("joining the shard mesh failed"))?;
        let me = senders.peer_id();
        for (peer, mut stream) in receivers.streams() {
            let handle = handle.clone();
            glommio::spawn_local(async move {
                while let Some(item) = stream.next().await {
                    handle(peer, item);
                }
            })
            .detach();
        }
        Ok(MeshSender { senders: Rc::new(senders), me })
    }
}

impl<T: Send + 'static> MeshSender<T> {
    pub fn me(&self) -> usize {
        self.me
    }

    /// Sends to `shard`, waiting while its queue is full: for rare control messages (a reload)
    /// that must arrive, never for requests. Gives the item back if the peer is gone.
    pub async fn send(&self, shard: usize, item: T) -> Result<(), T> {
        if shard == self.me || shard >= self.senders.nr_consumers() {
            return Err(item);
        }
        self.senders.send_to(shard, item).await.map_err(give_back)
    }

    /// Sends to `shard` without waiting. Gives the item back when that peer's queue is full or
    /// closed, or when `shard` is this shard (local work never goes through the mesh).
    pub fn try_send(&self, shard: usize, item: T) -> Result<(), T> {
        if shard == self.me || shard >= self.senders.nr_consumers() {
            return Err(item);
        }
        self.senders.try_send_to(shard, item).map_err(give_back)
    }
}

fn give_back<T>(e: GlommioError<T>) -> T {
    match e {
        GlommioError::Closed(ResourceType::Channel(t)) | GlommioError::WouldBlock(ResourceType::Channel(t)) => t,
        // Only an invalid peer index fails without the item, and `try_send` rules that out.
        other => unreachable!("mesh send to a valid peer failed without the item: {other}"),
    }
}
