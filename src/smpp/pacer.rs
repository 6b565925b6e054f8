//! A session's send rate after the SMSC said "slow down" (ESME_RTHROTTLED, ESME_RMSGQFUL):
//! additive increase, multiplicative decrease (AIMD), as TCP does with its window.
//!
//! Until the first throttle the pacer allows the link's full rate (the rate limiters upstream
//! already keep traffic within `esme_rate`). A throttle halves the allowed rate, measured
//! from what the session actually sent in the last second, and pauses sending for
//! `pause`; every second without a throttle adds `max_rate / 20` back, up to `max_rate`.
//! Time is passed in, so tests drive it.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Pacer {
    /// The link's `esme_rate`, messages per second: the ceiling.
    max_rate: f64,
    /// Allowed now, messages per second.
    rate: f64,
    /// Token bucket at `rate`, holding up to `burst` tokens.
    tokens: f64,
    last_refill: Instant,
    /// No sends before this instant (after a throttle).
    paused_until: Instant,
    pause: Duration,
    /// Sends in the current and the previous one-second window, to measure the real rate.
    window_start: Instant,
    sent_this_window: u32,
    sent_last_window: u32,
    last_increase: Instant,
    throttles: u64,
}

impl Pacer {
    pub fn new(max_rate: u32, pause: Duration, now: Instant) -> Self {
        let max_rate = f64::from(max_rate.max(1));
        Pacer {
            max_rate,
            rate: max_rate,
            tokens: (max_rate / 10.0).max(1.0),
            last_refill: now,
            paused_until: now,
            pause,
            window_start: now,
            sent_this_window: 0,
            sent_last_window: 0,
            last_increase: now,
            throttles: 0,
        }
    }

    fn burst(&self) -> f64 {
        (self.rate / 10.0).max(1.0)
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= Duration::from_secs(2) {
            self.sent_last_window = 0;
            self.sent_this_window = 0;
            self.window_start = now;
        } else if elapsed >= Duration::from_secs(1) {
            self.sent_last_window = self.sent_this_window;
            self.sent_this_window = 0;
            self.window_start += Duration::from_secs(1);
        }
        let quiet = now.saturating_duration_since(self.last_increase);
        if quiet >= Duration::from_secs(1) && self.rate < self.max_rate {
            let steps = quiet.as_secs_f64().floor();
            self.rate = (self.rate + steps * self.max_rate / 20.0).min(self.max_rate);
            self.last_increase = now;
        }
        let dt = now.saturating_duration_since(self.last_refill).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst());
        self.last_refill = now;
    }

    /// How long to wait before the next send; `Duration::ZERO` means send now (and counts it).
    pub fn admit(&mut self, now: Instant) -> Duration {
        if now < self.paused_until {
            return self.paused_until - now;
        }
        self.roll(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.sent_this_window += 1;
            return Duration::ZERO;
        }
        // At least 1 µs: a wait that rounds to zero would read as "send now".
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate).max(Duration::from_micros(1))
    }

    /// The SMSC throttled a submit: halve the rate and pause.
    pub fn throttled(&mut self, now: Instant) {
        self.roll(now);
        let measured = f64::from(self.sent_last_window.max(self.sent_this_window));
        self.rate = (self.rate.min(measured.max(1.0)) / 2.0).max(1.0);
        self.tokens = 0.0;
        self.paused_until = now + self.pause;
        self.last_increase = now + self.pause;
        self.throttles += 1;
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn throttles(&self) -> u64 {
        self.throttles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sends_in(p: &mut Pacer, start: Instant, secs: u64) -> u32 {
        let mut n = 0;
        let mut t = start;
        let end = start + Duration::from_secs(secs);
        while t < end {
            if p.admit(t).is_zero() {
                n += 1;
            }
            t += Duration::from_micros(100);
        }
        n
    }

    #[test]
    fn unthrottled_it_allows_the_full_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, Duration::from_millis(100), t0);
        let n = sends_in(&mut p, t0, 2);
        assert!((1990..=2110).contains(&n), "{n}");
    }

    #[test]
    fn a_throttle_halves_the_measured_rate_and_pauses() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, Duration::from_millis(500), t0);
        sends_in(&mut p, t0, 2);
        let t1 = t0 + Duration::from_secs(2);
        p.throttled(t1);
        assert!((450.0..=520.0).contains(&p.rate()), "{}", p.rate());
        assert_eq!(p.admit(t1 + Duration::from_millis(100)), Duration::from_millis(400));
        assert_eq!(p.throttles(), 1);
    }

    #[test]
    fn it_recovers_additively() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, Duration::ZERO, t0);
        sends_in(&mut p, t0, 1);
        p.throttled(t0 + Duration::from_secs(1));
        let low = p.rate();
        p.admit(t0 + Duration::from_secs(3));
        assert!((p.rate() - (low + 100.0)).abs() < 1.0, "two quiet seconds add 2 × 50: {}", p.rate());
        p.admit(t0 + Duration::from_secs(60));
        assert_eq!(p.rate(), 1000.0);
    }

    #[test]
    fn the_rate_never_drops_below_one() {
        let t0 = Instant::now();
        let mut p = Pacer::new(2, Duration::ZERO, t0);
        for i in 0..10 {
            p.throttled(t0 + Duration::from_millis(i));
        }
        assert_eq!(p.rate(), 1.0);
    }
}
