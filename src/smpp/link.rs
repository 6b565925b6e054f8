//! Links and where their sessions live. Built once at start-up and shared by every shard
//! (read-only but for each session's [`SessionHealth`], which only the owning shard writes).

use super::concat::LongMessages;
use super::receipt::IdFormat;
use super::session::SessionConfig;
use crate::ids::LinkId;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// An error within this many ms makes a link `degraded`.
pub const DEGRADED_FOR_MS: u64 = 30_000;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One session's state as every shard sees it. Written by the owning shard only.
#[derive(Debug, Default)]
pub struct SessionHealth {
    bound: AtomicBool,
    /// Unix ms of the last bind failure, lost connection, missed enquire_link_resp, response
    /// timeout or throttle; 0 = never.
    last_error_ms: AtomicU64,
    errors: AtomicU64,
    throttles: AtomicU64,
    /// submit_sm written and not yet answered.
    in_flight: AtomicU64,
}

impl SessionHealth {
    pub fn is_bound(&self) -> bool {
        self.bound.load(Ordering::Acquire)
    }

    pub fn set_bound(&self, bound: bool) {
        self.bound.store(bound, Ordering::Release);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.last_error_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn throttled(&self) {
        self.throttles.fetch_add(1, Ordering::Relaxed);
        self.last_error_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn sent(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn answered(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    pub fn last_error_ms(&self) -> u64 {
        self.last_error_ms.load(Ordering::Relaxed)
    }
}

/// One session of a link: the shard that owns it, its config, its health.
#[derive(Debug)]
pub struct SessionSlot {
    pub shard: usize,
    pub config: SessionConfig,
    pub health: Arc<SessionHealth>,
}

impl SessionSlot {
    pub fn is_bound(&self) -> bool {
        self.health.is_bound()
    }

    /// Bound and allowed to submit (not a receiver).
    pub fn can_submit(&self) -> bool {
        self.config.mode.can_submit() && self.health.is_bound()
    }

    /// Can submit and has a free window slot.
    pub fn has_capacity(&self) -> bool {
        self.can_submit() && self.health.in_flight() < self.config.window as u64
    }
}

/// Per-link behaviour that is not about one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkSettings {
    pub long_messages: LongMessages,
    pub receipt_id_format: IdFormat,
}

/// A link's state, derived from its sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Every session bound and no error for [`DEGRADED_FOR_MS`].
    Bound,
    /// Can submit, but a session is unbound or an error happened recently.
    Degraded,
    /// No session can submit: routing skips it, it counts zero in its pool's rate.
    Down,
}

#[derive(Debug)]
pub struct LinkEntry {
    pub settings: LinkSettings,
    pub slots: Vec<SessionSlot>,
}

impl LinkEntry {
    /// Some session can take a submit now: bound, not a receiver, window not full.
    pub fn has_capacity(&self) -> bool {
        self.slots.iter().any(SessionSlot::has_capacity)
    }

    pub fn state(&self, now_ms: u64) -> LinkState {
        let submitters = self.slots.iter().filter(|s| s.can_submit()).count();
        if submitters == 0 {
            return LinkState::Down;
        }
        let all_bound = self.slots.iter().all(SessionSlot::is_bound);
        let recent_error = self.slots.iter().any(|s| {
            s.health.last_error_ms() != 0 && now_ms.saturating_sub(s.health.last_error_ms()) < DEGRADED_FOR_MS
        });
        if all_bound && !recent_error {
            LinkState::Bound
        } else {
            LinkState::Degraded
        }
    }
}

/// Every configured link with its session slots.
#[derive(Debug, Default)]
pub struct LinkTable {
    links: HashMap<LinkId, LinkEntry>,
}

/// The shard that owns session `index` of `link`: one pure function for everyone who needs
/// to know (submit hand-off, receipts). A link's sessions start at a shard picked by a hash of
/// its name, so links with one session each spread over the shards.
pub fn owner_shard(link: &LinkId, index: usize, nr_shards: usize) -> usize {
    // FNV-1a: stable across runs and builds, unlike std's randomised hasher.
    let h =
        link.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    ((h as usize).wrapping_add(index)) % nr_shards.max(1)
}

impl LinkTable {
    /// `links`: each link's settings and session configs. A transmitter/receiver pair shares
    /// its index and so its shard. With `reuse` (the table a reload replaces), a slot whose
    /// session binds the same way as the old slot at the same position keeps the old health,
    /// which is how the running session stays attached to it.
    pub fn new(
        links: impl IntoIterator<Item = (LinkId, LinkSettings, Vec<SessionConfig>)>,
        nr_shards: usize,
        reuse: Option<&LinkTable>,
    ) -> Self {
        let links = links
            .into_iter()
            .map(|(link, settings, configs)| {
                let old = reuse.and_then(|t| t.links.get(&link));
                let slots = configs
                    .into_iter()
                    .enumerate()
                    .map(|(i, config)| {
                        let kept = old
                            .and_then(|e| e.slots.get(i))
                            .filter(|s| s.config.same_bind(&config))
                            .map(|s| s.health.clone());
                        SessionSlot {
                            shard: owner_shard(&link, config.index, nr_shards),
                            config,
                            health: kept.unwrap_or_default(),
                        }
                    })
                    .collect();
                (link, LinkEntry { settings, slots })
            })
            .collect();
        LinkTable { links }
    }

    /// Whether slot `i` of `link` here is the same running session as in `other`.
    pub fn same_session(&self, other: &LinkTable, link: &LinkId, i: usize) -> bool {
        let slot = |t: &LinkTable| t.links.get(link).and_then(|e| e.slots.get(i)).map(|s| s.health.clone());
        matches!((slot(self), slot(other)), (Some(a), Some(b)) if Arc::ptr_eq(&a, &b))
    }

    pub fn get(&self, link: &LinkId) -> Option<&LinkEntry> {
        self.links.get(link)
    }

    pub fn slots(&self, link: &LinkId) -> Option<&[SessionSlot]> {
        self.links.get(link).map(|e| e.slots.as_slice())
    }

    pub fn contains(&self, link: &LinkId) -> bool {
        self.links.contains_key(link)
    }

    /// Every (link, slot number, slot) owned by `shard`.
    pub fn owned_by(&self, shard: usize) -> impl Iterator<Item = (&LinkId, usize, &SessionSlot)> {
        self.links
            .iter()
            .flat_map(|(link, e)| e.slots.iter().enumerate().map(move |(i, s)| (link, i, s)))
            .filter(move |(_, _, s)| s.shard == shard)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&LinkId, &LinkEntry)> {
        self.links.iter()
    }

    pub fn now_ms() -> u64 {
        now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_of_a_link_spread_over_shards() {
        let link = LinkId::new("100");
        let shards: Vec<_> = (0..4).map(|i| owner_shard(&link, i, 4)).collect();
        let mut sorted = shards.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        assert_eq!(owner_shard(&link, 0, 1), 0);
        assert_eq!(owner_shard(&link, 2, 4), owner_shard(&link, 2, 4), "stable");
    }
}
