//! CP1 on-build: campaigns (`/api/v1/campaigns`).
//!
//! A client creates a campaign with its recipients, then builds it: the build checks each
//! recipient against the blacklist and reserves one CP1 count per recipient now (the client's
//! daily and weekly caps, in the period of the build), and answers which recipients were
//! refused and why. The client then submits the messages itself, at the pace the rate limits
//! allow (`POST /api/v1/messages` with `"campaign": "<id>"`; smsgate keeps no hidden queue):
//! such a message consumes its recipient's reservation instead of counting again. Cancelling a
//! campaign gives back every reservation not yet used.
//!
//! On Redis, one hash per campaign, `{<prefix>:camp:<id>}`, hash-tagged so each script touches
//! one slot: meta fields (`client`, `status`, `day`, `week`, counters) and one field per
//! recipient, `r:<digits>` → `D` listed, `R` reserved, `S` sent, `C` given back, `x:<status>`
//! refused at build. The CP1 counts themselves are the ordinary CP1 keys ([`super::redis`]).

use super::redis::{CapsAsk, Period, PolicyRedis, Verdict};
use super::PolicyStatus;
use crate::ids::{CampaignId, ClientId, Msisdn};
use crate::pipeline::limit::redis::RedisFail;
use fred::types::scripts::Script;
use fred::types::Value;
use serde::{Deserialize, Serialize};

/// Most recipients one create call may carry, and per Redis call while writing them.
pub const MAX_RECIPIENTS: usize = 100_000;
const CHUNK: usize = 1_000;

/// KEYS[1]: the campaign. ARGV: client, created ms, ttl s, then recipient digits. Creates the
/// campaign (1) or adds recipients to a draft of the same client (1); 0 otherwise.
const CREATE: &str = r#"
local status = redis.call('HGET', KEYS[1], 'status')
if status and (status ~= 'draft' or redis.call('HGET', KEYS[1], 'client') ~= ARGV[1]) then return 0 end
if not status then
  redis.call('HSET', KEYS[1], 'client', ARGV[1], 'status', 'draft', 'created_ms', ARGV[2],
    'recipients', 0, 'reserved', 0, 'refused', 0, 'sent', 0, 'released', 0)
end
local added = 0
for i = 4, #ARGV do
  added = added + redis.call('HSETNX', KEYS[1], 'r:' .. ARGV[i], 'D')
end
redis.call('HINCRBY', KEYS[1], 'recipients', added)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"#;

/// KEYS[1]: the campaign. ARGV: client, from status, to status, then optional field/value
/// pairs to set. Moves the status (1); 0 if the campaign is not this client's or not in `from`.
const MOVE: &str = r#"
if redis.call('HGET', KEYS[1], 'client') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"#;

/// KEYS[1]: the campaign. ARGV: pairs of recipient digits and outcome (`R`, or `x:<status>`).
/// Records a build's outcomes and counts them. Returns 1.
const RECORD: &str = r#"
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1], 'r:' .. ARGV[i], ARGV[i + 1])
  if ARGV[i + 1] == 'R' then redis.call('HINCRBY', KEYS[1], 'reserved', 1)
  else redis.call('HINCRBY', KEYS[1], 'refused', 1) end
end
return 1
"#;

/// KEYS[1]: the campaign. ARGV: client, recipient digits. Takes the recipient's reservation
/// for a message: 1 taken, 2 already sent, 0 not reserved in a built campaign of this client.
const TAKE: &str = r#"
if redis.call('HGET', KEYS[1], 'client') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'built' then return 0 end
local f = 'r:' .. ARGV[2]
local v = redis.call('HGET', KEYS[1], f)
if v == 'R' then
  redis.call('HSET', KEYS[1], f, 'S')
  redis.call('HINCRBY', KEYS[1], 'reserved', -1)
  redis.call('HINCRBY', KEYS[1], 'sent', 1)
  return 1
end
if v == 'S' then return 2 end
return 0
"#;

/// KEYS[1]: the campaign. ARGV: recipient digits. The message that took the reservation was not
/// sent: the reservation is back (unless the campaign was cancelled meanwhile: then it is
/// given back, and 2 tells the caller to uncount it). Returns 1 or 2.
const UNTAKE: &str = r#"
local f = 'r:' .. ARGV[1]
if redis.call('HGET', KEYS[1], f) ~= 'S' then return 1 end
redis.call('HINCRBY', KEYS[1], 'sent', -1)
if redis.call('HGET', KEYS[1], 'status') == 'cancelled' then
  redis.call('HSET', KEYS[1], f, 'C')
  redis.call('HINCRBY', KEYS[1], 'released', 1)
  return 2
end
redis.call('HSET', KEYS[1], f, 'R')
redis.call('HINCRBY', KEYS[1], 'reserved', 1)
return 1
"#;

/// KEYS[1]: the campaign. ARGV: HSCAN cursor. One scan step over the recipients still only
/// listed (`D`): returns the next cursor, then their digits. A recipient the scan returns
/// twice is listed once: a build records its outcome before the next step.
const LISTED: &str = r#"
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'MATCH', 'r:*', 'COUNT', 500)
local out = { tonumber(r[1]) }
local kv = r[2]
for i = 1, #kv, 2 do
  if kv[i + 1] == 'D' then out[#out + 1] = tonumber(string.sub(kv[i], 3)) end
end
return out
"#;

/// KEYS[1]: a cancelled campaign. ARGV: HSCAN cursor. Gives back the reservations of one scan
/// step: returns the next cursor, then the digits of every recipient given back.
const RELEASE: &str = r#"
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'MATCH', 'r:*', 'COUNT', 500)
local out = { tonumber(r[1]) }
local kv = r[2]
for i = 1, #kv, 2 do
  if kv[i + 1] == 'R' then
    redis.call('HSET', KEYS[1], kv[i], 'C')
    redis.call('HINCRBY', KEYS[1], 'reserved', -1)
    redis.call('HINCRBY', KEYS[1], 'released', 1)
    out[#out + 1] = tonumber(string.sub(kv[i], 3))
  end
end
return out
"#;

/// KEYS[1]: the campaign. ARGV: client. Its meta fields, or an empty list if not this client's:
/// status, created_ms, recipients, reserved, refused, sent, released, day, week.
const META: &str = r#"
if redis.call('HGET', KEYS[1], 'client') ~= ARGV[1] then return {} end
return redis.call('HMGET', KEYS[1], 'status', 'created_ms', 'recipients', 'reserved', 'refused', 'sent',
  'released', 'day', 'week')
"#;

/// The campaign scripts, loaded once per shard.
pub struct CampaignScripts {
    create: Script,
    moves: Script,
    record: Script,
    listed: Script,
    take: Script,
    untake: Script,
    release: Script,
    meta: Script,
}

impl CampaignScripts {
    pub fn new() -> Self {
        CampaignScripts {
            create: Script::from_lua(CREATE),
            moves: Script::from_lua(MOVE),
            record: Script::from_lua(RECORD),
            listed: Script::from_lua(LISTED),
            take: Script::from_lua(TAKE),
            untake: Script::from_lua(UNTAKE),
            release: Script::from_lua(RELEASE),
            meta: Script::from_lua(META),
        }
    }
}

impl Default for CampaignScripts {
    fn default() -> Self {
        Self::new()
    }
}

/// `POST /api/v1/campaigns` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// Up to [`MAX_RECIPIENTS`] E.164 numbers (`+` optional); duplicates count once.
    pub recipients: Vec<String>,
}

/// Why a campaign call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampaignError {
    /// The body is not a valid campaign: reason and the field it concerns.
    Invalid { field: String, message: String },
    /// No campaign with this id for this client.
    NotFound,
    /// The campaign is not in the state the call needs (e.g. building a built campaign).
    State { status: String },
    /// Campaigns need Redis (`redis.url`), or Redis failed.
    Unavailable(String),
}

impl From<RedisFail> for CampaignError {
    fn from(e: RedisFail) -> Self {
        CampaignError::Unavailable(format!("Redis: {e}"))
    }
}

/// A campaign as `GET /api/v1/campaigns/{id}` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CampaignView {
    pub id: CampaignId,
    /// `draft`, `building`, `built`, `cancelled`.
    pub status: String,
    pub created_ms: u64,
    pub recipients: u64,
    /// Reserved and not yet sent.
    pub reserved: u64,
    pub refused: u64,
    pub sent: u64,
    /// Reservations given back by a cancel.
    pub released: u64,
}

/// One recipient a build refused.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Refused {
    pub to: String,
    /// `blacklist`, `daily_cp`, `weekly_cp`.
    pub status: &'static str,
}

/// The answer to a build.
#[derive(Clone, Debug, Serialize)]
pub struct Built {
    #[serde(flatten)]
    pub campaign: CampaignView,
    pub refused_recipients: Vec<Refused>,
}

/// What taking a reservation said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    Taken,
    AlreadySent,
    NotReserved,
}

/// Validated recipients: their digits, each once, in the order given.
pub fn recipients(c: &NewCampaign) -> Result<Vec<String>, CampaignError> {
    if c.recipients.is_empty() || c.recipients.len() > MAX_RECIPIENTS {
        return Err(CampaignError::Invalid {
            field: "recipients".into(),
            message: format!("give 1 to {MAX_RECIPIENTS} recipients"),
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(c.recipients.len());
    let mut out = Vec::with_capacity(c.recipients.len());
    for (i, r) in c.recipients.iter().enumerate() {
        let plus = if r.starts_with('+') { r.clone() } else { format!("+{r}") };
        let m = Msisdn::parse_e164(&plus).ok_or_else(|| CampaignError::Invalid {
            field: format!("recipients[{i}]"),
            message: format!("`{r}` is not an E.164 number: + and 8 to 15 digits"),
        })?;
        if seen.insert(m.digits().to_owned()) {
            out.push(m.digits().to_owned());
        }
    }
    Ok(out)
}

fn key(r: &PolicyRedis, id: CampaignId) -> String {
    format!("{{{}:camp:{id}}}", r.prefix)
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<Value> {
    items.into_iter().map(Value::from).collect()
}

impl PolicyRedis {
    /// Writes a new campaign (status `draft`) with its recipients, in chunks.
    pub async fn campaign_create(
        &self,
        id: CampaignId,
        client: &ClientId,
        recipients: &[String],
        now_ms: u64,
        ttl_s: u64,
    ) -> Result<(), CampaignError> {
        let key = key(self, id);
        let (created, ttl) = (now_ms.to_string(), ttl_s.to_string());
        for chunk in recipients.chunks(CHUNK) {
            let mut args = strings([client.as_str(), &created, &ttl]);
            args.extend(strings(chunk.iter().map(String::as_str)));
            match self.client.call(&self.campaign.create, &key, args).await?[..] {
                [1] => {}
                _ => return Err(CampaignError::State { status: "not a draft".into() }),
            }
        }
        Ok(())
    }

    /// The campaign, if it is this client's.
    pub async fn campaign_view(&self, id: CampaignId, client: &ClientId) -> Result<CampaignView, CampaignError> {
        let (view, _) = self.campaign_meta(id, client).await?;
        Ok(view)
    }

    /// The campaign and the CP1 period of its build (when built).
    async fn campaign_meta(
        &self,
        id: CampaignId,
        client: &ClientId,
    ) -> Result<(CampaignView, Option<(i64, i64)>), CampaignError> {
        let reply = self.client.call_values(&self.campaign.meta, &key(self, id), strings([client.as_str()])).await?;
        if reply.len() < 9 || reply[0].is_none() {
            return Err(CampaignError::NotFound);
        }
        let n = |i: usize| reply[i].as_deref().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let period = match (reply[7].as_deref(), reply[8].as_deref()) {
            (Some(d), Some(w)) => d.parse().ok().zip(w.parse().ok()),
            _ => None,
        };
        let view = CampaignView {
            id,
            status: reply[0].clone().unwrap_or_default(),
            created_ms: n(1),
            recipients: n(2),
            reserved: n(3),
            refused: n(4),
            sent: n(5),
            released: n(6),
        };
        Ok((view, period))
    }

    /// Moves the status `from` → `to` (and sets `extra` fields); `Err(State)` otherwise.
    async fn campaign_move(
        &self,
        id: CampaignId,
        client: &ClientId,
        from: &str,
        to: &str,
        extra: &[(&str, String)],
    ) -> Result<(), CampaignError> {
        let mut args = strings([client.as_str(), from, to]);
        for (k, v) in extra {
            args.extend(strings([*k, v.as_str()]));
        }
        match self.client.call(&self.campaign.moves, &key(self, id), args).await?[..] {
            [1] => Ok(()),
            _ => {
                let (view, _) = self.campaign_meta(id, client).await?;
                Err(CampaignError::State { status: view.status })
            }
        }
    }

    /// Builds a draft: each recipient checked against `listed` (the blacklist) and reserved
    /// against the CP1 caps under `caps_key(digits)` in `period`.
    pub async fn campaign_build(
        &self,
        id: CampaignId,
        client: &ClientId,
        period: Period,
        caps: (Option<u32>, Option<u32>),
        listed: impl Fn(&str) -> bool,
        caps_key: impl Fn(&str) -> String,
    ) -> Result<Built, CampaignError> {
        let period_fields = [("day", period.day.to_string()), ("week", period.week.to_string())];
        self.campaign_move(id, client, "draft", "building", &period_fields).await?;
        let key = key(self, id);
        let mut refused = Vec::new();
        let mut cursor = 0i64;
        loop {
            // The recipients still listed (`D`), a scan step at a time.
            let reply = self.client.call(&self.campaign.listed, &key, vec![Value::Integer(cursor)]).await?;
            let Some((&next, digits)) = reply.split_first() else {
                return Err(CampaignError::Unavailable("Redis: empty scan reply".into()));
            };
            let mut outcomes = Vec::with_capacity(digits.len() * 2);
            for d in digits.iter().map(i64::to_string) {
                let outcome = if listed(&d) {
                    Some(PolicyStatus::Blacklist)
                } else if caps.0.is_some() || caps.1.is_some() {
                    let key = caps_key(&d);
                    let ask = CapsAsk { key: &key, period, daily: caps.0, weekly: caps.1 };
                    match self.check(None, Some(ask)).await? {
                        Verdict::Passed | Verdict::Duplicate => None,
                        Verdict::OverDaily => Some(PolicyStatus::DailyCp),
                        Verdict::OverWeekly => Some(PolicyStatus::WeeklyCp),
                    }
                } else {
                    None
                };
                let value = match outcome {
                    None => "R".to_owned(),
                    Some(status) => {
                        refused.push(Refused { to: format!("+{d}"), status: status.as_str() });
                        format!("x:{}", status.as_str())
                    }
                };
                outcomes.push(d);
                outcomes.push(value);
            }
            if !outcomes.is_empty() {
                self.client.call(&self.campaign.record, &key, strings(outcomes.iter().map(String::as_str))).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.campaign_move(id, client, "building", "built", &[]).await?;
        let campaign = self.campaign_view(id, client).await?;
        Ok(Built { campaign, refused_recipients: refused })
    }

    /// Cancels a campaign and gives back every reservation not used: the CP1 count of each is
    /// taken back in the build's period under `caps_key(digits)`.
    pub async fn campaign_cancel(
        &self,
        id: CampaignId,
        client: &ClientId,
        caps_key: impl Fn(&str) -> String,
    ) -> Result<CampaignView, CampaignError> {
        let (view, period) = self.campaign_meta(id, client).await?;
        match view.status.as_str() {
            "draft" | "built" => self.campaign_move(id, client, &view.status, "cancelled", &[]).await?,
            "cancelled" => {}
            other => return Err(CampaignError::State { status: other.to_owned() }),
        }
        let key = key(self, id);
        let mut cursor = 0i64;
        loop {
            let reply = self.client.call(&self.campaign.release, &key, vec![Value::Integer(cursor)]).await?;
            let Some((&next, given_back)) = reply.split_first() else {
                return Err(CampaignError::Unavailable("Redis: empty scan reply".into()));
            };
            if let Some((day, week)) = period {
                let period = Period { day, week, ttl_s: 0 };
                for d in given_back.iter().map(i64::to_string) {
                    self.uncount(&caps_key(&d), period).await?;
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.campaign_view(id, client).await
    }

    /// A message of the campaign to `digits`: takes its reservation.
    pub async fn campaign_take(&self, id: CampaignId, client: &ClientId, digits: &str) -> Result<Take, RedisFail> {
        let args = strings([client.as_str(), digits]);
        match self.client.call(&self.campaign.take, &key(self, id), args).await?[..] {
            [1] => Ok(Take::Taken),
            [2] => Ok(Take::AlreadySent),
            [0] => Ok(Take::NotReserved),
            ref r => Err(RedisFail::Reply(format!("{r:?}"))),
        }
    }

    /// The message that took a reservation was not sent: the reservation is back. If the
    /// campaign was cancelled meanwhile the count is taken back under `caps_key` instead.
    pub async fn campaign_untake(
        &self,
        id: CampaignId,
        client: &ClientId,
        digits: &str,
        caps_key: impl Fn(&str) -> String,
    ) -> Result<(), CampaignError> {
        let reply = self.client.call(&self.campaign.untake, &key(self, id), strings([digits])).await?;
        if reply[..] == [2] {
            if let (_, Some((day, week))) = self.campaign_meta(id, client).await? {
                self.uncount(&caps_key(digits), Period { day, week, ttl_s: 0 }).await?;
            }
        }
        Ok(())
    }
}
