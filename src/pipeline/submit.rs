//! Stage 7: submit over a bound session of the routed link. A session owned by this shard is
//! used directly; otherwise the submit is handed to the owning shard over the mesh.

use super::parse::SubmitRequest;
use super::route::Live;
use crate::ids::LinkId;
use crate::reload::{Plan, Summary};
use crate::smpp::concat::{self, LongMessages};
use crate::smpp::pdu::{tag, Sm, Tlv};
use crate::smpp::session::{Session, SubmitError, SubmitResult};
use futures_channel::oneshot;
use shards::MeshSender;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// Work one shard hands to another over the mesh.
pub enum Handoff {
    /// A reload's plan, built by shard 0, for every other shard to apply.
    Reload(Arc<Plan>),
    /// Asks shard 0 (which serialises reloads) to reload the rules and answer.
    ReloadRequest { reply: oneshot::Sender<Result<Summary, String>> },
    Submit {
        link: LinkId,
        index: usize,
        /// The message's parts, in order; all go over the same session.
        parts: Vec<Sm>,
        reply: oneshot::Sender<Vec<Result<SubmitResult, SubmitError>>>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitFailure {
    /// No session of the link is bound.
    NoSession(LinkId),
    /// The owning shard's mesh queue is full.
    Busy,
    /// The session could not complete the submit.
    Smpp(SubmitError),
}

/// This shard's sessions, by (link, index).
pub type LocalSessions = Rc<RefCell<HashMap<(LinkId, usize), Session>>>;

pub struct Submitter {
    me: usize,
    live: Rc<Live>,
    local: LocalSessions,
    mesh: MeshSender<Handoff>,
    /// Rotates the first slot tried, so a link's sessions share the load.
    next: Cell<usize>,
}

impl Submitter {
    pub fn new(me: usize, live: Rc<Live>, local: LocalSessions, mesh: MeshSender<Handoff>) -> Self {
        Submitter { me, live, local, mesh, next: Cell::new(0) }
    }

    /// Submits every part of one message over one session of `link`: one result per part, or
    /// a failure before anything was sent.
    pub async fn submit(
        &self,
        link: &LinkId,
        parts: Vec<Sm>,
    ) -> Result<Vec<Result<SubmitResult, SubmitError>>, SubmitFailure> {
        let links = self.live.links();
        let slots = links.slots(link).ok_or_else(|| SubmitFailure::NoSession(link.clone()))?;
        let start = self.next.get();
        self.next.set(start.wrapping_add(1));
        let order = (0..slots.len()).map(|k| (start + k) % slots.len());
        // Prefer a bound session on this shard; else any bound one.
        let local = order.clone().find(|&i| slots[i].shard == self.me && slots[i].can_submit());
        let chosen = local.or_else(|| order.clone().find(|&i| slots[i].can_submit()));
        let Some(index) = chosen else {
            return Err(SubmitFailure::NoSession(link.clone()));
        };
        if slots[index].shard == self.me {
            let session = self.local.borrow().get(&(link.clone(), index)).cloned();
            let session = session.ok_or_else(|| SubmitFailure::NoSession(link.clone()))?;
            return Ok(session.submit_all(parts).await);
        }
        let (reply, answer) = oneshot::channel();
        let handoff = Handoff::Submit { link: link.clone(), index, parts, reply };
        if self.mesh.try_send(slots[index].shard, handoff).is_err() {
            return Err(SubmitFailure::Busy);
        }
        // A dropped reply: the owning shard shut down before sending anything.
        answer.await.map_err(|_| SubmitFailure::NoSession(link.clone()))
    }
}

/// Runs a submit handed over by another shard on this shard's session.
pub fn on_submit(
    local: &LocalSessions,
    link: LinkId,
    index: usize,
    parts: Vec<Sm>,
    reply: oneshot::Sender<Vec<Result<SubmitResult, SubmitError>>>,
) {
    let session = local.borrow().get(&(link, index)).cloned();
    glommio::spawn_local(async move {
        let result = match session {
            Some(s) => s.submit_all(parts).await,
            None => parts.iter().map(|_| Err(SubmitError::NotBound)).collect(),
        };
        let _requester_may_be_gone = reply.send(result);
    })
    .detach();
}

/// The submit_sm PDUs for a validated request, one per part; a receipt is always requested.
pub fn parts(req: &SubmitRequest, mode: LongMessages, reference: u16) -> Vec<Sm> {
    concat::split(&req.text, mode, reference)
        .into_iter()
        .map(|chunk| {
            let mut tlvs = req.tlvs.clone();
            let short_message = if chunk.payload {
                tlvs.push(Tlv::new(tag::MESSAGE_PAYLOAD, chunk.bytes));
                Vec::new()
            } else {
                chunk.bytes
            };
            Sm {
                source_addr_ton: req.from.ton,
                source_addr_npi: req.from.npi,
                source_addr: req.from.addr.clone(),
                dest_addr_ton: 1,
                dest_addr_npi: 1,
                destination_addr: req.to.digits().to_owned(),
                esm_class: if chunk.udhi { ESM_CLASS_UDHI } else { 0 },
                registered_delivery: 1,
                data_coding: req.text.data_coding,
                short_message,
                tlvs,
                ..Sm::default()
            }
        })
        .collect()
}

/// esm_class bit 6: short_message starts with a user data header.
const ESM_CLASS_UDHI: u8 = 0x40;
