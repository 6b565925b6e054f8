//! Records and receipts for the state tests (backend and writer).

use super::record::{MessageRecord, Part, Receipt, Status, Transition};
use crate::ids::{ClientId, LinkId, MessageId, Msisdn, SmscMessageId};

/// A one-part record of client `acme` on link `vf-1`: accepted, and submitted with SMSC id
/// `smsc` when given.
pub fn record(id: u64, smsc: Option<&str>) -> MessageRecord {
    let mut rec = MessageRecord {
        id: MessageId(id),
        client: ClientId::new("acme"),
        to: Msisdn("4915112345678".to_owned()),
        from: "ACME".to_owned(),
        link: LinkId::new("vf-1"),
        route: String::new(),
        client_ref: Some("ref-1".to_owned()),
        callback_url: None,
        segments: 1,
        parts: vec![Part::default()],
        status: Status::Accepted,
        transitions: Vec::new(),
    };
    rec.push(Transition::at(Status::Accepted, 1_000));
    if let Some(s) = smsc {
        rec.parts[0].smsc_message_id = Some(SmscMessageId::new(s));
        rec.parts[0].status = Some(Status::Submitted);
        rec.push(Transition::at(Status::Submitted, 1_010));
    }
    rec
}

/// A receipt on link `vf-1` for SMSC id `smsc`.
pub fn receipt(smsc: &str, status: Status) -> Receipt {
    Receipt {
        link: LinkId::new("vf-1"),
        smsc_message_id: SmscMessageId::new(smsc),
        status,
        error_code: Some("000".to_owned()),
        smsc_done_date: Some("2511231204".to_owned()),
        received_at_ms: 2_000,
    }
}
