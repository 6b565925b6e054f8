//! CP1 and CP2 on Redis, over the limiter's shard client ([`RedisLimits`]: same connection
//! style, deadlines and EVALSHA loading). Every key is hash-tagged as a whole, so Redis
//! Cluster routes each script to one slot.
//!
//! Both keys of a number share its hash tag, so one script checks and marks CP2 and counts
//! CP1 in one round trip ([`PolicyRedis::check`]):
//! - CP2: `{<prefix>:<digits>}:cp2:<fingerprint hex>`, set with the window as its expiry.
//! - CP1: `{<prefix>:<digits>}:cp1` (`{<prefix>:<digits>}:cp1:<client>` with `caps_scope =
//!   "client"`), a hash {dw, dc, ww, wc}: day and week checked and counted (a refusal counts
//!   nothing and marks nothing). Days and weeks are calendar days and Monday-to-Sunday weeks in
//!   `policy.time_zone`, computed by the node ([`Period`]) so every node and Redis agree on
//!   the zone's midnight; a count is taken back with [`PolicyRedis::uncount`] when the message
//!   was not sent after all.

use super::campaign::CampaignScripts;
use crate::pipeline::limit::redis::{RedisFail, RedisLimits};
use fred::types::scripts::Script;
use fred::types::Value;

/// CP2 and CP1 of one message in one round trip. KEYS[1]: the CP2 fingerprint key, KEYS[2]:
/// the CP1 hash (both tagged with the number, so one slot). ARGV: CP2 window s (0: no CP2),
/// day, week (the message's calendar period, counted by the node in `policy.time_zone`), daily
/// cap, weekly cap (0 and 0: no CP1), seconds the counts must live (to the end of the week).
/// Returns 1 passed (marked and counted), 0 duplicate, 2 over the daily cap, 3 over the weekly
/// cap; a refusal changes nothing.
const CHECK: &str = r#"
local window = tonumber(ARGV[1])
if window > 0 and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local pd = tonumber(ARGV[4])
local pw = tonumber(ARGV[5])
if pd > 0 or pw > 0 then
  local day = ARGV[2]
  local week = ARGV[3]
  local h = redis.call('HMGET', KEYS[2], 'dw', 'dc', 'ww', 'wc')
  local dc = 0
  local wc = 0
  if h[1] == day then dc = tonumber(h[2]) end
  if h[3] == week then wc = tonumber(h[4]) end
  if pd > 0 and dc >= pd then return 2 end
  if pw > 0 and wc >= pw then return 3 end
  redis.call('HSET', KEYS[2], 'dw', day, 'dc', dc + 1, 'ww', week, 'wc', wc + 1)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
end
if window > 0 then redis.call('SET', KEYS[1], '1', 'EX', window) end
return 1
"#;

/// KEYS[1]: the number's hash. ARGV: the day and week a message was counted in. Takes that
/// message's count back (if its period is still the current one). Returns 1.
const UNCOUNT: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'dw', 'dc', 'ww', 'wc')
if h[1] == ARGV[1] and tonumber(h[2]) > 0 then redis.call('HINCRBY', KEYS[1], 'dc', -1) end
if h[3] == ARGV[2] and tonumber(h[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'wc', -1) end
return 1
"#;

/// KEYS[1]: a CP2 key this node set. Returns 1.
const FORGET: &str = r#"
redis.call('DEL', KEYS[1])
return 1
"#;

/// The calendar day and week a message falls in, and how long its counts must live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    /// Days since 1970-01-01 in the zone's calendar.
    pub day: i64,
    /// Weeks (Monday to Sunday) since the week of 1970-01-01.
    pub week: i64,
    /// Seconds from now to the end of the week, plus one.
    pub ttl_s: i64,
}

impl Period {
    /// The period of the instant `now_ms` (Unix ms) in `zone`.
    pub fn of(zone: &jiff::tz::TimeZone, now_ms: u64) -> Period {
        let ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let date = ts.to_zoned_datetime(zone.clone()).date();
        let day = days_from_civil(i64::from(date.year()), i64::from(date.month()), i64::from(date.day()));
        // 1970-01-01 was a Thursday: day + 3 counts from the Monday before it.
        let week = (day + 3).div_euclid(7);
        let days_left = 7 - i64::from(date.weekday().to_monday_zero_offset());
        let week_end = date
            .checked_add(jiff::Span::new().days(days_left))
            .ok()
            .and_then(|d| d.to_zoned_datetime(zone.clone()).ok())
            .map_or(ts.as_second() + days_left * 86_400, |z| z.timestamp().as_second());
        Period { day, week, ttl_s: (week_end - ts.as_second()).max(0) + 1 }
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date y-m-d (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What the check answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Marked for CP2 and counted for CP1 (whichever was asked).
    Passed,
    Duplicate,
    OverDaily,
    OverWeekly,
}

/// CP1 of one message: its key, period and caps.
#[derive(Clone, Copy, Debug)]
pub struct CapsAsk<'a> {
    pub key: &'a str,
    pub period: Period,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
}

/// One shard's Redis side of the policy stage.
pub struct PolicyRedis {
    pub(super) client: RedisLimits,
    pub(super) prefix: String,
    /// The campaign scripts ([`super::campaign`]).
    pub(super) campaign: CampaignScripts,
    check: Script,
    forget: Script,
    uncount: Script,
}

impl PolicyRedis {
    pub fn new(client: RedisLimits, prefix: &str) -> Self {
        PolicyRedis {
            client,
            prefix: prefix.to_owned(),
            campaign: CampaignScripts::new(),
            check: Script::from_lua(CHECK),
            forget: Script::from_lua(FORGET),
            uncount: Script::from_lua(UNCOUNT),
        }
    }

    /// The CP2 key of a (number, text) fingerprint.
    pub fn duplicate_key(&self, digits: &str, fingerprint: u64) -> String {
        format!("{{{}:{digits}}}:cp2:{fingerprint:016x}", self.prefix)
    }

    /// The CP1 key of a number, for every client (`client: None`) or one.
    pub fn caps_key(&self, client: Option<&str>, digits: &str) -> String {
        match client {
            Some(c) => format!("{{{}:{digits}}}:cp1:{c}", self.prefix),
            None => format!("{{{}:{digits}}}:cp1", self.prefix),
        }
    }

    /// CP2 (`duplicate`: its key and window) and CP1 (`caps`) of one message, in one round
    /// trip; at least one of them is asked.
    pub async fn check(&self, duplicate: Option<(&str, u64)>, caps: Option<CapsAsk<'_>>) -> Result<Verdict, RedisFail> {
        let (dup_key, window) = duplicate.unwrap_or(("", 0));
        let caps_key = caps.map_or(dup_key, |c| c.key);
        let (period, daily, weekly) =
            caps.map_or((Period { day: 0, week: 0, ttl_s: 1 }, None, None), |c| (c.period, c.daily, c.weekly));
        let keys = vec![if dup_key.is_empty() { caps_key } else { dup_key }.to_owned(), caps_key.to_owned()];
        let args = vec![
            Value::Integer(i64::try_from(window).unwrap_or(i64::MAX)),
            Value::Integer(period.day),
            Value::Integer(period.week),
            Value::Integer(i64::from(daily.unwrap_or(0))),
            Value::Integer(i64::from(weekly.unwrap_or(0))),
            Value::Integer(period.ttl_s),
        ];
        match self.client.call(&self.check, keys, args).await?[..] {
            [1] => Ok(Verdict::Passed),
            [0] => Ok(Verdict::Duplicate),
            [2] => Ok(Verdict::OverDaily),
            [3] => Ok(Verdict::OverWeekly),
            ref r => Err(RedisFail::Reply(format!("{r:?}"))),
        }
    }

    /// Removes a CP2 key set by [`Self::check`]: the message was not sent after all.
    pub async fn forget(&self, key: &str) -> Result<(), RedisFail> {
        self.client.call(&self.forget, key, Vec::new()).await.map(drop)
    }

    /// Takes back one count made by [`Self::count`] in `period`.
    pub async fn uncount(&self, key: &str, period: Period) -> Result<(), RedisFail> {
        let args = vec![Value::Integer(period.day), Value::Integer(period.week)];
        self.client.call(&self.uncount, key, args).await.map(drop)
    }

    pub async fn quit(&self) {
        self.client.quit().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> u64 {
        let ts: jiff::Timestamp = rfc3339.parse().unwrap();
        u64::try_from(ts.as_millisecond()).unwrap()
    }

    #[test]
    fn days_and_weeks_in_a_zone() {
        let utc = jiff::tz::TimeZone::UTC;
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 12, 4), 20_791);
        // Thursday 1970-01-01 is in week 0; Monday 1970-01-05 starts week 1.
        assert_eq!(Period::of(&utc, 0).week, 0);
        assert_eq!(Period::of(&utc, 4 * 86_400_000).week, 1);
        // 23:30 UTC on Friday 4 Dec 2026 is already Saturday in Berlin.
        let late = ms("2026-12-04T23:30:00Z");
        assert_eq!(Period::of(&utc, late).day, 20_791);
        assert_eq!(Period::of(&berlin, late).day, 20_792);
        // Sunday 23:30 in Berlin is 22:30 UTC: same week there, and the counts live until
        // Monday 00:00 Berlin (30 min) plus one second.
        let sunday = ms("2026-12-06T22:30:00Z");
        let p = Period::of(&berlin, sunday);
        assert_eq!(p.ttl_s, 30 * 60 + 1);
        assert_eq!(p.week, Period::of(&berlin, ms("2026-11-30T00:00:00+01:00")).week);
        assert_eq!(p.week + 1, Period::of(&berlin, ms("2026-12-07T00:00:00+01:00")).week);
        // A week that contains a DST change (29 Mar 2026 in Berlin) ends at local midnight.
        let p = Period::of(&berlin, ms("2026-03-28T12:00:00+01:00"));
        assert_eq!(p.ttl_s, 36 * 3600 - 3600 + 1);
    }
}
