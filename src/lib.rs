//! smsgate: a thread-per-core SMS gateway proxy.
//!
//! Layout, in the order a message flows (DESIGN.md / ARCHITECTURE.md):
//! - [`config`]: `config/smsgate.toml` and `smpp_rules.toml`, validated at start-up.
//! - [`app`]: assembly: state writer, shards, per-shard pipeline, sessions and listener.
//! - [`ingress`]: the HTTP API on every shard and the one error → answer table (`reply`).
//! - [`pipeline`]: the outbound driver, stages 1-8: parse, auth, route, submit, record.
//! - [`inbound`]: the inbound driver: deliver_sm receipts → state → deliver_sm_resp.
//! - [`smpp`]: SMPP 3.4 ESME: PDU codec, encodings, receipts, sessions, link table. A leaf.
//! - [`notify`]: what clients hear after the fact: the live receipt stream (gRPC).
//! - [`state`]: lifecycle records, the backend contract, the embedded store, group commit.
//! - [`observe`]: logs, shard-local metrics merged on read, dashboard JSON, Prometheus.
//! - [`history`]: every message event to PostgreSQL (side threads, spill files), history API.
//! - [`ids`], [`clock`], [`digest`]: typed identifiers, the injected clock, hex and HMAC.
pub mod app;
pub mod clock;
pub mod config;
pub mod digest;
pub mod history;
pub mod ids;
pub mod inbound;
pub mod ingress;
pub mod notify;
pub mod observe;
pub mod pipeline;
pub mod reload;
pub mod smpp;
pub mod state;
