//! The inbound driver (DESIGN.md 9-10): what an SMSC's deliver_sm means.
//!
//! A receipt is correlated by (link, SMSC message id) and kept in the state store before the
//! SMSC gets its deliver_sm_resp; a store failure answers ESME_RX_T_APPN so the SMSC retries.
//! The same store transaction owes the client's delivery-report webhook (`notify::outbox`),
//! so the acknowledgement also means the webhook will be sent.
//! Any other deliver_sm is an inbound message (MO): its concatenation info (UDH or SAR TLVs)
//! and text octets become one `notify::mo::MoPart`, which the store keeps durably before the
//! deliver_sm_resp; the store reassembles, routes (`[[mo_routes]]`) and owes the client's
//! webhook in the same transaction (`state/store.rs`). An MO that no route matches is kept,
//! counted and acknowledged like any other: an error would make the SMSC resend it forever.

use crate::clock::Clock;
use crate::ids::{IdGenerator, InboundId, LinkId, SmscMessageId};
use crate::notify::mo::MoPart;
use crate::notify::stream::{InboundEvent, ReceiptEvent, ShardInbound, ShardReceipts};
use crate::pipeline::route::Live;
use crate::smpp::concat;
use crate::smpp::pdu::{tag, CommandStatus, Sm};
use crate::smpp::receipt::{self, FinalState};
use crate::smpp::session::Inbound;
use crate::state::record::{Receipt, Status};
use crate::state::store::OpOutcome;
use crate::state::writer::StateHandle;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// esm_class bits 2-5 (SMPP 3.4 5.2.12): 0x04 marks an SMSC delivery receipt.
const ESM_CLASS_TYPE_MASK: u8 = 0x3C;
const ESM_CLASS_RECEIPT: u8 = 0x04;
/// esm_class bit 6: short_message starts with a user data header.
const ESM_CLASS_UDHI: u8 = 0x40;

pub struct InboundHandler {
    state: StateHandle,
    clock: Rc<dyn Clock>,
    /// For each link's `receipt_id_format`.
    links: Rc<Live>,
    /// Applied receipts go to the client's live watchers (gRPC WatchReceipts); never waits.
    receipts: ShardReceipts,
    /// Inbound messages go to their client's live watchers (gRPC WatchInbound); never waits.
    inbound: ShardInbound,
    /// The shard's id generator, shared with its pipeline: inbound ids never equal message ids.
    ids: Rc<RefCell<IdGenerator>>,
}

impl InboundHandler {
    pub fn new(
        state: StateHandle,
        clock: Rc<dyn Clock>,
        links: Rc<Live>,
        receipts: ShardReceipts,
        inbound: ShardInbound,
        ids: Rc<RefCell<IdGenerator>>,
    ) -> Self {
        InboundHandler { state, clock, links, receipts, inbound, ids }
    }

    /// An inbound message (part): kept durably, then acknowledged.
    fn inbound(&self, link: &LinkId, sm: &Sm) -> Pin<Box<dyn Future<Output = CommandStatus>>> {
        let now = self.clock.now_ms();
        let part = to_part(link, sm, InboundId(self.ids.borrow_mut().next(now).0), now);
        let state = self.state.clone();
        let link = link.clone();
        let watchers = self.inbound.clone();
        Box::pin(async move {
            match state.inbound(part).await {
                Ok(OpOutcome::InboundKept(message)) => {
                    if crate::history::enabled() {
                        crate::observe::events::history_mo(&message);
                    }
                    if let Some(client) = message.client.clone().filter(|_| watchers.anyone_watching()) {
                        watchers.publish(InboundEvent { client, message: *message });
                    }
                    CommandStatus::ROK
                }
                Ok(_) => CommandStatus::ROK,
                Err(e) => {
                    if let Some(suppressed) = crate::observe::events::log_due(link.as_str(), "mo_not_kept") {
                        tracing::warn!(%link, error = %e, suppressed, "inbound message not kept; asking the SMSC to retry");
                    }
                    CommandStatus::RX_T_APPN
                }
            }
        })
    }
}

impl Inbound for InboundHandler {
    fn deliver(&self, link: &LinkId, sm: Box<Sm>) -> Pin<Box<dyn Future<Output = CommandStatus>>> {
        if sm.esm_class & ESM_CLASS_TYPE_MASK != ESM_CLASS_RECEIPT {
            return self.inbound(link, &sm);
        }
        let id_format = self.links.links().get(link).map(|e| e.settings.receipt_id_format).unwrap_or_default();
        let r = match to_receipt(link, &sm, self.clock.now_ms()) {
            Parsed::Final(mut r) => {
                r.smsc_message_id =
                    SmscMessageId::new(&receipt::id_as_submitted(r.smsc_message_id.as_str(), id_format));
                r
            }
            Parsed::Intermediate => {
                tracing::debug!(%link, "intermediate receipt (ENROUTE/ACCEPTD) acknowledged");
                return Box::pin(async { CommandStatus::ROK });
            }
            Parsed::Unusable => {
                if let Some(suppressed) = crate::observe::events::log_due(link.as_str(), "receipt_unusable") {
                    tracing::warn!(%link, suppressed, "receipt without a message id or a known state; refused");
                }
                return Box::pin(async { CommandStatus::RX_P_APPN });
            }
        };
        crate::observe::events::receipt(link, r.status);
        let state = self.state.clone();
        let receipts = self.receipts.clone();
        // A copy for the watchers and for history, only when either wants it.
        let copy = (receipts.anyone_watching() || crate::history::enabled()).then(|| r.clone());
        Box::pin(async move {
            match state.receipt(r).await {
                Ok(OpOutcome::ReceiptApplied(id, client)) => {
                    if let Some(r) = copy.as_ref().filter(|_| crate::history::enabled()) {
                        crate::observe::events::history_receipt(id, client.clone(), r);
                    }
                    if let Some(r) = copy.filter(|_| receipts.anyone_watching()) {
                        receipts.publish(ReceiptEvent { client, id, receipt: r });
                    }
                    CommandStatus::ROK
                }
                Ok(_) => CommandStatus::ROK,
                Err(e) => {
                    if let Some(suppressed) = crate::observe::events::log_due("", "receipt_not_kept") {
                        tracing::warn!(error = %e, suppressed, "receipt not kept; asking the SMSC to retry");
                    }
                    CommandStatus::RX_T_APPN
                }
            }
        })
    }
}

fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// One deliver_sm as an inbound part: the text octets are short_message after its UDH, or
/// message_payload when short_message is empty.
fn to_part(link: &LinkId, sm: &Sm, id: InboundId, now_ms: u64) -> MoPart {
    let body = match sm.tlv(tag::MESSAGE_PAYLOAD) {
        Some(payload) if sm.short_message.is_empty() => payload,
        _ => sm.short_message.as_slice(),
    };
    let sar = match (sm.tlv(tag::SAR_MSG_REF_NUM), sm.tlv(tag::SAR_TOTAL_SEGMENTS), sm.tlv(tag::SAR_SEGMENT_SEQNUM)) {
        (Some(&[hi, lo]), Some(&[total]), Some(&[seq])) => Some((u16::from_be_bytes([hi, lo]), total, seq)),
        _ => None,
    };
    let (part_of, octets) = concat::part_of(sm.esm_class & ESM_CLASS_UDHI != 0, body, sar);
    MoPart {
        id,
        link: link.clone(),
        from: sm.source_addr.clone(),
        to: sm.destination_addr.clone(),
        data_coding: sm.data_coding,
        part_of,
        octets: octets.to_vec(),
        received_at_ms: now_ms,
    }
}

enum Parsed {
    Final(Receipt),
    /// ENROUTE or ACCEPTD: not an outcome; nothing to record.
    Intermediate,
    /// No message id or no state: nothing to correlate.
    Unusable,
}

/// The TLVs win over the receipt text, whose format varies by vendor.
fn to_receipt(link: &LinkId, sm: &Sm, now_ms: u64) -> Parsed {
    let text = receipt::parse(&sm.short_message);
    let Some(id) = sm.tlv(tag::RECEIPTED_MESSAGE_ID).map(c_string).filter(|s| !s.is_empty()).or(text.id) else {
        return Parsed::Unusable;
    };
    let state = sm
        .tlv(tag::MESSAGE_STATE)
        .and_then(|v| v.first().copied())
        .and_then(FinalState::from_message_state_tlv)
        .or_else(|| text.stat.as_deref().and_then(FinalState::from_stat));
    let status = match state {
        None => return Parsed::Unusable,
        Some(FinalState::Accepted | FinalState::Enroute) => return Parsed::Intermediate,
        Some(s) => s,
    };
    let status = match status {
        FinalState::Delivered => Status::Delivered,
        FinalState::Undeliverable => Status::Undeliverable,
        FinalState::Expired => Status::Expired,
        FinalState::Deleted => Status::Deleted,
        FinalState::Rejected => Status::ReceiptRejected,
        FinalState::Unknown | FinalState::Accepted | FinalState::Enroute => Status::Unknown,
    };
    let error_code = sm
        .tlv(tag::NETWORK_ERROR_CODE)
        .filter(|v| v.len() == 3)
        .map(|v| format!("{}:{}", v[0], u16::from_be_bytes([v[1], v[2]])))
        .or(text.err);
    Parsed::Final(Receipt {
        link: link.clone(),
        smsc_message_id: SmscMessageId::new(&id),
        status,
        error_code,
        smsc_done_date: text.done_date,
        received_at_ms: now_ms,
    })
}
