//! loadgen: the HTTP load generator of smsgate's performance tests.
//!
//! Closed loop (every worker sends its next request when the previous answer arrives: the
//! maximum throughput) or open loop (requests scheduled at a constant total rate, latency
//! corrected for coordinated omission). Workers are HTTP/1.1 keep-alive connections or
//! HTTP/2 streams (h2c, prior knowledge) over a few connections. gRPC is pending issue 6.
//!
//! Run `loadgen --help` for the options.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use perf::http1;
use perf::report::{self, Series};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

const USAGE: &str = "\
loadgen: HTTP load generator for smsgate (POST /api/v1/messages)

USAGE: loadgen [OPTIONS]
       loadgen plot --out FILE.svg [--title TEXT] LABEL=FILE.hgrm...

OPTIONS:
  --target HOST:PORT     server address [default: 127.0.0.1:8080]
  --path PATH            request path [default: /api/v1/messages]
  --mode http1|h2        HTTP/1.1 keep-alive, or HTTP/2 cleartext with prior knowledge
                         [default: http1]; gRPC is pending issue 6
  --connections C        TCP connections [default: 64 for http1, 4 for h2]
  --streams S            h2: concurrent streams per connection [default: 16]
  --rate R               total requests/s, open loop; 0 = closed loop [default: 0]
  --duration SECS        measured time [default: 10]
  --warmup SECS          time before the measurement, not recorded [default: 1]
  --requests N           stop after N requests instead (no warm-up; --duration is a cap)
  --threads T            runtime threads; 1 = current-thread runtime [default: 1]
  --key KEY              API key: Authorization: Bearer KEY [default: demo-key-0123456789abcdef]
  --link NAME            `link` of each message [default: 100]
  --text TEXT            `text` of each message [default: smsgate load test]
  --server-pid PID       report this process's CPU time per answered request
  --label TEXT           name of the run in reports [default: mode and rate]
  --out PREFIX           write PREFIX.txt (this report), PREFIX.hgrm, PREFIX.svg and
                         PREFIX.summary (one line of key=value for scripts)
  -h, --help             print this help

Every request has another `to` (+4915 and 9 digits). Latency is recorded for 2xx answers
only; other statuses and connection errors are counted. Open loop: worker i of W sends its
k-th request at start + (i + k W) / R. When the worker is still waiting for an earlier
answer at that time, the latency counts from that intended time (coordinated-omission
correction: the server's delay is charged); when it was idle, from the actual send, so the
client's timer granularity (1 ms) is not charged to the server.
";

/// Longest wait for one answer before it counts as an error, so a stuck server ends the run.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Histogram range: 1 µs to 60 s with 3 significant digits.
const HIST_MAX_US: u64 = 60_000_000;

// === config ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Http1,
    H2,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Http1 => "http1",
            Mode::H2 => "h2",
        }
    }
}

struct Config {
    target: String,
    path: String,
    mode: Mode,
    connections: usize,
    streams: usize,
    /// Requests/s, 0 = closed loop.
    rate: f64,
    duration: Duration,
    warmup: Duration,
    requests: Option<u64>,
    threads: usize,
    key: String,
    link: String,
    text: String,
    server_pid: Option<u32>,
    label: Option<String>,
    out: Option<PathBuf>,
}

const FLAGS: &[&str] = &[
    "--target",
    "--path",
    "--mode",
    "--connections",
    "--streams",
    "--rate",
    "--duration",
    "--warmup",
    "--requests",
    "--threads",
    "--key",
    "--link",
    "--text",
    "--server-pid",
    "--label",
    "--out",
];

impl Config {
    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
        let mut c = Config {
            target: "127.0.0.1:8080".into(),
            path: "/api/v1/messages".into(),
            mode: Mode::Http1,
            connections: 0,
            streams: 16,
            rate: 0.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            requests: None,
            threads: 1,
            key: "demo-key-0123456789abcdef".into(),
            link: "100".into(),
            text: "smsgate load test".into(),
            server_pid: None,
            label: None,
            out: None,
        };
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                return Ok(None);
            }
            if !FLAGS.contains(&flag.as_str()) {
                return Err(format!("unknown option {flag}"));
            }
            let v = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let num = |v: &str| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("{flag}: not a non-negative number: {v}"))
            };
            match flag.as_str() {
                "--target" => c.target = v,
                "--path" => c.path = v,
                "--mode" => {
                    c.mode = match v.as_str() {
                        "http1" => Mode::Http1,
                        "h2" => Mode::H2,
                        "grpc" => return Err("--mode grpc is pending issue 6".into()),
                        _ => return Err(format!("--mode: http1 or h2, not {v}")),
                    }
                }
                "--connections" => c.connections = num(&v)? as usize,
                "--streams" => c.streams = num(&v)? as usize,
                "--rate" => c.rate = num(&v)?,
                "--duration" => c.duration = Duration::from_secs_f64(num(&v)?),
                "--warmup" => c.warmup = Duration::from_secs_f64(num(&v)?),
                "--requests" => c.requests = Some(num(&v)? as u64),
                "--threads" => c.threads = num(&v)? as usize,
                "--key" => c.key = v,
                "--link" => c.link = v,
                "--text" => c.text = v,
                "--server-pid" => c.server_pid = Some(num(&v)? as u32),
                "--label" => c.label = Some(v),
                "--out" => c.out = Some(PathBuf::from(v)),
                _ => unreachable!("every flag of FLAGS is matched"),
            }
        }
        if c.connections == 0 {
            c.connections = match c.mode {
                Mode::Http1 => 64,
                Mode::H2 => 4,
            };
        }
        if c.streams == 0 || c.threads == 0 {
            return Err("--streams and --threads must be at least 1".into());
        }
        if c.requests.is_some() {
            c.warmup = Duration::ZERO;
            if c.duration == Duration::from_secs(10) {
                c.duration = Duration::from_secs(3600);
            }
        }
        Ok(Some(c))
    }

    fn workers(&self) -> usize {
        match self.mode {
            Mode::Http1 => self.connections,
            Mode::H2 => self.connections * self.streams,
        }
    }

    fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| {
            if self.rate > 0.0 {
                format!("{} {:.0} req/s", self.mode.name(), self.rate)
            } else {
                format!("{} closed loop", self.mode.name())
            }
        })
    }
}

// === requests ===

/// The JSON body with a `to` whose last [`DIGITS`] digits are rewritten for every request.
#[derive(Clone)]
struct Template {
    /// The whole HTTP/1.1 request (http1) or the body alone (h2).
    bytes: Vec<u8>,
    /// Where the digits of `to` are in `bytes`.
    digits_at: usize,
}

const DIGITS: usize = 9;

impl Template {
    fn new(cfg: &Config, with_head: bool) -> Template {
        let body = format!(
            r#"{{"to":"+4915{}","from":"ACME","text":{},"link":{}}}"#,
            "0".repeat(DIGITS),
            json_string(&cfg.text),
            json_string(&cfg.link)
        );
        let head = if with_head {
            format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                cfg.path,
                cfg.target,
                cfg.key,
                body.len()
            )
        } else {
            String::new()
        };
        let digits_at = head.len() + body.find("+4915").unwrap_or(0) + 5;
        Template { bytes: format!("{head}{body}").into_bytes(), digits_at }
    }

    fn fill(&mut self, mut n: u64) -> &[u8] {
        for b in self.bytes[self.digits_at..self.digits_at + DIGITS].iter_mut().rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
        &self.bytes
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One request/answer of a worker; returns the HTTP status.
trait Exchange {
    fn exchange(&mut self, n: u64) -> impl Future<Output = io::Result<u16>> + Send;
}

/// An HTTP/1.1 worker: one keep-alive connection, reopened after an error or a close.
struct H1Worker {
    target: String,
    conn: Option<http1::Conn>,
    template: Template,
}

impl Exchange for H1Worker {
    async fn exchange(&mut self, n: u64) -> io::Result<u16> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(http1::Conn::connect(&self.target).await?),
        };
        match conn.exchange(self.template.fill(n)).await {
            Ok(head) => {
                if head.close {
                    self.conn = None;
                }
                Ok(head.status)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// An HTTP/2 worker: one stream at a time on a shared connection.
struct H2Worker {
    sender: SendRequest<Full<Bytes>>,
    uri: hyper::Uri,
    auth: HeaderValue,
    template: Template,
}

impl Exchange for H2Worker {
    async fn exchange(&mut self, n: u64) -> io::Result<u16> {
        let body = Bytes::copy_from_slice(self.template.fill(n));
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(body))
            .map_err(io::Error::other)?;
        self.sender.ready().await.map_err(io::Error::other)?;
        let resp = self.sender.send_request(req).await.map_err(io::Error::other)?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.map_err(io::Error::other)?;
        Ok(status)
    }
}

async fn h2_connect(target: &str) -> io::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("loadgen: h2 connection ended: {e}");
        }
    });
    Ok(sender)
}

// === the run ===

/// When and how fast every worker sends.
struct Plan {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    /// Open loop: time between two requests of one worker.
    interval: Option<Duration>,
    workers: usize,
    /// `--requests`: tickets left; a worker stops when it takes the last.
    budget: Option<AtomicI64>,
}

/// What one worker saw.
struct Tally {
    hist: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<String>,
    /// Requests whose worker was still busy at their intended send time (open loop).
    late: u64,
    sent: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static bounds are valid"),
            statuses: BTreeMap::new(),
            errors: 0,
            first_error: None,
            late: 0,
            sent: 0,
        }
    }

    fn merge(&mut self, o: Tally) {
        // Both histograms have the same bounds, so `add` cannot fail.
        let _ = self.hist.add(&o.hist);
        for (s, n) in o.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.errors += o.errors;
        self.first_error = self.first_error.take().or(o.first_error);
        self.late += o.late;
        self.sent += o.sent;
    }
}

async fn drive(plan: Arc<Plan>, index: usize, mut w: impl Exchange) -> Tally {
    let mut t = Tally::new();
    let offset = plan.interval.map(|iv| iv.mul_f64(index as f64 / plan.workers as f64));
    let mut k: u64 = 0;
    loop {
        let ready = Instant::now();
        let intended = match (plan.interval, offset) {
            (Some(iv), Some(off)) => plan.start + off + iv.mul_f64(k as f64),
            _ => ready,
        };
        if intended >= plan.end {
            break;
        }
        if let Some(b) = &plan.budget {
            if b.fetch_sub(1, Relaxed) <= 0 {
                break;
            }
        }
        let clock_from = if intended > ready {
            tokio::time::sleep_until(intended).await;
            Instant::now()
        } else {
            if plan.interval.is_some() {
                t.late += 1;
            }
            intended
        };
        let n = k * plan.workers as u64 + index as u64;
        k += 1;
        t.sent += 1;
        let result = tokio::time::timeout(ANSWER_TIMEOUT, w.exchange(n)).await;
        let done = Instant::now();
        if intended < plan.measure_from {
            continue;
        }
        match result {
            Ok(Ok(status)) => {
                *t.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    let us = done.duration_since(clock_from).as_micros() as u64;
                    t.hist.saturating_record(us.max(1));
                }
            }
            Ok(Err(e)) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| e.to_string());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| format!("no answer within {ANSWER_TIMEOUT:?}"));
            }
        }
    }
    t
}

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

struct Outcome {
    tally: Tally,
    measured: Duration,
    server_cpu: Option<f64>,
    own_cpu: Option<f64>,
}

async fn run(cfg: &Config) -> io::Result<Outcome> {
    let workers = cfg.workers();
    let h1_template = Template::new(cfg, true);
    let h2_template = Template::new(cfg, false);
    // Connect everything first, so the measurement holds no connection set-up.
    let mut h1 = Vec::new();
    let mut h2 = Vec::new();
    match cfg.mode {
        Mode::Http1 => {
            for _ in 0..workers {
                h1.push(H1Worker {
                    target: cfg.target.clone(),
                    conn: Some(http1::Conn::connect(&cfg.target).await?),
                    template: h1_template.clone(),
                });
            }
        }
        Mode::H2 => {
            let uri: hyper::Uri = format!("http://{}{}", cfg.target, cfg.path).parse().map_err(io::Error::other)?;
            let auth = HeaderValue::from_str(&format!("Bearer {}", cfg.key)).map_err(io::Error::other)?;
            for _ in 0..cfg.connections {
                let sender = h2_connect(&cfg.target).await?;
                for _ in 0..cfg.streams {
                    h2.push(H2Worker {
                        sender: sender.clone(),
                        uri: uri.clone(),
                        auth: auth.clone(),
                        template: h2_template.clone(),
                    });
                }
            }
        }
    }
    let start = Instant::now() + Duration::from_millis(10);
    let plan = Arc::new(Plan {
        start,
        measure_from: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
        interval: (cfg.rate > 0.0).then(|| Duration::from_secs_f64(workers as f64 / cfg.rate)),
        workers,
        budget: cfg.requests.map(|n| AtomicI64::new(n as i64)),
    });
    let mut handles = Vec::with_capacity(workers);
    for (i, w) in h1.into_iter().enumerate() {
        handles.push(tokio::spawn(drive(plan.clone(), i, w)));
    }
    for (i, w) in h2.into_iter().enumerate() {
        handles.push(tokio::spawn(drive(plan.clone(), i, w)));
    }
    let server_pid = cfg.server_pid.map(|p| p.to_string());
    tokio::time::sleep_until(plan.measure_from).await;
    let t0 = Instant::now();
    let cpu0 = server_pid.as_deref().and_then(cpu_seconds);
    let own0 = cpu_seconds("self");
    let mut tally = Tally::new();
    for h in handles {
        tally.merge(h.await.map_err(io::Error::other)?);
    }
    // The measured window ends at the plan's end, or earlier when the budget ran out.
    let measured = Instant::now().min(plan.end).duration_since(t0);
    let cpu1 = server_pid.as_deref().and_then(cpu_seconds);
    let own1 = cpu_seconds("self");
    Ok(Outcome {
        tally,
        measured,
        server_cpu: cpu0.zip(cpu1).map(|(a, b)| b - a),
        own_cpu: own0.zip(own1).map(|(a, b)| b - a),
    })
}

// === reports ===

fn report(cfg: &Config, o: &Outcome) -> (String, String) {
    let t = &o.tally;
    let answered: u64 = t.statuses.values().sum();
    let ok = t.hist.len();
    let secs = o.measured.as_secs_f64().max(1e-9);
    let per_req_us = |cpu: Option<f64>| cpu.filter(|_| answered > 0).map(|c| c * 1e6 / answered as f64);
    let mut text = String::new();
    let loop_kind =
        if cfg.rate > 0.0 { format!("open loop at {:.0} req/s", cfg.rate) } else { "closed loop".to_owned() };
    let shape = match cfg.mode {
        Mode::Http1 => format!("{} connections", cfg.connections),
        Mode::H2 => format!("{} connections x {} streams", cfg.connections, cfg.streams),
    };
    let _ = writeln!(
        text,
        "{}: {loop_kind}, {shape}, {:.1} s measured after {:.1} s warm-up, target {}{}",
        cfg.mode.name(),
        secs,
        cfg.warmup.as_secs_f64(),
        cfg.target,
        cfg.path
    );
    let statuses: Vec<String> = t.statuses.iter().map(|(s, n)| format!("{s}={n}")).collect();
    let _ = writeln!(
        text,
        "  answers {answered} ({:.0}/s), 2xx {ok} ({:.0}/s); statuses: {}; errors {}{}",
        answered as f64 / secs,
        ok as f64 / secs,
        if statuses.is_empty() { "none".into() } else { statuses.join(" ") },
        t.errors,
        t.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );
    if cfg.rate > 0.0 {
        let _ = writeln!(
            text,
            "  {:.2} % of requests found their worker still busy at their send time",
            100.0 * t.late as f64 / t.sent.max(1) as f64
        );
    }
    let _ = writeln!(text, "  latency of 2xx answers:");
    text.push_str(&report::percentile_table(&t.hist));
    if let Some(us) = per_req_us(o.server_cpu) {
        let _ = writeln!(text, "  server CPU: {us:.1} µs per answered request");
    }
    if let Some(us) = per_req_us(o.own_cpu) {
        let _ = writeln!(text, "  loadgen CPU: {us:.1} µs per answered request");
    }
    let mut summary = format!(
        "label={} mode={} rate={:.0} secs={secs:.3} answered={answered} ok={ok} rps={:.0} non2xx={} errors={}",
        cfg.label().replace(' ', "_"),
        cfg.mode.name(),
        cfg.rate,
        ok as f64 / secs,
        answered - ok,
        t.errors
    );
    for (name, ms) in report::table_values(&t.hist) {
        let _ = write!(summary, " {}={ms:.3}", name.replace('.', ""));
    }
    let fmt_cpu = |c: Option<f64>| c.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        summary,
        " server_cpu_us={} loadgen_cpu_us={} late_pct={:.2}",
        fmt_cpu(per_req_us(o.server_cpu)),
        fmt_cpu(per_req_us(o.own_cpu)),
        100.0 * t.late as f64 / t.sent.max(1) as f64
    );
    (text, summary)
}

fn write_reports(cfg: &Config, o: &Outcome, text: &str, summary: &str) -> io::Result<()> {
    let Some(prefix) = &cfg.out else {
        return Ok(());
    };
    let with = |ext: &str| {
        let mut p = prefix.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    std::fs::write(with(".txt"), text)?;
    std::fs::write(with(".summary"), summary)?;
    std::fs::write(with(".hgrm"), report::hgrm(&o.tally.hist))?;
    let series = [Series { label: cfg.label(), points: report::points(&o.tally.hist) }];
    std::fs::write(with(".svg"), report::svg(&cfg.label(), &series))
}

/// `loadgen plot --out FILE [--title T] LABEL=FILE.hgrm...`
fn plot(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let mut out = None;
    let mut title = "latency by percentile".to_owned();
    let mut series = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next(),
            "--title" => title = args.next().ok_or("--title needs a value")?,
            spec => {
                let (label, path) =
                    spec.split_once('=').ok_or_else(|| format!("expected LABEL=FILE.hgrm, got {spec}"))?;
                let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
                let points = report::parse_hgrm(&text).map_err(|e| format!("{path}: {e}"))?;
                series.push(Series { label: label.to_owned(), points });
            }
        }
    }
    let out = out.ok_or("plot needs --out FILE.svg")?;
    std::fs::write(&out, report::svg(&title, &series)).map_err(|e| format!("{out}: {e}"))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("plot") {
        args.next();
        return match plot(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen plot: {e}");
                ExitCode::from(2)
            }
        };
    }
    let cfg = match Config::from_args(args) {
        Ok(Some(c)) => c,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = if cfg.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cfg.threads).enable_all().build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match runtime.block_on(run(&cfg)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {}: {e}", cfg.target);
            return ExitCode::FAILURE;
        }
    };
    let (text, summary) = report(&cfg, &outcome);
    print!("{text}");
    if let Err(e) = write_reports(&cfg, &outcome, &text, &summary) {
        eprintln!("loadgen: writing reports: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
