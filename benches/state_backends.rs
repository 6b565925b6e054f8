//! The state pipeline on each backend: the embedded store (redb) and Aerospike, through the
//! `StateStore` trait and the group-commit writer that smsgate runs (benches/state_store.rs
//! compares storage engines below the trait).
//!
//! Per message the pipeline writes what smsgate writes: the record once its submit is answered
//! (a put with the SMSC id: record + receipt lookup), then its receipt (lookup read, record read
//! and written back).
//!
//! 1. `apply` alone, batches of 1, 16, 128 and 1,024 ops back to back: ops/s and batch time.
//! 2. The writer with `CLIENTS` threads, each writing its message's put, waiting for it, then
//!    its receipt (as shards do, one message at a time each): ops/s, each write's time from
//!    submit to durable answer (p50/p99), and the batch sizes the writer formed.
//!
//! Run: `cargo bench --bench state_backends`; `SMSGATE_TEST_AEROSPIKE=host:port` adds
//! Aerospike (namespace `SMSGATE_TEST_AEROSPIKE_NAMESPACE`, default `smsgate`; a fresh set per
//! run). `STATE_BENCH_SECS` (seconds per measurement, default 3).

use futures_lite::future::block_on;
use hdrhistogram::Histogram;
use smsgate::notify::outbox::WebhookTargets;
use smsgate::state::aerospike::{AerospikeConfig, AerospikeStore};
use smsgate::state::embedded::EmbeddedStore;
use smsgate::state::record::Status;
use smsgate::state::store::{Op, StateStore};
use smsgate::state::test_util::{receipt, record};
use smsgate::state::writer::{Writer, WriterConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writer clients in part 2 (a shard has many messages in flight; 64 across the node).
const CLIENTS: u64 = 64;
const BATCHES: [usize; 4] = [1, 16, 128, 1_024];

fn secs() -> Duration {
    let s = std::env::var("STATE_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    Duration::from_secs(s)
}

/// The ops of messages `from..from + n/2`: put then receipt, in order.
fn lifecycle(from: u64, n: usize) -> Vec<Op> {
    let mut ops = Vec::with_capacity(n);
    let mut id = from;
    while ops.len() < n {
        let smsc = format!("b{id:x}");
        ops.push(Op::Put(record(id, Some(&smsc))));
        if ops.len() < n {
            ops.push(Op::Receipt(receipt(&smsc, Status::Delivered)));
        }
        id += 1;
    }
    ops
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

/// Part 1: batches of each size back to back.
fn apply_alone(name: &str, store: &mut dyn StateStore, base: &AtomicU64) {
    for batch in BATCHES {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        let started = Instant::now();
        let mut ops_done = 0u64;
        while started.elapsed() < secs() {
            let first = base.fetch_add(batch as u64, Ordering::Relaxed);
            let ops = lifecycle(first, batch);
            let t = Instant::now();
            store.apply(&ops).expect("apply");
            h.record(t.elapsed().as_micros() as u64).ok();
            ops_done += ops.len() as u64;
        }
        let rate = ops_done as f64 / started.elapsed().as_secs_f64();
        println!(
            "{name:9} apply  batch {batch:5}: {rate:9.0} ops/s  batch time p50 {:7.3} ms  p99 {:7.3} ms  ({} batches)",
            ms(&h, 0.5),
            ms(&h, 0.99),
            h.len()
        );
    }
}

/// Part 2: the writer with many clients.
fn through_writer(name: &str, store: Box<dyn StateStore>, base: &AtomicU64) {
    let (writer, handle) =
        Writer::spawn(store, WriterConfig { max_batch: 4_096, queue_capacity: 65_536 }).expect("writer");
    let lat = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let deadline = Instant::now() + secs();
    let started = Instant::now();
    let first = base.fetch_add(10_000_000, Ordering::Relaxed);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (handle, lat) = (handle.clone(), Arc::clone(&lat));
            std::thread::spawn(move || {
                let mut local = Histogram::<u64>::new(3).expect("histogram");
                let mut id = first + c * 100_000;
                while Instant::now() < deadline {
                    let smsc = format!("w{id:x}");
                    let t = Instant::now();
                    block_on(handle.put(record(id, Some(&smsc)))).expect("put");
                    local.record(t.elapsed().as_micros() as u64).ok();
                    let t = Instant::now();
                    block_on(handle.receipt(receipt(&smsc, Status::Delivered))).expect("receipt");
                    local.record(t.elapsed().as_micros() as u64).ok();
                    id += 1;
                }
                lat.lock().expect("lock").add(&local).ok();
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = writer.stats();
    let (ops, batches) = (stats.ops.load(Ordering::Relaxed), stats.batches.load(Ordering::Relaxed).max(1));
    let h = lat.lock().expect("lock");
    println!(
        "{name:9} writer {CLIENTS} clients: {:9.0} ops/s  write p50 {:7.3} ms  p99 {:7.3} ms  mean batch {:.1} ops ({batches} batches)",
        ops as f64 / elapsed,
        ms(&h, 0.5),
        ms(&h, 0.99),
        ops as f64 / batches as f64
    );
    writer.shutdown().expect("shutdown");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let base = AtomicU64::new(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut embedded = EmbeddedStore::open(dir.path()).expect("embedded store");
    apply_alone("embedded", &mut embedded, &base);
    through_writer("embedded", Box::new(embedded), &base);
    match std::env::var("SMSGATE_TEST_AEROSPIKE") {
        Ok(host) => {
            let namespace = std::env::var("SMSGATE_TEST_AEROSPIKE_NAMESPACE").unwrap_or_else(|_| "smsgate".to_owned());
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let cfg =
                AerospikeConfig { hosts: vec![host], namespace, set: format!("bench{stamp}"), ..Default::default() };
            let open = || AerospikeStore::open(&cfg).expect("aerospike").with_webhooks(WebhookTargets::default());
            let mut store = open();
            apply_alone("aerospike", &mut store, &base);
            through_writer("aerospike", Box::new(open()), &base);
        }
        Err(_) => println!("aerospike: skipped (SMSGATE_TEST_AEROSPIKE is not set)"),
    }
}
