//! Contact policy end to end (issue 9): real `smsgate` processes, a real `smsc-sim` and a real
//! redis-server. Every refused message is answered 403 with its policy status, and the SMSC
//! sees exactly the accepted ones (the sim's `submit_sm` counter).

// Test clients are plain threads, not shards: polling a reload may sleep.
#![allow(clippy::disallowed_methods)]

#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/s3.rs"]
mod s3_server;
mod support;

use redis_server::RedisServer;
use s3_server::S3Server;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;

/// Submits and counts what was accepted, to compare with the SMSC's counter at the end.
struct Client {
    agent: ureq::Agent,
    accepted: u64,
}

impl Client {
    fn new() -> Self {
        Client { agent: agent(), accepted: 0 }
    }

    /// `None` accepted (200), else the refusal's `code` (after checking it is a 403). A 429
    /// (a rate limit, which runs before the policy and is not under test here) is retried.
    fn send(&mut self, gw: &Gateway, key: &str, from: &str, to: &str, text: &str) -> Option<String> {
        let body = json!({"to": to, "from": from, "text": text, "link": "100"});
        let mut tries = 0;
        let (status, body) = loop {
            let (status, answer) = submit(&self.agent, gw, key, &body);
            tries += 1;
            if status != 429 || tries == 100 {
                break (status, answer);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status == 200 {
            self.accepted += 1;
            return None;
        }
        assert_eq!(status, 403, "{body}");
        Some(body["error"]["code"].as_str().unwrap_or("").to_owned())
    }
}

fn submits_seen(sim: &mut Sim) -> u64 {
    let stats = sim.control("stats");
    stats
        .split_whitespace()
        .find_map(|w| w.strip_prefix("submit_sm="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no submit_sm counter in {stats}"))
}

fn refused(code: &str) -> Option<String> {
    Some(code.to_owned())
}

/// Touches `path` with new content and a modification time clearly after the old one (some
/// file systems keep whole seconds).
fn rewrite(path: &std::path::Path, text: &str, step: u64) {
    std::fs::write(path, text).unwrap();
    let later = SystemTime::now() + Duration::from_secs(step);
    std::fs::File::options().write(true).open(path).unwrap().set_modified(later).unwrap();
}

/// Single node, no Redis, one shard (CP2 is per shard without Redis): registered senders,
/// a blacklist file and its reload, duplicates within the window and after it.
#[test]
fn senders_blacklist_and_duplicates_without_redis() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(&[]);
    let blacklist = dir.path().join("blacklist.txt");
    std::fs::write(&blacklist, "# do not disturb\n+4915100000001\n").unwrap();
    let cfg = GatewayConfig {
        extra_config: format!(
            "[shards]\ncpus = [0]\n\n[policy]\nblacklist_files = [\"{}\"]\nblacklist_reload_ms = 50\nduplicate_window_s = 2\n",
            blacklist.display()
        ),
        client_extra: "senders = [\"ACME\", \"+4912345\"]".into(),
        ..GatewayConfig::one_link(sim.port)
    };
    let gw = Gateway::start(dir.path(), &cfg);
    let mut c = Client::new();

    // Sender registration: acme only with its senders; `other` registered none, so any.
    assert_eq!(c.send(&gw, API_KEY, "EVIL", "+4915100000009", "s1"), refused("unregistered_sender"));
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915100000009", "s2"), None);
    assert_eq!(c.send(&gw, API_KEY, "+4912345", "+4915100000009", "s3"), None);
    assert_eq!(c.send(&gw, OTHER_KEY, "EVIL", "+4915100000009", "s4"), None);

    // Blacklist, then a number added to the file is picked up without a restart.
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915100000001", "b1"), refused("blacklist"));
    // The refusal is kept as the message's record: its id comes with the 403.
    let body = json!({"to": "+4915100000001", "from": "ACME", "text": "kept", "link": "100", "client_ref": "r-7"});
    let (status, answer) = submit(&c.agent, &gw, API_KEY, &body);
    assert_eq!(status, 403, "{answer}");
    let id = answer["error"]["id"].as_str().expect("the refused message's id").to_owned();
    let (status, record) = get_message(&c.agent, &gw, API_KEY, &id);
    assert_eq!((status, record["status"].as_str()), (200, Some("refused")), "{record}");
    assert_eq!(record["transitions"][0]["reason"], "blacklist", "{record}");
    assert_eq!((record["client_ref"].as_str(), record["route"].as_str()), (Some("r-7"), Some("link:100")), "{record}");
    assert_eq!(get_message(&c.agent, &gw, OTHER_KEY, &id).0, 404);
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915100000002", "b2"), None);
    rewrite(&blacklist, "+4915100000001\n+4915100000002\n", 2);
    let mut n = 0;
    wait_until(10, "the rewritten blacklist to be in force", || {
        n += 1;
        c.send(&gw, API_KEY, "ACME", "+4915100000002", &format!("b3 {n}")).is_some()
    });
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915100000002", "b4"), refused("blacklist"));
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915100000001", "b5"), refused("blacklist"));

    // CP2: the same text to the same number within 2 s; another text or number passes.
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915100000003", "your code 1234"), None);
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915100000003", "your code 1234"), refused("duplicate"));
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915100000003", "your code 5678"), None);
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915100000004", "your code 1234"), None);
    wait_until(10, "the duplicate window to pass", || {
        c.send(&gw, API_KEY, "ACME", "+4915100000003", "your code 1234").is_none()
    });

    // Campaigns live on Redis: without it they are unavailable, and say so.
    let (status, body) =
        campaign_call(&c.agent, &gw, "POST", "/api/v1/campaigns", Some(json!({"recipients": ["+4915100000009"]})));
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("campaigns_unavailable")), "{body}");

    assert_eq!(submits_seen(&mut sim), c.accepted, "the SMSC saw a refused message");
    assert!(gw.log().contains("blacklist reloaded"), "{}", gw.log());
    assert!(gw.terminate().success());
}

/// One command to Redis over RESP (the test's own view of the counters): the answer's first
/// line (`:4`, `+OK`, `$-1`), or the value of a bulk string.
fn redis_cmd(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    if line.starts_with('$') && !line.starts_with("$-1") {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    line.trim_end().to_owned()
}

/// Two nodes on one Redis: CP1 daily and weekly caps and CP2 duplicates hold across nodes.
#[test]
fn caps_and_duplicates_shared_by_two_nodes_on_redis() {
    let redis = RedisServer::start();
    let mut sim = Sim::start(&[]);
    let extra = format!(
        "[redis]\nurl = \"{}\"\ncommand_timeout_ms = 500\n\n[policy]\ndaily_cap = 2\nweekly_cap = 3\nduplicate_window_s = 2\n",
        redis.url()
    );
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = GatewayConfig { extra_config: extra, ..GatewayConfig::one_link(sim.port) };
    let gw1 = Gateway::start(d1.path(), &cfg);
    let gw2 = Gateway::start(d2.path(), &cfg);
    let mut c = Client::new();

    // CP1 daily: two to one number, one through each node; the third is refused on either.
    assert_eq!(c.send(&gw1, API_KEY, "ACME", "+4915200000001", "d1"), None);
    assert_eq!(c.send(&gw2, OTHER_KEY, "ACME", "+4915200000001", "d2"), None);
    assert_eq!(c.send(&gw1, API_KEY, "ACME", "+4915200000001", "d3"), refused("daily_cp"));
    assert_eq!(c.send(&gw2, API_KEY, "ACME", "+4915200000001", "d4"), refused("daily_cp"));
    assert_eq!(c.send(&gw2, API_KEY, "ACME", "+4915200000002", "d5"), None);

    // CP1 weekly: yesterday's 2 still count for this week (UTC days, weeks from Monday).
    let day = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 86_400;
    let week = (day + 3) / 7;
    if (day - 1 + 3) / 7 == week {
        let (yesterday, week) = ((day - 1).to_string(), week.to_string());
        let key = "{smsgate:4915200000003}:cp1";
        let set = ["HSET", key, "dw", &yesterday, "dc", "2", "ww", &week, "wc", "2"];
        assert!(redis_cmd(redis.port, &set).starts_with(':'), "HSET failed");
        assert_eq!(c.send(&gw1, API_KEY, "ACME", "+4915200000003", "w1"), None);
        assert_eq!(c.send(&gw2, API_KEY, "ACME", "+4915200000003", "w2"), refused("weekly_cp"));
    } else {
        eprintln!("today is a Monday (UTC): yesterday belongs to last week, weekly case skipped");
    }

    // CP2 across nodes, and again after the window.
    assert_eq!(c.send(&gw1, API_KEY, "ACME", "+4915200000004", "same text"), None);
    assert_eq!(c.send(&gw2, API_KEY, "ACME", "+4915200000004", "same text"), refused("duplicate"));
    wait_until(10, "the duplicate window to pass on Redis", || {
        c.send(&gw2, API_KEY, "ACME", "+4915200000004", "same text").is_none()
    });

    assert_eq!(submits_seen(&mut sim), c.accepted, "the SMSC saw a refused message");
    // Metrics are published every few hundred ms: poll.
    let agent = c.agent.clone();
    wait_until(10, "a policy refusal in /metrics", || {
        let mut r = agent.get(&gw1.url("/metrics")).call().unwrap();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        text.lines().any(|l| l.contains("\"policy\"") && l.contains("\"daily_cp\""))
    });
    assert!(gw1.terminate().success());
    assert!(gw2.terminate().success());
}

const ADMIN_KEY: &str = "admin-key-0123456789";

/// `POST /api/v1/admin/blacklist/reload` with `key`: (status, body).
fn reload_blacklist(agent: &ureq::Agent, gw: &Gateway, key: &str) -> (u16, serde_json::Value) {
    let mut r = agent
        .post(&gw.url("/api/v1/admin/blacklist/reload"))
        .header("Authorization", &format!("Bearer {key}"))
        .send_empty()
        .expect("reload request");
    (r.status().as_u16(), r.body_mut().read_json().unwrap_or(serde_json::Value::Null))
}

fn s3_config(s3: &S3Server, secret: &str, reload_ms: u64) -> String {
    format!(
        "[admin]\napi_key = \"{ADMIN_KEY}\"\n\n[policy]\nblacklist_reload_ms = {reload_ms}\n\n\
         [[policy.blacklist_s3]]\nendpoint = \"{}\"\nbucket = \"lists\"\nkey = \"opt-out/de.txt\"\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{secret}\"\n",
        s3.endpoint(),
        s3.access_key_id
    )
}

/// A blacklist object in a real S3-compatible server that checks signatures (moto): loaded at
/// start, reloaded when its ETag changes and on demand; while the server is down the list in
/// force stays and an on-demand reload says why it failed.
#[test]
fn blacklist_from_s3_reloads_on_change_and_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start();
    s3.put("lists", "opt-out/de.txt", "# opt-outs\n+4915300000001\n");
    let mut sim = Sim::start(&[]);
    let secret = s3.secret_access_key.clone();
    let cfg = GatewayConfig { extra_config: s3_config(&s3, &secret, 100), ..GatewayConfig::one_link(sim.port) };
    let gw = Gateway::start(dir.path(), &cfg);
    let mut c = Client::new();
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915300000001", "s1"), refused("blacklist"));
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915300000002", "s2"), None);

    // The object changes (new ETag): picked up without a restart or a request.
    s3.put("lists", "opt-out/de.txt", "+4915300000001\n+4915300000002\n");
    let mut n = 0;
    wait_until(15, "the changed S3 object to be in force", || {
        n += 1;
        c.send(&gw, API_KEY, "ACME", "+4915300000002", &format!("s3 {n}")).is_some()
    });
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915300000002", "s4"), refused("blacklist"));

    // On demand, with the admin key only.
    let agent = c.agent.clone();
    assert_eq!(reload_blacklist(&agent, &gw, API_KEY).0, 401);
    let (status, body) = reload_blacklist(&agent, &gw, ADMIN_KEY);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["blacklist"]["numbers"], 2, "{body}");
    assert_eq!(body["blacklist"]["objects"], 1, "{body}");
    assert_eq!(metric(&gw, "smsgate_blacklist_numbers"), Some(2.0));

    // S3 down: the list in force stays; an on-demand reload fails and says so.
    s3.stop();
    let (status, body) = reload_blacklist(&agent, &gw, ADMIN_KEY);
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("blacklist_not_reloaded")), "{body}");
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915300000001", "s5"), refused("blacklist"));
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915300000003", "s6"), None);
    assert!(metric(&gw, "smsgate_blacklist_reload_failures_total").unwrap_or(0.0) >= 1.0);
    assert_eq!(metric(&gw, "smsgate_blacklist_numbers"), Some(2.0));

    assert_eq!(submits_seen(&mut sim), c.accepted, "the SMSC saw a blacklisted message");
    assert!(gw.terminate().success());
}

/// A blacklist that cannot be loaded at start (here: a secret S3 refuses) stops the start with
/// the reason, rather than running without the list it was told to enforce.
#[test]
fn a_blacklist_object_that_cannot_be_read_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    s3.put("lists", "opt-out/de.txt", "+4915300000001\n");
    let cfg = GatewayConfig { extra_config: s3_config(&s3, "not-the-secret", 100), ..GatewayConfig::one_link(1) };
    let config = Gateway::write_config(dir.path(), free_port(), &cfg);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://lists/opt-out/de.txt") && err.contains("403 SignatureDoesNotMatch"), "{err}");
}

/// CP1 in a time zone, per client, with a client's own cap, and a count given back when the
/// SMSC refuses the message (real Redis, real SMSC simulator).
#[test]
fn caps_per_client_in_a_time_zone_and_released_when_not_sent() {
    let redis = RedisServer::start();
    // Numbers starting 4915499 are refused by the SMSC (ESME_RSUBMITFAIL).
    let mut sim = Sim::start(&["--reject", "4915499=0x45"]);
    let extra = format!(
        "[redis]\nurl = \"{}\"\ncommand_timeout_ms = 500\n\n\
         [policy]\ndaily_cap = 2\ncaps_scope = \"client\"\ntime_zone = \"Pacific/Kiritimati\"\n",
        redis.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = GatewayConfig {
        extra_config: extra,
        client_extra: "[clients.policy]\ndaily_cap = 1".into(),
        ..GatewayConfig::one_link(sim.port)
    };
    let gw = Gateway::start(dir.path(), &cfg);
    let mut c = Client::new();

    // Per client: acme's own cap is 1; `other` has the global 2, counted apart from acme's.
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915400000001", "a1"), None);
    assert_eq!(c.send(&gw, API_KEY, "ACME", "+4915400000001", "a2"), refused("daily_cp"));
    assert_eq!(c.send(&gw, OTHER_KEY, "ACME", "+4915400000001", "o1"), None);
    assert_eq!(c.send(&gw, OTHER_KEY, "ACME", "+4915400000001", "o2"), None);
    assert_eq!(c.send(&gw, OTHER_KEY, "ACME", "+4915400000001", "o3"), refused("daily_cp"));

    // The day is Kiritimati's (UTC+14), not UTC's or Pago Pago's (UTC-11, always another
    // date): a count made "today" there refuses, one made on Pago Pago's date does not.
    let now = jiff::Timestamp::now();
    let day_in = |zone: &str| {
        let d = now.to_zoned_datetime(jiff::tz::TimeZone::get(zone).unwrap()).date();
        let epoch = jiff::civil::Date::new(1970, 1, 1).unwrap();
        let days = epoch.until((jiff::Unit::Day, d)).unwrap().get_days();
        (days.to_string(), ((days + 3).div_euclid(7)).to_string())
    };
    let (kiri_day, kiri_week) = day_in("Pacific/Kiritimati");
    let (pago_day, pago_week) = day_in("Pacific/Pago_Pago");
    assert_ne!(kiri_day, pago_day);
    for (number, day, week) in [("4915400000002", &kiri_day, &kiri_week), ("4915400000003", &pago_day, &pago_week)] {
        let key = format!("{{smsgate:{number}}}:cp1:other");
        let set = ["HSET", &key, "dw", day, "dc", "2", "ww", week, "wc", "2"];
        assert!(redis_cmd(redis.port, &set).starts_with(':'), "HSET failed");
    }
    assert_eq!(c.send(&gw, OTHER_KEY, "ACME", "+4915400000002", "k1"), refused("daily_cp"));
    assert_eq!(c.send(&gw, OTHER_KEY, "ACME", "+4915400000003", "p1"), None);

    // Refused by the SMSC: not sent, so not counted. acme's cap of 1 lets it try again and
    // again, and the counter goes back to 0.
    for attempt in 0..3 {
        let body = json!({"to": "+4915499000001", "from": "ACME", "text": format!("r{attempt}"), "link": "100"});
        let (status, answer) = submit(&c.agent, &gw, API_KEY, &body);
        assert_eq!(status, 502, "attempt {attempt}: {answer}");
    }
    wait_until(5, "the refused message's count to be given back", || {
        redis_cmd(redis.port, &["HGET", "{smsgate:4915499000001}:cp1:acme", "dc"]) == "0"
    });

    assert_eq!(submits_seen(&mut sim), c.accepted + 3, "the SMSC saw a refused message");
    assert!(gw.terminate().success());
}

/// A campaign API call: (status, body).
fn campaign_call(
    agent: &ureq::Agent,
    gw: &Gateway,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let url = gw.url(path);
    let auth = format!("Bearer {API_KEY}");
    let mut r = match (method, body) {
        ("POST", Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b),
        ("POST", None) => agent.post(&url).header("Authorization", &auth).send_empty(),
        ("DELETE", _) => agent.delete(&url).header("Authorization", &auth).call(),
        _ => agent.get(&url).header("Authorization", &auth).call(),
    }
    .expect("campaign request");
    (r.status().as_u16(), r.body_mut().read_json().unwrap_or(serde_json::Value::Null))
}

/// CP1 on-build: a campaign reserves each recipient's count at build (refusing the ones over
/// their cap or blacklisted), its messages take the reservation instead of counting again,
/// and a cancel gives back what was not used (real Redis, real SMSC simulator).
#[test]
fn campaigns_reserve_at_build_and_give_back_on_cancel() {
    let redis = RedisServer::start();
    let mut sim = Sim::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let blacklist = dir.path().join("blacklist.txt");
    std::fs::write(&blacklist, "+4915500000004\n").unwrap();
    let extra = format!(
        "[redis]\nurl = \"{}\"\ncommand_timeout_ms = 500\n\n[policy]\ndaily_cap = 1\nblacklist_files = [\"{}\"]\n",
        redis.url(),
        blacklist.display()
    );
    let gw = Gateway::start(dir.path(), &GatewayConfig { extra_config: extra, ..GatewayConfig::one_link(sim.port) });
    let mut c = Client::new();
    let agent = c.agent.clone();
    let (a, b, cc, d) = ("+4915500000001", "+4915500000002", "+4915500000003", "+4915500000004");
    assert_eq!(c.send(&gw, API_KEY, "ACME", a, "before the campaign"), None);

    let (status, body) =
        campaign_call(&agent, &gw, "POST", "/api/v1/campaigns", Some(json!({"recipients": [a, "+49"]})));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_campaign")), "{body}");
    assert_eq!(body["error"]["field"], "recipients[1]");
    let (status, body) =
        campaign_call(&agent, &gw, "POST", "/api/v1/campaigns", Some(json!({"recipients": [a, b, cc, d, b]})));
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["status"].as_str(), body["recipients"].as_u64()), (Some("draft"), Some(4)), "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    let (status, built) = campaign_call(&agent, &gw, "POST", &format!("/api/v1/campaigns/{id}/build"), None);
    assert_eq!(status, 200, "{built}");
    assert_eq!(
        (built["status"].as_str(), built["reserved"].as_u64(), built["refused"].as_u64()),
        (Some("built"), Some(2), Some(2))
    );
    let mut at_build: Vec<(String, String)> = built["refused_recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["to"].as_str().unwrap().to_owned(), r["status"].as_str().unwrap().to_owned()))
        .collect();
    at_build.sort();
    assert_eq!(at_build, [(a.to_owned(), "daily_cp".to_owned()), (d.to_owned(), "blacklist".to_owned())]);
    let (status, body) = campaign_call(&agent, &gw, "POST", &format!("/api/v1/campaigns/{id}/build"), None);
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("campaign_state")), "{body}");

    // The build counted b: an ordinary message to b is over the cap, the campaign's is not,
    // once.
    assert_eq!(c.send(&gw, API_KEY, "ACME", b, "not the campaign"), refused("daily_cp"));
    let mut send = |to: &str, text: &str| {
        let (status, answer) = submit(
            &agent,
            &gw,
            API_KEY,
            &json!({"to": to, "from": "ACME", "text": text, "link": "100", "campaign": id}),
        );
        if status == 200 {
            c.accepted += 1;
            return None;
        }
        assert_eq!(status, 403, "{answer}");
        Some(answer["error"]["code"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(send(b, "campaign 1"), None);
    assert_eq!(send(b, "campaign 2"), refused("already_sent"));
    assert_eq!(send(a, "campaign 3"), refused("not_in_campaign"));
    let (status, view) = campaign_call(&agent, &gw, "GET", &format!("/api/v1/campaigns/{id}"), None);
    assert_eq!((status, view["sent"].as_u64(), view["reserved"].as_u64()), (200, Some(1), Some(1)), "{view}");

    // Cancel: c's unused reservation is given back, so c may get an ordinary message again.
    let (status, view) = campaign_call(&agent, &gw, "DELETE", &format!("/api/v1/campaigns/{id}"), None);
    assert_eq!(
        (status, view["status"].as_str(), view["released"].as_u64()),
        (200, Some("cancelled"), Some(1)),
        "{view}"
    );
    assert_eq!(send(cc, "campaign 4"), refused("not_in_campaign"));
    assert_eq!(c.send(&gw, API_KEY, "ACME", cc, "after the cancel"), None);
    assert_eq!(c.send(&gw, API_KEY, "ACME", cc, "over the cap again"), refused("daily_cp"));

    // Another client sees no such campaign; a malformed id is none either.
    let mut r = agent
        .get(&gw.url(&format!("/api/v1/campaigns/{id}")))
        .header("Authorization", &format!("Bearer {OTHER_KEY}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "{}", r.body_mut().read_to_string().unwrap_or_default());
    assert_eq!(campaign_call(&agent, &gw, "GET", "/api/v1/campaigns/xyz", None).0, 404);

    assert_eq!(submits_seen(&mut sim), c.accepted, "the SMSC saw a refused message");
    assert!(gw.terminate().success());
}
