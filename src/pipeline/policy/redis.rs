//! CP1 and CP2 on Redis, over the limiter's shard client ([`RedisLimits`]: same connection
//! style, deadlines and EVALSHA loading). Every key is hash-tagged as a whole, so Redis
//! Cluster routes each script to one slot.
//!
//! - CP2: `{<prefix>:cp2:<digits>:<fingerprint hex>}`, `SET 1 NX EX window`.
//! - CP1: `{<prefix>:cp1:<digits>}`, a hash {dw, dc, ww, wc}: day and week checked and counted
//!   in one script (a refusal counts nothing). Days and weeks are calendar UTC by Redis's own
//!   `TIME`; weeks start on Monday.

use crate::pipeline::limit::redis::{RedisFail, RedisLimits};
use fred::types::scripts::Script;
use fred::types::Value;

/// KEYS[1]: the fingerprint key. ARGV: window s. Returns 1 first, 0 duplicate.
const DUPLICATE: &str = r#"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 1 end
return 0
"#;

/// KEYS[1]: the number's hash. ARGV: daily cap, weekly cap (0: none).
/// Returns 1 counted, 2 over the daily cap, 3 over the weekly cap.
const CAPS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1])
local day = math.floor(now / 86400)
local week = math.floor((day + 3) / 7)
local pd = tonumber(ARGV[1])
local pw = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'dw', 'dc', 'ww', 'wc')
local dc = 0
local wc = 0
if tonumber(h[1] or '-1') == day then dc = tonumber(h[2]) end
if tonumber(h[3] or '-1') == week then wc = tonumber(h[4]) end
if pd > 0 and dc >= pd then return 2 end
if pw > 0 and wc >= pw then return 3 end
redis.call('HSET', KEYS[1], 'dw', day, 'dc', dc + 1, 'ww', week, 'wc', wc + 1)
local ends = (day + 1) * 86400
if pw > 0 then ends = (week + 1) * 7 * 86400 - 3 * 86400 end
redis.call('EXPIRE', KEYS[1], ends - now + 1)
return 1
"#;

/// What the CP1 script answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapAnswer {
    Counted,
    OverDaily,
    OverWeekly,
}

/// One shard's Redis side of the policy stage.
pub struct PolicyRedis {
    client: RedisLimits,
    prefix: String,
    duplicate: Script,
    caps: Script,
}

impl PolicyRedis {
    pub fn new(client: RedisLimits, prefix: &str) -> Self {
        PolicyRedis {
            client,
            prefix: prefix.to_owned(),
            duplicate: Script::from_lua(DUPLICATE),
            caps: Script::from_lua(CAPS),
        }
    }

    /// `Ok(true)` the first time within `window_s`; `Ok(false)` a duplicate.
    pub async fn first(&self, digits: &str, fingerprint: u64, window_s: u64) -> Result<bool, RedisFail> {
        let key = format!("{{{}:cp2:{digits}:{fingerprint:016x}}}", self.prefix);
        let window = i64::try_from(window_s).unwrap_or(i64::MAX);
        match self.client.call(&self.duplicate, &key, vec![Value::Integer(window)]).await?[..] {
            [1] => Ok(true),
            [0] => Ok(false),
            ref r => Err(RedisFail::Reply(format!("{r:?}"))),
        }
    }

    /// Counts one message to `digits` unless a cap is reached.
    pub async fn count(&self, digits: &str, daily: Option<u32>, weekly: Option<u32>) -> Result<CapAnswer, RedisFail> {
        let key = format!("{{{}:cp1:{digits}}}", self.prefix);
        let args = vec![Value::Integer(i64::from(daily.unwrap_or(0))), Value::Integer(i64::from(weekly.unwrap_or(0)))];
        match self.client.call(&self.caps, &key, args).await?[..] {
            [1] => Ok(CapAnswer::Counted),
            [2] => Ok(CapAnswer::OverDaily),
            [3] => Ok(CapAnswer::OverWeekly),
            ref r => Err(RedisFail::Reply(format!("{r:?}"))),
        }
    }

    pub async fn quit(&self) {
        self.client.quit().await;
    }
}
