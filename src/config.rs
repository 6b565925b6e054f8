//! `config/smsgate.toml` (the node) and `smpp_rules.toml` (links), read and validated at
//! start-up. Every error names the file, the key and the reason; unknown keys are errors.

use crate::history::config::HistoryConfig;
use crate::ids::{ClientId, LinkId};
use crate::pipeline::limit::config::{ClientLimits, RedisConfig};
use crate::pipeline::policy::config::{ClientPolicy, PolicyConfig};
use crate::smpp::concat::LongMessages;
use crate::smpp::receipt::IdFormat;
use crate::state::aerospike::AerospikeConfig;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: key `{}`: {}", self.file.display(), self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// `config/smsgate.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub node: NodeConfig,
    #[serde(default)]
    pub shards: ShardsConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub smpp: SmppConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Redis for the distributed (L2) limits; without `redis.url` every limit is node-local.
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Contact policy (`[policy]`): blacklist files, CP2 duplicates, CP1 caps.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Delivery-report webhooks: timeouts and retries (`[webhooks]`).
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// Inbound messages (MO): reassembly of concatenated parts (`[inbound]`).
    #[serde(default)]
    pub inbound: InboundConfig,
    /// Message history on PostgreSQL (`[history]`); absent: off.
    #[serde(default)]
    pub history: Option<HistoryConfig>,
    /// API clients. At least one is required.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's id, 0..=127, unique within a cluster; part of every message id. Default 0.
    pub id: u8,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardsConfig {
    /// CPUs to run one shard each on. Empty (default): every CPU of the machine.
    pub cpus: Vec<usize>,
    /// Items in flight from one shard to another before a hand-off is refused (503). Default 1024.
    pub mesh_capacity: Option<usize>,
    /// A shard with nothing to do polls for new work this many µs before it parks (sleeps in
    /// the kernel until woken). 0 (default): park at once. Spinning saves a park and a wake-up
    /// when work comes back within the window, but burns the core while idle, taking it from
    /// the state writer and anything else on it; measured in perf/RESULTS.md (issue 8).
    pub spin_before_park_us: u64,
}

impl ShardsConfig {
    pub fn mesh_capacity(&self) -> usize {
        self.mesh_capacity.unwrap_or(1024)
    }

    pub fn spin_before_park(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.spin_before_park_us)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the HTTP API (HTTP/1.1 and HTTP/2 cleartext). Default 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// Largest request body accepted, bytes; larger gets 413. Default 65536.
    pub max_body_bytes: usize,
    /// A client must send a whole request head within this many ms. Default 10000.
    pub header_read_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 64 * 1024,
            header_read_timeout_ms: 10_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppConfig {
    /// The links file. Relative paths are relative to the working directory. Default `smpp_rules.toml`.
    pub rules_file: PathBuf,
    /// How long a submit_sm may wait for its submit_sm_resp, ms; then the API answers 504
    /// and the message's outcome is `unknown`. Default 10000.
    pub response_timeout_ms: u64,
    /// Interval between enquire_link PDUs on an idle session, ms. Default 30000.
    pub enquire_link_interval_ms: u64,
    /// First delay before reconnecting a lost session, ms; doubles per failed attempt, with
    /// ±20 % jitter; a refused bind starts at 4 ×. Default 1000.
    pub reconnect_delay_ms: u64,
    /// Longest delay between reconnect attempts, ms. Default 30000.
    pub reconnect_max_ms: u64,
    /// How long to wait for unbind_resp at shutdown, ms. Default 2000.
    pub unbind_timeout_ms: u64,
}

impl Default for SmppConfig {
    fn default() -> Self {
        SmppConfig {
            rules_file: PathBuf::from("smpp_rules.toml"),
            response_timeout_ms: 10_000,
            enquire_link_interval_ms: 30_000,
            reconnect_delay_ms: 1_000,
            reconnect_max_ms: 30_000,
            unbind_timeout_ms: 2_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `embedded` (default: redb in `path`) or `aerospike` (`[state.aerospike]`).
    pub backend: StateBackend,
    /// Directory of the embedded state store. Default `data/state`.
    pub path: PathBuf,
    /// Most writes committed with one sync (one Aerospike batch). Default 4096.
    pub max_batch: usize,
    /// Writes waiting for the writer thread before new ones are refused (503). Default 65536.
    pub queue_capacity: usize,
    /// Embedded store: longest time between checkpoints (durable redb commits) while writes
    /// come; between them a batch is durable in the write-ahead log. Default 20.
    pub checkpoint_interval_ms: u64,
    /// The Aerospike cluster, for `backend = "aerospike"`.
    pub aerospike: AerospikeConfig,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Embedded,
            path: PathBuf::from("data/state"),
            max_batch: 4096,
            queue_capacity: 65_536,
            checkpoint_interval_ms: 20,
            aerospike: AerospikeConfig::default(),
        }
    }
}

/// Where lifecycle state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateBackend {
    /// redb in `state.path`: one node, nothing else to run.
    Embedded,
    /// An Aerospike cluster (`[state.aerospike]`), shared by every node.
    Aerospike,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` (default) or `smsgate=debug`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Record counters and latency histograms (default true). Off only to measure what
    /// collection costs; the endpoints then report zeros.
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token of the admin API (`POST /api/v1/admin/reload`); ≥16 printable ASCII
    /// characters, different from every client key. Absent (default): the admin API is off.
    pub api_key: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client's name, shown in records and logs.
    pub name: ClientId,
    /// The bearer token the client sends in `Authorization: Bearer <api_key>`; at least 16 characters.
    pub api_key: String,
    /// Per-client limits (`[clients.limits]`): per_second, per_minute, per_day,
    /// per_destination_per_minute, per_destination_per_day. None set: no client limit.
    #[serde(default)]
    pub limits: ClientLimits,
    /// Sender ids (`from`) this client may use, e.g. `["ACME", "+4912345"]`; any other is
    /// refused with `unregistered_sender`. Empty (default): any sender.
    #[serde(default)]
    pub senders: Vec<String>,
    /// Which `[policy]` strategies apply to this client (`[clients.policy]`: `blacklist`,
    /// `duplicate`, `caps`, each default true).
    #[serde(default)]
    pub policy: ClientPolicy,
    /// Default delivery-report webhook, `http://host[:port]/path` (at most 512 characters);
    /// a message's own `callback_url` wins. Absent (default): only messages that give one.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Key of the `X-Smsgate-Signature` HMAC-SHA256, at least 16 characters; required with
    /// `webhook_url`. Absent: this client's webhooks go unsigned.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Events posted: `final` (default) and optionally `submitted` and `segment` (one per part
    /// receipt of a message sent in several parts, before its `final`).
    #[serde(default = "final_only")]
    pub webhook_events: Vec<WebhookEvent>,
    /// Where this client's inbound messages (MO) are posted, `http://host[:port]/path`, signed
    /// like its delivery reports (`webhook_secret`). Required for a client that
    /// `[[mo_routes]]` names. Absent (default): no MO goes to this client.
    #[serde(default)]
    pub mo_url: Option<String>,
}

/// `[inbound]`: inbound messages (MO).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundConfig {
    /// A concatenated MO whose parts have not all arrived this long after its first part is
    /// delivered with the parts it has, marked `incomplete`, ms. Default 60000.
    pub reassembly_timeout_ms: u64,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig { reassembly_timeout_ms: 60_000 }
    }
}

/// An event a client may ask webhooks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    Submitted,
    Final,
    /// One event per part receipt of a message sent in several parts.
    Segment,
}

fn final_only() -> Vec<WebhookEvent> {
    vec![WebhookEvent::Final]
}

/// `[webhooks]`: how the sender thread posts delivery reports.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Connecting to a receiver may take this long, ms. Default 2000.
    pub connect_timeout_ms: u64,
    /// One whole attempt (connect, send, response) may take this long, ms. Default 5000.
    pub request_timeout_ms: u64,
    /// Delay before the first retry, ms; doubles per failed attempt, ±20 % jitter. Default 1000.
    pub retry_initial_ms: u64,
    /// Longest delay between attempts, ms. Default 600000 (10 min).
    pub retry_max_ms: u64,
    /// An event still undelivered this long after it was owed is marked failed, s. Default 86400.
    pub max_age_s: u64,
    /// Most events attempted per tick of the sender. Default 64.
    pub batch: usize,
    /// How often the sender looks for due events when idle, ms. Default 200.
    pub poll_interval_ms: u64,
    /// Events one client may have pending; beyond, a new event is kept as failed at once and
    /// counted (`smsgate_webhooks_overflow_total`), so one dead receiver cannot fill the disk.
    /// Default 100000.
    pub max_pending_per_client: u64,
    /// Host names a callback URL (`callback_url`, `webhook_url`, `mo_url`) may name: exact, or
    /// `*.example.com` for any name below it. Empty (default): any name.
    pub allowed_hosts: Vec<String>,
    /// Addresses that are not public (loopback, private, link-local, ...) a callback may
    /// reach anyway: CIDR blocks or single addresses, e.g. `["10.20.0.0/16"]`. Default none:
    /// only public addresses (checked on the URL and on every address its name resolves to).
    pub allowed_networks: Vec<String>,
    /// PEM file of the root certificates https receivers are checked against, instead of
    /// Mozilla's roots (built in). Default none.
    pub ca_file: Option<PathBuf>,
    /// Requests in flight to one receiver host (`host:port`) at most, 1-64: each tick deals a
    /// host's due events over this many lanes (threads), so one host never gets more, and a
    /// dead host holds only its own lanes. Default 8.
    pub max_concurrency_per_host: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            connect_timeout_ms: 2_000,
            request_timeout_ms: 5_000,
            retry_initial_ms: 1_000,
            retry_max_ms: 600_000,
            max_age_s: 86_400,
            batch: 64,
            poll_interval_ms: 200,
            max_pending_per_client: 100_000,
            allowed_hosts: Vec::new(),
            allowed_networks: Vec::new(),
            ca_file: None,
            max_concurrency_per_host: 8,
        }
    }
}

/// `smpp_rules.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub links: BTreeMap<String, LinkConfig>,
    /// Weighted groups of links: `[pools.NAME] members = [{ link = "100", weight = 3 }, ...]`.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolConfig>,
    /// Destination-prefix routes, `[[routes]]`; the longest matching prefix wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Where inbound messages (MO) go, `[[mo_routes]]`: by destination address, optionally
    /// by keyword.
    #[serde(default)]
    pub mo_routes: Vec<MoRouteConfig>,
}

/// `[[mo_routes]]`: an inbound message (MO) to `to` (and, when given, whose text starts with
/// `keyword`) goes to `client`'s `mo_url`. A route with a matching keyword beats one without.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoRouteConfig {
    /// The destination address the SMSC gives (a number or a short code): 1-21 digits, a
    /// leading `+` ignored. Matched exactly.
    pub to: String,
    /// The first word of the text, compared without case: 1-32 characters, no spaces.
    /// Absent (default): any text.
    #[serde(default)]
    pub keyword: Option<String>,
    /// A client (its `name` in config/smsgate.toml) that has a `mo_url`.
    pub client: String,
}

impl MoRouteConfig {
    /// `to` without its `+`.
    pub fn address(&self) -> &str {
        self.to.strip_prefix('+').unwrap_or(&self.to)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub members: Vec<PoolMember>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolMember {
    /// A link of `[links]`.
    pub link: String,
    /// Share of the pool's traffic, 1..=1000, relative to the other members. Default 1.
    #[serde(default = "one_u32")]
    pub weight: u32,
}

fn one_u32() -> u32 {
    1
}

/// `[[routes]]`: where messages go when the request names neither `link` nor `pool`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination prefix in E.164 digits without `+` (country or operator prefix, e.g. "49" or
    /// "49151"). Empty (the default) matches every number: the default route.
    #[serde(default)]
    pub prefix: String,
    /// Only for this sender (`from`), if given.
    #[serde(default)]
    pub sender: Option<String>,
    /// Only for this client (its `name`), if given.
    #[serde(default)]
    pub client: Option<String>,
    /// Target: exactly one of `link` or `pool`.
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub pool: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// SMSC host name or address.
    pub host: String,
    /// SMSC port.
    pub port: u16,
    /// system_id of the bind.
    pub system_id: String,
    /// password of the bind (at most 8 characters in SMPP 3.4).
    pub password: String,
    /// system_type of the bind. Default empty.
    #[serde(default)]
    pub system_type: String,
    /// Sustained rate the SMSC allows on this link, messages per second.
    pub esme_rate: u32,
    /// Messages allowed above the sustained rate in a burst. Default 0.
    #[serde(default)]
    pub esme_rate_burst: u32,
    /// Binds (transceiver sessions) to keep open, spread over the shards. Default 1.
    #[serde(default = "one")]
    pub sessions: usize,
    /// Outstanding submit_sm per session before new ones wait. Default 64.
    #[serde(default = "default_window")]
    pub window: usize,
    /// `transceiver` (default): each session submits and receives. `transmitter_receiver`:
    /// each session is a transmitter bind plus a receiver bind (for receipts and MO).
    #[serde(default)]
    pub bind: BindConfig,
    /// Texts longer than one SMS: `udh8` (default; UDH with an 8-bit reference), `udh16`, or
    /// `payload` (whole text in the message_payload TLV, one submit_sm).
    #[serde(default)]
    pub long_messages: LongMessages,
    /// How receipts write the SMSC id relative to submit_sm_resp: `same` (default), `hex`
    /// (receipt in hex, submit_sm_resp in decimal), `decimal` (the reverse).
    #[serde(default)]
    pub receipt_id_format: IdFormat,
    /// After ESME_RTHROTTLED / ESME_RMSGQFUL a session pauses this long, ms. Default 1000.
    #[serde(default = "default_throttle_pause")]
    pub throttle_pause_ms: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindConfig {
    #[default]
    Transceiver,
    TransmitterReceiver,
}

fn default_throttle_pause() -> u64 {
    1_000
}

fn one() -> usize {
    1
}

fn default_window() -> usize {
    64
}

/// Everything the process needs, loaded and validated.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub config_file: PathBuf,
    pub rules: Rules,
    pub rules_file: PathBuf,
}

impl Loaded {
    pub fn link_ids(&self) -> Vec<LinkId> {
        self.rules.links.keys().map(|k| LinkId::new(k)).collect()
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        key: String::new(),
        reason: format!("cannot read: {e}"),
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let reason = e.message().to_owned();
        let position = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].lines().count().max(1);
                format!(" (line {line})")
            })
            .unwrap_or_default();
        ConfigError { file: path.to_owned(), key: key_at(text, e.span()), reason: format!("{reason}{position}") }
    })
}

/// The dotted key nearest before an error's span: the last `[table]` header and the key on the
/// error's line, so the message names what to fix.
fn key_at(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = &text[..span.start.min(text.len())];
    let table = before
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix('[').map(|t| t.trim_start_matches('[').trim_end_matches(']').trim().to_owned())
        })
        .unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split('=').next().map(str::trim).filter(|k| !k.starts_with('[')).unwrap_or("");
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

fn invalid(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { file: file.to_owned(), key: key.into(), reason: reason.into() }
}

/// Loads and validates `config_file` and the rules file it names.
pub fn load(config_file: &Path) -> Result<Loaded, ConfigError> {
    let config: Config = parse(config_file, &read(config_file)?)?;
    validate_config(config_file, &config)?;
    let rules_file = config.smpp.rules_file.clone();
    let rules = load_rules(&rules_file)?;
    check_mo_clients(&rules_file, &rules, &config.clients)?;
    Ok(Loaded { config, config_file: config_file.to_owned(), rules, rules_file })
}

/// Loads and validates a rules file on its own.
pub fn load_rules(rules_file: &Path) -> Result<Rules, ConfigError> {
    let rules: Rules = parse(rules_file, &read(rules_file)?)?;
    validate_rules(rules_file, &rules)?;
    Ok(rules)
}

fn validate_config(f: &Path, c: &Config) -> Result<(), ConfigError> {
    if c.node.id > 127 {
        return Err(invalid(f, "node.id", "must be 0..=127"));
    }
    if c.shards.cpus.len() > 64 {
        return Err(invalid(f, "shards.cpus", "at most 64 shards"));
    }
    if c.shards.mesh_capacity == Some(0) {
        return Err(invalid(f, "shards.mesh_capacity", "must be at least 1"));
    }
    if c.http.max_body_bytes < 256 {
        return Err(invalid(f, "http.max_body_bytes", "must be at least 256"));
    }
    for (key, v) in [
        ("smpp.response_timeout_ms", c.smpp.response_timeout_ms),
        ("smpp.enquire_link_interval_ms", c.smpp.enquire_link_interval_ms),
        ("smpp.reconnect_delay_ms", c.smpp.reconnect_delay_ms),
        ("http.header_read_timeout_ms", c.http.header_read_timeout_ms),
    ] {
        if v == 0 {
            return Err(invalid(f, key, "must be greater than 0"));
        }
    }
    if c.state.max_batch == 0 || c.state.queue_capacity == 0 {
        return Err(invalid(f, "state", "max_batch and queue_capacity must be greater than 0"));
    }
    if c.state.backend == StateBackend::Aerospike {
        if let Some((key, reason)) = c.state.aerospike.invalid() {
            return Err(invalid(f, format!("state.aerospike.{key}"), reason));
        }
    }
    if let Some((key, reason)) = c.redis.invalid() {
        return Err(invalid(f, format!("redis.{key}"), reason));
    }
    if let Some((key, reason)) = c.policy.invalid() {
        return Err(invalid(f, format!("policy.{key}"), reason));
    }
    if let Some(k) = &c.admin.api_key {
        if k.len() < 16 || k.chars().any(|ch| !ch.is_ascii_graphic()) || c.clients.iter().any(|cl| &cl.api_key == k) {
            return Err(invalid(
                f,
                "admin.api_key",
                "must be at least 16 printable ASCII characters, unlike any client key",
            ));
        }
    }
    let w = &c.webhooks;
    for (key, v) in [
        ("webhooks.connect_timeout_ms", w.connect_timeout_ms),
        ("webhooks.request_timeout_ms", w.request_timeout_ms),
        ("webhooks.retry_initial_ms", w.retry_initial_ms),
        ("webhooks.max_age_s", w.max_age_s),
        ("webhooks.batch", w.batch as u64),
        ("webhooks.poll_interval_ms", w.poll_interval_ms),
        ("webhooks.max_pending_per_client", w.max_pending_per_client),
    ] {
        if v == 0 {
            return Err(invalid(f, key, "must be greater than 0"));
        }
    }
    if c.inbound.reassembly_timeout_ms == 0 {
        return Err(invalid(f, "inbound.reassembly_timeout_ms", "must be greater than 0"));
    }
    if !(1..=64).contains(&w.max_concurrency_per_host) {
        return Err(invalid(f, "webhooks.max_concurrency_per_host", "must be 1..=64"));
    }
    if w.retry_max_ms < w.retry_initial_ms {
        return Err(invalid(f, "webhooks.retry_max_ms", "must be at least retry_initial_ms"));
    }
    let callbacks = crate::notify::outbox::CallbackPolicy::new(&w.allowed_hosts, &w.allowed_networks)
        .map_err(|r| invalid(f, "webhooks.allowed_hosts / allowed_networks", r))?;
    if let Some(ca) = &w.ca_file {
        if !ca.is_file() {
            return Err(invalid(f, "webhooks.ca_file", format!("{} is not a readable file", ca.display())));
        }
    }
    if let Some((key, reason)) = c.history.as_ref().and_then(HistoryConfig::invalid) {
        return Err(invalid(f, format!("history.{key}"), reason));
    }
    if c.clients.is_empty() {
        return Err(invalid(f, "clients", "at least one [[clients]] entry is required"));
    }
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for (i, client) in c.clients.iter().enumerate() {
        if client.name.as_str().is_empty() || !names.insert(client.name.clone()) {
            return Err(invalid(f, format!("clients[{i}].name"), "must be non-empty and unique"));
        }
        if client.api_key.len() < 16 || client.api_key.chars().any(|ch| !ch.is_ascii_graphic()) {
            return Err(invalid(f, format!("clients[{i}].api_key"), "must be at least 16 printable ASCII characters"));
        }
        if let Some((key, reason)) = client.policy.invalid() {
            return Err(invalid(f, format!("clients[{i}].policy.{key}"), reason));
        }
        if let Some(key) = client.limits.invalid() {
            return Err(invalid(f, format!("clients[{i}].limits.{key}"), "must be at least 1"));
        }
        if let Some(s) = client.senders.iter().find(|s| crate::pipeline::policy::config::sender_key(s).is_none()) {
            return Err(invalid(
                f,
                format!("clients[{i}].senders"),
                format!("`{s}` is no sender: 1-11 letters, digits or spaces, or up to 15 digits (optionally with +)"),
            ));
        }
        if !keys.insert(client.api_key.as_str()) {
            return Err(invalid(f, format!("clients[{i}].api_key"), "is used by another client"));
        }
        if let Some(url) = &client.webhook_url {
            callbacks.check(url).map_err(|r| invalid(f, format!("clients[{i}].webhook_url"), r))?;
            if client.webhook_secret.is_none() {
                return Err(invalid(f, format!("clients[{i}].webhook_secret"), "is required with webhook_url"));
            }
        }
        if let Some(url) = &client.mo_url {
            callbacks.check(url).map_err(|r| invalid(f, format!("clients[{i}].mo_url"), r))?;
        }
        if client.webhook_secret.as_ref().is_some_and(|s| s.len() < 16 || s.chars().any(char::is_control)) {
            return Err(invalid(f, format!("clients[{i}].webhook_secret"), "must be at least 16 characters"));
        }
        if client.webhook_events.is_empty() {
            return Err(invalid(f, format!("clients[{i}].webhook_events"), "must name at least one event"));
        }
    }
    Ok(())
}

/// Every `[[mo_routes]]` client exists and has a `mo_url` (checked at start and on reload).
pub fn check_mo_clients(f: &Path, r: &Rules, clients: &[ClientConfig]) -> Result<(), ConfigError> {
    for (i, route) in r.mo_routes.iter().enumerate() {
        match clients.iter().find(|c| c.name.as_str() == route.client) {
            None => {
                return Err(invalid(f, format!("mo_routes[{i}].client"), format!("no client named `{}`", route.client)))
            }
            Some(c) if c.mo_url.is_none() => {
                return Err(invalid(
                    f,
                    format!("mo_routes[{i}].client"),
                    format!("client `{}` has no mo_url", route.client),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn validate_mo_routes(f: &Path, r: &Rules) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, route) in r.mo_routes.iter().enumerate() {
        let to = route.address();
        if to.is_empty() || to.len() > 21 || !to.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(f, format!("mo_routes[{i}].to"), "must be 1-21 digits (a leading + is allowed)"));
        }
        let keyword = route.keyword.as_deref().map(str::to_lowercase);
        if keyword
            .as_deref()
            .is_some_and(|k| k.is_empty() || k.chars().count() > 32 || k.chars().any(char::is_whitespace))
        {
            return Err(invalid(f, format!("mo_routes[{i}].keyword"), "must be 1-32 characters without spaces"));
        }
        if !seen.insert((to.to_owned(), keyword)) {
            return Err(invalid(f, format!("mo_routes[{i}]"), "another route has the same `to` and `keyword`"));
        }
    }
    Ok(())
}

fn validate_rules(f: &Path, r: &Rules) -> Result<(), ConfigError> {
    validate_mo_routes(f, r)?;
    for (name, link) in &r.links {
        let key = |k: &str| format!("links.{name}.{k}");
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(f, format!("links.{name}"), "a link name is 1-64 letters, digits, '-' or '_'"));
        }
        if link.host.is_empty() {
            return Err(invalid(f, key("host"), "must not be empty"));
        }
        if link.port == 0 {
            return Err(invalid(f, key("port"), "must be 1..=65535"));
        }
        if link.system_id.is_empty() || link.system_id.len() > 15 {
            return Err(invalid(f, key("system_id"), "must be 1-15 characters (SMPP 3.4)"));
        }
        if link.password.len() > 8 {
            return Err(invalid(f, key("password"), "must be at most 8 characters (SMPP 3.4)"));
        }
        if link.system_type.len() > 12 {
            return Err(invalid(f, key("system_type"), "must be at most 12 characters (SMPP 3.4)"));
        }
        if link.esme_rate == 0 {
            return Err(invalid(f, key("esme_rate"), "must be at least 1 message per second"));
        }
        if !(1..=64).contains(&link.sessions) {
            return Err(invalid(f, key("sessions"), "must be 1..=64"));
        }
        if !(1..=10_000).contains(&link.window) {
            return Err(invalid(f, key("window"), "must be 1..=10000"));
        }
    }
    for (name, pool) in &r.pools {
        if r.links.contains_key(name) {
            return Err(invalid(f, format!("pools.{name}"), "a pool may not have the name of a link"));
        }
        if pool.members.is_empty() {
            return Err(invalid(f, format!("pools.{name}.members"), "a pool needs at least one member"));
        }
        let mut seen = HashSet::new();
        for (i, m) in pool.members.iter().enumerate() {
            let key = format!("pools.{name}.members[{i}]");
            if !r.links.contains_key(&m.link) {
                return Err(invalid(f, format!("{key}.link"), format!("no link named `{}`", m.link)));
            }
            if !seen.insert(&m.link) {
                return Err(invalid(f, format!("{key}.link"), format!("`{}` is listed twice", m.link)));
            }
            if !(1..=1000).contains(&m.weight) {
                return Err(invalid(f, format!("{key}.weight"), "must be 1..=1000"));
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, route) in r.routes.iter().enumerate() {
        let key = |k: &str| format!("routes[{i}].{k}");
        if route.prefix.len() > 15 || !route.prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(f, key("prefix"), "must be up to 15 digits (E.164 without +)"));
        }
        match (&route.link, &route.pool) {
            (Some(l), None) if !r.links.contains_key(l) => {
                return Err(invalid(f, key("link"), format!("no link named `{l}`")));
            }
            (None, Some(p)) if !r.pools.contains_key(p) => {
                return Err(invalid(f, key("pool"), format!("no pool named `{p}`")));
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => return Err(invalid(f, key("link"), "give exactly one of `link` or `pool`")),
        }
        if !seen.insert((&route.prefix, &route.sender, &route.client)) {
            return Err(invalid(f, key("prefix"), "another route has the same prefix, sender and client"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_config(text: &str) -> Result<Config, ConfigError> {
        let f = Path::new("smsgate.toml");
        let c: Config = parse(f, text)?;
        validate_config(f, &c)?;
        Ok(c)
    }

    const CLIENT: &str = "[[clients]]\nname = \"acme\"\napi_key = \"0123456789abcdef\"\n";

    #[test]
    fn defaults_fill_a_minimal_file() {
        let c = parse_config(CLIENT).unwrap();
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.state.max_batch, 4096);
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = parse_config(&format!("[http]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n{CLIENT}")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("smsgate.toml"), "{msg}");
        assert!(msg.contains("listne"), "{msg}");
        assert_eq!(e.key, "http.listne");
    }

    #[test]
    fn bad_value_names_key() {
        let e = parse_config(&format!("[node]\nid = 200\n{CLIENT}")).unwrap_err();
        assert_eq!(e.key, "node.id");
        let e = parse_config("[[clients]]\nname = \"a\"\napi_key = \"short\"\n").unwrap_err();
        assert_eq!(e.key, "clients[0].api_key");
        let e = parse_config("").unwrap_err();
        assert_eq!(e.key, "clients");
    }

    #[test]
    fn aerospike_settings_are_validated_when_chosen() {
        let c = parse_config(&format!(
            "[state]\nbackend = \"aerospike\"\n[state.aerospike]\nhosts = [\"10.0.0.1:3000\"]\nttl_s = 60\n{CLIENT}"
        ))
        .unwrap();
        assert_eq!(c.state.backend, StateBackend::Aerospike);
        assert_eq!((c.state.aerospike.ttl_s, c.state.aerospike.set.as_str()), (60, "smsgate"));
        let key = |extra: &str| parse_config(&format!("[state]\n{extra}{CLIENT}")).unwrap_err().key;
        assert_eq!(key("backend = \"aerospike\"\n[state.aerospike]\nhosts = [\"nohost\"]\n"), "state.aerospike.hosts");
        assert_eq!(key("backend = \"aerospike\"\n[state.aerospike]\ntimeout_ms = 0\n"), "state.aerospike.timeout_ms");
        assert_eq!(key("backend = \"aerospike\"\n[state.aerospike]\nhostz = []\n"), "state.aerospike.hostz");
        assert_eq!(key("backend = \"redis\"\n"), "state.backend");
        // Not checked while the embedded store is in use.
        assert!(parse_config(&format!("[state.aerospike]\nhosts = []\n{CLIENT}")).is_ok());
    }

    #[test]
    fn webhook_settings_are_validated() {
        let hooked =
            |extra: &str| parse_config(&format!("[webhooks]\nallowed_networks = [\"127.0.0.1\"]\n{CLIENT}{extra}"));
        let c = hooked("webhook_url = \"http://127.0.0.1:9000/h\"\nwebhook_secret = \"0123456789abcdef\"\n").unwrap();
        assert_eq!(c.clients[0].webhook_events, [WebhookEvent::Final]);
        assert_eq!(c.webhooks.max_age_s, 86_400);
        let key = |extra: &str| hooked(extra).unwrap_err().key;
        assert_eq!(key("webhook_url = \"http://127.0.0.1:9000/h\"\n"), "clients[0].webhook_secret");
        assert_eq!(
            key("webhook_url = \"http://10.0.0.1/h\"\nwebhook_secret = \"0123456789abcdef\"\n"),
            "clients[0].webhook_url"
        );
        assert!(hooked("webhook_url = \"https://example.com/h\"\nwebhook_secret = \"0123456789abcdef\"\n").is_ok());
        assert_eq!(key("webhook_secret = \"short\"\n"), "clients[0].webhook_secret");
        assert_eq!(key("webhook_events = []\n"), "clients[0].webhook_events");
        assert_eq!(key("webhook_events = [\"delivered\"]\n"), "clients.webhook_events");
        let plain = |extra: &str| parse_config(&format!("{extra}{CLIENT}")).unwrap_err().key;
        assert_eq!(plain("[webhooks]\nretry_initial_ms = 2000\nretry_max_ms = 1000\n"), "webhooks.retry_max_ms");
        assert_eq!(plain("[webhooks]\nbatch = 0\n"), "webhooks.batch");
        assert_eq!(
            plain("[webhooks]\nallowed_networks = [\"10.0.0.0/40\"]\n"),
            "webhooks.allowed_hosts / allowed_networks"
        );
        assert_eq!(plain("[webhooks]\nca_file = \"/nonexistent/ca.pem\"\n"), "webhooks.ca_file");
    }

    #[test]
    fn mo_routes_are_validated_against_themselves_and_the_clients() {
        let f = Path::new("smpp_rules.toml");
        let key = |text: &str| {
            let r: Rules = parse(f, text).unwrap();
            validate_rules(f, &r).err().map(|e| e.key)
        };
        assert_eq!(key("[[mo_routes]]\nto = \"+12345\"\nkeyword = \"Stop\"\nclient = \"a\"\n"), None);
        assert_eq!(key("[[mo_routes]]\nto = \"12a45\"\nclient = \"a\"\n").as_deref(), Some("mo_routes[0].to"));
        assert_eq!(
            key("[[mo_routes]]\nto = \"1\"\nkeyword = \"two words\"\nclient = \"a\"\n").as_deref(),
            Some("mo_routes[0].keyword")
        );
        let twice = "[[mo_routes]]\nto = \"1\"\nkeyword = \"A\"\nclient = \"a\"\n[[mo_routes]]\nto = \"+1\"\nkeyword = \"a\"\nclient = \"b\"\n";
        assert_eq!(key(twice).as_deref(), Some("mo_routes[1]"));
        let c = parse_config(&format!("{CLIENT}mo_url = \"http://mo.example.com/mo\"\n")).unwrap();
        let routes = |client: &str| -> Rules {
            parse(f, &format!("[[mo_routes]]\nto = \"1\"\nclient = \"{client}\"\n")).unwrap()
        };
        assert!(check_mo_clients(f, &routes(c.clients[0].name.as_str()), &c.clients).is_ok());
        assert_eq!(check_mo_clients(f, &routes("nobody"), &c.clients).unwrap_err().key, "mo_routes[0].client");
        let without_url = parse_config(CLIENT).unwrap();
        let e = check_mo_clients(f, &routes(without_url.clients[0].name.as_str()), &without_url.clients).unwrap_err();
        assert!(e.reason.contains("no mo_url"), "{e}");
        assert_eq!(parse_config(&format!("{CLIENT}mo_url = \"ftp://x/\"\n")).unwrap_err().key, "clients[0].mo_url");
        assert_eq!(
            parse_config(&format!("[inbound]\nreassembly_timeout_ms = 0\n{CLIENT}")).unwrap_err().key,
            "inbound.reassembly_timeout_ms"
        );
    }

    #[test]
    fn rules_validate_links() {
        let f = Path::new("smpp_rules.toml");
        let ok =
            "[links.100]\nhost = \"127.0.0.1\"\nport = 2775\nsystem_id = \"gw\"\npassword = \"pw\"\nesme_rate = 100\n";
        let r: Rules = parse(f, ok).unwrap();
        validate_rules(f, &r).unwrap();
        assert_eq!(r.links["100"].window, 64);
        let bad = ok.replace("esme_rate = 100", "esme_rate = 0");
        let r: Rules = parse(f, &bad).unwrap();
        assert_eq!(validate_rules(f, &r).unwrap_err().key, "links.100.esme_rate");
        let typo = format!("{ok}sesions = 2\n");
        assert_eq!(parse::<Rules>(f, &typo).unwrap_err().key, "links.100.sesions");
    }
}
