//! The small adapter that runs hyper 1.x on a glommio shard: IO, timer and executor.
//!
//! Every connection lives and dies on the shard that accepted it; nothing here crosses threads.

use futures_lite::{AsyncRead, AsyncWrite};
use hyper::rt::{Executor, ReadBufCursor, Sleep, Timer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A glommio (futures-io) stream seen through hyper's `Read`/`Write` traits.
pub struct Io<S>(pub S);

impl<S: AsyncRead + Unpin> hyper::rt::Read for Io<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        // SAFETY: hyper hands an uninitialised buffer; we zero it before reading into it, so
        // `read` sees initialised memory, and we advance only by the bytes it reports.
        let spare = unsafe {
            let raw = buf.as_mut();
            for b in raw.iter_mut() {
                b.write(0);
            }
            &mut *(raw as *mut [std::mem::MaybeUninit<u8>] as *mut [u8])
        };
        match Pin::new(&mut self.get_mut().0).poll_read(cx, spare) {
            Poll::Ready(Ok(n)) => {
                // SAFETY: `n` bytes were just written by `poll_read` into the zeroed buffer.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for Io<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }

    /// One send per response: glommio's stream has no vectored write.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// Runs hyper's background futures (HTTP/2 streams) on the current shard.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardExecutor;

impl<F> Executor<F> for ShardExecutor
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        glommio::spawn_local(fut).detach();
    }
}

/// hyper's timer (header read timeout, HTTP/2 keep-alive) on glommio's timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardTimer;

struct ShardSleep(glommio::timer::Timer);

// SAFETY: hyper requires `Sleep: Send + Sync`, glommio's timer is neither. A connection and
// all its timers stay on the shard that accepted it (see `ShardExecutor`, which only spawns
// locally), so a `ShardSleep` is never touched from another thread.
unsafe impl Send for ShardSleep {}
// SAFETY: as above: never shared with another thread.
unsafe impl Sync for ShardSleep {}

impl Future for ShardSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(|_| ())
    }
}

impl Sleep for ShardSleep {}

impl Timer for ShardTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(ShardSleep(glommio::timer::Timer::new(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}
