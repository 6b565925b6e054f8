//! Message history on a real PostgreSQL started by the test (`support/postgres.rs`), with
//! smsgate and smsc-sim as real processes: migrations from an empty database, batching, the
//! two read endpoints with their access rules and errors, an outage with spill and drain
//! (nothing lost, nothing doubled, across a restart of smsgate), and retention.
#![allow(clippy::disallowed_methods)] // test threads wait with blocking sleeps

#[path = "support/postgres.rs"]
mod pg;
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use pg::PgServer;
use receiver::Receiver;
use serde_json::{json, Value};
use smsgate::history::config::HistoryConfig;
use smsgate::history::writer::PgWriter;
use smsgate::history::{EventKind, HistoryEvent};
use support::*;

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

fn history_config(pg: &PgServer, dir: &std::path::Path, extra: &str) -> GatewayConfig {
    let mut cfg = GatewayConfig::one_link(0);
    cfg.extra_config = format!(
        "[admin]\napi_key = \"{ADMIN_KEY}\"\n\n[history]\npostgres_url = \"{}\"\nspill_dir = \"{}\"\nflush_interval_ms = 100\nretry_initial_ms = 100\nretry_max_ms = 1000\n{extra}\n",
        pg.url(),
        dir.join("spill").display()
    );
    cfg
}

fn history_metrics(gw: &Gateway) -> String {
    let mut r = agent().get(&gw.url("/metrics")).call().expect("metrics");
    let text = r.body_mut().read_to_string().expect("metrics text");
    text.lines().filter(|l| l.starts_with("smsgate_history")).collect::<Vec<_>>().join("\n")
}

/// Waits until every message in `ids` has its final receipt applied.
fn all_delivered(gw: &Gateway, ids: &[String]) {
    let a = agent();
    for id in ids {
        wait_until(30, "the receipt applied", || get_message(&a, gw, API_KEY, id).1["status"] == "delivered");
    }
}

fn count(pg: &mut postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).expect("count query").get(0)
}

fn history_get(gw: &Gateway, key: &str, path: &str) -> (u16, Value) {
    let mut r =
        agent().get(&gw.url(path)).header("Authorization", &format!("Bearer {key}")).call().expect("history request");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

#[test]
fn migrations_batches_and_queries() {
    let pg = PgServer::start();
    let mut sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = history_config(&pg, dir.path(), "batch_max = 100\n");
    cfg.links = vec![("100".into(), sim.port)];
    // acme's delivery reports go to a real receiver: history records each one taken.
    let receiver = Receiver::start(0, 0, false);
    cfg.extra_config.push_str("\n[webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\npoll_interval_ms = 50\n");
    cfg.client_extra =
        format!("webhook_url = \"{}\"\nwebhook_secret = \"whsec-0123456789abcdef\"\n", receiver.url("/hook"));
    let gw = Gateway::start(dir.path(), &cfg);
    let mut db = pg.client();

    // Migrations from an empty database: the version table and the partitioned table.
    wait_until(20, "history writer connected", || metric(&gw, "smsgate_history_up") == Some(1.0));
    assert_eq!(count(&mut db, "SELECT count(*) FROM smsgate_history_migrations WHERE version = 1"), 1);
    assert_eq!(count(&mut db, "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid WHERE c.relname = 'history_events'"), 1);

    let a = agent();
    let n = 300;
    for i in 0..n {
        let to = if i % 10 == 0 { "+4915100000001".to_owned() } else { format!("+49151{:07}", i) };
        let (status, body) = submit(&a, &gw, API_KEY, &message(&to, "100"));
        assert_eq!(status, 200, "{body}");
    }
    for _ in 0..5 {
        let (status, _) = submit(&a, &gw, OTHER_KEY, &message("+4917000000000", "100"));
        assert_eq!(status, 200);
    }
    // Refusals: an unknown link (route) and an invalid number (parse), both attributed to acme.
    let (status, _) = submit(&a, &gw, API_KEY, &message("+4915100000002", "nope"));
    assert_eq!(status, 404);
    let (status, _) = submit(&a, &gw, API_KEY, &message("12", "100"));
    assert_eq!(status, 400);

    let expected_receipts = i64::from(n + 5);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(&mut db, "SELECT count(*) FROM history_events WHERE kind = 'receipt'") != expected_receipts {
        if std::time::Instant::now() > deadline {
            let kinds: Vec<(String, i64)> = db
                .query("SELECT kind, count(*) FROM history_events GROUP BY kind", &[])
                .expect("kinds")
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            panic!("not every event in PostgreSQL: {kinds:?}\n{}\n{}", history_metrics(&gw), gw.log());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(count(&mut db, "SELECT count(*) FROM history_events WHERE kind = 'accepted'"), i64::from(n + 5));
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM history_events WHERE kind = 'submitted' AND status = 'submitted'"),
        i64::from(n + 5)
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM history_events WHERE kind = 'refused'"), 2);
    assert_eq!(
        count(&mut db, "SELECT count(*) FROM history_events WHERE kind = 'refused' AND layer = 'route' AND reason = 'unknown_link' AND client = 'acme'"),
        1
    );
    // Batched: far fewer commits than events.
    let events = count(&mut db, "SELECT count(*) FROM history_events");
    let batches = metric(&gw, "smsgate_history_batches_total").unwrap_or(-1.0);
    assert!(batches >= 1.0 && batches * 5.0 < events as f64, "{batches} batches for {events} events");
    assert_eq!(metric(&gw, "smsgate_history_written_total").unwrap_or(-1.0) as i64, events);

    // A client sees its own messages, newest first, page by page with the cursor.
    let mut seen = std::collections::HashSet::new();
    let mut path = "/api/v1/history/messages?limit=70".to_owned();
    for page in 0.. {
        assert!(page <= n / 70 + 2, "the cursor does not end: page {page} at {path}");
        let (status, body) = history_get(&gw, API_KEY, &path);
        assert_eq!(status, 200, "{body}");
        for m in body["messages"].as_array().expect("messages") {
            assert_eq!(m["client"], "acme");
            assert!(seen.insert(m["event_id"].as_str().expect("event id").to_owned()), "a row twice: {m}");
        }
        match body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/history/messages?limit=70&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), n as usize + 2, "every accepted message and both refusals, once");

    // A delivered message shows its lifecycle.
    let (_, body) = history_get(&gw, API_KEY, "/api/v1/history/messages?to=%2B4915100000001&limit=500");
    let rows = body["messages"].as_array().expect("messages");
    assert_eq!(rows.len(), 30);
    let first = &rows[0];
    assert_eq!(first["to"], "+4915100000001");
    assert_eq!(first["status"], "delivered", "{first}");
    let kinds: Vec<&str> =
        first["events"].as_array().expect("events").iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds[..3], ["accepted", "submitted", "receipt"]);
    assert!(kinds[3..].iter().all(|k| *k == "webhook_delivered"), "{kinds:?}");

    // Filters: status, and the other client's rows for the admin only.
    let (_, body) = history_get(&gw, API_KEY, "/api/v1/history/messages?status=refused");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(2));
    assert!(body["messages"][0]["layer"].is_string());
    let (status, body) = history_get(&gw, OTHER_KEY, "/api/v1/history/messages?client=acme");
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("history_forbidden")));
    let (_, body) = history_get(&gw, OTHER_KEY, "/api/v1/history/messages");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(5));
    let (_, body) = history_get(&gw, ADMIN_KEY, "/api/v1/history/messages?limit=500");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(n as usize + 7));

    // An inbound message (MO) matching no route: kept in history without a client, seen by the
    // admin.
    sim.control("mo to=12345 text=hello history");
    wait_until(20, "the MO in history", || {
        count(&mut db, "SELECT count(*) FROM history_events WHERE kind = 'mo' AND status = 'received' AND detail = '12345' AND client IS NULL") == 1
    });
    let (_, body) = history_get(&gw, ADMIN_KEY, "/api/v1/history/messages?status=received");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["messages"][0]["kind"], "mo");

    // Usage per minute adds up to what was sent.
    let (status, body) = history_get(&gw, API_KEY, "/api/v1/history/usage?bucket=minute");
    assert_eq!(status, 200, "{body}");
    let sum =
        |k: &str| body["buckets"].as_array().expect("buckets").iter().map(|b| b[k].as_i64().unwrap_or(0)).sum::<i64>();
    assert_eq!((sum("accepted"), sum("refused"), sum("delivered")), (i64::from(n), 2, i64::from(n)));
    let (_, body) = history_get(&gw, ADMIN_KEY, "/api/v1/history/usage?bucket=day");
    assert_eq!(body["buckets"][0]["accepted"], json!(n + 5));
    assert_eq!(body["buckets"][0]["mo"], json!(1));

    // Bad input: the parameter is named, nothing is queried.
    for (path, field) in [
        ("/api/v1/history/messages?to=123", "to"),
        ("/api/v1/history/messages?status=lost", "status"),
        ("/api/v1/history/messages?cursor=zz", "cursor"),
        ("/api/v1/history/usage?bucket=week", "bucket"),
        ("/api/v1/history/usage?bucket=minute&from=0", "from"),
    ] {
        let (status, body) = history_get(&gw, API_KEY, path);
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_parameter")), "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}");
    }
    let (status, _) = history_get(&gw, "no-such-key-0123456789", "/api/v1/history/messages");
    assert_eq!(status, 401);

    // Every delivery report the receiver took is in history once, as `webhook_delivered`.
    wait_until(30, "webhook events in history", || {
        count(&mut db, "SELECT count(*) FROM history_events WHERE kind = 'webhook_delivered' AND client = 'acme' AND detail = 'final'") == i64::from(n)
    });
    assert_eq!(receiver.delivered().len(), n as usize);

    // A restart applies no migration twice.
    assert_eq!(gw.terminate().code(), Some(0));
    let gw = Gateway::start(dir.path(), &cfg);
    wait_until(20, "history writer connected again", || metric(&gw, "smsgate_history_up") == Some(1.0));
    assert_eq!(count(&mut db, "SELECT count(*) FROM smsgate_history_migrations"), 1);
}

#[test]
fn an_outage_spills_and_drains_without_loss_or_doubles() {
    let mut pg = PgServer::start();
    let sim = Sim::start(&["--dlr-delay-ms", "10"]);
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = history_config(&pg, dir.path(), "batch_max = 50\nmemory_events = 100\nconnect_timeout_ms = 500\n");
    cfg.links = vec![("100".into(), sim.port)];
    let gw = Gateway::start(dir.path(), &cfg);
    wait_until(20, "history writer connected", || metric(&gw, "smsgate_history_up") == Some(1.0));

    pg.stop();
    let a = agent();
    let mut ids = Vec::new();
    for i in 0..200 {
        let (status, body) = submit(&a, &gw, API_KEY, &message(&format!("+49160{:07}", i), "100"));
        assert_eq!(status, 200, "PostgreSQL down never refuses a message: {body}");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    wait_until(20, "events spilled to disk", || metric(&gw, "smsgate_history_spilled_total").is_some_and(|v| v > 0.0));
    assert_eq!(metric(&gw, "smsgate_history_up"), Some(0.0));
    assert!(gw.log().contains("spilling events to disk"), "the outage is logged");
    // PostgreSQL down: the history endpoints say so.
    let (status, body) = history_get(&gw, API_KEY, "/api/v1/history/messages");
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("history_unavailable")), "{body}");
    // Every receipt applied before the restart, so each message has exactly one to record.
    all_delivered(&gw, &ids);

    // smsgate restarts during the outage: the spill files are kept and sent later.
    assert_eq!(gw.terminate().code(), Some(0));
    let spill_files = std::fs::read_dir(dir.path().join("spill")).expect("spill dir").count();
    assert!(spill_files > 0, "spill files after shutdown");
    let gw = Gateway::start(dir.path(), &cfg);
    for i in 200..300 {
        let (status, body) = submit(&a, &gw, API_KEY, &message(&format!("+49160{:07}", i), "100"));
        assert_eq!(status, 200, "{body}");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    all_delivered(&gw, &ids);
    assert!(metric(&gw, "smsgate_history_backlog_events{where=\"spill\"}").is_some_and(|v| v > 0.0));

    pg.restart();
    let mut db = pg.client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !(metric(&gw, "smsgate_history_backlog_events{where=\"spill\"}") == Some(0.0)
        && metric(&gw, "smsgate_history_backlog_events{where=\"memory\"}") == Some(0.0))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "backlog not drained in 120 s; metrics:\n{}\nlog:\n{}",
            history_metrics(&gw),
            gw.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(gw.log().contains("PostgreSQL takes writes again"));
    // Nothing lost, nothing doubled: every message once per kind.
    for kind in ["accepted", "submitted", "receipt"] {
        let sql = format!("SELECT count(*) FROM history_events WHERE kind = '{kind}'");
        assert_eq!(count(&mut db, &sql), 300, "{kind}");
        let distinct = format!("SELECT count(DISTINCT message_id) FROM history_events WHERE kind = '{kind}'");
        assert_eq!(count(&mut db, &distinct), 300, "{kind}");
    }
    let files = std::fs::read_dir(dir.path().join("spill")).expect("spill dir").count();
    assert_eq!(files, 0, "spill files deleted once written");
    let (_, body) = history_get(&gw, API_KEY, "/api/v1/history/messages?limit=500");
    let listed: std::collections::HashSet<&str> =
        body["messages"].as_array().expect("rows").iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.iter().all(|id| listed.contains(id.as_str())), "every answered id is in history");
}

#[test]
fn writes_are_idempotent_and_retention_drops_old_days() {
    let pg = PgServer::start();
    let cfg = HistoryConfig { postgres_url: pg.url(), retention_days: 7, ..HistoryConfig::default() };
    let mut w = PgWriter::connect(&cfg).expect("connect and migrate");
    let day = 86_400_000u64;
    let now = 20_791 * day + 3_600_000; // 2026-12-04 01:00 UTC
    let event = |at_ms| {
        let mut e = HistoryEvent::new(EventKind::Refused, at_ms);
        e.layer = Some("l1".into());
        e.reason = Some("link:100\twith a tab".into());
        e
    };
    let batch: Vec<HistoryEvent> = [now, now - day, now - 6 * day, now - 9 * day]
        .iter()
        .flat_map(|&t| (0..5).map(move |i| event(t + i)))
        .collect();
    let first = w.write(&batch, now - 5 * day).expect("write");
    assert_eq!((first.inserted, first.duplicates, first.expired), (20, 0, 0));
    // The same batch again (a retry after a lost acknowledgement): nothing inserted twice.
    let again = w.write(&batch, now - 5 * day).expect("write again");
    assert_eq!((again.inserted, again.duplicates), (0, 20));

    let mut db = pg.client();
    let partitions = |db: &mut postgres::Client| -> Vec<String> {
        let mut v: Vec<String> = db
            .query("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'history_events'", &[])
            .expect("partitions")
            .iter()
            .map(|r| r.get(0))
            .collect();
        v.sort();
        v
    };
    assert_eq!(partitions(&mut db).len(), 4, "one partition per day");
    let dropped = w.drop_expired(now).expect("retention");
    assert_eq!(dropped, ["history_events_20261125"]);
    assert_eq!(partitions(&mut db), ["history_events_20261128", "history_events_20261203", "history_events_20261204"]);
    assert_eq!(count(&mut db, "SELECT count(*) FROM history_events"), 15);
    assert_eq!(count(&mut db, "SELECT count(*) FROM history_events WHERE reason = 'link:100\twith a tab'"), 15);
    // An event older than the retention is not written back.
    let late = w.write(&[event(now - 9 * day)], now).expect("write late");
    assert_eq!((late.inserted, late.expired), (0, 1));
    assert_eq!(partitions(&mut db).len(), 3);
}

/// PostgreSQL that accepts connections and never answers (a plain TCP listener: a real server
/// cannot be made to hang on purpose): history queries queue up to their bound and then get
/// 503 `history_busy`; those queued get 503 `history_unavailable` once their wait (connect +
/// statement timeouts + 1 s) is over; submits are not slowed.
#[test]
fn a_hanging_postgres_costs_history_queries_only() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in silent.incoming().flatten() {
            keep.lock().expect("lock").push(conn);
        }
    });
    let sim = Sim::start(&[]);
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = GatewayConfig::one_link(sim.port);
    cfg.extra_config = format!(
        "[history]\npostgres_url = \"host=127.0.0.1 port={port} user=postgres\"\nspill_dir = \"{}\"\nconnect_timeout_ms = 200\nstatement_timeout_ms = 1000\n",
        dir.path().join("spill").display()
    );
    let gw = Gateway::start(dir.path(), &cfg);
    let url = gw.url("/api/v1/history/messages");
    let askers: Vec<_> = (0..80)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut r = agent()
                    .get(&url)
                    .header("Authorization", &format!("Bearer {API_KEY}"))
                    .call()
                    .expect("history request");
                let body: Value = r.body_mut().read_json().unwrap_or(Value::Null);
                (r.status().as_u16(), body["error"]["code"].as_str().unwrap_or("").to_owned())
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let a = agent();
    for i in 0..20 {
        let (status, body) = submit(&a, &gw, API_KEY, &message(&format!("+4915200000{i:03}"), "100"));
        assert_eq!(status, 200, "{body}");
    }
    let submits_took = started.elapsed();
    let answers: Vec<(u16, String)> = askers.into_iter().map(|t| t.join().expect("asker")).collect();
    let busy = answers.iter().filter(|(s, c)| *s == 503 && c == "history_busy").count();
    let unavailable = answers.iter().filter(|(s, c)| *s == 503 && c == "history_unavailable").count();
    assert_eq!(busy + unavailable, 80, "{answers:?}");
    assert!(busy > 0 && unavailable > 0, "busy {busy}, unavailable {unavailable}");
    // Generous: a submit that waited for history would wait for the queries' connect timeouts.
    assert!(submits_took < std::time::Duration::from_secs(10), "submits took {submits_took:?}");
}
