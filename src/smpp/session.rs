//! One SMPP session to an SMSC: connect, bind, window, pacing, enquire_link, reconnect,
//! unbind. The session runs on the shard that owns it; other shards reach it through the mesh.
//!
//! A session hands every deliver_sm up to its [`Inbound`] owner and answers deliver_sm_resp
//! with the status the owner returns, only after the owner has kept it.

use super::link::SessionHealth;
use super::pacer::Pacer;
use super::pdu::{self, Bind, Body, CommandStatus, EncodeError, Pdu, Sm, SmResp};
use crate::ids::LinkId;
use futures_channel::oneshot;
use futures_lite::future::FutureExt;
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use shards::Shutdown;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a session connects and how it behaves.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub link: LinkId,
    /// Which of the link's sessions this is, `0..sessions` (a transmitter/receiver pair shares
    /// its index).
    pub index: usize,
    pub mode: BindMode,
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    /// Outstanding submit_sm before a new one waits for a slot.
    pub window: usize,
    /// Deadline for any response (bind_resp, submit_sm_resp, enquire_link_resp).
    pub response_timeout: Duration,
    pub enquire_link_interval: Duration,
    /// First reconnect delay; it doubles per failed attempt up to `reconnect_max`, with
    /// ±20 % jitter so sessions do not reconnect in step after an SMSC restart. A refused bind
    /// starts at 4 × `reconnect_delay`: retrying wrong credentials fast helps nobody.
    pub reconnect_delay: Duration,
    pub reconnect_max: Duration,
    pub unbind_timeout: Duration,
    /// The link's `esme_rate`: the pacer's ceiling (messages per second).
    pub max_rate: u32,
    /// How long a session stops sending after ESME_RTHROTTLED / ESME_RMSGQFUL.
    pub throttle_pause: Duration,
}

impl SessionConfig {
    /// Same SMSC, same credentials, same bind: a reload may keep a session bound when this
    /// holds (rates and pacing may differ).
    pub fn same_bind(&self, other: &SessionConfig) -> bool {
        self.link == other.link
            && self.index == other.index
            && self.mode == other.mode
            && self.host == other.host
            && self.port == other.port
            && self.system_id == other.system_id
            && self.password == other.password
            && self.system_type == other.system_type
            && self.window == other.window
    }
}

/// How a session binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    Transceiver,
    /// Submits only; receipts come on the receiver session of the pair.
    Transmitter,
    /// Receives deliver_sm only; never used for submits.
    Receiver,
}

impl BindMode {
    pub fn can_submit(self) -> bool {
        self != BindMode::Receiver
    }

    fn name(self) -> &'static str {
        match self {
            BindMode::Transceiver => "transceiver",
            BindMode::Transmitter => "transmitter",
            BindMode::Receiver => "receiver",
        }
    }
}

/// The owner of a session's inbound traffic (receipts and MO): `src/inbound.rs`.
pub trait Inbound: 'static {
    /// Decides what a deliver_sm means and keeps it; the returned status goes back to the SMSC
    /// in deliver_sm_resp.
    fn deliver(&self, link: &LinkId, sm: Box<Sm>) -> Pin<Box<dyn Future<Output = CommandStatus>>>;
}

/// What came back for a submit_sm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitResult {
    /// ESME_ROK or the SMSC's error (from submit_sm_resp or generic_nack).
    pub status: CommandStatus,
    /// The SMSC's message id; empty unless `status` is ESME_ROK.
    pub message_id: String,
}

/// Why a submit has no [`SubmitResult`]. Each says whether the PDU may have reached the SMSC:
/// only a `never sent` error may be retried elsewhere without risking a duplicate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("no bound session")]
    NotBound,
    #[error("window full for {0:?}")]
    WindowFull(Duration),
    /// The session is paced after an SMSC throttle and no send slot came within the deadline.
    #[error("session paced after SMSC throttling; no slot within {0:?}")]
    Paced(Duration),
    #[error("no submit_sm_resp within {0:?}")]
    Timeout(Duration),
    #[error("connection lost before submit_sm_resp")]
    ConnectionLost,
    #[error("{0}")]
    Unencodable(EncodeError),
}

impl SubmitError {
    /// True when the submit_sm was never written, so the message certainly did not reach the SMSC.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            SubmitError::NotBound | SubmitError::WindowFull(_) | SubmitError::Paced(_) | SubmitError::Unencodable(_)
        )
    }
}

/// A live connection's write side and its outstanding requests.
struct Conn {
    /// PDUs encoded and waiting for the writer task, which sends all of them with one write.
    out: RefCell<Vec<u8>>,
    /// Rings the writer task; capacity 1 because one ring covers everything queued before it.
    doorbell: LocalSender<()>,
    /// Requests waiting for their response, by sequence_number.
    pending: RefCell<HashMap<u32, oneshot::Sender<Pdu>>>,
    /// Fired when the connection must close (read error, unbind, missed enquire_link_resp).
    dead: Shutdown,
}

impl Conn {
    fn queue(&self, pdu: &Pdu) -> Result<(), EncodeError> {
        pdu.encode(&mut self.out.borrow_mut())?;
        // A full doorbell already holds a ring that will pick this PDU up.
        let _already_rung = self.doorbell.try_send(());
        Ok(())
    }

    /// Queues a PDU that smsgate builds itself from fixed fields (responses, enquire_link,
    /// unbind, bind): those always encode; a failure would be a bug, logged, never a panic.
    fn queue_own(&self, pdu: &Pdu) {
        if let Err(e) = self.queue(pdu) {
            tracing::error!(error = %e, command_id = pdu.command_id(), "could not encode an own PDU");
        }
    }

    fn request(&self, pdu: Pdu) -> Result<oneshot::Receiver<Pdu>, EncodeError> {
        let (tx, rx) = oneshot::channel();
        self.queue(&pdu)?;
        self.pending.borrow_mut().insert(pdu.sequence, tx);
        Ok(rx)
    }
}

struct Inner {
    cfg: SessionConfig,
    inbound: Rc<dyn Inbound>,
    conn: RefCell<Option<Rc<Conn>>>,
    /// Window slots; `Rc` so a permit can outlive the borrow (held by an in-flight submit).
    window: Rc<Semaphore>,
    next_seq: Cell<u32>,
    /// Shared with every shard: bound flag, errors, throttles (routing and link health).
    health: Arc<SessionHealth>,
    /// AIMD send rate after SMSC throttling.
    pacer: RefCell<Pacer>,
    /// Set once shutdown began: no new submits.
    closing: Cell<bool>,
    /// Fired when the session's task has ended (unbound, or never bound) after shutdown.
    stopped: Shutdown,
    /// Fired by process shutdown or by [`Session::stop`] (link removed by a reload).
    stop: Shutdown,
    /// xorshift state for reconnect jitter; seeded per session so sessions drift apart.
    jitter: Cell<u64>,
}

/// A submit_sm written and waiting for its answer; holds its window slot until then.
struct InFlight {
    seq: u32,
    conn: Rc<Conn>,
    rx: oneshot::Receiver<Pdu>,
    deadline: Instant,
    /// When the submit_sm was queued: the SMSC latency starts here.
    sent: Instant,
    _permit: glommio::sync::StaticPermit,
}

/// A handle on one session, cheap to clone within its shard.
#[derive(Clone)]
pub struct Session {
    inner: Rc<Inner>,
}

impl Session {
    /// Creates the session and spawns its task, which keeps it bound until `shutdown`.
    /// `health` is the cross-shard state this session keeps up to date.
    pub fn start(
        cfg: SessionConfig,
        inbound: Rc<dyn Inbound>,
        health: Arc<SessionHealth>,
        shutdown: Shutdown,
    ) -> Session {
        let window = Rc::new(Semaphore::new(cfg.window as u64));
        let pacer = Pacer::new(cfg.max_rate, cfg.throttle_pause, Instant::now());
        let seed =
            cfg.link.as_str().bytes().fold(cfg.index as u64 + 0x9E37_79B9_7F4A_7C15, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let s = Session {
            inner: Rc::new(Inner {
                cfg,
                inbound,
                conn: RefCell::new(None),
                window,
                next_seq: Cell::new(1),
                health,
                pacer: RefCell::new(pacer),
                closing: Cell::new(false),
                stopped: Shutdown::manual(),
                stop: Shutdown::manual(),
                jitter: Cell::new(seed | 1),
            }),
        };
        let on_shutdown = s.clone();
        glommio::spawn_local(async move {
            shutdown.wait().or(on_shutdown.inner.stopped.wait()).await;
            on_shutdown.inner.stop.fire_local();
        })
        .detach();
        let task = s.clone();
        glommio::spawn_local(async move {
            let stop = task.inner.stop.clone();
            task.run(stop).await;
            task.inner.stopped.fire_local();
        })
        .detach();
        s
    }

    /// Drains and unbinds the session for good (its link was removed or changed by a reload).
    pub fn stop(&self) {
        self.inner.stop.fire_local();
    }

    /// Resolves once the session has stopped for good (after shutdown and unbind).
    pub async fn stopped(&self) {
        self.inner.stopped.wait().await
    }

    pub fn link(&self) -> &LinkId {
        &self.inner.cfg.link
    }

    pub fn is_bound(&self) -> bool {
        self.inner.conn.borrow().is_some() && !self.inner.closing.get()
    }

    /// The pacer's allowed send rate now, messages per second (`esme_rate` until a throttle).
    pub fn pacer_rate(&self) -> f64 {
        self.inner.pacer.borrow().rate()
    }

    fn next_seq(&self) -> u32 {
        let s = self.inner.next_seq.get();
        // Sequence numbers run 1..=0x7FFFFFFF (SMPP 3.4 5.1.4); wrap back to 1.
        self.inner.next_seq.set(if s >= 0x7FFF_FFFF { 1 } else { s + 1 });
        s
    }

    /// Submits the parts of one message in order on this session, pipelined within the window,
    /// and returns one result per part. Once a part cannot be sent, the later parts are not
    /// sent either (`NotBound`), so a message never goes out with a gap in the middle.
    pub async fn submit_all(&self, sms: Vec<Sm>) -> Vec<Result<SubmitResult, SubmitError>> {
        let mut sent = Vec::with_capacity(sms.len());
        let mut blocked = false;
        for sm in sms {
            if blocked {
                sent.push(Err(SubmitError::NotBound));
                continue;
            }
            let one = self.send(sm).await;
            blocked = one.is_err();
            sent.push(one);
        }
        let mut results = Vec::with_capacity(sent.len());
        for one in sent {
            results.push(match one {
                Ok(inflight) => self.answer(inflight).await,
                Err(e) => Err(e),
            });
        }
        results
    }

    /// Takes a window slot and a pacing slot, then writes the submit_sm.
    async fn send(&self, sm: Sm) -> Result<InFlight, SubmitError> {
        let timeout = self.inner.cfg.response_timeout;
        let deadline = Instant::now() + timeout;
        if !self.is_bound() {
            return Err(SubmitError::NotBound);
        }
        let permit = async { self.inner.window.acquire_static_permit(1).await.ok() }
            .or(async {
                glommio::timer::sleep(timeout).await;
                None
            })
            .await
            .ok_or(SubmitError::WindowFull(timeout))?;
        loop {
            let wait = self.inner.pacer.borrow_mut().admit(Instant::now());
            if wait.is_zero() {
                break;
            }
            if Instant::now() + wait > deadline {
                return Err(SubmitError::Paced(timeout));
            }
            glommio::timer::sleep(wait).await;
        }
        let conn = self.inner.conn.borrow().clone();
        let conn = match conn {
            Some(c) if !self.inner.closing.get() => c,
            _ => return Err(SubmitError::NotBound),
        };
        let seq = self.next_seq();
        let rx = conn
            .request(Pdu { status: CommandStatus::ROK, sequence: seq, body: Body::SubmitSm(Box::new(sm)) })
            .map_err(SubmitError::Unencodable)?;
        self.inner.health.sent();
        Ok(InFlight { seq, conn, rx, deadline, sent: Instant::now(), _permit: permit })
    }

    async fn answer(&self, f: InFlight) -> Result<SubmitResult, SubmitError> {
        let timeout = self.inner.cfg.response_timeout;
        let InFlight { seq, conn, rx, deadline, sent, _permit } = f;
        let answer = async { Some(rx.await) }
            .or(async {
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
                None
            })
            .await;
        let health = &self.inner.health;
        health.answered();
        match answer {
            None => {
                conn.pending.borrow_mut().remove(&seq);
                health.error();
                crate::observe::events::session_error(&self.inner.cfg.link, "response_timeout");
                Err(SubmitError::Timeout(timeout))
            }
            Some(Err(_canceled)) => Err(SubmitError::ConnectionLost),
            Some(Ok(pdu)) => {
                let result = match pdu.body {
                    Body::SubmitSmResp(SmResp { message_id }) => SubmitResult { status: pdu.status, message_id },
                    // generic_nack: the SMSC did not process the submit at all.
                    _ => SubmitResult {
                        status: if pdu.status.is_ok() { CommandStatus::RSYSERR } else { pdu.status },
                        message_id: String::new(),
                    },
                };
                crate::observe::events::smsc_answered(&self.inner.cfg.link, result.status, sent);
                if result.status == CommandStatus::RTHROTTLED || result.status == CommandStatus::RMSGQFUL {
                    let rate = {
                        let mut pacer = self.inner.pacer.borrow_mut();
                        pacer.throttled(Instant::now());
                        pacer.rate()
                    };
                    health.throttled();
                    if let Some(suppressed) = crate::observe::events::session_error(&self.inner.cfg.link, "throttled") {
                        tracing::warn!(link = %self.inner.cfg.link, session = self.inner.cfg.index, status = %result.status, rate, suppressed, "SMSC throttling; session slowed down");
                    }
                }
                Ok(result)
            }
        }
    }

    /// The next reconnect delay: doubled per consecutive failure, capped, ±20 % jitter.
    fn backoff(&self, failures: u32, refused: bool) -> Duration {
        let cfg = &self.inner.cfg;
        let base = if refused { cfg.reconnect_delay * 4 } else { cfg.reconnect_delay };
        let exp = base.saturating_mul(1u32 << failures.min(16)).min(cfg.reconnect_max);
        let mut x = self.inner.jitter.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.inner.jitter.set(x);
        let factor = 0.8 + (x % 1000) as f64 / 2500.0;
        exp.mul_f64(factor)
    }

    async fn run(&self, shutdown: Shutdown) {
        let cfg = &self.inner.cfg;
        let mut failures = 0u32;
        while !shutdown.is_fired() {
            let refused = match self.connect_and_bind().await {
                Ok((conn, reader)) => {
                    tracing::info!(link = %cfg.link, session = cfg.index, mode = cfg.mode.name(), "bound");
                    failures = 0;
                    *self.inner.conn.borrow_mut() = Some(conn.clone());
                    self.inner.health.set_bound(true);
                    self.serve(conn.clone(), reader, &shutdown).await;
                    self.inner.health.set_bound(false);
                    self.inner.conn.borrow_mut().take();
                    // Outstanding requests lose their sender: their submits end as ConnectionLost.
                    conn.pending.borrow_mut().clear();
                    if !shutdown.is_fired() {
                        self.inner.health.error();
                        crate::observe::events::session_error(&cfg.link, "session_lost");
                        tracing::warn!(link = %cfg.link, session = cfg.index, "session lost");
                    }
                    false
                }
                Err(BindFailure { reason, refused }) => {
                    self.inner.health.error();
                    crate::observe::events::session_error(&cfg.link, "bind_failed");
                    tracing::warn!(link = %cfg.link, session = cfg.index, host = %cfg.host, port = cfg.port, %reason, "bind failed");
                    failures += 1;
                    refused
                }
            };
            if shutdown.is_fired() {
                break;
            }
            let delay = self.backoff(failures, refused);
            glommio::timer::sleep(delay).or(shutdown.wait()).await;
        }
    }

    /// Connects, starts the connection's reader and writer, binds.
    async fn connect_and_bind(&self) -> Result<(Rc<Conn>, ReaderTask), BindFailure> {
        let cfg = &self.inner.cfg;
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let stream = TcpStream::connect(addr.as_str())
            .or(async {
                glommio::timer::sleep(cfg.response_timeout).await;
                Err(glommio::GlommioError::IoError(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )))
            })
            .await
            .map_err(|e| BindFailure::io(format!("connect {addr}: {e}")))?;
        stream.set_nodelay(true).map_err(|e| BindFailure::io(format!("set TCP_NODELAY: {e}")))?;
        let (read_half, write_half) = futures_lite::io::split(stream);
        let (doorbell, rung) = local_channel::new_bounded(1);
        let conn = Rc::new(Conn {
            out: RefCell::new(Vec::with_capacity(16 * 1024)),
            doorbell,
            pending: RefCell::new(HashMap::new()),
            dead: Shutdown::manual(),
        });
        glommio::spawn_local(write_loop(write_half, conn.clone(), rung)).detach();
        let reader = ReaderTask::spawn(self.clone(), read_half, conn.clone());
        let bind = Bind {
            system_id: cfg.system_id.clone(),
            password: cfg.password.clone(),
            system_type: cfg.system_type.clone(),
            interface_version: 0x34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
        };
        let body = match cfg.mode {
            BindMode::Transceiver => Body::BindTransceiver(bind),
            BindMode::Transmitter => Body::BindTransmitter(bind),
            BindMode::Receiver => Body::BindReceiver(bind),
        };
        let fail = |f: BindFailure| {
            conn.dead.fire_local();
            Err(f)
        };
        let rx = match conn.request(Pdu { status: CommandStatus::ROK, sequence: self.next_seq(), body }) {
            Ok(rx) => rx,
            Err(e) => return fail(BindFailure { reason: format!("bind: {e}"), refused: true }),
        };
        let answer = async { rx.await.ok() }
            .or(async {
                glommio::timer::sleep(cfg.response_timeout).await;
                None
            })
            .await;
        match answer {
            None => fail(BindFailure::io("no bind response".into())),
            Some(p) if !p.status.is_ok() => {
                fail(BindFailure { reason: format!("bind refused: {}", p.status), refused: true })
            }
            Some(p)
                if matches!(
                    (&p.body, cfg.mode),
                    (Body::BindTransceiverResp(_), BindMode::Transceiver)
                        | (Body::BindTransmitterResp(_), BindMode::Transmitter)
                        | (Body::BindReceiverResp(_), BindMode::Receiver)
                ) =>
            {
                Ok((conn.clone(), reader))
            }
            Some(p) => fail(BindFailure::io(format!("unexpected answer to bind: command_id 0x{:08x}", p.command_id()))),
        }
    }

    /// Runs a bound connection until it dies or shutdown asks for an unbind.
    async fn serve(&self, conn: Rc<Conn>, reader: ReaderTask, shutdown: &Shutdown) {
        let cfg = &self.inner.cfg;
        let keepalive = async {
            loop {
                glommio::timer::sleep(cfg.enquire_link_interval).await;
                let rx = conn.request(Pdu {
                    status: CommandStatus::ROK,
                    sequence: self.next_seq(),
                    body: Body::EnquireLink,
                });
                let answered = async {
                    match rx {
                        Ok(rx) => rx.await.is_ok(),
                        Err(_) => false,
                    }
                }
                .or(async {
                    glommio::timer::sleep(cfg.response_timeout).await;
                    false
                })
                .await;
                if !answered {
                    tracing::warn!(link = %cfg.link, session = cfg.index, "enquire_link_resp missed; closing session");
                    self.inner.health.error();
                    crate::observe::events::session_error(&cfg.link, "enquire_link_missed");
                    conn.dead.fire_local();
                    return false;
                }
            }
        };
        let unbind_requested = async {
            shutdown.wait().await;
            true
        };
        let died = async {
            conn.dead.wait().await;
            false
        };
        let unbind = unbind_requested.or(died).or(keepalive).await;
        if unbind {
            self.unbind(&conn).await;
        }
        conn.dead.fire_local();
        // The socket closes when the reader and the writer have dropped their halves.
        reader.join().await;
    }

    /// Stops new submits, lets outstanding ones finish, then unbinds.
    async fn unbind(&self, conn: &Conn) {
        let cfg = &self.inner.cfg;
        self.inner.closing.set(true);
        let drained = async {
            while !conn.pending.borrow().is_empty() {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
        };
        drained.or(glommio::timer::sleep(cfg.unbind_timeout)).await;
        let rx = conn.request(Pdu { status: CommandStatus::ROK, sequence: self.next_seq(), body: Body::Unbind });
        let answered = async {
            match rx {
                Ok(rx) => rx.await.is_ok(),
                Err(_) => false,
            }
        }
        .or(async {
            glommio::timer::sleep(cfg.unbind_timeout).await;
            false
        })
        .await;
        tracing::info!(link = %cfg.link, session = cfg.index, answered, "unbound");
    }

    /// Handles one PDU the SMSC sent.
    fn on_pdu(&self, conn: &Rc<Conn>, pdu: Pdu) {
        if pdu.is_response() {
            match conn.pending.borrow_mut().remove(&pdu.sequence) {
                Some(tx) => {
                    let _receiver_may_have_timed_out = tx.send(pdu);
                }
                None => {
                    tracing::debug!(link = %self.inner.cfg.link, seq = pdu.sequence, "response to nothing outstanding")
                }
            }
            return;
        }
        let seq = pdu.sequence;
        match pdu.body {
            Body::EnquireLink => {
                conn.queue_own(&Pdu { status: CommandStatus::ROK, sequence: seq, body: Body::EnquireLinkResp })
            }
            Body::Unbind => {
                tracing::info!(link = %self.inner.cfg.link, session = self.inner.cfg.index, "SMSC unbound the session");
                conn.queue_own(&Pdu { status: CommandStatus::ROK, sequence: seq, body: Body::UnbindResp });
                conn.dead.fire_local();
            }
            Body::DeliverSm(sm) => {
                let inbound = self.inner.inbound.clone();
                let link = self.inner.cfg.link.clone();
                let conn = conn.clone();
                glommio::spawn_local(async move {
                    let status = inbound.deliver(&link, sm).await;
                    conn.queue_own(&Pdu {
                        status,
                        sequence: seq,
                        body: Body::DeliverSmResp(SmResp { message_id: String::new() }),
                    });
                })
                .detach();
            }
            other => {
                tracing::warn!(link = %self.inner.cfg.link, command_id = format_args!("0x{:08x}", Pdu { status: CommandStatus::ROK, sequence: seq, body: other }.command_id()), "unexpected PDU from SMSC");
                conn.queue_own(&Pdu { status: CommandStatus::RINVCMDID, sequence: seq, body: Body::GenericNack });
            }
        }
    }
}

/// Why a bind did not succeed; `refused` when the SMSC answered with an error status.
struct BindFailure {
    reason: String,
    refused: bool,
}

impl BindFailure {
    fn io(reason: String) -> Self {
        BindFailure { reason, refused: false }
    }
}

/// The connection's reader: decodes every complete PDU, never panics on what the SMSC sends.
struct ReaderTask {
    done: LocalReceiver<()>,
}

impl ReaderTask {
    fn spawn(session: Session, mut stream: ReadHalf<TcpStream>, conn: Rc<Conn>) -> ReaderTask {
        let (done_tx, done) = local_channel::new_bounded(1);
        glommio::spawn_local(async move {
            read_loop(&session, &mut stream, &conn).await;
            conn.dead.fire_local();
            drop(done_tx);
        })
        .detach();
        ReaderTask { done }
    }

    async fn join(self) {
        // Resolves with None once the reader dropped its sender.
        let _ = self.done.recv().await;
    }
}

async fn read_loop(session: &Session, stream: &mut ReadHalf<TcpStream>, conn: &Rc<Conn>) {
    let link = &session.inner.cfg.link;
    // 64 KiB: one read takes hundreds of small PDUs; a PDU is at most pdu::MAX_PDU_LEN.
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0usize;
    loop {
        let read = async { Some(stream.read(&mut buf[filled..]).await) }.or(async {
            conn.dead.wait().await;
            None
        });
        let n = match read.await {
            None => return,
            Some(Ok(0)) => {
                tracing::warn!(%link, "SMSC closed the connection");
                return;
            }
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                tracing::warn!(%link, error = %e, "read from SMSC failed");
                return;
            }
        };
        filled += n;
        let mut start = 0;
        while start < filled {
            match pdu::decode(&buf[start..filled]) {
                Ok(None) => break,
                Ok(Some((pdu, used))) => {
                    start += used;
                    session.on_pdu(conn, pdu);
                }
                Err(e) => match e.skip {
                    Some(skip) => {
                        tracing::warn!(%link, error = ?e.kind, command_id = e.command_id, seq = e.sequence, "malformed PDU from SMSC; answered generic_nack");
                        conn.queue_own(&Pdu { status: e.nack_status(), sequence: e.sequence, body: Body::GenericNack });
                        start += skip;
                    }
                    None => {
                        tracing::warn!(%link, error = ?e.kind, "broken PDU stream from SMSC; closing session");
                        return;
                    }
                },
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == buf.len() {
            // A PDU longer than the buffer passed decode's length check: grow to hold it.
            buf.resize(buf.len() * 2, 0);
        }
    }
}

async fn write_loop(mut stream: WriteHalf<TcpStream>, conn: Rc<Conn>, rung: LocalReceiver<()>) {
    let mut spare = Vec::with_capacity(16 * 1024);
    loop {
        let ring = async { rung.recv().await.is_some() }.or(async {
            conn.dead.wait().await;
            false
        });
        if !ring.await {
            // Flush what is queued (an unbind_resp, a deliver_sm_resp) before leaving.
            let last = std::mem::take(&mut *conn.out.borrow_mut());
            if !last.is_empty() {
                let _best_effort = stream.write_all(&last).await;
            }
            return;
        }
        std::mem::swap(&mut spare, &mut *conn.out.borrow_mut());
        if spare.is_empty() {
            continue;
        }
        if let Err(e) = stream.write_all(&spare).await {
            tracing::warn!(error = %e, "write to SMSC failed");
            conn.dead.fire_local();
            return;
        }
        spare.clear();
    }
}
