//! The webhook sender: one thread, not a shard, that posts the outbox's due delivery reports.
//!
//! Each tick it reads up to `batch` due entries from the store's outbox reader (a read
//! transaction beside the writer, so a long outbox never delays a commit), deals each host's
//! entries over at most `max_concurrency_per_host` lanes (scoped threads; a lane posts one
//! at a time, with a connect and a whole-request timeout), and
//! settles each through the writer: a 2xx removes it (`Op::WebhookDone`); anything else
//! stores the next attempt's time (`Op::WebhookRetry`, exponential backoff with jitter), so a
//! restart resumes the schedule; an entry older than `max_age_s` is moved to the failed table
//! (`Op::WebhookFailed`) and counted. Shards never wait for this thread, and a dead or hanging
//! receiver holds only its own lanes, for one `request_timeout_ms` per tick.
//! Blocking is fine here (its own thread), hence `block_on` over the writer's futures.
//!
//! The thread also closes groups of inbound (MO) parts that waited longer than
//! `inbound.reassembly_timeout_ms` (`Op::InboundExpire`): it already has the store's reader,
//! a clock and a tick, and the webhooks of those messages are its next work.
#![allow(clippy::disallowed_methods)] // a side thread: blocking waits are its job

use super::outbox::{backoff_ms, CallbackPolicy, OutboxEntry};
use crate::clock::{Clock, SystemClock};
use crate::config::{ClientConfig, InboundConfig, WebhooksConfig};
use crate::digest::{hex, hmac_sha256};
use crate::ids::ClientId;
use crate::state::store::{Op, OpOutcome, OutboxRead, StoreError};
use crate::state::writer::StateHandle;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use futures_lite::future::block_on;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-Smsgate-Signature";
/// The idempotency header: the event id, the same on every attempt.
pub const EVENT_ID_HEADER: &str = "X-Smsgate-Event-Id";

/// Counters for metrics and tests. Relaxed: monotonic counts.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// POSTs made, whatever their result.
    pub attempts: AtomicU64,
    /// Events a receiver answered with a 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed and were scheduled again.
    pub retried: AtomicU64,
    /// Events given up after `max_age_s`.
    pub failed: AtomicU64,
    /// Events in the outbox at the last tick (gauge).
    pub pending: AtomicU64,
    /// Events not queued because their client's outbox share was full (counted by the store).
    pub overflowed: Arc<AtomicU64>,
}

/// The running sender thread. Dropping it stops it like [`WebhookSender::shutdown`].
pub struct WebhookSender {
    thread: Option<JoinHandle<()>>,
    /// Dropped (or sent to) to stop the thread between attempts.
    stop: Option<Sender<()>>,
    stats: Arc<WebhookStats>,
}

impl WebhookSender {
    /// Starts the thread "webhook-sender".
    /// `stats` is shared with the store's `WebhookTargets` (its `overflowed` counter).
    pub fn spawn(
        outbox: Box<dyn OutboxRead>,
        state: StateHandle,
        clients: &[ClientConfig],
        cfg: &WebhooksConfig,
        inbound: &InboundConfig,
        stats: Arc<WebhookStats>,
    ) -> std::io::Result<Self> {
        let secrets: HashMap<ClientId, String> =
            clients.iter().filter_map(|c| c.webhook_secret.clone().map(|s| (c.name.clone(), s))).collect();
        let agent = agent(cfg)?;
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let sender = Worker {
            outbox,
            state,
            secrets,
            agent,
            cfg: cfg.clone(),
            reassembly_timeout_ms: inbound.reassembly_timeout_ms,
            stats: Arc::clone(&stats),
            clock: SystemClock,
        };
        let thread =
            std::thread::Builder::new().name("webhook-sender".to_owned()).spawn(move || sender.run(&stopped))?;
        Ok(WebhookSender { thread: Some(thread), stop: Some(stop), stats })
    }

    pub fn stats(&self) -> Arc<WebhookStats> {
        Arc::clone(&self.stats)
    }

    /// Stops after the attempt in flight (at most `request_timeout_ms`) and joins the thread.
    /// Whatever is not delivered stays in the outbox for the next start.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("webhook sender thread panicked");
            }
        }
    }
}

impl Drop for WebhookSender {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sender's HTTP client: its timeouts, no redirects (a redirect could lead anywhere), the
/// root certificates of `webhooks.ca_file` (else Mozilla's), and a resolver that drops every
/// address [`CallbackPolicy`] refuses, so that a name that resolves to an internal address
/// (or is re-pointed there after the URL was checked) is never called.
fn agent(cfg: &WebhooksConfig) -> std::io::Result<ureq::Agent> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let policy = CallbackPolicy::new(&cfg.allowed_hosts, &cfg.allowed_networks).map_err(invalid)?;
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path)?;
        let certs = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("webhooks.ca_file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(invalid(format!("webhooks.ca_file {}: no certificate in it", path.display())));
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_millis(cfg.connect_timeout_ms)))
        .timeout_global(Some(Duration::from_millis(cfg.request_timeout_ms)))
        .tls_config(tls.build())
        .build();
    let connector = ureq::unversioned::transport::DefaultConnector::default();
    Ok(ureq::Agent::with_parts(config, connector, AllowedOnly { policy, inner: Default::default() }))
}

/// A resolver that keeps the addresses the callback policy allows.
#[derive(Debug)]
struct AllowedOnly {
    policy: CallbackPolicy,
    inner: ureq::unversioned::resolver::DefaultResolver,
}

impl ureq::unversioned::resolver::Resolver for AllowedOnly {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let all = self.inner.resolve(uri, config, timeout)?;
        let mut kept = self.empty();
        for addr in all.iter().filter(|a| self.policy.allows_addr(a.ip())) {
            kept.push(*addr);
        }
        if kept.is_empty() {
            let why = format!(
                "{} resolves to no allowed address (not public, not in webhooks.allowed_networks)",
                uri.host().unwrap_or("")
            );
            return Err(ureq::Error::Other(why.into()));
        }
        Ok(kept)
    }
}

/// Signs `body` at unix time `t` with `secret`: the value of [`SIGNATURE_HEADER`].
pub fn sign(secret: &str, t: u64, body: &str) -> String {
    let mac = hmac_sha256(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body.as_bytes()]);
    format!("t={t},v1={}", hex(&mac))
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// `unreachable`: no HTTP answer at all (refused, reset, timed out).
    Failed {
        why: String,
        unreachable: bool,
    },
}

/// The `host[:port]` of a checked callback URL (`outbox::check_url`).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

struct Worker<C: Clock> {
    outbox: Box<dyn OutboxRead>,
    /// Settles entries: the store's one writer.
    state: StateHandle,
    secrets: HashMap<ClientId, String>,
    agent: ureq::Agent,
    cfg: WebhooksConfig,
    /// `inbound.reassembly_timeout_ms`.
    reassembly_timeout_ms: u64,
    stats: Arc<WebhookStats>,
    clock: C,
}

impl<C: Clock + Sync> Worker<C> {
    fn run(&self, stopped: &Receiver<()>) {
        let poll = Duration::from_millis(self.cfg.poll_interval_ms);
        loop {
            let worked = self.tick(stopped);
            // A full batch: more may be due, go on at once; else wait for the next poll.
            let wait = if worked >= self.cfg.batch { Duration::ZERO } else { poll };
            match stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// One tick: attempt what is due. Returns how many entries it took.
    fn tick(&self, stopped: &Receiver<()>) -> usize {
        self.close_inbound_groups();
        if let Ok(n) = self.outbox.pending() {
            self.stats.pending.store(n, Ordering::Relaxed);
        }
        let due = match self.outbox.due_webhooks(self.clock.now_ms(), self.cfg.batch) {
            Ok(d) => d,
            Err(e) => {
                if let Some(suppressed) = crate::observe::events::log_due("", "webhook_outbox_read") {
                    tracing::warn!(error = %e, suppressed, "webhook outbox not readable; retrying");
                }
                return 0;
            }
        };
        let n = due.len();
        let poster = self.poster();
        let lanes = lanes(due, self.cfg.max_concurrency_per_host);
        // One lane of a tick runs here; more run on scoped threads, each its host's lane.
        let settling: Vec<_> = if lanes.len() <= 1 {
            lanes.into_iter().flat_map(|lane| poster.run_lane(lane, stopped)).collect()
        } else {
            std::thread::scope(|scope| {
                let running: Vec<_> = lanes
                    .into_iter()
                    .map(|lane| {
                        let poster = &poster;
                        scope.spawn(move || poster.run_lane(lane, stopped))
                    })
                    .collect();
                running.into_iter().filter_map(|t| t.join().ok()).flatten().collect()
            })
        };
        // Each result went to the writer at once; awaited after the tick's posts, they share
        // one commit instead of a sync per event.
        for (event, settled) in settling {
            if let Err(e) = block_on(settled) {
                // Not recorded: the entry stays as it was and is attempted again (at least once).
                if let Some(suppressed) = crate::observe::events::log_due("", "webhook_settle") {
                    tracing::warn!(%event, error = %e, suppressed, "webhook result not recorded");
                }
            }
        }
        n
    }

    fn poster(&self) -> Poster<'_, C> {
        Poster {
            agent: &self.agent,
            secrets: &self.secrets,
            cfg: &self.cfg,
            stats: &self.stats,
            clock: &self.clock,
            state: &self.state,
        }
    }

    /// Has the store close the groups of MO parts older than the reassembly timeout, if any
    /// (one read when none is; a write only when one is due).
    fn close_inbound_groups(&self) {
        let now = self.clock.now_ms();
        let before_ms = now.saturating_sub(self.reassembly_timeout_ms);
        let closed = match self.outbox.oldest_inbound_group() {
            Ok(Some(oldest)) if oldest <= before_ms => block_on(self.state.expire_inbound(before_ms)).map(|_| ()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = closed {
            if let Some(suppressed) = crate::observe::events::log_due("", "mo_expire") {
                tracing::warn!(error = %e, suppressed, "incomplete inbound messages not closed; retrying");
            }
        }
    }
}

/// What posting needs, borrowed from the worker: shared by the lanes of a tick (scoped
/// threads), so every part is `Sync`.
struct Poster<'a, C> {
    agent: &'a ureq::Agent,
    secrets: &'a HashMap<ClientId, String>,
    cfg: &'a WebhooksConfig,
    stats: &'a WebhookStats,
    clock: &'a C,
    state: &'a StateHandle,
}

impl<C: Clock + Sync> Poster<'_, C> {
    /// Posts a lane's entries one after the other (one host's share of a tick), and hands
    /// each result to the writer. After a host could not be reached (refused, timed out), the
    /// rest of its lane is rescheduled without a request: a dead or hanging receiver costs one
    /// timeout per lane per tick, never more, and the other hosts' lanes run meanwhile.
    fn run_lane(
        &self,
        lane: Vec<OutboxEntry>,
        stopped: &Receiver<()>,
    ) -> Vec<(String, impl std::future::Future<Output = Result<OpOutcome, StoreError>> + Send + 'static)> {
        let mut settling = Vec::with_capacity(lane.len());
        let mut unreachable = false;
        for entry in lane {
            if !matches!(stopped.try_recv(), Err(crossbeam_channel::TryRecvError::Empty)) {
                break;
            }
            let attempt = if unreachable {
                Attempt::Failed { why: "host unreachable earlier in this tick".to_owned(), unreachable: true }
            } else {
                self.post(&entry, self.clock.now_ms())
            };
            unreachable |= matches!(attempt, Attempt::Failed { unreachable: true, .. });
            settling.push((entry.event_id.clone(), self.settle(&entry, attempt)));
        }
        settling
    }

    /// Hands the result of one attempt to the writer; the future resolves once it is durable.
    fn settle(
        &self,
        entry: &OutboxEntry,
        attempt: Attempt,
    ) -> impl std::future::Future<Output = Result<OpOutcome, StoreError>> + Send + 'static {
        let op = match attempt {
            Attempt::Delivered => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                if crate::history::enabled() {
                    let event = entry.event_id.rsplit('.').next().unwrap_or("").to_owned();
                    let (id, client) = (entry.message_id, entry.client.clone());
                    crate::observe::events::history_webhook(id, client, true, event, self.clock.now_ms());
                }
                Op::WebhookDone(entry.seq)
            }
            Attempt::Failed { why, .. } => {
                let now = self.clock.now_ms();
                let age_ms = now.saturating_sub(entry.created_at_ms);
                if age_ms >= self.cfg.max_age_s.saturating_mul(1_000) {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(event = %entry.event_id, client = %entry.client, attempts = entry.attempts + 1, reason = %why, "webhook given up after its max age");
                    if crate::history::enabled() {
                        let event = entry.event_id.rsplit('.').next().unwrap_or("");
                        let (id, client) = (entry.message_id, entry.client.clone());
                        crate::observe::events::history_webhook(id, client, false, format!("{event}: {why}"), now);
                    }
                    Op::WebhookFailed(entry.seq)
                } else {
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff_ms(
                        entry.attempts,
                        self.cfg.retry_initial_ms,
                        self.cfg.retry_max_ms,
                        now ^ entry.seq.rotate_left(17),
                    );
                    if let Some(suppressed) = crate::observe::events::log_due(entry.client.as_str(), "webhook_retry") {
                        tracing::info!(event = %entry.event_id, client = %entry.client, reason = %why, delay_ms = delay, suppressed, "webhook failed; will retry");
                    }
                    Op::WebhookRetry { seq: entry.seq, next_at_ms: now + delay }
                }
            }
        };
        self.state.webhook(op)
    }

    fn post(&self, entry: &OutboxEntry, now_ms: u64) -> Attempt {
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .agent
            .post(&entry.url)
            .header("Content-Type", "application/json")
            .header(EVENT_ID_HEADER, &entry.event_id);
        if let Some(secret) = self.secrets.get(&entry.client) {
            req = req.header(SIGNATURE_HEADER, &sign(secret, now_ms / 1_000, &entry.body));
        }
        match req.send(entry.body.as_bytes()) {
            Ok(r) if r.status().is_success() => Attempt::Delivered,
            Ok(r) => Attempt::Failed { why: format!("HTTP {}", r.status().as_u16()), unreachable: false },
            Err(e) => Attempt::Failed { why: e.to_string(), unreachable: true },
        }
    }
}

/// A tick's due entries as lanes: each host's entries (in due order) dealt round-robin over at
/// most `per_host` lanes, so one host never has more than `per_host` requests in flight.
fn lanes(due: Vec<OutboxEntry>, per_host: usize) -> Vec<Vec<OutboxEntry>> {
    let mut by_host: Vec<(String, Vec<OutboxEntry>)> = Vec::new();
    for entry in due {
        let host = host_of(&entry.url).to_owned();
        match by_host.iter_mut().find(|(h, _)| *h == host) {
            Some((_, entries)) => entries.push(entry),
            None => by_host.push((host, vec![entry])),
        }
    }
    let mut lanes = Vec::new();
    for (_, entries) in by_host {
        let n = entries.len().min(per_host.max(1));
        let mut host_lanes: Vec<Vec<OutboxEntry>> = (0..n).map(|_| Vec::new()).collect();
        for (i, entry) in entries.into_iter().enumerate() {
            host_lanes[i % n].push(entry);
        }
        lanes.extend(host_lanes);
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_cap_each_host_and_keep_due_order_within_a_lane() {
        let entry = |seq: u64, url: &str| OutboxEntry {
            seq,
            event_id: format!("e{seq}"),
            message_id: crate::ids::MessageId(seq),
            client: ClientId::new("acme"),
            url: url.to_owned(),
            body: String::new(),
            created_at_ms: 0,
            attempts: 0,
            next_at_ms: 0,
        };
        let due: Vec<OutboxEntry> =
            (0..7).map(|i| entry(i, if i % 3 == 0 { "http://b.example:81/x" } else { "http://a.example/x" })).collect();
        let lanes = lanes(due, 2);
        let seqs: Vec<Vec<u64>> = lanes.iter().map(|l| l.iter().map(|e| e.seq).collect()).collect();
        // b (seqs 0, 3, 6) first: it had the first due entry; a (1, 2, 4, 5) in two lanes.
        assert_eq!(seqs, [vec![0, 6], vec![3], vec![1, 4], vec![2, 5]]);
        assert_eq!(super::lanes(vec![entry(1, "http://a.example/x")], 8).len(), 1);
    }

    #[test]
    fn signature_has_the_documented_form() {
        // The value itself is checked against Python's `hmac` in tests/webhooks.rs.
        let a = sign("secret-secret-secret", 1_700_000_000, "{\"a\":1}");
        assert!(a.starts_with("t=1700000000,v1="));
        assert_eq!(a.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(a, sign("secret-secret-secret", 1_700_000_000, "{\"a\":1}"));
        assert_ne!(a, sign("secret-secret-secreT", 1_700_000_000, "{\"a\":1}"));
    }

    struct Driven(Arc<AtomicU64>);

    impl Clock for Driven {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A store with `n` final events owed to `url`, a writer, and a worker on a driven clock
    /// (starting at 2,000 ms).
    fn setup(
        url: &str,
        n: u64,
        cfg: WebhooksConfig,
    ) -> (Worker<Driven>, crate::state::writer::Writer, Arc<AtomicU64>, tempfile::TempDir) {
        use crate::ids::{LinkId, MessageId, Msisdn, SmscMessageId};
        use crate::notify::outbox::WebhookTargets;
        use crate::state::embedded::EmbeddedStore;
        use crate::state::record::{MessageRecord, Part, Receipt, Status, Transition};
        use crate::state::store::StateStore;
        use crate::state::writer::{Writer, WriterConfig};

        let client: ClientConfig = toml::from_str(&format!(
            "name = \"acme\"\napi_key = \"k\"\nwebhook_url = \"{url}\"\nwebhook_secret = \"s\"\n"
        ))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let targets = WebhookTargets::new(&[client], 10, Arc::default());
        let mut store = EmbeddedStore::open(dir.path()).unwrap().with_webhooks(targets);
        let mut ops = Vec::new();
        for i in 0..n {
            let smsc = SmscMessageId::new(&format!("a{i}"));
            let mut rec = MessageRecord {
                id: MessageId(i),
                client: ClientId::new("acme"),
                to: Msisdn("4915112345678".to_owned()),
                from: "ACME".to_owned(),
                link: LinkId::new("vf-1"),
                route: String::new(),
                client_ref: None,
                callback_url: None,
                segments: 1,
                parts: vec![Part { smsc_message_id: Some(smsc.clone()), ..Part::default() }],
                status: Status::Accepted,
                transitions: vec![Transition::at(Status::Accepted, 1_000)],
            };
            rec.push(Transition::at(Status::Submitted, 1_000));
            let receipt = Receipt {
                link: LinkId::new("vf-1"),
                smsc_message_id: smsc,
                status: Status::Delivered,
                error_code: None,
                smsc_done_date: None,
                received_at_ms: 2_000,
            };
            ops.extend([Op::Put(rec), Op::Receipt(receipt)]);
        }
        store.apply(&ops).unwrap();
        let outbox = store.outbox_reader();
        let (writer, state) = Writer::spawn(store, WriterConfig::default()).unwrap();
        let now = Arc::new(AtomicU64::new(2_000));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(cfg.request_timeout_ms)))
            .build()
            .into();
        let worker = Worker {
            outbox,
            state,
            secrets: HashMap::new(),
            agent,
            cfg,
            reassembly_timeout_ms: 60_000,
            stats: Arc::new(WebhookStats::default()),
            clock: Driven(now.clone()),
        };
        (worker, writer, now, dir)
    }

    /// What a test receiver got: (event id, status answered), in order.
    type Got = Arc<std::sync::Mutex<Vec<(String, u16)>>>;

    /// A real HTTP receiver (a std listener on a thread) that answers 503 to its first
    /// `fail_first` requests and 204 after; it keeps the order of what it got.
    fn flaky_receiver(fail_first: usize) -> (String, Got) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/h", listener.local_addr().unwrap());
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let (mut len, mut event) = (0, String::new());
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap_or(("", ""));
                        match k.trim().to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            "x-smsgate-event-id" => event = v.trim().to_owned(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    let mut got = seen.lock().unwrap();
                    let status = if got.len() < fail_first { 503 } else { 204 };
                    got.push((event, status));
                    drop(got);
                    let head = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                    if writer.write_all(head.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        (url, got)
    }

    /// A receiver that fails the first 3 attempts, then takes the event: with a driven clock
    /// (no sleeps) the attempts come exactly when the backoff says (1 s, 2 s, 4 s, ±20 %),
    /// never before, and the event is delivered once.
    #[test]
    fn retries_are_spaced_as_configured_until_the_receiver_takes_the_event() {
        let (url, got) = flaky_receiver(3);
        let cfg = WebhooksConfig {
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            request_timeout_ms: 5_000,
            ..WebhooksConfig::default()
        };
        let (worker, writer, now, _dir) = setup(&url, 1, cfg);
        let (_keep, stopped) = crossbeam_channel::bounded::<()>(1);
        let next_at = |w: &Worker<Driven>| w.outbox.due_webhooks(u64::MAX, 1).unwrap()[0].next_at_ms;
        let mut at = 2_000;
        for (attempt, base) in [(1, 1_000), (2, 2_000), (3, 4_000)] {
            assert_eq!(worker.tick(&stopped), 1, "attempt {attempt} is due at {at}");
            let next = next_at(&worker);
            let gap = next - at;
            assert!(
                (base * 8 / 10..=base * 12 / 10).contains(&gap),
                "after attempt {attempt}: {gap} ms, want {base} ± 20 %"
            );
            now.store(next - 1, Ordering::SeqCst);
            assert_eq!(worker.tick(&stopped), 0, "nothing 1 ms before the retry is due");
            now.store(next, Ordering::SeqCst);
            at = next;
        }
        assert_eq!(worker.tick(&stopped), 1);
        assert_eq!(worker.outbox.pending().unwrap(), 0, "taken: gone from the outbox");
        now.store(at + 3_600_000, Ordering::SeqCst);
        assert_eq!(worker.tick(&stopped), 0, "never sent again");
        let got = got.lock().unwrap().clone();
        let statuses: Vec<u16> = got.iter().map(|(_, s)| *s).collect();
        assert_eq!(statuses, [503, 503, 503, 204]);
        assert!(got.iter().all(|(e, _)| e == &got[0].0), "one event id on every attempt: {got:?}");
        let s = &worker.stats;
        assert_eq!([&s.attempts, &s.retried, &s.delivered].map(|c| c.load(Ordering::Relaxed)), [4, 3, 1]);
        drop(worker);
        writer.shutdown().unwrap();
    }

    /// A receiver that refuses connections: retries are spaced by the backoff (driven clock,
    /// no sleeps), then the event is given up at its max age and counted.
    #[test]
    fn failing_events_back_off_then_fail_at_max_age() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg =
            WebhooksConfig { retry_initial_ms: 1_000, retry_max_ms: 4_000, max_age_s: 10, ..WebhooksConfig::default() };
        let (worker, writer, now, _dir) = setup(&format!("http://127.0.0.1:{closed}/h"), 1, cfg);
        let (_keep, stopped) = crossbeam_channel::bounded::<()>(1);
        let next_at = |w: &Worker<Driven>| w.outbox.due_webhooks(u64::MAX, 1).unwrap()[0].next_at_ms;

        assert_eq!(worker.tick(&stopped), 1);
        let first = next_at(&worker);
        assert!((2_800..=3_200).contains(&first), "first retry after 1 s ± 20 %: {first}");
        assert_eq!(worker.tick(&stopped), 0, "not due yet");
        now.store(first, Ordering::SeqCst);
        assert_eq!(worker.tick(&stopped), 1);
        let second = next_at(&worker);
        assert!((first + 1_600..=first + 2_400).contains(&second), "then 2 s ± 20 %: {}", second - first);
        now.store(12_000, Ordering::SeqCst);
        assert_eq!(worker.tick(&stopped), 1);
        assert!(worker.outbox.due_webhooks(u64::MAX, 1).unwrap().is_empty(), "given up at 10 s of age");
        assert_eq!(worker.outbox.pending().unwrap(), 0);
        let s = &worker.stats;
        let counts = [&s.attempts, &s.retried, &s.failed, &s.delivered].map(|c| c.load(Ordering::Relaxed));
        assert_eq!(counts, [3, 2, 1, 0]);
        drop(worker);
        writer.shutdown().unwrap();
    }

    /// A receiver that accepts connections and never answers costs one timeout per tick, on at
    /// most `max_concurrency_per_host` requests: the rest of each lane is rescheduled without
    /// a request.
    #[test]
    fn a_hanging_host_costs_one_timeout_per_tick() {
        // Bound, never accepted: the kernel completes the handshake, nobody answers.
        let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = hanging.local_addr().unwrap().port();
        let cfg = WebhooksConfig { request_timeout_ms: 300, max_concurrency_per_host: 2, ..WebhooksConfig::default() };
        let (worker, writer, _now, _dir) = setup(&format!("http://127.0.0.1:{port}/h"), 5, cfg);
        let (_keep, stopped) = crossbeam_channel::bounded::<()>(1);
        let start = std::time::Instant::now();
        assert_eq!(worker.tick(&stopped), 5);
        assert!(start.elapsed() < Duration::from_millis(1_500), "one timeout, not five: {:?}", start.elapsed());
        let s = &worker.stats;
        assert_eq!((s.attempts.load(Ordering::Relaxed), s.retried.load(Ordering::Relaxed)), (2, 5), "two lanes");
        assert_eq!(worker.tick(&stopped), 0, "all five rescheduled");
        drop(worker);
        writer.shutdown().unwrap();
    }
}
