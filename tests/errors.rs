//! Every documented error of the HTTP API, against a running smsgate and smsc-sim. Bad input
//! gets a precise answer and changes nothing: the SMSC sees no submit for any of them.
// Test clients are plain threads, not shards: blocking sleeps while polling are fine here.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::{json, Value};
use support::*;

fn raw(agent: &ureq::Agent, gw: &Gateway, auth: Option<&str>, content_type: &str, body: &[u8]) -> (u16, Value) {
    let mut req = agent.post(&gw.url("/api/v1/messages")).header("Content-Type", content_type);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let mut r = req.send(body).expect("request");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn assert_error(got: (u16, Value), status: u16, code: &str, field: Option<&str>) {
    let (s, body) = got;
    assert_eq!(s, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    if let Some(f) = field {
        assert_eq!(body["error"]["field"], f, "{body}");
    }
}

#[test]
fn bad_input_is_refused_precisely_and_reaches_no_smsc() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&[]);
    let gw = Gateway::start(dir.path(), &GatewayConfig::one_link(sim.port));
    let a = agent();
    let bearer = format!("Bearer {API_KEY}");
    let auth = Some(bearer.as_str());
    let json_ct = "application/json";
    let good = json!({"to": "+4915112345678", "from": "ACME", "text": "hi", "link": "100"});

    // 400: malformed or invalid input.
    assert_error(raw(&a, &gw, auth, json_ct, b"{\"to\":"), 400, "invalid_json", None);
    assert_error(raw(&a, &gw, auth, json_ct, b"not json"), 400, "invalid_json", None);
    let mut unknown = good.clone();
    unknown["colour"] = json!("red");
    assert_error(submit(&a, &gw, API_KEY, &unknown), 400, "unknown_field", Some("colour"));
    assert_error(
        submit(&a, &gw, API_KEY, &json!({"from": "ACME", "text": "hi", "link": "100"})),
        400,
        "missing_field",
        Some("to"),
    );
    let mut bad_number = good.clone();
    bad_number["to"] = json!("+49-151");
    assert_error(submit(&a, &gw, API_KEY, &bad_number), 400, "invalid_number", Some("to"));
    bad_number["to"] = json!(4915112345678u64);
    assert_error(submit(&a, &gw, API_KEY, &bad_number), 400, "invalid_field", None);
    let mut empty = good.clone();
    empty["text"] = json!("");
    assert_error(submit(&a, &gw, API_KEY, &empty), 400, "empty_text", Some("text"));
    let mut long = good.clone();
    long["text"] = json!("x".repeat(153 * 16 + 1));
    assert_error(submit(&a, &gw, API_KEY, &long), 400, "text_too_long", Some("text"));
    let mut sender = good.clone();
    sender["from"] = json!("WAY-TOO-LONG-SENDER");
    assert_error(submit(&a, &gw, API_KEY, &sender), 400, "invalid_sender", Some("from"));
    assert_error(
        submit(&a, &gw, API_KEY, &json!({"to": "+4915112345678", "from": "ACME", "text": "hi"})),
        404,
        "no_route",
        Some("to"),
    );

    // 401: no key, malformed header, unknown key.
    assert_error(raw(&a, &gw, None, json_ct, good.to_string().as_bytes()), 401, "unauthorized", None);
    assert_error(
        raw(&a, &gw, Some("Basic YWxhZGRpbjpvcGVu"), json_ct, good.to_string().as_bytes()),
        401,
        "unauthorized",
        None,
    );
    assert_error(submit(&a, &gw, "wrong-key-0123456789abcdef", &good), 401, "unauthorized", None);

    // 404: unknown link, unknown pool, unknown message, unknown path.
    let mut unknown_link = good.clone();
    unknown_link["link"] = json!("999");
    assert_error(submit(&a, &gw, API_KEY, &unknown_link), 404, "unknown_link", Some("link"));
    assert_error(
        submit(&a, &gw, API_KEY, &json!({"to": "+4915112345678", "from": "ACME", "text": "hi", "pool": "eu"})),
        404,
        "unknown_pool",
        Some("pool"),
    );
    assert_error(get_message(&a, &gw, API_KEY, "00000000deadbeef"), 404, "message_not_found", None);
    assert_error(get_message(&a, &gw, API_KEY, "not-an-id"), 400, "invalid_id", Some("id"));
    assert_error(get_inbound(&a, &gw, API_KEY, "00000000deadbeef"), 404, "inbound_not_found", None);
    assert_error(get_inbound(&a, &gw, API_KEY, "not-an-id"), 400, "invalid_id", Some("id"));
    let mut r = a.get(&gw.url("/api/v2/nothing")).call().unwrap();
    assert_error((r.status().as_u16(), r.body_mut().read_json().unwrap()), 404, "not_found", None);

    // 405, 413, 415.
    let mut r = a.delete(&gw.url("/api/v1/messages")).call().unwrap();
    assert_error((r.status().as_u16(), r.body_mut().read_json().unwrap()), 405, "method_not_allowed", None);
    let huge =
        format!("{{\"to\":\"+4915112345678\",\"from\":\"ACME\",\"link\":\"100\",\"text\":\"{}\"}}", "x".repeat(5000));
    assert_error(raw(&a, &gw, auth, json_ct, huge.as_bytes()), 413, "body_too_large", None);
    assert_error(raw(&a, &gw, auth, "text/plain", good.to_string().as_bytes()), 415, "unsupported_media_type", None);

    // Bad input changed nothing: the SMSC saw no submit_sm at all.
    assert!(gw.terminate().success());
    let counters = sim.stop();
    assert!(counters.contains("submit_sm=0"), "sim counters: {counters}");
}

#[test]
fn a_client_cannot_read_another_clients_message() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&[]);
    let gw = Gateway::start(dir.path(), &GatewayConfig::one_link(sim.port));
    let a = agent();
    let (code, v) = submit(&a, &gw, API_KEY, &message("+4915112345678", "100"));
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap();
    assert_eq!(get_message(&a, &gw, API_KEY, id).0, 200);
    assert_error(get_message(&a, &gw, OTHER_KEY, id), 404, "message_not_found", None);
    // Without [history], the history endpoints say so (history_disabled), whatever the key.
    for path in ["/api/v1/history/messages", "/api/v1/history/usage?bucket=day"] {
        let mut r = a.get(&gw.url(path)).header("Authorization", &format!("Bearer {API_KEY}")).call().unwrap();
        assert_error((r.status().as_u16(), r.body_mut().read_json().unwrap()), 404, "history_disabled", None);
    }
}

/// 502 SMSC refused (with the command_status, the record kept), 504 no answer in time
/// (outcome unknown, record kept), 503 no bound session.
#[test]
fn smsc_failures_map_to_502_503_504() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--reject", "4990000=0x45", "--blackhole", "4990001"]);
    let dead_port = free_port();
    let cfg = GatewayConfig {
        links: vec![("100".into(), sim.port), ("down".into(), dead_port)],
        response_timeout_ms: 500,
        extra_config: String::new(),
        ..Default::default()
    };
    let gw = Gateway::start_on(dir.path(), free_port(), &cfg, false);
    let a = agent();
    // Wait until link 100 is bound (link "down" never binds).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while submit(&a, &gw, API_KEY, &message("+4915112345678", "100")).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "link 100 never bound; log:\n{}", gw.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let (code, body) = submit(&a, &gw, API_KEY, &message("+4990000123456", "100"));
    assert_eq!(code, 502, "{body}");
    assert_eq!(body["error"]["code"], "smsc_rejected");
    assert_eq!(body["error"]["command_status"], 0x45);
    let id = body["error"]["id"].as_str().expect("502 carries the id");
    let (c, rec) = get_message(&a, &gw, API_KEY, id);
    assert_eq!(c, 200);
    assert_eq!(rec["status"], "rejected");
    assert_eq!(rec["transitions"][1]["command_status"], 0x45);

    let (code, body) = submit(&a, &gw, API_KEY, &message("+4990001123456", "100"));
    assert_eq!(code, 504, "{body}");
    assert_eq!(body["error"]["code"], "smsc_timeout");
    let id = body["error"]["id"].as_str().expect("504 carries the id");
    assert_eq!(get_message(&a, &gw, API_KEY, id).1["status"], "unknown");

    let (code, body) = submit(&a, &gw, API_KEY, &message("+4915112345678", "down"));
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "no_session");
}

#[test]
fn a_bad_config_names_file_and_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("smsgate.toml");
    std::fs::write(&config, "[http]\nlisten = \"127.0.0.1:1\"\nlisen = 2\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("smsgate.toml") && err.contains("http.lisen"), "{err}");

    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[links.100]\nhost = \"127.0.0.1\"\nport = 2775\nsystem_id = \"gw\"\npassword = \"pw\"\nesme_rate = 0\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        format!("[smpp]\nrules_file = \"{}\"\n[[clients]]\nname = \"a\"\napi_key = \"{API_KEY}\"\n", rules.display()),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules.toml") && err.contains("links.100.esme_rate"), "{err}");

    std::fs::write(
        &config,
        format!("[history]\ndestination = \"hashed\"\npostgres_url = \"host=/tmp\"\n[[clients]]\nname = \"a\"\napi_key = \"{API_KEY}\"\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(["--config", config.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("history.destination_key"), "{err}");
}
