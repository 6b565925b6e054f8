//! L2: quota leases a shard spends locally, granted by a shared bucket (Redis, or the node-local
//! bucket of [`super::local`] when there is no Redis or it is down).
//!
//! The shared bucket of a link or pool is a GCRA whose time slots are handed out in blocks: a
//! lease of `k` tokens is `k` consecutive slots of width `T`; slot `i` may be spent from
//! `first_usable + i·T` on. Every spent token is a distinct slot, so all shards of all nodes
//! together admit at most `C + rate·t` over any run starting idle, however large the leases
//! are; large leases only decide how far ahead the bucket hands slots out. A lease is dropped
//! `grace` after its last slot, which bounds what an idle shard can save up.
//!
//! A client's minute and day windows are counters: a lease is `k` units of the current
//! window, spendable at once, dropped when the window ends.
//!
//! Lease size (`lease_size`): `rate × lease_ms / (shards × live nodes)`, at least 1 and at
//! most [`MAX_LEASE`]. At 1 msg/s it is 1 (exact); at 10,000 msg/s with 100 ms on 2×2 shards it
//! is 250, so a saturated shard asks Redis 10 times a second (4 round trips per 1,000 messages).
//! Window leases also shrink with what is left in the window (a quarter of the rest per shard).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Largest lease ever asked for, tokens.
pub const MAX_LEASE: u32 = 100_000;
/// Leases a shard holds per key at most; it asks for more only below the low-water mark.
const MAX_HELD: usize = 3;

/// What a shared bucket handed out, in this shard's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Tokens granted, possibly 0.
    pub tokens: u32,
    /// When the first token may be spent.
    pub first_usable: Instant,
    /// Slot width: token `i` may be spent from `first_usable + i·step`. Zero for windows.
    pub step: Duration,
    /// After this the unspent tokens are dropped.
    pub valid_until: Instant,
    /// When fewer than asked were granted: the earliest time the bucket can grant again.
    pub next_at: Option<Instant>,
    /// Windows: units left in the window after this grant, for sizing the next lease.
    pub left: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Lease {
    remaining: u32,
    next_usable: Instant,
    step: Duration,
    valid_until: Instant,
}

impl Lease {
    /// Tokens of this lease spendable at `now`.
    fn usable(&self, now: Instant) -> u32 {
        if now >= self.valid_until || now < self.next_usable {
            return 0;
        }
        if self.step.is_zero() {
            return self.remaining;
        }
        let slots = (now - self.next_usable).as_nanos() / self.step.as_nanos() + 1;
        self.remaining.min(slots.min(u128::from(u32::MAX)) as u32)
    }
}

/// One shard's leases on one key.
#[derive(Debug)]
pub struct Leases {
    held: VecDeque<Lease>,
    /// The bucket said it has nothing before this.
    not_before: Option<Instant>,
    /// Last time a request needed this key: leases stay warm for a while after it.
    last_demand: Option<Instant>,
    /// Units the window had left at the last grant.
    last_left: Option<u64>,
}

impl Default for Leases {
    fn default() -> Self {
        Leases { held: VecDeque::with_capacity(MAX_HELD + 1), not_before: None, last_demand: None, last_left: None }
    }
}

impl Leases {
    /// Whether `n` tokens can be spent at `now`; else how long until they could (at least
    /// 1 ms). `fallback_wait` is used when nothing is held and the bucket gave no hint.
    pub fn probe(&self, n: u32, now: Instant, fallback_wait: Duration) -> Result<(), Duration> {
        let mut need = n;
        for l in &self.held {
            need = need.saturating_sub(l.usable(now));
            if need == 0 {
                return Ok(());
            }
        }
        // Not enough now: when would the held ones be enough?
        let mut need = n;
        for l in &self.held {
            if now >= l.valid_until || l.remaining == 0 {
                continue;
            }
            if need <= l.remaining {
                let at = l.next_usable + l.step * (need - 1);
                if at < l.valid_until {
                    return Err(at.saturating_duration_since(now).max(Duration::from_millis(1)));
                }
                break;
            }
            need -= l.remaining;
        }
        let wait = match self.not_before {
            Some(t) if t > now => t - now,
            _ => fallback_wait,
        };
        Err(wait.max(Duration::from_millis(1)))
    }

    /// Spends `n` tokens; call after a successful [`Leases::probe`] at the same `now`.
    pub fn spend(&mut self, n: u32, now: Instant) {
        let mut need = n;
        for l in self.held.iter_mut() {
            if need == 0 {
                break;
            }
            let take = l.usable(now).min(need);
            l.remaining -= take;
            l.next_usable += l.step * take;
            need -= take;
        }
        self.drop_spent(now);
    }

    /// Records that a request wanted this key (warmth).
    pub fn touch(&mut self, now: Instant) {
        self.last_demand = Some(now);
    }

    /// No live lease and no refusal pending: the key is cold on this shard.
    pub fn is_cold(&self, now: Instant) -> bool {
        self.held(now) == 0 && self.not_before.is_none_or(|t| t <= now)
    }

    pub fn add(&mut self, g: Grant, now: Instant) {
        self.drop_spent(now);
        self.not_before = g.next_at;
        if g.left.is_some() {
            self.last_left = g.left;
        }
        if g.tokens > 0 && g.valid_until > now {
            if self.held.len() >= MAX_HELD {
                self.held.pop_front();
            }
            self.held.push_back(Lease {
                remaining: g.tokens,
                next_usable: g.first_usable,
                step: g.step,
                valid_until: g.valid_until,
            });
        }
    }

    /// Drops every lease (the key's rate changed, or its window ended).
    pub fn clear(&mut self) {
        self.held.clear();
        self.not_before = None;
    }

    /// Tokens spendable at `now`.
    pub fn usable(&self, now: Instant) -> u32 {
        self.held.iter().map(|l| l.usable(now)).fold(0u32, u32::saturating_add)
    }

    /// Tokens held and not expired at `now`, spendable now or later.
    pub fn held(&self, now: Instant) -> u32 {
        self.held.iter().filter(|l| now < l.valid_until).map(|l| l.remaining).fold(0u32, u32::saturating_add)
    }

    /// Whether the refill task should ask for a lease now.
    pub fn wants_refill(&self, now: Instant, low_water: u32, warm: Duration) -> bool {
        let warm = self.last_demand.is_some_and(|t| now.saturating_duration_since(t) < warm);
        let waiting = self.not_before.is_some_and(|t| t > now);
        // Count only live leases: expired ones left over from an idle spell must not use up
        // the MAX_HELD places and stop refills for good.
        let live = self.held.iter().filter(|l| l.remaining > 0 && now < l.valid_until).count();
        warm && !waiting && live < MAX_HELD && self.held(now) < low_water.max(1)
    }

    pub fn last_left(&self) -> Option<u64> {
        self.last_left
    }

    fn drop_spent(&mut self, now: Instant) {
        self.held.retain(|l| l.remaining > 0 && now < l.valid_until);
    }
}

/// Tokens to ask for at `rate` per second split over `shards_total` shards for `lease`.
pub fn lease_size(rate: f64, lease: Duration, shards_total: u32) -> u32 {
    let n = (rate * lease.as_secs_f64() / f64::from(shards_total.max(1))).ceil();
    if n.is_nan() || n < 1.0 {
        1
    } else {
        (n.min(f64::from(MAX_LEASE))) as u32
    }
}

/// Units of a window to ask for: a quarter of what is left per shard, capped by `lease_size`.
pub fn window_lease_size(left: Option<u64>, cap: u32, shards_total: u32) -> u32 {
    match left {
        None => 1,
        Some(left) => {
            let share = left.div_ceil(4 * u64::from(shards_total.max(1)));
            share.clamp(1, u64::from(cap.max(1))) as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(now: Instant, tokens: u32, first_ms: u64, step_ms: u64) -> Grant {
        Grant {
            tokens,
            first_usable: now + Duration::from_millis(first_ms),
            step: Duration::from_millis(step_ms),
            valid_until: now + Duration::from_secs(10),
            next_at: None,
            left: None,
        }
    }

    #[test]
    fn slots_are_spent_in_time() {
        let t0 = Instant::now();
        let mut l = Leases::default();
        l.add(grant(t0, 3, 0, 100), t0);
        let wait = Duration::from_secs(1);
        assert!(l.probe(1, t0, wait).is_ok());
        l.spend(1, t0);
        assert_eq!(l.probe(1, t0, wait), Err(Duration::from_millis(100)));
        let t1 = t0 + Duration::from_millis(250);
        assert!(l.probe(2, t1, wait).is_ok());
        l.spend(2, t1);
        assert_eq!(l.held(t1), 0);
        assert_eq!(l.probe(1, t1, wait), Err(wait));
    }

    #[test]
    fn refill_below_low_water_while_warm() {
        let t0 = Instant::now();
        let warm = Duration::from_secs(30);
        let mut l = Leases::default();
        assert!(!l.wants_refill(t0, 5, warm), "cold keys take no lease");
        l.touch(t0);
        assert!(l.wants_refill(t0, 5, warm));
        l.add(grant(t0, 10, 0, 0), t0);
        assert!(!l.wants_refill(t0, 5, warm));
        l.spend(6, t0);
        assert!(l.wants_refill(t0, 5, warm));
        assert!(!l.wants_refill(t0 + warm, 5, warm));
    }

    #[test]
    fn sizes() {
        let lease = Duration::from_millis(100);
        assert_eq!(lease_size(1.0, lease, 4), 1);
        assert_eq!(lease_size(10_000.0, lease, 4), 250);
        assert_eq!(window_lease_size(Some(3), 100, 4), 1);
        assert_eq!(window_lease_size(Some(1_000_000), 1000, 4), 1000);
        assert_eq!(window_lease_size(None, 1000, 4), 1);
    }
}
