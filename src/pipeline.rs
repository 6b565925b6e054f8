//! The outbound driver: the only place that knows the order of the stages (DESIGN.md 1-8).
//!
//! ```text
//! 1 parse   → 2 auth → 3 L1, 4 L2 → 5 policy → 6 route → 7 submit
//!           → 8 record (durable) → answer
//! ```
//! Every stage returns `Result<_, Rejection>`; `ingress/reply.rs` turns a rejection into the
//! HTTP (and later gRPC) answer.

pub mod auth;
pub mod limit;
pub mod parse;
pub mod policy;
pub mod record;
pub mod route;
pub mod submit;

use crate::clock::Clock;
use crate::ids::{CampaignId, ClientId, IdGenerator, InboundId, LinkId, MessageId, SmscMessageId};
use crate::notify::mo::InboundMessage;
use crate::notify::outbox::CallbackPolicy;
use crate::observe::events;
use crate::smpp::concat;
use crate::smpp::link::LinkTable;
use crate::smpp::pdu::CommandStatus;
use crate::state::record::{MessageRecord, Status, Transition};
use crate::state::store::{OpOutcome, StoreError};
use crate::state::writer::StateHandle;
use auth::{Auth, AuthError};
use limit::{LimitRejection, LimitTarget, Limiter};
use parse::{ParseError, SubmitRequest};
use policy::campaign::{Built, CampaignError, CampaignView};
use policy::{Policy, PolicyRejection};
use route::{Dest, Live, RouteError};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use submit::{SubmitFailure, Submitter};

/// Why a request did not get a submitted message. Plain data: a refusal is normal.
#[derive(Debug)]
pub enum Rejection {
    Parse(ParseError),
    Auth(AuthError),
    Route(RouteError),
    /// Over a rate limit (L1, L2 or the client's); nothing was queued.
    Limited(LimitRejection),
    /// Refused by the contact policy (stage 5); never submitted, no record kept.
    Policy(PolicyRejection),
    /// A call of the campaign API (`/api/v1/campaigns`) failed.
    Campaign(CampaignError),
    /// The message never reached the SMSC; no record was kept.
    NotSubmitted(SubmitFailure),
    /// The SMSC refused it; the record (status `rejected`) was kept under `id`.
    SmscRejected {
        id: MessageId,
        status: CommandStatus,
    },
    /// No answer from the SMSC; the record (status `unknown`) was kept under `id`.
    SmscTimeout {
        id: MessageId,
    },
    /// The state store could not keep the record; the client gets no id.
    State(StoreError),
    /// `GET /api/v1/messages/{id}` or `/api/v1/inbound/{id}` with a malformed id.
    BadMessageId,
    /// No such message for this client.
    MessageNotFound,
    /// `GET /api/v1/inbound/{id}`: no such inbound message for this client.
    InboundNotFound,
}

impl From<ParseError> for Rejection {
    fn from(e: ParseError) -> Self {
        Rejection::Parse(e)
    }
}

impl From<AuthError> for Rejection {
    fn from(e: AuthError) -> Self {
        Rejection::Auth(e)
    }
}

impl From<RouteError> for Rejection {
    fn from(e: RouteError) -> Self {
        Rejection::Route(e)
    }
}

/// The answer to a successful submit.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Submitted {
    pub id: MessageId,
    pub status: Status,
    pub link: LinkId,
    /// The first part's SMSC id.
    pub smsc_message_id: SmscMessageId,
    /// Every part's SMSC id, when the text went in more than one submit_sm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smsc_message_ids: Option<Vec<SmscMessageId>>,
    pub segments: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
}

/// One shard's outbound pipeline.
pub struct Pipeline {
    /// Shared with the shard's inbound driver, so message and inbound ids never collide.
    ids: Rc<RefCell<IdGenerator>>,
    /// Reference number of the next concatenated message's UDH (8 or 16 bits used).
    concat_ref: Cell<u16>,
    clock: Rc<dyn Clock>,
    auth: Arc<Auth>,
    /// The router in force; a reload swaps it.
    live: Rc<Live>,
    limiter: Rc<Limiter>,
    policy: Rc<Policy>,
    submitter: Submitter,
    state: StateHandle,
    /// Which hosts a `callback_url` may name (`webhooks.allowed_hosts`, `allowed_networks`).
    callbacks: Arc<CallbackPolicy>,
}

impl Pipeline {
    /// One handle per stage, in stage order.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ids: Rc<RefCell<IdGenerator>>,
        clock: Rc<dyn Clock>,
        auth: Arc<Auth>,
        live: Rc<Live>,
        limiter: Rc<Limiter>,
        policy: Rc<Policy>,
        submitter: Submitter,
        state: StateHandle,
        callbacks: Arc<CallbackPolicy>,
    ) -> Self {
        Pipeline { ids, concat_ref: Cell::new(0), clock, auth, live, limiter, policy, submitter, state, callbacks }
    }

    pub fn links(&self) -> Arc<LinkTable> {
        self.live.links()
    }

    /// The rate limiter's node-wide health, for dashboards.
    pub fn limit_stats(&self) -> limit::LimitStats {
        self.limiter.node().stats()
    }

    /// The router in force (links, pools), for dashboards.
    pub fn router(&self) -> Rc<route::Router> {
        self.live.router()
    }

    /// `POST /api/v1/messages`: stages 1-8 in order.
    pub async fn submit_json(&self, authorization: Option<&[u8]>, body: &[u8]) -> Result<Submitted, Rejection> {
        let parsed = parse::parse_submit(body).map_err(Rejection::Parse);
        // The client, when the key is valid, even for a body that does not parse: the live
        // feed and history attribute the refusal.
        let client = self.authenticate(authorization);
        let (req, client) = match (parsed, client) {
            (Ok(req), Ok(client)) => (req, client),
            (Err(r), client) => {
                events::refusal(client.ok(), None, &r, self.clock.now_ms());
                return Err(events::refused(r));
            }
            (Ok(_), Err(r)) => {
                events::refusal(None, None, &r, self.clock.now_ms());
                return Err(events::refused(r));
            }
        };
        self.submit(client, req).await
    }

    /// Stage 2, for ingresses that authenticate once per connection or stream.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<ClientId, Rejection> {
        Ok(self.auth.authenticate(authorization)?)
    }

    /// Stages 3-8 for a parsed (stage 1) and authenticated (stage 2) request. Every answer
    /// passes [`events::finished`] (outcome, refusal reason, answer time).
    pub async fn submit(&self, client: ClientId, req: SubmitRequest) -> Result<Submitted, Rejection> {
        if let Some(url) = &req.callback_url {
            self.callbacks.check(url).map_err(|reason| {
                events::refused(Rejection::Parse(parse::ParseError {
                    code: "invalid_callback_url",
                    field: Some("callback_url".to_owned()),
                    message: format!("`callback_url` {reason}"),
                }))
            })?;
        }
        let started = Instant::now();
        let to = crate::history::enabled().then(|| req.to.to_string());
        let result = self.stages(client.clone(), req).await;
        if let Err(r) = &result {
            events::refusal(Some(client), to, r, self.clock.now_ms());
        }
        events::finished(started, result)
    }

    async fn stages(&self, client: ClientId, req: SubmitRequest) -> Result<Submitted, Rejection> {
        // Before anything is spent or sent: a message the store could not keep would reach the
        // SMSC without an id for the client, who would send it again.
        self.state.check_up().map_err(Rejection::State)?;
        let router = self.live.router();
        let resolved = router.resolve(&req.target, &req.to, &req.from.addr, &client)?;
        let target = match &resolved.dest {
            Dest::Link(l) => LimitTarget::Link(l.clone()),
            Dest::Pool(p) => LimitTarget::Pool(Arc::from(p.as_str())),
        };
        let now = Instant::now();
        let segments = concat::min_segments(&req.text) as u32;
        self.limiter.admit(&client, &req.to, &target, segments).await.map_err(Rejection::Limited)?;
        self.limiter.check_destination(&client, &req.to, now).await.map_err(Rejection::Limited)?;
        let admitted = match self.policy.check(&client, &req, now, self.clock.now_ms()).await {
            Ok(admitted) => admitted,
            Err(refusal) => return Err(self.refused(client, req, &resolved.dest, refusal).await),
        };
        let result = self.send(client, req, resolved, &router).await;
        if matches!(result, Err(Rejection::Route(_) | Rejection::NotSubmitted(_) | Rejection::SmscRejected { .. })) {
            // Not sent: the message counts toward no cap and is no duplicate. Given back before
            // the answer, so a client that retries at once is not refused by its own failure.
            self.policy.release(admitted).await;
        }
        result
    }

    /// Keeps the record of a message the contact policy refused (status `refused`, the rule as
    /// the transition's reason), durably, so the refusal can be looked up by its id. If the
    /// store cannot keep it, the refusal is answered without an id (logged).
    async fn refused(
        &self,
        client: ClientId,
        req: SubmitRequest,
        dest: &Dest,
        mut refusal: PolicyRejection,
    ) -> Rejection {
        let now_ms = self.clock.now_ms();
        let id = self.ids.borrow_mut().next(now_ms);
        let (link, route) = match dest {
            Dest::Link(l) => (l.clone(), format!("link:{l}")),
            Dest::Pool(p) => (LinkId::new(""), format!("pool:{p}")),
        };
        let reason = Some(refusal.status.as_str().to_owned());
        let record = MessageRecord {
            id,
            client,
            to: req.to,
            from: req.from.addr,
            link,
            route,
            client_ref: req.client_ref,
            callback_url: req.callback_url,
            segments: concat::min_segments(&req.text) as u16,
            parts: Vec::new(),
            status: Status::Refused,
            transitions: vec![Transition { reason, ..Transition::at(Status::Refused, now_ms) }],
        };
        match self.state.put(record).await {
            Ok(_) => refusal.id = Some(id),
            Err(e) => {
                if let Some(suppressed) = events::log_due("", "refusal_not_kept") {
                    tracing::warn!(%id, error = %e, suppressed, "refused message's record not kept");
                }
            }
        }
        Rejection::Policy(refusal)
    }

    /// Stages 6b-8 for a message the limits and the policy let through.
    async fn send(
        &self,
        client: ClientId,
        req: SubmitRequest,
        resolved: route::Resolved,
        router: &route::Router,
    ) -> Result<Submitted, Rejection> {
        let routed = router.select(resolved)?;
        let link = routed.link;
        let settings = router.links().get(&link).map(|e| e.settings).unwrap_or_default();
        let accepted_at = self.clock.now_ms();
        let id = self.ids.borrow_mut().next(accepted_at);
        let reference = self.concat_ref.get();
        self.concat_ref.set(reference.wrapping_add(1));
        let parts = submit::parts(&req, settings.long_messages, reference);
        let segments = concat::segments(&req.text, settings.long_messages);
        let results = self.submitter.submit(&link, parts).await.map_err(Rejection::NotSubmitted)?;
        if let Some(Err(e)) = results.first().filter(|r| matches!(r, Err(e) if e.never_sent())) {
            return Err(Rejection::NotSubmitted(SubmitFailure::Smpp(e.clone())));
        }
        let mut record = MessageRecord {
            id,
            client,
            to: req.to,
            from: req.from.addr,
            link: link.clone(),
            route: routed.via,
            client_ref: req.client_ref,
            callback_url: req.callback_url,
            segments: segments as u16,
            parts: Vec::new(),
            status: Status::Accepted,
            transitions: vec![Transition::at(Status::Accepted, accepted_at)],
        };
        let outcome = record::apply_results(&mut record, &results, self.clock.now_ms());
        if outcome == record::Outcome::Unknown {
            if let Some(suppressed) = events::log_due(link.as_str(), "outcome_unknown") {
                tracing::warn!(%id, %link, suppressed, "submit outcome unknown");
            }
        }
        let answer = Submitted {
            id,
            status: record.status,
            link,
            smsc_message_id: record.first_smsc_id().cloned().unwrap_or_else(|| SmscMessageId::new("")),
            smsc_message_ids: (record.parts.len() > 1)
                .then(|| record.parts.iter().filter_map(|p| p.smsc_message_id.clone()).collect()),
            segments: record.segments,
            client_ref: record.client_ref.clone(),
        };
        let history = crate::history::enabled().then(|| (events::history_recorded(&record), record.client.clone()));
        let kept = match self.state.put(record).await {
            Ok(kept) => kept,
            Err(e) => {
                if let Some(suppressed) = events::log_due("", "record_not_kept") {
                    tracing::error!(%id, error = %e, suppressed, "record not kept; the client gets no id");
                }
                return Err(Rejection::State(e));
            }
        };
        if let Some((history, client)) = history {
            events::history_emit(history);
            // Receipts that came before the record was kept were applied by this put.
            if let OpOutcome::StoredWithReceipts(receipts) = kept {
                for r in &receipts {
                    events::history_receipt(id, client.clone(), r);
                }
            }
        }
        match outcome {
            record::Outcome::Submitted => Ok(answer),
            record::Outcome::Rejected(status) => Err(Rejection::SmscRejected { id, status }),
            record::Outcome::Unknown => Err(Rejection::SmscTimeout { id }),
        }
    }

    /// `POST /api/v1/campaigns`: a draft campaign of this client, under a new id.
    pub async fn create_campaign(&self, client: &ClientId, body: &[u8]) -> Result<CampaignView, Rejection> {
        let now_ms = self.clock.now_ms();
        let id = CampaignId(self.ids.borrow_mut().next(now_ms));
        self.policy.create_campaign(client, id, body, now_ms).await.map_err(Rejection::Campaign)
    }

    /// `POST /api/v1/campaigns/{id}/build`: CP1 reserved now for every recipient that may have it.
    pub async fn build_campaign(&self, client: &ClientId, id: &str) -> Result<Built, Rejection> {
        let id = campaign_id(id)?;
        self.policy.build_campaign(client, id, self.clock.now_ms()).await.map_err(Rejection::Campaign)
    }

    /// `DELETE /api/v1/campaigns/{id}`: cancelled, unused reservations given back.
    pub async fn cancel_campaign(&self, client: &ClientId, id: &str) -> Result<CampaignView, Rejection> {
        self.policy.cancel_campaign(client, campaign_id(id)?).await.map_err(Rejection::Campaign)
    }

    /// `GET /api/v1/campaigns/{id}`: a client sees its own campaigns only.
    pub async fn campaign(&self, client: &ClientId, id: &str) -> Result<CampaignView, Rejection> {
        self.policy.campaign(client, campaign_id(id)?).await.map_err(Rejection::Campaign)
    }

    /// `GET /api/v1/messages/{id}`: a client sees its own messages only.
    pub async fn message(&self, client: &ClientId, id: &str) -> Result<MessageRecord, Rejection> {
        let id = MessageId::parse(id).ok_or(Rejection::BadMessageId)?;
        match self.state.get(id).await.map_err(Rejection::State)? {
            Some(rec) if rec.client == *client => Ok(rec),
            _ => Err(Rejection::MessageNotFound),
        }
    }

    /// `GET /api/v1/inbound/{id}`: a client sees the inbound messages routed to it only.
    pub async fn inbound_message(&self, client: &ClientId, id: &str) -> Result<InboundMessage, Rejection> {
        let id = InboundId::parse(id).ok_or(Rejection::BadMessageId)?;
        match self.state.get_inbound(id).await.map_err(Rejection::State)? {
            Some(m) if m.client.as_ref() == Some(client) => Ok(m),
            _ => Err(Rejection::InboundNotFound),
        }
    }
}

/// A campaign id from a path; a malformed one is no campaign of anybody's.
fn campaign_id(id: &str) -> Result<CampaignId, Rejection> {
    CampaignId::parse(id).ok_or(Rejection::Campaign(CampaignError::NotFound))
}
