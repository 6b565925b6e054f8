//! Routing end to end: pool weights, prefix routes, failover when a member link goes down
//! and comes back. Two smsc-sim processes are the two links' SMSCs.
// Test clients are plain threads, not shards: blocking sleeps while polling are fine here.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::json;
use std::collections::HashMap;
use support::*;

fn two_links(a: &Sim, b: &Sim, rules_extra: &str) -> GatewayConfig {
    GatewayConfig {
        links: vec![("a".into(), a.port), ("b".into(), b.port)],
        response_timeout_ms: 2_000,
        rules_extra: rules_extra.into(),
        ..Default::default()
    }
}

const POOL: &str = "[pools.eu]\nmembers = [{ link = \"a\", weight = 3 }, { link = \"b\", weight = 1 }]\n";

fn links_used(agent: &ureq::Agent, gw: &Gateway, n: usize, body: serde_json::Value) -> HashMap<String, usize> {
    let mut used = HashMap::new();
    for i in 0..n {
        let mut body = body.clone();
        body["to"] = json!(format!("+49151{i:07}"));
        let (code, v) = submit(agent, gw, API_KEY, &body);
        assert_eq!(code, 200, "{v}");
        *used.entry(v["link"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    used
}

#[test]
fn a_pool_spreads_by_weight() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = (Sim::start(&[]), Sim::start(&[]));
    let gw = Gateway::start(dir.path(), &two_links(&sa, &sb, POOL));
    let a = agent();
    let used = links_used(&a, &gw, 400, json!({"from": "ACME", "text": "pool", "pool": "eu"}));
    let on_a = used.get("a").copied().unwrap_or(0);
    // Each shard runs its own smooth round robin; 400 picks over two shards stay within a few.
    assert!((290..=310).contains(&on_a), "3:1 weights gave {used:?}");
    let (_, v) = submit(&a, &gw, API_KEY, &json!({"to": "+4915100000001", "from": "ACME", "text": "x", "pool": "eu"}));
    let (_, rec) = get_message(&a, &gw, API_KEY, v["id"].as_str().unwrap());
    assert!(rec["route"].as_str().unwrap().starts_with("pool:eu link:"), "{rec}");
}

#[test]
fn prefix_routes_pick_the_longest_match() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = (Sim::start(&[]), Sim::start(&[]));
    let rules = format!(
        "{POOL}\n[[routes]]\nprefix = \"49\"\nlink = \"a\"\n\n[[routes]]\nprefix = \"4917\"\nlink = \"b\"\n\n\
         [[routes]]\nprefix = \"44\"\npool = \"eu\"\n\n[[routes]]\nprefix = \"33\"\nclient = \"acme\"\nlink = \"b\"\n"
    );
    let gw = Gateway::start(dir.path(), &two_links(&sa, &sb, &rules));
    let a = agent();
    let send = |to: &str, key: &str| submit(&a, &gw, key, &json!({"to": to, "from": "ACME", "text": "route"}));
    let (code, v) = send("+4915112345678", API_KEY);
    assert_eq!((code, v["link"].as_str()), (200, Some("a")), "{v}");
    let (_, v) = send("+4917012345678", API_KEY);
    assert_eq!(v["link"], "b", "the longer prefix 4917 wins: {v}");
    let (_, v) = send("+447700900123", API_KEY);
    assert!(v["link"] == "a" || v["link"] == "b", "{v}");
    let (_, rec) = get_message(&a, &gw, API_KEY, v["id"].as_str().unwrap());
    assert!(rec["route"].as_str().unwrap().starts_with("prefix:44 pool:eu link:"), "{rec}");
    let (_, v) = send("+33612345678", API_KEY);
    assert_eq!(v["link"], "b", "client-specific route: {v}");
    let (code, v) = send("+33612345678", OTHER_KEY);
    assert_eq!(code, 404, "no route for the other client and no default: {v}");
    assert_eq!(v["error"]["code"], "no_route");
}

#[test]
fn a_pool_fails_over_when_a_member_goes_down_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = (Sim::start(&[]), Sim::start(&[]));
    let port_a = sa.port;
    let gw = Gateway::start(dir.path(), &two_links(&sa, &sb, POOL));
    let a = agent();
    let body = json!({"from": "ACME", "text": "failover", "pool": "eu"});
    drop(sa);
    wait_until(10, "link a down", || link_state(&a, &gw, "a") == "down");
    let used = links_used(&a, &gw, 40, body.clone());
    assert_eq!(used.get("b"), Some(&40), "everything goes to the remaining member: {used:?}");
    let mut r = a.get(&gw.url("/api/v1/dashboard/smpp-links")).call().unwrap();
    let dash: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(dash["pools"]["eu"]["members_up"], json!(["b"]), "{dash}");
    assert_eq!(dash["pools"]["eu"]["configured_rate"], 200_000, "{dash}");
    let _sa = Sim::start_on(&format!("127.0.0.1:{port_a}"), &[]);
    wait_until(15, "link a back", || link_state(&a, &gw, "a") != "down");
    let used = links_used(&a, &gw, 40, body);
    assert!(used.get("a").copied().unwrap_or(0) >= 20, "traffic returns to a: {used:?}");
    drop(sb);
    wait_until(10, "link b down", || link_state(&a, &gw, "b") == "down");
    drop(_sa);
    wait_until(10, "link a down", || link_state(&a, &gw, "a") == "down");
    let (code, v) =
        submit(&a, &gw, API_KEY, &json!({"to": "+4915100000009", "from": "ACME", "text": "x", "pool": "eu"}));
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["error"]["code"], "pool_unavailable");
}
