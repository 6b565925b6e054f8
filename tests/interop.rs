//! Interoperability: smsgate against an SMSC not written here, node-smpp's server
//! (`tests/interop/smsc.js`, npm package `smpp` pinned in `tests/interop/package.json`), on
//! loopback. Bind, submit short, long and UCS-2 texts under each `long_messages` mode, and
//! receipts: every message reaches `delivered`, and the SMSC's own decoder sees the
//! data_coding, esm_class, UDH and text that smsgate meant to send. And inbound messages (MO)
//! encoded by node-smpp (GSM 03.38, UCS-2, a UDH-concatenated pair) reach the routed client's
//! `mo_url` with the text node-smpp meant.
// Test clients are plain threads, not shards: blocking sleeps while polling are fine here.
#![allow(clippy::disallowed_methods)]

#[path = "support/node.rs"]
mod node;
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use node::NodeSmsc;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use support::*;

/// esm_class bit: the short_message starts with a UDH.
const UDHI: u64 = 0x40;

fn start(long_messages: &str) -> (tempfile::TempDir, NodeSmsc, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let smsc = NodeSmsc::start(50);
    let mut cfg = GatewayConfig::one_link(smsc.port);
    cfg.link_extra = format!("long_messages = \"{long_messages}\"");
    let gw = Gateway::start(dir.path(), &cfg);
    (dir, smsc, gw)
}

/// What the test expects the SMSC to have received for one message.
struct Expect {
    /// `segments` in the API answer.
    segments: u64,
    /// submit_sm per message.
    parts: usize,
    data_coding: u64,
    /// `None`: no UDH; `Some(8 | 16)`: a concatenation UDH with that reference size.
    udh_bits: Option<u64>,
    /// The text travelled in message_payload.
    payload: bool,
}

/// Submits `text` to `to` on link 100, waits for `delivered`, then checks the API record and
/// what node-smpp decoded from the submit_sm.
fn check_message(a: &ureq::Agent, gw: &Gateway, smsc: &NodeSmsc, to: &str, text: &str, expect: Expect) {
    let (code, v) = submit(a, gw, API_KEY, &json!({"to": to, "from": "ACME", "text": text, "link": "100"}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["segments"], expect.segments, "API answer for {text:?}: {v}");
    let id = v["id"].as_str().unwrap().to_owned();
    wait_until(15, &format!("{text:?} delivered"), || get_message(a, gw, API_KEY, &id).1["status"] == "delivered");
    let (_, rec) = get_message(a, gw, API_KEY, &id);
    assert_eq!(rec["segments"], expect.segments, "{rec}");
    let parts = rec["parts"].as_array().map_or(0, Vec::len);
    assert_eq!(parts.max(1), expect.parts, "one record part per submit_sm: {rec}");

    let destination = to.trim_start_matches('+');
    let submits: Vec<Value> = smsc
        .events("submit_sm")
        .into_iter()
        .filter(|e| e["destination_addr"].as_str().unwrap_or("").trim_start_matches('+') == destination)
        .collect();
    assert_eq!(submits.len(), expect.parts, "submit_sm seen by node-smpp for {text:?}: {submits:#?}");
    for sm in &submits {
        assert_eq!(sm["data_coding"], expect.data_coding, "{sm}");
        assert_eq!(sm["registered_delivery"].as_u64().unwrap_or(0) & 1, 1, "receipts requested: {sm}");
        let carrier = if expect.payload { "message_payload" } else { "short_message" };
        assert_eq!(sm["carrier"], carrier, "{sm}");
        match expect.udh_bits {
            None => {
                assert!(sm["udh"].is_null(), "no UDH: {sm}");
                assert_eq!(sm["esm_class"].as_u64().unwrap() & UDHI, 0, "{sm}");
            }
            Some(bits) => {
                assert_eq!(sm["udh"]["bits"], bits, "{sm}");
                assert_eq!(sm["udh"]["total"], expect.parts as u64, "{sm}");
                assert_eq!(sm["esm_class"].as_u64().unwrap() & UDHI, UDHI, "{sm}");
                // One SMS carries 140 octets (1,120 bits) over the air. SMPP carries GSM
                // 7-bit text unpacked, one septet per octet, and the UDH in whole octets.
                let udh_octets = if bits == 8 { 6 } else { 7 };
                let text_octets = sm["octets"].as_u64().unwrap() - udh_octets;
                let text_bits = if expect.data_coding == 8 { text_octets * 8 } else { text_octets * 7 };
                assert!(udh_octets * 8 + text_bits <= 1120, "more than one SMS in a part: {sm}");
            }
        }
    }
    if expect.udh_bits.is_some() {
        let refs: BTreeSet<u64> = submits.iter().map(|sm| sm["udh"]["ref"].as_u64().unwrap()).collect();
        assert_eq!(refs.len(), 1, "one reference for all parts: {submits:#?}");
        let seqs: BTreeSet<u64> = submits.iter().map(|sm| sm["udh"]["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=expect.parts as u64).collect(), "{submits:#?}");
    }
    // node-smpp decodes each part on its own: a part cut inside a GSM escape or a UTF-16
    // surrogate pair would not join back into the text.
    let mut ordered = submits.clone();
    ordered.sort_by_key(|sm| sm["udh"]["seq"].as_u64().unwrap_or(0));
    let joined: String = ordered.iter().map(|sm| sm["text"].as_str().unwrap_or("")).collect();
    assert_eq!(joined, text, "the text as node-smpp decoded it");

    // Every part's receipt went out and smsgate answered it with ESME_ROK.
    let ids: BTreeSet<String> = submits.iter().map(|sm| sm["message_id"].as_str().unwrap().to_owned()).collect();
    smsc.wait_for(5, "deliver_sm_resp for every receipt", |s| {
        let acked: BTreeSet<String> = s
            .events("deliver_sm")
            .iter()
            .filter(|e| e["command_status"] == 0)
            .map(|e| e["message_id"].as_str().unwrap().to_owned())
            .collect();
        ids.is_subset(&acked)
    });
}

/// 300 GSM 7-bit characters in 303 septets, so 2 parts of at most 153: `@` (0x00, fatal to
/// C-string handling), and `€` (ESC + 0x65) on septets 153-154, where a careless split cuts
/// the escape from its character; `{` and `}` (escapes too) at the end.
fn long_gsm_text() -> String {
    let plain = "Long message via node-smpp, @ and 0123456789. ";
    let head: String = plain.chars().cycle().take(152).collect();
    let tail: String = plain.chars().cycle().take(145).collect();
    let text = format!("{head}€{tail}{{}}");
    assert_eq!(text.chars().count(), 300);
    text
}

#[test]
fn udh8_short_long_and_ucs2_messages_reach_delivered() {
    let (_dir, smsc, gw) = start("udh8");
    assert!(!smsc.events("bind").is_empty(), "smsgate bound to node-smpp");
    let a = agent();
    let gsm = |segments, parts| Expect { segments, parts, data_coding: 0, udh_bits: Some(8), payload: false };
    let ucs2 = |segments, parts| Expect { segments, parts, data_coding: 8, udh_bits: Some(8), payload: false };
    let single = |data_coding| Expect { segments: 1, parts: 1, data_coding, udh_bits: None, payload: false };

    check_message(&a, &gw, &smsc, "+4915100000001", "Hello from smsgate via node-smpp", single(0));
    check_message(&a, &gw, &smsc, "+4915100000002", &long_gsm_text(), gsm(2, 2));
    check_message(&a, &gw, &smsc, "+4915100000003", "Привет, мир! 👋 Как дела?", single(8));
    // 90 UTF-16 units, emoji as surrogate pairs: 2 parts of at most 67 units.
    check_message(&a, &gw, &smsc, "+4915100000004", &"Привет 😀 ".repeat(10), ucs2(2, 2));
    assert!(gw.terminate().success());
    assert!(!smsc.events("unbind").is_empty(), "smsgate unbinds at shutdown");
}

#[test]
fn udh16_long_messages_reach_delivered() {
    let (_dir, smsc, gw) = start("udh16");
    let a = agent();
    let expect = Expect { segments: 2, parts: 2, data_coding: 0, udh_bits: Some(16), payload: false };
    check_message(&a, &gw, &smsc, "+4915100000011", &long_gsm_text(), expect);
    let expect = Expect { segments: 2, parts: 2, data_coding: 8, udh_bits: Some(16), payload: false };
    check_message(&a, &gw, &smsc, "+4915100000012", &"Привет 😀 ".repeat(10), expect);
    assert!(gw.terminate().success());
}

#[test]
fn payload_long_messages_go_whole_in_message_payload() {
    let (_dir, smsc, gw) = start("payload");
    let a = agent();
    // `segments` counts the SMS the text takes on the handset; one submit_sm carries it.
    let expect = Expect { segments: 2, parts: 1, data_coding: 0, udh_bits: None, payload: true };
    check_message(&a, &gw, &smsc, "+4915100000021", &long_gsm_text(), expect);
    let short = Expect { segments: 1, parts: 1, data_coding: 0, udh_bits: None, payload: false };
    check_message(&a, &gw, &smsc, "+4915100000022", "short stays in short_message", short);
    assert!(gw.terminate().success());
}

/// MO encoded by node-smpp's own encoder: smsgate answers ESME_ROK to each and posts the
/// decoded text to the routed client.
#[test]
fn inbound_messages_from_node_smpp_are_decoded_and_posted() {
    let dir = tempfile::tempdir().unwrap();
    let mut smsc = NodeSmsc::start(50);
    let hooks = receiver::Receiver::start(0, 0, false);
    let cfg = GatewayConfig {
        extra_config: "[webhooks]\npoll_interval_ms = 50\nallowed_networks = [\"127.0.0.1\"]\n".into(),
        client_extra: format!("mo_url = \"{}\"\n", hooks.url("/mo")),
        rules_extra: "[[mo_routes]]\nto = \"4000\"\nclient = \"acme\"\n".into(),
        ..GatewayConfig::one_link(smsc.port)
    };
    let gw = Gateway::start(dir.path(), &cfg);
    let base = json!({"source_addr": "4915112345678", "destination_addr": "4000"});
    let with = |extra: Value| {
        let mut m = base.clone();
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        m
    };
    smsc.send_mo("gsm", with(json!({"data_coding": 0, "short_message": "Hello from node-smpp @ 10:00"})));
    smsc.send_mo("ucs2", with(json!({"data_coding": 8, "short_message": "Grüße, Привет ✓"})));
    // Part 2 first: a concatenated pair with an 8-bit reference.
    for (seq, text) in [(2, "second half."), (1, "First half, ")] {
        let udh = format!("050003aa02{seq:02x}");
        smsc.send_mo(
            &format!("part{seq}"),
            with(json!({"esm_class": 0x40, "data_coding": 0, "short_message": {"udh": udh, "message": text}})),
        );
    }
    smsc.wait_for(10, "smsgate answered the four deliver_sm", |s| s.events("mo_resp").len() == 4);
    for r in smsc.events("mo_resp") {
        assert_eq!(r["command_status"], 0, "{r}");
    }
    let texts = || -> BTreeSet<String> {
        hooks.delivered().iter().map(|r| r.json()["text"].as_str().unwrap_or("").to_owned()).collect()
    };
    wait_until(10, "three messages posted", || texts().len() == 3);
    let want: BTreeSet<String> = ["Hello from node-smpp @ 10:00", "Grüße, Привет ✓", "First half, second half."]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(texts(), want);
    gw.terminate();
}
