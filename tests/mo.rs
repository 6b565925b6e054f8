//! Inbound messages (MO) end to end: smsc-sim sends deliver_sm (short, long in both UDH forms
//! and SAR, parts out of order, UCS-2, Latin-1, a part that never comes) to a real smsgate,
//! which posts them to the routed client's `mo_url` on a real HTTP receiver. Signatures are
//! checked with Python's `hmac`.
// Test code on plain threads: blocking waits are fine here.
#![allow(clippy::disallowed_methods)]

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use receiver::{python_verifies, Received, Receiver};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use support::*;

const SHOP_KEY: &str = "shop-key-0123456789abcdef";
const ACME_SECRET: &str = "mo-secret-0123456789abcdef";
const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

const ROUTES: &str = "[[mo_routes]]\nto = \"12345\"\nclient = \"acme\"\n\n\
    [[mo_routes]]\nto = \"12345\"\nkeyword = \"shop\"\nclient = \"shop\"\n\n\
    [[mo_routes]]\nto = \"+4915199999999\"\nclient = \"shop\"\n";

fn config(sim_port: u16, receiver: &Receiver) -> GatewayConfig {
    GatewayConfig {
        extra_config: format!(
            "[admin]\napi_key = \"{ADMIN_KEY}\"\n\n[inbound]\nreassembly_timeout_ms = 1500\n\n\
             [webhooks]\npoll_interval_ms = 50\nallowed_networks = [\"127.0.0.1\"]\n\n\
             [[clients]]\nname = \"shop\"\napi_key = \"{SHOP_KEY}\"\nmo_url = \"{}\"\n",
            receiver.url("/shop")
        ),
        client_extra: format!("mo_url = \"{}\"\nwebhook_secret = \"{ACME_SECRET}\"\n", receiver.url("/acme")),
        rules_extra: ROUTES.to_owned(),
        ..GatewayConfig::one_link(sim_port)
    }
}

/// The posts received so far, by the MO's text.
fn by_text(receiver: &Receiver) -> HashMap<String, Received> {
    receiver.delivered().into_iter().map(|r| (r.json()["text"].as_str().unwrap_or("").to_owned(), r)).collect()
}

#[test]
fn inbound_messages_reach_the_routed_client_with_the_right_text() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0, 0, false);
    let mut sim = Sim::start(&[]);
    let gw = Gateway::start(dir.path(), &config(sim.port, &receiver));
    let a = agent();

    let gsm = "Hi @home: 5€ [ok] {x} ~^\\| ÄÖ";
    let long8 = format!("UDH8 {}", "abcdefghij".repeat(40));
    let long16 = format!("UDH16 {}", "0123456789".repeat(35));
    let sar = format!("SAR {}", "klmnopqrst".repeat(20));
    let ucs2 = format!("Привет 😀 {}", "ж".repeat(150));
    let sent = [
        format!("mo to=12345 text={gsm}"),
        format!("mo to=12345 split=udh8 ref=200 order=reverse text={long8}"),
        format!("mo to=12345 split=udh16 ref=4660 order=reverse text={long16}"),
        format!("mo to=12345 split=sar ref=7 part_octets=60 order=reverse text={sar}"),
        format!("mo to=12345 coding=ucs2 split=udh8 ref=9 part_octets=132 text={ucs2}"),
        "mo to=12345 coding=latin1 text=café crème".to_owned(),
        "mo to=12345 split=payload text=payload only".to_owned(),
        "mo to=12345 text=SHOP order 66".to_owned(),
        "mo to=+4915199999999 text=to the long number".to_owned(),
        "mo to=55555 text=nobody routes me".to_owned(),
    ];
    for command in &sent {
        sim.control(command);
    }
    let texts =
        [gsm, &long8, &long16, &sar, &ucs2, "café crème", "payload only", "SHOP order 66", "to the long number"];
    wait_until(15, "every routed MO posted", || by_text(&receiver).len() >= texts.len());
    let posts = by_text(&receiver);
    for text in texts {
        assert!(posts.contains_key(text), "{text:?} not posted; got {:?}", posts.keys().collect::<Vec<_>>());
    }
    for (text, path) in [(gsm, "/acme"), ("SHOP order 66", "/shop"), ("to the long number", "/shop"), (&ucs2, "/acme")]
    {
        assert_eq!(posts[text].path, path, "{text}");
    }
    let short = &posts[gsm];
    let sig = short.headers.get("x-smsgate-signature").expect("acme's MO is signed");
    assert!(python_verifies(ACME_SECRET, sig, &short.body), "signature {sig} over {}", short.body);
    let body = short.json();
    assert_eq!(body["event"], "inbound");
    assert_eq!(body["event_id"], format!("{}.inbound", body["inbound_id"].as_str().unwrap()));
    assert_eq!(short.event_id(), body["event_id"].as_str().unwrap());
    assert_eq!(
        (body["from"].as_str(), body["to"].as_str(), body["link"].as_str()),
        (Some("4915112345678"), Some("12345"), Some("100"))
    );
    assert_eq!((body["segments"]["total"].as_u64(), body["incomplete"].as_bool()), (Some(1), Some(false)));
    let long = posts[long16.as_str()].json();
    assert_eq!(
        (long["segments"]["total"].as_u64(), long["segments"]["received"].clone()),
        (Some(3), serde_json::json!([1, 2, 3]))
    );
    assert_eq!(posts[ucs2.as_str()].json()["data_coding"], 8);

    // Readable by its client only.
    let id = body["inbound_id"].as_str().unwrap();
    let (status, got) = get_inbound(&a, &gw, API_KEY, id);
    assert_eq!((status, got["text"].as_str(), got["client"].as_str()), (200, Some(gsm), Some("acme")), "{got}");
    assert_eq!(get_inbound(&a, &gw, SHOP_KEY, id).1["error"]["code"], "inbound_not_found");
    assert_eq!(get_inbound(&a, &gw, API_KEY, "nope").1["error"]["code"], "invalid_id");

    // The unrouted one was answered ESME_ROK, kept and counted; nothing was posted for it.
    wait_until(5, "the unrouted MO counted", || metric(&gw, "smsgate_mo_unrouted_total") == Some(1.0));
    assert!(!by_text(&receiver).contains_key("nobody routes me"));
    let stats = sim.control("stats");
    assert!(stats.contains("deliver_sm_resp_error=0"), "every MO acknowledged with ESME_ROK: {stats}");
    assert_eq!(metric(&gw, "smsgate_mo_messages_total"), Some(10.0));

    // A part that never comes: the others are delivered after the timeout, marked incomplete.
    let gappy = format!("GAP {}", "uvwxyz1234".repeat(40));
    sim.control(&format!("mo to=12345 split=udh8 ref=77 skip=2 text={gappy}"));
    wait_until(15, "the incomplete MO posted after the timeout", || {
        receiver.delivered().iter().any(|r| r.json()["incomplete"] == true)
    });
    let incomplete = receiver.delivered().into_iter().find(|r| r.json()["incomplete"] == true).unwrap().json();
    assert_eq!(incomplete["segments"]["received"], serde_json::json!([1, 3]));
    let text = incomplete["text"].as_str().unwrap();
    assert!(text.starts_with("GAP uvwxyz") && text.len() < gappy.len(), "{text}");
    assert_eq!(metric(&gw, "smsgate_mo_incomplete_total"), Some(1.0));

    // Each MO was posted exactly once.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.got().len(), texts.len() + 1, "{:#?}", receiver.got());
    gw.terminate();
}

/// `[[mo_routes]]` reload with the other rules; a route to a client without `mo_url` is
/// refused and changes nothing.
#[test]
fn mo_routes_reload() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0, 0, false);
    let mut sim = Sim::start(&[]);
    let cfg = config(sim.port, &receiver);
    let gw = Gateway::start(dir.path(), &cfg);
    let a = agent();
    let reload = || {
        let mut r = a
            .post(&gw.url("/api/v1/admin/reload"))
            .header("Authorization", &format!("Bearer {ADMIN_KEY}"))
            .send_empty()
            .expect("reload");
        (r.status().as_u16(), r.body_mut().read_json::<Value>().unwrap_or(Value::Null))
    };
    let rules = dir.path().join("rules.toml");
    let text = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(&rules, text.replace("client = \"acme\"", "client = \"other\"")).unwrap();
    let (status, v) = reload();
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_rules")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("mo_routes[0].client"), "{v}");

    std::fs::write(&rules, text.replace("to = \"12345\"\nclient = \"acme\"", "to = \"12345\"\nclient = \"shop\""))
        .unwrap();
    assert_eq!(reload().0, 200);
    sim.control("mo to=12345 text=after the reload");
    wait_until(10, "posted", || by_text(&receiver).contains_key("after the reload"));
    assert_eq!(by_text(&receiver)["after the reload"].path, "/shop");
    gw.terminate();
}
