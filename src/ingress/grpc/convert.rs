//! Protobuf messages to and from the pipeline's types.

use super::pb;
use crate::digest::hex;
use crate::notify::mo::InboundMessage;
use crate::notify::stream::ReceiptEvent;
use crate::pipeline::parse::{ParseError, SubmitFields, TlvField};
use crate::pipeline::Submitted;
use crate::state::record::{MessageRecord, Part, Status, Transition};

/// The submit fields as `parse::validate` takes them; validation happens there, once, for
/// both APIs. Only what protobuf can express and JSON cannot is checked here (a tag over 16
/// bits).
pub fn fields(m: pb::SubmitRequest) -> Result<SubmitFields, ParseError> {
    use pb::submit_request::Target;
    let (link, pool) = match m.target {
        Some(Target::Link(l)) => (Some(l), None),
        Some(Target::Pool(p)) => (None, Some(p)),
        None => (None, None),
    };
    let tlvs = m
        .tlvs
        .into_iter()
        .map(|t| {
            let tag = u16::try_from(t.tag).map_err(|_| ParseError {
                code: "invalid_tlv",
                field: Some("tlvs".into()),
                message: format!("TLV tag {} is over 65535", t.tag),
            })?;
            Ok(TlvField { tag, value: hex(&t.value) })
        })
        .collect::<Result<_, ParseError>>()?;
    Ok(SubmitFields {
        to: m.to,
        from: m.from,
        text: m.text,
        link,
        pool,
        client_ref: m.client_ref,
        callback_url: m.callback_url,
        tlvs,
        campaign: m.campaign,
    })
}

pub fn status(s: Status) -> pb::MessageStatus {
    use pb::MessageStatus as P;
    match s {
        Status::Accepted => P::Accepted,
        Status::Submitted => P::Submitted,
        Status::Rejected => P::Rejected,
        Status::Delivered => P::Delivered,
        Status::Undeliverable => P::Undeliverable,
        Status::Expired => P::Expired,
        Status::Deleted => P::Deleted,
        Status::ReceiptRejected => P::ReceiptRejected,
        Status::Unknown => P::Unknown,
        Status::Refused => P::Refused,
    }
}

pub fn submitted(s: Submitted) -> pb::SubmitResponse {
    pb::SubmitResponse {
        id: s.id.to_string(),
        status: status(s.status) as i32,
        link: s.link.to_string(),
        smsc_message_id: s.smsc_message_id.to_string(),
        segments: u32::from(s.segments),
        client_ref: s.client_ref,
        smsc_message_ids: s.smsc_message_ids.unwrap_or_default().into_iter().map(|i| i.to_string()).collect(),
    }
}

fn transition(t: Transition) -> pb::Transition {
    pb::Transition {
        status: status(t.status) as i32,
        at_ms: t.at_ms,
        command_status: t.command_status,
        error_code: t.error_code,
        smsc_done_date: t.smsc_done_date,
        reason: t.reason,
    }
}

fn part(p: Part) -> pb::Part {
    pb::Part {
        smsc_message_id: p.smsc_message_id.map(|s| s.to_string()),
        status: p.status.map_or(pb::MessageStatus::Unspecified, status) as i32,
        command_status: p.command_status,
        error_code: p.error_code,
        smsc_done_date: p.smsc_done_date,
        receipt_at_ms: p.receipt_at_ms,
    }
}

pub fn message(r: MessageRecord) -> pb::Message {
    pb::Message {
        id: r.id.to_string(),
        to: r.to.to_string(),
        from: r.from,
        link: r.link.to_string(),
        route: r.route,
        client_ref: r.client_ref,
        segments: u32::from(r.segments),
        parts: r.parts.into_iter().map(part).collect(),
        status: status(r.status) as i32,
        transitions: r.transitions.into_iter().map(transition).collect(),
    }
}

pub fn receipt(e: &ReceiptEvent) -> pb::Receipt {
    let r = &e.receipt;
    pb::Receipt {
        id: e.id.to_string(),
        status: status(r.status) as i32,
        link: r.link.to_string(),
        smsc_message_id: r.smsc_message_id.to_string(),
        error_code: r.error_code.clone(),
        smsc_done_date: r.smsc_done_date.clone(),
        received_at_ms: r.received_at_ms,
    }
}

pub fn inbound(m: &InboundMessage) -> pb::InboundMessage {
    pb::InboundMessage {
        id: m.id.to_string(),
        from: m.from.clone(),
        to: m.to.clone(),
        text: m.text.clone(),
        octets_hex: m.octets_hex.clone(),
        data_coding: u32::from(m.data_coding),
        link: m.link.to_string(),
        total_parts: u32::from(m.total_parts),
        parts_received: m.parts_received.iter().map(|&p| u32::from(p)).collect(),
        incomplete: m.incomplete,
        received_at_ms: m.received_at_ms,
        completed_at_ms: m.completed_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_url_reaches_validation() {
        let m = pb::SubmitRequest {
            to: "+4915112345678".into(),
            from: "ACME".into(),
            text: "hi".into(),
            callback_url: Some("http://127.0.0.1:9/h".into()),
            ..Default::default()
        };
        let f = fields(m).unwrap();
        assert_eq!(f.callback_url.as_deref(), Some("http://127.0.0.1:9/h"));
        let bad = SubmitFields { callback_url: Some("ftp://127.0.0.1/h".into()), ..f };
        assert_eq!(crate::pipeline::parse::validate(bad).unwrap_err().code, "invalid_callback_url");
    }
}
