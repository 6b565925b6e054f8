//! L1: shard-local GCRA (generic cell rate algorithm), one cell per client and per route target.
//!
//! A cell is one number, its theoretical arrival time (TAT). With emission interval
//! `T = 1 / rate` and capacity `C = max(burst, 1)`, a request of cost `n` at `now` conforms when
//! `max(TAT, now) + min(n, C)·T ≤ now + C·T`; it then moves TAT to `max(TAT, now) + n·T`.
//! Starting idle, at most `C + rate·t` units conform in any window of length `t`, which is the
//! `rate × t + burst` bound of DESIGN.md. A cost above `C` (a long multi-part message on a link
//! without burst) conforms once the cell is idle and leaves a debt, so the long-run rate stays
//! exact instead of refusing that message forever.
//!
//! Per-shard share: L1 enforces a key's *whole* rate on each shard, not `rate / nr_shards`.
//! SO_REUSEPORT spreads connections unevenly (FACTS.md saw 21/44 of 64) and nothing
//! rebalances, so a static split would refuse traffic the link could carry. L1 is the cheap
//! guard against one shard's flood; the global split is L2's job (leases follow demand).
//!
//! Decisions are two-phase ([`Gcra::probe`] then [`Gcra::commit`]) so that the limiter can
//! refuse on a later layer without charging the earlier ones. No allocation per decision: a
//! table is a `Vec` indexed by small ids handed out at start.

use std::time::{Duration, Instant};

/// A rate as the GCRA sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Sustained units per second (segments for a link or pool, messages for a client); > 0.
    pub per_second: f64,
    /// Units allowed at once above the sustained rate; the capacity is `max(burst, 1)`.
    pub burst: u32,
}

impl Rate {
    pub fn new(per_second: f64, burst: u32) -> Self {
        Rate { per_second, burst }
    }

    /// `T`, rounded up to the nanosecond so that rounding never admits more than the rate.
    pub fn interval(&self) -> Duration {
        let ns = (1e9 / self.per_second.max(1e-9)).ceil();
        Duration::from_nanos(if ns >= u64::MAX as f64 { u64::MAX } else { ns as u64 })
    }

    pub fn capacity(&self) -> u32 {
        self.burst.max(1)
    }
}

/// One GCRA cell. `tat` is nanoseconds since the owning table's origin.
#[derive(Clone, Debug)]
pub struct Gcra {
    interval_ns: u64,
    capacity: u64,
    tat: u64,
}

/// A conforming decision not yet applied: the TAT to store on commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conforming(u64);

impl Gcra {
    pub fn new(rate: Rate) -> Self {
        Gcra {
            interval_ns: rate.interval().as_nanos().min(u128::from(u64::MAX)) as u64,
            capacity: u64::from(rate.capacity()),
            tat: 0,
        }
    }

    /// Changes the rate; the debt or credit already in TAT is kept.
    pub fn set_rate(&mut self, rate: Rate) {
        let tat = self.tat;
        *self = Gcra::new(rate);
        self.tat = tat;
    }

    /// `now_ns`: nanoseconds since the table's origin. `Err` carries the delay until conforming.
    pub fn probe(&self, cost: u32, now_ns: u64) -> Result<Conforming, Duration> {
        let base = self.tat.max(now_ns);
        let checked = u64::from(cost).min(self.capacity);
        let need = base.saturating_add(checked.saturating_mul(self.interval_ns));
        let allow = now_ns.saturating_add(self.capacity.saturating_mul(self.interval_ns));
        if need <= allow {
            Ok(Conforming(base.saturating_add(u64::from(cost).saturating_mul(self.interval_ns))))
        } else {
            Err(Duration::from_nanos(need - allow))
        }
    }

    pub fn commit(&mut self, c: Conforming) {
        self.tat = c.0;
    }

    /// Probe and commit in one step.
    pub fn check(&mut self, cost: u32, now_ns: u64) -> Result<(), Duration> {
        let c = self.probe(cost, now_ns)?;
        self.commit(c);
        Ok(())
    }
}

/// A shard's GCRA cells, indexed by small ids. The origin turns `Instant`s into `u64` ns.
#[derive(Debug)]
pub struct GcraTable {
    origin: Instant,
    cells: Vec<Gcra>,
}

impl GcraTable {
    pub fn new(origin: Instant) -> Self {
        GcraTable { origin, cells: Vec::new() }
    }

    /// Adds a cell and returns its id.
    pub fn add(&mut self, rate: Rate) -> usize {
        self.cells.push(Gcra::new(rate));
        self.cells.len() - 1
    }

    pub fn set_rate(&mut self, id: usize, rate: Rate) {
        if let Some(c) = self.cells.get_mut(id) {
            c.set_rate(rate);
        }
    }

    pub fn ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_nanos().min(u128::from(u64::MAX)) as u64
    }

    /// An unknown id conforms: ids come from [`GcraTable::add`], never from a peer.
    pub fn probe(&self, id: usize, cost: u32, now: Instant) -> Result<Conforming, Duration> {
        match self.cells.get(id) {
            Some(c) => c.probe(cost, self.ns(now)),
            None => Ok(Conforming(0)),
        }
    }

    pub fn commit(&mut self, id: usize, c: Conforming) {
        if let Some(cell) = self.cells.get_mut(id) {
            cell.commit(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offers `offered_per_s` evenly for `secs` seconds on a fake clock; returns admissions.
    fn run(rate: Rate, offered_per_s: u64, secs: u64) -> u64 {
        let mut g = Gcra::new(rate);
        let step = 1_000_000_000 / offered_per_s;
        let mut admitted = 0;
        let mut t = 0;
        while t < secs * 1_000_000_000 {
            if g.check(1, t).is_ok() {
                admitted += 1;
            }
            t += step;
        }
        admitted
    }

    #[test]
    fn one_per_second_is_exact() {
        // 10 s at 10× the rate, no burst: exactly one per second.
        assert_eq!(run(Rate::new(1.0, 0), 10, 10), 10);
        // With a burst of 5: the burst at once, then the rate.
        assert_eq!(run(Rate::new(1.0, 5), 100, 10), 5 + 9);
    }

    #[test]
    fn ten_thousand_per_second_is_exact() {
        // Offered at twice the rate for 10 s.
        assert_eq!(run(Rate::new(10_000.0, 0), 20_000, 10), 100_000);
        let got = run(Rate::new(10_000.0, 100), 20_000, 10);
        assert!((100_000..=100_000 + 100).contains(&got), "admitted {got} outside [rate·t, rate·t + burst]");
    }

    #[test]
    fn refusal_says_when_to_retry() {
        let mut g = Gcra::new(Rate::new(2.0, 0));
        assert!(g.check(1, 0).is_ok());
        let wait = g.check(1, 100_000_000).unwrap_err();
        assert_eq!(wait, Duration::from_millis(400));
        assert!(g.check(1, 500_000_000).is_ok());
    }

    #[test]
    fn cost_above_capacity_passes_once_idle_and_leaves_a_debt() {
        let mut g = Gcra::new(Rate::new(1.0, 0));
        assert!(g.check(3, 0).is_ok());
        let wait = g.check(1, 1_000_000_000).unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        assert!(g.check(1, 3_000_000_000).is_ok());
    }

    #[test]
    fn probe_does_not_charge() {
        let mut t = GcraTable::new(Instant::now());
        let id = t.add(Rate::new(1.0, 0));
        let now = Instant::now();
        assert!(t.probe(id, 1, now).is_ok());
        assert!(t.probe(id, 1, now).is_ok());
        let c = t.probe(id, 1, now).unwrap();
        t.commit(id, c);
        assert!(t.probe(id, 1, now).is_err());
    }
}
