//! Shutdown: one trigger (a signal, or a test) reaches every shard.
//!
//! The trigger side is `Send` and lives on a signal thread; each shard turns its listener into
//! a shard-local [`Shutdown`] that any number of its tasks can clone and await.

use futures_lite::future;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    waiters: RefCell<Vec<Waker>>,
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
        let s = Shutdown { local: Rc::new(Local { fired: Cell::new(false), waiters: RefCell::new(Vec::new()) }) };
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
        Shutdown { local: Rc::new(Local { fired: Cell::new(false), waiters: RefCell::new(Vec::new()) }) }
    }

    pub fn fire_local(&self) {
        self.local.fired.set(true);
        for w in self.local.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.local.fired.get()
    }

    /// Resolves once shutdown has been fired.
    pub async fn wait(&self) {
        future::poll_fn(|cx| {
            if self.local.fired.get() {
                Poll::Ready(())
            } else {
                self.local.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
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
