//! Assembly: from a validated configuration to running shards, and back to a clean exit.

use crate::clock::{Clock, SystemClock};
use crate::config::Loaded;
use crate::config::{self, SmppConfig};
use crate::config::{ClientConfig, LinkConfig, PoolConfig, Rules};
use crate::config::{StateBackend, StateConfig};
use crate::ids::{IdGenerator, LinkId};
use crate::inbound::InboundHandler;
use crate::ingress::grpc::GrpcShard;
use crate::ingress::http::Admin;
use crate::ingress::http::{self, HttpSettings};
use crate::notify::mo::{InboundStats, MoRouter};
use crate::notify::outbox::{CallbackPolicy, WebhookTargets};
use crate::notify::stream::{InboundHub, ReceiptHub};
use crate::notify::webhook::{WebhookSender, WebhookStats};
use crate::pipeline::auth::Auth;
use crate::pipeline::limit::l1::Rate;
use crate::pipeline::limit::{LimitSpec, LimitTarget, Limiter, LimiterNode};
use crate::pipeline::policy::{self, Policy, PolicyNode};
use crate::pipeline::route::{Live, Router};
use crate::pipeline::submit::{self, Handoff, LocalSessions, Submitter};
use crate::pipeline::Pipeline;
use crate::reload;
use crate::reload::{Plan, Summary};
use crate::smpp::link::LinkState;
use crate::smpp::link::LinkTable;
use crate::smpp::session::{Inbound, Session};
use crate::state::aerospike::AerospikeStore;
use crate::state::embedded::EmbeddedStore;
use crate::state::store::{StateStore, StoreError};
use crate::state::writer::{Writer, WriterConfig};
use futures_lite::future::FutureExt;
use shards::MeshSender;
use shards::Shutdown;
use shards::{Mesh, ShutdownTrigger};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::File;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// Runs the node until SIGINT/SIGTERM (or `trigger`), then drains and returns.
///
/// Shutdown order: stop accepting; finish in-flight requests; unbind SMPP sessions; stop the
/// webhook sender (pending events stay in the outbox); stop history (events not yet in
/// PostgreSQL go to a spill file); flush the state store.
pub fn run(loaded: Loaded, trigger: ShutdownTrigger, hangups: Arc<AtomicU64>) -> Result<(), String> {
    let cfg = &loaded.config;
    crate::observe::metrics::set_enabled(cfg.metrics.enabled);
    shards::listener::wait_free(cfg.http.listen, Duration::from_secs(5)).map_err(|e| format!("http.listen: {e}"))?;
    let webhook_stats = Arc::new(WebhookStats::default());
    let inbound_stats = Arc::new(InboundStats::default());
    crate::observe::metrics::set_inbound(Arc::clone(&inbound_stats));
    let mo_router = Arc::new(MoRouter::new(&cfg.clients, &loaded.rules.mo_routes, inbound_stats));
    let targets =
        WebhookTargets::new(&cfg.clients, cfg.webhooks.max_pending_per_client, Arc::clone(&webhook_stats.overflowed));
    let (store, _lock) = open_store(&cfg.state, targets, Arc::clone(&mo_router))?;
    let outbox = store.outbox_reader();
    let (writer, state) =
        Writer::spawn(store, WriterConfig { max_batch: cfg.state.max_batch, queue_capacity: cfg.state.queue_capacity })
            .map_err(|e| format!("starting the state writer: {e}"))?;
    let webhooks =
        WebhookSender::spawn(outbox, state.clone(), &cfg.clients, &cfg.webhooks, &cfg.inbound, webhook_stats)
            .map_err(|e| format!("starting the webhook sender: {e}"))?;
    crate::observe::metrics::set_webhooks(webhooks.stats());
    let history = cfg.history.as_ref().map(crate::history::History::start).transpose()?;
    let history_queries = history.as_ref().map_or_else(crate::history::query::Queries::disabled, |h| h.queries());
    if history.is_some() {
        tracing::info!("message history on PostgreSQL is on");
    }

    let cpus = shards::executor::cpus((!cfg.shards.cpus.is_empty()).then_some(cfg.shards.cpus.as_slice()))
        .map_err(|e| format!("shards.cpus: {e}"))?;
    let nr_shards = cpus.len();
    let links = Arc::new(reload::link_table(&loaded.rules, &loaded.config.smpp, nr_shards, None));
    let auth = Arc::new(Auth::new(&cfg.clients));
    let mesh: Mesh<Handoff> = Mesh::new(nr_shards, cfg.shards.mesh_capacity());
    let receipt_hub = ReceiptHub::new(nr_shards);
    let inbound_hub = InboundHub::new(nr_shards);
    let (max_body_bytes, header_read_timeout) =
        (cfg.http.max_body_bytes, Duration::from_millis(cfg.http.header_read_timeout_ms));
    let listen = cfg.http.listen;
    let rules = Arc::new(loaded.rules.clone());
    let node = cfg.node.id;
    tracing::info!(%listen, shards = nr_shards, links = links.iter().count(), "smsgate starting");

    let limits = Arc::new(LimiterNode::new(node, nr_shards, cfg.redis.clone(), &limit_spec(&loaded)));
    let blacklist = policy::blacklist::start_configured(&cfg.policy).map_err(|e| format!("policy blacklist: {e}"))?;
    // Stops the blacklist reload thread when `run` returns.
    let _blacklist_watcher = blacklist.watcher;
    let blacklist_reload = blacklist.reload;
    let policy_node = Arc::new(PolicyNode::new(&cfg.policy, &cfg.clients, &cfg.redis, blacklist.shared)?);
    let origin = Instant::now();
    let smpp = Arc::new(cfg.smpp.clone());
    let clients = Arc::new(cfg.clients.clone());
    let callbacks = Arc::new(
        CallbackPolicy::new(&cfg.webhooks.allowed_hosts, &cfg.webhooks.allowed_networks)
            .map_err(|e| format!("webhooks: {e}"))?,
    );
    let admin_key = cfg.admin.api_key.clone();
    let executor = shards::executor::Options { spin_before_park: cfg.shards.spin_before_park() };
    let result = shards::executor::run_with(&cpus, &trigger, &executor, move |info, shutdown| {
        let limits = limits.clone();
        let policy_node = policy_node.clone();
        let (smpp, hangups, admin_key) = (smpp.clone(), hangups.clone(), admin_key.clone());
        let blacklist_reload = blacklist_reload.clone();
        let (clients, mo_router, inbound_hub) = (clients.clone(), mo_router.clone(), inbound_hub.clone());
        let callbacks = callbacks.clone();
        let history_queries = history_queries.clone();
        let (links, auth, mesh, state, rules, receipt_hub) =
            (links.clone(), auth.clone(), mesh.clone(), state.clone(), rules.clone(), receipt_hub.clone());
        async move {
            let clock: Rc<dyn Clock> = Rc::new(SystemClock);
            let local: LocalSessions = Rc::new(RefCell::new(HashMap::new()));
            let live = Live::new(Router::new(links.clone(), &rules));
            let shard = Rc::new(ShardRules {
                id: info.id,
                nr_shards: info.nr_shards,
                live: live.clone(),
                rules: RefCell::new(rules.clone()),
                smpp: smpp.clone(),
                clients,
                mo_router,
                local: local.clone(),
                inbound: RefCell::new(None),
                mesh: RefCell::new(None),
                limits: limits.clone(),
                shutdown: shutdown.clone(),
            });
            let handoffs = shard.clone();
            let mesh = match mesh.join(info.id, move |_peer, h| handoffs.on_handoff(h)).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(shard = info.id, error = %e, "shard could not join the mesh");
                    return;
                }
            };
            let receipts = match receipt_hub.join(info.id).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(shard = info.id, error = %e, "shard could not join the receipt hub");
                    return;
                }
            };
            let inbound_stream = match inbound_hub.join(info.id).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(shard = info.id, error = %e, "shard could not join the inbound hub");
                    return;
                }
            };
            *shard.mesh.borrow_mut() = Some(mesh.clone());
            let ids = Rc::new(RefCell::new(IdGenerator::new(node, info.id)));
            let inbound: Rc<dyn Inbound> = Rc::new(InboundHandler::new(
                state.clone(),
                clock.clone(),
                live.clone(),
                receipts.clone(),
                inbound_stream.clone(),
                ids.clone(),
            ));
            *shard.inbound.borrow_mut() = Some(inbound.clone());
            shard.start_sessions(&links, None);
            if info.id == 0 {
                glommio::spawn_local(watch_hangups(shard.clone(), hangups)).detach();
            }
            crate::observe::metrics::spawn_publisher(
                info.id,
                local.clone(),
                live.clone(),
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
            let policy = match Policy::new(policy_node) {
                Ok(p) => Rc::new(p),
                Err(e) => {
                    tracing::error!(shard = info.id, error = %e, "policy stage failed to start");
                    return;
                }
            };
            policy.start(shutdown.clone());
            if info.id == 0 {
                glommio::spawn_local(follow_pool_health(shard.clone())).detach();
            }
            let pipeline = Rc::new(Pipeline::new(
                ids,
                clock,
                auth,
                live.clone(),
                limiter,
                policy,
                Submitter::new(info.id, live.clone(), local.clone(), mesh),
                state,
                callbacks,
            ));
            let listener = match glommio::net::TcpListener::bind(listen) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(shard = info.id, %listen, error = %e, "cannot listen");
                    return;
                }
            };
            let reloader = shard.clone();
            let settings = Rc::new(HttpSettings {
                max_body_bytes,
                header_read_timeout,
                history: history_queries,
                admin: Admin {
                    api_key: admin_key,
                    reload: Box::new(move || {
                        let shard = reloader.clone();
                        Box::pin(async move { shard.request_reload().await })
                    }),
                    blacklist: blacklist_reload,
                },
            });
            let grpc = Rc::new(GrpcShard {
                pipeline: pipeline.clone(),
                receipts,
                inbound: inbound_stream,
                shutdown: shutdown.clone(),
            });
            http::serve(listener, pipeline, settings, grpc, shutdown).await;
            let sessions: Vec<Session> = local.borrow().values().cloned().collect();
            for s in sessions {
                s.stopped().await;
            }
            tracing::debug!(shard = info.id, "shard stopped");
        }
    });
    // After the shards (no more receipts), before the writer it settles its entries through.
    webhooks.shutdown();
    // After every producer of events (shards, webhook sender): what is left goes to
    // PostgreSQL or to a spill file.
    if let Some(h) = history {
        h.shutdown();
    }
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
/// member is down the last rate stays (routing refuses with 503 `pool_unavailable`). Runs on
/// shard 0 and follows reloads.
async fn follow_pool_health(shard: Rc<ShardRules>) {
    let mut last: HashMap<String, (u64, u32)> = HashMap::new();
    while !shard.shutdown.is_fired() {
        let now = LinkTable::now_ms();
        let (links, rules) = (shard.live.links(), shard.rules.borrow().clone());
        for (name, pool) in &rules.pools {
            let up = |l: &str| links.get(&LinkId::new(l)).is_some_and(|e| e.state(now) != LinkState::Down);
            let rate = pool_rate(&rules.links, pool, up);
            let key = (rate.per_second as u64, rate.burst);
            if key.0 > 0 && last.get(name) != Some(&key) {
                if last.contains_key(name) {
                    tracing::info!(pool = %name, rate = rate.per_second, "pool rate follows its members' health");
                }
                shard.limits.set_rate(&LimitTarget::Pool(Arc::from(name.as_str())), rate);
                last.insert(name.clone(), key);
            }
        }
        glommio::timer::sleep(Duration::from_millis(250)).or(shard.shutdown.wait()).await;
    }
}

/// Shard 0 turns SIGHUPs (counted by the signal thread) into reloads, checking every 200 ms.
async fn watch_hangups(shard: Rc<ShardRules>, hangups: Arc<AtomicU64>) {
    let mut seen = hangups.load(Ordering::SeqCst);
    while !shard.shutdown.is_fired() {
        glommio::timer::sleep(Duration::from_millis(200)).or(shard.shutdown.wait()).await;
        let now = hangups.load(Ordering::SeqCst);
        if now != seen {
            seen = now;
            if let Err(e) = shard.reload().await {
                tracing::error!(error = %e, "reload refused; the running rules stay");
            }
        }
    }
}

/// One shard's view of the rules in force, its sessions, and the reload machinery.
struct ShardRules {
    id: usize,
    nr_shards: usize,
    live: Rc<Live>,
    rules: RefCell<Arc<Rules>>,
    smpp: Arc<SmppConfig>,
    /// For checking `[[mo_routes]]` on reload.
    clients: Arc<Vec<ClientConfig>>,
    /// Node-wide (the store routes with it); shard 0 swaps its routes on reload.
    mo_router: Arc<MoRouter>,
    local: LocalSessions,
    /// Set once the shard has joined the receipt hub (sessions need it to start).
    inbound: RefCell<Option<Rc<dyn Inbound>>>,
    /// Set once the shard has joined the mesh.
    mesh: RefCell<Option<MeshSender<Handoff>>>,
    limits: Arc<LimiterNode>,
    shutdown: Shutdown,
}

impl ShardRules {
    fn on_handoff(self: &Rc<Self>, h: Handoff) {
        match h {
            Handoff::Submit { link, index, parts, reply } => submit::on_submit(&self.local, link, index, parts, reply),
            Handoff::Reload(plan) => self.apply(&plan),
            Handoff::ReloadRequest { reply } => {
                let shard = self.clone();
                glommio::spawn_local(async move {
                    let _requester_may_be_gone = reply.send(shard.reload().await);
                })
                .detach();
            }
        }
    }

    /// Starts this shard's sessions of `links` that are not already running in `old`.
    fn start_sessions(&self, links: &LinkTable, old: Option<&LinkTable>) {
        let Some(inbound) = self.inbound.borrow().clone() else { return };
        for (link, index, slot) in links.owned_by(self.id) {
            if old.is_some_and(|o| links.same_session(o, link, index)) {
                continue;
            }
            let session =
                Session::start(slot.config.clone(), inbound.clone(), slot.health.clone(), self.shutdown.clone());
            self.local.borrow_mut().insert((link.clone(), index), session);
        }
    }

    /// Applies a plan on this shard: stop sessions that go, start those that come, swap the
    /// router. Sessions that stay are not touched, so their traffic goes on.
    fn apply(&self, plan: &Plan) {
        let old = self.live.links();
        let going: Vec<(LinkId, usize)> = old
            .owned_by(self.id)
            .filter(|(link, i, _)| !plan.links.same_session(&old, link, *i))
            .map(|(link, i, _)| (link.clone(), i))
            .collect();
        for key in going {
            if let Some(session) = self.local.borrow_mut().remove(&key) {
                session.stop();
            }
        }
        self.start_sessions(&plan.links, Some(&old));
        self.live.swap(Router::new(plan.links.clone(), &plan.rules));
        *self.rules.borrow_mut() = plan.rules.clone();
    }

    /// From any shard: asks shard 0 to reload and waits for its answer.
    async fn request_reload(self: &Rc<Self>) -> Result<Summary, String> {
        if self.id == 0 {
            return self.reload().await;
        }
        let (reply, answer) = futures_channel::oneshot::channel();
        let mesh = self.mesh.borrow().clone().ok_or("the shard mesh is not ready")?;
        mesh.try_send(0, Handoff::ReloadRequest { reply }).map_err(|_| "shard 0 is busy; retry".to_owned())?;
        answer.await.map_err(|_| "shard 0 is shutting down".to_owned())?
    }

    /// Shard 0: read and validate the rules file, plan, apply here, send to every shard.
    async fn reload(&self) -> Result<Summary, String> {
        let new_rules = config::load_rules(&self.smpp.rules_file).map_err(|e| e.to_string())?;
        config::check_mo_clients(&self.smpp.rules_file, &new_rules, &self.clients).map_err(|e| e.to_string())?;
        let plan =
            Arc::new(reload::plan(&self.live.links(), &self.rules.borrow(), new_rules, &self.smpp, self.nr_shards));
        self.apply(&plan);
        self.mo_router.swap(&plan.rules.mo_routes);
        let mesh = self.mesh.borrow().clone();
        if let Some(mesh) = mesh {
            for shard in (0..self.nr_shards).filter(|&s| s != self.id) {
                mesh.send(shard, Handoff::Reload(plan.clone())).await.map_err(|_| format!("shard {shard} is gone"))?;
            }
        }
        for (name, l) in &plan.rules.links {
            let target = LimitTarget::Link(LinkId::new(name));
            if !self.limits.set_rate(&target, Rate::new(f64::from(l.esme_rate), l.esme_rate_burst)) {
                tracing::warn!(link = %name, "link added by reload: its esme_rate is enforced by the session pacer until the next restart");
            }
        }
        let s = &plan.summary;
        tracing::info!(added = ?s.added, removed = ?s.removed, rebound = ?s.rebound, retuned = ?s.retuned, "rules reloaded");
        Ok(plan.summary.clone())
    }
}

/// The configured state backend, and the lock of its directory (embedded store only).
fn open_store(
    cfg: &StateConfig,
    targets: WebhookTargets,
    mo_router: Arc<MoRouter>,
) -> Result<(Box<dyn StateStore>, Option<File>), String> {
    match cfg.backend {
        StateBackend::Embedded => {
            let lock = lock_state_dir(&cfg.path)?;
            let failed = |e: StoreError| format!("state.path {}: {e}", cfg.path.display());
            let mut store = EmbeddedStore::open(&cfg.path)
                .map_err(failed)?
                .with_webhooks(targets)
                .with_mo_router(mo_router)
                .with_checkpoint_interval(Duration::from_millis(cfg.checkpoint_interval_ms));
            crate::observe::metrics::set_embedded(store.stats());
            store.recover().map_err(failed)?;
            Ok((Box::new(store), Some(lock)))
        }
        StateBackend::Aerospike => {
            let store = AerospikeStore::open(&cfg.aerospike).map_err(|e| format!("state.aerospike: {e}"))?;
            crate::observe::metrics::set_aerospike(store.stats());
            tracing::info!(hosts = ?cfg.aerospike.hosts, namespace = %cfg.aerospike.namespace, set = %cfg.aerospike.set, "state store: aerospike");
            Ok((Box::new(store.with_webhooks(targets).with_mo_router(mo_router)), None))
        }
    }
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
