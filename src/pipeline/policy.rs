//! Stage 5, contact policy (issue 9): business rules that protect recipients, after the rate
//! limits and before routing. A refused message is never submitted.
//!
//! In order, cheapest first:
//! 1. sender registration: a client with `senders = [..]` may use only those (`unregistered_sender`);
//! 2. blacklist: numbers from `[policy] blacklist_files` ([`blacklist`]; `blacklist`);
//! 3. CP2: the same text to the same number within `duplicate_window_s` ([`duplicate`]; `duplicate`);
//! 4. CP1: per-number `daily_cap` / `weekly_cap`, calendar UTC, on Redis only ([`redis`];
//!    `daily_cp`, `weekly_cp`).
//!
//! `[policy]` gives the global rules; `[clients.policy]` turns single strategies off per
//! client. Redis trouble never refuses a message: CP2 falls back to this shard's memory and
//! CP1 is skipped for that message (both logged, throttled).
//!
//! Not here yet (issue 9): blacklists from S3/MinIO, CP1 on-build campaigns, time zones
//! other than UTC, per-client caps, and releasing a CP2 key or CP1 count when a later stage
//! does not submit the message.

pub mod blacklist;
pub mod config;
pub mod duplicate;
pub mod redis;

use crate::config::ClientConfig;
use crate::ids::ClientId;
use crate::observe::events;
use crate::pipeline::limit::config::RedisConfig;
use crate::pipeline::limit::redis::RedisLimits;
use crate::pipeline::parse::SubmitRequest;
use blacklist::SharedBlacklist;
use config::{ClientPolicy, PolicyConfig};
use duplicate::LocalSeen;
use redis::{CapAnswer, PolicyRedis};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the policy refused a message: its stable status, as the client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyStatus {
    UnregisteredSender,
    Blacklist,
    Duplicate,
    DailyCp,
    WeeklyCp,
}

impl PolicyStatus {
    /// The `code` of the answer and the metrics' `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyStatus::UnregisteredSender => "unregistered_sender",
            PolicyStatus::Blacklist => "blacklist",
            PolicyStatus::Duplicate => "duplicate",
            PolicyStatus::DailyCp => "daily_cp",
            PolicyStatus::WeeklyCp => "weekly_cp",
        }
    }
}

/// A policy refusal. Plain data: a refusal is normal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRejection {
    pub status: PolicyStatus,
}

impl PolicyRejection {
    fn new(status: PolicyStatus) -> Self {
        PolicyRejection { status }
    }
}

/// What one client is held to, from `[[clients]]`.
#[derive(Clone, Debug, Default)]
struct ClientRules {
    /// Registered senders as configured (`+` for TON 1 numbers); `None`: any sender. A few
    /// entries, scanned without allocating.
    senders: Option<Vec<String>>,
    switches: ClientPolicy,
}

/// The node-wide part, built once from config and shared by every shard: client rules and
/// the blacklist in force.
pub struct PolicyNode {
    config: PolicyConfig,
    clients: HashMap<ClientId, ClientRules>,
    blacklist: SharedBlacklist,
    redis: RedisConfig,
}

impl PolicyNode {
    /// `blacklist`: from [`blacklist::start`] (loaded, and watched by its thread).
    pub fn new(
        config: &PolicyConfig,
        clients: &[ClientConfig],
        redis: &RedisConfig,
        blacklist: SharedBlacklist,
    ) -> Self {
        let clients = clients
            .iter()
            .map(|c| {
                let senders = (!c.senders.is_empty())
                    .then(|| c.senders.iter().filter_map(|s| config::sender_key(s)).collect::<Vec<_>>());
                (c.name.clone(), ClientRules { senders, switches: c.policy })
            })
            .collect();
        if config.has_caps() && redis.url.is_none() {
            tracing::warn!("policy.daily_cap / weekly_cap need redis.url: CP1 is off on this node");
        }
        PolicyNode { config: config.clone(), clients, blacklist, redis: redis.clone() }
    }
}

// === impl Policy ===

/// One shard's policy stage.
pub struct Policy {
    node: Arc<PolicyNode>,
    redis: Option<PolicyRedis>,
    /// CP2 without Redis (or while a call fails): this shard's memory only. `RefCell`: the
    /// shard's own, never borrowed across an await.
    seen: RefCell<LocalSeen>,
}

impl Policy {
    /// Shard-local; with a Redis URL and CP1 or CP2 configured it starts connecting on the
    /// current glommio executor (the limiter's connection style).
    pub fn new(node: Arc<PolicyNode>) -> Result<Self, String> {
        let c = &node.config;
        let needs_redis = c.duplicate_window_s > 0 || c.has_caps();
        let redis = match (&node.redis.url, needs_redis) {
            (Some(url), true) => Some(PolicyRedis::new(
                RedisLimits::connect(url, node.redis.command_timeout(), node.redis.reconnect_delay_ms)?,
                &node.redis.key_prefix,
            )),
            _ => None,
        };
        let seen = RefCell::new(LocalSeen::new(Duration::from_secs(c.duplicate_window_s)));
        Ok(Policy { node, redis, seen })
    }

    /// Closes the Redis connection when `shutdown` fires.
    pub fn start(self: &std::rc::Rc<Self>, shutdown: shards::shutdown::Shutdown) {
        if self.redis.is_some() {
            let me = self.clone();
            glommio::spawn_local(async move {
                shutdown.wait().await;
                if let Some(r) = &me.redis {
                    r.quit().await;
                }
            })
            .detach();
        }
    }

    /// Stage 5: `Ok` lets the message go on to routing. `now` drives the shard-local CP2
    /// memory (tests inject it); Redis's own clock decides days and weeks.
    pub async fn check(&self, client: &ClientId, req: &SubmitRequest, now: Instant) -> Result<(), PolicyRejection> {
        let rules = self.node.clients.get(client);
        let switches = rules.map(|r| r.switches).unwrap_or_default();
        if let Some(senders) = rules.and_then(|r| r.senders.as_ref()) {
            let from = &req.from;
            let registered = senders.iter().any(|s| match s.strip_prefix('+') {
                Some(digits) => from.ton == 1 && digits == from.addr,
                None => from.ton != 1 && *s == from.addr,
            });
            if !registered {
                return Err(PolicyRejection::new(PolicyStatus::UnregisteredSender));
            }
        }
        let to = req.to.digits();
        if switches.blacklist && self.node.blacklist.load().contains(to) {
            return Err(PolicyRejection::new(PolicyStatus::Blacklist));
        }
        let c = &self.node.config;
        if switches.duplicate && c.duplicate_window_s > 0 {
            let key = duplicate::fingerprint(to, req.text.data_coding, &req.text.bytes);
            let first = match &self.redis {
                Some(r) => match r.first(to, key, c.duplicate_window_s).await {
                    Ok(first) => first,
                    Err(e) => {
                        if let Some(suppressed) = events::log_due("policy", "redis_cp2") {
                            tracing::warn!(error = %e, suppressed, "CP2 on Redis failed; this shard's memory decides");
                        }
                        self.seen.borrow_mut().first(key, now)
                    }
                },
                None => self.seen.borrow_mut().first(key, now),
            };
            if !first {
                return Err(PolicyRejection::new(PolicyStatus::Duplicate));
            }
        }
        if switches.caps && c.has_caps() {
            if let Some(r) = &self.redis {
                match r.count(to, c.daily_cap, c.weekly_cap).await {
                    Ok(CapAnswer::Counted) => {}
                    Ok(CapAnswer::OverDaily) => return Err(PolicyRejection::new(PolicyStatus::DailyCp)),
                    Ok(CapAnswer::OverWeekly) => return Err(PolicyRejection::new(PolicyStatus::WeeklyCp)),
                    Err(e) => {
                        if let Some(suppressed) = events::log_due("policy", "redis_cp1") {
                            tracing::warn!(error = %e, suppressed, "CP1 on Redis failed; message not counted");
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
