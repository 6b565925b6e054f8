//! Assembly: from a validated configuration to running shards, and back to a clean exit.

use crate::clock::{Clock, SystemClock};
use crate::config::BindConfig;
use crate::config::Loaded;
use crate::ids::{IdGenerator, LinkId};
use crate::inbound::InboundHandler;
use crate::ingress::http::{self, HttpSettings};
use crate::pipeline::auth::Auth;
use crate::pipeline::route::Router;
use crate::pipeline::submit::{self, Handoff, LocalSessions, Submitter};
use crate::pipeline::Pipeline;
use crate::smpp::link::{LinkSettings, LinkTable};
use crate::smpp::session::{BindMode, Inbound, Session, SessionConfig};
use crate::state::embedded::EmbeddedStore;
use crate::state::writer::{Writer, WriterConfig};
use shards::{Mesh, ShutdownTrigger};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

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
    let settings = HttpSettings {
        max_body_bytes: cfg.http.max_body_bytes,
        header_read_timeout: Duration::from_millis(cfg.http.header_read_timeout_ms),
    };
    let listen = cfg.http.listen;
    let node = cfg.node.id;
    let settings = Arc::new(settings);
    tracing::info!(%listen, shards = nr_shards, links = links.iter().count(), "smsgate starting");

    let result = shards::run(&cpus, &trigger, move |info, shutdown| {
        let (links, auth, mesh, state, settings) =
            (links.clone(), auth.clone(), mesh.clone(), state.clone(), settings.clone());
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
            let inbound: Rc<dyn Inbound> = Rc::new(InboundHandler::new(state.clone(), clock.clone(), links.clone()));
            for (link, index, slot) in links.owned_by(info.id) {
                let session =
                    Session::start(slot.config.clone(), inbound.clone(), slot.health.clone(), shutdown.clone());
                local.borrow_mut().insert((link.clone(), index), session);
            }
            let pipeline = Rc::new(Pipeline::new(
                IdGenerator::new(node, info.id),
                clock,
                auth,
                Router::new(links.clone()),
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
            http::serve(listener, pipeline, settings, shutdown).await;
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
