//! The node-local shared buckets: what L2 grants from when there is no Redis (single-node mode,
//! the whole rate) or while Redis is down (this node's share of the rate).
//!
//! They are shared by the node's shards through atomics (compare-and-swap on one word per
//! bucket), never a lock, and they answer synchronously, so a shard refills from them inline
//! when its lease runs dry: no first request is refused for want of a background refill.
//! The same GCRA-with-leases arithmetic as the Redis script (`redis.rs`), in nanoseconds since
//! the node's origin instead of Redis microseconds.

use super::l2::Grant;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Wall time, anchored once per node so that window ids follow the injected `Instant`s.
#[derive(Clone, Copy, Debug)]
pub struct WallAnchor {
    pub origin: Instant,
    pub origin_unix_ms: u64,
}

impl WallAnchor {
    pub fn now() -> Self {
        WallAnchor {
            origin: Instant::now(),
            origin_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    pub fn unix_ms(&self, now: Instant) -> u64 {
        self.origin_unix_ms + now.saturating_duration_since(self.origin).as_millis() as u64
    }

    pub fn ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_nanos().min(u128::from(u64::MAX)) as u64
    }
}

/// Builds a GCRA lease in this shard's clock from offsets relative to `now` (ns; the first
/// usable time may lie in the past).
pub fn slots_grant(
    now: Instant,
    tokens: u32,
    first_usable_ns: i64,
    last_end_ns: u64,
    step: Duration,
    grace: Duration,
    wait_ns: Option<u64>,
) -> Grant {
    let first_usable = if first_usable_ns >= 0 {
        now + Duration::from_nanos(first_usable_ns as u64)
    } else {
        now.checked_sub(Duration::from_nanos(first_usable_ns.unsigned_abs())).unwrap_or(now)
    };
    Grant {
        tokens,
        first_usable,
        step,
        valid_until: now + Duration::from_nanos(last_end_ns) + grace,
        next_at: wait_ns.map(|w| now + Duration::from_nanos(w)),
        left: None,
    }
}

/// Parameters of one GCRA grant.
#[derive(Clone, Copy, Debug)]
pub struct GcraAsk {
    /// Slot width `T` (already multiplied by the number of nodes for a fallback share).
    pub step: Duration,
    /// Capacity `C` in slots.
    pub capacity: u32,
    /// Tokens wanted.
    pub tokens: u32,
    /// How far beyond `now + C·T` slots may be handed out.
    pub horizon: Duration,
    /// How long a slot stays spendable after its end.
    pub grace: Duration,
}

/// One link's, pool's or client's node-local bucket.
#[derive(Debug, Default)]
pub struct LocalBucket {
    /// GCRA: theoretical arrival time, ns since the node's origin.
    tat: AtomicU64,
    /// Window counter: `window id << 32 | count`.
    window: AtomicU64,
}

impl LocalBucket {
    pub fn grant_gcra(&self, anchor: &WallAnchor, now: Instant, ask: GcraAsk) -> Grant {
        let now_ns = anchor.ns(now);
        let t = ask.step.as_nanos().clamp(1, u128::from(u64::MAX / 4)) as u64;
        let c = u64::from(ask.capacity.max(1));
        let horizon = ask.horizon.as_nanos().min(u128::from(u64::MAX / 4)) as u64;
        let limit = now_ns.saturating_add(c.saturating_mul(t)).saturating_add(horizon);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let base = tat.max(now_ns);
            let room = limit.saturating_sub(base) / t;
            let k = u64::from(ask.tokens).min(room);
            if k == 0 {
                let wait = (base + t).saturating_sub(limit);
                return slots_grant(now, 0, 0, 0, ask.step, ask.grace, Some(wait.max(1)));
            }
            let new_tat = base + k * t;
            match self.tat.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let first = (base + t) as i128 - i128::from(c * t) - i128::from(now_ns);
                    let wait = (k < u64::from(ask.tokens)).then_some(t);
                    return slots_grant(
                        now,
                        k as u32,
                        first.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
                        new_tat - now_ns,
                        ask.step,
                        ask.grace,
                        wait,
                    );
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Takes `tokens` slots at once, spendable now, when the GCRA of slot width `step` and
    /// capacity `capacity` allows them now (the rule of L1: `max(TAT, now) + min(n, C)·T ≤
    /// now + C·T`, a larger cost leaving a debt); else the delay until it would. Nothing is
    /// handed out ahead of time, so no shard holds slots another one could spend now: this is
    /// how shards spend a node-local bucket, which answers synchronously (no prefetch needed).
    pub fn take_gcra(
        &self,
        anchor: &WallAnchor,
        now: Instant,
        step: Duration,
        capacity: u32,
        tokens: u32,
        grace: Duration,
    ) -> Result<Grant, Duration> {
        let now_ns = anchor.ns(now);
        let t = step.as_nanos().clamp(1, u128::from(u64::MAX / 4)) as u64;
        let c = u64::from(capacity.max(1));
        let n = u64::from(tokens.max(1));
        let allow = now_ns.saturating_add(c.saturating_mul(t));
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let base = tat.max(now_ns);
            let need = base.saturating_add(n.min(c).saturating_mul(t));
            if need > allow {
                return Err(Duration::from_nanos(need - allow).max(Duration::from_millis(1)));
            }
            let new_tat = base.saturating_add(n.saturating_mul(t));
            match self.tat.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Ok(Grant {
                        tokens: n as u32,
                        first_usable: now,
                        step: Duration::ZERO,
                        valid_until: now + grace.max(Duration::from_millis(1)),
                        next_at: None,
                        left: None,
                    })
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Empties the bucket (no burst left) so that switching to it adds nothing to slots
    /// already leased from Redis.
    pub fn prime(&self, anchor: &WallAnchor, now: Instant, step: Duration, capacity: u32) {
        let full = anchor.ns(now).saturating_add(
            u64::from(capacity.max(1)).saturating_mul(step.as_nanos().min(u128::from(u64::MAX / 4)) as u64),
        );
        self.tat.fetch_max(full, Ordering::AcqRel);
    }

    /// Up to `tokens` units of the current fixed window of `period`, out of `limit`.
    pub fn grant_window(&self, anchor: &WallAnchor, now: Instant, limit: u32, period: Duration, tokens: u32) -> Grant {
        let period_ms = period.as_millis().max(1) as u64;
        let unix = anchor.unix_ms(now);
        let id = unix / period_ms;
        let end = now + Duration::from_millis((id + 1) * period_ms - unix);
        let mut cur = self.window.load(Ordering::Acquire);
        loop {
            let used = if cur >> 32 == id & 0xffff_ffff { cur & 0xffff_ffff } else { 0 };
            let left = u64::from(limit).saturating_sub(used);
            let k = u64::from(tokens).min(left);
            let next = ((id & 0xffff_ffff) << 32) | (used + k);
            match self.window.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Grant {
                        tokens: k as u32,
                        first_usable: now,
                        step: Duration::ZERO,
                        valid_until: end,
                        next_at: (k < u64::from(tokens)).then_some(end),
                        left: Some(left - k),
                    }
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Per-(client, destination) minute and day counters of one node, for single-node mode and
/// for Redis outages: a fixed table of atomic words, `fingerprint:32 | window:24 | count:8`,
/// probed over a few neighbouring slots. Caps above 255 are enforced as 255. When every probed
/// slot is taken by another live pair the message passes (counted in `overflows`): a flood of
/// distinct numbers must not block every other destination.
#[derive(Debug)]
pub struct DestinationTable {
    minute: Box<[AtomicU64]>,
    day: Box<[AtomicU64]>,
    pub overflows: AtomicU64,
}

const PROBES: usize = 4;

impl DestinationTable {
    /// `slots` per window kind (rounded up to a power of two); 8 bytes each.
    pub fn new(slots: usize) -> Self {
        let n = slots.max(PROBES).next_power_of_two();
        let mk = || (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>().into_boxed_slice();
        DestinationTable { minute: mk(), day: mk(), overflows: AtomicU64::new(0) }
    }

    pub fn hash(client: &str, digits: &str) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        client.hash(&mut h);
        digits.hash(&mut h);
        h.finish()
    }

    /// Counts one message to the pair if both caps allow it; else the delay until the window
    /// that refused ends.
    pub fn check(
        &self,
        hash: u64,
        unix_ms: u64,
        per_minute: Option<u32>,
        per_day: Option<u32>,
    ) -> Result<(), Duration> {
        let minute = per_minute.map(|cap| (&self.minute, cap, 60_000u64));
        let day = per_day.map(|cap| (&self.day, cap, 86_400_000u64));
        let mut taken: [Option<(&AtomicU64, u64)>; 2] = [None, None];
        for (i, (table, cap, period)) in [minute, day].into_iter().flatten().enumerate() {
            match Self::take(table, hash, unix_ms / period, cap.min(255)) {
                Ok(Some(slot)) => taken[i] = Some(slot),
                Ok(None) => {
                    self.overflows.fetch_add(1, Ordering::Relaxed);
                }
                Err(()) => {
                    for (slot, word) in taken.iter().flatten() {
                        // Give back what the other window took: decrement if still ours.
                        let _ = slot.compare_exchange(*word + 1, *word, Ordering::AcqRel, Ordering::Acquire);
                    }
                    let id = unix_ms / period;
                    return Err(Duration::from_millis((id + 1) * period - unix_ms));
                }
            }
        }
        Ok(())
    }

    /// `Ok(Some((slot, word before)))` counted; `Ok(None)` no slot free; `Err` at the cap.
    fn take(table: &[AtomicU64], hash: u64, window: u64, cap: u32) -> Result<Option<(&AtomicU64, u64)>, ()> {
        let fp = hash >> 32;
        let window = window & 0xff_ffff;
        let mask = table.len() - 1;
        for p in 0..PROBES {
            let slot = &table[(hash as usize).wrapping_add(p) & mask];
            let mut cur = slot.load(Ordering::Acquire);
            loop {
                let (cfp, cwin, count) = (cur >> 32, (cur >> 8) & 0xff_ffff, cur & 0xff);
                let next = if cur != 0 && cfp == fp && cwin == window {
                    if count >= u64::from(cap) {
                        return Err(());
                    }
                    cur + 1
                } else if cur == 0 || cwin != window {
                    (fp << 32) | (window << 8) | 1
                } else {
                    break;
                };
                match slot.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Ok(Some((slot, next - 1))),
                    Err(actual) => cur = actual,
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_leases_never_exceed_rate_plus_capacity() {
        let anchor = WallAnchor::now();
        let b = LocalBucket::default();
        let ask = GcraAsk {
            step: Duration::from_millis(1),
            capacity: 10,
            tokens: 50,
            horizon: Duration::from_millis(100),
            grace: Duration::from_millis(100),
        };
        let mut granted = 0u64;
        let mut t = anchor.origin;
        let end = anchor.origin + Duration::from_secs(2);
        while t < end {
            let g = b.grant_gcra(&anchor, t, ask);
            granted += u64::from(g.tokens);
            t += Duration::from_millis(7);
        }
        // Granted slots reach at most C + horizon ahead of the last ask.
        assert!(granted <= 2_000 + 10 + 100, "{granted}");
        assert!(granted >= 2_000, "{granted}");
    }

    #[test]
    fn windows_count_and_reset() {
        let anchor = WallAnchor { origin: Instant::now(), origin_unix_ms: 60_000 * 1_000 };
        let b = LocalBucket::default();
        let min = Duration::from_secs(60);
        let g = b.grant_window(&anchor, anchor.origin, 3, min, 2);
        assert_eq!((g.tokens, g.left), (2, Some(1)));
        let g = b.grant_window(&anchor, anchor.origin, 3, min, 2);
        assert_eq!((g.tokens, g.left), (1, Some(0)));
        assert!(g.next_at.is_some());
        let g = b.grant_window(&anchor, anchor.origin + min, 3, min, 2);
        assert_eq!(g.tokens, 2);
    }

    #[test]
    fn destination_caps() {
        let t = DestinationTable::new(1024);
        let h = DestinationTable::hash("acme", "4915112345678");
        let now = 3 * 86_400_000 + 30_000;
        for _ in 0..3 {
            assert!(t.check(h, now, Some(3), Some(10)).is_ok());
        }
        assert_eq!(t.check(h, now, Some(3), Some(10)), Err(Duration::from_secs(30)));
        let other = DestinationTable::hash("acme", "4915100000000");
        assert!(t.check(other, now, Some(3), Some(10)).is_ok());
        // Next minutes: the day cap of 10 ends it.
        let mut ok = 3;
        for m in 1..10 {
            for _ in 0..3 {
                ok += u32::from(t.check(h, now + m * 60_000, Some(3), Some(10)).is_ok());
            }
        }
        assert_eq!(ok, 10);
    }
}
