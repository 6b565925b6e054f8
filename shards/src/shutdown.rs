//! Shutdown: one trigger (a signal, or a test) reaches every shard.
//!
//! The trigger side is `Send` and lives on a signal thread; each shard turns its listener into
//! a shard-local [`Shutdown`] that any number of its tasks can clone and await.

use futures_lite::future;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::task::{Poll, Waker};

#[derive(Default)]
struct Shared {
    fired: AtomicBool,
    /// Wakers of shards waiting for the trigger; a std Mutex is fine here: it is touched once
    /// per shard at start and once at shutdown, never on the request path.
    waiters: Mutex<Vec<Waker>>,
}

/// Fires shutdown on every shard. Cheap to clone; `Send + Sync`.
#[derive(Clone, Default)]
pub struct ShutdownTrigger {
    shared: Arc<Shared>,
}

/// One shard's handle on the trigger, consumed by [`Shutdown::from_listener`].
pub struct ShutdownListener {
    shared: Arc<Shared>,
}

impl ShutdownTrigger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subscribe(&self) -> ShutdownListener {
        ShutdownListener { shared: self.shared.clone() }
    }

    pub fn fire(&self) {
        self.shared.fired.store(true, Ordering::SeqCst);
        let waiters = match self.shared.waiters.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for w in waiters {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.shared.fired.load(Ordering::SeqCst)
    }
}

impl ShutdownListener {
    async fn wait(self) {
        future::poll_fn(|cx| {
            if self.shared.fired.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            match self.shared.waiters.lock() {
                Ok(mut w) => w.push(cx.waker().clone()),
                Err(poisoned) => poisoned.into_inner().push(cx.waker().clone()),
            }
            // Re-check: fire() may have run between the load and the push.
            if self.shared.fired.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

struct Local {
    fired: Cell<bool>,
    /// One waker per waiting future, keyed so a future that is polled again replaces its own
    /// waker and a dropped future removes it: a task that waits in a loop (`x.or(wait())`)
    /// must not pile up waker clones, which would leak and overflow the task's refcount.
    waiters: RefCell<HashMap<u64, Waker>>,
    next_key: Cell<u64>,
}

/// A shard-local shutdown signal: clone it into every task that must stop. `!Send` on purpose.
#[derive(Clone)]
pub struct Shutdown {
    local: Rc<Local>,
}

impl Shutdown {
    /// Spawns the shard's one task that waits on the cross-thread trigger and wakes the shard's
    /// local waiters. Must be called inside the shard's executor.
    pub fn from_listener(listener: ShutdownListener) -> Self {
        let s = Shutdown {
            local: Rc::new(Local {
                fired: Cell::new(false),
                waiters: RefCell::new(HashMap::new()),
                next_key: Cell::new(0),
            }),
        };
        let local = s.clone();
        glommio::spawn_local(async move {
            listener.wait().await;
            local.fire_local();
        })
        .detach();
        s
    }

    /// A signal that only fires when told to (tests, and shards started without signals).
    pub fn manual() -> Self {
        Shutdown {
            local: Rc::new(Local {
                fired: Cell::new(false),
                waiters: RefCell::new(HashMap::new()),
                next_key: Cell::new(0),
            }),
        }
    }

    pub fn fire_local(&self) {
        self.local.fired.set(true);
        let waiters = std::mem::take(&mut *self.local.waiters.borrow_mut());
        for w in waiters.into_values() {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.local.fired.get()
    }

    /// Resolves once shutdown has been fired.
    pub fn wait(&self) -> Wait {
        Wait { local: self.local.clone(), key: None }
    }
}

/// Fires `trigger` on the first SIGINT or SIGTERM and calls `on_hangup` on every SIGHUP, from
/// a dedicated thread named "signals".
pub fn on_signals(trigger: ShutdownTrigger, on_hangup: impl Fn() + Send + 'static) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if sig == SIGHUP {
                tracing::info!("SIGHUP: reload requested");
                on_hangup();
                continue;
            }
            tracing::info!(signal = sig, "shutdown requested");
            trigger.fire();
            break;
        }
    })?;
    Ok(())
}

/// The future of [`Shutdown::wait`]: holds at most one waker in the signal, removed on drop.
pub struct Wait {
    local: Rc<Local>,
    key: Option<u64>,
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.local.fired.get() {
            return Poll::Ready(());
        }
        let key = *this.key.get_or_insert_with(|| {
            let k = this.local.next_key.get();
            this.local.next_key.set(k + 1);
            k
        });
        this.local.waiters.borrow_mut().insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.local.waiters.borrow_mut().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::FutureExt;

    #[test]
    fn waiting_in_a_loop_keeps_one_waker_and_firing_wakes_it() {
        let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
        ex.run(async {
            let s = Shutdown::manual();
            for _ in 0..1000 {
                futures_lite::future::yield_now().or(s.wait()).await;
            }
            assert!(s.local.waiters.borrow().len() <= 1, "{} wakers left", s.local.waiters.borrow().len());
            let waiter = {
                let s = s.clone();
                glommio::spawn_local(async move { s.wait().await })
            };
            futures_lite::future::yield_now().await;
            assert_eq!(s.local.waiters.borrow().len(), 1, "the spawned waiter registered");
            s.fire_local();
            waiter.await;
            assert!(s.local.waiters.borrow().is_empty());
        });
    }
}
