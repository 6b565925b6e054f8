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
    /// Refused by the contact policy (the transition's `reason` says which rule); never
    /// submitted, no webhook (the client had its answer).
    Refused,
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
    /// Of a `refused` transition: the policy status (`blacklist`, `daily_cp`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Transition {
    pub fn at(status: Status, at_ms: u64) -> Self {
        Transition { status, at_ms, command_status: None, error_code: None, smsc_done_date: None, reason: None }
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
    /// How the link was chosen: `link:100`, `pool:eu link:101`, `prefix:49 pool:eu link:101`.
    #[serde(default)]
    pub route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
    /// Where this message's delivery-report webhooks go, instead of its client's `webhook_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// SMS segments the text takes (what the handset receives and the operator bills).
    pub segments: u16,
    /// One entry per submit_sm sent: one per segment with UDH concatenation, a single one when
    /// the whole text went in `message_payload`.
    pub parts: Vec<Part>,
    pub status: Status,
    pub transitions: Vec<Transition>,
}

/// One submit_sm of a message and what became of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The SMSC's id from submit_sm_resp, exactly as it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smsc_message_id: Option<SmscMessageId>,
    /// Submitted, Rejected or Unknown after the submit; the receipt's status once one came.
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smsc_done_date: Option<String>,
    /// Unix ms when this part's receipt arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_at_ms: Option<u64>,
}

/// What a receipt did to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptEffect {
    /// The part took the receipt; the message may now be final.
    Applied,
    /// The part already had a receipt (a resend); nothing changed.
    Duplicate,
}

impl MessageRecord {
    /// Appends a transition and moves the status along with it.
    pub fn push(&mut self, t: Transition) {
        self.status = t.status;
        self.transitions.push(t);
    }

    /// The SMSC id of the first part, for answers that show one.
    pub fn first_smsc_id(&self) -> Option<&SmscMessageId> {
        self.parts.first().and_then(|p| p.smsc_message_id.as_ref())
    }

    /// Applies a receipt to part `part`. When every part that reached the SMSC has its
    /// receipt and the message is not final yet, the message takes the aggregate status:
    /// `delivered` if every part was delivered, else the status of the first part that was
    /// not (with its error code), as one final transition.
    pub fn apply_receipt(&mut self, part: usize, r: &Receipt) -> ReceiptEffect {
        let Some(p) = self.parts.get_mut(part) else {
            return ReceiptEffect::Duplicate;
        };
        if p.receipt_at_ms.is_some() {
            return ReceiptEffect::Duplicate;
        }
        p.status = Some(r.status);
        p.error_code.clone_from(&r.error_code);
        p.smsc_done_date.clone_from(&r.smsc_done_date);
        p.receipt_at_ms = Some(r.received_at_ms);
        let sent: Vec<&Part> = self.parts.iter().filter(|p| p.smsc_message_id.is_some()).collect();
        let all_in = sent.iter().all(|p| p.receipt_at_ms.is_some());
        if self.status.is_final() || !all_in {
            return ReceiptEffect::Applied;
        }
        let worst = sent.iter().find(|p| p.status != Some(Status::Delivered));
        let transition = match worst {
            None => r.transition(),
            Some(p) => Transition {
                status: p.status.unwrap_or(Status::Unknown),
                at_ms: r.received_at_ms,
                command_status: None,
                error_code: p.error_code.clone(),
                smsc_done_date: p.smsc_done_date.clone(),
                reason: None,
            },
        };
        // A receipt can arrive before smsgate recorded the submit (it was parked, then applied
        // by the submit's write): keep the record's transitions in time order; the part keeps
        // the receipt's own arrival time in `receipt_at_ms`.
        let last = self.transitions.last().map_or(0, |t| t.at_ms);
        self.push(Transition { at_ms: transition.at_ms.max(last), ..transition });
        ReceiptEffect::Applied
    }
}

/// A delivery receipt, reduced to what the record keeps. `smsc_message_id` is already in the
/// form the link's submit_sm_resp used (see `smpp::receipt::canonical_id`).
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
            reason: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(parts: usize) -> MessageRecord {
        let mut rec = MessageRecord {
            id: MessageId(1),
            client: ClientId::new("acme"),
            to: Msisdn("4915112345678".into()),
            from: "ACME".into(),
            link: LinkId::new("100"),
            route: String::new(),
            client_ref: None,
            callback_url: None,
            segments: parts as u16,
            parts: (0..parts)
                .map(|i| Part {
                    smsc_message_id: Some(SmscMessageId::new(&format!("id{i}"))),
                    status: Some(Status::Submitted),
                    ..Part::default()
                })
                .collect(),
            status: Status::Accepted,
            transitions: vec![Transition::at(Status::Accepted, 1)],
        };
        rec.push(Transition::at(Status::Submitted, 2));
        rec
    }

    fn receipt(status: Status, err: &str) -> Receipt {
        Receipt {
            link: LinkId::new("100"),
            smsc_message_id: SmscMessageId::new("x"),
            status,
            error_code: Some(err.into()),
            smsc_done_date: None,
            received_at_ms: 10,
        }
    }

    #[test]
    fn the_message_is_final_when_every_part_has_its_receipt() {
        let mut rec = record(3);
        assert_eq!(rec.apply_receipt(0, &receipt(Status::Delivered, "000")), ReceiptEffect::Applied);
        assert_eq!(rec.apply_receipt(2, &receipt(Status::Delivered, "000")), ReceiptEffect::Applied);
        assert_eq!(rec.status, Status::Submitted, "one part still open");
        assert_eq!(rec.apply_receipt(0, &receipt(Status::Delivered, "000")), ReceiptEffect::Duplicate);
        rec.apply_receipt(1, &receipt(Status::Delivered, "000"));
        assert_eq!(rec.status, Status::Delivered);
        assert_eq!(rec.transitions.len(), 3);
    }

    #[test]
    fn one_undelivered_part_makes_the_message_undeliverable() {
        let mut rec = record(2);
        rec.apply_receipt(0, &receipt(Status::Undeliverable, "034"));
        rec.apply_receipt(1, &receipt(Status::Delivered, "000"));
        assert_eq!(rec.status, Status::Undeliverable);
        assert_eq!(rec.transitions.last().unwrap().error_code.as_deref(), Some("034"));
        assert_eq!(rec.parts[1].status, Some(Status::Delivered));
    }

    #[test]
    fn a_receipt_older_than_the_submit_keeps_transitions_in_order() {
        let mut rec = record(1);
        let early = Receipt { received_at_ms: 1, ..receipt(Status::Delivered, "000") };
        rec.apply_receipt(0, &early);
        let times: Vec<u64> = rec.transitions.iter().map(|t| t.at_ms).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert_eq!(rec.parts[0].receipt_at_ms, Some(1));
    }

    #[test]
    fn parts_never_sent_are_not_waited_for() {
        let mut rec = record(2);
        rec.parts[1].smsc_message_id = None;
        rec.apply_receipt(0, &receipt(Status::Delivered, "000"));
        assert_eq!(rec.status, Status::Delivered);
        assert_eq!(rec.apply_receipt(5, &receipt(Status::Delivered, "000")), ReceiptEffect::Duplicate);
    }
}
