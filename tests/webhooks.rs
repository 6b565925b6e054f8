//! Delivery-report webhooks end to end: smsgate and smsc-sim as processes, and a real HTTP
//! receiver started by the test (std `TcpListener`, one thread per connection). Signatures are
//! checked with Python's `hmac`, an implementation smsgate did not write.
// Test code on plain threads: blocking waits and a mutex are fine here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use receiver::{python_verifies, Received, Receiver};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;

const HOOK_KEY: &str = "hooked-key-0123456789abcdef";
const HOOK_SECRET: &str = "whsec-0123456789abcdef";

/// A gateway whose client `hooked` posts to `url`, with `[webhooks]` settings `webhooks`.
fn config(sim_port: u16, url: &str, events: &str, webhooks: &str) -> GatewayConfig {
    GatewayConfig {
        extra_config: format!(
            "[webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n{webhooks}\n\n[[clients]]\nname = \"hooked\"\napi_key = \"{HOOK_KEY}\"\n\
             webhook_url = \"{url}\"\nwebhook_secret = \"{HOOK_SECRET}\"\nwebhook_events = {events}\n"
        ),
        ..GatewayConfig::one_link(sim_port)
    }
}

const FAST_RETRY: &str = "retry_initial_ms = 100\nretry_max_ms = 400\npoll_interval_ms = 50\nrequest_timeout_ms = 2000";

fn submit_ok(agent: &ureq::Agent, gw: &Gateway, key: &str, body: &Value) -> String {
    let (status, v) = submit(agent, gw, key, body);
    assert_eq!(status, 200, "submit: {v}");
    v["id"].as_str().expect("id").to_owned()
}

/// `/metrics` series without labels, by name.
fn metric_values(agent: &ureq::Agent, gw: &Gateway) -> HashMap<String, f64> {
    let mut r = agent.get(&gw.url("/metrics")).call().expect("metrics");
    let text = r.body_mut().read_to_string().expect("metrics text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k.to_owned(), v.trim().parse().ok()?)))
        .collect()
}

fn wait_delivered(agent: &ureq::Agent, gw: &Gateway, key: &str, ids: &[String]) {
    for id in ids {
        wait_until(10, "the receipt made the message delivered", || {
            get_message(agent, gw, key, id).1["status"] == "delivered"
        });
    }
}

/// A receipt gives exactly one signed POST per event, in order (submitted, then final), with
/// the documented payload; a message's own `callback_url` is used for a client without a
/// default; a bad `callback_url` is refused at submit.
#[test]
fn a_receipt_gives_one_signed_post_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0, 0, false);
    let sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let cfg = config(sim.port, &receiver.url("/hooks"), "[\"submitted\", \"final\"]", "poll_interval_ms = 50");
    let gw = Gateway::start(dir.path(), &cfg);
    let agent = agent();

    let body = json!({"to": "+4915112345678", "from": "ACME", "text": "Hello", "link": "100", "client_ref": "order-7"});
    let id = submit_ok(&agent, &gw, HOOK_KEY, &body);
    let body = json!({"to": "+4915112345679", "from": "ACME", "text": "Hi", "link": "100",
        "callback_url": receiver.url("/per-message")});
    let other = submit_ok(&agent, &gw, OTHER_KEY, &body);
    wait_until(10, "three webhooks", || receiver.got().len() >= 3);
    std::thread::sleep(Duration::from_millis(500));
    let got = receiver.got();
    assert_eq!(got.len(), 3, "exactly one POST per event: {got:#?}");

    let mine: Vec<&Received> = got.iter().filter(|r| r.path == "/hooks").collect();
    assert_eq!(
        mine.iter().map(|r| r.event_id()).collect::<Vec<_>>(),
        [format!("{id}.submitted"), format!("{id}.final")]
    );
    let (_, rec) = get_message(&agent, &gw, HOOK_KEY, &id);
    for r in &mine {
        let sig = r.headers.get("x-smsgate-signature").expect("signed");
        assert!(python_verifies(HOOK_SECRET, sig, &r.body), "signature {sig} over {}", r.body);
        assert!(!python_verifies("not-the-secret-000", sig, &r.body));
        assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
    }
    let submitted = mine[0].json();
    assert_eq!(submitted["event"], "submitted");
    assert_eq!(submitted["status"], "submitted");
    assert_eq!(submitted["timestamps"]["done_ms"], Value::Null);
    let fin = mine[1].json();
    assert_eq!(fin["event_id"], format!("{id}.final"));
    assert_eq!(fin["event"], "final");
    assert_eq!(fin["message_id"], id);
    assert_eq!(fin["client_ref"], "order-7");
    assert_eq!(fin["status"], "delivered");
    assert_eq!(fin["link"], "100");
    assert_eq!(fin["smsc_message_ids"], json!([rec["parts"][0]["smsc_message_id"]]));
    assert_eq!(fin["segments"]["count"], 1);
    assert_eq!(fin["segments"]["parts"][0]["status"], "delivered");
    assert_eq!(fin["error"]["command_status"], Value::Null);
    assert_eq!(fin["timestamps"]["accepted_ms"], rec["transitions"][0]["at_ms"]);
    assert_eq!(fin["timestamps"]["submitted_ms"], rec["transitions"][1]["at_ms"]);
    assert_eq!(fin["timestamps"]["done_ms"], rec["transitions"][2]["at_ms"]);

    let theirs: Vec<&Received> = got.iter().filter(|r| r.path == "/per-message").collect();
    assert_eq!(theirs.len(), 1, "client `other` asked for final events only (the default)");
    assert_eq!(theirs[0].event_id(), format!("{other}.final"));
    assert!(!theirs[0].headers.contains_key("x-smsgate-signature"), "`other` has no webhook_secret");

    for bad in
        ["ftp://example.com/", "http://", "http://a b/", "http://169.254.169.254/latest/meta-data", "http://[::1]/"]
    {
        let body = json!({"to": "+4915112345678", "from": "ACME", "text": "x", "link": "100", "callback_url": bad});
        let (status, v) = submit(&agent, &gw, HOOK_KEY, &body);
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_callback_url")), "{bad}: {v}");
    }
    gw.terminate();
}

/// A receiver that is down, then fails twice, then works: every event arrives, exactly one
/// attempt per event is answered 2xx, and the failed attempts were retried from the outbox.
#[test]
fn events_are_retried_until_the_receiver_takes_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let url = format!("http://127.0.0.1:{port}/hooks");
    let gw = Gateway::start(dir.path(), &config(sim.port, &url, "[\"final\"]", FAST_RETRY));
    let agent = agent();
    let ids: Vec<String> =
        (0..3).map(|i| submit_ok(&agent, &gw, HOOK_KEY, &message(&format!("+49151000000{i:02}"), "100"))).collect();
    wait_delivered(&agent, &gw, HOOK_KEY, &ids);
    // Down for a while: attempts fail with connection refused and are rescheduled.
    std::thread::sleep(Duration::from_millis(800));
    let receiver = Receiver::start(port, 2, false);
    wait_until(15, "every event delivered", || receiver.delivered().len() >= 3);
    std::thread::sleep(Duration::from_millis(800));
    let mut delivered: Vec<String> = receiver.delivered().iter().map(|r| r.event_id().to_owned()).collect();
    delivered.sort();
    let mut want: Vec<String> = ids.iter().map(|id| format!("{id}.final")).collect();
    want.sort();
    assert_eq!(delivered, want, "each event answered 2xx exactly once");
    assert_eq!(receiver.got().len(), 5, "two 503s, then one success per event");
    wait_until(5, "metrics show the retries and an empty outbox", || {
        let m = metric_values(&agent, &gw);
        m.get("smsgate_webhooks_delivered_total") == Some(&3.0)
            && m.get("smsgate_webhooks_pending") == Some(&0.0)
            && m.get("smsgate_webhooks_retried_total").is_some_and(|&n| n >= 3.0)
            && m.get("smsgate_webhooks_failed_total") == Some(&0.0)
            && m.get("smsgate_webhooks_overflow_total") == Some(&0.0)
    });
    gw.terminate();
}

/// Events owed when smsgate is killed with -9 are in the outbox: after a restart they are
/// delivered.
#[test]
fn pending_events_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let url = format!("http://127.0.0.1:{port}/hooks");
    let cfg = config(sim.port, &url, "[\"final\"]", FAST_RETRY);
    let gw = Gateway::start(dir.path(), &cfg);
    let agent = agent();
    let ids: Vec<String> =
        (0..5).map(|i| submit_ok(&agent, &gw, HOOK_KEY, &message(&format!("+49151000001{i:02}"), "100"))).collect();
    wait_delivered(&agent, &gw, HOOK_KEY, &ids);
    gw.kill9();
    let receiver = Receiver::start(port, 0, false);
    let gw = Gateway::start(dir.path(), &cfg);
    wait_until(15, "every pending event delivered after the restart", || receiver.delivered().len() >= 5);
    std::thread::sleep(Duration::from_millis(500));
    let mut delivered: Vec<String> = receiver.delivered().iter().map(|r| r.event_id().to_owned()).collect();
    delivered.sort();
    let mut want: Vec<String> = ids.iter().map(|id| format!("{id}.final")).collect();
    want.sort();
    assert_eq!(delivered, want);
    gw.terminate();
}

/// Submit latencies of `n` messages from `key`, sorted.
fn latencies(agent: &ureq::Agent, gw: &Gateway, key: &str, n: usize, ids: &mut Vec<String>) -> Vec<Duration> {
    let mut out: Vec<Duration> = (0..n)
        .map(|i| {
            let start = Instant::now();
            ids.push(submit_ok(agent, gw, key, &message(&format!("+4915100{:06}", ids.len() * 1000 + i), "100")));
            start.elapsed()
        })
        .collect();
    out.sort();
    out
}

/// A receiver that accepts and never answers holds the sender thread, not the shards:
/// submissions stay as fast as before it hung (same gateway, a client without webhooks as the
/// baseline) and receipts are still applied.
#[test]
fn a_hanging_receiver_does_not_slow_submissions() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0, 0, true);
    let sim = Sim::start(&["--dlr-delay-ms", "5"]);
    let cfg = config(
        sim.port,
        &receiver.url("/hooks"),
        "[\"final\"]",
        "request_timeout_ms = 5000\nbatch = 16\nmax_concurrency_per_host = 2",
    );
    let gw = Gateway::start(dir.path(), &cfg);
    let agent = agent();
    let mut ids = Vec::new();
    let before = latencies(&agent, &gw, OTHER_KEY, 200, &mut ids);
    let first = submit_ok(&agent, &gw, HOOK_KEY, &message("+4915100000200", "100"));
    wait_until(10, "the sender is stuck on the hanging receiver", || !receiver.got().is_empty());
    let mut hooked = vec![first];
    let during = latencies(&agent, &gw, HOOK_KEY, 200, &mut hooked);
    let pct = |l: &[Duration], p: usize| l[(l.len() - 1) * p / 100];
    let (p50, p99) = (pct(&during, 50), pct(&during, 99));
    let (base50, base99) = (pct(&before, 50), pct(&before, 99));
    assert!(p50 <= base50 * 3 + Duration::from_millis(10), "p50 {p50:?}, before the hang {base50:?}");
    assert!(p99 <= base99 * 3 + Duration::from_millis(50), "p99 {p99:?}, before the hang {base99:?}");
    wait_delivered(&agent, &gw, HOOK_KEY, &hooked[hooked.len() - 5..]);
    assert!(
        receiver.got().len() <= 6,
        "two attempts at a time (max_concurrency_per_host), each held up to its timeout"
    );
    gw.kill9();
}

/// A test CA and a certificate for 127.0.0.1 signed by it (openssl): (ca.pem, cert.pem, key.pem).
fn test_ca(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |f: &str| dir.join(f);
    std::fs::write(p("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=smsgate-test-ca"],
        ]
        .concat(),
        [&["req"][..], &ec, &["-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"]].concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    ];
    for args in steps {
        let out = std::process::Command::new("openssl").args(&args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (p("ca.pem"), p("srv.pem"), p("srv.key"))
}

/// A child process killed when the test ends, even by a panic.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An https receiver (Python's http.server and ssl, one request at a time) that prints each
/// POST as a JSON line and answers 204. Returns the process, its port and its lines.
fn https_receiver(cert: &std::path::Path, key: &std::path::Path) -> (Reaped, u16, std::sync::mpsc::Receiver<String>) {
    let script = "import http.server, ssl, sys, json\n\
        class H(http.server.BaseHTTPRequestHandler):\n\
        \x20   protocol_version = 'HTTP/1.1'\n\
        \x20   def do_POST(self):\n\
        \x20       body = self.rfile.read(int(self.headers.get('content-length', 0)))\n\
        \x20       print(json.dumps({'path': self.path, 'event_id': self.headers.get('x-smsgate-event-id'), 'body': body.decode()}), flush=True)\n\
        \x20       self.send_response(204); self.send_header('content-length', '0'); self.end_headers()\n\
        \x20   def log_message(self, *a): pass\n\
        srv = http.server.HTTPServer(('127.0.0.1', 0), H)\n\
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n\
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n\
        print(srv.server_address[1], flush=True)\n\
        srv.serve_forever()\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(cert)
        .arg(key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 https receiver");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("receiver banner {line:?}"));
    let (tx, posts) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(out).map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (Reaped(child), port, posts)
}

/// Webhooks over https to a receiver whose certificate chains to `webhooks.ca_file`; an
/// internal address is refused in the config unless `allowed_networks` names it, and a
/// `callback_url` naming an internal address is refused at submit.
#[test]
fn https_receivers_and_internal_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(dir.path());
    let (_tls, port, posts) = https_receiver(&cert, &key);
    let sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let cfg = GatewayConfig {
        extra_config: format!(
            "[webhooks]\nca_file = \"{}\"\npoll_interval_ms = 50\nretry_initial_ms = 100\nretry_max_ms = 200\n\n\
             [[clients]]\nname = \"hooked\"\napi_key = \"{HOOK_KEY}\"\nwebhook_url = \"https://127.0.0.1:{port}/tls\"\n\
             webhook_secret = \"{HOOK_SECRET}\"\n",
            ca.display()
        ),
        ..GatewayConfig::one_link(sim.port)
    };
    // 127.0.0.1 is not public: refused at start.
    let config = Gateway::write_config(dir.path(), free_port(), &cfg);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(["--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("clients[0].webhook_url"),
        "{out:?}"
    );
    let cfg = GatewayConfig {
        extra_config: cfg.extra_config.replace("[webhooks]\n", "[webhooks]\nallowed_networks = [\"127.0.0.1/32\"]\n"),
        ..cfg
    };
    let gw = Gateway::start(dir.path(), &cfg);
    let agent = agent();

    let id = submit_ok(&agent, &gw, HOOK_KEY, &message("+4915112345601", "100"));
    let line = posts.recv_timeout(Duration::from_secs(20)).expect("a POST over TLS");
    let got: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((got["path"].as_str(), got["event_id"].as_str()), (Some("/tls"), Some(format!("{id}.final").as_str())));

    let (status, v) = submit(
        &agent,
        &gw,
        API_KEY,
        &json!({"to": "+4915112345603", "from": "ACME", "text": "x", "link": "100",
        "callback_url": "http://10.1.2.3/hook"}),
    );
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_callback_url")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("allowed_networks"), "{v}");
    gw.terminate();
}

/// A name that resolves only to addresses the policy refuses is never called: the attempt
/// fails at resolution (counted as a retry), the receiver sees nothing.
#[test]
fn a_name_resolving_to_an_internal_address_is_never_called() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0, 0, false);
    let sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let cfg = GatewayConfig {
        extra_config: "[webhooks]\npoll_interval_ms = 50\nretry_initial_ms = 100\nretry_max_ms = 200\n".into(),
        client_extra: format!(
            "webhook_url = \"http://localhost:{}/internal\"\nwebhook_secret = \"{HOOK_SECRET}\"\n",
            receiver.port
        ),
        ..GatewayConfig::one_link(sim.port)
    };
    let gw = Gateway::start(dir.path(), &cfg);
    let agent = agent();
    let id = submit_ok(&agent, &gw, API_KEY, &message("+4915112345604", "100"));
    wait_delivered(&agent, &gw, API_KEY, &[id]);
    wait_until(10, "attempts refused at resolution and rescheduled", || {
        metric_values(&agent, &gw).get("smsgate_webhooks_retried_total").is_some_and(|&n| n >= 2.0)
    });
    assert!(receiver.got().is_empty(), "an internal address was called: {:?}", receiver.got());
    gw.terminate();
}

/// A dead receiver under a burst of receipts: the client's outbox share holds
/// (`max_pending_per_client`), every event ends counted as overflowed or failed (after
/// `max_age_s`), and the metrics show pending, retried and failed events on the way.
#[test]
fn a_dead_receiver_fills_only_its_share_and_every_event_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let dead = format!("http://127.0.0.1:{}/dead", free_port());
    let settings =
        "poll_interval_ms = 50\nretry_initial_ms = 100\nretry_max_ms = 200\nmax_age_s = 2\nmax_pending_per_client = 20";
    let gw = Gateway::start(dir.path(), &config(sim.port, &dead, "[\"final\"]", settings));
    let agent = agent();
    let ids: Vec<String> =
        (0..100).map(|i| submit_ok(&agent, &gw, HOOK_KEY, &message(&format!("+4915100002{i:03}"), "100"))).collect();
    let mut max_pending = 0.0f64;
    wait_until(30, "every event overflowed or failed", || {
        let m = metric_values(&agent, &gw);
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        max_pending = max_pending.max(get("smsgate_webhooks_pending"));
        get("smsgate_webhooks_overflow_total") + get("smsgate_webhooks_failed_total") >= 100.0
            && get("smsgate_webhooks_pending") == 0.0
    });
    wait_delivered(&agent, &gw, HOOK_KEY, &ids);
    let m = metric_values(&agent, &gw);
    assert!(max_pending <= 20.0, "the share held: {max_pending} pending at most");
    assert_eq!(m["smsgate_webhooks_overflow_total"] + m["smsgate_webhooks_failed_total"], 100.0, "{m:?}");
    assert!(m["smsgate_webhooks_failed_total"] >= 20.0, "the queued ones failed at max age: {m:?}");
    assert!(m["smsgate_webhooks_retried_total"] >= 20.0, "each was retried before: {m:?}");
    assert_eq!(m["smsgate_webhooks_delivered_total"], 0.0);
    gw.terminate();
}

/// A client that asks for `segment` events gets one per part receipt of a long message, each
/// before the message's `final`, in the order they were owed.
#[test]
fn segment_events_come_per_part_before_the_final() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0, 0, false);
    let sim = Sim::start(&["--dlr-delay-ms", "20"]);
    let cfg = config(sim.port, &receiver.url("/hooks"), "[\"segment\", \"final\"]", "poll_interval_ms = 50");
    let gw = Gateway::start(dir.path(), &cfg);
    let agent = agent();
    let long = json!({"to": "+4915112345699", "from": "ACME", "text": "x".repeat(300), "link": "100"});
    let id = submit_ok(&agent, &gw, HOOK_KEY, &long);
    let short = submit_ok(&agent, &gw, HOOK_KEY, &message("+4915112345698", "100"));
    wait_until(10, "two segment events and two finals", || receiver.delivered().len() >= 4);
    std::thread::sleep(Duration::from_millis(300));
    let got = receiver.delivered();
    let mine: Vec<String> =
        got.iter().map(|r| r.event_id().to_owned()).filter(|e| e.starts_with(id.as_str())).collect();
    assert_eq!(mine.len(), 3, "{mine:?}");
    let mut segments = mine[..2].to_vec();
    segments.sort();
    assert_eq!(segments, [format!("{id}.segment.1"), format!("{id}.segment.2")]);
    assert_eq!(mine[2], format!("{id}.final"), "the final comes last");
    let seg = got.iter().find(|r| r.event_id() == format!("{id}.segment.2")).unwrap().json();
    assert_eq!((seg["event"].as_str(), seg["segment"].as_u64()), (Some("segment"), Some(2)));
    assert_eq!(seg["segments"]["parts"][1]["status"], "delivered");
    let others: Vec<&str> = got.iter().map(|r| r.event_id()).filter(|e| e.starts_with(short.as_str())).collect();
    assert_eq!(others, [format!("{short}.final")], "a one-part message gets no segment event");
    gw.terminate();
}
