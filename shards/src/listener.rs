//! Guarding the listening port.
//!
//! glommio's `TcpListener::bind` always sets SO_REUSEPORT, so a second smsgate started on the
//! same port would bind silently and take half of the connections. Before the shards bind,
//! [`ensure_free`] binds the address once *without* SO_REUSEPORT: that fails while any other
//! socket listens there.

use std::io;
use std::net::{SocketAddr, TcpListener};

pub fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    match TcpListener::bind(addr) {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{addr} is already in use (another smsgate?); refusing to share it"),
        )),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))),
    }
}
