//! Links and where their sessions live. Built once at start-up and shared by every shard
//! (read-only but for the per-session `bound` flags, which only the owning shard writes).

use super::session::SessionConfig;
use crate::ids::LinkId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One session of a link: the shard that owns it and whether it is bound now.
#[derive(Debug)]
pub struct SessionSlot {
    pub shard: usize,
    pub config: SessionConfig,
    pub bound: Arc<AtomicBool>,
}

impl SessionSlot {
    pub fn is_bound(&self) -> bool {
        self.bound.load(Ordering::Acquire)
    }
}

/// Every configured link with its session slots.
#[derive(Debug, Default)]
pub struct LinkTable {
    links: HashMap<LinkId, Vec<SessionSlot>>,
}

/// The shard that owns session `index` of `link`: one pure function for everyone who needs
/// to know (submit hand-off, receipts). A link's sessions start at a shard picked by a hash of
/// its name, so links with one session each spread over the shards.
pub fn owner_shard(link: &LinkId, index: usize, nr_shards: usize) -> usize {
    // FNV-1a: stable across runs and builds, unlike std's randomised hasher.
    let h = link
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    ((h as usize).wrapping_add(index)) % nr_shards.max(1)
}

impl LinkTable {
    /// `sessions`: each link's session configs, index order.
    pub fn new(
        sessions: impl IntoIterator<Item = (LinkId, Vec<SessionConfig>)>,
        nr_shards: usize,
    ) -> Self {
        let links = sessions
            .into_iter()
            .map(|(link, configs)| {
                let slots = configs
                    .into_iter()
                    .enumerate()
                    .map(|(i, config)| SessionSlot {
                        shard: owner_shard(&link, i, nr_shards),
                        config,
                        bound: Arc::new(AtomicBool::new(false)),
                    })
                    .collect();
                (link, slots)
            })
            .collect();
        LinkTable { links }
    }

    pub fn slots(&self, link: &LinkId) -> Option<&[SessionSlot]> {
        self.links.get(link).map(Vec::as_slice)
    }

    pub fn contains(&self, link: &LinkId) -> bool {
        self.links.contains_key(link)
    }

    /// Every (link, index, slot) owned by `shard`.
    pub fn owned_by(&self, shard: usize) -> impl Iterator<Item = (&LinkId, usize, &SessionSlot)> {
        self.links
            .iter()
            .flat_map(|(link, slots)| slots.iter().enumerate().map(move |(i, s)| (link, i, s)))
            .filter(move |(_, _, s)| s.shard == shard)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&LinkId, &[SessionSlot])> {
        self.links.iter().map(|(l, s)| (l, s.as_slice()))
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
