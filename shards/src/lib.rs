//! `shards`: the thread-per-core runtime of smsgate. It knows nothing about SMS.
//!
//! Layout, in the order a process uses it:
//! - [`executor`]: one glommio `LocalExecutor` per configured core, each pinned to its core
//!   with `core_affinity`, all started together and joined with their errors checked.
//! - [`mesh`]: bounded cross-shard channels; a send to a full peer gives the item back, so
//!   the caller can reject at once instead of queueing.
//! - [`shutdown`]: SIGINT/SIGTERM to every shard: a shard-local signal that tasks await.
//! - [`listener`]: a guard that refuses to start when another process already listens on the
//!   address (glommio always sets SO_REUSEPORT, which would silently share the port).
pub mod executor;
pub mod listener;
pub mod mesh;
pub mod shutdown;

pub use executor::{run, ShardId, ShardInfo};
pub use mesh::{Mesh, MeshSender};
pub use shutdown::{Shutdown, ShutdownTrigger};
