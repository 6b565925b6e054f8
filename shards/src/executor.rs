//! Starting and joining the shards.

use crate::shutdown::{Shutdown, ShutdownTrigger};
use glommio::{LocalExecutorBuilder, Placement};
use std::future::Future;
use std::io;
use std::time::Duration;

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

/// How the shards' executors run. `Default` is what [`run`] uses.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Before parking (sleeping in `io_uring_enter` until an event or a wake from another
    /// thread), an executor with nothing to run polls its rings for this long. Zero (default):
    /// park at once. Spinning saves a park/unpark per wake-up when work arrives within the
    /// window, at the cost of CPU burnt while idle: on a machine whose cores are shared with
    /// other threads (the state writer, a load generator) it takes their time.
    ///
    /// glommio honours it only for an executor it binds to a CPU itself, so a non-zero value
    /// starts each shard with `Placement::Fixed(cpu)` instead of pinning it with
    /// `core_affinity` afterwards.
    pub spin_before_park: Duration,
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
    run_with(cpus, trigger, &Options::default(), shard)
}

/// [`run`] with [`Options`].
pub fn run_with<F, Fut>(cpus: &[usize], trigger: &ShutdownTrigger, opts: &Options, shard: F) -> io::Result<()>
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
        let spin = opts.spin_before_park;
        // glommio drops `spin_before_park` for an unbound executor: spinning needs it to bind.
        let builder = if spin.is_zero() {
            LocalExecutorBuilder::new(Placement::Unbound)
        } else {
            LocalExecutorBuilder::new(Placement::Fixed(cpu)).spin_before_park(spin)
        };
        let handle = builder
            .name(&format!("shard-{id}"))
            .spawn(move || async move {
                if spin.is_zero() && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// With a spin, each shard still starts on its own CPU (glommio binds it) and runs to the end.
    #[test]
    fn spin_before_park_runs_pinned_shards() {
        let cpus = cpus(None).unwrap();
        let trigger = ShutdownTrigger::new();
        let done = Arc::new(AtomicUsize::new(0));
        let opts = Options { spin_before_park: Duration::from_micros(50) };
        let seen = Arc::clone(&done);
        run_with(&cpus, &trigger, &opts, move |info, _shutdown| async move {
            // A timer makes the executor go idle (spin, then park) before the shard ends.
            glommio::timer::sleep(Duration::from_millis(5)).await;
            assert_eq!(core_affinity_of_current(), Some(info.cpu));
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), cpus.len());
    }

    /// The only CPU this thread may run on, if exactly one (`Cpus_allowed_list` of the thread).
    fn core_affinity_of_current() -> Option<usize> {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim();
        list.parse().ok()
    }
}
