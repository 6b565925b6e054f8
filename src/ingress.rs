//! Ingress: the client-facing APIs, one per shard, and the one error table.
pub mod grpc;
pub mod http;
pub mod hyper_glommio;
pub mod reply;
