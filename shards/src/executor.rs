//! Starting and joining the shards.

use crate::shutdown::{Shutdown, ShutdownTrigger};
use glommio::{LocalExecutorBuilder, Placement};
use std::future::Future;
use std::io;

/// Index of a shard, `0..nr_shards`. Shard k runs on the k-th configured core.
pub type ShardId = usize;

/// What a shard learns about itself when it starts.
#[derive(Clone, Debug)]
pub struct ShardInfo {
    pub id: ShardId,
    pub nr_shards: usize,
    /// The CPU this shard is pinned to.
    pub cpu: usize,
}

/// The CPUs to run on: `requested` if given (each must exist), else every CPU of the machine.
pub fn cpus(requested: Option<&[usize]>) -> io::Result<Vec<usize>> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .ok_or_else(|| io::Error::other("cannot read this process's CPU set"))?
        .into_iter()
        .map(|c| c.id)
        .collect();
    match requested {
        None => Ok(available),
        Some(req) => {
            if let Some(bad) = req.iter().find(|c| !available.contains(c)) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cpu {bad} is not available to this process (available: {available:?})"),
                ));
            }
            Ok(req.to_vec())
        }
    }
}

/// Runs one shard per CPU in `cpus` and returns when all of them have finished.
///
/// `shard` builds each shard's main future on the shard's own thread. The returned
/// [`ShutdownTrigger`] side is installed on SIGINT/SIGTERM by [`crate::shutdown::on_signals`];
/// every shard gets a [`Shutdown`] to await. An executor that fails to start (for example
/// too little locked memory for io_uring) is reported as an error, never a silent exit 0.
pub fn run<F, Fut>(cpus: &[usize], trigger: &ShutdownTrigger, shard: F) -> io::Result<()>
where
    F: FnOnce(ShardInfo, Shutdown) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let nr_shards = cpus.len();
    let mut handles = Vec::with_capacity(nr_shards);
    for (id, &cpu) in cpus.iter().enumerate() {
        let shard = shard.clone();
        let listener = trigger.subscribe();
        let info = ShardInfo { id, nr_shards, cpu };
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("shard-{id}"))
            .spawn(move || async move {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                    tracing::warn!(shard = id, cpu, "could not pin shard to its cpu; running unpinned");
                }
                shard(info, Shutdown::from_listener(listener)).await
            })
            .map_err(|e| io::Error::other(format!("shard {id} on cpu {cpu} failed to start: {e}")))?;
        handles.push((id, handle));
    }
    let mut first_error = None;
    for (id, handle) in handles {
        if let Err(e) = handle.join() {
            tracing::error!(shard = id, error = %e, "shard executor failed");
            first_error.get_or_insert(io::Error::other(format!("shard {id}: {e}")));
        }
    }
    first_error.map_or(Ok(()), Err)
}
