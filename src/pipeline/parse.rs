//! Stage 1: parse and validate a submit request. Bad input ends here with a precise reason;
//! nothing else happens.

use crate::ids::{CampaignId, LinkId, Msisdn};
use crate::smpp::concat;
use crate::smpp::encoding::{self, Encoded};
use crate::smpp::pdu::{tag, Tlv};
use serde::Deserialize;

/// The fields of a submit as a client sends them, before validation: the JSON body of
/// `POST /api/v1/messages`, and what the gRPC ingress builds from its protobuf message.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitFields {
    pub to: String,
    pub from: String,
    pub text: String,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub client_ref: Option<String>,
    /// Where this message's delivery-report webhooks go (`http://...`, at most 512
    /// characters), instead of the client's `webhook_url`.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Optional TLVs passed through to every submit_sm of the message.
    #[serde(default)]
    pub tlvs: Vec<TlvField>,
    /// A built campaign this message belongs to: it takes the recipient's CP1 reservation
    /// instead of counting again.
    #[serde(default)]
    pub campaign: Option<String>,
}

/// `{"tag": 5126, "value": "0a0b"}`: a TLV tag (0-65535) and its value in hex.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlvField {
    pub tag: u16,
    pub value: String,
}

/// Most TLVs one message may carry, and the longest value (bytes).
pub const MAX_TLVS: usize = 8;
pub const MAX_TLV_VALUE: usize = 255;

/// TLVs smsgate sets itself or that belong to receipts: a client may not pass these.
const RESERVED_TLVS: [u16; 7] = [
    tag::MESSAGE_PAYLOAD,
    tag::SAR_MSG_REF_NUM,
    tag::SAR_TOTAL_SEGMENTS,
    tag::SAR_SEGMENT_SEQNUM,
    tag::RECEIPTED_MESSAGE_ID,
    tag::MESSAGE_STATE,
    tag::NETWORK_ERROR_CODE,
];

/// Where the client asked the message to go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Link(LinkId),
    Pool(String),
    /// Neither named: the `[[routes]]` of smpp_rules.toml decide.
    Routes,
}

/// The sender as SMPP will carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    pub addr: String,
    pub ton: u8,
    pub npi: u8,
}

/// A validated submit request.
#[derive(Clone, Debug)]
pub struct SubmitRequest {
    pub to: Msisdn,
    pub from: Sender,
    pub text: Encoded,
    pub target: Target,
    pub client_ref: Option<String>,
    pub callback_url: Option<String>,
    pub tlvs: Vec<Tlv>,
    pub campaign: Option<CampaignId>,
}

/// Why a request was refused, with the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Stable machine-readable code (see docs/errors.md).
    pub code: &'static str,
    pub field: Option<String>,
    pub message: String,
}

impl ParseError {
    fn new(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        ParseError { code, field: Some(field.to_owned()), message: message.into() }
    }
}

/// Most characters of `client_ref`, echoed back and kept in the record.
pub const MAX_CLIENT_REF: usize = 64;

/// Parses and validates a `POST /api/v1/messages` body.
pub fn parse_submit(body: &[u8]) -> Result<SubmitRequest, ParseError> {
    validate(serde_json::from_slice(body).map_err(json_error)?)
}

/// Validates submit fields, whatever API they came from.
pub fn validate(b: SubmitFields) -> Result<SubmitRequest, ParseError> {
    let to = Msisdn::parse_e164(&b.to)
        .ok_or_else(|| ParseError::new("invalid_number", "to", "`to` must be an E.164 number: + and 8 to 15 digits"))?;
    let from = parse_sender(&b.from)?;
    if b.text.is_empty() {
        return Err(ParseError::new("empty_text", "text", "`text` must not be empty"));
    }
    let text = encoding::encode(&b.text);
    let segments = concat::min_segments(&text);
    if segments > concat::MAX_SEGMENTS {
        return Err(ParseError::new(
            "text_too_long",
            "text",
            format!(
                "`text` takes {segments} SMS segments; at most {} are allowed (153 GSM 7-bit septets or 67 UCS-2 units each)",
                concat::MAX_SEGMENTS
            ),
        ));
    }
    let target = match (b.link, b.pool) {
        (Some(_), Some(_)) => {
            return Err(ParseError::new("conflicting_target", "pool", "give either `link` or `pool`, not both"))
        }
        (Some(l), None) if !l.is_empty() => Target::Link(LinkId::new(&l)),
        (None, Some(p)) if !p.is_empty() => Target::Pool(p),
        (Some(_), None) => return Err(ParseError::new("missing_target", "link", "`link` must not be empty")),
        (None, Some(_)) => return Err(ParseError::new("missing_target", "pool", "`pool` must not be empty")),
        (None, None) => Target::Routes,
    };
    if let Some(r) = &b.client_ref {
        if r.chars().count() > MAX_CLIENT_REF || r.chars().any(char::is_control) {
            return Err(ParseError::new(
                "invalid_client_ref",
                "client_ref",
                format!("`client_ref` is at most {MAX_CLIENT_REF} characters without control characters"),
            ));
        }
    }
    if let Some(url) = &b.callback_url {
        crate::notify::outbox::check_url(url).map_err(|reason| {
            ParseError::new("invalid_callback_url", "callback_url", format!("`callback_url` {reason}"))
        })?;
    }
    let tlvs = parse_tlvs(&b.tlvs)?;
    let campaign = match &b.campaign {
        None => None,
        Some(c) => Some(CampaignId::parse(c).ok_or_else(|| {
            ParseError::new("invalid_campaign", "campaign", "`campaign` must be a campaign id: 16 hex digits")
        })?),
    };
    Ok(SubmitRequest { to, from, text, target, client_ref: b.client_ref, callback_url: b.callback_url, tlvs, campaign })
}

fn parse_tlvs(fields: &[TlvField]) -> Result<Vec<Tlv>, ParseError> {
    if fields.len() > MAX_TLVS {
        return Err(ParseError::new("invalid_tlv", "tlvs", format!("at most {MAX_TLVS} TLVs")));
    }
    fields
        .iter()
        .map(|f| {
            if RESERVED_TLVS.contains(&f.tag) {
                return Err(ParseError::new(
                    "invalid_tlv",
                    "tlvs",
                    format!("TLV 0x{:04x} is set by smsgate and cannot be passed", f.tag),
                ));
            }
            let value = decode_hex(&f.value).filter(|v| v.len() <= MAX_TLV_VALUE).ok_or_else(|| {
                ParseError::new(
                    "invalid_tlv",
                    "tlvs",
                    format!("TLV 0x{:04x}: `value` must be hex, at most {MAX_TLV_VALUE} bytes", f.tag),
                )
            })?;
            Ok(Tlv::new(f.tag, value))
        })
        .collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Alphanumeric senders (up to 11 GSM characters) go with TON 5; numbers with TON 1 (with `+`)
/// or TON 0 (short codes and national numbers); NPI 1 (E.164) for numbers.
fn parse_sender(from: &str) -> Result<Sender, ParseError> {
    let bad = || {
        ParseError::new(
            "invalid_sender",
            "from",
            "`from` must be 1-11 letters, digits or spaces, or a number of up to 15 digits (optionally with +)",
        )
    };
    if let Some(digits) = from.strip_prefix('+') {
        if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Sender { addr: digits.to_owned(), ton: 1, npi: 1 });
        }
        return Err(bad());
    }
    if (1..=15).contains(&from.len()) && from.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Sender { addr: from.to_owned(), ton: 0, npi: 1 });
    }
    if (1..=11).contains(&from.len())
        && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && !from.starts_with(' ')
    {
        return Ok(Sender { addr: from.to_owned(), ton: 5, npi: 0 });
    }
    Err(bad())
}

fn json_error(e: serde_json::Error) -> ParseError {
    let text = e.to_string();
    // serde names the field between backticks: "unknown field `x`, expected ..." / "missing field `to`".
    let quoted = || text.split('`').nth(1).map(str::to_owned);
    let (code, field) = if text.starts_with("unknown field") {
        ("unknown_field", quoted())
    } else if text.starts_with("missing field") {
        ("missing_field", quoted())
    } else if e.is_data() {
        ("invalid_field", None)
    } else {
        ("invalid_json", None)
    };
    ParseError { code, field, message: text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> SubmitRequest {
        parse_submit(body.as_bytes()).unwrap()
    }

    fn err(body: &str) -> ParseError {
        parse_submit(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_good_request() {
        let r = ok(r#"{"to":"+4915112345678","from":"ACME","text":"hi","link":"100","client_ref":"r1"}"#);
        assert_eq!(r.to.digits(), "4915112345678");
        assert_eq!(r.from, Sender { addr: "ACME".into(), ton: 5, npi: 0 });
        assert_eq!(r.target, Target::Link(LinkId::new("100")));
        assert_eq!(r.client_ref.as_deref(), Some("r1"));
    }

    #[test]
    fn every_refusal_names_its_field() {
        let cases = [
            (r#"{"to":"+49","from":"A","text":"x","link":"1"}"#, "invalid_number", Some("to")),
            (r#"{"to":"+4915112345678","from":"TOOLONGSENDER","text":"x","link":"1"}"#, "invalid_sender", Some("from")),
            (r#"{"to":"+4915112345678","from":"A","text":"","link":"1"}"#, "empty_text", Some("text")),
            (
                r#"{"to":"+4915112345678","from":"A","text":"x","link":"1","pool":"p"}"#,
                "conflicting_target",
                Some("pool"),
            ),
            (
                r#"{"to":"+4915112345678","from":"A","text":"x","link":"1","colour":"red"}"#,
                "unknown_field",
                Some("colour"),
            ),
            (r#"{"from":"A","text":"x","link":"1"}"#, "missing_field", Some("to")),
            (r#"{"to":4915112345678,"from":"A","text":"x","link":"1"}"#, "invalid_field", None),
            (r#"{"to":"+4915112345678","#, "invalid_json", None),
            ("[1,2]", "invalid_field", None),
        ];
        for (body, code, field) in cases {
            let e = err(body);
            assert_eq!(e.code, code, "{body}: {e:?}");
            assert_eq!(e.field.as_deref(), field, "{body}");
        }
    }

    #[test]
    fn text_limits() {
        let long = "a".repeat(153 * 16 + 1);
        let e = err(&format!(r#"{{"to":"+4915112345678","from":"A","text":"{long}","link":"1"}}"#));
        assert_eq!(e.code, "text_too_long");
        let max = "a".repeat(153 * 16);
        let r = ok(&format!(r#"{{"to":"+4915112345678","from":"A","text":"{max}","link":"1"}}"#));
        assert_eq!(r.text.units, 153 * 16);
    }

    #[test]
    fn tlvs_pass_through_unless_reserved() {
        let r = ok(r#"{"to":"+4915112345678","from":"A","text":"x","link":"1","tlvs":[{"tag":5126,"value":"0A0b"}]}"#);
        assert_eq!(r.tlvs, vec![Tlv::new(5126, vec![0x0a, 0x0b])]);
        for bad in [r#"[{"tag":1060,"value":"00"}]"#, r#"[{"tag":5126,"value":"0"}]"#, r#"[{"tag":5126,"value":"zz"}]"#]
        {
            let e = err(&format!(r#"{{"to":"+4915112345678","from":"A","text":"x","link":"1","tlvs":{bad}}}"#));
            assert_eq!(e.code, "invalid_tlv", "{bad}");
        }
    }

    #[test]
    fn numeric_senders() {
        assert_eq!(parse_sender("+4912345").unwrap().ton, 1);
        assert_eq!(parse_sender("12345").unwrap().ton, 0);
        assert!(parse_sender("+").is_err());
        assert!(parse_sender(" A").is_err());
    }
}
