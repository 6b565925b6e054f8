//! The gRPC API against a running smsgate and smsc-sim, driven by a client this project did
//! not write: Python grpcio (stubs generated from proto/smsgate.proto at test time) and, for
//! frames no well-behaved client sends, the `h2` library. tests/grpc_client.py runs the calls;
//! the assertions are here.
//!
//! Needs python3 with venv; the first run installs grpcio, grpcio-tools and h2 from PyPI into
//! target/tmp/grpc-venv (scripts/test.sh does the same up front).
// Test clients are plain threads, not shards: blocking sleeps while polling are fine here.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::*;

// === the Python client ===

struct Python {
    bin: PathBuf,
    stubs: PathBuf,
}

/// The venv and the generated stubs, made once per test binary.
fn python() -> &'static Python {
    static PY: OnceLock<Python> = OnceLock::new();
    PY.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let venv = tmp.join("grpc-venv");
        let bin = venv.join("bin/python");
        let ready = |bin: &Path| {
            Command::new(bin).args(["-c", "import grpc, grpc_tools, h2"]).status().is_ok_and(|s| s.success())
        };
        if !ready(&bin) {
            let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().is_ok_and(|s| s.success());
            assert!(ok, "python3 -m venv {} failed", venv.display());
            let ok = Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "grpcio", "grpcio-tools", "h2"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok && ready(&bin), "installing grpcio, grpcio-tools, h2 failed");
        }
        let stubs = tmp.join("grpc-stubs");
        std::fs::create_dir_all(&stubs).expect("stubs dir");
        let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
        let out = Command::new(&bin)
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(&proto)
            .arg(format!("--python_out={}", stubs.display()))
            .arg(format!("--grpc_python_out={}", stubs.display()))
            .arg(proto.join("smsgate.proto"))
            .output()
            .expect("run grpc_tools.protoc");
        assert!(out.status.success(), "protoc: {}", String::from_utf8_lossy(&out.stderr));
        Python { bin, stubs }
    })
}

/// Starts tests/grpc_client.py on the operations; [`results`] reads its answer.
fn spawn(port: u16, ops: Value) -> std::process::Child {
    let py = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_client.py");
    let mut child = Command::new(&py.bin)
        .arg(script)
        .arg(&py.stubs)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start grpc_client.py");
    child.stdin.take().expect("stdin").write_all(ops.to_string().as_bytes()).expect("write ops");
    child
}

fn results(child: std::process::Child, log: &dyn Fn() -> String) -> Vec<Value> {
    let out = child.wait_with_output().expect("grpc_client.py");
    assert!(
        out.status.success(),
        "grpc_client.py failed: {}\nsmsgate log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("grpc_client.py output: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs the operations (see tests/grpc_client.py) and returns one result per operation.
fn run(gw: &Gateway, ops: Value) -> Vec<Value> {
    results(spawn(gw.port, ops), &|| gw.log())
}

fn one(gw: &Gateway, op: Value) -> Value {
    run(gw, json!([op])).remove(0)
}

fn msg(to: &str, link: &str) -> Value {
    json!({"to": to, "from": "ACME", "text": "Hello over gRPC", "link": link})
}

fn assert_status(r: &Value, code: &str, trailers: &[(&str, &str)]) {
    assert_eq!(r["code"], code, "{r}");
    assert!(r["details"].as_str().is_some_and(|d| !d.is_empty()), "a refusal says why: {r}");
    for (k, v) in trailers {
        assert_eq!(r["trailers"][*k], *v, "trailer {k}: {r}");
    }
}

/// A sim (rejecting 4990000…, throttling 4990002…, never answering 4990001…, receipts after
/// 50 ms) and a gateway with link 100 on it and link `down` on a closed port.
fn start(dir: &Path) -> (Sim, Gateway) {
    let sim = Sim::start(&[
        "--reject",
        "4990000=0x45",
        "--reject",
        "4990002=0x58",
        "--blackhole",
        "4990001",
        "--dlr-delay-ms",
        "50",
    ]);
    let cfg = GatewayConfig {
        links: vec![("100".into(), sim.port), ("down".into(), free_port())],
        response_timeout_ms: 500,
        ..GatewayConfig::one_link(sim.port)
    };
    let gw = Gateway::start_on(dir, free_port(), &cfg, false);
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bound = agent
            .get(&gw.url("/healthz"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
            .is_some_and(|h| {
                let l = &h["links"]["100"];
                l["sessions"].as_u64().is_some() && l["sessions_bound"] == l["sessions"]
            });
        // Bound, and a first message goes through (the rate limiter has its first lease).
        if bound && submit(&agent, &gw, API_KEY, &msg("+4915112345678", "100")).0 == 200 {
            return (sim, gw);
        }
        assert!(Instant::now() < deadline, "link 100 never bound; log:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

// === tests ===

#[test]
fn unary_calls_and_every_status() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, gw) = start(dir.path());
    let good = msg("+4915112345678", "100");
    let mut with_ref = good.clone();
    with_ref["client_ref"] = json!("order-7");

    let r = run(
        &gw,
        json!([
            {"op": "submit", "key": API_KEY, "msg": with_ref},
            {"op": "submit", "msg": good},
            {"op": "submit", "key": "wrong-key-0123456789abcdef", "msg": good},
            {"op": "submit", "key": API_KEY, "msg": {"to": "+49-151", "from": "ACME", "text": "x", "link": "100"}},
            {"op": "submit", "key": API_KEY, "msg": {"to": "+4915112345678", "from": "ACME", "text": "x".repeat(153 * 16 + 1), "link": "100"}},
            {"op": "submit", "key": API_KEY, "msg": {"to": "+4915112345678", "from": "ACME", "text": "x"}},
            {"op": "submit", "key": API_KEY, "msg": {"to": "+4915112345678", "from": "WAY-TOO-LONG-SENDER", "text": "x", "link": "100"}},
            {"op": "submit", "key": API_KEY, "msg": msg("+4915112345678", "999")},
            {"op": "submit", "key": API_KEY, "msg": {"to": "+4915112345678", "from": "ACME", "text": "x", "pool": "eu"}},
            {"op": "submit", "key": API_KEY, "msg": msg("+4990000123456", "100")},
            {"op": "submit", "key": API_KEY, "msg": msg("+4990001123456", "100")},
            {"op": "submit", "key": API_KEY, "msg": msg("+4915112345678", "down")},
            {"op": "submit", "key": API_KEY, "msg": {"to": "+4915112345678", "from": "ACME", "text": "x".repeat(5 << 20), "link": "100"}},
            {"op": "get", "key": API_KEY, "id": "00000000deadbeef"},
            {"op": "get", "key": API_KEY, "id": "not-an-id"},
            {"op": "unknown_method", "key": API_KEY},
            // Last: the SMSC's throttling slows the session down for a while.
            {"op": "submit", "key": API_KEY, "msg": msg("+4990002123456", "100")},
        ]),
    );
    // OK, with the same answer as the HTTP API.
    assert_eq!(r[0]["code"], "OK", "{}", r[0]);
    let ok = &r[0]["response"];
    assert_eq!(ok["status"], "MESSAGE_STATUS_SUBMITTED");
    assert_eq!(ok["link"], "100");
    assert_eq!(ok["client_ref"], "order-7");
    assert_eq!(ok["id"].as_str().map(str::len), Some(16), "{ok}");
    let id = ok["id"].as_str().unwrap().to_owned();
    // UNAUTHENTICATED: no key, unknown key.
    assert_status(&r[1], "UNAUTHENTICATED", &[("smsgate-code", "unauthorized")]);
    assert_status(&r[2], "UNAUTHENTICATED", &[]);
    // INVALID_ARGUMENT naming the field.
    assert_status(&r[3], "INVALID_ARGUMENT", &[("smsgate-field", "to"), ("smsgate-code", "invalid_number")]);
    assert_status(&r[4], "INVALID_ARGUMENT", &[("smsgate-field", "text"), ("smsgate-code", "text_too_long")]);
    // No target and no route of smpp_rules.toml for it.
    assert_status(&r[5], "NOT_FOUND", &[("smsgate-field", "to"), ("smsgate-code", "no_route")]);
    assert_status(&r[6], "INVALID_ARGUMENT", &[("smsgate-field", "from")]);
    // NOT_FOUND: unknown link or pool.
    assert_status(&r[7], "NOT_FOUND", &[("smsgate-code", "unknown_link"), ("smsgate-field", "link")]);
    assert_status(&r[8], "NOT_FOUND", &[("smsgate-code", "unknown_pool")]);
    // SMSC refusal: FAILED_PRECONDITION with the SMPP command_status and the kept record's id.
    assert_status(&r[9], "FAILED_PRECONDITION", &[("smsgate-code", "smsc_rejected"), ("smpp-command-status", "69")]);
    let rejected_id = r[9]["trailers"]["message-id"].as_str().expect("id of the refused message").to_owned();
    // SMSC timeout: DEADLINE_EXCEEDED with the id (outcome unknown).
    assert_status(&r[10], "DEADLINE_EXCEEDED", &[("smsgate-code", "smsc_timeout")]);
    let unknown_id = r[10]["trailers"]["message-id"].as_str().expect("id of the unanswered message").to_owned();
    // UNAVAILABLE: no bound session, with a retry delay.
    assert_status(&r[11], "UNAVAILABLE", &[("smsgate-code", "no_session"), ("retry-after-ms", "1000")]);
    // RESOURCE_EXHAUSTED: a message over the 4 MiB limit.
    assert_status(&r[12], "RESOURCE_EXHAUSTED", &[]);
    // GetMessage: NOT_FOUND, INVALID_ARGUMENT (field id).
    assert_status(&r[13], "NOT_FOUND", &[("smsgate-code", "message_not_found")]);
    assert_status(&r[14], "INVALID_ARGUMENT", &[("smsgate-field", "id")]);
    assert_status(&r[15], "UNIMPLEMENTED", &[]);
    // The SMSC's own rate limit: RESOURCE_EXHAUSTED with a retry delay, the status and the id.
    assert_status(
        &r[16],
        "RESOURCE_EXHAUSTED",
        &[("smsgate-code", "smsc_throttled"), ("smpp-command-status", "88"), ("retry-after-ms", "1000")],
    );
    assert!(r[16]["trailers"]["message-id"].is_string(), "{}", r[16]);

    // GetMessage: the lifecycle records, and another client sees none of them.
    let r = run(
        &gw,
        json!([
            {"op": "get", "key": API_KEY, "id": id},
            {"op": "get", "key": API_KEY, "id": rejected_id},
            {"op": "get", "key": API_KEY, "id": unknown_id},
            {"op": "get", "key": OTHER_KEY, "id": id},
        ]),
    );
    assert_eq!(r[0]["code"], "OK", "{}", r[0]);
    let rec = &r[0]["response"];
    assert_eq!(rec["id"], id.as_str());
    assert_eq!(rec["to"], "+4915112345678");
    assert_eq!(rec["client_ref"], "order-7");
    assert_eq!(rec["transitions"][0]["status"], "MESSAGE_STATUS_ACCEPTED");
    assert_eq!(r[1]["response"]["status"], "MESSAGE_STATUS_REJECTED", "{}", r[1]);
    assert_eq!(r[1]["response"]["transitions"][1]["command_status"], 0x45);
    assert_eq!(r[2]["response"]["status"], "MESSAGE_STATUS_UNKNOWN", "{}", r[2]);
    assert_status(&r[3], "NOT_FOUND", &[]);

    // The HTTP API on the same port still answers.
    assert_eq!(agent().get(&gw.url("/healthz")).call().expect("healthz").status(), 200);
}

#[test]
fn batch_and_stream_answer_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, gw) = start(dir.path());
    let mut batch: Vec<Value> = (0..50).map(|i| msg(&format!("+49151{:08}", i), "100")).collect();
    batch[3] = json!({"to": "+49", "from": "ACME", "text": "x", "link": "100"});
    batch[7] = msg("+4990000123456", "100");
    batch[9] = msg("+4915112345678", "999");
    let too_big: Vec<Value> = (0..1001).map(|_| msg("+4915112345678", "100")).collect();

    // A stream of 600 (more than the 256 in flight), with refusals among them.
    let mut stream: Vec<Value> = (0..600).map(|i| msg(&format!("+49152{:08}", i), "100")).collect();
    stream[10] = json!({"to": "nope", "from": "ACME", "text": "x", "link": "100"});
    stream[20] = msg("+4990000123456", "100");
    stream[30] = Value::Null; // no `message` at all

    let r = run(
        &gw,
        json!([
            {"op": "batch", "key": API_KEY, "msgs": batch},
            {"op": "batch", "key": API_KEY, "msgs": too_big},
            {"op": "batch", "key": API_KEY, "msgs": []},
            {"op": "stream", "key": API_KEY, "msgs": stream, "first_id": 1000},
            {"op": "stream", "key": "wrong-key-0123456789abcdef", "msgs": [msg("+4915112345678", "100")]},
        ]),
    );
    // SubmitBatch: one result per message, in order.
    assert_eq!(r[0]["code"], "OK", "{}", r[0]);
    let results = r[0]["response"]["results"].as_array().expect("results");
    assert_eq!(results.len(), 50);
    for (i, res) in results.iter().enumerate() {
        match i {
            3 => {
                assert_eq!(res["refused"]["grpc_code"], 3, "{res}");
                assert_eq!(res["refused"]["field"], "to", "{res}");
            }
            7 => {
                assert_eq!(res["refused"]["grpc_code"], 9, "{res}");
                assert_eq!(res["refused"]["smpp_command_status"], 0x45, "{res}");
                assert_eq!(res["refused"]["id"].as_str().map(str::len), Some(16), "{res}");
            }
            9 => assert_eq!(res["refused"]["code"], "unknown_link", "{res}"),
            _ => {
                assert_eq!(res["accepted"]["status"], "MESSAGE_STATUS_SUBMITTED", "{i}: {res}");
            }
        }
    }
    assert_status(&r[1], "INVALID_ARGUMENT", &[("smsgate-field", "messages")]);
    assert_status(&r[2], "INVALID_ARGUMENT", &[("smsgate-field", "messages")]);

    // SubmitStream: one result per correlation id, whatever the order.
    assert_eq!(r[3]["code"], "OK", "{}", r[3]);
    let results = r[3]["results"].as_array().expect("results");
    assert_eq!(results.len(), 600);
    let mut by_id = std::collections::BTreeMap::new();
    for res in results {
        let cid: u64 = res["correlation_id"].as_str().and_then(|s| s.parse().ok()).expect("correlation id");
        assert!(by_id.insert(cid, res.clone()).is_none(), "two results for {cid}");
    }
    assert_eq!(by_id.keys().copied().collect::<Vec<_>>(), (1000..1600).collect::<Vec<_>>());
    assert_eq!(by_id[&1010]["result"]["refused"]["field"], "to");
    assert_eq!(by_id[&1020]["result"]["refused"]["smpp_command_status"], 0x45);
    assert_eq!(by_id[&1030]["result"]["refused"]["field"], "message");
    let accepted = by_id.values().filter(|r| r["result"]["accepted"]["id"].is_string()).count();
    assert_eq!(accepted, 597);
    assert_status(&r[4], "UNAUTHENTICATED", &[]);

    // Every accepted message reached the SMSC, once: 47 + 597, 2 refused by the SMSC, 1 warm-up.
    assert!(gw.terminate().success());
    let counters = sim.stop();
    assert!(counters.contains("submit_sm=647"), "sim counters: {counters}");
}

#[test]
fn watch_receipts_streams_this_clients_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, gw) = start(dir.path());
    let mine: Vec<Value> = (0..20)
        .map(|i| json!({"op": "submit", "key": API_KEY, "msg": msg(&format!("+49153{:08}", i), "100")}))
        .collect();
    let mut then = mine.clone();
    then.push(json!({"op": "submit", "key": OTHER_KEY, "msg": msg("+4915399999999", "100")}));
    let r =
        one(&gw, json!({"op": "watch", "key": API_KEY, "expect": 20, "then": then, "timeout": 20, "linger_s": 0.5}));
    let submitted: std::collections::BTreeSet<String> = r["then"]
        .as_array()
        .unwrap()
        .iter()
        .take(20)
        .map(|s| s["response"]["id"].as_str().expect("submitted").to_owned())
        .collect();
    let other = r["then"][20]["response"]["id"].as_str().expect("other client's id").to_owned();
    let receipts = r["receipts"].as_array().unwrap();
    let got: std::collections::BTreeSet<String> =
        receipts.iter().map(|x| x["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, submitted, "{r}");
    assert!(!got.contains(&other), "another client's receipt leaked: {r}");
    assert_eq!(r["missed"], 0);
    for x in receipts {
        assert_eq!(x["status"], "MESSAGE_STATUS_DELIVERED", "{x}");
        assert_eq!(x["link"], "100");
    }
    // Without a key, no watch.
    assert_status(&one(&gw, json!({"op": "watch", "expect": 1})), "UNAUTHENTICATED", &[]);
    // The watch ended with the client's cancel; the shard still answers.
    let again = one(&gw, json!({"op": "submit", "key": API_KEY, "msg": msg("+4915112345678", "100")}));
    assert_eq!(again["code"], "OK", "{again}");
}

/// WatchInbound streams the MO routed to the watching client, decoded, and nothing else.
#[test]
fn watch_inbound_streams_this_clients_inbound_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(&[]);
    let cfg = GatewayConfig {
        client_extra: format!("mo_url = \"http://127.0.0.1:{}/mo\"\n", free_port()),
        extra_config: "[webhooks]\nallowed_networks = [\"127.0.0.1\"]\n".into(),
        rules_extra: "[[mo_routes]]\nto = \"12345\"\nclient = \"acme\"\n".into(),
        ..GatewayConfig::one_link(sim.port)
    };
    let gw = Gateway::start(dir.path(), &cfg);
    let ready = dir.path().join("watching");
    let op = json!({"op": "watch", "stream": "inbound", "key": API_KEY, "expect": 2, "timeout": 20, "linger_s": 0.5,
        "ready_file": ready.to_str().unwrap()});
    let child = spawn(gw.port, json!([op]));
    wait_until(60, "the watch is open", || ready.exists());
    sim.control("mo to=55555 text=unrouted");
    sim.control("mo to=12345 text=first");
    sim.control("mo to=12345 coding=ucs2 split=udh16 order=reverse part_octets=20 text=второе сообщение 😀");
    let r = results(child, &|| gw.log()).remove(0);
    assert_eq!(r["code"], "OK", "{r}");
    let texts: Vec<&str> = r["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["first", "второе сообщение 😀"], "{r}");
    let long = &r["messages"][1];
    assert_eq!(
        (long["to"].as_str(), long["total_parts"].as_u64(), long["data_coding"].as_u64()),
        (Some("12345"), Some(2), Some(8)),
        "{r}"
    );
    assert_eq!(r["missed"], 0);
}

#[test]
fn malformed_frames_never_harm_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, gw) = start(dir.path());
    // A valid SubmitRequest, encoded by hand (to, from, text, link).
    let mut valid = Vec::new();
    for (tag, s) in [(0x0a, "+4915112345678"), (0x12, "ACME"), (0x1a, "hi"), (0x22, "100")] {
        valid.push(tag);
        valid.push(s.len() as u8);
        valid.extend_from_slice(s.as_bytes());
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let r = one(
        &gw,
        json!({"op": "raw", "key": API_KEY, "streams": [
            // Not protobuf: INVALID_ARGUMENT.
            {"prefix_len": 4, "hex": "ffffffff"},
            // Compressed flag without an encoding: INTERNAL.
            {"flag": 1, "prefix_len": valid.len(), "hex": hex(&valid)},
            // A flag that does not exist: INTERNAL.
            {"flag": 7, "prefix_len": valid.len(), "hex": hex(&valid)},
            // A prefix announcing 100 MB: RESOURCE_EXHAUSTED, without reading them.
            {"prefix_len": 100_000_000u32, "hex": "00"},
            // The stream ends inside a message: INTERNAL.
            {"prefix_len": 100, "hex": "0a0b"},
            // Half a prefix: INTERNAL.
            {"hex": "0000"},
            // No message at all: INTERNAL.
            {"hex": ""},
            // Two messages to a unary call: INTERNAL.
            {"hex": format!("00{:08x}{}00{:08x}{}", valid.len(), hex(&valid), valid.len(), hex(&valid))},
            // Compression asked for: UNIMPLEMENTED.
            {"headers": [["grpc-encoding", "gzip"]], "flag": 1, "prefix_len": 3, "hex": "000000"},
            // A path that is not ours: UNIMPLEMENTED.
            {"path": "/other.Service/Call", "prefix_len": 0},
            // And after all that, on the same connection, a good call: OK.
            {"prefix_len": valid.len(), "hex": hex(&valid)},
        ]}),
    );
    let streams = r["streams"].as_array().expect("streams");
    let codes: Vec<&str> = streams.iter().map(|s| s["headers"]["grpc-status"].as_str().unwrap_or("none")).collect();
    assert_eq!(codes, ["3", "13", "13", "8", "13", "13", "13", "13", "12", "12", "0"], "{r}");
    assert!(streams[10]["data_hex"].as_str().is_some_and(|d| d.len() > 10), "the good call got its answer: {r}");

    // Bytes that are not HTTP/2 at all: the server closes that connection (GOAWAY)...
    for junk in ["ffffffffffffffffffffffffffff", "000004080000000000ffffffff"] {
        let g = one(&gw, json!({"op": "garbage", "hex": junk}));
        assert_eq!(g["goaway"], true, "{g}");
    }
    // ...and every shard keeps serving both APIs.
    let after = run(
        &gw,
        json!([
            {"op": "submit", "key": API_KEY, "msg": msg("+4915112345678", "100")},
            {"op": "submit", "key": API_KEY, "msg": msg("+4915112345679", "100")},
        ]),
    );
    assert!(after.iter().all(|a| a["code"] == "OK"), "{after:?}");
    // A new connection each time: SO_REUSEPORT spreads them over the shards.
    for _ in 0..8 {
        let r = agent().get(&gw.url("/healthz")).call().expect("healthz");
        assert_eq!(r.status(), 200);
    }
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}
