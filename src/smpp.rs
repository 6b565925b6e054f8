//! SMPP 3.4, ESME side. A leaf: knows no store, no outbox, no client.
//!
//! - `pdu`: bytes ↔ PDUs, pure and fuzzable; `receipt`: receipt text.
//! - `encoding`: text ↔ GSM 7-bit, Latin-1, UCS-2; `concat`: long texts → UDH parts or message_payload, and inbound parts back to their place.
//! - `pacer`: AIMD send rate after SMSC throttling.
//! - `session`: one bind: window, enquire_link, reconnect, unbind; hands deliver_sm up.
//! - `link`: links, their session slots and which shard owns each.
pub mod concat;
pub mod encoding;
pub mod link;
pub mod pacer;
pub mod pdu;
pub mod receipt;
pub mod session;
