//! Notify: what smsgate tells clients after the fact (DESIGN.md 9-10).
//!
//! - [`stream`]: the live receipt stream behind gRPC `WatchReceipts` (at most once).
//! - [`outbox`]: which delivery-report webhooks a message owes, and their JSON (durable, in the
//!   state store).
//! - [`mo`]: inbound messages (MO): parts, reassembly, routing to a client, their JSON.
//! - [`webhook`]: the sender thread that posts them, signed, with durable retries.
pub mod mo;
pub mod outbox;
pub mod stream;
pub mod webhook;
