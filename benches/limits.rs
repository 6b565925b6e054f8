//! The rate limiter's cost on the hot path (issue 5).
//!
//! Criterion part, one decision each:
//! - `l1_gcra`: one shard-local GCRA decision (`l1::GcraTable` probe + commit), admitted.
//! - `l2_lease_spend`: spending one token of a lease a shard holds (`l2::Leases` probe +
//!   spend), which is all the hot path does for L2 on Redis: the round trips happen in the
//!   background refill task. Benchmarked on its own because `Limiter::check` on Redis needs
//!   that task to run between decisions, which criterion's busy loop on the same executor
//!   would starve.
//! - `check_link`, `check_client_windows`, `check_refused`: `Limiter::check` in single-node
//!   mode (no Redis: L2 spends the node-local bucket), on a glommio `LocalExecutor` as in the
//!   gateway, with a synthetic clock advancing 1 µs per decision against a 10⁶/s link
//!   (admitted), with a client's per-second, minute and day limits on top, and against a
//!   1/s link whose only token is spent (refused at L1).
//!
//! Round-trip part (not criterion; needs `redis-server` on the PATH, skipped otherwise): one
//! and two nodes of 2 shards each on their own executors offer 10,000 msg/s in total for 3 s
//! against a 10,000 msg/s link on a real redis-server and report `LimiterNode::stats()`:
//! Redis round trips (leases and heartbeats) per 1,000 accepted messages.
//! `LIMITS_BENCH_SKIP_REDIS=1` skips it.
//!
//! Run: `cargo bench --bench limits`.

#[path = "../tests/support/redis.rs"]
mod redis_server;

use criterion::Criterion;
use glommio::{LocalExecutorBuilder, Placement};
use shards::{Shutdown, ShutdownTrigger};
use smsgate::ids::{ClientId, LinkId, Msisdn};
use smsgate::pipeline::limit::config::{ClientLimits, RedisConfig};
use smsgate::pipeline::limit::l1::{GcraTable, Rate};
use smsgate::pipeline::limit::l2::{Grant, Leases};
use smsgate::pipeline::limit::{LimitSpec, LimitStats, LimitTarget, Limiter, LimiterNode};
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_micros(1);

fn l1(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut table = GcraTable::new(t0);
    let id = table.add(Rate::new(1_000_000.0, 100));
    let mut now = t0;
    c.bench_function("l1_gcra", |b| {
        b.iter(|| {
            now += STEP;
            let ok = table.probe(black_box(id), 1, now).expect("admitted at the rate");
            table.commit(id, ok);
        })
    });
}

fn l2(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut leases = Leases::default();
    let grant = |at: Instant| Grant {
        tokens: 1_000_000,
        first_usable: at,
        step: Duration::ZERO,
        valid_until: at + Duration::from_secs(3_600),
        next_at: None,
        left: None,
    };
    leases.add(grant(t0), t0);
    let mut now = t0;
    let mut spent = 0u32;
    c.bench_function("l2_lease_spend", |b| {
        b.iter(|| {
            now += STEP;
            if spent == 999_999 {
                leases.add(grant(now), now);
                spent = 0;
            }
            leases.probe(black_box(1), now, Duration::from_millis(1)).expect("held");
            leases.spend(1, now);
            spent += 1;
        })
    });
}

fn spec(rate: f64, burst: u32, limits: ClientLimits) -> LimitSpec {
    LimitSpec {
        targets: vec![(LimitTarget::Link(LinkId::new("100")), Rate::new(rate, burst))],
        clients: vec![(ClientId::new("acme"), limits)],
    }
}

fn check(c: &mut Criterion) {
    let to = Msisdn::parse_e164("+4915112345678").expect("number");
    let target = LimitTarget::Link(LinkId::new("100"));
    let (plain, windows) = (ClientId::new("other"), ClientId::new("acme"));
    let limits = ClientLimits {
        per_second: Some(2_000_000),
        per_minute: Some(u32::MAX),
        per_day: Some(u32::MAX),
        ..ClientLimits::default()
    };
    let fast = Arc::new(LimiterNode::new(0, 1, RedisConfig::default(), &spec(1_000_000.0, 1_000, limits)));
    let slow = Arc::new(LimiterNode::new(0, 1, RedisConfig::default(), &spec(1.0, 0, ClientLimits::default())));
    // `make` runs the executor on this thread, so criterion's `&mut` can be used inside.
    let ex = LocalExecutorBuilder::new(Placement::Unbound).name("bench-limits").make().expect("executor");
    ex.run(async move {
        let t0 = Instant::now();
        let (a, b) = (Limiter::new(fast, 0, t0).expect("limiter"), Limiter::new(slow, 0, t0).expect("limiter"));
        let mut now = t0;
        c.bench_function("check_link", |bench| {
            bench.iter(|| {
                now += STEP;
                a.check(black_box(&plain), &to, &target, 1, now).expect("admitted");
            })
        });
        c.bench_function("check_client_windows", |bench| {
            bench.iter(|| {
                now += STEP;
                a.check(black_box(&windows), &to, &target, 1, now).expect("admitted");
            })
        });
        b.check(&plain, &to, &target, 1, now).expect("the one token");
        c.bench_function("check_refused", |bench| {
            bench.iter(|| black_box(b.check(black_box(&plain), &to, &target, 1, now)).expect_err("over the rate"))
        });
    });
}

/// What one round-trip run saw.
struct Trips {
    nodes: usize,
    offered: u64,
    admitted: u64,
    stats: Vec<LimitStats>,
}

/// `nodes × shards` executors offer `per_s` msg/s in total for `secs` on one link of rate
/// `per_s` (burst 1 % of it) on the Redis at `url`.
fn round_trips(url: &str, nodes: usize, shards: usize, per_s: f64, secs: f64) -> Trips {
    let redis = RedisConfig { url: Some(url.to_owned()), command_timeout_ms: 200, ..RedisConfig::default() };
    let spec = spec(per_s, (per_s / 100.0) as u32, ClientLimits::default());
    let nodes_v: Vec<Arc<LimiterNode>> =
        (0..nodes).map(|n| Arc::new(LimiterNode::new(n as u8, shards, redis.clone(), &spec))).collect();
    let trigger = ShutdownTrigger::new();
    let admitted = Arc::new(AtomicU64::new(0));
    let offered = Arc::new(AtomicU64::new(0));
    // Leave time to connect and see each other's heartbeat, then measure.
    let start = Instant::now() + Duration::from_millis(1_500);
    let run_for = Duration::from_secs_f64(secs);
    let per_shard = per_s / (nodes * shards) as f64;
    let mut handles = Vec::new();
    for node in &nodes_v {
        for shard in 0..shards {
            let (node, admitted, offered, listener) =
                (node.clone(), admitted.clone(), offered.clone(), trigger.subscribe());
            let h = LocalExecutorBuilder::new(Placement::Unbound)
                .name("bench-trips")
                .spawn(move || async move {
                    let limiter = Rc::new(Limiter::new(node, shard, Instant::now()).expect("limiter"));
                    let shutdown = Shutdown::from_listener(listener);
                    limiter.start(shutdown.clone());
                    let (client, target) = (ClientId::new("acme"), LimitTarget::Link(LinkId::new("100")));
                    let to = Msisdn::parse_e164("+4915112345678").expect("number");
                    glommio::timer::sleep(start.saturating_duration_since(Instant::now())).await;
                    let mut sent = 0u64;
                    loop {
                        let now = Instant::now();
                        let elapsed = now - start;
                        if elapsed >= run_for {
                            break;
                        }
                        let due = (elapsed.as_secs_f64() * per_shard) as u64;
                        while sent < due {
                            if limiter.check(&client, &to, &target, 1, now).is_ok() {
                                admitted.fetch_add(1, Ordering::Relaxed);
                            }
                            sent += 1;
                        }
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                    offered.fetch_add(sent, Ordering::Relaxed);
                    shutdown.wait().await;
                })
                .expect("executor");
            handles.push(h);
        }
    }
    // Calls made before `start` (connecting, first heartbeats) are not part of the run.
    let sleep = |t: Instant| {
        #[allow(clippy::disallowed_methods)] // the bench's own thread, not a shard
        std::thread::sleep(t.saturating_duration_since(Instant::now()));
    };
    sleep(start);
    let before: Vec<LimitStats> = nodes_v.iter().map(|n| n.stats()).collect();
    sleep(start + run_for + Duration::from_millis(50));
    let after: Vec<LimitStats> = nodes_v.iter().map(|n| n.stats()).collect();
    trigger.fire();
    for h in handles {
        h.join().expect("executor ran");
    }
    let stats = after
        .iter()
        .zip(&before)
        .map(|(a, b)| LimitStats {
            redis_calls: a.redis_calls - b.redis_calls,
            redis_failures: a.redis_failures - b.redis_failures,
            fallbacks: a.fallbacks - b.fallbacks,
            local_grants: a.local_grants - b.local_grants,
            ..*a
        })
        .collect();
    Trips { nodes, offered: offered.load(Ordering::Relaxed), admitted: admitted.load(Ordering::Relaxed), stats }
}

fn redis_round_trips() {
    if std::env::var_os("LIMITS_BENCH_SKIP_REDIS").is_some() {
        return;
    }
    let has_redis = redis_server::RedisServer::available();
    if !has_redis {
        eprintln!("redis round trips: skipped (no redis-server on the PATH)");
        return;
    }
    let (per_s, secs, shards) = (10_000.0, 3.0, 2);
    println!(
        "\nRedis round trips at {per_s} msg/s offered for {secs} s, link rate {per_s}/s, {shards} shards per node:"
    );
    println!("| nodes × shards | offered | accepted | redis calls | per 1,000 accepted | failures | fallbacks |");
    println!("|---|---|---|---|---|---|---|");
    for nodes in [1, 2] {
        // A fresh Redis per run: no bucket left over from the previous one.
        let redis = redis_server::RedisServer::start();
        let t = round_trips(&redis.url(), nodes, shards, per_s, secs);
        let calls: u64 = t.stats.iter().map(|s| s.redis_calls).sum();
        let failures: u64 = t.stats.iter().map(|s| s.redis_failures).sum();
        let fallbacks: u64 = t.stats.iter().map(|s| s.fallbacks).sum();
        println!(
            "| {} × {shards} | {} | {} | {calls} | {:.2} | {failures} | {fallbacks} |",
            t.nodes,
            t.offered,
            t.admitted,
            calls as f64 * 1_000.0 / t.admitted.max(1) as f64
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    l1(&mut c);
    l2(&mut c);
    check(&mut c);
    c.final_summary();
    redis_round_trips();
}
