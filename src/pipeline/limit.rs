//! Stages 3 and 4: rate limits. L1 is a shard-local GCRA per client and per route target
//! ([`l1`]); L2 spends quota leases granted by a bucket shared by every shard of every node
//! ([`l2`]): Redis ([`redis`]) when configured, else (or while Redis is down) a node-local
//! bucket holding this node's share ([`local`]). Client minute and day windows are leased the
//! same way. [`Limiter::check`] is synchronous: the hot path never waits on Redis.
//!
//! Per-destination caps (3 per minute to one number) are the exception: pairs are countless
//! and each sees a handful of messages, so a lease per pair would be one token, fetched per
//! message anyway, and exact only if fetched before the decision. They cost one Redis round
//! trip (~45 µs, FACTS.md) in [`Limiter::check_destination`], for clients that configure them
//! only, and nothing else on the request path touches Redis.
//!
//! ```text
//! check: L1 client → L1 target → L2 client (second, minute, day) → L2 target; all probed, then
//!        all charged (a refusal charges nothing)
//! background, per shard: refill (leases below their low-water mark, while warm; not for
//!                        rates on the local bucket, taken per request: `local_take`)
//!                        heartbeat (live nodes; the Redis probe while degraded)
//! ```
//!
//! Fallback: a Redis call that fails or misses `command_timeout_ms` turns the shard to its
//! node's local buckets at `rate / live_nodes` (live nodes last seen, at least `min_nodes`),
//! logged and counted in [`LimitStats`]; the next successful heartbeat turns it back. While
//! every node is cut off from Redis the sum stays within the global rate. One node cut off
//! while the others still reach Redis can add its share on top for that time: the others
//! cannot tell a partitioned node from a dead one.

pub mod config;
pub mod l1;
pub mod l2;
pub mod local;
pub mod redis;

use crate::ids::{ClientId, LinkId, Msisdn};
use config::{ClientLimits, RedisConfig};
use l1::{GcraTable, Rate};
use l2::{Grant, Leases};
use local::{DestinationTable, GcraAsk, LocalBucket, WallAnchor};
use redis::RedisLimits;
use shards::Shutdown;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Which limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The shard-local GCRA (client or route target).
    L1,
    /// The shared rate of a link or pool.
    L2,
    /// A client's per-second, per-minute, per-day or per-destination limit.
    Client,
}

/// Over a limit: HTTP 429 with `Retry-After: ceil(retry_after)`, gRPC RESOURCE_EXHAUSTED.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitRejection {
    pub layer: Layer,
    /// A bounded label naming the limit: `link:100`, `pool:eu`, `client:acme`,
    /// `client:acme:minute`, `client:acme:destination`. Shared, so a refusal allocates nothing.
    pub key: Arc<str>,
    pub retry_after: Duration,
}

impl LimitRejection {
    /// Whole seconds for `Retry-After`, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// What L1 and L2 limit besides the client: a route target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitTarget {
    Link(LinkId),
    Pool(Arc<str>),
}

impl LimitTarget {
    fn label(&self) -> String {
        match self {
            LimitTarget::Link(l) => format!("link:{l}"),
            LimitTarget::Pool(p) => format!("pool:{p}"),
        }
    }
}

/// Everything limited on this node, from `smpp_rules.toml` and `[[clients]]`.
#[derive(Clone, Debug, Default)]
pub struct LimitSpec {
    /// Links and pools with their rate (segments per second) and burst.
    pub targets: Vec<(LimitTarget, Rate)>,
    pub clients: Vec<(ClientId, ClientLimits)>,
}

/// Degradation and cost, for logs, metrics and the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// Shards of this node granting from local shares because Redis failed them.
    pub degraded_shards: u32,
    /// Times a shard turned to the fallback.
    pub fallbacks: u64,
    /// Redis calls that failed or missed their deadline.
    pub redis_failures: u64,
    /// Redis round trips for leases, heartbeats and destination caps.
    pub redis_calls: u64,
    /// Leases granted from the node-local buckets.
    pub local_grants: u64,
    /// Live nodes last seen in Redis (at least `min_nodes`).
    pub live_nodes: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A rate: GCRA leases.
    Gcra,
    /// A fixed window counter of this period.
    Window(Duration),
}

/// One limited key, node-wide.
struct NodeKey {
    label: Arc<str>,
    redis_key: String,
    kind: Kind,
    layer: Layer,
    /// Units per second (f64 bits) for GCRA keys; the limit for windows.
    rate_bits: AtomicU64,
    burst: AtomicU32,
    /// Bumped by `set_rate`; shards refresh their L1 cell and drop leases when it moves.
    generation: AtomicU64,
    local: LocalBucket,
}

impl NodeKey {
    fn rate(&self) -> Rate {
        Rate::new(f64::from_bits(self.rate_bits.load(Ordering::Relaxed)), self.burst.load(Ordering::Relaxed))
    }
}

#[derive(Clone, Debug, Default)]
struct ClientKeys {
    second: Option<usize>,
    minute: Option<usize>,
    day: Option<usize>,
    destination_label: Option<Arc<str>>,
    limits: ClientLimits,
}

/// The node-wide part of the limiter, shared by every shard (`Send + Sync`: atomics only).
pub struct LimiterNode {
    node_id: u8,
    nr_shards: u32,
    redis: RedisConfig,
    anchor: WallAnchor,
    keys: Vec<NodeKey>,
    targets: HashMap<LimitTarget, usize>,
    clients: HashMap<ClientId, ClientKeys>,
    destinations: DestinationTable,
    live_nodes: AtomicU32,
    degraded_shards: AtomicU32,
    fallbacks: AtomicU64,
    redis_failures: AtomicU64,
    redis_calls: AtomicU64,
    local_grants: AtomicU64,
}

/// Slots of the node-local destination table per window kind (8 bytes each).
const DESTINATION_SLOTS: usize = 1 << 16;

impl LimiterNode {
    pub fn new(node_id: u8, nr_shards: usize, redis: RedisConfig, spec: &LimitSpec) -> Self {
        Self::with_anchor(node_id, nr_shards, redis, spec, WallAnchor::now())
    }

    /// As [`LimiterNode::new`], with the wall clock anchored by the caller (tests).
    pub fn with_anchor(
        node_id: u8,
        nr_shards: usize,
        redis: RedisConfig,
        spec: &LimitSpec,
        anchor: WallAnchor,
    ) -> Self {
        let prefix = redis.key_prefix.clone();
        let mut keys = Vec::new();
        let mut add = |label: String, kind: Kind, layer: Layer, rate: Rate| {
            keys.push(NodeKey {
                redis_key: format!("{{{prefix}:l2:{label}}}"),
                label: Arc::from(label),
                kind,
                layer,
                rate_bits: AtomicU64::new(rate.per_second.to_bits()),
                burst: AtomicU32::new(rate.burst),
                generation: AtomicU64::new(0),
                local: LocalBucket::default(),
            });
            keys.len() - 1
        };
        let mut targets = HashMap::new();
        for (t, rate) in &spec.targets {
            targets.insert(t.clone(), add(t.label(), Kind::Gcra, Layer::L2, *rate));
        }
        let mut clients = HashMap::new();
        for (c, l) in &spec.clients {
            let window = |n: u32, period: u64| (Kind::Window(Duration::from_secs(period)), Rate::new(f64::from(n), 0));
            let mut k = ClientKeys { limits: l.clone(), ..ClientKeys::default() };
            k.second =
                l.per_second.map(|n| add(format!("client:{c}"), Kind::Gcra, Layer::Client, Rate::new(f64::from(n), n)));
            k.minute = l.per_minute.map(|n| {
                let (kind, r) = window(n, 60);
                add(format!("client:{c}:minute"), kind, Layer::Client, r)
            });
            k.day = l.per_day.map(|n| {
                let (kind, r) = window(n, 86_400);
                add(format!("client:{c}:day"), kind, Layer::Client, r)
            });
            k.destination_label = l.has_destination_caps().then(|| Arc::from(format!("client:{c}:destination")));
            clients.insert(c.clone(), k);
        }
        LimiterNode {
            node_id,
            nr_shards: nr_shards.max(1) as u32,
            live_nodes: AtomicU32::new(redis.min_nodes.max(1)),
            redis,
            anchor,
            keys,
            targets,
            clients,
            destinations: DestinationTable::new(DESTINATION_SLOTS),
            degraded_shards: AtomicU32::new(0),
            fallbacks: AtomicU64::new(0),
            redis_failures: AtomicU64::new(0),
            redis_calls: AtomicU64::new(0),
            local_grants: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> LimitStats {
        LimitStats {
            degraded_shards: self.degraded_shards.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            redis_failures: self.redis_failures.load(Ordering::Relaxed),
            redis_calls: self.redis_calls.load(Ordering::Relaxed),
            local_grants: self.local_grants.load(Ordering::Relaxed),
            live_nodes: self.live_nodes(),
        }
    }

    /// Changes a link's or pool's rate on every shard of this node (a pool whose healthy
    /// members changed). Other nodes learn it from their own rules; Redis takes the rate each
    /// caller passes. `false` when the target was not in the spec.
    pub fn set_rate(&self, target: &LimitTarget, rate: Rate) -> bool {
        let Some(k) = self.targets.get(target).and_then(|&id| self.keys.get(id)) else {
            return false;
        };
        k.rate_bits.store(rate.per_second.to_bits(), Ordering::Relaxed);
        k.burst.store(rate.burst, Ordering::Relaxed);
        k.generation.fetch_add(1, Ordering::Release);
        true
    }

    fn live_nodes(&self) -> u32 {
        self.live_nodes.load(Ordering::Relaxed).max(self.redis.min_nodes).max(1)
    }

    /// Nodes sharing the bucket this shard grants from: 1 without Redis (whole rate).
    fn share_nodes(&self, degraded: bool) -> u32 {
        if self.redis.url.is_some() && degraded {
            self.live_nodes()
        } else {
            1
        }
    }

    /// A lease from the node-local bucket: the whole rate without Redis, this node's share
    /// while degraded.
    fn local_grant(&self, id: usize, tokens: u32, now: Instant, degraded: bool) -> Grant {
        let k = &self.keys[id];
        let nodes = self.share_nodes(degraded);
        self.local_grants.fetch_add(1, Ordering::Relaxed);
        let rate = k.rate();
        match k.kind {
            Kind::Gcra => k.local.grant_gcra(
                &self.anchor,
                now,
                GcraAsk {
                    step: rate.interval() * nodes,
                    capacity: (rate.capacity() / nodes).max(1),
                    tokens,
                    horizon: self.horizon(),
                    grace: self.redis.lease(),
                },
            ),
            Kind::Window(period) => {
                let limit = (rate.per_second as u32 / nodes).max(1);
                k.local.grant_window(&self.anchor, now, limit, period, tokens)
            }
        }
    }

    /// Without Redis (or while it is down) a rate key is spent straight from the node-local
    /// bucket, `tokens` slots usable now or none: see [`LocalBucket::take_gcra`].
    fn local_take(&self, id: usize, tokens: u32, now: Instant, degraded: bool) -> Result<Grant, Duration> {
        let k = &self.keys[id];
        let nodes = self.share_nodes(degraded);
        let rate = k.rate();
        let taken = k.local.take_gcra(
            &self.anchor,
            now,
            rate.interval() * nodes,
            (rate.capacity() / nodes).max(1),
            tokens,
            self.redis.lease(),
        );
        if taken.is_ok() {
            self.local_grants.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    fn horizon(&self) -> Duration {
        self.redis.lease() * 2
    }

    /// Tokens to ask for on `id`.
    fn lease_size(&self, id: usize, leases: &Leases) -> u32 {
        let k = &self.keys[id];
        let shards = self.nr_shards * self.live_nodes();
        let rate = k.rate();
        match k.kind {
            Kind::Gcra => l2::lease_size(rate.per_second, self.redis.lease(), shards),
            Kind::Window(_) => l2::window_lease_size(leases.last_left(), 1_000, shards),
        }
    }

    fn enter_fallback(&self, now: Instant) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        if self.degraded_shards.fetch_add(1, Ordering::AcqRel) == 0 {
            let nodes = self.live_nodes();
            for k in &self.keys {
                if k.kind == Kind::Gcra {
                    let rate = k.rate();
                    k.local.prime(
                        &self.anchor,
                        now + self.horizon(),
                        rate.interval() * nodes,
                        (rate.capacity() / nodes).max(1),
                    );
                }
            }
        }
    }
}

/// A shard-local wake-up for the refill task.
#[derive(Default)]
struct Notify {
    pending: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    fn notify(&self) {
        self.pending.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn notified(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if self.pending.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// One shard's state: L1 cells and L2 leases, indexed like the node's keys.
struct ShardState {
    l1: GcraTable,
    /// The node key generation each L1 cell and lease set was built for.
    generation: Vec<u64>,
    leases: Vec<Leases>,
}

/// One shard's limiter. `!Send`: it lives and dies on its shard.
pub struct Limiter {
    node: Arc<LimiterNode>,
    shard: usize,
    state: RefCell<ShardState>,
    redis: Option<RedisLimits>,
    /// This shard grants from the local share because Redis failed it.
    degraded: Cell<bool>,
    wake: Notify,
}

/// A decision probed but not charged yet.
enum Charge {
    L1(usize, l1::Conforming),
    L2(usize, u32),
}

impl Limiter {
    /// Builds shard `shard`'s limiter; with a Redis URL it starts connecting on the current
    /// glommio executor (so call it on the shard).
    pub fn new(node: Arc<LimiterNode>, shard: usize, origin: Instant) -> Result<Self, String> {
        let redis = match &node.redis.url {
            Some(url) => Some(RedisLimits::connect(url, node.redis.command_timeout(), node.redis.reconnect_delay_ms)?),
            None => None,
        };
        let mut l1 = GcraTable::new(origin);
        for k in &node.keys {
            l1.add(k.rate());
        }
        let n = node.keys.len();
        Ok(Limiter {
            state: RefCell::new(ShardState {
                l1,
                generation: vec![0; n],
                leases: (0..n).map(|_| Leases::default()).collect(),
            }),
            node,
            shard,
            redis,
            degraded: Cell::new(false),
            wake: Notify::default(),
        })
    }

    pub fn node(&self) -> &Arc<LimiterNode> {
        &self.node
    }

    /// Whether this shard currently grants from its local share.
    pub fn is_degraded(&self) -> bool {
        self.degraded.get()
    }

    /// See [`LimiterNode::set_rate`].
    pub fn set_rate(&self, target: &LimitTarget, rate: Rate) -> bool {
        self.node.set_rate(target, rate)
    }

    /// Stages 3 and 4 for one message of `segments` parts (client limits count 1 per message,
    /// link and pool rates count segments). Never waits; a refusal charges no limit.
    /// `to` is not counted here: per-destination caps are [`Limiter::check_destination`].
    pub fn check(
        &self,
        client: &ClientId,
        _to: &Msisdn,
        target: &LimitTarget,
        segments: u32,
        now: Instant,
    ) -> Result<(), LimitRejection> {
        let node = &*self.node;
        let client_keys = node.clients.get(client);
        let target_id = node.targets.get(target).copied();
        let segments = segments.max(1);
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        // At most: L1 client, L1 target, 3 client windows, L2 target.
        let mut charges: [Option<Charge>; 6] = [None, None, None, None, None, None];

        let l1_keys = [client_keys.and_then(|c| c.second).map(|id| (id, 1)), target_id.map(|id| (id, segments))];
        for (slot, (id, cost)) in l1_keys.into_iter().enumerate().filter_map(|(i, k)| Some((i, k?))) {
            self.refresh(st, id);
            match st.l1.probe(id, cost, now) {
                Ok(c) => charges[slot] = Some(Charge::L1(id, c)),
                Err(wait) => return Err(self.reject(Layer::L1, id, wait)),
            }
        }
        let l2_keys = [
            client_keys.and_then(|c| c.second).map(|id| (id, 1)),
            client_keys.and_then(|c| c.minute).map(|id| (id, 1)),
            client_keys.and_then(|c| c.day).map(|id| (id, 1)),
            target_id.map(|id| (id, segments)),
        ];
        for (slot, (id, cost)) in l2_keys.into_iter().enumerate().filter_map(|(i, k)| Some((i, k?))) {
            let leases = &mut st.leases[id];
            leases.touch(now);
            let fallback_wait = node.keys[id].rate().interval().min(node.redis.lease());
            let mut probe = leases.probe(cost, now, fallback_wait);
            if probe.is_err() && self.exact(id) {
                // Rates on the local bucket: take just what this request lacks, usable now.
                // (Leases of `lease_size` slots handed out ahead to each shard stranded the
                // rate: one shard held slots it did not spend while another's were all in
                // the future, and refused far below the rate.)
                let lack = cost.saturating_sub(leases.usable(now));
                probe = match node.local_take(id, lack, now, self.degraded.get()) {
                    Ok(g) => {
                        leases.add(g, now);
                        leases.probe(cost, now, fallback_wait)
                    }
                    Err(wait) => Err(wait),
                };
            } else if probe.is_err() && self.is_local() && leases.held(now) < cost {
                // Windows on the local bucket answer synchronously: refill inline when the
                // leases are spent.
                let want = node.lease_size(id, leases).max(cost);
                leases.add(node.local_grant(id, want, now, self.degraded.get()), now);
                probe = leases.probe(cost, now, fallback_wait);
            }
            match probe {
                Ok(()) => charges[2 + slot] = Some(Charge::L2(id, cost)),
                Err(wait) => {
                    self.wake.notify();
                    return Err(self.reject(node.keys[id].layer, id, wait));
                }
            }
        }
        let mut refill = false;
        for c in charges.into_iter().flatten() {
            match c {
                Charge::L1(id, c) => st.l1.commit(id, c),
                Charge::L2(id, cost) => {
                    st.leases[id].spend(cost, now);
                    refill |= !self.exact(id) && st.leases[id].held(now) < self.low_water(id, &st.leases[id]);
                }
            }
        }
        if refill {
            self.wake.notify();
        }
        Ok(())
    }

    /// The per-(client, destination) caps: one Redis round trip for clients that configure
    /// The pipeline's entry for stages 3-4: [`Limiter::check`], and when it refuses only
    /// because this shard holds no lease yet for a key on Redis (a cold key: at start, or
    /// after `warm_ms` without traffic), one lease fetch for those keys (a Redis round trip,
    /// bounded by `redis.command_timeout_ms`) and a second check. Warm keys never wait for
    /// Redis; a cold key costs its first message one round trip instead of a refusal.
    pub async fn admit(
        &self,
        client: &ClientId,
        to: &Msisdn,
        target: &LimitTarget,
        segments: u32,
    ) -> Result<(), LimitRejection> {
        let now = Instant::now();
        let refused = match self.check(client, to, target, segments, now) {
            Err(r) if r.layer != Layer::L1 => r,
            other => return other,
        };
        let cold = self.cold_keys(client, target, now);
        if cold.is_empty() {
            return Err(refused);
        }
        for id in cold {
            let grant = self.grant(id, now).await;
            self.state.borrow_mut().leases[id].add(grant, Instant::now().max(now));
        }
        self.check(client, to, target, segments, Instant::now())
    }

    /// Keys of this request that lease from Redis and are cold on this shard.
    fn cold_keys(&self, client: &ClientId, target: &LimitTarget, now: Instant) -> Vec<usize> {
        if self.redis.is_none() || self.degraded.get() {
            return Vec::new();
        }
        let node = &*self.node;
        let client_keys = node.clients.get(client);
        let st = self.state.borrow();
        [
            client_keys.and_then(|c| c.second),
            client_keys.and_then(|c| c.minute),
            client_keys.and_then(|c| c.day),
            node.targets.get(target).copied(),
        ]
        .into_iter()
        .flatten()
        .filter(|&id| !self.exact(id) && st.leases[id].is_cold(now))
        .collect()
    }

    /// them (none otherwise). Without Redis, or when the call fails, the node-local table
    /// counts instead, with caps split over the live nodes while Redis is down.
    pub async fn check_destination(&self, client: &ClientId, to: &Msisdn, now: Instant) -> Result<(), LimitRejection> {
        let node = &*self.node;
        let Some(keys) = node.clients.get(client) else {
            return Ok(());
        };
        let Some(label) = &keys.destination_label else {
            return Ok(());
        };
        let (pm, pd) = (keys.limits.per_destination_per_minute, keys.limits.per_destination_per_day);
        let reject = |wait: Duration| LimitRejection { layer: Layer::Client, key: label.clone(), retry_after: wait };
        if let Some(redis) = &self.redis {
            let key = format!("{{{}:cd:{}:{}}}", node.redis.key_prefix, client, to.digits());
            node.redis_calls.fetch_add(1, Ordering::Relaxed);
            match redis.destination(&key, pm, pd).await {
                Ok(None) => return Ok(()),
                Ok(Some(wait)) => return Err(reject(wait)),
                Err(e) => {
                    node.redis_failures.fetch_add(1, Ordering::Relaxed);
                    self.degrade(&e, now);
                }
            }
        }
        let nodes = node.share_nodes(self.degraded.get());
        let share = |c: Option<u32>| c.map(|c| (c / nodes).max(1));
        node.destinations
            .check(DestinationTable::hash(client.as_str(), to.digits()), node.anchor.unix_ms(now), share(pm), share(pd))
            .map_err(reject)
    }

    /// Spawns this shard's refill and heartbeat tasks on the current glommio executor; both
    /// stop on `shutdown` (and the Redis connection is closed).
    pub fn start(self: &Rc<Self>, shutdown: Shutdown) {
        let me = self.clone();
        let stop = shutdown.clone();
        glommio::spawn_local(async move { me.refill_loop(stop).await }).detach();
        if self.redis.is_some() {
            let me = self.clone();
            glommio::spawn_local(async move { me.heartbeat_loop(shutdown).await }).detach();
        }
    }

    /// Asks for every lease below its low-water mark once; `now` injected (tests drive it).
    pub async fn refill_once(&self, now: Instant) {
        let wanted: Vec<usize> = {
            let st = self.state.borrow();
            let warm = Duration::from_millis(self.node.redis.warm_ms);
            (0..self.node.keys.len())
                .filter(|&id| !self.exact(id))
                .filter(|&id| st.leases[id].wants_refill(now, self.low_water(id, &st.leases[id]), warm))
                .collect()
        };
        for id in wanted {
            let grant = self.grant(id, now).await;
            self.state.borrow_mut().leases[id].add(grant, Instant::now().max(now));
        }
    }

    /// One heartbeat: counts live nodes and, when it succeeds, ends a degradation.
    pub async fn heartbeat_once(&self, now: Instant) {
        let Some(redis) = &self.redis else { return };
        let node = &*self.node;
        let key = format!("{{{}:nodes}}", node.redis.key_prefix);
        let ttl = Duration::from_millis(node.redis.node_ttl_ms);
        node.redis_calls.fetch_add(1, Ordering::Relaxed);
        match redis.heartbeat(&key, node.node_id, ttl).await {
            Ok(n) => {
                node.live_nodes.store(n, Ordering::Relaxed);
                if self.degraded.replace(false) {
                    node.degraded_shards.fetch_sub(1, Ordering::AcqRel);
                    tracing::info!(shard = self.shard, live_nodes = n, "redis answers again: L2 back on Redis");
                }
            }
            Err(e) => {
                node.redis_failures.fetch_add(1, Ordering::Relaxed);
                self.degrade(&e, now);
            }
        }
    }

    async fn refill_loop(&self, shutdown: Shutdown) {
        let tick = (self.node.redis.lease() / 4).clamp(Duration::from_millis(2), Duration::from_millis(50));
        loop {
            let wait = futures_lite::future::or(
                async {
                    futures_lite::future::or(self.wake.notified(), glommio::timer::sleep(tick)).await;
                    false
                },
                async {
                    shutdown.wait().await;
                    true
                },
            );
            if wait.await {
                break;
            }
            self.refill_once(Instant::now()).await;
        }
    }

    async fn heartbeat_loop(&self, shutdown: Shutdown) {
        let every = Duration::from_millis(self.node.redis.heartbeat_ms);
        loop {
            self.heartbeat_once(Instant::now()).await;
            let stop = futures_lite::future::or(
                async {
                    glommio::timer::sleep(every).await;
                    false
                },
                async {
                    shutdown.wait().await;
                    true
                },
            );
            if stop.await {
                break;
            }
        }
        if let Some(r) = &self.redis {
            r.quit().await;
        }
    }

    /// A lease for key `id`: from Redis unless degraded or absent, else local.
    async fn grant(&self, id: usize, now: Instant) -> Grant {
        let node = &*self.node;
        let size = node.lease_size(id, &self.state.borrow().leases[id]);
        let Some(redis) = self.redis.as_ref().filter(|_| !self.degraded.get()) else {
            return node.local_grant(id, size, now, self.degraded.get());
        };
        let k = &node.keys[id];
        let rate = k.rate();
        node.redis_calls.fetch_add(1, Ordering::Relaxed);
        let answer = match k.kind {
            Kind::Gcra => {
                redis.grant_gcra(&k.redis_key, rate.interval(), rate.capacity(), size, node.horizon()).await.map(|r| {
                    // Offsets are from Redis's now; the reply's arrival is later, so mapping
                    // them onto it can only make slots later (never over the rate).
                    let at = Instant::now().max(now);
                    let us = |v: u64| v.saturating_mul(1_000);
                    local::slots_grant(
                        at,
                        r.granted,
                        r.first_usable_us.saturating_mul(1_000),
                        us(r.last_end_us),
                        rate.interval(),
                        node.redis.lease(),
                        (r.granted < size).then(|| us(r.wait_us.max(1))),
                    )
                })
            }
            Kind::Window(period) => {
                redis.grant_window(&k.redis_key, rate.per_second as u32, size, period).await.map(|r| {
                    let at = Instant::now().max(now);
                    let ends = at + Duration::from_millis(r.ends_in_ms);
                    Grant {
                        tokens: r.granted,
                        first_usable: at,
                        step: Duration::ZERO,
                        valid_until: ends,
                        next_at: (r.granted < size).then_some(ends),
                        left: Some(r.left),
                    }
                })
            }
        };
        match answer {
            Ok(g) => g,
            Err(e) => {
                node.redis_failures.fetch_add(1, Ordering::Relaxed);
                self.degrade(&e, now);
                node.local_grant(id, size, now, true)
            }
        }
    }

    fn degrade(&self, e: &redis::RedisFail, now: Instant) {
        if !self.degraded.replace(true) {
            self.node.enter_fallback(now);
            tracing::warn!(
                shard = self.shard,
                error = %e,
                live_nodes = self.node.live_nodes(),
                "redis failed: L2 falls back to this node's local share"
            );
        }
    }

    /// L2 grants from the node-local bucket: no Redis, or Redis down.
    fn is_local(&self) -> bool {
        self.redis.is_none() || self.degraded.get()
    }

    /// Key `id` is a rate spent straight from the local bucket ([`LimiterNode::local_take`]):
    /// no lease is prefetched for it in the background.
    fn exact(&self, id: usize) -> bool {
        self.is_local() && self.node.keys[id].kind == Kind::Gcra
    }

    fn low_water(&self, id: usize, leases: &Leases) -> u32 {
        (self.node.lease_size(id, leases) / 2).max(1)
    }

    /// Picks up a `set_rate` made on any shard: new L1 rate, leases of the old rate dropped.
    fn refresh(&self, st: &mut ShardState, id: usize) {
        let k = &self.node.keys[id];
        let g = k.generation.load(Ordering::Acquire);
        if st.generation[id] != g {
            st.generation[id] = g;
            st.l1.set_rate(id, k.rate());
            st.leases[id].clear();
        }
    }

    fn reject(&self, layer: Layer, id: usize, wait: Duration) -> LimitRejection {
        LimitRejection { layer, key: self.node.keys[id].label.clone(), retry_after: wait }
    }
}

#[cfg(test)]
mod tests;
