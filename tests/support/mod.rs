//! Test support: real processes on free loopback ports. The gateway and the SMSC simulator
//! run as the binaries users run; the client is ureq over real HTTP.
#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

pub const API_KEY: &str = "test-key-0123456789abcdef";
pub const OTHER_KEY: &str = "other-key-0123456789abcdef";

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_smsgate")).parent().expect("target dir").to_owned()
}

/// A running smsc-sim (from the `perf` package; `cargo test --workspace` builds it).
pub struct Sim {
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Sim {
    pub fn start(args: &[&str]) -> Sim {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Starts a sim on a given address (to bring an SMSC back on the port it had).
    pub fn start_on(listen: &str, args: &[&str]) -> Sim {
        let bin = bin_dir().join("smsc-sim");
        assert!(bin.exists(), "{} is missing: run `cargo test --workspace` (it builds perf's smsc-sim)", bin.display());
        let mut child = Command::new(bin)
            .args(["--listen", listen])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start smsc-sim");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("sim stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("sim banner");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected smsc-sim banner {line:?}"));
        Sim { port, child, stdin, stdout }
    }

    /// Sends a fault-control command (`drop`, `mute on`, `throttle on`, `refuse-binds on`,
    /// `malformed`, `garbage`, `slow 200000`, `stats`, ...) and waits for the sim's `ok` line.
    /// Returns every line the sim printed meanwhile (the counters for `stats`).
    pub fn control(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("sim stdin");
        writeln!(stdin, "{command}").expect("write sim command");
        stdin.flush().expect("flush sim command");
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("read sim answer");
            assert!(n > 0, "smsc-sim closed stdout before answering `{command}`: {seen}");
            if line.trim() == format!("ok {command}") {
                return seen;
            }
            seen.push_str(&line);
        }
    }

    /// Stops the sim with SIGTERM and returns its final counters line(s) from stderr.
    pub fn stop(mut self) -> String {
        signal(&self.child, "TERM");
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().expect("kill");
    assert!(status.success(), "kill -{sig} failed");
}

/// Link definitions for the rules file: (name, port).
#[derive(Default)]
pub struct GatewayConfig {
    pub links: Vec<(String, u16)>,
    pub response_timeout_ms: u64,
    pub extra_config: String,
    /// Extra lines for every `[links.NAME]` table (e.g. `long_messages = "payload"`).
    pub link_extra: String,
    /// Appended to the rules file: `[pools.X]`, `[[routes]]`.
    pub rules_extra: String,
    /// `(link, esme_rate, esme_rate_burst)` for links that need exact rates (rate limit
    /// tests); a link not listed gets `esme_rate = 100000`, `esme_rate_burst = 1000`.
    pub link_rates: Vec<(String, u32, u32)>,
    /// Extra lines for the `acme` client's `[[clients]]` table (e.g. `senders = ["ACME"]`);
    /// sub-tables such as `[clients.policy]` go last in it.
    pub client_extra: String,
    /// The `[state]` table, whole. Empty: [`state_section`].
    pub state: String,
}

impl GatewayConfig {
    pub fn one_link(sim_port: u16) -> Self {
        GatewayConfig {
            links: vec![("100".into(), sim_port)],
            response_timeout_ms: 5_000,
            extra_config: String::new(),
            link_extra: String::new(),
            rules_extra: String::new(),
            link_rates: Vec::new(),
            client_extra: String::new(),
            state: String::new(),
        }
    }
}

/// The gateway's `[state]` table: the embedded store in `dir/state`, or, when
/// `SMSGATE_TEST_AEROSPIKE=host:port` is set, that Aerospike server (namespace from
/// `SMSGATE_TEST_AEROSPIKE_NAMESPACE`, default `smsgate`) with a set of this gateway's own,
/// named after `dir` so that a restarted gateway finds its records.
pub fn state_section(dir: &Path) -> String {
    match std::env::var("SMSGATE_TEST_AEROSPIKE") {
        Ok(host) => aerospike_state(&host, dir),
        Err(_) => format!("[state]\npath = \"{}\"", dir.join("state").display()),
    }
}

/// `[state]` for the Aerospike server at `host`, with a set named after `dir`.
pub fn aerospike_state(host: &str, dir: &Path) -> String {
    let namespace = std::env::var("SMSGATE_TEST_AEROSPIKE_NAMESPACE").unwrap_or_else(|_| "smsgate".to_owned());
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("gw");
    let set: String = format!("gw{name}").chars().filter(char::is_ascii_alphanumeric).take(40).collect();
    format!("[state]\nbackend = \"aerospike\"\n[state.aerospike]\nhosts = [\"{host}\"]\nnamespace = \"{namespace}\"\nset = \"{set}\"")
}

/// A running smsgate with its own config, rules and state directory.
pub struct Gateway {
    pub port: u16,
    pub dir: PathBuf,
    pub child: Child,
    log: PathBuf,
}

impl Gateway {
    pub fn write_config(dir: &Path, port: u16, cfg: &GatewayConfig) -> PathBuf {
        let mut rules = String::new();
        for (name, p) in &cfg.links {
            let (rate, burst) =
                cfg.link_rates.iter().find(|(l, _, _)| l == name).map_or((100_000, 1_000), |&(_, r, b)| (r, b));
            rules.push_str(&format!(
                "[links.{name}]\nhost = \"127.0.0.1\"\nport = {p}\nsystem_id = \"smsgate\"\npassword = \"secret\"\nesme_rate = {rate}\nesme_rate_burst = {burst}\nsessions = 2\nwindow = 256\n{}\n\n",
                cfg.link_extra
            ));
        }
        rules.push_str(&cfg.rules_extra);
        std::fs::write(dir.join("rules.toml"), rules).expect("write rules");
        let config = format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\nmax_body_bytes = 4096\n\n\
             [smpp]\nrules_file = \"{rules}\"\nresponse_timeout_ms = {rt}\nreconnect_delay_ms = 100\nenquire_link_interval_ms = 1000\n\n\
             {state}\n\n\
             [log]\nlevel = \"info\"\n\n\
             {extra}\n\
             [[clients]]\nname = \"acme\"\napi_key = \"{API_KEY}\"\n{client_extra}\n\n\
             [[clients]]\nname = \"other\"\napi_key = \"{OTHER_KEY}\"\n",
            rules = dir.join("rules.toml").display(),
            rt = cfg.response_timeout_ms,
            state = if cfg.state.is_empty() { state_section(dir) } else { cfg.state.clone() },
            extra = cfg.extra_config,
            client_extra = cfg.client_extra,
        );
        let path = dir.join("smsgate.toml");
        std::fs::write(&path, config).expect("write config");
        path
    }

    /// Starts smsgate and waits until /healthz reports every session of every link bound.
    pub fn start(dir: &Path, cfg: &GatewayConfig) -> Gateway {
        let port = free_port();
        Self::start_on(dir, port, cfg, true)
    }

    pub fn start_on(dir: &Path, port: u16, cfg: &GatewayConfig, wait_bound: bool) -> Gateway {
        let config = Self::write_config(dir, port, cfg);
        let log = dir.join(format!("smsgate-{}.log", Instant::now().elapsed().as_nanos() ^ u128::from(port)));
        let logfile = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_smsgate"))
            .args(["--config", config.to_str().expect("utf-8 path")])
            .stdout(Stdio::null())
            .stderr(logfile)
            .spawn()
            .expect("start smsgate");
        let gw = Gateway { port, dir: dir.to_owned(), child, log };
        gw.wait_ready(wait_bound);
        gw
    }

    fn wait_ready(&self, wait_bound: bool) {
        // Generous: on a loaded 2-core box a first bind can need a reconnect or two.
        let deadline = Instant::now() + Duration::from_secs(60);
        let agent = agent();
        loop {
            if let Ok(mut r) = agent.get(&self.url("/healthz")).call() {
                if r.status() == 200 {
                    let body: serde_json::Value = r.body_mut().read_json().expect("healthz json");
                    let all_bound = body["links"]
                        .as_object()
                        .map(|links| links.values().all(|l| l["sessions_bound"] == l["sessions"]))
                        .unwrap_or(false);
                    if !wait_bound || all_bound {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "smsgate not ready in 60 s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "smsgate did not stop in 20 s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP agent that returns 4xx/5xx as responses, not errors; keep-alive.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// The value of a series in the gateway's `/metrics` (its name with any labels, as written
/// there), if it is there.
pub fn metric(gw: &Gateway, name: &str) -> Option<f64> {
    let mut r = agent().get(&gw.url("/metrics")).call().ok()?;
    let text = r.body_mut().read_to_string().ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// POST /api/v1/messages; returns (status, JSON body).
pub fn submit(agent: &ureq::Agent, gw: &Gateway, key: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let mut r = agent
        .post(&gw.url("/api/v1/messages"))
        .header("Authorization", &format!("Bearer {key}"))
        .send_json(body)
        .expect("submit request");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(serde_json::Value::Null))
}

pub fn get_message(agent: &ureq::Agent, gw: &Gateway, key: &str, id: &str) -> (u16, serde_json::Value) {
    get_json(agent, gw, key, &format!("/api/v1/messages/{id}"))
}

pub fn get_inbound(agent: &ureq::Agent, gw: &Gateway, key: &str, id: &str) -> (u16, serde_json::Value) {
    get_json(agent, gw, key, &format!("/api/v1/inbound/{id}"))
}

/// GET `path` as the client with `key`: status and JSON body (null if none).
fn get_json(agent: &ureq::Agent, gw: &Gateway, key: &str, path: &str) -> (u16, serde_json::Value) {
    let mut r = agent.get(&gw.url(path)).header("Authorization", &format!("Bearer {key}")).call().expect("get request");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(serde_json::Value::Null))
}

pub fn message(to: &str, link: &str) -> serde_json::Value {
    serde_json::json!({"to": to, "from": "ACME", "text": "Hello from smsgate", "link": link})
}

/// The `state` /healthz reports for `link`: `bound`, `degraded` or `down`.
pub fn link_state(agent: &ureq::Agent, gw: &Gateway, link: &str) -> String {
    let mut r = agent.get(&gw.url("/healthz")).call().expect("healthz");
    let v: serde_json::Value = r.body_mut().read_json().expect("healthz json");
    v["links"][link]["state"].as_str().unwrap_or("").to_owned()
}

/// Polls `check` every 20 ms until it holds or `secs` pass; panics with `what` then.
pub fn wait_until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
