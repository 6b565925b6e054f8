//! One contract, two backends: every case below runs against the embedded store (always) and
//! against Aerospike when `SMSGATE_TEST_AEROSPIKE=host:port` names a server (namespace from
//! `SMSGATE_TEST_AEROSPIKE_NAMESPACE`, default `smsgate`; it needs `nsup-period` > 0, see
//! docs/aerospike.md). Without it, each Aerospike case writes a SKIPPED line to stderr (past the
//! test harness's capture, so it shows in `cargo test` output) and says why.
//!
//! Each case gets fresh storage: a temporary directory, or a set of its own on the server.
//! "Restart" opens a second store on the same storage after the first is dropped.

use futures_lite::future::block_on;
use smsgate::config::ClientConfig;
use smsgate::config::Rules;
use smsgate::ids::{ClientId, InboundId, LinkId, MessageId, SmscMessageId};
use smsgate::notify::mo::{MoPart, MoRouter};
use smsgate::notify::outbox::{OutboxEntry, WebhookTargets};
use smsgate::state::aerospike::{AerospikeConfig, AerospikeStore};
use smsgate::state::embedded::EmbeddedStore;
use smsgate::state::record::{MessageRecord, Part, Status};
use smsgate::state::store::{Op, OpOutcome, StateStore};
use smsgate::state::test_util::{receipt, record};
use smsgate::state::writer::{Writer, WriterConfig};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where a case keeps its data; `open` may be called again after the last store is dropped.
trait Fixture {
    fn open_with(&mut self, targets: WebhookTargets, mo: Arc<MoRouter>) -> Box<dyn StateStore>;
    fn open(&mut self, targets: WebhookTargets) -> Box<dyn StateStore> {
        self.open_with(targets, Arc::default())
    }
    /// Opens a second store on the same data at the same time (a second node), if the
    /// backend serves several nodes.
    fn open_another(&mut self) -> Option<Box<dyn StateStore>>;
}

struct Embedded(tempfile::TempDir);

impl Fixture for Embedded {
    fn open_with(&mut self, targets: WebhookTargets, mo: Arc<MoRouter>) -> Box<dyn StateStore> {
        Box::new(EmbeddedStore::open(self.0.path()).unwrap().with_webhooks(targets).with_mo_router(mo))
    }
    fn open_another(&mut self) -> Option<Box<dyn StateStore>> {
        None
    }
}

struct Aerospike(AerospikeConfig);

impl Fixture for Aerospike {
    fn open_with(&mut self, targets: WebhookTargets, mo: Arc<MoRouter>) -> Box<dyn StateStore> {
        Box::new(AerospikeStore::open(&self.0).unwrap().with_webhooks(targets).with_mo_router(mo))
    }
    fn open_another(&mut self) -> Option<Box<dyn StateStore>> {
        Some(self.open(WebhookTargets::default()))
    }
}

/// The server under test, or `None` after saying visibly why the case is skipped.
fn aerospike(case: &str) -> Option<Aerospike> {
    let Ok(host) = std::env::var("SMSGATE_TEST_AEROSPIKE") else {
        // Straight to the stream, not through eprintln!: the harness captures that.
        let mut err = std::io::stderr();
        writeln!(
            err,
            "SKIPPED aerospike::{case}: SMSGATE_TEST_AEROSPIKE is not set (host:port of an Aerospike \
             server; see README, \"State store conformance\")"
        )
        .ok();
        return None;
    };
    let namespace = std::env::var("SMSGATE_TEST_AEROSPIKE_NAMESPACE").unwrap_or_else(|_| "smsgate".to_owned());
    // A set per case and run: cases never see each other's records or outbox.
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 1_000_000_000;
    let mut set = format!("t{stamp}_{case}");
    set.truncate(50);
    Some(Aerospike(AerospikeConfig { hosts: vec![host], namespace, set, ..AerospikeConfig::default() }))
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(#[test]
            fn $case() {
                super::$case(&mut super::Embedded(tempfile::tempdir().unwrap()));
            })*
        }
        mod aerospike {
            $(#[test]
            fn $case() {
                if let Some(mut f) = super::aerospike(stringify!($case)) {
                    super::$case(&mut f);
                }
            })*
        }
    };
}

conformance!(
    put_then_get,
    receipt_after_put_is_applied,
    receipt_before_put_is_parked_then_applied,
    receipt_ids_match_across_case_and_leading_zeros,
    each_part_takes_its_own_receipt,
    duplicate_receipt_changes_nothing,
    later_ops_in_a_batch_see_earlier_ones,
    parked_final_receipt_is_not_hidden_by_a_late_intermediate_one,
    restart_keeps_records_lookups_and_parked_receipts,
    a_final_receipt_owes_one_webhook,
    events_of_one_message_are_due_in_order_and_settled_durably,
    a_parked_receipt_applied_by_a_put_owes_its_events,
    a_backlog_waiting_for_retries_hides_no_due_event,
    a_full_client_share_keeps_new_events_as_failed,
    without_a_url_nothing_is_owed,
    concurrent_writers_from_several_shards,
    two_nodes_racing_submits_and_receipts,
    an_mo_is_kept_routed_and_owes_its_webhook_in_one_batch,
    mo_parts_wait_for_their_partners_across_batches_and_restarts,
    expired_mo_groups_are_delivered_incomplete,
);

// === builders ===

fn no_hooks() -> WebhookTargets {
    WebhookTargets::default()
}

/// Client `acme` with a webhook for `events` (TOML list), at most `max_pending` pending.
fn hooks(events: &str, max_pending: u64, overflowed: Arc<AtomicU64>) -> WebhookTargets {
    let toml = format!(
        "name = \"acme\"\napi_key = \"0123456789abcdef\"\nwebhook_url = \"http://127.0.0.1:9/h\"\nwebhook_events = {events}\n"
    );
    let client: ClientConfig = toml::from_str(&toml).unwrap();
    WebhookTargets::new(&[client], max_pending, overflowed)
}

fn statuses(rec: &MessageRecord) -> Vec<Status> {
    rec.transitions.iter().map(|t| t.status).collect()
}

fn events(entries: &[OutboxEntry]) -> Vec<String> {
    entries.iter().map(|e| e.event_id.clone()).collect()
}

fn applied(id: u64) -> OpOutcome {
    OpOutcome::ReceiptApplied(MessageId(id), ClientId::new("acme"))
}

// === the cases ===

fn put_then_get(f: &mut dyn Fixture) {
    let mut store = f.open(no_hooks());
    let rec = record(1, None);
    assert_eq!(store.apply(&[Op::Put(rec.clone())]).unwrap(), vec![OpOutcome::Stored]);
    assert_eq!(store.get(MessageId(1)).unwrap(), Some(rec));
    assert_eq!(store.get(MessageId(2)).unwrap(), None);
    assert_eq!(store.apply(&[]).unwrap(), Vec::new());
}

fn receipt_after_put_is_applied(f: &mut dyn Fixture) {
    let mut store = f.open(no_hooks());
    store.apply(&[Op::Put(record(1, None))]).unwrap();
    store.apply(&[Op::Put(record(1, Some("ab12")))]).unwrap();
    let out = store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
    assert_eq!(out, vec![applied(1)]);
    let rec = store.get(MessageId(1)).unwrap().unwrap();
    assert_eq!(rec.status, Status::Delivered);
    assert_eq!(statuses(&rec), [Status::Accepted, Status::Submitted, Status::Delivered]);
    assert_eq!(rec.transitions[2].error_code.as_deref(), Some("000"));
    assert_eq!(rec.parts[0].receipt_at_ms, Some(2_000));
}

fn receipt_before_put_is_parked_then_applied(f: &mut dyn Fixture) {
    let mut store = f.open(no_hooks());
    let out = store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
    assert_eq!(out, vec![OpOutcome::ReceiptParked]);
    store.apply(&[Op::Put(record(1, Some("ab12")))]).unwrap();
    assert_eq!(store.get(MessageId(1)).unwrap().unwrap().status, Status::Delivered);
    // The parked receipt was used up: a second one is a duplicate, not parked again.
    let out = store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
    assert_eq!(out, vec![OpOutcome::ReceiptDuplicate(MessageId(1))]);
}

fn receipt_ids_match_across_case_and_leading_zeros(f: &mut dyn Fixture) {
    let mut store = f.open(no_hooks());
    store.apply(&[Op::Put(record(1, Some("a1b"))), Op::Put(record(2, Some("0")))]).unwrap();
    let out = store
        .apply(&[Op::Receipt(receipt("000A1B", Status::Delivered)), Op::Receipt(receipt("00", Status::Expired))])
        .unwrap();
    assert_eq!(out, vec![applied(1), applied(2)]);
    let mut other_link = receipt("a1b", Status::Delivered);
    other_link.link = LinkId::new("vf-2");
    assert_eq!(store.apply(&[Op::Receipt(other_link)]).unwrap(), vec![OpOutcome::ReceiptParked]);
}

fn each_part_takes_its_own_receipt(f: &mut dyn Fixture) {
    let mut store = f.open(no_hooks());
    let mut rec = record(7, Some("p0"));
    rec.segments = 3;
    rec.parts = ["p0", "p1", "p2"]
        .iter()
        .map(|s| Part {
            smsc_message_id: Some(SmscMessageId::new(s)),
            status: Some(Status::Submitted),
            ..Part::default()
        })
        .collect();
    // One part's receipt arrives before the submit is recorded.
    store.apply(&[Op::Receipt(receipt("p2", Status::Delivered))]).unwrap();
    store.apply(&[Op::Put(rec)]).unwrap();
    store.apply(&[Op::Receipt(receipt("p0", Status::Delivered))]).unwrap();
    assert_eq!(store.get(MessageId(7)).unwrap().unwrap().status, Status::Submitted, "one part still open");
    store.apply(&[Op::Receipt(receipt("p1", Status::Undeliverable))]).unwrap();
    let rec = store.get(MessageId(7)).unwrap().unwrap();
    assert_eq!(rec.status, Status::Undeliverable);
    assert!(rec.parts.iter().all(|p| p.receipt_at_ms.is_some()));
}

fn duplicate_receipt_changes_nothing(f: &mut dyn Fixture) {
    let mut store = f.open(no_hooks());
    store.apply(&[Op::Put(record(1, Some("ab12")))]).unwrap();
    store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
    let before = store.get(MessageId(1)).unwrap();
    let out = store.apply(&[Op::Receipt(receipt("ab12", Status::Undeliverable))]).unwrap();
    assert_eq!(out, vec![OpOutcome::ReceiptDuplicate(MessageId(1))]);
    assert_eq!(store.get(MessageId(1)).unwrap(), before);
}

fn later_ops_in_a_batch_see_earlier_ones(f: &mut dyn Fixture) {
    let mut store = f.open(no_hooks());
    let out = store
        .apply(&[
            Op::Receipt(receipt("p1", Status::Delivered)),
            Op::Put(record(1, None)),
            Op::Put(record(1, Some("p1"))),
            Op::Put(record(2, Some("ab12"))),
            Op::Receipt(receipt("ab12", Status::Expired)),
            Op::Receipt(receipt("ab12", Status::Delivered)),
        ])
        .unwrap();
    assert_eq!(
        out,
        vec![
            OpOutcome::ReceiptParked,
            OpOutcome::Stored,
            OpOutcome::StoredWithReceipts(vec![receipt("p1", Status::Delivered)]),
            OpOutcome::Stored,
            applied(2),
            OpOutcome::ReceiptDuplicate(MessageId(2)),
        ]
    );
    assert_eq!(store.get(MessageId(1)).unwrap().unwrap().status, Status::Delivered);
    assert_eq!(store.get(MessageId(2)).unwrap().unwrap().status, Status::Expired);
}

fn parked_final_receipt_is_not_hidden_by_a_late_intermediate_one(f: &mut dyn Fixture) {
    let mut store = f.open(no_hooks());
    store
        .apply(&[Op::Receipt(receipt("ab12", Status::Delivered)), Op::Receipt(receipt("ab12", Status::Unknown))])
        .unwrap();
    store.apply(&[Op::Put(record(1, Some("ab12")))]).unwrap();
    assert_eq!(store.get(MessageId(1)).unwrap().unwrap().status, Status::Delivered);
}

fn restart_keeps_records_lookups_and_parked_receipts(f: &mut dyn Fixture) {
    {
        let mut store = f.open(no_hooks());
        store
            .apply(&[
                Op::Put(record(1, Some("ab12"))),
                Op::Receipt(receipt("ab12", Status::Delivered)),
                Op::Receipt(receipt("later", Status::Delivered)),
                Op::Put(record(3, None)),
            ])
            .unwrap();
    }
    let mut store = f.open(no_hooks());
    assert_eq!(store.get(MessageId(1)).unwrap().unwrap().status, Status::Delivered);
    assert_eq!(store.get(MessageId(3)).unwrap(), Some(record(3, None)));
    let out =
        store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered)), Op::Put(record(2, Some("later")))]).unwrap();
    assert_eq!(
        out,
        vec![
            OpOutcome::ReceiptDuplicate(MessageId(1)),
            OpOutcome::StoredWithReceipts(vec![receipt("later", Status::Delivered)])
        ]
    );
    assert_eq!(store.get(MessageId(2)).unwrap().unwrap().status, Status::Delivered);
}

fn a_final_receipt_owes_one_webhook(f: &mut dyn Fixture) {
    let mut store = f.open(hooks("[\"final\"]", 1_000, Arc::default()));
    store.apply(&[Op::Put(record(1, Some("ab12")))]).unwrap();
    let reader = store.outbox_reader();
    assert!(reader.due_webhooks(u64::MAX, 10).unwrap().is_empty(), "submitted not asked for");
    store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
    store.apply(&[Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
    let due = reader.due_webhooks(2_000, 10).unwrap();
    assert_eq!(events(&due), [format!("{}.final", MessageId(1))], "duplicates owe nothing");
    assert_eq!((due[0].url.as_str(), due[0].attempts), ("http://127.0.0.1:9/h", 0));
    let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
    assert_eq!(body["status"], "delivered");
    assert_eq!(body["client_ref"], "ref-1");
    assert!(reader.due_webhooks(1_999, 10).unwrap().is_empty(), "not due before it was owed");
    assert_eq!(reader.pending().unwrap(), 1);
}

fn events_of_one_message_are_due_in_order_and_settled_durably(f: &mut dyn Fixture) {
    let targets = || hooks("[\"submitted\", \"final\"]", 1_000, Arc::default());
    let (first, second) = {
        let mut store = f.open(targets());
        store
            .apply(&[
                Op::Put(record(1, Some("a"))),
                Op::Put(record(2, Some("b"))),
                Op::Receipt(receipt("a", Status::Delivered)),
            ])
            .unwrap();
        let due = store.outbox_reader().due_webhooks(5_000, 10).unwrap();
        // Message 1's final waits behind its submitted event.
        let m1 = format!("{}.submitted", MessageId(1));
        let m2 = format!("{}.submitted", MessageId(2));
        assert_eq!(events(&due), [m1, m2]);
        assert!(due[0].seq < due[1].seq);
        store.apply(&[Op::WebhookRetry { seq: due[0].seq, next_at_ms: 9_000 }, Op::WebhookDone(due[1].seq)]).unwrap();
        assert!(
            store.outbox_reader().due_webhooks(5_000, 10).unwrap().is_empty(),
            "1.final is held behind 1.submitted"
        );
        let later = store.outbox_reader().due_webhooks(9_000, 10).unwrap();
        assert_eq!((later[0].seq, later[0].attempts), (due[0].seq, 1));
        (due[0].seq, due[1].seq)
    };
    let mut store = f.open(targets());
    store.apply(&[Op::WebhookDone(first)]).unwrap();
    let due = store.outbox_reader().due_webhooks(9_000, 10).unwrap();
    assert_eq!(events(&due), [format!("{}.final", MessageId(1))]);
    let final_seq = due[0].seq;
    assert!(final_seq > second);
    store.apply(&[Op::WebhookFailed(final_seq), Op::Receipt(receipt("b", Status::Expired))]).unwrap();
    let due = store.outbox_reader().due_webhooks(9_000, 10).unwrap();
    assert_eq!(events(&due), [format!("{}.final", MessageId(2))]);
    assert!(due[0].seq > final_seq, "sequence numbers never go back");
    assert_eq!(store.outbox_reader().pending().unwrap(), 1);
}

fn a_parked_receipt_applied_by_a_put_owes_its_events(f: &mut dyn Fixture) {
    let mut store = f.open(hooks("[\"submitted\", \"final\"]", 1_000, Arc::default()));
    store.apply(&[Op::Receipt(receipt("ab12", Status::Undeliverable)), Op::Put(record(1, Some("ab12")))]).unwrap();
    let reader = store.outbox_reader();
    let due = reader.due_webhooks(u64::MAX, 10).unwrap();
    assert_eq!(events(&due), [format!("{}.submitted", MessageId(1))], "the final waits behind the submitted");
    store.apply(&[Op::WebhookDone(due[0].seq)]).unwrap();
    let due = reader.due_webhooks(u64::MAX, 10).unwrap();
    let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
    assert_eq!(body["status"], "undeliverable");
}

fn a_backlog_waiting_for_retries_hides_no_due_event(f: &mut dyn Fixture) {
    let mut store = f.open(hooks("[\"final\"]", 1_000, Arc::default()));
    let mut ops = Vec::new();
    for i in 0..500u64 {
        ops.push(Op::Put(record(i, Some(&format!("s{i}")))));
        ops.push(Op::Receipt(receipt(&format!("s{i}"), Status::Delivered)));
    }
    store.apply(&ops).unwrap();
    let reader = store.outbox_reader();
    let backlog = reader.due_webhooks(2_000, 1_000).unwrap();
    assert_eq!(backlog.len(), 500);
    let retries: Vec<Op> = backlog.iter().map(|e| Op::WebhookRetry { seq: e.seq, next_at_ms: 60_000 }).collect();
    store.apply(&retries).unwrap();
    store.apply(&[Op::Put(record(900, Some("late"))), Op::Receipt(receipt("late", Status::Delivered))]).unwrap();
    let due = reader.due_webhooks(2_000, 1).unwrap();
    assert_eq!(due.iter().map(|e| e.message_id).collect::<Vec<_>>(), [MessageId(900)]);
    assert_eq!(reader.pending().unwrap(), 501);
    assert_eq!(reader.due_webhooks(60_000, 1_000).unwrap().len(), 501);
}

fn a_full_client_share_keeps_new_events_as_failed(f: &mut dyn Fixture) {
    let overflowed = Arc::new(AtomicU64::new(0));
    let mut store = f.open(hooks("[\"final\"]", 2, Arc::clone(&overflowed)));
    let mut ops = Vec::new();
    for i in 0..3u64 {
        ops.push(Op::Put(record(i, Some(&format!("s{i}")))));
        ops.push(Op::Receipt(receipt(&format!("s{i}"), Status::Delivered)));
    }
    store.apply(&ops).unwrap();
    let reader = store.outbox_reader();
    assert_eq!(reader.pending().unwrap(), 2);
    assert_eq!(overflowed.load(Ordering::Relaxed), 1);
    // A settled event frees its place.
    let due = reader.due_webhooks(u64::MAX, 10).unwrap();
    store.apply(&[Op::WebhookDone(due[0].seq)]).unwrap();
    store.apply(&[Op::Put(record(9, Some("s9"))), Op::Receipt(receipt("s9", Status::Delivered))]).unwrap();
    assert_eq!(reader.pending().unwrap(), 2);
    assert_eq!(overflowed.load(Ordering::Relaxed), 1);
}

fn without_a_url_nothing_is_owed(f: &mut dyn Fixture) {
    let mut store = f.open(no_hooks());
    store.apply(&[Op::Put(record(1, Some("ab12"))), Op::Receipt(receipt("ab12", Status::Delivered))]).unwrap();
    assert!(store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap().is_empty());
    let mut rec = record(2, Some("cd34"));
    rec.callback_url = Some("http://127.0.0.1:9/own".to_owned());
    store.apply(&[Op::Put(rec), Op::Receipt(receipt("cd34", Status::Delivered))]).unwrap();
    let due = store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap();
    assert_eq!(due.iter().map(|e| e.url.as_str()).collect::<Vec<_>>(), ["http://127.0.0.1:9/own"]);
}

/// Four threads standing for four shards, each with its own messages and receipts, some
/// receipts before their submit, through the group-commit writer.
fn concurrent_writers_from_several_shards(f: &mut dyn Fixture) {
    let store = f.open(no_hooks());
    let (writer, handle) = Writer::spawn(store, WriterConfig { max_batch: 256, queue_capacity: 4_096 }).unwrap();
    let shards: Vec<_> = (0..4u64)
        .map(|shard| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    let id = shard * 10_000 + i;
                    let smsc = format!("c{id:x}");
                    if i % 5 == 0 {
                        let out = block_on(handle.receipt(receipt(&smsc, Status::Delivered))).unwrap();
                        assert_eq!(out, OpOutcome::ReceiptParked);
                    }
                    let puts = [handle.put(record(id, None)), handle.put(record(id, Some(&smsc)))];
                    for p in puts {
                        block_on(p).unwrap();
                    }
                    if i % 5 != 0 {
                        assert_eq!(block_on(handle.receipt(receipt(&smsc, Status::Delivered))).unwrap(), applied(id));
                    }
                    let rec = block_on(handle.get(MessageId(id))).unwrap().unwrap();
                    assert_eq!(rec.status, Status::Delivered, "message {id}");
                }
            })
        })
        .collect();
    for s in shards {
        s.join().unwrap();
    }
    let stats = writer.stats();
    assert_eq!(stats.ops.load(Ordering::Relaxed), 4 * 100 * 3);
    assert_eq!(stats.failed_batches.load(Ordering::Relaxed), 0);
    writer.shutdown().unwrap();
    let store = f.open(no_hooks());
    for shard in 0..4u64 {
        assert_eq!(store.get(MessageId(shard * 10_000 + 99)).unwrap().unwrap().status, Status::Delivered);
    }
}

/// Two nodes on one store: one records submits while the other gets their receipts at the
/// same moment (the receipt node follows the batch the submit node is writing), so receipts
/// are parked while the submit that names their message is being written. Every message must
/// end delivered: none may stay parked behind a lookup that already names its message.
fn two_nodes_racing_submits_and_receipts(f: &mut dyn Fixture) {
    let mut a = f.open(no_hooks());
    let Some(mut b) = f.open_another() else {
        writeln!(
            std::io::stderr(),
            "not applicable to this backend: two_nodes_racing_submits_and_receipts (one node per embedded store)"
        )
        .ok();
        return;
    };
    const N: u64 = 2_000;
    const BATCH: u64 = 100;
    let smsc = |i: u64| format!("r{i:x}");
    // The first message of the batch the submit node is writing now.
    let writing = Arc::new(AtomicU64::new(0));
    let submits = {
        let writing = Arc::clone(&writing);
        std::thread::spawn(move || {
            for start in (0..N).step_by(BATCH as usize) {
                writing.store(start, Ordering::SeqCst);
                let ops: Vec<Op> = (start..start + BATCH).map(|i| Op::Put(record(i, Some(&smsc(i))))).collect();
                a.apply(&ops).unwrap();
            }
            writing.store(N, Ordering::SeqCst);
            a
        })
    };
    let (mut next, mut parked) = (0, 0);
    let mut sent = vec![false; N as usize];
    while next < N {
        let start = writing.load(Ordering::SeqCst);
        if next < start {
            next = start; // fell behind a batch: its receipts come at the end
        }
        if next >= N {
            break;
        }
        if next >= start + BATCH && start < N {
            std::thread::yield_now();
            continue;
        }
        let out = b.apply(&[Op::Receipt(receipt(&smsc(next), Status::Delivered))]).unwrap();
        parked += usize::from(out[0] == OpOutcome::ReceiptParked);
        sent[next as usize] = true;
        next += 1;
    }
    let a = submits.join().unwrap();
    // Receipts the loop skipped arrive now, after their submits; each receipt comes once.
    let missed: Vec<Op> =
        (0..N).filter(|&i| !sent[i as usize]).map(|i| Op::Receipt(receipt(&smsc(i), Status::Delivered))).collect();
    let sent_late = missed.len();
    b.apply(&missed).unwrap();
    let open: Vec<u64> =
        (0..N).filter(|&i| a.get(MessageId(i)).unwrap().is_none_or(|r| r.status != Status::Delivered)).collect();
    writeln!(std::io::stderr(), "two nodes: {parked} receipts parked during the race, {sent_late} sent after").ok();
    assert!(
        open.is_empty(),
        "{} of {N} messages not delivered (parked: {parked}): {:?}",
        open.len(),
        &open[..open.len().min(10)]
    );
}

// === inbound messages (MO) ===

/// Client `acme` with an `mo_url`, and a route of `12345` to it.
fn mo_setup(f: &mut dyn Fixture) -> (Box<dyn StateStore>, Arc<MoRouter>) {
    let client: ClientConfig =
        toml::from_str("name = \"acme\"\napi_key = \"0123456789abcdef\"\nmo_url = \"http://127.0.0.1:9/mo\"\n")
            .unwrap();
    let rules: Rules = toml::from_str("[[mo_routes]]\nto = \"12345\"\nclient = \"acme\"\n").unwrap();
    let router = Arc::new(MoRouter::new(std::slice::from_ref(&client), &rules.mo_routes, Arc::default()));
    let store = f.open_with(WebhookTargets::new(&[client], 1_000, Arc::default()), Arc::clone(&router));
    (store, router)
}

fn mo(id: u64, to: &str, part: Option<(u8, u8)>, text: &str, at: u64) -> Op {
    Op::Inbound(MoPart {
        id: InboundId(id),
        link: LinkId::new("100"),
        from: "4915112345678".into(),
        to: to.into(),
        data_coding: 0,
        part_of: part.map(|(total, seq)| smsgate::smpp::concat::PartOf { reference: 42, total, seq }),
        octets: smsgate::smpp::encoding::encode(text).bytes,
        received_at_ms: at,
    })
}

fn an_mo_is_kept_routed_and_owes_its_webhook_in_one_batch(f: &mut dyn Fixture) {
    let (mut store, router) = mo_setup(f);
    let out = store.apply(&[mo(7, "12345", None, "Hello @ €", 1_000), mo(8, "99999", None, "lost?", 1_001)]).unwrap();
    let OpOutcome::InboundKept(m) = &out[0] else { panic!("{out:?}") };
    assert_eq!((m.text.as_deref(), m.client.as_ref().map(|c| c.as_str())), (Some("Hello @ €"), Some("acme")));
    let OpOutcome::InboundKept(unrouted) = &out[1] else { panic!("{out:?}") };
    assert_eq!(unrouted.client, None);
    assert_eq!(store.get_inbound(InboundId(8)).unwrap().unwrap().text.as_deref(), Some("lost?"), "kept");
    assert_eq!(store.get_inbound(InboundId(9)).unwrap(), None);
    let due = store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap();
    assert_eq!(due.len(), 1, "the unrouted one is posted nowhere");
    assert_eq!(
        (due[0].url.as_str(), due[0].event_id.clone()),
        ("http://127.0.0.1:9/mo", format!("{}.inbound", InboundId(7)))
    );
    let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
    assert_eq!((body["text"].as_str(), body["to"].as_str()), (Some("Hello @ €"), Some("12345")));
    let s = router.stats();
    assert_eq!(
        (s.parts.load(Ordering::Relaxed), s.messages.load(Ordering::Relaxed), s.unrouted.load(Ordering::Relaxed)),
        (2, 2, 1)
    );
}

fn mo_parts_wait_for_their_partners_across_batches_and_restarts(f: &mut dyn Fixture) {
    {
        let (mut store, _) = mo_setup(f);
        let out =
            store.apply(&[mo(3, "12345", Some((3, 3)), "!", 10), mo(1, "12345", Some((3, 1)), "Hel", 11)]).unwrap();
        assert_eq!(out, vec![OpOutcome::InboundPartKept, OpOutcome::InboundPartKept]);
        assert_eq!(store.outbox_reader().oldest_inbound_group().unwrap(), Some(10));
    }
    let (mut store, router) = mo_setup(f);
    let out = store.apply(&[mo(9, "12345", Some((3, 1)), "XXX", 12)]).unwrap();
    assert_eq!(out, vec![OpOutcome::InboundPartDuplicate]);
    let out = store.apply(&[mo(2, "12345", Some((3, 2)), "lo", 13)]).unwrap();
    let OpOutcome::InboundKept(m) = &out[0] else { panic!("{out:?}") };
    assert_eq!((m.id, m.text.as_deref(), m.incomplete), (InboundId(1), Some("Hello!"), false));
    assert_eq!(store.outbox_reader().oldest_inbound_group().unwrap(), None, "the group is gone");
    assert_eq!(router.stats().duplicate_parts.load(Ordering::Relaxed), 1);
}

fn expired_mo_groups_are_delivered_incomplete(f: &mut dyn Fixture) {
    let (mut store, _) = mo_setup(f);
    store.apply(&[mo(1, "12345", Some((3, 1)), "Hel", 100), mo(5, "12345", Some((2, 2)), "late", 500)]).unwrap();
    let out = store.apply(&[Op::InboundExpire { before_ms: 200 }]).unwrap();
    assert_eq!(out, vec![OpOutcome::InboundExpired(1)]);
    let m = store.get_inbound(InboundId(1)).unwrap().unwrap();
    assert_eq!(
        (m.text.as_deref(), m.incomplete, m.parts_received.clone(), m.completed_at_ms),
        (Some("Hel"), true, vec![1], 200)
    );
    assert_eq!(store.outbox_reader().oldest_inbound_group().unwrap(), Some(500), "the younger group waits on");
    let due = store.outbox_reader().due_webhooks(u64::MAX, 10).unwrap();
    let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
    assert_eq!(
        (body["incomplete"].as_bool(), body["segments"]["received"].clone()),
        (Some(true), serde_json::json!([1]))
    );
    assert_eq!(store.apply(&[Op::InboundExpire { before_ms: 200 }]).unwrap(), vec![OpOutcome::InboundExpired(0)]);
}
