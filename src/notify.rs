//! Notify: what smsgate tells clients after the fact (DESIGN.md 9-10).
//!
//! - [`stream`]: the live receipt stream behind gRPC `WatchReceipts` (at most once).
pub mod stream;
