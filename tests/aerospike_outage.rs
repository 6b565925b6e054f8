//! Aerospike stopped during a load and started again, then frozen (SIGSTOP: slow, not gone)
//! and thawed: no acknowledged message is lost, new messages get 503 `state_down` while it is
//! away (never sent), writes fail within their deadline, and smsgate recovers by itself.
//! Runs against an `asd` the test starts (`SMSGATE_TEST_ASD`); skipped visibly without one.
// Test clients are plain threads, not shards: blocking sleeps while polling are fine here.
#![allow(clippy::disallowed_methods)]

#[path = "support/aerospike.rs"]
mod aerospike_server;
mod support;

use aerospike_server::AerospikeServer;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// What the load saw: ids answered 200, and every other answer by `code`.
#[derive(Default)]
struct Seen {
    ids: Vec<String>,
    codes: BTreeMap<String, usize>,
}

#[test]
fn aerospike_outage_loses_nothing_acknowledged_and_recovers_without_restart() {
    let Some(mut server) = AerospikeServer::from_env("aerospike_outage") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let state = format!(
        "{}\ntimeout_ms = 300\napply_timeout_ms = 1000\nprobe_interval_ms = 200\nconnect_timeout_ms = 5000",
        aerospike_state(&server.host(), dir.path())
    );
    let cfg = GatewayConfig { state, ..GatewayConfig::one_link(sim.port) };
    let gw = Gateway::start(dir.path(), &cfg);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let port = gw.port;
    let load: Vec<_> = (0..4)
        .map(|t| {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body =
                        json!({"to": format!("+49153{t:02}{i:05}"), "from": "ACME", "text": "outage", "link": "100"});
                    let r = agent
                        .post(&format!("http://127.0.0.1:{port}/api/v1/messages"))
                        .header("Authorization", &format!("Bearer {API_KEY}"))
                        .send_json(&body);
                    let Ok(mut r) = r else { continue };
                    let status = r.status().as_u16();
                    let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
                    let mut seen = seen.lock().unwrap();
                    match status {
                        200 => seen.ids.push(v["id"].as_str().unwrap().to_owned()),
                        _ => {
                            *seen
                                .codes
                                .entry(format!("{status} {}", v["error"]["code"].as_str().unwrap_or("?")))
                                .or_default() += 1
                        }
                    }
                    drop(seen);
                    if status != 200 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            })
        })
        .collect();
    let answered = || seen.lock().unwrap().ids.len();
    let down = || seen.lock().unwrap().codes.get("503 state_down").copied().unwrap_or(0);
    wait_until(30, "300 messages answered before the outage", || answered() >= 300);

    server.stop();
    let before_outage = answered();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while down() < 20 {
        let codes = format!("{:?}", seen.lock().unwrap().codes);
        assert!(
            std::time::Instant::now() < deadline,
            "no 503 state_down while Aerospike is away; answers {codes}; log:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let agent = agent();
    assert_eq!(metric(&gw, "smsgate_state_up"), Some(0.0));
    let during = answered();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(answered(), during, "nothing is acknowledged while the store is down");

    server.start();
    wait_until(60, "messages answered again after Aerospike is back", || answered() >= during + 300);

    // Slow rather than gone: a frozen server answers nothing; batches fail at their deadline
    // (apply_timeout_ms), new messages are refused, and all resumes when it thaws.
    let downs_before = down();
    let outages = metric(&gw, "smsgate_state_outages_total").unwrap_or(0.0);
    server.freeze();
    let frozen_at = std::time::Instant::now();
    wait_until(30, "503 state_down while Aerospike is frozen", || down() > downs_before);
    let refused_after = frozen_at.elapsed();
    let during_freeze = answered();
    server.resume();
    wait_until(60, "messages answered again after Aerospike thawed", || answered() >= during_freeze + 300);
    assert!(metric(&gw, "smsgate_state_outages_total").unwrap_or(0.0) > outages);
    assert!(metric(&gw, "smsgate_aerospike_timeouts_total").unwrap_or(0.0) >= 1.0);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(metric(&gw, "smsgate_state_up"), Some(1.0));
    assert!(metric(&gw, "smsgate_state_outages_total").unwrap_or(0.0) >= 1.0);

    let seen = seen.lock().unwrap();
    let unexpected: Vec<_> =
        seen.codes.keys().filter(|c| !matches!(c.as_str(), "503 state_down" | "503 state_unavailable")).collect();
    assert!(unexpected.is_empty(), "unexpected answers: {:?}", seen.codes);
    for id in &seen.ids {
        let (code, rec) = get_message(&agent, &gw, API_KEY, id);
        assert_eq!(code, 200, "acknowledged id {id} lost across the outage: {rec}");
        assert_eq!(rec["transitions"][1]["status"], "submitted", "{rec}");
    }
    let line = format!(
        "aerospike outage: {} acknowledged ({} before the stop, {} after the restart), all found; frozen server refused \
         after {refused_after:?}; other answers {:?}",
        seen.ids.len(),
        before_outage,
        seen.ids.len() - during,
        seen.codes
    );
    std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes()).ok();
    assert!(gw.terminate().success());
}
