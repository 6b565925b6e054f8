//! Delivery receipt text (SMPP 3.4 appendix B) and message states (section 5.3.2.35).
//!
//! The text format varies by vendor (missing `sub`/`dlvrd`, seconds in dates, upper or lower
//! case keys, states such as `BUFFRED`), so [`parse`] is lenient and never fails. Prefer the
//! `receipted_message_id` and `message_state` TLVs when the SMSC sends them.

/// The fields of a receipt's text, each `None` when absent. Values are as sent (not
/// normalised): an `id` may be decimal or hex, dates may have 10 or 12 digits.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ReceiptText {
    pub id: Option<String>,
    pub sub: Option<String>,
    pub dlvrd: Option<String>,
    pub submit_date: Option<String>,
    pub done_date: Option<String>,
    pub stat: Option<String>,
    pub err: Option<String>,
    pub text: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
}

/// Keys as they appear, lower case; longest first where one is a prefix of another.
const KEYS: &[(&str, Key)] = &[
    ("submit date:", Key::SubmitDate),
    ("submit_date:", Key::SubmitDate),
    ("submitdate:", Key::SubmitDate),
    ("done date:", Key::DoneDate),
    ("done_date:", Key::DoneDate),
    ("donedate:", Key::DoneDate),
    ("dlvrd:", Key::Dlvrd),
    ("stat:", Key::Stat),
    ("text:", Key::Text),
    ("sub:", Key::Sub),
    ("err:", Key::Err),
    ("id:", Key::Id),
];

/// Parses receipt text such as `id:123 sub:001 dlvrd:001 submit date:2401011200 done
/// date:2401011201 stat:DELIVRD err:000 text:Hello`.
///
/// Keys are case-insensitive and may come in any order; a key counts only at the start of
/// a word. Each value is one word, except `text:`, which runs to the end of the message
/// (it is the free-form field, and last in every vendor format). A key seen twice keeps
/// its first value. Unknown words are skipped.
pub fn parse(short_message: &[u8]) -> ReceiptText {
    let original = String::from_utf8_lossy(short_message);
    let s: &str = &original;
    // ASCII lower-casing keeps every byte offset, so offsets found in `lower` index `s`.
    let lower = s.to_ascii_lowercase();
    let mut receipt = ReceiptText::default();
    let mut pos = 0;
    while let Some(start) = next_word(s, pos) {
        let Some(&(key_text, key)) = KEYS.iter().find(|(k, _)| lower[start..].starts_with(k)) else {
            pos = word_end(s, start);
            continue;
        };
        let value_start = start + key_text.len();
        if key == Key::Text {
            receipt.text.get_or_insert_with(|| s[value_start..].trim().to_string());
            break;
        }
        let mut value_end = word_end(s, value_start);
        let mut value = &s[value_start..value_end];
        // "err: 000": a value after a space, unless that word is itself a key.
        if value.is_empty() {
            if let Some(next) = next_word(s, value_start) {
                let is_key = KEYS.iter().any(|(k, _)| lower[next..].starts_with(k));
                if !is_key {
                    value_end = word_end(s, next);
                    value = &s[next..value_end];
                }
            }
        }
        let slot = match key {
            Key::Id => &mut receipt.id,
            Key::Sub => &mut receipt.sub,
            Key::Dlvrd => &mut receipt.dlvrd,
            Key::SubmitDate => &mut receipt.submit_date,
            Key::DoneDate => &mut receipt.done_date,
            Key::Stat => &mut receipt.stat,
            Key::Err => &mut receipt.err,
            Key::Text => &mut receipt.text,
        };
        slot.get_or_insert_with(|| value.to_string());
        pos = value_end;
    }
    receipt
}

/// Offset of the next non-whitespace character at or after `from`.
fn next_word(s: &str, from: usize) -> Option<usize> {
    s.get(from..)?.char_indices().find(|(_, c)| !c.is_whitespace()).map(|(i, _)| from + i)
}

/// Offset just past the word starting at `from`.
fn word_end(s: &str, from: usize) -> usize {
    let rest = s.get(from..).unwrap_or_default();
    from + rest.find(char::is_whitespace).unwrap_or(rest.len())
}

// === FinalState ===

/// A message's state as a receipt reports it. Despite the name, `Enroute` is not final.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum FinalState {
    Enroute,
    Delivered,
    Expired,
    Deleted,
    Undeliverable,
    Accepted,
    Unknown,
    Rejected,
}

impl FinalState {
    /// From a receipt's `stat:` value: the 7-letter forms (`DELIVRD`, `UNDELIV`, ...) or the
    /// full words (`DELIVERED`, `UNDELIVERABLE`, ...), any case. `None` for anything else
    /// (vendor states such as `BUFFRED` or `FAILED`).
    pub fn from_stat(stat: &str) -> Option<Self> {
        let stat = stat.trim();
        let states: &[(&str, &str, FinalState)] = &[
            ("DELIVRD", "DELIVERED", FinalState::Delivered),
            ("UNDELIV", "UNDELIVERABLE", FinalState::Undeliverable),
            ("EXPIRED", "EXPIRED", FinalState::Expired),
            ("DELETED", "DELETED", FinalState::Deleted),
            ("REJECTD", "REJECTED", FinalState::Rejected),
            ("ACCEPTD", "ACCEPTED", FinalState::Accepted),
            ("UNKNOWN", "UNKNOWN", FinalState::Unknown),
            ("ENROUTE", "ENROUTE", FinalState::Enroute),
        ];
        states
            .iter()
            .find(|(short, long, _)| stat.eq_ignore_ascii_case(short) || stat.eq_ignore_ascii_case(long))
            .map(|&(_, _, state)| state)
    }

    /// From the `message_state` TLV (0x0427), SMPP 3.4 section 5.3.2.35.
    pub fn from_message_state_tlv(state: u8) -> Option<Self> {
        Some(match state {
            1 => FinalState::Enroute,
            2 => FinalState::Delivered,
            3 => FinalState::Expired,
            4 => FinalState::Deleted,
            5 => FinalState::Undeliverable,
            6 => FinalState::Accepted,
            7 => FinalState::Unknown,
            8 => FinalState::Rejected,
            _ => return None,
        })
    }

    /// The `message_state` TLV value; inverse of [`FinalState::from_message_state_tlv`].
    pub fn message_state(self) -> u8 {
        match self {
            FinalState::Enroute => 1,
            FinalState::Delivered => 2,
            FinalState::Expired => 3,
            FinalState::Deleted => 4,
            FinalState::Undeliverable => 5,
            FinalState::Accepted => 6,
            FinalState::Unknown => 7,
            FinalState::Rejected => 8,
        }
    }

    /// The 7-letter `stat:` form of appendix B, e.g. `"DELIVRD"`.
    pub fn stat(self) -> &'static str {
        match self {
            FinalState::Enroute => "ENROUTE",
            FinalState::Delivered => "DELIVRD",
            FinalState::Expired => "EXPIRED",
            FinalState::Deleted => "DELETED",
            FinalState::Undeliverable => "UNDELIV",
            FinalState::Accepted => "ACCEPTD",
            FinalState::Unknown => "UNKNOWN",
            FinalState::Rejected => "REJECTD",
        }
    }

    /// Whether no later receipt is expected: every state but `Enroute`.
    pub fn is_final(self) -> bool {
        self != FinalState::Enroute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_format() {
        // SMPP 3.4 appendix B, as Kannel's and most SMSC simulators send it.
        let r = parse(
            b"id:0123456789 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 \
              stat:DELIVRD err:000 text:Hello, world: stat:fake",
        );
        assert_eq!(r.id.as_deref(), Some("0123456789"));
        assert_eq!(r.sub.as_deref(), Some("001"));
        assert_eq!(r.dlvrd.as_deref(), Some("001"));
        assert_eq!(r.submit_date.as_deref(), Some("2401011200"));
        assert_eq!(r.done_date.as_deref(), Some("2401011201"));
        assert_eq!(r.stat.as_deref(), Some("DELIVRD"));
        assert_eq!(r.err.as_deref(), Some("000"));
        assert_eq!(r.text.as_deref(), Some("Hello, world: stat:fake"));
    }

    #[test]
    fn parses_a_vendor_format_with_capital_keys_another_order_and_no_sub() {
        // Upper-case keys, seconds in the dates, no sub/dlvrd, hex id, err before stat.
        let r = parse(b"ID:7F3A09C2 Submit Date:240101120059 Done Date:240101120107 ERR:0 STAT:UNDELIV");
        assert_eq!(r.id.as_deref(), Some("7F3A09C2"));
        assert_eq!((r.sub, r.dlvrd, r.text), (None, None, None));
        assert_eq!(r.submit_date.as_deref(), Some("240101120059"));
        assert_eq!(r.done_date.as_deref(), Some("240101120107"));
        assert_eq!(r.err.as_deref(), Some("0"));
        assert_eq!(r.stat.as_deref(), Some("UNDELIV"));
        assert_eq!(FinalState::from_stat("UNDELIV"), Some(FinalState::Undeliverable));
    }

    #[test]
    fn parses_a_vendor_format_with_underscores_spaces_and_unknown_words() {
        let r = parse(
            b"  id: 42 sub:1 dlvrd:0 submit_date:2401011200 done_date:2401011300 \
              stat:expired err:  Text:",
        );
        assert_eq!(r.id.as_deref(), Some("42"));
        assert_eq!(r.submit_date.as_deref(), Some("2401011200"));
        assert_eq!(r.done_date.as_deref(), Some("2401011300"));
        assert_eq!(r.stat.as_deref(), Some("expired"));
        assert_eq!(FinalState::from_stat("expired"), Some(FinalState::Expired));
        // "err:" is empty and the next word is a key, so it is not taken as the value.
        assert_eq!(r.err.as_deref(), Some(""));
        assert_eq!(r.text.as_deref(), Some(""));

        let r = parse(b"msgid:9 id:10 extra words stat:BUFFRED");
        assert_eq!(r.id.as_deref(), Some("10"));
        assert_eq!(r.stat.as_deref(), Some("BUFFRED"));
        assert_eq!(FinalState::from_stat("BUFFRED"), None);
    }

    #[test]
    fn tolerates_anything() {
        assert_eq!(parse(b""), ReceiptText::default());
        assert_eq!(parse(b"id:"), ReceiptText { id: Some(String::new()), ..ReceiptText::default() });
        let r = parse(&[b'i', b'd', b':', 0xff, 0xfe, b' ', b's', b't', b'a', b't', b':']);
        assert_eq!(r.id.as_deref(), Some("\u{fffd}\u{fffd}"));
        assert_eq!(r.stat.as_deref(), Some(""));
    }

    #[test]
    fn states_from_stat_words_and_from_the_tlv() {
        for (short, long, state) in [
            ("DELIVRD", "delivered", FinalState::Delivered),
            ("undeliv", "Undeliverable", FinalState::Undeliverable),
            ("REJECTD", "rejected", FinalState::Rejected),
            ("acceptd", "ACCEPTED", FinalState::Accepted),
            ("DELETED", "deleted", FinalState::Deleted),
            ("UNKNOWN", "unknown", FinalState::Unknown),
            ("ENROUTE", "enroute", FinalState::Enroute),
        ] {
            assert_eq!(FinalState::from_stat(short), Some(state));
            assert_eq!(FinalState::from_stat(long), Some(state));
            assert_eq!(FinalState::from_stat(state.stat()), Some(state));
        }
        for v in 1..=8 {
            let state = FinalState::from_message_state_tlv(v).unwrap();
            assert_eq!(state.message_state(), v);
        }
        assert_eq!(FinalState::from_message_state_tlv(2), Some(FinalState::Delivered));
        assert_eq!(FinalState::from_message_state_tlv(5), Some(FinalState::Undeliverable));
        assert_eq!(FinalState::from_message_state_tlv(0), None);
        assert_eq!(FinalState::from_message_state_tlv(9), None);
        assert!(!FinalState::Enroute.is_final() && FinalState::Accepted.is_final());
    }
}

/// How a link's receipts write the SMSC message id, relative to its submit_sm_resp
/// (`receipt_id_format` in smpp_rules.toml). Some SMSCs answer submit_sm_resp in decimal and
/// put hex in the receipt, or the reverse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdFormat {
    /// Same form in both (case and leading zeros may still differ; they are ignored).
    #[default]
    Same,
    /// The receipt has hex where submit_sm_resp had decimal.
    Hex,
    /// The receipt has decimal where submit_sm_resp had hex.
    Decimal,
}

/// The receipt's id rewritten in the form the submit_sm_resp used, so the two match. An id
/// that does not parse in the announced base is kept as it is (and will simply not match).
pub fn id_as_submitted(receipt_id: &str, format: IdFormat) -> String {
    let id = receipt_id.trim();
    match format {
        IdFormat::Same => id.to_owned(),
        IdFormat::Hex => u128::from_str_radix(id, 16).map_or_else(|_| id.to_owned(), |n| n.to_string()),
        IdFormat::Decimal => id.parse::<u128>().map_or_else(|_| id.to_owned(), |n| format!("{n:x}")),
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn receipt_ids_are_converted_to_the_submit_form() {
        assert_eq!(id_as_submitted("0000ABCDEF", IdFormat::Hex), "11259375");
        assert_eq!(id_as_submitted("11259375", IdFormat::Decimal), "abcdef");
        assert_eq!(id_as_submitted(" 42 ", IdFormat::Same), "42");
        assert_eq!(id_as_submitted("not-hex", IdFormat::Hex), "not-hex");
    }
}
