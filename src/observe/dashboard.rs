//! The read side: `GET /api/v1/dashboard/stats`, `GET /api/v1/dashboard/smpp-links` (JSON) and
//! `GET /metrics` (Prometheus text exposition 0.0.4), all from [`metrics::collect`] and the link
//! table. docs/metrics.md documents every field and series.
//!
//! These endpoints carry no authentication: they reveal no message, number or client, only
//! counts and link names, and are meant for the operator network (see docs/metrics.md).

use super::events::state_name;
use super::metrics::{self, Merged, Outcome, Second};
use crate::ids::LinkId;
use crate::pipeline::limit::LimitStats;
use crate::smpp::link::{LinkEntry, LinkState, LinkTable};
use crate::smpp::pdu::CommandStatus;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Rate windows of the dashboard, seconds.
const WINDOWS: [(u64, &str); 3] = [(1, "1s"), (10, "10s"), (60, "60s")];
/// Upper bounds of the Prometheus latency buckets, seconds (computed from the hdrhistograms).
const BUCKETS_S: [f64; 18] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

fn response(body: Vec<u8>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json_response(v: &Value) -> Response<Full<Bytes>> {
    response(serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec()), "application/json")
}

/// `GET /api/v1/dashboard/stats`.
pub fn stats_response(limits: LimitStats) -> Response<Full<Bytes>> {
    let mut doc = stats(&metrics::collect());
    doc["limiter"] = json!({
        "degraded_shards": limits.degraded_shards,
        "fallbacks": limits.fallbacks,
        "redis_calls": limits.redis_calls,
        "redis_failures": limits.redis_failures,
        "local_grants": limits.local_grants,
        "live_nodes": limits.live_nodes,
    });
    if let Some(h) = crate::history::stats() {
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        doc["history"] = json!({
            "up": get(&h.up) == 1,
            "written": get(&h.written),
            "backlog_memory": get(&h.backlog_memory),
            "backlog_spilled": get(&h.backlog_spilled),
            "spill_bytes": get(&h.spill_bytes),
            "dropped": get(&h.dropped_queue_full) + get(&h.dropped_spill_full) + get(&h.dropped_expired) + get(&h.dropped_corrupt),
        });
    }
    json_response(&doc)
}

/// The `smsgate_history_*` series.
fn history_series(out: &mut String, h: &crate::history::HistoryStats) {
    let plain: [(&str, &str, &str, &AtomicU64); 8] = [
        ("smsgate_history_up", "gauge", "1 while the history writer's last attempt reached PostgreSQL.", &h.up),
        ("smsgate_history_emitted_total", "counter", "History events queued by the shards and threads.", &h.emitted),
        ("smsgate_history_written_total", "counter", "History rows inserted into PostgreSQL.", &h.written),
        (
            "smsgate_history_duplicates_total",
            "counter",
            "History events written again after a retry or restart and not inserted twice.",
            &h.duplicates,
        ),
        ("smsgate_history_batches_total", "counter", "History batches committed.", &h.batches),
        ("smsgate_history_write_errors_total", "counter", "Failed history write attempts.", &h.write_errors),
        ("smsgate_history_spilled_total", "counter", "History events written to spill files.", &h.spilled),
        ("smsgate_history_spill_bytes", "gauge", "Bytes of history spill files on disk.", &h.spill_bytes),
    ];
    atomic_series(out, &plain);
    family(out, "smsgate_history_backlog_events", "gauge", "History events not yet in PostgreSQL, by where they wait.");
    let _ = writeln!(
        out,
        "smsgate_history_backlog_events{{where=\"memory\"}} {}",
        h.backlog_memory.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "smsgate_history_backlog_events{{where=\"spill\"}} {}",
        h.backlog_spilled.load(Ordering::Relaxed)
    );
    family(out, "smsgate_history_dropped_total", "counter", "History events dropped, by reason.");
    for (reason, v) in [
        ("queue_full", &h.dropped_queue_full),
        ("spill_full", &h.dropped_spill_full),
        ("expired", &h.dropped_expired),
        ("corrupt", &h.dropped_corrupt),
    ] {
        let _ = writeln!(out, "smsgate_history_dropped_total{{reason=\"{reason}\"}} {}", v.load(Ordering::Relaxed));
    }
}

/// `GET /api/v1/dashboard/smpp-links`.
/// `pools`: each pool's name and member links.
pub fn links_response<'a>(
    links: &LinkTable,
    pools: impl Iterator<Item = (&'a str, &'a [LinkId])>,
) -> Response<Full<Bytes>> {
    let now_ms = LinkTable::now_ms();
    let m = metrics::collect();
    let mut doc = smpp_links(&m, links, now_ms);
    let pools: Map<String, Value> = pools
        .map(|(name, members)| {
            let views: Vec<(&LinkId, LinkView)> =
                members.iter().filter_map(|l| links.get(l).map(|e| (l, view(&m, l, e, now_ms)))).collect();
            let up: Vec<String> =
                views.iter().filter(|(_, v)| v.state != LinkState::Down).map(|(l, _)| l.to_string()).collect();
            let value = json!({
                "members": members.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "members_up": up,
                "configured_rate": views.iter().map(|(_, v)| u64::from(v.configured_rate)).sum::<u64>(),
                "effective_rate": views.iter().map(|(_, v)| v.effective_rate).sum::<f64>(),
            });
            (name.to_owned(), value)
        })
        .collect();
    doc["pools"] = Value::Object(pools);
    json_response(&doc)
}

/// `GET /metrics`.
pub fn metrics_response(links: &LinkTable, limits: LimitStats) -> Response<Full<Bytes>> {
    let mut text = prometheus(&metrics::collect(), links, LinkTable::now_ms());
    limiter_series(&mut text, &limits);
    response(text.into_bytes(), "text/plain; version=0.0.4; charset=utf-8")
}

// === JSON ===

fn outcomes(counts: &[u64; Outcome::COUNT], per: f64) -> Map<String, Value> {
    Outcome::ALL.iter().zip(counts).map(|(o, &n)| (o.name().to_owned(), json!(n as f64 / per))).collect()
}

/// `{layer: {reason: n}}`.
fn by_layer<'a>(tally: impl Iterator<Item = (&'a metrics::RejectLabel, u64)>, per: f64) -> Value {
    let mut layers: BTreeMap<&str, BTreeMap<String, f64>> = BTreeMap::new();
    for (label, n) in tally {
        *layers.entry(label.layer).or_default().entry(label.reason.to_string()).or_default() += n as f64 / per;
    }
    json!(layers)
}

fn window(s: &Second, n: u64) -> Value {
    let per = n as f64;
    let mut v = outcomes(&s.outcomes, per);
    v.insert("rejected_by".into(), by_layer(s.rejections.iter(), per));
    Value::Object(v)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn percentiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0, "p50": null, "p90": null, "p99": null, "p99_9": null, "max": null});
    }
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.5)),
        "p90": ms(h.value_at_quantile(0.9)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p99_9": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}

/// Unlabelled series read from a side thread's atomics: (name, type, help, value).
fn atomic_series(out: &mut String, series: &[(&str, &str, &str, &AtomicU64)]) {
    for (name, kind, help, v) in series {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
    }
}

/// Unlabelled series with values already read: (name, kind, help, value).
fn value_series<V: std::fmt::Display>(out: &mut String, series: &[(&str, &str, &str, V)]) {
    for (name, kind, help, v) in series {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
}

/// The stats document (docs/metrics.md).
pub fn stats(m: &Merged) -> Value {
    let t = &m.totals;
    let rates: Map<String, Value> = WINDOWS.iter().map(|&(n, name)| (name.to_owned(), window(&m.last(n), n))).collect();
    let mut totals = outcomes(&t.outcomes, 1.0);
    for v in totals.values_mut() {
        *v = json!(v.as_f64().unwrap_or(0.0) as u64);
    }
    let rejections: BTreeMap<&str, BTreeMap<String, u64>> =
        t.rejections.iter().fold(BTreeMap::new(), |mut acc, (l, n)| {
            *acc.entry(l.layer).or_default().entry(l.reason.to_string()).or_default() += n;
            acc
        });
    json!({
        "at_ms": LinkTable::now_ms(),
        "totals": totals,
        "rejections": rejections,
        "rates": rates,
        "latency_ms": {"api": percentiles(&t.api_latency), "smsc": percentiles(&t.smsc_latency)},
    })
}

/// A per-link series: name, type, help, value.
type Series = (&'static str, &'static str, &'static str, fn(&LinkView) -> f64);

/// One link's numbers, shared by the JSON and the Prometheus output.
struct LinkView {
    state: LinkState,
    sessions: usize,
    bound: usize,
    configured_rate: u32,
    effective_rate: f64,
    window: u64,
    in_use: u64,
    throttles: u64,
    errors: u64,
    last_error_ms: u64,
}

fn view(m: &Merged, link: &LinkId, e: &LinkEntry, now_ms: u64) -> LinkView {
    let state = e.state(now_ms);
    let submitters = || e.slots.iter().enumerate().filter(|(_, s)| s.config.mode.can_submit());
    let configured_rate = e.slots.first().map_or(0, |s| s.config.max_rate);
    // Each bound session may send at its pacer's rate; the link's limiters hold the sum to
    // `esme_rate`. A session not published yet counts at the full rate.
    let paced: f64 = submitters()
        .filter(|(_, s)| s.can_submit())
        .map(|(i, s)| {
            m.pacing.iter().find(|(l, j, _)| l == link && *j == i).map_or(f64::from(s.config.max_rate), |p| p.2)
        })
        .sum();
    let effective_rate = if state == LinkState::Down { 0.0 } else { paced.min(f64::from(configured_rate)) };
    LinkView {
        state,
        sessions: e.slots.len(),
        bound: e.slots.iter().filter(|s| s.is_bound()).count(),
        configured_rate,
        effective_rate,
        window: submitters().map(|(_, s)| s.config.window as u64).sum(),
        in_use: e.slots.iter().map(|s| s.health.in_flight()).sum(),
        throttles: e.slots.iter().map(|s| s.health.throttles()).sum(),
        errors: e.slots.iter().map(|s| s.health.errors()).sum(),
        last_error_ms: e.slots.iter().map(|s| s.health.last_error_ms()).max().unwrap_or(0),
    }
}

/// The smpp-links document (docs/metrics.md).
pub fn smpp_links(m: &Merged, links: &LinkTable, now_ms: u64) -> Value {
    let mut out = BTreeMap::new();
    for (link, e) in links.iter() {
        let v = view(m, link, e, now_ms);
        let per_s = |pick: fn(&Second) -> &metrics::Tally<LinkId>| -> Value {
            WINDOWS
                .iter()
                .map(|&(n, name)| (name.to_owned(), json!(pick(&m.last(n)).get(link) as f64 / n as f64)))
                .collect::<Map<_, _>>()
                .into()
        };
        let statuses: BTreeMap<String, u64> = m
            .totals
            .command_status
            .iter()
            .filter(|((l, _), _)| l == link)
            .map(|((_, s), n)| (CommandStatus(*s).to_string(), n))
            .collect();
        let receipts: BTreeMap<&str, u64> =
            m.totals.receipts.iter().filter(|((l, _), _)| l == link).map(|((_, s), n)| (*s, n)).collect();
        let last = m.totals.last_error.iter().find(|(l, _)| l == link).map(|(_, e)| *e);
        let last_error = match (last, v.last_error_ms) {
            (Some(e), _) => json!({"kind": e.kind, "at_ms": e.at_ms, "age_ms": now_ms.saturating_sub(e.at_ms)}),
            (None, 0) => Value::Null,
            (None, at) => json!({"kind": "error", "at_ms": at, "age_ms": now_ms.saturating_sub(at)}),
        };
        out.insert(
            link.to_string(),
            json!({
                "state": state_name(v.state),
                "sessions": v.sessions,
                "sessions_bound": v.bound,
                "configured_rate": v.configured_rate,
                "effective_rate": v.effective_rate,
                "window": {"size": v.window, "in_use": v.in_use},
                "submits_per_s": per_s(|s| &s.link_submits),
                "receipts_per_s": per_s(|s| &s.link_receipts),
                "command_status": statuses,
                "receipts": receipts,
                "throttling_errors": v.throttles,
                "errors": v.errors,
                "last_error": last_error,
            }),
        );
    }
    json!({"at_ms": now_ms, "links": out, "pools": {}})
}

// === Prometheus text exposition 0.0.4 ===

/// The rate limiter's health: a node serving from local shares because Redis failed shows
/// `smsgate_limiter_degraded_shards > 0` and a growing `smsgate_limiter_fallbacks_total`.
fn limiter_series(out: &mut String, l: &LimitStats) {
    use std::fmt::Write as _;
    let series: [(&str, &str, &str, f64); 6] = [
        (
            "smsgate_limiter_degraded_shards",
            "gauge",
            "Shards limiting from local shares because Redis failed them.",
            f64::from(l.degraded_shards),
        ),
        ("smsgate_limiter_fallbacks_total", "counter", "Times a shard fell back to local shares.", l.fallbacks as f64),
        (
            "smsgate_limiter_redis_calls_total",
            "counter",
            "Redis round trips for leases, heartbeats and destination caps.",
            l.redis_calls as f64,
        ),
        (
            "smsgate_limiter_redis_failures_total",
            "counter",
            "Redis calls that failed or missed their deadline.",
            l.redis_failures as f64,
        ),
        (
            "smsgate_limiter_local_grants_total",
            "counter",
            "Leases granted from node-local buckets.",
            l.local_grants as f64,
        ),
        (
            "smsgate_limiter_live_nodes",
            "gauge",
            "Nodes seen alive through the Redis heartbeat.",
            f64::from(l.live_nodes),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram<u64>) {
    family(out, name, "histogram", help);
    for le in BUCKETS_S {
        let upper_us = (le * 1e6) as u64;
        let n = if h.is_empty() { 0 } else { h.count_between(0, upper_us) };
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.len());
    // hdrhistogram keeps counts, not the exact sum: mean × count, within 0.1 %.
    let _ = writeln!(out, "{name}_sum {}", h.mean() * h.len() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", h.len());
}

/// The `/metrics` page (docs/metrics.md lists every series).
pub fn prometheus(m: &Merged, links: &LinkTable, now_ms: u64) -> String {
    let t = &m.totals;
    let mut out = String::with_capacity(8 * 1024);
    family(
        &mut out,
        "smsgate_messages_total",
        "counter",
        "Submit answers (accepted, rejected, unknown) and message parts (submitted, delivered, failed) by outcome.",
    );
    for (o, n) in Outcome::ALL.iter().zip(t.outcomes) {
        let _ = writeln!(out, "smsgate_messages_total{{outcome=\"{}\"}} {n}", o.name());
    }
    family(
        &mut out,
        "smsgate_rejections_total",
        "counter",
        "Refused submits by layer (parse, auth, limit, route, submit, smsc, state) and reason.",
    );
    for (l, n) in t.rejections.iter() {
        let _ = writeln!(
            out,
            "smsgate_rejections_total{{layer=\"{}\",reason=\"{}\"}} {n}",
            esc(l.layer),
            esc(&l.reason.to_string())
        );
    }
    family(
        &mut out,
        "smsgate_smpp_command_status_total",
        "counter",
        "submit_sm answers from the SMSC by link and command_status.",
    );
    for ((link, s), n) in t.command_status.iter() {
        let _ = writeln!(
            out,
            "smsgate_smpp_command_status_total{{link=\"{}\",status=\"{}\"}} {n}",
            esc(link.as_str()),
            CommandStatus(*s)
        );
    }
    family(&mut out, "smsgate_receipts_total", "counter", "Final delivery receipts by link and status.");
    for ((link, s), n) in t.receipts.iter() {
        let _ = writeln!(out, "smsgate_receipts_total{{link=\"{}\",status=\"{s}\"}} {n}", esc(link.as_str()));
    }
    family(&mut out, "smsgate_link_errors_total", "counter", "SMPP session errors by link and kind (bind_failed, session_lost, enquire_link_missed, response_timeout, throttled).");
    for ((link, kind), n) in t.link_errors.iter() {
        let _ = writeln!(out, "smsgate_link_errors_total{{link=\"{}\",kind=\"{kind}\"}} {n}", esc(link.as_str()));
    }

    let mut sorted: Vec<(&LinkId, &LinkEntry)> = links.iter().collect();
    sorted.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let views: Vec<(String, LinkView)> = sorted.iter().map(|(l, e)| (esc(l.as_str()), view(m, l, e, now_ms))).collect();
    family(&mut out, "smsgate_link_state", "gauge", "1 for the link's current state (bound, degraded, down), else 0.");
    for (link, v) in &views {
        for s in [LinkState::Bound, LinkState::Degraded, LinkState::Down] {
            let _ = writeln!(
                out,
                "smsgate_link_state{{link=\"{link}\",state=\"{}\"}} {}",
                state_name(s),
                u8::from(v.state == s)
            );
        }
    }
    let gauges: [Series; 6] = [
        ("smsgate_link_sessions", "gauge", "Sessions configured (binds).", |v| v.sessions as f64),
        ("smsgate_link_sessions_bound", "gauge", "Sessions bound now.", |v| v.bound as f64),
        ("smsgate_link_configured_rate", "gauge", "The link's esme_rate, messages per second.", |v| {
            f64::from(v.configured_rate)
        }),
        (
            "smsgate_link_effective_rate",
            "gauge",
            "What the link can send now, messages per second (0 when down, less after SMSC throttling).",
            |v| v.effective_rate,
        ),
        ("smsgate_link_window_in_use", "gauge", "submit_sm written and not answered yet.", |v| v.in_use as f64),
        ("smsgate_link_throttles_total", "counter", "ESME_RTHROTTLED / ESME_RMSGQFUL answers.", |v| v.throttles as f64),
    ];
    for (name, kind, help, f) in gauges {
        family(&mut out, name, kind, help);
        for (link, v) in &views {
            let _ = writeln!(out, "{name}{{link=\"{link}\"}} {}", f(v));
        }
    }

    if let Some(state) = metrics::state() {
        let s = state.stats();
        let state_series: [(&str, &str, &str, u64); 6] = [
            (
                "smsgate_state_queue_depth",
                "gauge",
                "Requests waiting for the state writer.",
                state.queue_depth() as u64,
            ),
            (
                "smsgate_state_batch_size",
                "gauge",
                "Requests in the state writer's last batch (one sync).",
                s.last_batch.load(Ordering::Relaxed),
            ),
            (
                "smsgate_state_batches_total",
                "counter",
                "Batches the state writer applied (one sync each).",
                s.batches.load(Ordering::Relaxed),
            ),
            (
                "smsgate_state_failed_batches_total",
                "counter",
                "Batches whose apply failed.",
                s.failed_batches.load(Ordering::Relaxed),
            ),
            (
                "smsgate_state_up",
                "gauge",
                "0 while the state store is unreachable (new messages get 503 state_down), else 1.",
                u64::from(!s.down.load(Ordering::Relaxed)),
            ),
            (
                "smsgate_state_outages_total",
                "counter",
                "Times the state store became unreachable.",
                s.outages.load(Ordering::Relaxed),
            ),
        ];
        value_series(&mut out, &state_series);
    }

    if let Some(e) = metrics::embedded() {
        let seconds = |us: &AtomicU64| us.load(Ordering::Relaxed) as f64 / 1e6;
        let count = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64;
        let embedded_series: [(&str, &str, &str, f64); 4] = [
            (
                "smsgate_state_checkpoints_total",
                "counter",
                "Checkpoints of the embedded store (durable commits; the writer waits for each).",
                count(&e.checkpoints),
            ),
            (
                "smsgate_state_checkpoint_seconds_total",
                "counter",
                "Time the embedded store's checkpoints took.",
                seconds(&e.checkpoint_us),
            ),
            (
                "smsgate_state_checkpoint_max_seconds",
                "gauge",
                "The longest checkpoint of the embedded store since start.",
                seconds(&e.checkpoint_max_us),
            ),
            (
                "smsgate_state_log_replayed_total",
                "counter",
                "Batches of the embedded store's write-ahead log replayed at start after an unclean stop.",
                count(&e.replayed),
            ),
        ];
        value_series(&mut out, &embedded_series);
    }

    if let Some(a) = metrics::aerospike() {
        let aerospike_series: [(&str, &str, &AtomicU64); 4] = [
            ("smsgate_aerospike_calls_total", "Batch calls and commands sent to Aerospike.", &a.calls),
            ("smsgate_aerospike_records_total", "Records those calls read or wrote.", &a.records),
            ("smsgate_aerospike_timeouts_total", "Calls or state batches past their deadline.", &a.timeouts),
            ("smsgate_aerospike_errors_total", "Calls that failed otherwise (node down, a row refused).", &a.errors),
        ];
        for (name, help, v) in aerospike_series {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
    }

    if let Some(w) = metrics::webhooks() {
        let webhook_series: [(&str, &str, &str, &AtomicU64); 6] = [
            ("smsgate_webhooks_pending", "gauge", "Delivery-report webhooks in the outbox.", &w.pending),
            ("smsgate_webhooks_attempts_total", "counter", "Webhook POSTs made.", &w.attempts),
            ("smsgate_webhooks_delivered_total", "counter", "Webhooks a receiver took (2xx).", &w.delivered),
            (
                "smsgate_webhooks_retried_total",
                "counter",
                "Webhook attempts that failed and were rescheduled.",
                &w.retried,
            ),
            ("smsgate_webhooks_failed_total", "counter", "Webhooks given up after webhooks.max_age_s.", &w.failed),
            (
                "smsgate_webhooks_overflow_total",
                "counter",
                "Webhooks not queued: the client's outbox share (webhooks.max_pending_per_client) was full.",
                &w.overflowed,
            ),
        ];
        atomic_series(&mut out, &webhook_series);
    }
    if let Some(b) = metrics::blacklist() {
        let blacklist_series: [(&str, &str, &str, &AtomicU64); 4] = [
            ("smsgate_blacklist_numbers", "gauge", "Numbers in the blacklist in force.", &b.numbers),
            ("smsgate_blacklist_loads_total", "counter", "Blacklist loads that replaced the list.", &b.loads),
            (
                "smsgate_blacklist_reload_failures_total",
                "counter",
                "Blacklist reloads that failed (the previous list stayed).",
                &b.failures,
            ),
            (
                "smsgate_blacklist_loaded_at_ms",
                "gauge",
                "Unix ms of the last successful blacklist load.",
                &b.loaded_at_ms,
            ),
        ];
        atomic_series(&mut out, &blacklist_series);
    }

    if let Some(i) = metrics::inbound() {
        let inbound_series: [(&str, &str, &AtomicU64); 5] = [
            ("smsgate_mo_parts_total", "Inbound deliver_sm kept as MO parts (a whole message is one part).", &i.parts),
            (
                "smsgate_mo_duplicate_parts_total",
                "Resent MO parts ignored (their number had already arrived).",
                &i.duplicate_parts,
            ),
            ("smsgate_mo_messages_total", "Inbound messages assembled and kept.", &i.messages),
            (
                "smsgate_mo_unrouted_total",
                "Inbound messages that matched no [[mo_routes]] entry (kept, not posted).",
                &i.unrouted,
            ),
            (
                "smsgate_mo_incomplete_total",
                "Inbound messages delivered with parts missing after inbound.reassembly_timeout_ms.",
                &i.incomplete,
            ),
        ];
        for (name, help, v) in inbound_series {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
    }

    if let Some(h) = crate::history::stats() {
        history_series(&mut out, h);
    }

    histogram(
        &mut out,
        "smsgate_api_latency_seconds",
        "Submit answer time, stages 3-8 (route to durable record).",
        &t.api_latency,
    );
    histogram(&mut out, "smsgate_smsc_latency_seconds", "submit_sm written to submit_sm_resp read.", &t.smsc_latency);
    out
}
