//! Stage 1: parse and validate a submit request. Bad input ends here with a precise reason;
//! nothing else happens.

use crate::ids::{LinkId, Msisdn};
use crate::smpp::encoding::{self, Encoded};
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
}

/// Where the client asked the message to go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Link(LinkId),
    Pool(String),
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
        ParseError {
            code,
            field: Some(field.to_owned()),
            message: message.into(),
        }
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
    let to = Msisdn::parse_e164(&b.to).ok_or_else(|| {
        ParseError::new(
            "invalid_number",
            "to",
            "`to` must be an E.164 number: + and 8 to 15 digits",
        )
    })?;
    let from = parse_sender(&b.from)?;
    if b.text.is_empty() {
        return Err(ParseError::new(
            "empty_text",
            "text",
            "`text` must not be empty",
        ));
    }
    let text = encoding::encode(&b.text);
    if !text.fits_single() {
        return Err(ParseError::new(
            "text_too_long",
            "text",
            format!(
                "`text` is {} {}; one message holds {} GSM 7-bit septets or {} UCS-2 characters",
                text.units,
                if text.data_coding == encoding::data_coding::GSM7 {
                    "septets"
                } else {
                    "UCS-2 units"
                },
                encoding::GSM7_SINGLE_SEPTETS,
                encoding::UCS2_SINGLE_UNITS
            ),
        ));
    }
    let target = match (b.link, b.pool) {
        (Some(_), Some(_)) => {
            return Err(ParseError::new(
                "conflicting_target",
                "pool",
                "give either `link` or `pool`, not both",
            ))
        }
        (Some(l), None) if !l.is_empty() => Target::Link(LinkId::new(&l)),
        (None, Some(p)) if !p.is_empty() => Target::Pool(p),
        (Some(_), None) => {
            return Err(ParseError::new(
                "missing_target",
                "link",
                "`link` must not be empty",
            ))
        }
        (None, Some(_)) => {
            return Err(ParseError::new(
                "missing_target",
                "pool",
                "`pool` must not be empty",
            ))
        }
        (None, None) => {
            return Err(ParseError::new(
                "missing_target",
                "link",
                "name a `link` (or a `pool`)",
            ))
        }
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
    Ok(SubmitRequest {
        to,
        from,
        text,
        target,
        client_ref: b.client_ref,
    })
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
            return Ok(Sender {
                addr: digits.to_owned(),
                ton: 1,
                npi: 1,
            });
        }
        return Err(bad());
    }
    if (1..=15).contains(&from.len()) && from.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Sender {
            addr: from.to_owned(),
            ton: 0,
            npi: 1,
        });
    }
    if (1..=11).contains(&from.len())
        && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && !from.starts_with(' ')
    {
        return Ok(Sender {
            addr: from.to_owned(),
            ton: 5,
            npi: 0,
        });
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
    ParseError {
        code,
        field,
        message: text,
    }
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
        let r = ok(
            r#"{"to":"+4915112345678","from":"ACME","text":"hi","link":"100","client_ref":"r1"}"#,
        );
        assert_eq!(r.to.digits(), "4915112345678");
        assert_eq!(
            r.from,
            Sender {
                addr: "ACME".into(),
                ton: 5,
                npi: 0
            }
        );
        assert_eq!(r.target, Target::Link(LinkId::new("100")));
        assert_eq!(r.client_ref.as_deref(), Some("r1"));
    }

    #[test]
    fn every_refusal_names_its_field() {
        let cases = [
            (
                r#"{"to":"+49","from":"A","text":"x","link":"1"}"#,
                "invalid_number",
                Some("to"),
            ),
            (
                r#"{"to":"+4915112345678","from":"TOOLONGSENDER","text":"x","link":"1"}"#,
                "invalid_sender",
                Some("from"),
            ),
            (
                r#"{"to":"+4915112345678","from":"A","text":"","link":"1"}"#,
                "empty_text",
                Some("text"),
            ),
            (
                r#"{"to":"+4915112345678","from":"A","text":"x"}"#,
                "missing_target",
                Some("link"),
            ),
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
            (
                r#"{"from":"A","text":"x","link":"1"}"#,
                "missing_field",
                Some("to"),
            ),
            (
                r#"{"to":4915112345678,"from":"A","text":"x","link":"1"}"#,
                "invalid_field",
                None,
            ),
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
        let long = "a".repeat(161);
        let e = err(&format!(
            r#"{{"to":"+4915112345678","from":"A","text":"{long}","link":"1"}}"#
        ));
        assert_eq!(e.code, "text_too_long");
        let r = ok(&format!(
            r#"{{"to":"+4915112345678","from":"A","text":"{}","link":"1"}}"#,
            "a".repeat(160)
        ));
        assert_eq!(r.text.units, 160);
    }

    #[test]
    fn numeric_senders() {
        assert_eq!(parse_sender("+4912345").unwrap().ton, 1);
        assert_eq!(parse_sender("12345").unwrap().ton, 0);
        assert!(parse_sender("+").is_err());
        assert!(parse_sender(" A").is_err());
    }
}
