//! Assembly: from a validated configuration to running shards, and back to a clean exit.

use crate::clock::{Clock, SystemClock};
use crate::config::Loaded;
use crate::config::{BindConfig, LinkConfig, PoolConfig, Rules};
use crate::ids::{IdGenerator, LinkId};
use crate::inbound::InboundHandler;
use crate::ingress::grpc::GrpcShard;
use crate::ingress::http::{self, HttpSettings};
use crate::notify::stream::ReceiptHub;
use crate::pipeline::auth::Auth;
use crate::pipeline::limit::l1::Rate;
use crate::pipeline::limit::{LimitSpec, LimitTarget, Limiter, LimiterNode};
use crate::pipeline::route::Router;
use crate::pipeline::submit::{self, Handoff, LocalSessions, Submitter};
use crate::pipeline::Pipeline;
use crate::smpp::link::LinkState;
use crate::smpp::link::{LinkSettings, LinkTable};
use crate::smpp::session::{BindMode, Inbound, Session, SessionConfig};
use crate::state::embedded::EmbeddedStore;
use crate::state::writer::{Writer, WriterConfig};
use futures_lite::future::FutureExt;
use shards::Shutdown;
use shards::{Mesh, ShutdownTrigger};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::File;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// Runs the node until SIGINT/SIGTERM (or `trigger`), then drains and returns.
///
/// Shutdown order: stop accepting; finish in-flight requests; unbind SMPP sessions; flush the
/// state store.
pub fn run(loaded: Loaded, trigger: ShutdownTrigger) -> Result<(), String> {
    let cfg = &loaded.config;
    shards::listener::wait_free(cfg.http.listen, Duration::from_secs(5)).map_err(|e| format!("http.listen: {e}"))?;
    let _lock = lock_state_dir(&cfg.state.path)?;
    let store =
        EmbeddedStore::open(&cfg.state.path).map_err(|e| format!("state.path {}: {e}", cfg.state.path.display()))?;
    let (writer, state) =
        Writer::spawn(store, WriterConfig { max_batch: cfg.state.max_batch, queue_capacity: cfg.state.queue_capacity })
            .map_err(|e| format!("starting the state writer: {e}"))?;

    let cpus = shards::executor::cpus((!cfg.shards.cpus.is_empty()).then_some(cfg.shards.cpus.as_slice()))
        .map_err(|e| format!("shards.cpus: {e}"))?;
    let nr_shards = cpus.len();
    let links = Arc::new(link_table(&loaded, nr_shards));
    let auth = Arc::new(Auth::new(&cfg.clients));
    let mesh: Mesh<Handoff> = Mesh::new(nr_shards, cfg.shards.mesh_capacity());
    let receipt_hub = ReceiptHub::new(nr_shards);
    let settings = HttpSettings {
        max_body_bytes: cfg.http.max_body_bytes,
        header_read_timeout: Duration::from_millis(cfg.http.header_read_timeout_ms),
    };
    let listen = cfg.http.listen;
    let rules = Arc::new(loaded.rules.clone());
    let node = cfg.node.id;
    let settings = Arc::new(settings);
    tracing::info!(%listen, shards = nr_shards, links = links.iter().count(), "smsgate starting");

    let limits = Arc::new(LimiterNode::new(node, nr_shards, cfg.redis.clone(), &limit_spec(&loaded)));
    let origin = Instant::now();
    let result = shards::run(&cpus, &trigger, move |info, shutdown| {
        let limits = limits.clone();
        let (links, auth, mesh, state, settings, rules, receipt_hub) = (
            links.clone(),
            auth.clone(),
            mesh.clone(),
            state.clone(),
            settings.clone(),
            rules.clone(),
            receipt_hub.clone(),
        );
        async move {
            let clock: Rc<dyn Clock> = Rc::new(SystemClock);
            let local: LocalSessions = Rc::new(RefCell::new(HashMap::new()));
            let handoffs = local.clone();
            let mesh = match mesh.join(move |_peer, h| submit::on_handoff(&handoffs, h)).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(shard = info.id, error = %e, "shard could not join the mesh");
                    return;
                }
            };
            let receipts = match receipt_hub.join().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(shard = info.id, error = %e, "shard could not join the receipt hub");
                    return;
                }
            };
            let inbound: Rc<dyn Inbound> =
                Rc::new(InboundHandler::new(state.clone(), clock.clone(), links.clone(), receipts.clone()));
            for (link, index, slot) in links.owned_by(info.id) {
                let session =
                    Session::start(slot.config.clone(), inbound.clone(), slot.health.clone(), shutdown.clone());
                local.borrow_mut().insert((link.clone(), index), session);
            }
            crate::observe::metrics::spawn_publisher(
                info.id,
                local.clone(),
                links.clone(),
                state.clone(),
                shutdown.clone(),
            );
            let limiter = match Limiter::new(limits.clone(), info.id, origin) {
                Ok(l) => Rc::new(l),
                Err(e) => {
                    tracing::error!(shard = info.id, error = %e, "rate limiter failed to start");
                    return;
                }
            };
            limiter.start(shutdown.clone());
            if info.id == 0 {
                glommio::spawn_local(follow_pool_health(links.clone(), rules.clone(), limits, shutdown.clone()))
                    .detach();
            }
            let pipeline = Rc::new(Pipeline::new(
                IdGenerator::new(node, info.id),
                clock,
                auth,
                Router::new(links.clone(), &rules),
                limiter,
                Submitter::new(info.id, links, local.clone(), mesh),
                state,
            ));
            let listener = match glommio::net::TcpListener::bind(listen) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(shard = info.id, %listen, error = %e, "cannot listen");
                    return;
                }
            };
            let settings = Rc::new(HttpSettings {
                max_body_bytes: settings.max_body_bytes,
                header_read_timeout: settings.header_read_timeout,
            });
            let grpc = Rc::new(GrpcShard { pipeline: pipeline.clone(), receipts, shutdown: shutdown.clone() });
            http::serve(listener, pipeline, settings, grpc, shutdown).await;
            let sessions: Vec<Session> = local.borrow().values().cloned().collect();
            for s in sessions {
                s.stopped().await;
            }
            tracing::debug!(shard = info.id, "shard stopped");
        }
    });
    let flushed = writer.shutdown();
    result.map_err(|e| e.to_string())?;
    flushed.map_err(|e| format!("flushing the state store: {e}"))?;
    tracing::info!("smsgate stopped");
    Ok(())
}

/// Rates from smpp_rules.toml (links: `esme_rate`/`esme_rate_burst`; pools: the sum of their
/// members) and each client's `limits`.
fn limit_spec(loaded: &Loaded) -> LimitSpec {
    let links = &loaded.rules.links;
    let mut targets: Vec<(LimitTarget, Rate)> = links
        .iter()
        .map(|(name, l)| (LimitTarget::Link(LinkId::new(name)), Rate::new(f64::from(l.esme_rate), l.esme_rate_burst)))
        .collect();
    for (name, pool) in &loaded.rules.pools {
        targets.push((LimitTarget::Pool(Arc::from(name.as_str())), pool_rate(links, pool, |_| true)));
    }
    let clients = loaded.config.clients.iter().map(|c| (c.name.clone(), c.limits.clone())).collect();
    LimitSpec { targets, clients }
}

/// A pool's rate: the sum of its members' rates and bursts, counting only members `up` says
/// are up.
fn pool_rate(links: &BTreeMap<String, LinkConfig>, pool: &PoolConfig, up: impl Fn(&str) -> bool) -> Rate {
    let (rate, burst) = pool
        .members
        .iter()
        .filter(|m| up(&m.link))
        .filter_map(|m| links.get(&m.link))
        .fold((0u32, 0u32), |(r, b), l| (r + l.esme_rate, b + l.esme_rate_burst));
    Rate::new(f64::from(rate), burst)
}

/// Every 250 ms: a pool's rate is the sum of its members that are not down, so a link that
/// goes down counts zero within a second, and counts again when it recovers. When every
/// member is down the last rate stays (routing refuses with 503 `pool_unavailable`).
async fn follow_pool_health(links: Arc<LinkTable>, rules: Arc<Rules>, limits: Arc<LimiterNode>, shutdown: Shutdown) {
    let mut last: HashMap<String, (u64, u32)> = HashMap::new();
    while !shutdown.is_fired() {
        let now = LinkTable::now_ms();
        for (name, pool) in &rules.pools {
            let up = |l: &str| links.get(&LinkId::new(l)).is_some_and(|e| e.state(now) != LinkState::Down);
            let rate = pool_rate(&rules.links, pool, up);
            let key = (rate.per_second as u64, rate.burst);
            // With every member down the pool's routing answers 503 anyway; keeping the last
            // rate avoids a zero rate (and a 429 with an endless Retry-After) in the meantime.
            if key.0 > 0 && last.get(name).is_some_and(|k| *k != key) || (key.0 > 0 && !last.contains_key(name)) {
                tracing::info!(pool = %name, rate = rate.per_second, "pool rate follows its members' health");
                limits.set_rate(&LimitTarget::Pool(Arc::from(name.as_str())), rate);
                last.insert(name.clone(), key);
            }
        }
        glommio::timer::sleep(Duration::from_millis(250)).or(shutdown.wait()).await;
    }
}

fn link_table(loaded: &Loaded, nr_shards: usize) -> LinkTable {
    let smpp = &loaded.config.smpp;
    let links = loaded.rules.links.iter().map(|(name, l)| {
        let link = LinkId::new(name);
        let modes: &[BindMode] = match l.bind {
            BindConfig::Transceiver => &[BindMode::Transceiver],
            BindConfig::TransmitterReceiver => &[BindMode::Transmitter, BindMode::Receiver],
        };
        let sessions = (0..l.sessions)
            .flat_map(|index| modes.iter().map(move |&mode| (index, mode)))
            .map(|(index, mode)| SessionConfig {
                link: link.clone(),
                index,
                mode,
                host: l.host.clone(),
                port: l.port,
                system_id: l.system_id.clone(),
                password: l.password.clone(),
                system_type: l.system_type.clone(),
                window: l.window,
                response_timeout: Duration::from_millis(smpp.response_timeout_ms),
                enquire_link_interval: Duration::from_millis(smpp.enquire_link_interval_ms),
                reconnect_delay: Duration::from_millis(smpp.reconnect_delay_ms),
                reconnect_max: Duration::from_millis(smpp.reconnect_max_ms.max(smpp.reconnect_delay_ms)),
                unbind_timeout: Duration::from_millis(smpp.unbind_timeout_ms),
                max_rate: l.esme_rate,
                throttle_pause: Duration::from_millis(l.throttle_pause_ms),
            })
            .collect();
        let settings = LinkSettings { long_messages: l.long_messages, receipt_id_format: l.receipt_id_format };
        (link.clone(), settings, sessions)
    });
    LinkTable::new(links, nr_shards)
}

/// One process per state directory: a second smsgate on the same data would corrupt nothing
/// (the store locks too) but would fight over the port and the SMPP binds.
fn lock_state_dir(dir: &std::path::Path) -> Result<File, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("state.path {}: {e}", dir.display()))?;
    let path = dir.join("smsgate.lock");
    let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.try_lock().map_err(|_| format!("{} is locked: another smsgate uses this state directory", path.display()))?;
    Ok(file)
}
