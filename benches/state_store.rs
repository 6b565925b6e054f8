//! State store: fjall against redb on smsgate's real write pattern (issue 2).
//!
//! Per message: an insert of the record (Accepted), a replace with the SMSC id (Submitted) that
//! also writes the index (link, SMSC id) → message id, and a receipt that reads the index and
//! the record and writes it back with one more transition (Delivered). Writes are committed in
//! group-commit batches: every op that arrived while the previous batch was syncing, one durable
//! sync per batch (fjall: a write batch persisted with `SyncData`; redb: a write transaction
//! with `Durability::Immediate`).
//!
//! Open loop: every millisecond 50 new messages arrive (50,000 msg/s), each submit is due
//! `SUBMIT_DELAY` after its insert and each receipt `RECEIPT_DELAY` after its submit; arrivals
//! do not wait for the store, so a slow store shows up as bigger batches and later acks.
//! Closed loop: batches of 1,000 ops in the steady-state mix, back to back.
//!
//! Run: `cargo bench --bench state_store`. Environment: `STATE_BENCH_SECS` (open-loop seconds,
//! default 10), `STATE_BENCH_RUNS` (runs per backend, default 3), `STATE_BENCH_ONLY` (`fjall`
//! or `redb`). Temporary directories are made under `TMPDIR` (default /tmp).

use smsgate::ids::{ClientId, LinkId, MessageId, Msisdn, SmscMessageId};
use smsgate::state::record::{MessageRecord, Part, Receipt, Status, Transition};
use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::path::Path;
use std::time::{Duration, Instant};

type BoxError = Box<dyn Error>;

/// Offered load of the open loop: messages per 1 ms tick (50,000 msg/s).
const MSGS_PER_MS: u64 = 50;
/// Time from a message's insert to its submit_sm_resp (an SMSC round trip, roughly).
const SUBMIT_DELAY: Duration = Duration::from_millis(20);
/// Time from submit to delivery receipt. Real receipts take seconds; 1 s keeps most of a 10 s
/// run in the full three-write lifecycle.
const RECEIPT_DELAY: Duration = Duration::from_secs(1);
/// Largest batch the open loop commits at once, as the writer's `max_batch` would.
const MAX_BATCH: usize = 4_096;
/// Ops per batch in the closed loop.
const CLOSED_BATCH: usize = 1_000;
/// Length of the closed loop.
const CLOSED_SECS: u64 = 5;

// === the pattern ===

/// One write as the group-commit writer would hand it to the store.
enum BenchOp {
    /// A new record (Accepted).
    Insert(MessageRecord),
    /// The record replaced after submit_sm_resp (Submitted, with SMSC id), plus the index.
    Submit(MessageRecord),
    /// A receipt: index lookup, record read, one transition appended, record written.
    Receipt(Receipt),
}

fn message_key(id: MessageId) -> [u8; 8] {
    id.to_bytes()
}

fn smsc_key(link: &LinkId, smsc: &SmscMessageId) -> Vec<u8> {
    let mut k = Vec::with_capacity(link.as_str().len() + 1 + smsc.as_str().len());
    k.extend_from_slice(link.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(smsc.as_str().as_bytes());
    k
}

/// Applies a receipt to a stored record; returns the new bytes.
fn apply_receipt(stored: &[u8], r: &Receipt) -> Result<Vec<u8>, BoxError> {
    let mut rec: MessageRecord = serde_json::from_slice(stored)?;
    if !rec.status.is_final() {
        rec.push(r.transition());
    }
    Ok(serde_json::to_vec(&rec)?)
}

/// A backend under test, reduced to the pattern.
trait Backend: Sized {
    const NAME: &'static str;
    fn open(dir: &Path) -> Result<Self, BoxError>;
    /// Makes the whole batch durable with one sync. Returns how many receipts found their record.
    fn commit(&mut self, batch: &[BenchOp]) -> Result<usize, BoxError>;
}

// === impl Backend for fjall ===

struct Fjall {
    db: fjall::Database,
    messages: fjall::Keyspace,
    index: fjall::Keyspace,
}

impl Backend for Fjall {
    const NAME: &'static str = "fjall 3.1";

    fn open(dir: &Path) -> Result<Self, BoxError> {
        let db = fjall::Database::builder(dir).open()?;
        let messages = db.keyspace("messages", fjall::KeyspaceCreateOptions::default)?;
        let index = db.keyspace("smsc_index", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, messages, index })
    }

    fn commit(&mut self, batch: &[BenchOp]) -> Result<usize, BoxError> {
        // A write batch is invisible until committed: later ops of the batch read this overlay.
        let mut overlay_msgs: HashMap<[u8; 8], Vec<u8>> = HashMap::new();
        let mut overlay_index: HashMap<Vec<u8>, [u8; 8]> = HashMap::new();
        let mut wb = self.db.batch().durability(Some(fjall::PersistMode::SyncData));
        let mut matched = 0;
        for op in batch {
            match op {
                BenchOp::Insert(rec) => {
                    let v = serde_json::to_vec(rec)?;
                    wb.insert(&self.messages, message_key(rec.id), v.clone());
                    overlay_msgs.insert(message_key(rec.id), v);
                }
                BenchOp::Submit(rec) => {
                    let v = serde_json::to_vec(rec)?;
                    wb.insert(&self.messages, message_key(rec.id), v.clone());
                    overlay_msgs.insert(message_key(rec.id), v);
                    if let Some(smsc) = rec.first_smsc_id() {
                        let k = smsc_key(&rec.link, smsc);
                        wb.insert(&self.index, k.clone(), message_key(rec.id));
                        overlay_index.insert(k, message_key(rec.id));
                    }
                }
                BenchOp::Receipt(r) => {
                    let k = smsc_key(&r.link, &r.smsc_message_id);
                    let id = match overlay_index.get(&k) {
                        Some(id) => Some(*id),
                        None => match self.index.get(&k)? {
                            Some(v) => Some(<[u8; 8]>::try_from(&v[..])?),
                            None => None,
                        },
                    };
                    let Some(id) = id else { continue };
                    let stored = match overlay_msgs.get(&id) {
                        Some(v) => Some(v.clone()),
                        None => self.messages.get(id)?.map(|v| v.to_vec()),
                    };
                    let Some(stored) = stored else { continue };
                    let v = apply_receipt(&stored, r)?;
                    wb.insert(&self.messages, id, v.clone());
                    overlay_msgs.insert(id, v);
                    matched += 1;
                }
            }
        }
        wb.commit()?;
        Ok(matched)
    }
}

// === impl Backend for redb ===

const REDB_MESSAGES: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("messages");
const REDB_INDEX: redb::TableDefinition<&[u8], u64> = redb::TableDefinition::new("smsc_index");

struct Redb {
    db: redb::Database,
}

impl Backend for Redb {
    const NAME: &'static str = "redb 4.6";

    fn open(dir: &Path) -> Result<Self, BoxError> {
        let db = redb::Database::create(dir.join("state.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(REDB_MESSAGES)?;
        txn.open_table(REDB_INDEX)?;
        txn.commit()?;
        Ok(Redb { db })
    }

    fn commit(&mut self, batch: &[BenchOp]) -> Result<usize, BoxError> {
        use redb::ReadableTable;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        let mut matched = 0;
        {
            let mut messages = txn.open_table(REDB_MESSAGES)?;
            let mut index = txn.open_table(REDB_INDEX)?;
            for op in batch {
                match op {
                    BenchOp::Insert(rec) => {
                        messages.insert(rec.id.0, serde_json::to_vec(rec)?.as_slice())?;
                    }
                    BenchOp::Submit(rec) => {
                        messages.insert(rec.id.0, serde_json::to_vec(rec)?.as_slice())?;
                        if let Some(smsc) = rec.first_smsc_id() {
                            index.insert(smsc_key(&rec.link, smsc).as_slice(), rec.id.0)?;
                        }
                    }
                    BenchOp::Receipt(r) => {
                        let k = smsc_key(&r.link, &r.smsc_message_id);
                        let Some(id) = index.get(k.as_slice())?.map(|g| g.value()) else {
                            continue;
                        };
                        let Some(stored) = messages.get(id)?.map(|g| g.value().to_vec()) else {
                            continue;
                        };
                        messages.insert(id, apply_receipt(&stored, r)?.as_slice())?;
                        matched += 1;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(matched)
    }
}

// === load ===

const CLIENTS: [&str; 4] = ["acme-marketing", "bank-otp", "shop-notify", "gov-alerts"];
const LINKS: [&str; 4] = ["vodafone-de-1", "telekom-de-2", "o2-de-1", "orange-fr-1"];

/// A realistic record in the Accepted state (about 300 bytes of JSON once submitted).
fn accepted(seq: u64, now_ms: u64) -> MessageRecord {
    let i = seq as usize;
    let mut rec = MessageRecord {
        id: MessageId((now_ms << 23) | (seq & 0x7f_ffff)),
        client: ClientId::new(CLIENTS[i % CLIENTS.len()]),
        to: Msisdn(format!("49151{:08}", seq % 100_000_000)),
        from: "ACME-SHOP".to_owned(),
        link: LinkId::new(LINKS[i % LINKS.len()]),
        route: format!("link:{}", LINKS[i % LINKS.len()]),
        client_ref: Some(format!("order-2025-11-23-{seq:010}")),
        callback_url: None,
        segments: 1 + (seq % 3) as u16,
        parts: vec![Part::default()],
        status: Status::Accepted,
        transitions: Vec::new(),
    };
    rec.push(Transition::at(Status::Accepted, now_ms));
    rec
}

fn submitted(mut rec: MessageRecord, now_ms: u64) -> MessageRecord {
    rec.parts[0].smsc_message_id = Some(SmscMessageId::new(&format!("{:016x}", rec.id.0 ^ 0x5a5a_a5a5)));
    rec.parts[0].status = Some(Status::Submitted);
    rec.push(Transition::at(Status::Submitted, now_ms));
    rec
}

fn receipt_for(rec: &MessageRecord, now_ms: u64) -> Option<Receipt> {
    Some(Receipt {
        link: rec.link.clone(),
        smsc_message_id: rec.first_smsc_id()?.clone(),
        status: Status::Delivered,
        error_code: Some("000".to_owned()),
        smsc_done_date: Some("2511231204".to_owned()),
        received_at_ms: now_ms,
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

// === measurement helpers ===

/// User + system CPU time of the whole process (all threads, the stores' workers included).
fn process_cpu() -> Duration {
    use std::os::raw::{c_int, c_long};
    #[repr(C)]
    struct Timeval {
        sec: c_long,
        usec: c_long,
    }
    #[repr(C)]
    struct Rusage {
        utime: Timeval,
        stime: Timeval,
        rest: [c_long; 14],
    }
    extern "C" {
        fn getrusage(who: c_int, usage: *mut Rusage) -> c_int;
    }
    const RUSAGE_SELF: c_int = 0;
    let mut ru = Rusage { utime: Timeval { sec: 0, usec: 0 }, stime: Timeval { sec: 0, usec: 0 }, rest: [0; 14] };
    // SAFETY: `Rusage` has the layout of Linux's `struct rusage` (two timevals, 14 longs) and
    // lives for the whole call; getrusage only writes into it.
    let rc = unsafe { getrusage(RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let us = |t: &Timeval| t.sec as u64 * 1_000_000 + t.usec as u64;
    Duration::from_micros(us(&ru.utime) + us(&ru.stime))
}

/// Bytes allocated on disk under `dir` (what `du` counts).
fn disk_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += disk_bytes(&entry.path())?;
        } else {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

/// p50, p99, max of a sample in microseconds.
fn percentiles(mut v: Vec<u64>) -> (u64, u64, u64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99), v[v.len() - 1])
}

// === open loop ===

struct OpenResult {
    msgs_per_s: f64,
    ops_per_s: f64,
    batches: usize,
    mean_batch: f64,
    commit_us: (u64, u64, u64),
    ack_us: (u64, u64, u64),
    cpu_us_per_msg: f64,
    disk_mb: f64,
    receipts_matched: usize,
}

fn open_loop<B: Backend>(secs: u64) -> Result<OpenResult, BoxError> {
    let dir = tempfile::tempdir()?;
    let mut store = B::open(dir.path())?;
    let total_msgs = secs * 1_000 * MSGS_PER_MS;
    let tick = Duration::from_millis(1);

    let cpu0 = process_cpu();
    let start = Instant::now();
    let mut next_seq = 0u64;
    // (due, record): submits in due order, arrivals are in order so a queue suffices.
    let mut submits: VecDeque<(Instant, MessageRecord)> = VecDeque::new();
    let mut receipts: VecDeque<(Instant, Receipt)> = VecDeque::new();
    // Ops that have arrived and wait for the next batch, with their arrival time.
    let mut pending: VecDeque<(Instant, BenchOp)> = VecDeque::new();
    let mut commit_us = Vec::new();
    let mut ack_us = Vec::new();
    let mut batch_sizes = 0usize;
    let mut ops = 0usize;
    let mut matched = 0usize;
    let mut batch: Vec<BenchOp> = Vec::with_capacity(MAX_BATCH);
    let mut arrived: Vec<Instant> = Vec::with_capacity(MAX_BATCH);

    loop {
        let now = Instant::now();
        let now_ms = unix_ms();
        let elapsed_ms = now.duration_since(start).as_millis() as u64;
        let due_msgs = ((elapsed_ms + 1) * MSGS_PER_MS).min(total_msgs);
        while next_seq < due_msgs {
            let at = start + Duration::from_micros(next_seq * 1_000 / MSGS_PER_MS);
            let rec = accepted(next_seq, now_ms);
            submits.push_back((at + SUBMIT_DELAY, rec.clone()));
            pending.push_back((at, BenchOp::Insert(rec)));
            next_seq += 1;
        }
        let arrivals_done = next_seq >= total_msgs;
        while let Some((due, _)) = submits.front() {
            if *due > now || arrivals_done {
                break;
            }
            let Some((due, rec)) = submits.pop_front() else {
                break;
            };
            let rec = submitted(rec, now_ms);
            if let Some(r) = receipt_for(&rec, now_ms) {
                receipts.push_back((due + RECEIPT_DELAY, r));
            }
            pending.push_back((due, BenchOp::Submit(rec)));
        }
        while let Some((due, _)) = receipts.front() {
            if *due > now || arrivals_done {
                break;
            }
            let Some((due, r)) = receipts.pop_front() else {
                break;
            };
            pending.push_back((due, BenchOp::Receipt(r)));
        }

        if pending.is_empty() {
            if arrivals_done {
                break;
            }
            let next_tick = start + tick * (elapsed_ms as u32 + 1);
            // The load generator's own thread, standing in for the arrival clock; no shard here.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
            continue;
        }

        batch.clear();
        arrived.clear();
        while batch.len() < MAX_BATCH {
            let Some((at, op)) = pending.pop_front() else {
                break;
            };
            arrived.push(at);
            batch.push(op);
        }
        let t0 = Instant::now();
        matched += store.commit(&batch)?;
        let t1 = Instant::now();
        commit_us.push(t1.duration_since(t0).as_micros() as u64);
        ack_us.extend(arrived.iter().map(|a| t1.duration_since(*a).as_micros() as u64));
        batch_sizes += batch.len();
        ops += batch.len();
    }
    let wall = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    let disk = disk_bytes(dir.path())?;
    drop(store);

    Ok(OpenResult {
        msgs_per_s: total_msgs as f64 / wall.as_secs_f64(),
        ops_per_s: ops as f64 / wall.as_secs_f64(),
        batches: commit_us.len(),
        mean_batch: batch_sizes as f64 / commit_us.len().max(1) as f64,
        commit_us: percentiles(commit_us),
        ack_us: percentiles(ack_us),
        cpu_us_per_msg: cpu.as_micros() as f64 / total_msgs as f64,
        disk_mb: disk as f64 / 1e6,
        receipts_matched: matched,
    })
}

// === closed loop ===

struct ClosedResult {
    msgs_per_s: f64,
    ops_per_s: f64,
    commit_us: (u64, u64, u64),
    cpu_us_per_msg: f64,
}

/// Batches of `CLOSED_BATCH` ops back to back: a third new inserts, a third submits of the
/// previous batch's inserts, a third receipts for the batch before that.
fn closed_loop<B: Backend>() -> Result<ClosedResult, BoxError> {
    let dir = tempfile::tempdir()?;
    let mut store = B::open(dir.path())?;
    let per_kind = CLOSED_BATCH / 3;
    let mut to_submit: Vec<MessageRecord> = Vec::new();
    let mut to_receipt: Vec<Receipt> = Vec::new();
    let mut next_seq = 0u64;
    let mut commit_us = Vec::new();
    let mut ops = 0usize;
    let cpu0 = process_cpu();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(CLOSED_SECS) {
        let now_ms = unix_ms();
        let mut batch = Vec::with_capacity(CLOSED_BATCH);
        let mut next_submit = Vec::with_capacity(per_kind);
        let mut next_receipt = Vec::with_capacity(per_kind);
        for r in to_receipt.drain(..) {
            batch.push(BenchOp::Receipt(r));
        }
        for rec in to_submit.drain(..) {
            let rec = submitted(rec, now_ms);
            next_receipt.extend(receipt_for(&rec, now_ms));
            batch.push(BenchOp::Submit(rec));
        }
        while batch.len() < CLOSED_BATCH {
            let rec = accepted(next_seq, now_ms);
            next_seq += 1;
            next_submit.push(rec.clone());
            batch.push(BenchOp::Insert(rec));
        }
        to_submit = next_submit;
        to_receipt = next_receipt;
        let t0 = Instant::now();
        store.commit(&batch)?;
        commit_us.push(t0.elapsed().as_micros() as u64);
        ops += batch.len();
    }
    let wall = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    drop(store);
    Ok(ClosedResult {
        msgs_per_s: next_seq as f64 / wall.as_secs_f64(),
        ops_per_s: ops as f64 / wall.as_secs_f64(),
        commit_us: percentiles(commit_us),
        cpu_us_per_msg: cpu.as_micros() as f64 / next_seq.max(1) as f64,
    })
}

// === driver ===

fn run<B: Backend>(secs: u64, run: usize) -> Result<(OpenResult, ClosedResult), BoxError> {
    let o = open_loop::<B>(secs)?;
    println!(
        "{:<9} run {run} open:   {:>8.0} msg/s {:>8.0} op/s  batches {:>6} (mean {:>6.1} ops)  \
         commit p50/p99/max {}/{}/{} us  ack p50/p99/max {}/{}/{} us  cpu {:.2} us/msg  \
         disk {:.1} MB  receipts matched {}",
        B::NAME,
        o.msgs_per_s,
        o.ops_per_s,
        o.batches,
        o.mean_batch,
        o.commit_us.0,
        o.commit_us.1,
        o.commit_us.2,
        o.ack_us.0,
        o.ack_us.1,
        o.ack_us.2,
        o.cpu_us_per_msg,
        o.disk_mb,
        o.receipts_matched,
    );
    let c = closed_loop::<B>()?;
    println!(
        "{:<9} run {run} closed: {:>8.0} msg/s {:>8.0} op/s  commit p50/p99/max {}/{}/{} us  \
         cpu {:.2} us/msg",
        B::NAME,
        c.msgs_per_s,
        c.ops_per_s,
        c.commit_us.0,
        c.commit_us.1,
        c.commit_us.2,
        c.cpu_us_per_msg,
    );
    Ok((o, c))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn summarize(name: &str, runs: &[(OpenResult, ClosedResult)]) {
    let m = |f: &dyn Fn(&(OpenResult, ClosedResult)) -> f64| median(runs.iter().map(f).collect());
    println!(
        "| {name} | {:.0} | {:.0} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {:.2} | {:.1} | {:.0} | \
         {:.0} / {:.0} | {:.2} |",
        m(&|r| r.0.msgs_per_s),
        m(&|r| r.0.mean_batch),
        m(&|r| r.0.commit_us.0 as f64),
        m(&|r| r.0.commit_us.1 as f64),
        m(&|r| r.0.commit_us.2 as f64),
        m(&|r| r.0.ack_us.0 as f64),
        m(&|r| r.0.ack_us.1 as f64),
        m(&|r| r.0.cpu_us_per_msg),
        m(&|r| r.0.disk_mb),
        m(&|r| r.1.msgs_per_s),
        m(&|r| r.1.commit_us.0 as f64),
        m(&|r| r.1.commit_us.1 as f64),
        m(&|r| r.1.cpu_us_per_msg),
    );
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), BoxError> {
    let secs = env_or("STATE_BENCH_SECS", 10);
    let runs = env_or("STATE_BENCH_RUNS", 3) as usize;
    let only = std::env::var("STATE_BENCH_ONLY").unwrap_or_default();
    let sample = submitted(accepted(1, unix_ms()), unix_ms());
    let delivered = {
        let mut d = sample.clone();
        if let Some(r) = receipt_for(&sample, unix_ms()) {
            d.push(r.transition());
        }
        d
    };
    println!(
        "record JSON: {} B submitted, {} B delivered; offered {} msg/s for {secs} s; \
         submit +{:?}, receipt +{:?}",
        serde_json::to_vec(&sample)?.len(),
        serde_json::to_vec(&delivered)?.len(),
        MSGS_PER_MS * 1_000,
        SUBMIT_DELAY,
        RECEIPT_DELAY,
    );

    let mut fjall_runs = Vec::new();
    let mut redb_runs = Vec::new();
    // Interleaved, so a noisy neighbour hurts both backends alike.
    for i in 1..=runs {
        if only.is_empty() || only == "fjall" {
            fjall_runs.push(run::<Fjall>(secs, i)?);
        }
        if only.is_empty() || only == "redb" {
            redb_runs.push(run::<Redb>(secs, i)?);
        }
    }
    println!();
    println!(
        "| backend | open msg/s | mean batch (ops) | commit p50 / p99 / max (µs) | \
         ack p50 / p99 (µs) | CPU µs/msg | disk MB | closed msg/s | closed commit p50 / p99 (µs) \
         | closed CPU µs/msg |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    if !fjall_runs.is_empty() {
        summarize(Fjall::NAME, &fjall_runs);
    }
    if !redb_runs.is_empty() {
        summarize(Redb::NAME, &redb_runs);
    }
    Ok(())
}
