//! Stage 8: what the SMSC's answers make of the record kept for the message.

use crate::ids::SmscMessageId;
use crate::smpp::pdu::CommandStatus;
use crate::smpp::session::{SubmitError, SubmitResult};
use crate::state::record::{MessageRecord, Part, Status, Transition};

/// The message's fate after its submit_sm answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every part was accepted by the SMSC.
    Submitted,
    /// A part was refused (its command_status), or could not be sent after earlier parts went
    /// out (ESME_RSUBMITFAIL stands for that). Not retried: the parts that went out would be
    /// sent twice.
    Rejected(CommandStatus),
    /// A part was written but got no answer: it may or may not be at the SMSC.
    Unknown,
}

/// Fills `record.parts` from one result per part and appends the resulting transition.
pub fn apply_results(
    record: &mut MessageRecord,
    results: &[Result<SubmitResult, SubmitError>],
    now_ms: u64,
) -> Outcome {
    let mut rejected = None;
    let mut unknown = false;
    let mut unsent = false;
    record.parts = results
        .iter()
        .map(|r| match r {
            Ok(r) if r.status.is_ok() => Part {
                smsc_message_id: Some(SmscMessageId::new(&r.message_id)),
                status: Some(Status::Submitted),
                ..Part::default()
            },
            Ok(r) => {
                rejected.get_or_insert(r.status);
                Part { status: Some(Status::Rejected), command_status: Some(r.status.0), ..Part::default() }
            }
            Err(e) if e.never_sent() => {
                unsent = true;
                Part::default()
            }
            Err(_) => {
                unknown = true;
                Part { status: Some(Status::Unknown), ..Part::default() }
            }
        })
        .collect();
    let outcome = match (rejected, unknown, unsent) {
        (Some(status), _, _) => Outcome::Rejected(status),
        (None, true, _) => Outcome::Unknown,
        (None, false, true) => Outcome::Rejected(CommandStatus::RSUBMITFAIL),
        (None, false, false) => Outcome::Submitted,
    };
    let transition = match outcome {
        Outcome::Submitted => Transition::at(Status::Submitted, now_ms),
        Outcome::Rejected(status) => {
            Transition { command_status: Some(status.0), ..Transition::at(Status::Rejected, now_ms) }
        }
        Outcome::Unknown => Transition::at(Status::Unknown, now_ms),
    };
    record.push(transition);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientId, LinkId, MessageId, Msisdn};
    use std::time::Duration;

    fn record() -> MessageRecord {
        MessageRecord {
            id: MessageId(1),
            client: ClientId::new("a"),
            to: Msisdn("4915112345678".into()),
            from: "A".into(),
            link: LinkId::new("l"),
            route: String::new(),
            client_ref: None,
            callback_url: None,
            segments: 2,
            parts: Vec::new(),
            status: Status::Accepted,
            transitions: vec![Transition::at(Status::Accepted, 1)],
        }
    }

    fn ok(id: &str) -> Result<SubmitResult, SubmitError> {
        Ok(SubmitResult { status: CommandStatus::ROK, message_id: id.into() })
    }

    #[test]
    fn all_parts_accepted() {
        let mut rec = record();
        assert_eq!(apply_results(&mut rec, &[ok("a"), ok("b")], 5), Outcome::Submitted);
        assert_eq!(rec.status, Status::Submitted);
        assert_eq!(rec.parts[1].smsc_message_id.as_ref().unwrap().as_str(), "b");
    }

    #[test]
    fn a_refused_part_rejects_the_message_with_its_status() {
        let mut rec = record();
        let refused = Ok(SubmitResult { status: CommandStatus::RTHROTTLED, message_id: String::new() });
        assert_eq!(apply_results(&mut rec, &[ok("a"), refused], 5), Outcome::Rejected(CommandStatus::RTHROTTLED));
        assert_eq!(rec.transitions[1].command_status, Some(0x58));
        assert_eq!(rec.parts[0].status, Some(Status::Submitted), "the part that went out is still tracked");
    }

    #[test]
    fn an_unanswered_part_makes_the_outcome_unknown() {
        let mut rec = record();
        let lost = Err(SubmitError::Timeout(Duration::from_secs(1)));
        assert_eq!(apply_results(&mut rec, &[ok("a"), lost], 5), Outcome::Unknown);
        assert_eq!(rec.status, Status::Unknown);
    }

    #[test]
    fn a_part_never_sent_after_others_went_out() {
        let mut rec = record();
        assert_eq!(
            apply_results(&mut rec, &[ok("a"), Err(SubmitError::NotBound)], 5),
            Outcome::Rejected(CommandStatus::RSUBMITFAIL)
        );
        assert_eq!(rec.parts[1], Part::default());
    }
}
