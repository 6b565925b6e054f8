//! Runs the built `smsc-sim` binary on a free port and talks SMPP to it with a small
//! blocking client; fault commands go to its stdin, one test per command.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use smsgate::smpp::pdu::{self, tag, Bind, Body, CommandStatus, Pdu, Sm, SmResp};
use smsgate::smpp::receipt::{self, FinalState};

/// Upper bound on any single wait, so a broken simulator fails the test instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

struct Sim {
    child: Child,
    addr: String,
    stderr: Option<ChildStderr>,
    /// `None` when started with stdin closed.
    stdin: Option<ChildStdin>,
    /// stdout after the banner, line by line, from a reader thread (so waits can time out).
    stdout: mpsc::Receiver<String>,
}

impl Sim {
    fn start(args: &[&str]) -> Sim {
        Self::start_with_stdin(args, Stdio::piped())
    }

    fn start_with_stdin(args: &[&str], stdin: Stdio) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smsc-sim"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("smsc-sim starts");
        let (tx, stdout) = mpsc::channel();
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let line = stdout.recv_timeout(PATIENCE).expect("banner on stdout");
        let addr = line
            .trim()
            .strip_prefix("smsc-sim listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let stderr = child.stderr.take();
        let stdin = child.stdin.take();
        Sim { child, addr, stderr, stdin, stdout }
    }

    /// Sends one fault command and waits for its `ok`; returns the lines printed before it.
    fn control(&mut self, command: &str) -> Vec<String> {
        match self.try_control(command) {
            Ok(lines) => lines,
            Err(line) => panic!("`{command}` answered {line:?}"),
        }
    }

    /// Like [`Sim::control`]; `Err(line)` when the sim answers `error ...`.
    fn try_control(&mut self, command: &str) -> Result<Vec<String>, String> {
        let stdin = self.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{command}").and_then(|()| stdin.flush()).expect("write a command");
        let mut before = Vec::new();
        loop {
            let line = self.stdout.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("no answer to `{command}`"));
            if line == format!("ok {command}") {
                return Ok(before);
            }
            if line.starts_with(&format!("error {command}")) {
                return Err(line);
            }
            before.push(line);
        }
    }

    /// The counters line, from the `stats` command.
    fn stats(&mut self) -> String {
        let lines = self.control("stats");
        let [line] = lines.as_slice() else { panic!("one stats line expected: {lines:?}") };
        assert!(line.starts_with("smsc-sim stats: "), "{line}");
        line.clone()
    }

    /// A bound transceiver.
    fn bound(&self) -> Client {
        let mut client = self.connect();
        assert_eq!(client.bind(Body::BindTransceiver, "smsgate", "secret").status, CommandStatus::ROK);
        client
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(&self.addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, input: Vec::new(), sequence: 0 }
    }

    /// Sends SIGTERM and returns everything the simulator wrote to stderr.
    fn terminate(mut self) -> String {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success());
        let mut stderr = self.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let read = stderr.read_to_string(&mut text);
            tx.send(read.map(|_| text)).ok();
        });
        let text = rx.recv_timeout(PATIENCE).expect("sim exits on SIGTERM").unwrap();
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "{exit:?}");
        text
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Already exited after `terminate`; otherwise stop the child this test started.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

struct Client {
    stream: TcpStream,
    input: Vec<u8>,
    sequence: u32,
}

impl Client {
    fn send(&mut self, body: Body) -> u32 {
        self.sequence += 1;
        let pdu = Pdu::new(self.sequence, body);
        self.send_pdu(&pdu);
        self.sequence
    }

    fn send_pdu(&mut self, pdu: &Pdu) {
        let mut out = Vec::new();
        pdu.encode(&mut out).expect("encodable");
        self.stream.write_all(&out).expect("write");
    }

    /// The next PDU, or `None` at end of stream.
    fn try_recv(&mut self) -> Option<Pdu> {
        loop {
            if let Some((pdu, used)) = pdu::decode(&self.input).expect("valid PDU from the sim") {
                self.input.drain(..used);
                return Some(pdu);
            }
            let mut chunk = [0; 4096];
            let n = self.stream.read(&mut chunk).expect("read (timed out?)");
            if n == 0 {
                assert!(self.input.is_empty(), "stream ended inside a PDU");
                return None;
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next frame, decoded or not: a malformed but framed PDU is consumed and returned
    /// as its error; a broken length is returned and left in the input.
    fn recv_frame(&mut self) -> Result<Pdu, pdu::DecodeError> {
        loop {
            match pdu::decode(&self.input) {
                Ok(Some((pdu, used))) => {
                    self.input.drain(..used);
                    return Ok(pdu);
                }
                Ok(None) => {}
                Err(err) => {
                    if let Some(skip) = err.skip {
                        self.input.drain(..skip);
                    }
                    return Err(err);
                }
            }
            let mut chunk = [0; 4096];
            let n = self.stream.read(&mut chunk).expect("read (timed out?)");
            assert!(n > 0, "stream ended");
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    fn recv(&mut self) -> Pdu {
        self.try_recv().expect("a PDU, not the end of the stream")
    }

    fn bind(&mut self, kind: fn(Bind) -> Body, system_id: &str, password: &str) -> Pdu {
        let seq = self.send(kind(Bind {
            system_id: system_id.into(),
            password: password.into(),
            interface_version: 0x34,
            ..Bind::default()
        }));
        let resp = self.recv();
        assert_eq!(resp.sequence, seq);
        resp
    }

    fn submit(&mut self, destination: &str, text: &str, registered_delivery: u8) -> u32 {
        self.send(Body::SubmitSm(Box::new(Sm {
            source_addr_ton: 5,
            source_addr: "SMSGATE".into(),
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            destination_addr: destination.into(),
            registered_delivery,
            short_message: text.as_bytes().to_vec(),
            ..Sm::default()
        })))
    }

    /// Sends unbind and expects unbind_resp, then the end of the stream, with nothing else.
    fn unbind(&mut self) {
        let seq = self.send(Body::Unbind);
        let resp = self.recv();
        assert_eq!((resp.sequence, resp.body), (seq, Body::UnbindResp));
        assert_eq!(self.try_recv(), None);
    }
}

fn message_id(pdu: &Pdu) -> &str {
    match &pdu.body {
        Body::SubmitSmResp(SmResp { message_id }) => message_id,
        other => panic!("not a submit_sm_resp: {other:?}"),
    }
}

#[test]
fn submits_get_responses_and_receipts() {
    let sim = Sim::start(&["--reject", "4990000=0x45", "--dlr-delay-ms", "20"]);
    let mut client = sim.connect();
    let bound = client.bind(Body::BindTransceiver, "smsgate", "secret");
    assert_eq!(bound.status, CommandStatus::ROK);
    let Body::BindTransceiverResp(resp) = bound.body else {
        panic!("not a bind_transceiver_resp: {bound:?}");
    };
    assert_eq!(resp.sc_interface_version, Some(0x34));

    let long_text = "Hello there, this text is longer than twenty octets";
    let first = client.submit("491701111111", "Hi", 1);
    let rejected = client.submit("4990000123", "never sent", 1);
    let third = client.submit("491702222222", long_text, 1);

    let mut responses = Vec::new();
    let mut receipts = Vec::new();
    while responses.len() < 3 || receipts.len() < 2 {
        let pdu = client.recv();
        match &pdu.body {
            Body::SubmitSmResp(_) => responses.push(pdu),
            Body::DeliverSm(sm) => {
                let sequence = pdu.sequence;
                receipts.push(sm.clone());
                client.send_pdu(&Pdu::new(sequence, Body::DeliverSmResp(SmResp::default())));
            }
            _ => panic!("unexpected {pdu:?}"),
        }
    }
    responses.sort_by_key(|pdu| pdu.sequence);
    let seqs: Vec<u32> = responses.iter().map(|pdu| pdu.sequence).collect();
    assert_eq!(seqs, [first, rejected, third]);
    let statuses: Vec<CommandStatus> = responses.iter().map(|pdu| pdu.status).collect();
    assert_eq!(statuses, [CommandStatus::ROK, CommandStatus::RSUBMITFAIL, CommandStatus::ROK]);
    let (id1, id3) = (message_id(&responses[0]), message_id(&responses[2]));
    assert_eq!(message_id(&responses[1]), "", "a rejected submit has no message_id");
    assert_ne!(id1, id3);
    for id in [id1, id3] {
        assert!(!id.starts_with('0'), "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
    }

    receipts.sort_by_key(|sm| sm.source_addr.clone());
    for (sm, id, destination, text) in
        [(&receipts[0], id1, "491701111111", "Hi"), (&receipts[1], id3, "491702222222", &long_text[..20])]
    {
        assert_eq!(sm.esm_class, 0x04);
        assert_eq!(sm.source_addr, destination, "a receipt comes from the handset");
        assert_eq!(sm.destination_addr, "SMSGATE");
        assert_eq!(sm.tlv_str(tag::RECEIPTED_MESSAGE_ID).as_deref(), Some(id));
        let state = sm.tlv_u8(tag::MESSAGE_STATE).and_then(FinalState::from_message_state_tlv);
        assert_eq!(state, Some(FinalState::Delivered));
        let parsed = receipt::parse(&sm.short_message);
        assert_eq!(parsed.id.as_deref(), Some(id));
        assert_eq!(parsed.stat.as_deref(), Some("DELIVRD"));
        assert_eq!(parsed.dlvrd.as_deref(), Some("001"));
        assert_eq!(parsed.err.as_deref(), Some("000"));
        assert_eq!(parsed.submit_date.map(|d| d.len()), Some(10));
        assert_eq!(parsed.text.as_deref(), Some(text));
    }

    client.unbind();
    let stderr = sim.terminate();
    let stats = stderr
        .lines()
        .find(|line| line.starts_with("smsc-sim stats:"))
        .unwrap_or_else(|| panic!("no stats line in {stderr:?}"));
    for expected in [
        "binds=1",
        "submit_sm=3",
        "submit_sm_resp=3 (ESME_ROK=2 ESME_RSUBMITFAIL=1)",
        "deliver_sm=2",
        "deliver_sm_resp=2",
    ] {
        assert!(stats.contains(expected), "{expected} not in {stats}");
    }
}

#[test]
fn binds_states_and_blackholes() {
    let sim = Sim::start(&["--system-id", "gw", "--password", "pw", "--blackhole", "4911", "--dlr-delay-ms", "0"]);
    let mut client = sim.connect();

    let early = client.submit("491700000000", "too early", 0);
    let resp = client.recv();
    assert_eq!((resp.sequence, resp.status), (early, CommandStatus::RINVBNDSTS));

    let wrong_pw = client.bind(Body::BindTransmitter, "gw", "nope");
    assert_eq!(wrong_pw.status, CommandStatus::RINVPASWD);
    assert_eq!(wrong_pw.body, Body::BindTransmitterResp(Default::default()));
    let wrong_id = client.bind(Body::BindTransmitter, "other", "pw");
    assert_eq!(wrong_id.status, CommandStatus::RINVSYSID);
    let ok = client.bind(Body::BindTransmitter, "gw", "pw");
    assert_eq!(ok.status, CommandStatus::ROK);
    let again = client.bind(Body::BindTransceiver, "gw", "pw");
    assert_eq!(again.status, CommandStatus::RALYBND);
    assert!(matches!(again.body, Body::BindTransceiverResp(_)));

    // A blackholed submit gets no answer: the enquire_link sent after it is answered first.
    client.submit("4911555", "into the void", 1);
    let probe = client.send(Body::EnquireLink);
    let resp = client.recv();
    assert_eq!((resp.sequence, resp.body), (probe, Body::EnquireLinkResp));

    // An unknown command gets generic_nack with its sequence number.
    let mut unknown = vec![0, 0, 0, 16, 0, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0x01, 0x00];
    client.stream.write_all(&unknown).unwrap();
    let nack = client.recv();
    assert_eq!(nack.body, Body::GenericNack);
    assert_eq!((nack.sequence, nack.status), (0x100, CommandStatus::RINVCMDID));

    // A transmitter gets no receipt, even with registered_delivery and no delay.
    let submit = client.submit("491700000000", "no receipt", 1);
    let resp = client.recv();
    assert_eq!((resp.sequence, resp.status), (submit, CommandStatus::ROK));
    client.unbind();

    // A broken length closes the connection.
    let mut client = sim.connect();
    unknown[..4].copy_from_slice(&8u32.to_be_bytes());
    client.stream.write_all(&unknown).unwrap();
    assert_eq!(client.try_recv(), None);
}

#[test]
fn receipts_follow_the_dlr_mix() {
    let sim = Sim::start(&["--dlr-mix", "expired=1", "--dlr-delay-ms", "0"]);
    let mut client = sim.connect();
    let bound = client.bind(Body::BindTransceiver, "any", "any");
    assert_eq!(bound.status, CommandStatus::ROK);
    let seq = client.submit("491701111111", "Hi", 1);
    let mut message_id_seen = None;
    let mut receipt = None;
    while message_id_seen.is_none() || receipt.is_none() {
        let pdu = client.recv();
        match pdu.body {
            Body::SubmitSmResp(ref resp) => {
                assert_eq!(pdu.sequence, seq);
                message_id_seen = Some(resp.message_id.clone());
            }
            Body::DeliverSm(sm) => receipt = Some(sm),
            other => panic!("unexpected {other:?}"),
        }
    }
    let (id, sm) = (message_id_seen.unwrap(), receipt.unwrap());
    assert_eq!(sm.tlv_str(tag::RECEIPTED_MESSAGE_ID).as_deref(), Some(id.as_str()));
    assert_eq!(sm.tlv_u8(tag::MESSAGE_STATE), Some(FinalState::Expired.message_state()));
    assert!(sm.tlv(tag::NETWORK_ERROR_CODE).is_some());
    let parsed = receipt::parse(&sm.short_message);
    assert_eq!(parsed.stat.as_deref().and_then(FinalState::from_stat), Some(FinalState::Expired));
    assert_eq!((parsed.dlvrd.as_deref(), parsed.err.as_deref()), (Some("000"), Some("001")));
}

// === fault control ===

/// The value of `name=` in a stats line.
fn counter(stats: &str, name: &str) -> u64 {
    stats
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {stats}"))
}

/// Submits without registered_delivery and returns the response's status.
fn submit_status(client: &mut Client, destination: &str) -> CommandStatus {
    let seq = client.submit(destination, "fault", 0);
    let resp = client.recv();
    assert_eq!(resp.sequence, seq);
    assert!(matches!(resp.body, Body::SubmitSmResp(_)), "{resp:?}");
    resp.status
}

#[test]
fn drop_closes_every_connection_and_keeps_accepting() {
    let mut sim = Sim::start(&[]);
    let mut bound = sim.bound();
    let mut unbound = sim.connect();
    // Answered: the sim has accepted it, so it is among the "current" connections.
    let probe = unbound.send(Body::EnquireLink);
    assert_eq!(unbound.recv().sequence, probe);
    sim.control("drop");
    assert_eq!(bound.try_recv(), None);
    assert_eq!(unbound.try_recv(), None);
    let mut again = sim.bound();
    assert_eq!(submit_status(&mut again, "4917"), CommandStatus::ROK);
    // With no connection open, `drop` has nothing to wait for.
    drop(again);
    sim.control("drop");
    assert_eq!(counter(&sim.stats(), "connections"), 3);
}

#[test]
fn mute_leaves_submits_and_enquire_links_unanswered() {
    let mut sim = Sim::start(&[]);
    let mut client = sim.bound();
    sim.control("mute on");
    client.submit("4917", "lost", 1);
    client.send(Body::EnquireLink);
    // A second bind is answered even when muted (ESME_RALYBND): the sim has read the two
    // PDUs before it, so they met the mute.
    assert_eq!(client.bind(Body::BindTransceiver, "smsgate", "secret").status, CommandStatus::RALYBND);
    sim.control("mute off");
    // The sim handles a connection's PDUs in order: the first answer is to this probe.
    let probe = client.send(Body::EnquireLink);
    let resp = client.recv();
    assert_eq!((resp.sequence, resp.body), (probe, Body::EnquireLinkResp));
    assert_eq!(submit_status(&mut client, "4917"), CommandStatus::ROK);
    let stats = sim.stats();
    assert_eq!((counter(&stats, "submit_sm"), counter(&stats, "muted")), (2, 1), "{stats}");
}

#[test]
fn throttle_answers_every_submit_with_rthrottled() {
    let mut sim = Sim::start(&[]);
    let mut client = sim.bound();
    sim.control("throttle on");
    for _ in 0..3 {
        assert_eq!(submit_status(&mut client, "4917"), CommandStatus::RTHROTTLED);
    }
    sim.control("throttle off");
    assert_eq!(submit_status(&mut client, "4917"), CommandStatus::ROK);
    let stats = sim.stats();
    assert_eq!(counter(&stats, "throttled"), 3, "{stats}");
    assert!(stats.contains("(ESME_ROK=1 ESME_RTHROTTLED=3)"), "{stats}");
}

#[test]
fn throttle_every_n_throttles_every_nth_submit() {
    let mut sim = Sim::start(&[]);
    let mut client = sim.bound();
    sim.control("throttle-every 3");
    let statuses: Vec<CommandStatus> = (0..7).map(|_| submit_status(&mut client, "4917")).collect();
    let throttled: Vec<usize> =
        statuses.iter().enumerate().filter(|(_, s)| **s == CommandStatus::RTHROTTLED).map(|(i, _)| i + 1).collect();
    assert_eq!(throttled, [3, 6], "{statuses:?}");
    sim.control("throttle-every 0");
    assert!((0..4).all(|_| submit_status(&mut client, "4917").is_ok()));
    assert_eq!(counter(&sim.stats(), "throttled"), 2);
    assert!(sim.try_control("throttle-every x").is_err());
}

#[test]
fn qfull_answers_rmsgqful() {
    let mut sim = Sim::start(&[]);
    let mut client = sim.bound();
    sim.control("qfull on");
    assert_eq!(submit_status(&mut client, "4917"), CommandStatus::RMSGQFUL);
    sim.control("qfull off");
    assert_eq!(submit_status(&mut client, "4917"), CommandStatus::ROK);
    let stats = sim.stats();
    assert_eq!(counter(&stats, "throttled"), 1, "{stats}");
    assert!(stats.contains("ESME_RMSGQFUL=1"), "{stats}");
}

#[test]
fn refuse_binds_answers_rbindfail_and_closes() {
    let mut sim = Sim::start(&[]);
    let mut already = sim.bound();
    sim.control("refuse-binds on");
    for kind in [Body::BindTransceiver as fn(Bind) -> Body, Body::BindTransmitter, Body::BindReceiver] {
        let mut client = sim.connect();
        let resp = client.bind(kind, "smsgate", "secret");
        assert_eq!(resp.status, CommandStatus::RBINDFAIL);
        assert_eq!(client.try_recv(), None, "closed after the refusal");
    }
    assert_eq!(submit_status(&mut already, "4917"), CommandStatus::ROK, "bound sessions stay");
    sim.control("refuse-binds off");
    let mut client = sim.bound();
    assert_eq!(submit_status(&mut client, "4917"), CommandStatus::ROK);
    assert_eq!(counter(&sim.stats(), "binds"), 2);
}

#[test]
fn slow_delays_responses_and_keeps_their_order() {
    let mut sim = Sim::start(&[]);
    let mut client = sim.bound();
    sim.control("slow 200000");
    let started = Instant::now();
    let slow = client.submit("4917", "slow", 0);
    // enquire_link is never delayed, and its answer proves the submit was read before `slow 0`.
    let probe = client.send(Body::EnquireLink);
    assert_eq!(client.recv().sequence, probe);
    sim.control("slow 0");
    let fast = client.submit("4917", "fast", 0);
    let first = client.recv();
    assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    let second = client.recv();
    assert_eq!([first.sequence, second.sequence], [slow, fast], "no response overtakes another");
    let started = Instant::now();
    assert!(submit_status(&mut client, "4917").is_ok());
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[test]
fn malformed_sends_a_truncated_deliver_sm_and_an_unknown_command_to_bound_connections() {
    let mut sim = Sim::start(&[]);
    let mut bound = sim.bound();
    let mut unbound = sim.connect();
    sim.control("malformed");
    let truncated = bound.recv_frame().expect_err("a truncated deliver_sm");
    assert_eq!(truncated.command_id, pdu::command_id::DELIVER_SM);
    assert!(matches!(truncated.kind, pdu::DecodeErrorKind::Truncated(_)), "{truncated}");
    let unknown = bound.recv_frame().expect_err("an unknown command_id");
    assert_eq!(unknown.kind, pdu::DecodeErrorKind::UnknownCommand);
    assert_ne!(truncated.sequence, unknown.sequence);
    for err in [truncated, unknown] {
        let mut nack = Pdu::new(err.sequence, Body::GenericNack);
        nack.status = err.nack_status();
        bound.send_pdu(&nack);
    }
    // The stream keeps its framing, and the connection stays.
    assert_eq!(submit_status(&mut bound, "4917"), CommandStatus::ROK);
    let probe = unbound.send(Body::EnquireLink);
    let resp = unbound.recv();
    assert_eq!((resp.sequence, resp.body), (probe, Body::EnquireLinkResp), "nothing for an unbound connection");
    assert_eq!(counter(&sim.stats(), "generic_nack"), 2);
}

#[test]
fn garbage_breaks_the_stream_of_bound_connections() {
    let mut sim = Sim::start(&[]);
    let mut bound = sim.bound();
    sim.control("garbage");
    let err = bound.recv_frame().expect_err("a broken header");
    assert_eq!((err.kind, err.skip), (pdu::DecodeErrorKind::InvalidLength(u32::MAX), None));
    // The sim keeps the connection: closing it is the ESME's decision.
    assert_eq!(submit_status(&mut sim.bound(), "4917"), CommandStatus::ROK);
}

#[test]
fn stats_counts_unbinds_and_unknown_commands_are_errors() {
    let mut sim = Sim::start(&[]);
    let mut client = sim.bound();
    assert!(submit_status(&mut client, "4917").is_ok());
    client.unbind();
    let stats = sim.stats();
    for expected in ["binds=1", "submit_sm=1", "throttled=0", "muted=0", "unbind=1", "generic_nack=0"] {
        assert!(stats.split_whitespace().any(|kv| kv == expected), "{expected} not in {stats}");
    }
    for bad in ["explode", "mute maybe", "drop now", "slow fast"] {
        let err = sim.try_control(bad).expect_err("refused");
        assert!(err.starts_with(&format!("error {bad}: ")), "{err}");
    }
    // Blank lines are ignored without an answer; the next command is answered.
    writeln!(sim.stdin.as_mut().unwrap()).unwrap();
    assert!(sim.stats().contains("unbind=1"));
}

#[test]
fn end_of_stdin_does_not_stop_the_sim() {
    let sim = Sim::start_with_stdin(&[], Stdio::null());
    let mut client = sim.bound();
    assert!(submit_status(&mut client, "4917").is_ok());
    client.unbind();
    let stderr = sim.terminate();
    assert!(stderr.contains("unbind=1"), "{stderr}");
}

#[test]
fn receipt_ids_can_be_hex_where_responses_are_decimal() {
    let sim = Sim::start(&["--resp-id-format", "dec", "--dlr-id-format", "hex", "--dlr-delay-ms", "0"]);
    let mut client = sim.bound();
    let seq = client.submit("4917", "ids", 1);
    let (mut id, mut receipt) = (None, None);
    while id.is_none() || receipt.is_none() {
        let pdu = client.recv();
        match pdu.body {
            Body::SubmitSmResp(ref resp) if pdu.sequence == seq => id = Some(resp.message_id.clone()),
            Body::DeliverSm(sm) => receipt = Some(sm),
            other => panic!("unexpected {other:?}"),
        }
    }
    let (id, receipt) = (id.unwrap(), receipt.unwrap());
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    let hex = format!("{:010X}", id.parse::<u64>().unwrap());
    assert!(hex.len() == 10 && hex.starts_with('0'), "{hex}");
    assert_eq!(receipt.tlv_str(tag::RECEIPTED_MESSAGE_ID).as_deref(), Some(hex.as_str()));
    assert_eq!(receipt::parse(&receipt.short_message).id.as_deref(), Some(hex.as_str()));
}
