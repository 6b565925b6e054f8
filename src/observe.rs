//! Observability: structured logs, shard-local metrics merged when read, the dashboard.
//!
//! - [`events`]: one function per thing that happens; records its metric (and log line).
//! - [`metrics`]: shard-local counters and histograms, published per shard, merged when read.
//! - [`dashboard`]: `GET /api/v1/dashboard/{stats,smpp-links}` and `GET /metrics`.
//! - [`feed`]: the recent refusals of every shard, for the dashboard's live feed (SSE).
//! - [`web`]: the dashboard page at `/dashboard` (built assets embedded in the binary).
//!
//! docs/metrics.md documents every endpoint, field and series.

pub mod dashboard;
pub mod events;
pub mod feed;
pub mod metrics;
pub mod web;

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber: text or JSON lines on stderr, filtered by
/// `log.level` unless `RUST_LOG` is set.
pub fn init_logging(cfg: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(&cfg.level),
    }
    .map_err(|e| format!("log.level: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let result = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("installing the logger: {e}"))
}
