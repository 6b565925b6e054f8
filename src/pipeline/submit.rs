//! Stage 7: submit over a bound session of the routed link. A session owned by this shard is
//! used directly; otherwise the submit is handed to the owning shard over the mesh.

use crate::ids::LinkId;
use crate::smpp::link::LinkTable;
use crate::smpp::pdu::Sm;
use crate::smpp::session::{Session, SubmitError, SubmitResult};
use futures_channel::oneshot;
use shards::MeshSender;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// Work one shard hands to another over the mesh.
pub enum Handoff {
    Submit {
        link: LinkId,
        index: usize,
        sm: Box<Sm>,
        reply: oneshot::Sender<Result<SubmitResult, SubmitError>>,
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
    links: Arc<LinkTable>,
    local: LocalSessions,
    mesh: MeshSender<Handoff>,
    /// Rotates the first slot tried, so a link's sessions share the load.
    next: Cell<usize>,
}

impl Submitter {
    pub fn new(
        me: usize,
        links: Arc<LinkTable>,
        local: LocalSessions,
        mesh: MeshSender<Handoff>,
    ) -> Self {
        Submitter {
            me,
            links,
            local,
            mesh,
            next: Cell::new(0),
        }
    }

    pub async fn submit(&self, link: &LinkId, sm: Sm) -> Result<SubmitResult, SubmitFailure> {
        let slots = self
            .links
            .slots(link)
            .ok_or_else(|| SubmitFailure::NoSession(link.clone()))?;
        let start = self.next.get();
        self.next.set(start.wrapping_add(1));
        let order = (0..slots.len()).map(|k| (start + k) % slots.len());
        // Prefer a bound session on this shard; else any bound one.
        let local = order
            .clone()
            .find(|&i| slots[i].shard == self.me && slots[i].is_bound());
        let chosen = local.or_else(|| order.clone().find(|&i| slots[i].is_bound()));
        let Some(index) = chosen else {
            return Err(SubmitFailure::NoSession(link.clone()));
        };
        if slots[index].shard == self.me {
            let session = self.local.borrow().get(&(link.clone(), index)).cloned();
            let session = session.ok_or_else(|| SubmitFailure::NoSession(link.clone()))?;
            return session.submit(sm).await.map_err(SubmitFailure::Smpp);
        }
        let (reply, answer) = oneshot::channel();
        let handoff = Handoff::Submit {
            link: link.clone(),
            index,
            sm: Box::new(sm),
            reply,
        };
        if self.mesh.try_send(slots[index].shard, handoff).is_err() {
            return Err(SubmitFailure::Busy);
        }
        match answer.await {
            Ok(result) => result.map_err(SubmitFailure::Smpp),
            // The owning shard dropped the request: it is shutting down before sending.
            Err(_) => Err(SubmitFailure::Smpp(SubmitError::NotBound)),
        }
    }
}

/// Runs a hand-off that arrived from another shard on this shard's session.
pub fn on_handoff(local: &LocalSessions, handoff: Handoff) {
    match handoff {
        Handoff::Submit {
            link,
            index,
            sm,
            reply,
        } => {
            let session = local.borrow().get(&(link, index)).cloned();
            glommio::spawn_local(async move {
                let result = match session {
                    Some(s) => s.submit(*sm).await,
                    None => Err(SubmitError::NotBound),
                };
                let _requester_may_be_gone = reply.send(result);
            })
            .detach();
        }
    }
}
