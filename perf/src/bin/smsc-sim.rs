//! smsc-sim: an SMSC simulator for smsgate's tests and benchmarks.
//!
//! It must never be the bottleneck, so each connection is one task with one input buffer
//! (every complete PDU in it is decoded per read) and one output buffer (every response and
//! receipt produced meanwhile goes out in one write). Delayed responses and receipts wait in
//! a FIFO per connection, served by one sleep: all entries of a FIFO share one delay, so
//! the order of arrival is the order of expiry. No task or timer per message.
//!
//! Run `smsc-sim --help` for the options.

use std::collections::VecDeque;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf as _, BytesMut};
use smsgate::smpp::pdu::{self, tag, Bind, BindResp, Body, CommandStatus, Pdu, Sm, SmResp, Tlv};
use smsgate::smpp::receipt::FinalState;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

const USAGE: &str = "\
smsc-sim: an SMPP 3.4 SMSC simulator

USAGE: smsc-sim [OPTIONS]

OPTIONS:
  --listen ADDR            address to listen on [default: 127.0.0.1:2775]; port 0 picks one.
                           Prints `smsc-sim listening on IP:PORT` on stdout once bound.
  --system-id ID           accept binds only with this system_id (else ESME_RINVSYSID)
  --password PW            accept binds only with this password (else ESME_RINVPASWD)
  --resp-delay-us N        delay before each submit_sm_resp, microseconds [default: 0]
  --dlr-delay-ms N         delay before each delivery receipt, milliseconds [default: 100]
  --dlr-mix STATE=W,...    receipt states by weight, states among delivered, undeliverable,
                           expired, deleted, rejected, accepted, unknown, enroute
                           [default: delivered=100]
  --reject DIGITS=STATUS   submit_sm to a destination_addr starting with DIGITS gets this
                           command_status (hex with 0x, or decimal); repeatable
  --blackhole DIGITS       never answer submit_sm to a destination_addr starting with DIGITS;
                           repeatable
  --stats-interval-s N     print counters to stderr every N seconds, 0 = never [default: 0];
                           they are always printed on SIGINT/SIGTERM
  --threads N              runtime worker threads, 1 = current-thread runtime [default: 1]
  --resp-id-format FMT     message_id in submit_sm_resp: hex (lower case, no leading zeros)
                           or dec [default: hex]
  --dlr-id-format FMT      message_id in receipts (text and receipted_message_id): hex
                           (upper case, zero-padded to 10 digits) or dec [default: the
                           submit_sm_resp's id as it was sent]; with either id option, ids
                           stay below 2^36 so that 10 hex digits hold them
  --control MODE           stdin: read fault commands from stdin; off: do not read stdin
                           [default: stdin]. Run it in an interactive shell's background
                           with `< /dev/null` or `--control off`.
  -h, --help               print this help

Receipts go, on the connection that submitted, for each accepted submit_sm with
registered_delivery & 1, unless it bound as a transmitter.

FAULT CONTROL (stdin, one command a line; each is answered `ok <command>` on stdout once
applied, or `error <reason>`; end of input stops reading, not the simulator):
  drop                 close every current connection now; new ones are still accepted
  mute on|off          leave submit_sm and enquire_link unanswered (such submits are lost)
  throttle on|off      answer every submit_sm with ESME_RTHROTTLED (0x58)
  throttle-every N     answer every Nth submit_sm with ESME_RTHROTTLED; 0 = off
  qfull on|off         answer every submit_sm with ESME_RMSGQFUL (0x14)
  refuse-binds on|off  answer binds with ESME_RBINDFAIL (0x0D), then close the connection
  slow US              delay each submit_sm_resp by US microseconds (as --resp-delay-us)
  malformed            send to every bound connection a deliver_sm whose body is cut short
                       (command_length matches), then a PDU with an unknown command_id
  garbage              send to every bound connection a header with command_length
                       0xFFFFFFFF: the stream loses its framing
  stats                print the counters line on stdout
  mo KEY=VALUE ... text=TEXT
                       send an inbound message (MO) as deliver_sm on one bound receiver or
                       transceiver connection; `text=` comes last and takes the rest of the
                       line. Keys: to= (required), from= [default 4915112345678],
                       coding=gsm7|ucs2|latin1 [default gsm7], split=none|udh8|udh16|sar|payload
                       [default none], part_octets=N text octets per part [default 153, 134
                       for ucs2], ref=N concatenation reference [default 1], order=in|reverse
                       [default in], skip=N,N part numbers never sent (their partners then
                       wait in vain)
`ok` for drop, malformed, garbage and mo means every connection has closed or written it.
Counters: throttled = submit_sm refused by throttle, throttle-every or qfull; muted =
submit_sm left unanswered by mute; unbind and generic_nack = those PDUs received;
deliver_sm_resp_error = deliver_sm_resp received with a command_status other than 0.
";

/// Output bytes above which a connection stops reading until its peer reads. Why: a peer
/// that submits without reading responses must not grow our memory without bound; 4 MiB is
/// about 100k submit_sm_resp.
const OUT_HIGH_WATER: usize = 4 * 1024 * 1024;

/// Free input space kept before each read, in octets: room for a burst of ~500 submit_sm.
const READ_CHUNK: usize = 64 * 1024;

/// command_id of the `malformed` command's second PDU: none in SMPP 3.4 or 5.0.
const UNKNOWN_COMMAND_ID: u32 = 0x0000_0077;

/// How long a `drop`, `malformed` or `garbage` command waits for every connection to act.
const CONTROL_PATIENCE: Duration = Duration::from_secs(5);

// === config ===

/// Options that take a value, as listed in [`USAGE`].
const FLAGS: &[&str] = &[
    "--listen",
    "--system-id",
    "--password",
    "--resp-delay-us",
    "--dlr-delay-ms",
    "--dlr-mix",
    "--reject",
    "--blackhole",
    "--stats-interval-s",
    "--threads",
    "--resp-id-format",
    "--dlr-id-format",
    "--control",
];

struct Config {
    listen: String,
    system_id: Option<String>,
    password: Option<String>,
    resp_delay: Duration,
    dlr_delay: Duration,
    /// Receipt states with their weights, all weights > 0.
    dlr_mix: Vec<(FinalState, u32)>,
    /// (destination prefix, command_status), first match wins.
    rejects: Vec<(String, CommandStatus)>,
    blackholes: Vec<String>,
    stats_interval: Option<Duration>,
    threads: usize,
    resp_id_format: IdFormat,
    /// `None`: receipts carry the submit_sm_resp's id as it was sent.
    dlr_id_format: Option<IdFormat>,
    /// Read fault commands from stdin.
    control: bool,
}

/// How a message id is written; [`Sim::next_message_id`] picks the number.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IdFormat {
    /// Lower case, no leading zeros: `1f00000a2b`.
    Hex,
    /// `133143988779`.
    Dec,
    /// Upper case, zero-padded to 10 digits: `0F00000A2B`.
    Hex10,
}

impl IdFormat {
    fn write(self, id: u64) -> String {
        match self {
            IdFormat::Hex => format!("{id:x}"),
            IdFormat::Dec => id.to_string(),
            IdFormat::Hex10 => format!("{id:010X}"),
        }
    }
}

impl Config {
    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
        let mut config = Config {
            listen: "127.0.0.1:2775".into(),
            system_id: None,
            password: None,
            resp_delay: Duration::ZERO,
            dlr_delay: Duration::from_millis(100),
            dlr_mix: vec![(FinalState::Delivered, 1)],
            rejects: Vec::new(),
            blackholes: Vec::new(),
            stats_interval: None,
            threads: 1,
            resp_id_format: IdFormat::Hex,
            dlr_id_format: None,
            control: true,
        };
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                return Ok(None);
            }
            if !FLAGS.contains(&flag.as_str()) {
                return Err(format!("unknown option {flag}"));
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: not a number: {v}"));
            match flag.as_str() {
                "--listen" => config.listen = value,
                "--system-id" => config.system_id = Some(value),
                "--password" => config.password = Some(value),
                "--resp-delay-us" => config.resp_delay = Duration::from_micros(number(&value)?),
                "--dlr-delay-ms" => config.dlr_delay = Duration::from_millis(number(&value)?),
                "--dlr-mix" => config.dlr_mix = parse_mix(&value)?,
                "--reject" => {
                    let (digits, status) =
                        value.split_once('=').ok_or_else(|| format!("--reject wants DIGITS=STATUS, got {value}"))?;
                    config.rejects.push((digits.to_string(), parse_status(status)?));
                }
                "--blackhole" => config.blackholes.push(value),
                "--stats-interval-s" => {
                    let secs = number(&value)?;
                    config.stats_interval = (secs > 0).then(|| Duration::from_secs(secs));
                }
                "--threads" => config.threads = number(&value)?.max(1) as usize,
                "--resp-id-format" => {
                    config.resp_id_format = match value.as_str() {
                        "hex" => IdFormat::Hex,
                        "dec" => IdFormat::Dec,
                        _ => return Err(format!("--resp-id-format wants hex or dec, got {value}")),
                    }
                }
                "--dlr-id-format" => {
                    config.dlr_id_format = match value.as_str() {
                        "hex" => Some(IdFormat::Hex10),
                        "dec" => Some(IdFormat::Dec),
                        _ => return Err(format!("--dlr-id-format wants hex or dec, got {value}")),
                    }
                }
                "--control" => {
                    config.control = match value.as_str() {
                        "stdin" => true,
                        "off" => false,
                        _ => return Err(format!("--control wants stdin or off, got {value}")),
                    }
                }
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok(Some(config))
    }

    /// The command_status for a submit to `destination`; `None`: never answer it.
    fn submit_outcome(&self, destination: &str) -> Option<CommandStatus> {
        if self.blackholes.iter().any(|p| destination.starts_with(p.as_str())) {
            return None;
        }
        let reject = self.rejects.iter().find(|(p, _)| destination.starts_with(p.as_str()));
        Some(reject.map_or(CommandStatus::ROK, |&(_, status)| status))
    }
}

fn parse_mix(value: &str) -> Result<Vec<(FinalState, u32)>, String> {
    let mut mix = Vec::new();
    for part in value.split(',').filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').ok_or_else(|| format!("--dlr-mix wants STATE=WEIGHT, got {part}"))?;
        let state = FinalState::from_stat(name).ok_or_else(|| format!("unknown state {name}"))?;
        let weight: u32 = weight.parse().map_err(|_| format!("bad weight in {part}"))?;
        if weight > 0 {
            mix.push((state, weight));
        }
    }
    if mix.is_empty() {
        return Err("--dlr-mix needs at least one weight above 0".into());
    }
    Ok(mix)
}

fn parse_status(s: &str) -> Result<CommandStatus, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map(CommandStatus).map_err(|_| format!("bad command_status {s}"))
}

// === shared state ===

/// Counters for the whole process, printed as one line.
struct Stats {
    connections: AtomicU64,
    binds: AtomicU64,
    submit_sm: AtomicU64,
    /// submit_sm_resp sent, by command_status; index 256 holds every status above 0xFF.
    submit_sm_resp: [AtomicU64; 257],
    deliver_sm: AtomicU64,
    deliver_sm_resp: AtomicU64,
    /// deliver_sm_resp with a command_status other than ESME_ROK.
    deliver_sm_resp_error: AtomicU64,
    /// submit_sm refused by the `throttle`, `throttle-every` or `qfull` faults.
    throttled: AtomicU64,
    /// submit_sm left unanswered by the `mute` fault.
    muted: AtomicU64,
    unbind: AtomicU64,
    generic_nack: AtomicU64,
}

impl Stats {
    fn count_resp(&self, status: CommandStatus) {
        let index = usize::try_from(status.0).map_or(256, |s| s.min(256));
        self.submit_sm_resp[index].fetch_add(1, Relaxed);
    }

    fn line(&self) -> String {
        let mut resp_total = 0;
        let mut by_status = String::new();
        for (i, count) in self.submit_sm_resp.iter().enumerate() {
            let count = count.load(Relaxed);
            if count == 0 {
                continue;
            }
            resp_total += count;
            let sep = if by_status.is_empty() { "" } else { " " };
            by_status += &match i {
                256 => format!("{sep}other={count}"),
                _ => format!("{sep}{}={count}", CommandStatus(i as u32)),
            };
        }
        format!(
            "smsc-sim stats: connections={} binds={} submit_sm={} submit_sm_resp={} ({}) \
             deliver_sm={} deliver_sm_resp={} deliver_sm_resp_error={} throttled={} muted={} unbind={} \
             generic_nack={}",
            self.connections.load(Relaxed),
            self.binds.load(Relaxed),
            self.submit_sm.load(Relaxed),
            resp_total,
            by_status,
            self.deliver_sm.load(Relaxed),
            self.deliver_sm_resp.load(Relaxed),
            self.deliver_sm_resp_error.load(Relaxed),
            self.throttled.load(Relaxed),
            self.muted.load(Relaxed),
            self.unbind.load(Relaxed),
            self.generic_nack.load(Relaxed),
        )
    }
}

/// The switches set over stdin (see FAULT CONTROL in [`USAGE`]), read by every connection.
/// Atomics, not a lock: each submit_sm reads a few of them.
struct Faults {
    mute: AtomicBool,
    throttle: AtomicBool,
    /// Every Nth submit_sm is throttled; 0 = off.
    throttle_every: AtomicU64,
    /// submit_sm counted for `throttle_every` since it was last set.
    throttle_tick: AtomicU64,
    qfull: AtomicBool,
    refuse_binds: AtomicBool,
    /// Delay before each submit_sm_resp, microseconds; starts at `--resp-delay-us`.
    resp_delay_us: AtomicU64,
    /// `drop`, `malformed` and `garbage` for every connection open when they are sent.
    /// Capacity: commands come one at a time and wait for every connection's ack.
    broadcast: broadcast::Sender<Broadcast>,
}

impl Faults {
    fn new(resp_delay: Duration) -> Self {
        Faults {
            mute: AtomicBool::new(false),
            throttle: AtomicBool::new(false),
            throttle_every: AtomicU64::new(0),
            throttle_tick: AtomicU64::new(0),
            qfull: AtomicBool::new(false),
            refuse_binds: AtomicBool::new(false),
            resp_delay_us: AtomicU64::new(u64::try_from(resp_delay.as_micros()).unwrap_or(u64::MAX)),
            broadcast: broadcast::channel(16).0,
        }
    }

    fn resp_delay(&self) -> Duration {
        Duration::from_micros(self.resp_delay_us.load(Relaxed))
    }

    /// The status that a throttling fault imposes on the next submit_sm, if any.
    fn throttle_status(&self) -> Option<CommandStatus> {
        if self.throttle.load(Relaxed) {
            return Some(CommandStatus::RTHROTTLED);
        }
        let every = self.throttle_every.load(Relaxed);
        if every > 0 && (self.throttle_tick.fetch_add(1, Relaxed) + 1).is_multiple_of(every) {
            return Some(CommandStatus::RTHROTTLED);
        }
        self.qfull.load(Relaxed).then_some(CommandStatus::RMSGQFUL)
    }
}

/// What a connection does on a broadcast command.
#[derive(Clone, Debug)]
enum ConnFault {
    Drop,
    Malformed,
    Garbage,
    /// Send these deliver_sm (an MO's parts), on the first receiving connection only.
    Mo(Arc<MoJob>),
}

/// The deliver_sm of one `mo` command and whether a connection has taken them.
#[derive(Debug)]
struct MoJob {
    parts: Vec<Sm>,
    claimed: AtomicBool,
}

/// One broadcast command. Each connection drops its clone of `ack` once it has done the
/// command (closed, or written the octets), so the control reader knows when all are done.
#[derive(Clone)]
struct Broadcast {
    fault: ConnFault,
    ack: mpsc::Sender<()>,
}

struct Sim {
    config: Config,
    stats: Stats,
    faults: Faults,
    /// High bits of every message id, random per start so ids differ across restarts.
    id_prefix: u32,
    id_counter: AtomicU32,
}

impl Sim {
    /// A message id unique across connections and, with high probability, restarts, as
    /// `--resp-id-format` writes it. With an id format option it keeps 4 random bits above
    /// the 32-bit counter, so that 10 hex digits hold it; else 32.
    fn next_message_id(&self) -> (u64, String) {
        let n = u64::from(self.id_counter.fetch_add(1, Relaxed));
        let prefix = u64::from(self.id_prefix);
        let id = if self.config.dlr_id_format.is_some() || self.config.resp_id_format != IdFormat::Hex {
            ((prefix % 15) + 1) << 32 | n
        } else {
            prefix << 32 | n
        };
        (id, self.config.resp_id_format.write(id))
    }
}

// === connection ===

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    Transmitter,
    Receiver,
    Transceiver,
}

/// One SMPP connection's protocol state and buffers; [`serve`] moves the bytes.
struct Conn {
    sim: Arc<Sim>,
    bound: Option<Bound>,
    /// Encoded PDUs waiting for the socket; `written` octets of it are already sent.
    out: Vec<u8>,
    written: usize,
    /// submit_sm_resp held back by `--resp-delay-us`, oldest first.
    resp_queue: VecDeque<(Instant, Pdu)>,
    /// Receipts held back by `--dlr-delay-ms`, oldest first.
    dlr_queue: VecDeque<(Instant, Pdu)>,
    /// sequence_number of the next deliver_sm we send.
    next_sequence: u32,
    rng: XorShift,
    /// Set after unbind and after a refused bind: flush `out`, then close.
    closing: bool,
    /// Acks of broadcast commands whose octets are in `out`: dropped once it is written.
    acks: Vec<mpsc::Sender<()>>,
}

impl Conn {
    fn new(sim: Arc<Sim>) -> Self {
        Conn {
            sim,
            bound: None,
            out: Vec::with_capacity(READ_CHUNK),
            written: 0,
            resp_queue: VecDeque::new(),
            dlr_queue: VecDeque::new(),
            next_sequence: 1,
            rng: XorShift(rand::random::<u64>() | 1),
            closing: false,
            acks: Vec::new(),
        }
    }

    fn next_sequence(&mut self) -> u32 {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1).max(1);
        sequence
    }

    /// Writes the octets of a `malformed` or `garbage` command, on a bound connection only.
    fn inject(&mut self, fault: ConnFault, ack: mpsc::Sender<()>) {
        if self.bound.is_none() || self.closing {
            return;
        }
        let header = |out: &mut Vec<u8>, len: u32, command_id: u32, sequence: u32| {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&command_id.to_be_bytes());
            out.extend_from_slice(&0u32.to_be_bytes());
            out.extend_from_slice(&sequence.to_be_bytes());
        };
        match fault {
            ConnFault::Malformed => {
                // service_type, source_addr_ton, source_addr_npi, then a source_addr whose
                // NUL never comes: the frame is whole, its body is cut short.
                let body = b"\0\x01\x01491700";
                let sequence = self.next_sequence();
                let len = (pdu::HEADER_LEN + body.len()) as u32;
                header(&mut self.out, len, pdu::command_id::DELIVER_SM, sequence);
                self.out.extend_from_slice(body);
                let sequence = self.next_sequence();
                header(&mut self.out, pdu::HEADER_LEN as u32, UNKNOWN_COMMAND_ID, sequence);
            }
            ConnFault::Garbage => {
                let sequence = self.next_sequence();
                header(&mut self.out, u32::MAX, pdu::command_id::DELIVER_SM, sequence);
            }
            ConnFault::Mo(job) => {
                let receives = matches!(self.bound, Some(Bound::Receiver | Bound::Transceiver));
                if !receives || job.claimed.swap(true, Relaxed) {
                    return;
                }
                for sm in &job.parts {
                    let pdu = Pdu::new(self.next_sequence(), Body::DeliverSm(Box::new(sm.clone())));
                    self.send_receipt(&pdu);
                }
            }
            ConnFault::Drop => return,
        }
        self.acks.push(ack);
    }

    fn send(&mut self, pdu: &Pdu) {
        if let Err(err) = pdu.encode(&mut self.out) {
            tracing::warn!(%err, command_id = pdu.command_id(), "cannot encode, dropped");
        }
    }

    fn send_submit_resp(&mut self, pdu: &Pdu) {
        self.sim.stats.count_resp(pdu.status);
        self.send(pdu);
    }

    fn send_receipt(&mut self, pdu: &Pdu) {
        self.sim.stats.deliver_sm.fetch_add(1, Relaxed);
        self.send(pdu);
    }

    /// Moves the queued PDUs that are due at `now` to the output buffer.
    fn release_due(&mut self, now: Instant) {
        while self.resp_queue.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, pdu)) = self.resp_queue.pop_front() {
                self.send_submit_resp(&pdu);
            }
        }
        while self.dlr_queue.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, pdu)) = self.dlr_queue.pop_front() {
                self.send_receipt(&pdu);
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        let resp = self.resp_queue.front().map(|(due, _)| *due);
        let dlr = self.dlr_queue.front().map(|(due, _)| *due);
        resp.into_iter().chain(dlr).min()
    }

    /// Handles every complete PDU in `input` and removes them from it. `Err`: the stream
    /// has lost its framing and must be closed.
    fn on_input(&mut self, input: &mut BytesMut, now: Instant) -> Result<(), pdu::DecodeError> {
        let mut at = 0;
        let mut dates = None;
        while !self.closing {
            match pdu::decode(&input[at..]) {
                Ok(None) => break,
                Ok(Some((pdu, used))) => {
                    at += used;
                    self.on_pdu(pdu, now, &mut dates);
                }
                Err(err) => {
                    let Some(skip) = err.skip else {
                        input.advance(at);
                        return Err(err);
                    };
                    at += skip;
                    tracing::debug!(%err, "malformed PDU, answering generic_nack");
                    let mut nack = Pdu::new(err.sequence, Body::GenericNack);
                    nack.status = err.nack_status();
                    self.send(&nack);
                }
            }
        }
        input.advance(at);
        Ok(())
    }

    fn on_pdu(&mut self, pdu: Pdu, now: Instant, dates: &mut Option<ReceiptDates>) {
        let sequence = pdu.sequence;
        let reply = |status: CommandStatus, body: Body| Pdu { status, sequence, body };
        match pdu.body {
            Body::BindTransmitter(bind) => {
                let status = self.on_bind(&bind, Bound::Transmitter);
                self.send(&reply(status, Body::BindTransmitterResp(bind_resp(status))));
            }
            Body::BindReceiver(bind) => {
                let status = self.on_bind(&bind, Bound::Receiver);
                self.send(&reply(status, Body::BindReceiverResp(bind_resp(status))));
            }
            Body::BindTransceiver(bind) => {
                let status = self.on_bind(&bind, Bound::Transceiver);
                self.send(&reply(status, Body::BindTransceiverResp(bind_resp(status))));
            }
            Body::SubmitSm(sm) => {
                self.sim.stats.submit_sm.fetch_add(1, Relaxed);
                if !matches!(self.bound, Some(Bound::Transmitter | Bound::Transceiver)) {
                    let resp = Body::SubmitSmResp(SmResp::default());
                    self.send_submit_resp(&reply(CommandStatus::RINVBNDSTS, resp));
                    return;
                }
                if self.sim.faults.mute.load(Relaxed) {
                    self.sim.stats.muted.fetch_add(1, Relaxed);
                    return;
                }
                let status = match self.sim.faults.throttle_status() {
                    Some(status) => {
                        self.sim.stats.throttled.fetch_add(1, Relaxed);
                        status
                    }
                    None => match self.sim.config.submit_outcome(&sm.destination_addr) {
                        Some(status) => status,
                        None => return,
                    },
                };
                let mut resp = SmResp::default();
                if status.is_ok() {
                    let (id, written) = self.sim.next_message_id();
                    if sm.registered_delivery & 1 == 1 && self.bound == Some(Bound::Transceiver) {
                        let receipt_id = match self.sim.config.dlr_id_format {
                            Some(format) => format.write(id),
                            None => written.clone(),
                        };
                        let dates = dates.get_or_insert_with(|| ReceiptDates::now(&self.sim));
                        let receipt = self.receipt(&sm, &receipt_id, dates);
                        let due = now + self.sim.config.dlr_delay;
                        self.dlr_queue.push_back((due, receipt));
                    }
                    resp.message_id = written;
                }
                let resp = reply(status, Body::SubmitSmResp(resp));
                let delay = self.sim.faults.resp_delay();
                if delay.is_zero() && self.resp_queue.is_empty() {
                    self.send_submit_resp(&resp);
                } else {
                    // After a `slow` that shortened the delay, a response still waits for
                    // those before it: responses keep their order and the FIFO its sort.
                    let last = self.resp_queue.back().map_or(now, |(due, _)| *due);
                    self.resp_queue.push_back(((now + delay).max(last), resp));
                }
            }
            Body::EnquireLink => {
                if !self.sim.faults.mute.load(Relaxed) {
                    self.send(&reply(CommandStatus::ROK, Body::EnquireLinkResp));
                }
            }
            Body::Unbind => {
                self.sim.stats.unbind.fetch_add(1, Relaxed);
                self.send(&reply(CommandStatus::ROK, Body::UnbindResp));
                self.closing = true;
            }
            Body::DeliverSmResp(_) => {
                self.sim.stats.deliver_sm_resp.fetch_add(1, Relaxed);
                if !pdu.status.is_ok() {
                    self.sim.stats.deliver_sm_resp_error.fetch_add(1, Relaxed);
                }
            }
            Body::GenericNack => {
                self.sim.stats.generic_nack.fetch_add(1, Relaxed);
            }
            Body::EnquireLinkResp | Body::UnbindResp => {}
            Body::BindTransmitterResp(_)
            | Body::BindReceiverResp(_)
            | Body::BindTransceiverResp(_)
            | Body::SubmitSmResp(_) => {
                tracing::debug!(sequence, "unexpected response from an ESME, ignored");
            }
            Body::DeliverSm(_) => {
                self.send(&reply(CommandStatus::RINVCMDID, Body::GenericNack));
            }
        }
    }

    /// A bind's status; with `refuse-binds` on, ESME_RBINDFAIL and the connection closes.
    fn on_bind(&mut self, bind: &Bind, kind: Bound) -> CommandStatus {
        if self.sim.faults.refuse_binds.load(Relaxed) {
            self.closing = true;
            return CommandStatus::RBINDFAIL;
        }
        self.bind(bind, kind)
    }

    fn bind(&mut self, bind: &Bind, kind: Bound) -> CommandStatus {
        let config = &self.sim.config;
        if self.bound.is_some() {
            return CommandStatus::RALYBND;
        }
        if config.system_id.as_ref().is_some_and(|id| *id != bind.system_id) {
            return CommandStatus::RINVSYSID;
        }
        if config.password.as_ref().is_some_and(|pw| *pw != bind.password) {
            return CommandStatus::RINVPASWD;
        }
        self.sim.stats.binds.fetch_add(1, Relaxed);
        self.bound = Some(kind);
        CommandStatus::ROK
    }

    /// The deliver_sm receipt for an accepted submit_sm, in the SMPP 3.4 appendix B format
    /// with the `receipted_message_id` and `message_state` TLVs.
    fn receipt(&mut self, sm: &Sm, message_id: &str, dates: &ReceiptDates) -> Pdu {
        let state = self.pick_state();
        let delivered = state == FinalState::Delivered;
        let original = if sm.short_message.is_empty() {
            sm.tlv(tag::MESSAGE_PAYLOAD).unwrap_or_default()
        } else {
            &sm.short_message
        };
        let mut text = format!(
            "id:{message_id} sub:001 dlvrd:{} submit date:{} done date:{} stat:{} err:{} text:",
            if delivered { "001" } else { "000" },
            dates.submit,
            dates.done,
            state.stat(),
            if delivered { "000" } else { "001" },
        )
        .into_bytes();
        text.extend_from_slice(&original[..original.len().min(20)]);
        let mut tlvs = vec![
            Tlv::cstr(tag::RECEIPTED_MESSAGE_ID, message_id),
            Tlv::new(tag::MESSAGE_STATE, [state.message_state()]),
        ];
        if !delivered {
            // network type 3 (GSM), error code 1
            tlvs.push(Tlv::new(tag::NETWORK_ERROR_CODE, [3, 0, 1]));
        }
        let receipt = Sm {
            source_addr_ton: sm.dest_addr_ton,
            source_addr_npi: sm.dest_addr_npi,
            source_addr: sm.destination_addr.clone(),
            dest_addr_ton: sm.source_addr_ton,
            dest_addr_npi: sm.source_addr_npi,
            destination_addr: sm.source_addr.clone(),
            esm_class: 0x04,
            short_message: text,
            tlvs,
            ..Sm::default()
        };
        Pdu::new(self.next_sequence(), Body::DeliverSm(Box::new(receipt)))
    }

    fn pick_state(&mut self) -> FinalState {
        let mix = &self.sim.config.dlr_mix;
        let total: u64 = mix.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut roll = self.rng.next() % total.max(1);
        for &(state, weight) in mix {
            if roll < u64::from(weight) {
                return state;
            }
            roll -= u64::from(weight);
        }
        FinalState::Delivered
    }
}

fn bind_resp(status: CommandStatus) -> BindResp {
    if !status.is_ok() {
        return BindResp::default();
    }
    BindResp { system_id: "smsc-sim".into(), sc_interface_version: Some(0x34) }
}

/// Drives one connection: reads, decodes, writes and wakes for the delay queues, in one
/// task.
async fn serve(sim: Arc<Sim>, stream: TcpStream, mut control: broadcast::Receiver<Broadcast>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let mut conn = Conn::new(sim);
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        conn.release_due(Instant::now());
        let unsent = conn.out.len() - conn.written;
        if conn.closing && unsent == 0 {
            writer.shutdown().await?;
            return Ok(());
        }
        let next_due = conn.next_due();
        if let Some(due) = next_due {
            if sleep.deadline() != due {
                sleep.as_mut().reset(due);
            }
        }
        let can_read = !conn.closing && unsent < OUT_HIGH_WATER;
        if can_read && input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            // First: a writer that is always ready must not starve a `drop`.
            command = control.recv() => match command {
                Ok(Broadcast { fault: ConnFault::Drop, .. }) => return Ok(()),
                Ok(Broadcast { fault, ack }) => conn.inject(fault, ack),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "fault commands missed");
                }
                // The sender lives in `Sim`, which this task holds.
                Err(broadcast::error::RecvError::Closed) => unreachable!("Sim is alive"),
            },
            sent = writer.write(&conn.out[conn.written..]), if unsent > 0 => {
                conn.written += sent?;
                if conn.written == conn.out.len() {
                    conn.out.clear();
                    conn.written = 0;
                    conn.acks.clear();
                } else if conn.written > OUT_HIGH_WATER {
                    conn.out.drain(..conn.written);
                    conn.written = 0;
                }
            }
            read = reader.read_buf(&mut input), if can_read => {
                if read? == 0 {
                    return Ok(());
                }
                if let Err(err) = conn.on_input(&mut input, Instant::now()) {
                    tracing::info!(%err, "closing a connection that lost its framing");
                    return Ok(());
                }
            }
            () = &mut sleep, if next_due.is_some() => {}
        }
    }
}

// === fault control ===

/// Lines of stdin, read on a plain thread: tokio's stdin would hold the runtime's shutdown
/// until the next line. The thread ends at end of input; the channel's bound is a few lines
/// because commands are answered one at a time.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(4);
    let reader = std::thread::Builder::new().name("smsc-sim-stdin".into()).spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    if let Err(err) = reader {
        tracing::warn!(%err, "cannot start the stdin reader: no fault control");
    }
    rx
}

/// Applies each command line, then answers it on stdout.
async fn control(sim: Arc<Sim>, mut lines: mpsc::Receiver<String>) {
    while let Some(line) = lines.recv().await {
        let command = line.trim();
        if command.is_empty() {
            continue;
        }
        let answer = match apply(&sim, command).await {
            Ok(Some(output)) => format!("{output}\nok {command}"),
            Ok(None) => format!("ok {command}"),
            Err(err) => format!("error {command}: {err}"),
        };
        let mut stdout = std::io::stdout().lock();
        // A test that stopped reading stdout is no reason to stop applying its commands.
        if writeln!(stdout, "{answer}").and_then(|()| stdout.flush()).is_err() {
            tracing::debug!("stdout closed; fault commands still applied");
        }
    }
}

/// Applies one command; `Ok(Some(line))`: a line to print before the `ok`.
async fn apply(sim: &Sim, command: &str) -> Result<Option<String>, String> {
    let faults = &sim.faults;
    let (verb, arg) = command.split_once(char::is_whitespace).map_or((command, ""), |(verb, arg)| (verb, arg.trim()));
    let on_off = || match arg {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{verb} wants on or off")),
    };
    let number = || arg.parse::<u64>().map_err(|_| format!("{verb} wants a number"));
    if matches!(verb, "drop" | "malformed" | "garbage" | "stats") && !arg.is_empty() {
        return Err(format!("{verb} takes no argument"));
    }
    match verb {
        "mute" => faults.mute.store(on_off()?, Relaxed),
        "throttle" => faults.throttle.store(on_off()?, Relaxed),
        "qfull" => faults.qfull.store(on_off()?, Relaxed),
        "refuse-binds" => faults.refuse_binds.store(on_off()?, Relaxed),
        "slow" => faults.resp_delay_us.store(number()?, Relaxed),
        "throttle-every" => {
            let every = number()?;
            faults.throttle_tick.store(0, Relaxed);
            faults.throttle_every.store(every, Relaxed);
        }
        "stats" => return Ok(Some(sim.stats.line())),
        "drop" => broadcast_to_connections(faults, ConnFault::Drop).await?,
        "malformed" => broadcast_to_connections(faults, ConnFault::Malformed).await?,
        "garbage" => broadcast_to_connections(faults, ConnFault::Garbage).await?,
        "mo" => {
            let job = Arc::new(MoJob { parts: mo_parts(arg)?, claimed: AtomicBool::new(false) });
            broadcast_to_connections(faults, ConnFault::Mo(job.clone())).await?;
            if !job.claimed.load(Relaxed) {
                return Err("no receiver or transceiver is bound".into());
            }
        }
        _ => return Err("unknown command".into()),
    }
    Ok(None)
}

/// Hands `fault` to every open connection and waits until each has acted on it.
async fn broadcast_to_connections(faults: &Faults, fault: ConnFault) -> Result<(), String> {
    let (ack, mut done) = mpsc::channel(1);
    // Err: no connection is open, so there is nothing to wait for.
    faults.broadcast.send(Broadcast { fault, ack }).ok();
    // `None` once every connection has dropped its clone of `ack`.
    match tokio::time::timeout(CONTROL_PATIENCE, done.recv()).await {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("a connection did not act within {} s", CONTROL_PATIENCE.as_secs())),
    }
}

// === inbound messages ===

/// The deliver_sm of an `mo` command (see USAGE), in the order they are to be sent.
fn mo_parts(args: &str) -> Result<Vec<Sm>, String> {
    let (keys, text) = match args.split_once("text=") {
        Some((keys, text)) => (keys, text),
        None => return Err("mo needs text=".into()),
    };
    let (mut to, mut from, mut coding, mut split) = (None, "4915112345678", "gsm7", "none");
    let (mut part_octets, mut reference, mut reverse, mut skip) = (None, 1u16, false, Vec::new());
    for pair in keys.split_whitespace() {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("`{pair}` is not KEY=VALUE"))?;
        let number = |v: &str| v.parse::<u16>().map_err(|_| format!("{key} wants a number"));
        match key {
            "to" => to = Some(value),
            "from" => from = value,
            "coding" => coding = value,
            "split" => split = value,
            "part_octets" => part_octets = Some(usize::from(number(value)?)),
            "ref" => reference = number(value)?,
            "order" => reverse = value == "reverse",
            "skip" => skip = value.split(',').map(number).collect::<Result<Vec<u16>, String>>()?,
            _ => return Err(format!("unknown key {key}")),
        }
    }
    let to = to.ok_or("mo needs to=")?;
    let (data_coding, octets): (u8, Vec<u8>) = match coding {
        "gsm7" => {
            let e = smsgate::smpp::encoding::encode(text);
            if e.data_coding != 0 {
                return Err("the text has characters outside GSM 03.38".into());
            }
            (0, e.bytes)
        }
        "ucs2" => (0x08, text.encode_utf16().flat_map(u16::to_be_bytes).collect()),
        "latin1" => (
            0x03,
            text.chars().map(|c| u8::try_from(u32::from(c)).map_err(|_| "not Latin-1")).collect::<Result<_, _>>()?,
        ),
        _ => return Err(format!("unknown coding {coding}")),
    };
    let base = Sm {
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: from.to_owned(),
        destination_addr: to.to_owned(),
        data_coding,
        ..Sm::default()
    };
    let per_part = part_octets.unwrap_or(if data_coding == 0x08 { 134 } else { 153 }).max(1);
    let chunks: Vec<&[u8]> = octets.chunks(per_part).collect();
    let total = u8::try_from(chunks.len()).map_err(|_| "more than 255 parts")?;
    let mut parts = match split {
        "none" => vec![Sm { short_message: octets.clone(), ..base }],
        "payload" => vec![Sm { tlvs: vec![Tlv::new(tag::MESSAGE_PAYLOAD, octets.clone())], ..base }],
        "udh8" | "udh16" | "sar" => chunks
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(&(*i as u16 + 1)))
            .map(|(i, chunk)| {
                let seq = i as u8 + 1;
                let [hi, lo] = reference.to_be_bytes();
                let (udh, tlvs): (Vec<u8>, Vec<Tlv>) = match split {
                    "udh8" => (vec![0x05, 0x00, 0x03, lo, total, seq], Vec::new()),
                    "udh16" => (vec![0x06, 0x08, 0x04, hi, lo, total, seq], Vec::new()),
                    _ => (
                        Vec::new(),
                        vec![
                            Tlv::new(tag::SAR_MSG_REF_NUM, [hi, lo]),
                            Tlv::new(tag::SAR_TOTAL_SEGMENTS, [total]),
                            Tlv::new(tag::SAR_SEGMENT_SEQNUM, [seq]),
                        ],
                    ),
                };
                let esm_class = if udh.is_empty() { 0 } else { 0x40 };
                Sm { esm_class, short_message: [udh.as_slice(), chunk].concat(), tlvs, ..base.clone() }
            })
            .collect(),
        _ => return Err(format!("unknown split {split}")),
    };
    if reverse {
        parts.reverse();
    }
    Ok(parts)
}

// === receipt dates ===

/// `submit date` and `done date` of the receipts made from one read, as YYMMDDhhmm (UTC).
struct ReceiptDates {
    submit: String,
    done: String,
}

impl ReceiptDates {
    fn now(sim: &Sim) -> Self {
        let now = SystemTime::now();
        ReceiptDates { submit: yymmddhhmm(now), done: yymmddhhmm(now + sim.config.dlr_delay) }
    }
}

fn yymmddhhmm(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days(secs / 86_400);
    let minute_of_day = (secs % 86_400) / 60;
    format!("{:02}{month:02}{day:02}{:02}{:02}", year % 100, minute_of_day / 60, minute_of_day % 60)
}

/// (year, month, day) of a count of days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// xorshift64: picks receipt states; quality is irrelevant, speed is not.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

// === main ===

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("smsc-sim: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = if config.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(config.threads).enable_all().build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("smsc-sim: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let faults = Faults::new(config.resp_delay);
    let sim = Arc::new(Sim {
        config,
        stats: Stats {
            connections: AtomicU64::new(0),
            binds: AtomicU64::new(0),
            submit_sm: AtomicU64::new(0),
            submit_sm_resp: [const { AtomicU64::new(0) }; 257],
            deliver_sm: AtomicU64::new(0),
            deliver_sm_resp: AtomicU64::new(0),
            deliver_sm_resp_error: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            muted: AtomicU64::new(0),
            unbind: AtomicU64::new(0),
            generic_nack: AtomicU64::new(0),
        },
        faults,
        id_prefix: rand::random::<u32>().max(1),
        id_counter: AtomicU32::new(0),
    });
    match runtime.block_on(run(sim.clone())) {
        Ok(()) => {
            eprintln!("{}", sim.stats.line());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("smsc-sim: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Accepts connections until SIGINT or SIGTERM.
async fn run(sim: Arc<Sim>) -> std::io::Result<()> {
    let listener = TcpListener::bind(&sim.config.listen).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "smsc-sim listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);

    if sim.config.control {
        tokio::spawn(control(sim.clone(), stdin_lines()));
    }

    if let Some(every) = sim.config.stats_interval {
        let sim = sim.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
            loop {
                ticks.tick().await;
                eprintln!("{}", sim.stats.line());
            }
        });
    }

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    sim.stats.connections.fetch_add(1, Relaxed);
                    let control = sim.faults.broadcast.subscribe();
                    let sim = sim.clone();
                    tokio::spawn(async move {
                        if let Err(err) = serve(sim, stream, control).await {
                            tracing::debug!(%peer, %err, "connection ended");
                        }
                    });
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        }
    }
}
