//! Stage 5, contact policy (issue 9): business rules that protect recipients, after the rate
//! limits and before routing. A refused message is never submitted.
//!
//! In order, cheapest first:
//! 1. sender registration: a client with `senders = [..]` may use only those (`unregistered_sender`);
//! 2. blacklist: numbers from `[policy] blacklist_files` ([`blacklist`]; `blacklist`);
//! 3. CP2: the same text to the same number within `duplicate_window_s` ([`duplicate`]; `duplicate`);
//! 4. CP1: per-number `daily_cap` / `weekly_cap`, calendar days and weeks in
//!    `policy.time_zone`, for all clients together or each apart (`caps_scope`), on Redis only
//!    ([`redis`]; `daily_cp`, `weekly_cp`).
//!
//! `[policy]` gives the global rules; `[clients.policy]` turns single strategies off per
//! client or sets its own caps. Redis trouble never refuses a message: CP2 falls back to this
//! shard's memory and CP1 is skipped for that message (both logged, throttled). An admitted
//! message carries what it counted ([`Admitted`]); the driver gives it back
//! ([`Policy::release`]) when the message is not sent after all.

pub mod blacklist;
pub mod campaign;
pub mod config;
pub mod duplicate;
pub mod redis;

use crate::config::ClientConfig;
use crate::ids::ClientId;
use crate::ids::{CampaignId, MessageId};
use crate::observe::events;
use crate::pipeline::limit::config::RedisConfig;
use crate::pipeline::limit::redis::RedisLimits;
use crate::pipeline::parse::SubmitRequest;
use blacklist::SharedBlacklist;
use campaign::{Built, CampaignError, CampaignView, Take};
use config::{CapsScope, ClientPolicy, PolicyConfig};
use duplicate::LocalSeen;
use redis::{CapsAsk, Period, PolicyRedis, Verdict};
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
    /// A campaign message to a recipient the campaign has no reservation for (not listed,
    /// refused at build, given back by a cancel, or the campaign is not built).
    NotInCampaign,
    /// A campaign message to a recipient the campaign already sent to.
    AlreadySent,
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
            PolicyStatus::NotInCampaign => "not_in_campaign",
            PolicyStatus::AlreadySent => "already_sent",
        }
    }
}

/// A policy refusal. Plain data: a refusal is normal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRejection {
    pub status: PolicyStatus,
    /// The id of the refused message's record (status `refused`), once it is kept.
    pub id: Option<MessageId>,
}

impl PolicyRejection {
    pub fn new(status: PolicyStatus) -> Self {
        PolicyRejection { status, id: None }
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
    zone: jiff::tz::TimeZone,
    clients: HashMap<ClientId, ClientRules>,
    blacklist: SharedBlacklist,
    redis: RedisConfig,
}

impl PolicyNode {
    /// `blacklist`: from [`blacklist::start`] (loaded, and watched by its thread). `Err`: the
    /// time zone is unknown.
    pub fn new(
        config: &PolicyConfig,
        clients: &[ClientConfig],
        redis: &RedisConfig,
        blacklist: SharedBlacklist,
    ) -> Result<Self, String> {
        let clients: HashMap<ClientId, ClientRules> = clients
            .iter()
            .map(|c| {
                let senders = (!c.senders.is_empty())
                    .then(|| c.senders.iter().filter_map(|s| config::sender_key(s)).collect::<Vec<_>>());
                (c.name.clone(), ClientRules { senders, switches: c.policy })
            })
            .collect();
        let any_caps = config.has_caps() || clients.values().any(|c| c.switches.has_caps());
        if any_caps && redis.url.is_none() {
            tracing::warn!("policy daily / weekly caps need redis.url: CP1 is off on this node");
        }
        let zone = config.zone().map_err(|e| format!("policy.time_zone: {e}"))?;
        Ok(PolicyNode { config: config.clone(), zone, clients, blacklist, redis: redis.clone() })
    }
}

/// What an admitted message holds of the policy's counters, to be given back with
/// [`Policy::release`] if it is not sent after all. Plain data, no allocation without CP1/CP2.
#[derive(Debug, Default)]
#[must_use = "a message that is not sent must give its counts back (Policy::release)"]
pub struct Admitted {
    duplicate: Option<Marked>,
    counted: Option<(String, Period)>,
    /// A campaign message: the reservation it took.
    taken: Option<(CampaignId, ClientId, String)>,
}

/// Where CP2 marked a message as seen.
#[derive(Debug)]
enum Marked {
    Redis(String),
    Local(u64),
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
    /// Shard-local; with a Redis URL it starts connecting on the current glommio executor (the
    /// limiter's connection style).
    pub fn new(node: Arc<PolicyNode>) -> Result<Self, String> {
        // With Redis, always: campaigns can be created whatever else is configured.
        let redis = match &node.redis.url {
            Some(url) => Some(PolicyRedis::new(
                RedisLimits::connect(url, node.redis.command_timeout(), node.redis.reconnect_delay_ms)?,
                &node.redis.key_prefix,
            )),
            None => None,
        };
        let seen = RefCell::new(LocalSeen::new(Duration::from_secs(node.config.duplicate_window_s)));
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

    /// Stage 5: `Ok` lets the message go on to routing, with what it counted. `now` drives
    /// the shard-local CP2 memory, `now_ms` (Unix ms) the CP1 calendar (tests inject both).
    pub async fn check(
        &self,
        client: &ClientId,
        req: &SubmitRequest,
        now: Instant,
        now_ms: u64,
    ) -> Result<Admitted, PolicyRejection> {
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
        let mut admitted = Admitted::default();
        let fingerprint = (switches.duplicate && c.duplicate_window_s > 0)
            .then(|| duplicate::fingerprint(to, req.text.data_coding, &req.text.bytes));
        // A campaign's message was counted when the campaign was built: no CP1 now.
        let (daily, weekly) = if switches.caps && req.campaign.is_none() { self.caps(switches) } else { (None, None) };
        let wants_caps = daily.is_some() || weekly.is_some();
        let on_redis = match &self.redis {
            Some(r) if fingerprint.is_some() || wants_caps => {
                let dup_key = fingerprint.map(|f| r.duplicate_key(to, f));
                let caps_key = wants_caps.then(|| self.caps_key(r, client, to));
                let period = Period::of(&self.node.zone, now_ms);
                let caps = caps_key.as_deref().map(|key| CapsAsk { key, period, daily, weekly });
                match r.check(dup_key.as_deref().map(|k| (k, c.duplicate_window_s)), caps).await {
                    Ok(Verdict::Passed) => {
                        admitted.duplicate = dup_key.map(Marked::Redis);
                        admitted.counted = caps_key.map(|k| (k, period));
                        true
                    }
                    Ok(Verdict::Duplicate) => return Err(PolicyRejection::new(PolicyStatus::Duplicate)),
                    Ok(Verdict::OverDaily) => return Err(PolicyRejection::new(PolicyStatus::DailyCp)),
                    Ok(Verdict::OverWeekly) => return Err(PolicyRejection::new(PolicyStatus::WeeklyCp)),
                    Err(e) => {
                        if let Some(suppressed) = events::log_due("policy", "redis_check") {
                            tracing::warn!(error = %e, suppressed, "CP1/CP2 on Redis failed; CP2 from this shard's memory, CP1 not counted");
                        }
                        false
                    }
                }
            }
            _ => false,
        };
        if let (Some(f), false) = (fingerprint, on_redis) {
            if !self.seen.borrow_mut().first(f, now) {
                return Err(PolicyRejection::new(PolicyStatus::Duplicate));
            }
            admitted.duplicate = Some(Marked::Local(f));
        }
        if let Some(campaign) = req.campaign {
            let refused = match &self.redis {
                None => Some(PolicyStatus::NotInCampaign),
                Some(r) => match r.campaign_take(campaign, client, to).await {
                    Ok(Take::Taken) => {
                        admitted.taken = Some((campaign, client.clone(), to.to_owned()));
                        None
                    }
                    Ok(Take::AlreadySent) => Some(PolicyStatus::AlreadySent),
                    Ok(Take::NotReserved) => Some(PolicyStatus::NotInCampaign),
                    Err(e) => {
                        if let Some(suppressed) = events::log_due("policy", "redis_campaign") {
                            tracing::warn!(error = %e, suppressed, "campaign reservation not checked on Redis; message passes");
                        }
                        None
                    }
                },
            };
            if let Some(status) = refused {
                // Refused here: the text was not sent, so it is no duplicate next time.
                self.release(admitted).await;
                return Err(PolicyRejection::new(status));
            }
        }
        Ok(admitted)
    }

    /// The CP1 caps of a client: its own, else the global ones.
    fn caps(&self, switches: ClientPolicy) -> (Option<u32>, Option<u32>) {
        let c = &self.node.config;
        (switches.daily_cap.or(c.daily_cap), switches.weekly_cap.or(c.weekly_cap))
    }

    /// The CP1 key of `digits` for `client` in the configured scope.
    fn caps_key(&self, r: &PolicyRedis, client: &ClientId, digits: &str) -> String {
        let scope = (self.node.config.caps_scope == CapsScope::Client).then_some(client.as_str());
        r.caps_key(scope, digits)
    }

    /// Campaigns live on Redis only.
    fn campaign_redis(&self) -> Result<&PolicyRedis, CampaignError> {
        self.redis.as_ref().ok_or_else(|| CampaignError::Unavailable("campaigns need redis.url".into()))
    }

    /// `POST /api/v1/campaigns`: a draft with these recipients.
    pub async fn create_campaign(
        &self,
        client: &ClientId,
        id: CampaignId,
        body: &[u8],
        now_ms: u64,
    ) -> Result<CampaignView, CampaignError> {
        let new: campaign::NewCampaign = serde_json::from_slice(body).map_err(|e| CampaignError::Invalid {
            field: e.to_string().split('`').nth(1).unwrap_or("body").to_owned(),
            message: e.to_string(),
        })?;
        let recipients = campaign::recipients(&new)?;
        let r = self.campaign_redis()?;
        r.campaign_create(id, client, &recipients, now_ms, self.node.config.campaign_ttl_s).await?;
        r.campaign_view(id, client).await
    }

    /// `POST /api/v1/campaigns/{id}/build`: blacklist and CP1 reservation of every recipient,
    /// in the period of `now_ms`.
    pub async fn build_campaign(&self, client: &ClientId, id: CampaignId, now_ms: u64) -> Result<Built, CampaignError> {
        let r = self.campaign_redis()?;
        let switches = self.node.clients.get(client).map(|c| c.switches).unwrap_or_default();
        let caps = if switches.caps { self.caps(switches) } else { (None, None) };
        let list = self.node.blacklist.load();
        let listed = |d: &str| switches.blacklist && list.contains(d);
        let period = Period::of(&self.node.zone, now_ms);
        r.campaign_build(id, client, period, caps, listed, |d| self.caps_key(r, client, d)).await
    }

    /// `DELETE /api/v1/campaigns/{id}`: cancelled; unused reservations given back.
    pub async fn cancel_campaign(&self, client: &ClientId, id: CampaignId) -> Result<CampaignView, CampaignError> {
        let r = self.campaign_redis()?;
        r.campaign_cancel(id, client, |d| self.caps_key(r, client, d)).await
    }

    /// `GET /api/v1/campaigns/{id}`.
    pub async fn campaign(&self, client: &ClientId, id: CampaignId) -> Result<CampaignView, CampaignError> {
        self.campaign_redis()?.campaign_view(id, client).await
    }

    /// Gives back what an admitted message counted: it was not sent (refused by a later stage,
    /// never reached the SMSC, or refused by the SMSC), so it counts toward no cap and is no
    /// duplicate. A Redis error here leaves the count in place (logged): a cap errs strict.
    pub async fn release(&self, admitted: Admitted) {
        match admitted.duplicate {
            Some(Marked::Local(fingerprint)) => self.seen.borrow_mut().forget(fingerprint),
            Some(Marked::Redis(key)) => {
                if let Some(r) = &self.redis {
                    if let Err(e) = r.forget(&key).await {
                        tracing::debug!(error = %e, "CP2 key not released");
                    }
                }
            }
            None => {}
        }
        if let (Some((campaign, client, digits)), Some(r)) = (admitted.taken, &self.redis) {
            let caps_key = |d: &str| self.caps_key(r, &client, d);
            if let Err(e) = r.campaign_untake(campaign, &client, &digits, caps_key).await {
                tracing::warn!(%campaign, error = ?e, "campaign reservation not given back");
            }
        }
        if let (Some((key, period)), Some(r)) = (admitted.counted, &self.redis) {
            if let Err(e) = r.uncount(&key, period).await {
                if let Some(suppressed) = events::log_due("policy", "redis_cp1_release") {
                    tracing::warn!(error = %e, suppressed, "CP1 count not given back");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
