//! Guarding the listening port.
//!
//! glommio's `TcpListener::bind` always sets SO_REUSEPORT, so a second smsgate started on the
//! same port would bind silently and take half of the connections. Before the shards bind,
//! [`ensure_free`] checks that nothing accepts connections on the address.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Like [`ensure_free`], but waits up to `grace` for the address to become free: after a crash
/// the kernel releases a listening socket that io_uring still referenced a moment later, so an
/// immediate restart (systemd, a supervisor) would otherwise fail.
pub fn wait_free(addr: SocketAddr, grace: Duration) -> io::Result<()> {
    let deadline = Instant::now() + grace;
    loop {
        match ensure_free(addr) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                // Runs before any shard starts, on the main thread: blocking is harmless here.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

pub fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    // A connection that completes means a live listener. Lingering connections of a process
    // that died (FIN-WAIT-2, TIME-WAIT on the port) do not count: they block a plain bind but
    // not ours, which uses SO_REUSEPORT like the old one did.
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{addr} is already in use (another smsgate?); refusing to share it"),
        )),
        Err(_) => Ok(()),
    }
}
