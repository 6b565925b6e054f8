//! Shard-local counters and latency histograms, merged when read.
//!
//! Recording touches only the recording shard's own [`ShardMetrics`] (a thread-local: a glommio
//! shard is one thread, so thread-local is shard-local): no atomic, no lock, no allocation once
//! a label has been seen. Reading merges every shard's latest [`ShardSnapshot`].
//!
//! ```text
//! hot path   events::* → SHARD (RefCell<ShardMetrics>, this shard only)
//! every 250 ms, per shard (off the request path)   SHARD ──clone──▶ PUBLISHED[shard]
//! GET /metrics, /api/v1/dashboard/*   PUBLISHED[other shards] + SHARD (live) → Merged
//! ```
//!
//! Why publish rather than ask every shard over the mesh at read time: a scrape never waits on
//! a busy shard (the moment an operator looks is often the moment shards are saturated), the
//! bounded mesh keeps its room for submits, and the cost is fixed (four clones a second per
//! shard, skipped while nothing changed) whatever the traffic. The price is staleness: another
//! shard's numbers are at most [`PUBLISH_EVERY`] old; the reading shard's own are live.

use super::events::LinkWatch;
use crate::ids::LinkId;
use crate::notify::mo::InboundStats;
use crate::notify::webhook::WebhookStats;
use crate::pipeline::policy::blacklist::BlacklistStats;
use crate::pipeline::route::Live;
use crate::pipeline::submit::LocalSessions;
use crate::smpp::link::LinkTable;
use crate::state::aerospike::AerospikeStats;
use crate::state::embedded::EmbeddedStats;
use crate::state::writer::StateHandle;
use hdrhistogram::Histogram;
use shards::Shutdown;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a shard hands its snapshot to readers.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// Per-second buckets kept: the current second and the 60 before it (the 60 s rate).
pub const RING_SECONDS: usize = 61;
/// Latency histograms cover 1 µs to 60 s (longer values count as 60 s) with 3 significant
/// digits: 0.1 % resolution, 136 KiB per histogram.
const HIST_MAX_US: u64 = 60_000_000;
const HIST_SIGFIG: u8 = 3;

// === labels ===

/// What happened to a request or a message, counted in `smsgate_messages_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The API answered with an id and status `submitted` (HTTP 200).
    Accepted,
    /// The API refused it: a gateway layer, or the SMSC's submit_sm_resp error.
    Rejected,
    /// The SMSC never answered; the outcome is unknown (HTTP 504).
    Unknown,
    /// submit_sm answered ESME_ROK (one per part).
    Submitted,
    /// A DELIVRD receipt (one per part).
    Delivered,
    /// A final receipt other than DELIVRD (one per part).
    Failed,
}

impl Outcome {
    pub const COUNT: usize = 6;
    pub const ALL: [Outcome; Outcome::COUNT] = [
        Outcome::Accepted,
        Outcome::Rejected,
        Outcome::Unknown,
        Outcome::Submitted,
        Outcome::Delivered,
        Outcome::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Rejected => "rejected",
            Outcome::Unknown => "unknown",
            Outcome::Submitted => "submitted",
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a refusal happened. Bounded: a fixed name, an SMPP command_status, or a limit's key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Named(&'static str),
    /// The SMSC's submit_sm_resp status.
    Status(u32),
    /// The limit that refused (`link:100`, `client:acme:minute`): one per configured link,
    /// pool and client limit, shared (`Arc`), so a refusal allocates nothing.
    Key(Arc<str>),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Named(s) => f.write_str(s),
            Reason::Status(s) => write!(f, "{}", crate::smpp::pdu::CommandStatus(*s)),
            Reason::Key(k) => f.write_str(k),
        }
    }
}

/// The labels of `smsgate_rejections_total`: the layer (stage) that refused and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RejectLabel {
    pub layer: &'static str,
    pub reason: Reason,
}

/// A small map from a label to a count: a handful of distinct labels per shard, so a linear
/// scan beats hashing on the hot path, and a known label costs no allocation.
#[derive(Clone, Debug)]
pub struct Tally<K>(Vec<(K, u64)>);

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Tally(Vec::new())
    }
}

impl<K: PartialEq + Clone> Tally<K> {
    pub fn add(&mut self, key: &K, n: u64) {
        self.add_where(|k| k == key, || key.clone(), n);
    }

    /// Adds to the key `is` matches, or to a new key made by `make`: a compound key (link,
    /// status) is only built, and its `Arc` only cloned, the first time.
    pub fn add_where(&mut self, is: impl Fn(&K) -> bool, make: impl FnOnce() -> K, n: u64) {
        match self.0.iter_mut().find(|(k, _)| is(k)) {
            Some((_, c)) => *c += n,
            None => self.0.push((make(), n)),
        }
    }

    pub fn get(&self, key: &K) -> u64 {
        self.0.iter().find(|(k, _)| k == key).map_or(0, |(_, c)| *c)
    }

    pub fn merge(&mut self, other: &Tally<K>) {
        for (k, n) in &other.0 {
            self.add(k, *n);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, u64)> {
        self.0.iter().map(|(k, n)| (k, *n))
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

// === one shard's numbers ===

/// Counts of one second (for rates).
#[derive(Clone, Debug, Default)]
pub struct Second {
    /// Seconds since [`epoch`]; a slot whose `second` is not the asked one is stale.
    pub second: u64,
    pub outcomes: [u64; Outcome::COUNT],
    pub rejections: Tally<RejectLabel>,
    /// submit_sm answered (any status), per link.
    pub link_submits: Tally<LinkId>,
    /// Final receipts, per link.
    pub link_receipts: Tally<LinkId>,
}

impl Second {
    fn reset(&mut self, second: u64) {
        self.second = second;
        self.outcomes = [0; Outcome::COUNT];
        self.rejections.clear();
        self.link_submits.clear();
        self.link_receipts.clear();
    }

    fn merge(&mut self, other: &Second) {
        for (a, b) in self.outcomes.iter_mut().zip(other.outcomes) {
            *a += b;
        }
        self.rejections.merge(&other.rejections);
        self.link_submits.merge(&other.link_submits);
        self.link_receipts.merge(&other.link_receipts);
    }

    pub fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes[o.index()]
    }
}

/// The last error a link's session reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastError {
    pub kind: &'static str,
    /// Unix ms.
    pub at_ms: u64,
}

/// Counters since start-up, the per-second ring and the latency histograms of one shard.
#[derive(Clone, Debug)]
pub struct ShardMetrics {
    pub outcomes: [u64; Outcome::COUNT],
    pub rejections: Tally<RejectLabel>,
    /// submit_sm answers by (link, command_status).
    pub command_status: Tally<(LinkId, u32)>,
    /// Final receipts by (link, status name).
    pub receipts: Tally<(LinkId, &'static str)>,
    /// Session errors by (link, kind).
    pub link_errors: Tally<(LinkId, &'static str)>,
    pub last_error: Vec<(LinkId, LastError)>,
    /// Request answer time of stages 3-8, µs.
    pub api_latency: Histogram<u64>,
    /// submit_sm written → submit_sm_resp read, µs.
    pub smsc_latency: Histogram<u64>,
    /// Indexed by `second % RING_SECONDS`.
    pub ring: Vec<Second>,
    /// Something changed since the last publish.
    dirty: bool,
}

fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure would be a bug caught by
    // every test that records.
    Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, HIST_MAX_US)
}

/// The instant second 0 of every ring started; shared by all shards so their seconds line up.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub fn second_of(now: Instant) -> u64 {
    now.saturating_duration_since(epoch()).as_secs()
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            outcomes: [0; Outcome::COUNT],
            rejections: Tally::default(),
            command_status: Tally::default(),
            receipts: Tally::default(),
            link_errors: Tally::default(),
            last_error: Vec::new(),
            api_latency: histogram(),
            smsc_latency: histogram(),
            ring: vec![Second::default(); RING_SECONDS],
            dirty: false,
        }
    }
}

impl ShardMetrics {
    /// The ring slot of `now`, emptied first if it still holds an older second.
    fn second(&mut self, now: Instant) -> &mut Second {
        let s = second_of(now);
        let slot = &mut self.ring[(s % RING_SECONDS as u64) as usize];
        if slot.second != s {
            slot.reset(s);
        }
        slot
    }

    fn count(&mut self, o: Outcome, now: Instant) {
        self.dirty = true;
        self.outcomes[o.index()] += 1;
        self.second(now).outcomes[o.index()] += 1;
    }

    /// One API answer of a submit: its outcome, why it was refused, and (stages 3-8) its time.
    pub fn answer(&mut self, outcome: Outcome, refusal: Option<RejectLabel>, latency: Option<Duration>, now: Instant) {
        self.count(outcome, now);
        if let Some(label) = refusal {
            self.rejections.add(&label, 1);
            self.second(now).rejections.add(&label, 1);
        }
        if let Some(d) = latency {
            self.api_latency.saturating_record(micros(d));
        }
    }

    /// One submit_sm_resp (or generic_nack) read from the SMSC.
    pub fn smsc_answer(&mut self, link: &LinkId, status: u32, latency: Duration, now: Instant) {
        if status == 0 {
            self.count(Outcome::Submitted, now);
        }
        self.dirty = true;
        self.command_status.add_where(|(l, s)| *s == status && l == link, || (link.clone(), status), 1);
        self.second(now).link_submits.add(link, 1);
        self.smsc_latency.saturating_record(micros(latency));
    }

    /// One final receipt; `status` is the record status it maps to (`delivered`, `expired`, ...).
    pub fn receipt(&mut self, link: &LinkId, status: &'static str, now: Instant) {
        self.count(if status == "delivered" { Outcome::Delivered } else { Outcome::Failed }, now);
        self.receipts.add_where(|(l, s)| *s == status && l == link, || (link.clone(), status), 1);
        self.second(now).link_receipts.add(link, 1);
    }

    /// A session error (bind failed, session lost, timeout, throttled...).
    pub fn link_error(&mut self, link: &LinkId, kind: &'static str, at_ms: u64) {
        self.dirty = true;
        self.link_errors.add(&(link.clone(), kind), 1);
        let last = LastError { kind, at_ms };
        match self.last_error.iter_mut().find(|(l, _)| l == link) {
            Some((_, e)) => *e = last,
            None => self.last_error.push((link.clone(), last)),
        }
    }
}

// === this shard ===

thread_local! {
    /// This shard's numbers. Only this thread touches them.
    static SHARD: RefCell<ShardMetrics> = RefCell::new(ShardMetrics::default());
    /// Set by [`spawn_publisher`]: which slot of [`PUBLISHED`] is this thread's.
    static SHARD_ID: Cell<Option<usize>> = const { Cell::new(None) };
}

/// `[metrics] enabled`: when false, nothing is recorded (the endpoints still answer, with
/// zeros). It exists to measure what collection costs; keep it on in production.
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub fn set_enabled(on: bool) {
    ENABLED.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs `f` on this shard's metrics. `f` must not record again (one borrow at a time).
pub fn with<R>(f: impl FnOnce(&mut ShardMetrics) -> R) -> R {
    SHARD.with(|m| f(&mut m.borrow_mut()))
}

/// This thread's shard id, once its publisher started (0 elsewhere: tests, side threads).
pub fn shard_id() -> usize {
    SHARD_ID.with(Cell::get).unwrap_or(0)
}

/// Records a session error with the wall-clock time now.
pub fn link_error_now(link: &LinkId, kind: &'static str) {
    with(|m| m.link_error(link, kind, unix_ms()));
}

// === published snapshots ===

/// One shard's numbers at one moment, plus its sessions' pacing.
#[derive(Clone, Debug)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub metrics: ShardMetrics,
    /// (link, session index, pacer rate in messages per second) of the sessions this shard owns.
    pub pacing: Vec<(LinkId, usize, f64)>,
}

/// The snapshots readers merge, one per shard. The lock is held to swap or clone an `Arc`,
/// never while copying numbers, and never on the request path: a shard takes it 4 times a
/// second, a reader once per scrape.
#[allow(clippy::disallowed_types)]
static PUBLISHED: Mutex<Vec<Arc<ShardSnapshot>>> = Mutex::new(Vec::new());
/// The state writer's queue and counters (the writer is a thread of its own, with atomics).
static STATE: OnceLock<StateHandle> = OnceLock::new();

fn published() -> Vec<Arc<ShardSnapshot>> {
    match PUBLISHED.lock() {
        Ok(p) => p.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn publish(snapshot: ShardSnapshot) {
    let mut p = PUBLISHED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let snapshot = Arc::new(snapshot);
    match p.iter_mut().find(|s| s.shard == snapshot.shard) {
        Some(slot) => *slot = snapshot,
        None => p.push(snapshot),
    }
}

fn pacing(sessions: &LocalSessions) -> Vec<(LinkId, usize, f64)> {
    sessions.borrow().iter().map(|((link, index), s)| (link.clone(), *index, s.pacer_rate())).collect()
}

fn publish_now(shard: usize, sessions: &LocalSessions, force: bool) {
    let metrics = with(|m| {
        let changed = std::mem::take(&mut m.dirty);
        (changed || force).then(|| m.clone())
    });
    super::feed::publish(shard);
    let pacing = pacing(sessions);
    let metrics = match metrics {
        Some(m) => m,
        // Nothing counted since the last publish: keep the counters, refresh the pacing.
        None => match published().into_iter().find(|s| s.shard == shard) {
            Some(prev) if prev.pacing == pacing => return,
            Some(prev) => prev.metrics.clone(),
            None => with(|m| m.clone()),
        },
    };
    publish(ShardSnapshot { shard, metrics, pacing });
}

/// Starts this shard's publisher: a snapshot every [`PUBLISH_EVERY`] until `shutdown`, then a
/// last one. `state` gives the readers the state writer's queue depth and batch counters.
/// Shard 0's publisher also logs link state changes ([`LinkWatch`]), once for the node.
pub fn spawn_publisher(shard: usize, sessions: LocalSessions, live: Rc<Live>, state: StateHandle, shutdown: Shutdown) {
    SHARD_ID.with(|id| id.set(Some(shard)));
    let _first_shard_sets_it = STATE.set(state);
    let mut watch = (shard == 0).then(LinkWatch::default);
    glommio::spawn_local(async move {
        publish_now(shard, &sessions, true);
        while !shutdown.is_fired() {
            futures_lite::future::or(glommio::timer::sleep(PUBLISH_EVERY), shutdown.wait()).await;
            publish_now(shard, &sessions, false);
            if let Some(w) = watch.as_mut().filter(|_| !shutdown.is_fired()) {
                w.check(&live.links(), LinkTable::now_ms());
            }
        }
    })
    .detach();
}

pub fn state() -> Option<&'static StateHandle> {
    STATE.get()
}

/// The webhook sender's counters (its own thread, atomics).
static WEBHOOKS: OnceLock<Arc<WebhookStats>> = OnceLock::new();

/// Set once at start-up by `app.rs`.
pub fn set_webhooks(stats: Arc<WebhookStats>) {
    let _set_once_per_process = WEBHOOKS.set(stats);
}

pub fn webhooks() -> Option<&'static WebhookStats> {
    WEBHOOKS.get().map(|s| &**s)
}

/// The blacklist thread's counters (its own thread, atomics).
static BLACKLIST: OnceLock<Arc<BlacklistStats>> = OnceLock::new();

/// Set once at start-up (`policy::blacklist::start_configured`).
pub fn set_blacklist(stats: Arc<BlacklistStats>) {
    let _set_once_per_process = BLACKLIST.set(stats);
}

pub fn blacklist() -> Option<&'static BlacklistStats> {
    BLACKLIST.get().map(|s| &**s)
}

/// Inbound message (MO) counters, kept by the state writer (atomics).
static INBOUND: OnceLock<Arc<InboundStats>> = OnceLock::new();

/// Set once at start-up by `app.rs`.
pub fn set_inbound(stats: Arc<InboundStats>) {
    let _set_once_per_process = INBOUND.set(stats);
}

pub fn inbound() -> Option<&'static InboundStats> {
    INBOUND.get().map(|s| &**s)
}

/// The embedded backend's counters, when it is the state store.
static EMBEDDED: OnceLock<Arc<EmbeddedStats>> = OnceLock::new();

/// Set once at start-up by `app.rs`.
pub fn set_embedded(stats: Arc<EmbeddedStats>) {
    let _set_once_per_process = EMBEDDED.set(stats);
}

pub fn embedded() -> Option<&'static EmbeddedStats> {
    EMBEDDED.get().map(|s| &**s)
}

/// The Aerospike backend's counters, when it is the state store.
static AEROSPIKE: OnceLock<Arc<AerospikeStats>> = OnceLock::new();

/// Set once at start-up by `app.rs`.
pub fn set_aerospike(stats: Arc<AerospikeStats>) {
    let _set_once_per_process = AEROSPIKE.set(stats);
}

pub fn aerospike() -> Option<&'static AerospikeStats> {
    AEROSPIKE.get().map(|s| &**s)
}

// === merged ===

/// Every shard's numbers added up, as a reader sees them.
#[derive(Debug)]
pub struct Merged {
    pub totals: ShardMetrics,
    /// Per-second counts by second.
    pub seconds: BTreeMap<u64, Second>,
    pub pacing: Vec<(LinkId, usize, f64)>,
    /// The second this was read in.
    pub now: u64,
}

impl Merged {
    pub fn new(now: Instant) -> Self {
        Merged { totals: ShardMetrics::default(), seconds: BTreeMap::new(), pacing: Vec::new(), now: second_of(now) }
    }

    pub fn add(&mut self, m: &ShardMetrics, pacing: &[(LinkId, usize, f64)]) {
        let t = &mut self.totals;
        for (a, b) in t.outcomes.iter_mut().zip(m.outcomes) {
            *a += b;
        }
        t.rejections.merge(&m.rejections);
        t.command_status.merge(&m.command_status);
        t.receipts.merge(&m.receipts);
        t.link_errors.merge(&m.link_errors);
        for (link, e) in &m.last_error {
            match t.last_error.iter_mut().find(|(l, _)| l == link) {
                Some((_, mine)) if mine.at_ms >= e.at_ms => {}
                Some((_, mine)) => *mine = *e,
                None => t.last_error.push((link.clone(), *e)),
            }
        }
        // Same bounds on every shard: adding cannot fail.
        let _same_bounds = t.api_latency.add(&m.api_latency);
        let _same_bounds = t.smsc_latency.add(&m.smsc_latency);
        let oldest = self.now.saturating_sub(RING_SECONDS as u64 - 1);
        for s in m.ring.iter().filter(|s| s.second >= oldest && s.second <= self.now) {
            self.seconds.entry(s.second).or_insert_with(|| Second { second: s.second, ..Second::default() }).merge(s);
        }
        self.pacing.extend_from_slice(pacing);
    }

    /// Counts of the `n` complete seconds before the current one, added up.
    pub fn last(&self, n: u64) -> Second {
        let mut sum = Second::default();
        for s in self.seconds.range(self.now.saturating_sub(n)..self.now).map(|(_, s)| s) {
            sum.merge(s);
        }
        sum
    }
}

/// Every shard's latest numbers; this shard's own are read live.
pub fn collect() -> Merged {
    let now = Instant::now();
    let mut merged = Merged::new(now);
    let me = SHARD_ID.with(Cell::get);
    for s in published() {
        if Some(s.shard) == me {
            with(|m| merged.add(m, &s.pacing));
        } else {
            merged.add(&s.metrics, &s.pacing);
        }
    }
    if me.is_none() {
        with(|m| merged.add(m, &[]));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_roll_and_rates_use_complete_seconds() {
        let t0 = epoch() + Duration::from_secs(1000);
        let mut m = ShardMetrics::default();
        for i in 0..5 {
            m.answer(Outcome::Accepted, None, Some(Duration::from_millis(2)), t0 + Duration::from_millis(i * 10));
        }
        m.answer(
            Outcome::Rejected,
            Some(RejectLabel { layer: "parse", reason: Reason::Named("invalid_to") }),
            None,
            t0 + Duration::from_secs(2),
        );
        // 61 s later the first second's slot is reused.
        let late = t0 + Duration::from_secs(61);
        m.answer(Outcome::Accepted, None, None, late);
        let mut merged = Merged::new(late + Duration::from_secs(1));
        merged.add(&m, &[]);
        assert_eq!(merged.totals.outcomes[0], 6);
        assert_eq!(merged.last(1).outcome(Outcome::Accepted), 1);
        assert_eq!(merged.last(60).outcome(Outcome::Accepted), 1, "second 1000 left the ring");
        assert_eq!(merged.last(60).outcome(Outcome::Rejected), 1);
        assert_eq!(merged.last(10).outcome(Outcome::Rejected), 0);
        assert_eq!(merged.totals.api_latency.len(), 5);
    }

    #[test]
    fn shards_merge() {
        let now = Instant::now();
        let link = LinkId::new("100");
        let mut a = ShardMetrics::default();
        let mut b = ShardMetrics::default();
        a.smsc_answer(&link, 0, Duration::from_micros(300), now);
        b.smsc_answer(&link, 0x45, Duration::from_micros(900), now);
        b.smsc_answer(&link, 0, Duration::from_micros(500), now);
        a.link_error(&link, "bind_failed", 10);
        b.link_error(&link, "throttled", 20);
        let mut m = Merged::new(now);
        m.add(&a, &[]);
        m.add(&b, &[]);
        assert_eq!(m.totals.command_status.get(&(link.clone(), 0)), 2);
        assert_eq!(m.totals.command_status.get(&(link.clone(), 0x45)), 1);
        assert_eq!(m.totals.outcomes[Outcome::Submitted.index()], 2);
        assert_eq!(m.totals.smsc_latency.len(), 3);
        assert_eq!(m.totals.last_error, vec![(link, LastError { kind: "throttled", at_ms: 20 })]);
    }
}
