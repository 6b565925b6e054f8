//! Observability end to end (issue 7): drive accepted, rate-limited, SMSC-rejected, bad-input
//! and unauthorised submits plus delivery receipts through smsgate and smsc-sim, then check that
//! `/api/v1/dashboard/stats`, `/api/v1/dashboard/smpp-links` and `/metrics` report exactly what
//! the client saw. `/metrics` is parsed by Python's `prometheus_client`
//! (`text_string_to_metric_families`), a parser this project did not write; the test makes a
//! venv under target/tmp and pip-installs it there when missing.
// Test clients are plain threads, not shards: blocking sleeps while polling are fine here.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const LIMITED_KEY: &str = "limited-key-0123456789abcdef";
/// Submits per day allowed to the client `limited`.
const LIMITED_PER_DAY: usize = 2;

/// What the client saw, by HTTP status.
#[derive(Default, Debug)]
struct Seen(HashMap<u16, u64>);

impl Seen {
    fn add(&mut self, status: u16) {
        *self.0.entry(status).or_default() += 1;
    }
    fn get(&self, status: u16) -> u64 {
        self.0.get(&status).copied().unwrap_or(0)
    }
}

fn get_json(agent: &ureq::Agent, gw: &Gateway, path: &str) -> Value {
    let mut r = agent.get(&gw.url(path)).call().expect("GET");
    assert_eq!(r.status(), 200, "{path}");
    r.body_mut().read_json().expect("json")
}

fn get_text(agent: &ureq::Agent, gw: &Gateway, path: &str) -> (String, String) {
    let mut r = agent.get(&gw.url(path)).call().expect("GET");
    assert_eq!(r.status(), 200, "{path}");
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (ct, r.body_mut().read_to_string().expect("text"))
}

/// A Python with `prometheus_client`: the system one if it has it, else a venv under
/// target/tmp with it pip-installed (`python3 -m venv DIR && DIR/bin/pip install prometheus_client`).
fn python_with_prometheus_client() -> PathBuf {
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import prometheus_client"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if has(&system) {
        return system;
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prometheus-venv");
    let py = venv.join("bin/python");
    if !has(&py) {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3 -m venv");
        assert!(made.success(), "python3 -m venv {} failed", venv.display());
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "prometheus_client"])
            .status()
            .expect("pip install prometheus_client");
        assert!(pip.success(), "pip install prometheus_client failed (needs network or a wheel cache)");
    }
    py
}

/// Parses the exposition with `prometheus_client` and returns, per family, its type and its
/// samples as (sample name, labels, value).
fn parse_with_prometheus_client(text: &str) -> Families {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = [f.type, [[s.name, s.labels, s.value] for s in f.samples]]
print(json.dumps(out))
"#;
    let mut child = Command::new(python_with_prometheus_client())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write exposition");
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("parser json");
    v.as_object()
        .expect("object")
        .iter()
        .map(|(name, f)| {
            let samples = f[1]
                .as_array()
                .expect("samples")
                .iter()
                .map(|s| {
                    let labels = s[1]
                        .as_object()
                        .expect("labels")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                        .collect();
                    (s[0].as_str().unwrap_or("").to_owned(), labels, s[2].as_f64().unwrap_or(f64::NAN))
                })
                .collect();
            (name.clone(), (f[0].as_str().unwrap_or("").to_owned(), samples))
        })
        .collect()
}

type Families = HashMap<String, (String, Vec<(String, HashMap<String, String>, f64)>)>;

/// The value of the sample `sample` of family `family` whose labels include `labels`.
fn sample(fams: &Families, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, samples) = fams.get(family).unwrap_or_else(|| panic!("no family {family}"));
    samples
        .iter()
        .find(|(n, l, _)| n == sample && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| *v)
        .unwrap_or_else(|| panic!("no sample {sample}{labels:?} in {family}: {samples:?}"))
}

#[test]
fn dashboard_and_metrics_report_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(&["--reject", "4990000=0x45", "--dlr-delay-ms", "20"]);
    let cfg = GatewayConfig {
        extra_config: format!(
            "[[clients]]\nname = \"limited\"\napi_key = \"{LIMITED_KEY}\"\n[clients.limits]\nper_day = {LIMITED_PER_DAY}\n"
        ),
        ..GatewayConfig::one_link(sim.port)
    };
    let gw = Gateway::start(dir.path(), &cfg);
    let agent = agent();

    // Nothing yet: the endpoints answer with zeros.
    let stats = get_json(&agent, &gw, "/api/v1/dashboard/stats");
    assert_eq!(stats["totals"]["accepted"], 0, "{stats}");

    let mut seen = Seen::default();
    for i in 0..6 {
        seen.add(submit(&agent, &gw, API_KEY, &message(&format!("+4915100000{i:03}"), "100")).0);
    }
    for i in 0..3 {
        // smsc-sim answers ESME_RSUBMITFAIL (0x45) to 4990000...
        seen.add(submit(&agent, &gw, API_KEY, &message(&format!("+4990000{i:04}"), "100")).0);
    }
    for _ in 0..2 {
        seen.add(submit(&agent, &gw, API_KEY, &json!({"to": "12ab", "from": "ACME", "text": "x", "link": "100"})).0);
    }
    seen.add(submit(&agent, &gw, "wrong-key-0123456789abcdef", &message("+4915100000999", "100")).0);
    for i in 0..LIMITED_PER_DAY + 2 {
        seen.add(submit(&agent, &gw, LIMITED_KEY, &message(&format!("+4915100001{i:03}"), "100")).0);
    }
    let (ok, smsc_rejected, bad, unauthorised, limited) =
        (seen.get(200), seen.get(502), seen.get(400), seen.get(401), seen.get(429));
    assert_eq!(ok + smsc_rejected + bad + unauthorised + limited, 16, "{seen:?}");
    assert_eq!((smsc_rejected, bad, unauthorised), (3, 2, 1), "{seen:?}");
    assert!(ok >= 6 && limited >= 2, "{seen:?}");
    let rejected = smsc_rejected + bad + unauthorised + limited;

    // Another shard's numbers are published every 250 ms, receipts come 20 ms after submits.
    let mut stats = Value::Null;
    wait_until(10, "stats to count every answer and receipt", || {
        stats = get_json(&agent, &gw, "/api/v1/dashboard/stats");
        stats["totals"]["accepted"] == ok
            && stats["totals"]["delivered"] == ok
            && stats["totals"]["rejected"] == rejected
    });
    let totals = &stats["totals"];
    assert_eq!(totals["submitted"], ok, "{stats}");
    assert_eq!(totals["failed"], 0, "{stats}");
    assert_eq!(totals["unknown"], 0, "{stats}");
    let rej = &stats["rejections"];
    assert_eq!(rej["smsc"]["ESME_RSUBMITFAIL"], 3, "{stats}");
    assert_eq!(rej["auth"]["unknown_key"], 1, "{stats}");
    let sum = |layer: &Value| layer.as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>());
    assert_eq!(sum(&rej["parse"]), 2, "{stats}");
    assert_eq!(sum(&rej["client"]), limited, "{stats}");
    assert!(rej["client"].as_object().unwrap().keys().all(|k| k.starts_with("client:limited")), "{stats}");
    // Stages 3-8 answers are timed (not parse or auth refusals); every submit_sm_resp is.
    assert_eq!(stats["latency_ms"]["api"]["count"], ok + smsc_rejected + limited, "{stats}");
    assert_eq!(stats["latency_ms"]["smsc"]["count"], ok + smsc_rejected, "{stats}");
    let api = &stats["latency_ms"]["api"];
    let p = |k: &str| api[k].as_f64().unwrap();
    assert!(
        p("p50") <= p("p90") && p("p90") <= p("p99") && p("p99") <= p("p99_9") && p("p99_9") <= p("max"),
        "{stats}"
    );

    // Rates: complete seconds only; once the traffic's seconds are complete, the 60 s window
    // holds all of it.
    std::thread::sleep(Duration::from_millis(1_300));
    let stats = get_json(&agent, &gw, "/api/v1/dashboard/stats");
    let r60 = &stats["rates"]["60s"];
    assert!((r60["accepted"].as_f64().unwrap() * 60.0 - ok as f64).abs() < 1e-6, "{stats}");
    assert!((r60["rejected"].as_f64().unwrap() * 60.0 - rejected as f64).abs() < 1e-6, "{stats}");
    assert!((r60["rejected_by"]["smsc"]["ESME_RSUBMITFAIL"].as_f64().unwrap() * 60.0 - 3.0).abs() < 1e-6, "{stats}");

    let links = get_json(&agent, &gw, "/api/v1/dashboard/smpp-links");
    let l = &links["links"]["100"];
    assert_eq!(l["state"], "bound", "{links}");
    assert_eq!((l["sessions"].as_u64(), l["sessions_bound"].as_u64()), (Some(2), Some(2)), "{links}");
    assert_eq!(l["configured_rate"], 100_000, "{links}");
    assert_eq!(l["effective_rate"], 100_000.0, "{links}");
    assert_eq!(l["window"], json!({"size": 512, "in_use": 0}), "{links}");
    assert_eq!(l["command_status"], json!({"ESME_ROK": ok, "ESME_RSUBMITFAIL": 3}), "{links}");
    assert_eq!(l["receipts"], json!({"delivered": ok}), "{links}");
    assert_eq!(l["throttling_errors"], 0, "{links}");
    assert_eq!(l["last_error"], Value::Null, "{links}");
    assert!((l["submits_per_s"]["60s"].as_f64().unwrap() * 60.0 - (ok + 3) as f64).abs() < 1e-6, "{links}");
    assert!((l["receipts_per_s"]["60s"].as_f64().unwrap() * 60.0 - ok as f64).abs() < 1e-6, "{links}");
    assert_eq!(links["pools"], json!({}), "{links}");

    let (content_type, text) = get_text(&agent, &gw, "/metrics");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    assert!(!text.contains("+49") && !text.contains("4915100"), "no phone number in a label");
    let fams = parse_with_prometheus_client(&text);
    let m = |outcome| sample(&fams, "smsgate_messages", "smsgate_messages_total", &[("outcome", outcome)]);
    assert_eq!(fams["smsgate_messages"].0, "counter");
    assert_eq!(m("accepted"), ok as f64);
    assert_eq!(m("rejected"), rejected as f64);
    assert_eq!(m("submitted"), ok as f64);
    assert_eq!(m("delivered"), ok as f64);
    assert_eq!(m("unknown"), 0.0);
    let rj = |layer, reason| {
        sample(&fams, "smsgate_rejections", "smsgate_rejections_total", &[("layer", layer), ("reason", reason)])
    };
    assert_eq!(rj("smsc", "ESME_RSUBMITFAIL"), 3.0);
    assert_eq!(rj("auth", "unknown_key"), 1.0);
    let cs = |status| {
        sample(
            &fams,
            "smsgate_smpp_command_status",
            "smsgate_smpp_command_status_total",
            &[("link", "100"), ("status", status)],
        )
    };
    assert_eq!(cs("ESME_ROK"), ok as f64);
    assert_eq!(cs("ESME_RSUBMITFAIL"), 3.0);
    let receipts = &[("link", "100"), ("status", "delivered")];
    assert_eq!(sample(&fams, "smsgate_receipts", "smsgate_receipts_total", receipts), ok as f64);
    let state = |s| sample(&fams, "smsgate_link_state", "smsgate_link_state", &[("link", "100"), ("state", s)]);
    assert_eq!((state("bound"), state("degraded"), state("down")), (1.0, 0.0, 0.0));
    assert_eq!(fams["smsgate_link_state"].0, "gauge");
    assert_eq!(sample(&fams, "smsgate_link_sessions_bound", "smsgate_link_sessions_bound", &[("link", "100")]), 2.0);
    assert_eq!(sample(&fams, "smsgate_state_queue_depth", "smsgate_state_queue_depth", &[]), 0.0);
    assert!(sample(&fams, "smsgate_state_batches", "smsgate_state_batches_total", &[]) >= 1.0);
    assert!(sample(&fams, "smsgate_state_batch_size", "smsgate_state_batch_size", &[]) >= 1.0);
    for (family, count) in [
        ("smsgate_api_latency_seconds", ok + smsc_rejected + limited),
        ("smsgate_smsc_latency_seconds", ok + smsc_rejected),
    ] {
        let (kind, samples) = &fams[family];
        assert_eq!(kind, "histogram");
        assert_eq!(sample(&fams, family, &format!("{family}_count"), &[]), count as f64);
        assert_eq!(sample(&fams, family, &format!("{family}_bucket"), &[("le", "+Inf")]), count as f64);
        let buckets: Vec<f64> = samples.iter().filter(|(n, _, _)| n.ends_with("_bucket")).map(|(_, _, v)| *v).collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "cumulative buckets: {buckets:?}");
        assert!(sample(&fams, family, &format!("{family}_sum"), &[]) > 0.0);
    }

    // Logs: nothing per message at info.
    drop(sim);
    let log = gw.log();
    let info_lines = log.lines().filter(|l| l.contains("INFO")).count();
    assert!(info_lines < 10, "info lines are per event, not per message:\n{log}");
}
