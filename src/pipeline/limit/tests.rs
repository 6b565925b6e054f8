//! The limiter without Redis (single-node mode), on a driven clock.

use super::*;

fn spec(rate: f64, burst: u32, limits: ClientLimits) -> LimitSpec {
    LimitSpec {
        targets: vec![(LimitTarget::Link(LinkId::new("100")), Rate::new(rate, burst))],
        clients: vec![(ClientId::new("acme"), limits)],
    }
}

fn node(nr_shards: usize, spec: &LimitSpec) -> (Arc<LimiterNode>, WallAnchor) {
    let anchor = WallAnchor { origin: Instant::now(), origin_unix_ms: 1_000 * 86_400_000 };
    let n = LimiterNode::with_anchor(0, nr_shards, RedisConfig::default(), spec, anchor);
    (Arc::new(n), anchor)
}

fn to() -> Msisdn {
    Msisdn::parse_e164("+4915112345678").unwrap()
}

/// Offers `per_s` requests per second spread round-robin over the shards for `secs`.
fn offer(limiters: &[Limiter], t0: Instant, per_s: u64, secs: u64) -> (u64, Vec<LimitRejection>) {
    let client = ClientId::new("acme");
    let target = LimitTarget::Link(LinkId::new("100"));
    let step = Duration::from_nanos(1_000_000_000 / per_s);
    let (mut ok, mut refused) = (0, Vec::new());
    for i in 0..per_s * secs {
        let now = t0 + step * i as u32;
        match limiters[i as usize % limiters.len()].check(&client, &to(), &target, 1, now) {
            Ok(()) => ok += 1,
            Err(r) => refused.push(r),
        }
    }
    (ok, refused)
}

#[test]
fn single_node_two_shards_hold_the_link_rate() {
    for (rate, burst) in [(1.0, 0), (10_000.0, 50)] {
        let (node, anchor) = node(2, &spec(rate, burst, ClientLimits::default()));
        let shards: Vec<Limiter> = (0..2).map(|i| Limiter::new(node.clone(), i, anchor.origin).unwrap()).collect();
        let secs = 10;
        let (ok, refused) = offer(&shards, anchor.origin, (rate as u64 * 2).max(10), secs);
        let lo = (rate * secs as f64) as u64;
        let hi = lo + u64::from(burst.max(1));
        assert!((lo..=hi).contains(&ok), "rate {rate}: {ok} outside [{lo}, {hi}]");
        assert!(refused.iter().all(|r| r.key.as_ref() == "link:100"));
        assert!(refused.iter().all(|r| r.retry_after_secs() >= 1));
    }
}

#[test]
fn client_minute_window_has_exact_retry_after() {
    let limits = ClientLimits { per_minute: Some(5), ..ClientLimits::default() };
    let (node, anchor) = node(2, &spec(1_000.0, 100, limits));
    let shards: Vec<Limiter> = (0..2).map(|i| Limiter::new(node.clone(), i, anchor.origin).unwrap()).collect();
    // 20 s into a minute.
    let t0 = anchor.origin + Duration::from_secs(20);
    let (ok, refused) = offer(&shards, t0, 10, 3);
    assert_eq!(ok, 5);
    let r = &refused[0];
    assert_eq!((r.layer, r.key.as_ref()), (Layer::Client, "client:acme:minute"));
    assert!((38..=40).contains(&r.retry_after_secs()), "{:?}", r.retry_after);
}

#[test]
fn refusal_charges_nothing() {
    let limits = ClientLimits { per_second: Some(1_000), ..ClientLimits::default() };
    let (node, anchor) = node(1, &spec(1.0, 0, limits));
    let l = Limiter::new(node.clone(), 0, anchor.origin).unwrap();
    let (c, t) = (ClientId::new("acme"), LimitTarget::Link(LinkId::new("100")));
    let now = anchor.origin;
    assert!(l.check(&c, &to(), &t, 1, now).is_ok());
    for _ in 0..100 {
        assert_eq!(l.check(&c, &to(), &t, 1, now).unwrap_err().layer, Layer::L1);
    }
    // The link refused 100 times; the client's own rate was not spent by those refusals.
    let other = LimitTarget::Link(LinkId::new("unknown"));
    let passed = (0..1_000).filter(|_| l.check(&c, &to(), &other, 1, now).is_ok()).count();
    assert_eq!(passed, 999);
}

#[test]
fn set_rate_applies_on_every_shard() {
    let (node, anchor) = node(2, &spec(10.0, 0, ClientLimits::default()));
    let shards: Vec<Limiter> = (0..2).map(|i| Limiter::new(node.clone(), i, anchor.origin).unwrap()).collect();
    let (ok, _) = offer(&shards, anchor.origin, 100, 2);
    assert!((20..=21).contains(&ok), "{ok}");
    assert!(shards[0].set_rate(&LimitTarget::Link(LinkId::new("100")), Rate::new(2.0, 0)));
    let (ok, _) = offer(&shards, anchor.origin + Duration::from_secs(2), 100, 5);
    assert!((9..=11).contains(&ok), "{ok}");
}

#[test]
fn destination_caps_without_redis() {
    let limits = ClientLimits {
        per_destination_per_minute: Some(3),
        per_destination_per_day: Some(10),
        ..ClientLimits::default()
    };
    let (node, anchor) = node(2, &spec(100.0, 10, limits));
    let l = Limiter::new(node.clone(), 0, anchor.origin).unwrap();
    let c = ClientId::new("acme");
    let now = anchor.origin;
    let results: Vec<_> = (0..5).map(|_| futures_lite::future::block_on(l.check_destination(&c, &to(), now))).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    let r = results[4].clone().unwrap_err();
    assert_eq!(r.key.as_ref(), "client:acme:destination");
    assert_eq!(r.retry_after_secs(), 60);
}

/// Single-node mode far below a high link rate, over two shards whose background refills run
/// every 25 ms: requests 100 ms apart, then 1 ms apart, then bursts at one instant, land on
/// random shards and are never refused (regression: each shard leased 50 ms of slots ahead,
/// so a shard held only future slots while the other's went unspent, and L2 refused).
#[test]
fn single_node_high_rate_refuses_nothing_below_the_rate() {
    for burst in [0, 100, 1_000] {
        let (node, anchor) = node(2, &spec(100_000.0, burst, ClientLimits::default()));
        let shards: Vec<Limiter> = (0..2).map(|i| Limiter::new(node.clone(), i, anchor.origin).unwrap()).collect();
        let (c, t) = (ClientId::new("acme"), LimitTarget::Link(LinkId::new("100")));
        // Ahead of the real clock, so that `refill_once` keeps the driven time.
        let t0 = anchor.origin + Duration::from_secs(3_600);
        let mut next_tick = t0 + Duration::from_micros(1_300);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut now = t0;
        let mut sent = 0u64;
        // (requests, spacing, requests per instant): at one instant L1 and L2 allow
        // max(burst, 1), so with burst 0 one request per 10 µs slot.
        let per_instant = if burst >= 100 { 50 } else { 1 };
        for (n, gap) in [(40, 100_000), (400, 1_000), (2_000, 20 * per_instant)] {
            for i in 0..n {
                while next_tick <= now {
                    for s in &shards {
                        futures_lite::future::block_on(s.refill_once(next_tick));
                    }
                    next_tick += Duration::from_millis(25);
                }
                let k = if gap < 1_000 { per_instant } else { 1 };
                for j in 0..k {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    let r = shards[(seed >> 63) as usize].check(&c, &to(), &t, 1, now);
                    assert!(r.is_ok(), "burst {burst}, gap {gap} µs: request {i}/{j} refused: {r:?}");
                    sent += 1;
                }
                now += Duration::from_micros(gap);
            }
        }
        // Still bounded: everything sent fits in rate·t + burst.
        let elapsed = (now - t0).as_secs_f64();
        assert!(sent as f64 <= 100_000.0 * elapsed + f64::from(burst.max(1)));
    }
}
