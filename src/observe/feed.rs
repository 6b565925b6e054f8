//! The live feed of refusals behind the dashboard's Server-Sent Events
//! (`GET /api/v1/dashboard/refusals`).
//!
//! Each shard keeps its last [`KEEP`] refusals in a thread-local ring (a push, no lock, only
//! on the refusal path) and publishes a copy with its metrics snapshot every 250 ms
//! (`metrics::spawn_publisher`). A stream reads every shard's published ring and sends what
//! is newer than it has seen, so a refusal on any shard reaches a stream on any other within
//! half a second, and a slow reader never holds a shard up.

use super::metrics::{Reason, RejectLabel};
use crate::ids::ClientId;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Refusals kept per shard for readers that poll every 250 ms: more than a shard refuses in
/// that time at a sustained 1,000 refusals/s; a reader that falls behind skips ahead.
pub const KEEP: usize = 256;

/// One refusal as the dashboard shows it. No phone number, no text.
#[derive(Clone, Debug, Serialize)]
pub struct FeedItem {
    #[serde(skip)]
    pub seq: u64,
    pub shard: usize,
    pub at_ms: u64,
    /// None for a request without a valid API key.
    pub client: Option<ClientId>,
    pub layer: &'static str,
    #[serde(serialize_with = "reason_text")]
    pub reason: Reason,
}

fn reason_text<S: serde::Serializer>(r: &Reason, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
}

#[derive(Default)]
struct Ring {
    next: u64,
    items: VecDeque<FeedItem>,
    dirty: bool,
}

thread_local! {
    static RING: RefCell<Ring> = RefCell::new(Ring::default());
}

/// Every shard's published ring. The lock is held to swap or clone an `Arc`, 4 times a second
/// per shard and once per reader poll, never on the request path.
#[allow(clippy::disallowed_types)]
static PUBLISHED: Mutex<Vec<(usize, Arc<Vec<FeedItem>>)>> = Mutex::new(Vec::new());

/// A refusal on this shard.
pub fn record(shard: usize, client: Option<ClientId>, label: RejectLabel, at_ms: u64) {
    RING.with(|r| {
        let mut r = r.borrow_mut();
        let seq = r.next;
        r.next += 1;
        if r.items.len() == KEEP {
            r.items.pop_front();
        }
        r.items.push_back(FeedItem { seq, shard, at_ms, client, layer: label.layer, reason: label.reason });
        r.dirty = true;
    });
}

/// Hands readers a copy of this shard's ring if it changed (called by the metrics publisher).
pub fn publish(shard: usize) {
    let Some(items) = RING.with(|r| {
        let mut r = r.borrow_mut();
        std::mem::take(&mut r.dirty).then(|| r.items.iter().cloned().collect::<Vec<_>>())
    }) else {
        return;
    };
    let mut p = PUBLISHED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let items = Arc::new(items);
    match p.iter_mut().find(|(s, _)| *s == shard) {
        Some(slot) => slot.1 = items,
        None => p.push((shard, items)),
    }
}

/// A reader's position: the next sequence number it wants from each shard.
#[derive(Debug, Default)]
pub struct Cursor(Vec<(usize, u64)>);

/// Refusals newer than `cursor` that `visible` lets through, oldest first per shard; moves
/// the cursor past everything read.
pub fn since(cursor: &mut Cursor, visible: impl Fn(&FeedItem) -> bool) -> Vec<FeedItem> {
    let published: Vec<(usize, Arc<Vec<FeedItem>>)> = match PUBLISHED.lock() {
        Ok(p) => p.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let mut out = Vec::new();
    for (shard, items) in published {
        let from = match cursor.0.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, next)) => next,
            None => {
                cursor.0.push((shard, 0));
                &mut cursor.0.last_mut().expect("just pushed").1
            }
        };
        for item in items.iter().filter(|i| i.seq >= *from) {
            if visible(item) {
                out.push(item.clone());
            }
        }
        if let Some(last) = items.last() {
            *from = (*from).max(last.seq + 1);
        }
    }
    out.sort_by_key(|i| i.at_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_each_refusal_once() {
        let label = |r| RejectLabel { layer: "route", reason: Reason::Named(r) };
        record(7, Some(ClientId::new("acme")), label("no_route"), 1);
        record(7, None, label("unknown_link"), 2);
        publish(7);
        let mut cursor = Cursor::default();
        let acme = |i: &FeedItem| i.shard == 7 && i.client.as_ref().is_some_and(|c| c.as_str() == "acme");
        let seen = since(&mut cursor, acme);
        assert_eq!(seen.len(), 1);
        assert_eq!(serde_json::to_value(&seen[0]).expect("json")["reason"], "no_route");
        assert!(since(&mut cursor, |i| i.shard == 7).is_empty(), "read once");
        record(7, Some(ClientId::new("acme")), label("no_route"), 3);
        publish(7);
        assert_eq!(since(&mut cursor, acme).len(), 1);
    }
}
