//! Configuration of the limiter: `[redis]` and each client's `limits` in `config/smsgate.toml`.
//! Link and pool rates come from `smpp_rules.toml` (`esme_rate`, `esme_rate_burst`).

use serde::Deserialize;
use std::time::Duration;

/// `[redis]`: where L2 leases, client windows and live-node heartbeats are kept.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:pass@]host:port[/db]` or `redis-cluster://host:port` (keys are hash-tagged
    /// per link, pool, client and destination). Default none: no Redis, single-node mode, where
    /// L2 grants from a node-local bucket holding the whole rate.
    pub url: Option<String>,
    /// Deadline of one Redis call, ms; a call that misses it counts as Redis down and this
    /// node falls back to its local share. Default 50.
    pub command_timeout_ms: u64,
    /// First part of every key: `{<prefix>:l2:link:100}`. Default `smsgate`.
    pub key_prefix: String,
    /// Target lifetime of one lease at the key's full rate, split over every shard of every
    /// live node, ms. Larger: fewer round trips, coarser split. Default 100.
    pub lease_ms: u64,
    /// A shard keeps leases for a key warm this long after its last request for it, ms.
    /// Default 30000.
    pub warm_ms: u64,
    /// Interval of the node heartbeat (and of the Redis probe while degraded), ms. Default 1000.
    pub heartbeat_ms: u64,
    /// A node counts as live while its last heartbeat is younger than this, ms. Default 3000.
    pub node_ttl_ms: u64,
    /// Live nodes assumed when Redis was never reached, and the least ever assumed when
    /// computing a fallback share (count this node in). Default 1.
    pub min_nodes: u32,
    /// Delay between reconnection attempts to Redis, ms. Default 250.
    pub reconnect_delay_ms: u32,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            command_timeout_ms: 50,
            key_prefix: "smsgate".into(),
            lease_ms: 100,
            warm_ms: 30_000,
            heartbeat_ms: 1_000,
            node_ttl_ms: 3_000,
            min_nodes: 1,
            reconnect_delay_ms: 250,
        }
    }
}

impl RedisConfig {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// What is wrong, as (key under `redis`, reason); `None` when valid.
    pub fn invalid(&self) -> Option<(&'static str, &'static str)> {
        if self.command_timeout_ms == 0 {
            return Some(("command_timeout_ms", "must be greater than 0"));
        }
        if !(1..=10_000).contains(&self.lease_ms) {
            return Some(("lease_ms", "must be 1..=10000"));
        }
        if self.heartbeat_ms == 0 {
            return Some(("heartbeat_ms", "must be greater than 0"));
        }
        if self.node_ttl_ms <= self.heartbeat_ms {
            return Some(("node_ttl_ms", "must be greater than heartbeat_ms"));
        }
        if self.min_nodes == 0 {
            return Some(("min_nodes", "must be at least 1"));
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}']) {
            return Some(("key_prefix", "must be non-empty, without `{` or `}`"));
        }
        if self.url.as_deref().is_some_and(str::is_empty) {
            return Some(("url", "must not be empty (leave it out for no Redis)"));
        }
        None
    }
}

/// A client's limits (`[clients.limits]`), counted in messages (requests), enforced across
/// every node. Every field is optional; none set means no client limit.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// Messages per second, sustained (GCRA; a burst of the same size is allowed).
    pub per_second: Option<u32>,
    /// Messages per calendar minute (UTC, fixed window).
    pub per_minute: Option<u32>,
    /// Messages per calendar day (UTC, fixed window).
    pub per_day: Option<u32>,
    /// Messages to one destination number per calendar minute, e.g. 3 for OTP senders.
    pub per_destination_per_minute: Option<u32>,
    /// Messages to one destination number per calendar day, e.g. 10.
    pub per_destination_per_day: Option<u32>,
}

impl ClientLimits {
    pub fn has_destination_caps(&self) -> bool {
        self.per_destination_per_minute.is_some() || self.per_destination_per_day.is_some()
    }

    /// The first field set to 0, which would refuse everything; `None` when valid.
    pub fn invalid(&self) -> Option<&'static str> {
        [
            ("per_second", self.per_second),
            ("per_minute", self.per_minute),
            ("per_day", self.per_day),
            ("per_destination_per_minute", self.per_destination_per_minute),
            ("per_destination_per_day", self.per_destination_per_day),
        ]
        .into_iter()
        .find(|(_, v)| *v == Some(0))
        .map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: RedisConfig = toml::from_str("").unwrap();
        assert_eq!(c, RedisConfig::default());
        assert!(c.invalid().is_none());
        assert!(toml::from_str::<RedisConfig>("urll = \"redis://x\"").is_err());
        let l: ClientLimits = toml::from_str("per_destination_per_minute = 3").unwrap();
        assert!(l.has_destination_caps());
        assert_eq!(toml::from_str::<ClientLimits>("per_day = 0").unwrap().invalid(), Some("per_day"));
    }
}
