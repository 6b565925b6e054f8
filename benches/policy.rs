//! The contact-policy stage's cost (issue 9).
//!
//! Criterion part, one decision each, on a glommio `LocalExecutor` as in the gateway:
//! - `policy/senders_blacklist_cp2_local`: `Policy::check` without Redis for a client with two
//!   registered senders, against a blacklist of 10 million numbers (a miss: the message goes
//!   on), with CP2 in this shard's memory (a new number every time, the clock advancing 1 µs).
//! - `policy/blacklist_lookup_10m`: the blacklist lookup alone (`Blacklist::contains`), a miss.
//!
//! Timed part (not criterion):
//! - CP1 and CP2 on a real redis-server (skipped without `redis-server` on the PATH, or with
//!   `POLICY_BENCH_SKIP_REDIS=1`): 20,000 sequential `Policy::check` with a daily and weekly
//!   cap and CP2, each a new number: µs per message (two Redis round trips), and the same with
//!   CP1 only.
//! - The 10-million blacklist load: a file of 10,000,000 numbers written once, loaded three
//!   times (`Blacklist::load`): median seconds and the table's bytes.
//!
//! Run: `cargo bench --bench policy`.

#[path = "../tests/support/redis.rs"]
mod redis_server;

use criterion::Criterion;
use glommio::{LocalExecutorBuilder, Placement};
use smsgate::config::ClientConfig;
use smsgate::ids::ClientId;
use smsgate::pipeline::limit::config::RedisConfig;
use smsgate::pipeline::parse::{parse_submit, SubmitRequest};
use smsgate::pipeline::policy::blacklist::{Blacklist, Collector};
use smsgate::pipeline::policy::config::PolicyConfig;
use smsgate::pipeline::policy::{Policy, PolicyNode};
use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NUMBERS: u64 = 10_000_000;

/// The i-th blacklisted number: 49 1500000000 + 13 i (the misses below are never multiples).
fn listed(i: u64) -> u64 {
    491_500_000_000 + i * 13
}

fn blacklist() -> Blacklist {
    let mut c = Collector::default();
    let text: String = (0..NUMBERS).map(|i| format!("+{}\n", listed(i))).collect();
    c.add_reader(text.as_bytes()).expect("valid numbers");
    c.build()
}

fn client() -> ClientConfig {
    toml::from_str("name = \"acme\"\napi_key = \"0123456789abcdef\"\nsenders = [\"ACME\", \"+4912345\"]\n")
        .expect("client config")
}

/// A request to a number that is never blacklisted (`listed(i) + 1`, not ≡ 0 mod 13 apart).
fn request(i: u64) -> SubmitRequest {
    let body =
        format!(r#"{{"to":"+{}","from":"ACME","text":"Your code is 482913","link":"100"}}"#, listed(i % NUMBERS) + 1);
    parse_submit(body.as_bytes()).expect("valid request")
}

fn node(config: &str, redis: RedisConfig, list: Blacklist) -> Arc<PolicyNode> {
    let config: PolicyConfig = toml::from_str(config).expect("policy config");
    let shared = Arc::new(arc_swap::ArcSwap::from_pointee(list));
    Arc::new(PolicyNode::new(&config, &[client()], &redis, shared).expect("policy node"))
}

fn local(c: &mut Criterion, list: Blacklist) {
    let probe: Vec<String> = (0..1024u64).map(|i| (listed(i * 9_973) + 1).to_string()).collect();
    let mut i = 0;
    c.bench_function("policy/blacklist_lookup_10m", |b| {
        b.iter(|| {
            i = (i + 1) % probe.len();
            black_box(list.contains(black_box(&probe[i])))
        })
    });
    let node = node("duplicate_window_s = 1", RedisConfig::default(), list);
    let requests: Vec<SubmitRequest> = (0..4096u64).map(|i| request(i * 2_441)).collect();
    let ex = LocalExecutorBuilder::new(Placement::Unbound).name("bench-policy").make().expect("executor");
    ex.run(async move {
        let policy = Policy::new(node).expect("policy");
        let acme = ClientId::new("acme");
        let (mut now, mut i) = (Instant::now(), 0);
        c.bench_function("policy/senders_blacklist_cp2_local", |b| {
            b.iter(|| {
                // A second per pass over the requests: each is new to CP2's window again.
                now += Duration::from_micros(250);
                i = (i + 1) % requests.len();
                let checked = futures_lite::future::block_on(policy.check(&acme, &requests[i], now, 0));
                let _admitted = black_box(checked).expect("admitted");
            })
        });
    });
}

/// µs per `Policy::check` over `n` sequential messages with `config` on the Redis at `url`.
fn on_redis(url: &str, config: &str, n: u64) -> f64 {
    let redis = RedisConfig { url: Some(url.to_owned()), command_timeout_ms: 1_000, ..RedisConfig::default() };
    let node = node(config, redis, Blacklist::default());
    let ex = LocalExecutorBuilder::new(Placement::Unbound).name("bench-policy-redis").make().expect("executor");
    ex.run(async move {
        let policy = Policy::new(node).expect("policy");
        let acme = ClientId::new("acme");
        // The connection comes up in the background: wait for the first counted message.
        let warm = Instant::now() + Duration::from_secs(10);
        while policy.check(&acme, &request(0), Instant::now(), 0).await.is_err() && Instant::now() < warm {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        let now_ms = smsgate::clock::Clock::now_ms(&smsgate::clock::SystemClock);
        let t0 = Instant::now();
        for i in 1..=n {
            let admitted = policy.check(&acme, &request(i), Instant::now(), now_ms).await;
            let _admitted = black_box(admitted).expect("admitted");
        }
        t0.elapsed().as_secs_f64() * 1e6 / n as f64
    })
}

fn redis_costs() {
    if std::env::var_os("POLICY_BENCH_SKIP_REDIS").is_some() {
        return;
    }
    let has_redis = redis_server::RedisServer::available();
    if !has_redis {
        eprintln!("policy on Redis: skipped (no redis-server on the PATH)");
        return;
    }
    let n = 20_000;
    println!("\nPolicy::check on a real redis-server, {n} sequential messages, each to a new number:");
    println!("| strategies | µs per message |");
    println!("|---|---|");
    for (name, config) in [
        ("CP1 daily + weekly", "daily_cap = 5\nweekly_cap = 20\n"),
        ("CP1 + CP2", "daily_cap = 5\nweekly_cap = 20\nduplicate_window_s = 60\n"),
    ] {
        let redis = redis_server::RedisServer::start();
        println!("| {name} | {:.1} |", on_redis(&redis.url(), config, n));
    }
}

fn load_10m() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = dir.path().join("10m.txt");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&f).expect("create"));
        for i in 0..NUMBERS {
            writeln!(w, "+{}", listed(i)).expect("write");
        }
    }
    let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
    let mut took: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let b = Blacklist::load(std::slice::from_ref(&f)).expect("load");
            assert_eq!(b.len() as u64, NUMBERS);
            let s = t.elapsed().as_secs_f64();
            println!("  loaded {} numbers in {s:.2} s, table {} MB", b.len(), b.table_bytes() / 1_000_000);
            s
        })
        .collect();
    took.sort_by(f64::total_cmp);
    println!("blacklist load, {NUMBERS} numbers ({} MB file): median {:.2} s of 3", size / 1_000_000, took[1]);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    local(&mut c, blacklist());
    c.final_summary();
    redis_costs();
    load_10m();
}
