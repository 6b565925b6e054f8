//! The lifecycle record of one message, as the state store keeps it and
//! `GET /api/v1/messages/{id}` shows it.

use crate::ids::{ClientId, LinkId, MessageId, Msisdn, SmscMessageId};
use serde::{Deserialize, Serialize};

/// Where a message is in its life. The last transition's status is the record's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Passed every check; about to be submitted.
    Accepted,
    /// The SMSC answered submit_sm_resp with ESME_ROK and gave its message id.
    Submitted,
    /// The SMSC answered submit_sm_resp with an error status; never reached the network.
    Rejected,
    /// Receipt: delivered to the handset (DELIVRD).
    Delivered,
    /// Receipt: the network gave up (UNDELIV).
    Undeliverable,
    /// Receipt: validity period ran out (EXPIRED).
    Expired,
    /// Receipt: deleted at the SMSC (DELETED).
    Deleted,
    /// Receipt: the SMSC refused it after accepting it (REJECTD).
    ReceiptRejected,
    /// Outcome unknown: the PDU was written but no answer came (timeout, connection lost).
    Unknown,
}

impl Status {
    /// Final states get no further transitions from receipts.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Accepted | Status::Submitted | Status::Unknown)
    }
}

/// One step in a message's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub status: Status,
    /// Unix time in milliseconds when smsgate recorded it.
    pub at_ms: u64,
    /// SMPP command_status of the submit_sm_resp, when it was not ESME_ROK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_status: Option<u32>,
    /// From a receipt: the receipt's `err:` field or the network_error_code TLV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// From a receipt: the SMSC's `done date` exactly as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smsc_done_date: Option<String>,
}

impl Transition {
    pub fn at(status: Status, at_ms: u64) -> Self {
        Transition {
            status,
            at_ms,
            command_status: None,
            error_code: None,
            smsc_done_date: None,
        }
    }
}

/// Everything smsgate knows about one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: MessageId,
    pub client: ClientId,
    pub to: Msisdn,
    pub from: String,
    pub link: LinkId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
    pub segments: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smsc_message_id: Option<SmscMessageId>,
    pub status: Status,
    pub transitions: Vec<Transition>,
}

impl MessageRecord {
    /// Appends a transition and moves the status along with it.
    pub fn push(&mut self, t: Transition) {
        self.status = t.status;
        self.transitions.push(t);
    }
}

/// A delivery receipt, reduced to what the record keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub link: LinkId,
    pub smsc_message_id: SmscMessageId,
    /// Delivered, Undeliverable, Expired, Deleted, ReceiptRejected or Unknown.
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smsc_done_date: Option<String>,
    /// Unix ms when smsgate received it.
    pub received_at_ms: u64,
}

impl Receipt {
    pub fn transition(&self) -> Transition {
        Transition {
            status: self.status,
            at_ms: self.received_at_ms,
            command_status: None,
            error_code: self.error_code.clone(),
            smsc_done_date: self.smsc_done_date.clone(),
        }
    }
}
