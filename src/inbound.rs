//! The inbound driver (DESIGN.md 9-10): what an SMSC's deliver_sm means.
//!
//! A receipt is correlated by (link, SMSC message id) and kept in the state store before the
//! SMSC gets its deliver_sm_resp; a store failure answers ESME_RX_T_APPN so the SMSC retries.
//! The same store transaction owes the client's delivery-report webhook (`notify::outbox`),
//! so the acknowledgement also means the webhook will be sent.
//! Inbound messages (MO) are refused with ESME_RX_T_APPN until MO routing lands (issue 11),
//! so the SMSC keeps them instead of smsgate losing them.

use crate::clock::Clock;
use crate::ids::{LinkId, SmscMessageId};
use crate::notify::stream::ShardReceipts;
use crate::pipeline::route::Live;
use crate::smpp::pdu::{tag, CommandStatus, Sm};
use crate::smpp::receipt::{self, FinalState};
use crate::smpp::session::Inbound;
use crate::state::record::{Receipt, Status};
use crate::state::store::OpOutcome;
use crate::state::writer::StateHandle;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// esm_class bits 2-5 (SMPP 3.4 5.2.12): 0x04 marks an SMSC delivery receipt.
const ESM_CLASS_TYPE_MASK: u8 = 0x3C;
const ESM_CLASS_RECEIPT: u8 = 0x04;

pub struct InboundHandler {
    state: StateHandle,
    clock: Rc<dyn Clock>,
    /// For each link's `receipt_id_format`.
    links: Rc<Live>,
    /// Applied receipts go to the client's live watchers (gRPC WatchReceipts); never waits.
    receipts: ShardReceipts,
}

impl InboundHandler {
    pub fn new(state: StateHandle, clock: Rc<dyn Clock>, links: Rc<Live>, receipts: ShardReceipts) -> Self {
        InboundHandler { state, clock, links, receipts }
    }
}

impl Inbound for InboundHandler {
    fn deliver(&self, link: &LinkId, sm: Box<Sm>) -> Pin<Box<dyn Future<Output = CommandStatus>>> {
        if sm.esm_class & ESM_CLASS_TYPE_MASK != ESM_CLASS_RECEIPT {
            if let Some(suppressed) = crate::observe::events::log_due(link.as_str(), "mo_refused") {
                tracing::warn!(%link, suppressed, "inbound message (MO) refused: MO routing is not available yet");
            }
            return Box::pin(async { CommandStatus::RX_T_APPN });
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
        // A copy for the watchers only when there are any.
        let copy = receipts.anyone_watching().then(|| r.clone());
        Box::pin(async move {
            match state.receipt(r).await {
                Ok(OpOutcome::ReceiptApplied(id, client)) => {
                    if let Some(r) = copy {
                        receipts.publish(client, id, r);
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
