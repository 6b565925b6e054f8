//! Hot reload of smpp_rules.toml: a good file applies (links added, removed, retuned), a bad
//! file is refused with file, key and reason while the running rules stay, and traffic on an
//! unchanged link goes on through a reload without losing anything.
// Test clients are plain threads, not shards: blocking sleeps while polling are fine here.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::*;

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

fn config(links: Vec<(String, u16)>) -> GatewayConfig {
    GatewayConfig {
        links,
        response_timeout_ms: 2_000,
        extra_config: format!("[admin]\napi_key = \"{ADMIN_KEY}\"\n"),
        ..Default::default()
    }
}

fn reload(a: &ureq::Agent, gw: &Gateway, key: &str) -> (u16, Value) {
    let mut r = a
        .post(&gw.url("/api/v1/admin/reload"))
        .header("Authorization", &format!("Bearer {key}"))
        .send_empty()
        .expect("reload request");
    let code = r.status().as_u16();
    (code, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn send(a: &ureq::Agent, gw: &Gateway, link: &str, i: usize) -> (u16, Value) {
    submit(a, gw, API_KEY, &json!({"to": format!("+4916{i:09}"), "from": "ACME", "text": "reload", "link": link}))
}

#[test]
fn a_good_file_adds_and_removes_links_and_a_bad_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (Sim::start(&[]), Sim::start(&[]));
    let gw = Gateway::start(dir.path(), &config(vec![("one".into(), s1.port)]));
    let a = agent();
    assert_eq!(send(&a, &gw, "one", 1).0, 200);
    assert_eq!(send(&a, &gw, "two", 2).1["error"]["code"], "unknown_link");

    // Bad file: refused, with file, key and reason; the running rules stay.
    Gateway::write_config(dir.path(), gw.port, &config(vec![("one".into(), s1.port), ("two".into(), s2.port)]));
    let rules = dir.path().join("rules.toml");
    let good = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(&rules, good.replace("esme_rate = 100000", "esme_rate = 0")).unwrap();
    let (code, v) = reload(&a, &gw, ADMIN_KEY);
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_rules");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("rules.toml") && msg.contains("esme_rate"), "{msg}");
    assert_eq!(send(&a, &gw, "one", 3).0, 200, "the running rules stay");

    // Wrong key, then the good file: link two appears and binds.
    assert_eq!(reload(&a, &gw, "not-the-admin-key-000000").0, 401);
    std::fs::write(&rules, &good).unwrap();
    let (code, v) = reload(&a, &gw, ADMIN_KEY);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["links"]["added"], json!(["two"]));
    assert_eq!(v["links"]["unchanged"], json!(["one"]));
    wait_until(10, "link two binds", || send(&a, &gw, "two", 4).0 == 200);

    // Remove link one by SIGHUP: it drains and unbinds; its messages now get unknown_link.
    Gateway::write_config(dir.path(), gw.port, &config(vec![("two".into(), s2.port)]));
    signal(&gw.child, "HUP");
    wait_until(10, "link one removed", || send(&a, &gw, "one", 5).1["error"]["code"] == "unknown_link");
    assert_eq!(send(&a, &gw, "two", 6).0, 200);
    assert!(gw.log().contains("rules reloaded"), "{}", gw.log());
    assert!(gw.terminate().success());
}

#[test]
fn traffic_on_an_unchanged_link_goes_on_through_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (Sim::start(&[]), Sim::start(&[]));
    let gw = Gateway::start(dir.path(), &config(vec![("one".into(), s1.port)]));
    let port = gw.port;
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let a = agent();
                let (mut ok, mut i) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = json!({"to": format!("+4916{t}{i:08}"), "from": "ACME", "text": "through reload", "link": "one"});
                    let mut r = a
                        .post(&format!("http://127.0.0.1:{port}/api/v1/messages"))
                        .header("Authorization", &format!("Bearer {API_KEY}"))
                        .send_json(&body)
                        .expect("request");
                    let code = r.status().as_u16();
                    assert_eq!(code, 200, "{:?}", r.body_mut().read_to_string());
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let a = agent();
    for round in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let links = if round % 2 == 0 {
            vec![("one".into(), s1.port), ("two".into(), s2.port)]
        } else {
            vec![("one".into(), s1.port)]
        };
        Gateway::write_config(dir.path(), port, &config(links));
        let (code, v) = reload(&a, &gw, ADMIN_KEY);
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["links"]["unchanged"], json!(["one"]), "{v}");
    }
    stop.store(true, Ordering::Relaxed);
    let sent: usize = senders.into_iter().map(|t| t.join().expect("sender")).sum();
    assert!(sent > 50, "traffic flowed: {sent}");
    assert!(gw.terminate().success());
}
