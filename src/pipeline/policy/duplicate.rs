//! CP2: the same text to the same number within `[policy] duplicate_window_s` is refused.
//!
//! With Redis, one `SET key 1 NX EX window` per message (see [`super::redis`]) decides for
//! every node. Without Redis (or while a Redis call fails) this shard's own memory decides:
//! a duplicate that reaches another shard or node passes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// FNV-1a, 64 bits: stable across processes and releases (unlike `DefaultHasher`), so every
/// node derives the same Redis key from the same text.
pub fn fingerprint(digits: &str, data_coding: u8, text: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in digits.bytes().chain([0, data_coding]).chain(text.iter().copied()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One shard's recent (number, text) fingerprints and when each stops counting.
pub struct LocalSeen {
    window: Duration,
    until: HashMap<u64, Instant>,
    /// Expired entries are swept when the map reaches this many (then twice what is left, at
    /// least 1024): memory stays proportional to messages within one window.
    sweep_at: usize,
}

impl LocalSeen {
    pub fn new(window: Duration) -> Self {
        LocalSeen { window, until: HashMap::new(), sweep_at: 1024 }
    }

    /// Forgets `key`: the message it marked was not sent.
    pub fn forget(&mut self, key: u64) {
        self.until.remove(&key);
    }

    /// Records `key` at `now`; `false` if it was seen within the window (a duplicate).
    pub fn first(&mut self, key: u64, now: Instant) -> bool {
        if self.until.len() >= self.sweep_at {
            self.until.retain(|_, until| *until > now);
            self.sweep_at = (self.until.len() * 2).max(1024);
        }
        match self.until.get_mut(&key) {
            Some(until) if *until > now => false,
            Some(until) => {
                *until = now + self.window;
                true
            }
            None => {
                self.until.insert(key, now + self.window);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_with_injected_time() {
        let t0 = Instant::now();
        let mut seen = LocalSeen::new(Duration::from_secs(60));
        let k = fingerprint("4915112345678", 0, b"hello");
        assert_ne!(k, fingerprint("4915112345679", 0, b"hello"));
        assert_ne!(k, fingerprint("4915112345678", 0, b"hellp"));
        assert!(seen.first(k, t0));
        assert!(!seen.first(k, t0 + Duration::from_secs(59)));
        assert!(seen.first(k, t0 + Duration::from_secs(60)));
        assert!(!seen.first(k, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn sweeps_expired() {
        let t0 = Instant::now();
        let mut seen = LocalSeen::new(Duration::from_secs(1));
        for k in 0..5000 {
            assert!(seen.first(k, t0 + Duration::from_millis(k)));
        }
        assert!(seen.until.len() < 5000);
        assert!(!seen.first(4999, t0 + Duration::from_millis(4999)));
    }
}
