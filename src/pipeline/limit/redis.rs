//! One shard's Redis client for the limiter (fred, glommio runtime) and its four scripts.
//!
//! Every fred timeout is zero (fred 10.1 would call tokio's timer, FACTS.md); each call gets its
//! deadline here from `glommio::timer::timeout`. Scripts run by EVALSHA, are loaded once
//! (`SCRIPT LOAD` on the first NOSCRIPT, e.g. after a Redis restart) and take Redis's own
//! `TIME`, so nodes' clocks never have to agree. Every key is hash-tagged as a whole
//! (`{smsgate:l2:link:100}`): each script touches one key, so Redis Cluster routes it.

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::{Config, ReconnectPolicy};
use fred::types::scripts::Script;
use fred::types::{Builder, MultipleKeys, Value};
use std::time::Duration;

/// GCRA with leases (see `l2.rs`). KEYS[1]: the bucket (a string, TAT in µs of Redis time).
/// ARGV: slot width µs (may be fractional), capacity, tokens wanted, horizon µs.
/// Returns {granted, first usable (µs from now, may be < 0), end of last slot (µs from now),
/// wait µs when nothing could be granted}.
const GCRA_LEASE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local step = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local horizon = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local base = math.max(tat, now)
local limit = now + cap * step + horizon
local k = math.min(want, math.floor((limit - base) / step))
if k <= 0 then
  return {0, 0, 0, math.ceil(base + step - limit)}
end
local new_tat = math.ceil(base + k * step)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
  math.ceil((new_tat - now) / 1000) + 1000)
return {k, math.ceil(base + step - cap * step - now), new_tat - now, 0}
"#;

/// A fixed window counter. KEYS[1]: a hash {w = window id, c = count}.
/// ARGV: limit, units wanted, period ms. Returns {granted, left after, ms to the window's end}.
const WINDOW_LEASE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[3])
local id = math.floor(now / period)
local used = 0
if tonumber(redis.call('HGET', KEYS[1], 'w') or '-1') == id then
  used = tonumber(redis.call('HGET', KEYS[1], 'c') or '0')
end
local left = math.max(tonumber(ARGV[1]) - used, 0)
local k = math.min(tonumber(ARGV[2]), left)
local ends = (id + 1) * period
if k > 0 then
  redis.call('HSET', KEYS[1], 'w', string.format('%.0f', id), 'c', used + k)
  redis.call('PEXPIRE', KEYS[1], ends - now + 1000)
end
return {k, left - k, ends - now}
"#;

/// One message to one (client, destination): minute and day caps checked and counted
/// together. KEYS[1]: a hash {mw, mc, dw, dc}. ARGV: per-minute cap, per-day cap (0: none).
/// Returns {1, 0} counted, or {0, ms until the refusing window ends}.
const DESTINATION: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pm = tonumber(ARGV[1])
local pd = tonumber(ARGV[2])
local mid = math.floor(now / 60000)
local did = math.floor(now / 86400000)
local h = redis.call('HMGET', KEYS[1], 'mw', 'mc', 'dw', 'dc')
local mc = 0
local dc = 0
if tonumber(h[1] or '-1') == mid then mc = tonumber(h[2]) end
if tonumber(h[3] or '-1') == did then dc = tonumber(h[4]) end
if pm > 0 and mc >= pm then return {0, (mid + 1) * 60000 - now} end
if pd > 0 and dc >= pd then return {0, (did + 1) * 86400000 - now} end
redis.call('HSET', KEYS[1], 'mw', string.format('%.0f', mid), 'mc', mc + 1,
  'dw', string.format('%.0f', did), 'dc', dc + 1)
local ends = (mid + 1) * 60000
if pd > 0 then ends = (did + 1) * 86400000 end
redis.call('PEXPIRE', KEYS[1], ends - now + 1000)
return {1, 0}
"#;

/// Node heartbeat. KEYS[1]: a sorted set of node ids scored by their last beat (ms).
/// ARGV: node id, ttl ms. Returns the number of live nodes.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
"#;

thread_local! {
    static TOKIO_CONTEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// fred 10.1 closes a connection (on every reconnect and on QUIT) under a hard-coded 5 s
/// `tokio::time::timeout`, which panics outside a tokio context even with every configured
/// timeout at zero. So each shard thread that talks to Redis gets a current-thread tokio
/// runtime with timers, entered for the thread's life and never driven: its timers never
/// fire, the close simply finishes when glommio's socket closes. Built once per thread and
/// kept until the thread ends (one small runtime per shard).
fn tokio_context_for_fred() -> Result<(), String> {
    if TOKIO_CONTEXT.with(|c| c.replace(true)) {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("tokio context for fred: {e}"))?;
    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(rt));
    // Dropping the guard would leave the context; it must last as long as the thread.
    std::mem::forget(rt.enter());
    Ok(())
}

/// Why a Redis call gave no answer to use.
#[derive(Debug)]
pub enum RedisFail {
    /// The deadline passed first.
    Timeout,
    Redis(fred::error::Error),
    /// A reply of an unexpected shape.
    Reply(String),
}

impl std::fmt::Display for RedisFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisFail::Timeout => f.write_str("deadline passed"),
            RedisFail::Redis(e) => write!(f, "{e}"),
            RedisFail::Reply(r) => write!(f, "unexpected reply {r}"),
        }
    }
}

/// A GCRA lease as Redis answered it, in µs relative to Redis's `now`.
#[derive(Clone, Copy, Debug)]
pub struct GcraReply {
    pub granted: u32,
    pub first_usable_us: i64,
    pub last_end_us: u64,
    pub wait_us: u64,
}

/// A window lease as Redis answered it.
#[derive(Clone, Copy, Debug)]
pub struct WindowReply {
    pub granted: u32,
    pub left: u64,
    pub ends_in_ms: u64,
}

/// One shard's connection to Redis for limits.
pub struct RedisLimits {
    client: Client,
    deadline: Duration,
    gcra: Script,
    window: Script,
    destination: Script,
    heartbeat: Script,
}

impl RedisLimits {
    /// Builds the client and starts connecting in the background (on the current glommio
    /// executor); calls before the connection is up wait in fred's bounded buffer until their
    /// deadline. Reconnects forever, every `reconnect_delay`.
    pub fn connect(url: &str, deadline: Duration, reconnect_delay_ms: u32) -> Result<Self, String> {
        let config = Config::from_url(url).map_err(|e| format!("redis.url: {e}"))?;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = Duration::ZERO;
                c.internal_command_timeout = Duration::ZERO;
                // One attempt: a lost answer is a lost lease (safe), never a second grant.
                c.max_command_attempts = 1;
                // Bounded: while Redis is away, calls past this fail at once.
                c.max_command_buffer_len = 1024;
            })
            .with_performance_config(|p| p.default_command_timeout = Duration::ZERO)
            .set_policy(ReconnectPolicy::new_constant(0, reconnect_delay_ms.max(1)));
        let client = builder.build().map_err(|e| format!("redis: {e}"))?;
        tokio_context_for_fred()?;
        // The connection task runs detached on this executor until `quit`.
        let _task = client.connect();
        Ok(RedisLimits {
            client,
            deadline,
            gcra: Script::from_lua(GCRA_LEASE),
            window: Script::from_lua(WINDOW_LEASE),
            destination: Script::from_lua(DESTINATION),
            heartbeat: Script::from_lua(HEARTBEAT),
        })
    }

    pub(crate) async fn call(
        &self,
        script: &Script,
        keys: impl Into<MultipleKeys> + Send,
        args: Vec<Value>,
    ) -> Result<Vec<i64>, RedisFail> {
        match self.call_raw(script, keys, args).await? {
            Value::Array(items) => {
                items.iter().map(|v| v.as_i64().ok_or_else(|| RedisFail::Reply(format!("{v:?}")))).collect()
            }
            Value::Integer(i) => Ok(vec![i]),
            other => Err(RedisFail::Reply(format!("{other:?}"))),
        }
    }

    /// A script whose answer is a list of strings or nils (`HMGET`).
    pub(crate) async fn call_values(
        &self,
        script: &Script,
        key: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Option<String>>, RedisFail> {
        match self.call_raw(script, key, args).await? {
            Value::Array(items) => Ok(items.into_iter().map(|v| v.into_string()).collect()),
            other => Err(RedisFail::Reply(format!("{other:?}"))),
        }
    }

    async fn call_raw(
        &self,
        script: &Script,
        keys: impl Into<MultipleKeys> + Send,
        args: Vec<Value>,
    ) -> Result<Value, RedisFail> {
        let fut = async { Ok(script.evalsha_with_reload::<Value, _, _>(&self.client, keys, args).await) };
        match glommio::timer::timeout(self.deadline, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisFail::Redis(e)),
            Err(_) => Err(RedisFail::Timeout),
        }
    }

    pub async fn grant_gcra(
        &self,
        key: &str,
        step: Duration,
        capacity: u32,
        tokens: u32,
        horizon: Duration,
    ) -> Result<GcraReply, RedisFail> {
        let step_us = step.as_secs_f64() * 1e6;
        let r = self
            .call(
                &self.gcra,
                key,
                vec![
                    Value::Double(step_us),
                    Value::Integer(i64::from(capacity)),
                    Value::Integer(i64::from(tokens)),
                    Value::Integer(horizon.as_micros().min(i64::MAX as u128) as i64),
                ],
            )
            .await?;
        match r[..] {
            [k, first, last, wait] => Ok(GcraReply {
                granted: k.clamp(0, i64::from(tokens)) as u32,
                first_usable_us: first,
                last_end_us: last.max(0) as u64,
                wait_us: wait.max(0) as u64,
            }),
            _ => Err(RedisFail::Reply(format!("{r:?}"))),
        }
    }

    pub async fn grant_window(
        &self,
        key: &str,
        limit: u32,
        tokens: u32,
        period: Duration,
    ) -> Result<WindowReply, RedisFail> {
        let r = self
            .call(
                &self.window,
                key,
                vec![
                    Value::Integer(i64::from(limit)),
                    Value::Integer(i64::from(tokens)),
                    Value::Integer(period.as_millis().min(i64::MAX as u128) as i64),
                ],
            )
            .await?;
        match r[..] {
            [k, left, ends] => Ok(WindowReply {
                granted: k.clamp(0, i64::from(tokens)) as u32,
                left: left.max(0) as u64,
                ends_in_ms: ends.max(0) as u64,
            }),
            _ => Err(RedisFail::Reply(format!("{r:?}"))),
        }
    }

    /// `Ok(None)` counted; `Ok(Some(wait))` at a cap.
    pub async fn destination(
        &self,
        key: &str,
        per_minute: Option<u32>,
        per_day: Option<u32>,
    ) -> Result<Option<Duration>, RedisFail> {
        let r = self
            .call(
                &self.destination,
                key,
                vec![
                    Value::Integer(i64::from(per_minute.unwrap_or(0))),
                    Value::Integer(i64::from(per_day.unwrap_or(0))),
                ],
            )
            .await?;
        match r[..] {
            [1, _] => Ok(None),
            [0, wait] => Ok(Some(Duration::from_millis(wait.max(1) as u64))),
            _ => Err(RedisFail::Reply(format!("{r:?}"))),
        }
    }

    /// Beats for `node` and returns the number of live nodes.
    pub async fn heartbeat(&self, key: &str, node: u8, ttl: Duration) -> Result<u32, RedisFail> {
        let r = self
            .call(
                &self.heartbeat,
                key,
                vec![Value::Integer(i64::from(node)), Value::Integer(ttl.as_millis().min(i64::MAX as u128) as i64)],
            )
            .await?;
        match r[..] {
            [n] => Ok(n.clamp(1, i64::from(u32::MAX)) as u32),
            _ => Err(RedisFail::Reply(format!("{r:?}"))),
        }
    }

    /// Closes the connection (best effort, within the deadline).
    pub async fn quit(&self) {
        let fut = async { Ok(self.client.quit().await) };
        let _ = glommio::timer::timeout(self.deadline, fut).await;
    }
}
