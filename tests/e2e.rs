//! End to end: smsgate and smsc-sim as processes, real HTTP and real SMPP over loopback.
// Test clients are plain threads, not shards: blocking sleeps while polling are fine here.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

fn status_of(rec: &Value) -> &str {
    rec["status"].as_str().unwrap_or("")
}

/// 1,000 messages over 8 keep-alive connections: every one answered with an id, every one
/// reaches `delivered` through a receipt, and its record shows each transition in order.
#[test]
fn thousand_messages_are_submitted_and_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--dlr-delay-ms", "50"]);
    let gw = Gateway::start(dir.path(), &GatewayConfig::one_link(sim.port));
    let ids = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (ids, url_port) = (ids.clone(), gw.port);
            std::thread::spawn(move || {
                let agent = agent();
                for i in 0..125 {
                    let body = json!({"to": format!("+49151{t:02}{i:05}"), "from": "ACME", "text": "Hello", "link": "100", "client_ref": format!("{t}-{i}")});
                    let mut r = agent
                        .post(&format!("http://127.0.0.1:{url_port}/api/v1/messages"))
                        .header("Authorization", &format!("Bearer {API_KEY}"))
                        .send_json(&body)
                        .expect("submit");
                    let code = r.status();
                    let v: Value = r.body_mut().read_json().unwrap();
                    assert_eq!(code, 200, "{v}");
                    assert_eq!(v["status"], "submitted");
                    assert_eq!(v["link"], "100");
                    assert_eq!(v["segments"], 1);
                    assert_eq!(v["client_ref"], format!("{t}-{i}"));
                    assert!(!v["smsc_message_id"].as_str().unwrap().is_empty());
                    ids.lock().unwrap().push(v["id"].as_str().unwrap().to_owned());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1000, "ids are unique");

    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pending: Vec<String> = ids.clone();
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{} messages not delivered in 30 s", pending.len());
        pending.retain(|id| {
            let (code, rec) = get_message(&agent, &gw, API_KEY, id);
            assert_eq!(code, 200, "{id}: {rec}");
            if status_of(&rec) != "delivered" {
                return true;
            }
            let steps: Vec<&str> =
                rec["transitions"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
            assert_eq!(steps, ["accepted", "submitted", "delivered"], "{rec}");
            let times: Vec<u64> =
                rec["transitions"].as_array().unwrap().iter().map(|t| t["at_ms"].as_u64().unwrap()).collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{rec}");
            assert_eq!(rec["link"], "100");
            assert_eq!(rec["client"], "acme");
            false
        });
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(gw.terminate().success());
    let counters = sim.stop();
    assert!(counters.contains("submit_sm=1000"), "sim counters: {counters}");
}

/// kill -9 during a load, restart: every id answered before the kill is found.
#[test]
fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let mut cfg = GatewayConfig::one_link(sim.port);
    let embedded = std::env::var_os("SMSGATE_TEST_AEROSPIKE").is_none();
    if embedded {
        // No checkpoint before the kill: what was answered is in the write-ahead log only.
        cfg.state = format!("{}\ncheckpoint_interval_ms = 3600000", state_section(dir.path()));
    }
    let gw = Gateway::start(dir.path(), &cfg);
    let port = gw.port;
    let answered = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (answered, stop) = (answered.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 20_000 {
                    i += 1;
                    let body = json!({"to": format!("+49152{t:02}{i:05}"), "from": "ACME", "text": "crash test", "link": "100"});
                    let r = agent
                        .post(&format!("http://127.0.0.1:{port}/api/v1/messages"))
                        .header("Authorization", &format!("Bearer {API_KEY}"))
                        .send_json(&body);
                    match r {
                        Ok(mut r) if r.status() == 200 => {
                            if let Ok(v) = r.body_mut().read_json::<Value>() {
                                answered.lock().unwrap().push(v["id"].as_str().unwrap().to_owned());
                            }
                        }
                        _ => break, // the gateway died under us
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.lock().unwrap().len() < 400 {
        assert!(Instant::now() < deadline, "load did not get going");
        std::thread::sleep(Duration::from_millis(10));
    }
    gw.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let ids = answered.lock().unwrap().clone();
    assert!(ids.len() >= 400);

    let gw = Gateway::start_on(dir.path(), port, &cfg, true);
    let agent = agent();
    for id in &ids {
        let (code, rec) = get_message(&agent, &gw, API_KEY, id);
        assert_eq!(code, 200, "answered id {id} lost after kill -9: {rec}");
        assert_eq!(rec["transitions"][1]["status"], "submitted", "{rec}");
    }
    if embedded {
        assert!(gw.log().contains("replayed the write-ahead log"), "{}", gw.log());
        let replayed = metric(&gw, "smsgate_state_log_replayed_total");
        assert!(replayed.is_some_and(|n| n > 0.0), "replayed batches: {replayed:?}");
    }
    assert!(gw.terminate().success());
    drop(sim);
}

/// SIGTERM while requests are in flight: they are answered, then the process exits 0.
#[test]
fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--resp-delay-us", "300000"]);
    let gw = Gateway::start(dir.path(), &GatewayConfig::one_link(sim.port));
    let port = gw.port;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let agent = agent();
                let body = json!({"to": format!("+4915300000{t}"), "from": "ACME", "text": "in flight", "link": "100"});
                let mut r = agent
                    .post(&format!("http://127.0.0.1:{port}/api/v1/messages"))
                    .header("Authorization", &format!("Bearer {API_KEY}"))
                    .send_json(&body)
                    .expect("in-flight request answered");
                (r.status().as_u16(), r.body_mut().read_json::<Value>().unwrap_or(Value::Null))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let log_dir = gw.dir.clone();
    let status = gw.terminate();
    assert!(status.success(), "exit status {status:?}");
    let log = std::fs::read_dir(&log_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(log.contains("unbound"), "sessions were unbound at shutdown: {log}");
    for t in threads {
        let (code, body) = t.join().unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], "submitted");
    }
    drop(sim);
}

/// Long and UCS-2 texts: the answer gives the segment count, every part is tracked, and the
/// message is delivered once every part's receipt arrived.
#[test]
fn long_and_ucs2_messages_are_tracked_per_part() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let gw = Gateway::start(dir.path(), &GatewayConfig::one_link(sim.port));
    let a = agent();
    let cases = [("a".repeat(300), 2), ("Привет 😀 ".repeat(10), 2), ("€".repeat(100), 2), ("short".to_owned(), 1)];
    for (text, segments) in cases {
        let (code, v) =
            submit(&a, &gw, API_KEY, &json!({"to": "+4915112345678", "from": "ACME", "text": text, "link": "100"}));
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["segments"], segments, "{text}");
        let id = v["id"].as_str().unwrap().to_owned();
        support::wait_until(10, "delivered", || get_message(&a, &gw, API_KEY, &id).1["status"] == "delivered");
        let (_, rec) = get_message(&a, &gw, API_KEY, &id);
        assert_eq!(rec["parts"].as_array().unwrap().len(), segments, "{rec}");
        assert!(rec["parts"].as_array().unwrap().iter().all(|p| p["status"] == "delivered"), "{rec}");
    }
    assert!(gw.terminate().success());
}

/// An SMSC that answers submit_sm_resp in decimal and writes receipts in hex (upper case,
/// zero-padded): with `receipt_id_format = "hex"` every receipt still finds its message.
#[test]
fn receipts_in_hex_match_decimal_submit_ids() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--dlr-delay-ms", "20", "--resp-id-format", "dec", "--dlr-id-format", "hex"]);
    let cfg = GatewayConfig { link_extra: "receipt_id_format = \"hex\"".into(), ..GatewayConfig::one_link(sim.port) };
    let gw = Gateway::start(dir.path(), &cfg);
    let a = agent();
    let mut ids = Vec::new();
    for i in 0..20 {
        let (code, v) = submit(
            &a,
            &gw,
            API_KEY,
            &json!({"to": format!("+4915200000{i:03}"), "from": "ACME", "text": "hex", "link": "100"}),
        );
        assert_eq!(code, 200, "{v}");
        assert!(v["smsc_message_id"].as_str().unwrap().bytes().all(|b| b.is_ascii_digit()), "decimal: {v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    for id in ids {
        support::wait_until(10, "delivered through a hex receipt", || {
            get_message(&a, &gw, API_KEY, &id).1["status"] == "delivered"
        });
    }
    assert!(gw.terminate().success());
}

/// `bind = "transmitter_receiver"`: each session is a transmitter bind plus a receiver bind;
/// submits go over the transmitters only and every bind is counted in /healthz.
#[test]
fn transmitter_receiver_pairs_bind_and_submit() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&[]);
    let cfg =
        GatewayConfig { link_extra: "bind = \"transmitter_receiver\"".into(), ..GatewayConfig::one_link(sim.port) };
    let gw = Gateway::start(dir.path(), &cfg);
    let a = agent();
    let mut r = a.get(&gw.url("/healthz")).call().unwrap();
    let health: Value = r.body_mut().read_json().unwrap();
    assert_eq!(health["links"]["100"]["sessions"], 4, "2 sessions × (transmitter + receiver): {health}");
    assert_eq!(health["links"]["100"]["sessions_bound"], 4, "{health}");
    for i in 0..10 {
        let (code, v) = submit(
            &a,
            &gw,
            API_KEY,
            &json!({"to": format!("+4915300001{i:03}"), "from": "ACME", "text": "trx", "link": "100"}),
        );
        assert_eq!(code, 200, "a receiver bind never takes a submit: {v}");
    }
    assert!(gw.terminate().success());
    let counters = sim.stop();
    assert!(counters.contains("binds=4"), "{counters}");
}
