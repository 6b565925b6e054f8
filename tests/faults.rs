//! SMSC faults injected through smsc-sim's control commands: no crash, no lost and no
//! duplicated message, the link state follows, and traffic recovers when the fault ends.
// Test clients are plain threads, not shards: blocking sleeps while polling are fine here.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use support::*;

fn config(sim: &Sim, response_timeout_ms: u64) -> GatewayConfig {
    GatewayConfig {
        links: vec![("100".into(), sim.port)],
        response_timeout_ms,
        extra_config: String::new(),
        link_extra: "throttle_pause_ms = 200".into(),
        ..Default::default()
    }
}

fn send(a: &ureq::Agent, gw: &Gateway, i: usize) -> (u16, Value) {
    submit(a, gw, API_KEY, &json!({"to": format!("+4917{i:09}"), "from": "ACME", "text": "fault test", "link": "100"}))
}

/// The sim's counter `name` from its `stats` line.
fn counter(sim: &mut Sim, name: &str) -> u64 {
    let stats = sim.control("stats");
    stats
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {stats}"))
}

/// Every answered id must be findable, with the status its answer implied.
fn check_records(a: &ureq::Agent, gw: &Gateway, answered: &HashMap<String, &'static str>) {
    for (id, status) in answered {
        let (code, rec) = get_message(a, gw, API_KEY, id);
        assert_eq!(code, 200, "{id} lost: {rec}");
        let transitions: Vec<&str> =
            rec["transitions"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
        assert_eq!(transitions[1], *status, "{rec}");
    }
}

#[test]
fn dropped_connections_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(&["--resp-delay-us", "20000"]);
    let gw = Gateway::start(dir.path(), &config(&sim, 2_000));
    let a = agent();
    let mut answered = HashMap::new();
    let mut requests = 0;
    for round in 0..3 {
        for i in 0..20 {
            requests += 1;
            let (code, v) = send(&a, &gw, round * 100 + i);
            match code {
                200 => answered.insert(v["id"].as_str().unwrap().to_owned(), "submitted"),
                504 => answered.insert(v["error"]["id"].as_str().unwrap().to_owned(), "unknown"),
                503 => None,
                other => panic!("unexpected {other}: {v}"),
            };
            if i == 10 {
                sim.control("drop");
            }
        }
        wait_until(10, "link 100 rebinds", || link_state(&a, &gw, "100") != "down");
    }
    let submitted = answered.values().filter(|s| **s == "submitted").count() as u64;
    let seen = counter(&mut sim, "submit_sm");
    assert!(seen >= submitted, "the SMSC saw {seen} submits for {submitted} accepted messages");
    assert!(seen <= requests as u64, "{seen} submits for {requests} requests: something was sent twice");
    check_records(&a, &gw, &answered);
    assert_eq!(send(&a, &gw, 999).0, 200, "traffic recovers");
    assert!(gw.terminate().success());
}

#[test]
fn a_mute_smsc_gives_unknown_outcomes_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(&[]);
    let gw = Gateway::start(dir.path(), &config(&sim, 500));
    let a = agent();
    assert_eq!(send(&a, &gw, 1).0, 200);
    sim.control("mute on");
    let (code, v) = send(&a, &gw, 2);
    assert_eq!(code, 504, "{v}");
    let id = v["error"]["id"].as_str().unwrap().to_owned();
    // enquire_link every second gets no answer: the session is declared dead.
    wait_until(10, "link 100 leaves `bound`", || link_state(&a, &gw, "100") != "bound");
    sim.control("mute off");
    wait_until(15, "traffic flows again", || send(&a, &gw, 3).0 == 200);
    let (_, rec) = get_message(&a, &gw, API_KEY, &id);
    assert_eq!(rec["status"], "unknown", "never resubmitted: {rec}");
    assert!(gw.terminate().success());
}

#[test]
fn throttling_slows_the_session_and_each_message_gets_an_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(&[]);
    let gw = Gateway::start(dir.path(), &config(&sim, 2_000));
    let a = agent();
    sim.control("throttle on");
    let (code, v) = send(&a, &gw, 1);
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["error"]["code"], "smsc_throttled");
    assert_eq!(v["error"]["command_status"], 0x58);
    let id = v["error"]["id"].as_str().unwrap().to_owned();
    let (_, rec) = get_message(&a, &gw, API_KEY, &id);
    assert_eq!(rec["status"], "rejected");
    assert_eq!(rec["transitions"][1]["command_status"], 0x58);
    assert_eq!(link_state(&a, &gw, "100"), "degraded");
    let mut r = a.get(&gw.url("/metrics")).call().unwrap();
    let metrics = r.body_mut().read_to_string().unwrap();
    assert!(metrics.contains("smsgate_link_throttles_total{link=\"100\"} 1"), "{metrics}");
    wait_until(5, "the throttled answer is counted by status", || {
        let mut r = a.get(&gw.url("/metrics")).call().unwrap();
        r.body_mut().read_to_string().unwrap().contains("status=\"ESME_RTHROTTLED\"} 1")
    });
    sim.control("throttle off");
    wait_until(10, "traffic flows again", || send(&a, &gw, 2).0 == 200);
    assert_eq!(counter(&mut sim, "throttled"), 1, "only the first message met the throttle");
    assert!(gw.terminate().success());
}

#[test]
fn refused_binds_take_the_link_down_until_they_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(&[]);
    let gw = Gateway::start(dir.path(), &config(&sim, 1_000));
    let a = agent();
    sim.control("refuse-binds on");
    sim.control("drop");
    wait_until(10, "link 100 down", || link_state(&a, &gw, "100") == "down");
    let (code, v) = send(&a, &gw, 1);
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["error"]["code"], "no_session");
    wait_until(10, "a reconnect attempt is refused and logged with its status", || {
        gw.log().contains("bind refused: ESME_RBINDFAIL")
    });
    assert_eq!(link_state(&a, &gw, "100"), "down", "refused binds keep the link down");
    sim.control("refuse-binds off");
    wait_until(20, "link 100 rebinds after refusals", || link_state(&a, &gw, "100") != "down");
    assert_eq!(send(&a, &gw, 2).0, 200);
    assert!(gw.terminate().success());
}

#[test]
fn malformed_pdus_and_a_broken_stream_never_crash_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(&[]);
    let gw = Gateway::start(dir.path(), &config(&sim, 1_000));
    let a = agent();
    sim.control("malformed");
    assert_eq!(send(&a, &gw, 1).0, 200, "a malformed PDU is answered with generic_nack; the session stays");
    sim.control("garbage");
    wait_until(15, "traffic flows after the broken stream", || send(&a, &gw, 2).0 == 200);
    sim.control("slow 200000");
    let started = std::time::Instant::now();
    assert_eq!(send(&a, &gw, 3).0, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    assert!(gw.log().contains("generic_nack") || gw.log().contains("malformed"), "{}", gw.log());
    assert!(gw.terminate().success());
}
