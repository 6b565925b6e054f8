//! Long messages: one encoded text → the short_message bodies to submit.
//!
//! - UDH concatenation, 8-bit reference (`05 00 03 ref total seq`) or 16-bit
//!   (`06 08 04 refHi refLo total seq`), esm_class bit 0x40 set on every part. A GSM 7-bit part
//!   holds 153 septets (152 with the 16-bit reference), a UCS-2 part 67 units (66); an escape
//!   sequence or a surrogate pair is never split across parts.
//! - `message_payload`: the whole text in one submit_sm's TLV 0x0424, short_message empty.
//!
//! Inbound, [`part_of`] reads where one deliver_sm sits in its concatenated message: from the
//! UDH (both reference sizes) or from the SAR TLVs.

use super::encoding::{data_coding, Encoded, GSM7_SINGLE_SEPTETS, UCS2_SINGLE_UNITS};
use serde::{Deserialize, Serialize};

/// How a link sends texts longer than one SMS (`long_messages` in smpp_rules.toml).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongMessages {
    /// UDH with an 8-bit reference (the default; what most SMSCs and handsets expect).
    #[default]
    Udh8,
    /// UDH with a 16-bit reference.
    Udh16,
    /// The whole text in `message_payload`, one submit_sm; the SMSC splits it.
    Payload,
}

/// Most segments a message may take; longer texts are refused (400 `text_too_long`).
pub const MAX_SEGMENTS: usize = 16;

/// One submit_sm's worth of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// For `short_message` (UDH included) — or for `message_payload` when `payload` is set.
    pub bytes: Vec<u8>,
    /// esm_class UDHI (0x40) must be set.
    pub udhi: bool,
    pub payload: bool,
}

fn unit_len(e: &Encoded) -> usize {
    if e.data_coding == data_coding::UCS2 {
        2
    } else {
        1
    }
}

/// Cut points (byte offsets) of the text into parts of at most `cap` units, never inside an
/// escape sequence (GSM 7-bit) or a surrogate pair (UCS-2).
fn cut(e: &Encoded, cap: usize) -> Vec<(usize, usize)> {
    let unit = unit_len(e);
    let units = e.bytes.len() / unit;
    let mut out = Vec::new();
    let mut start = 0;
    while start < units {
        let mut end = (start + cap).min(units);
        if end < units {
            let ends_badly = if unit == 1 {
                e.bytes[end - 1] == 0x1B
            } else {
                let hi = e.bytes[(end - 1) * 2];
                (0xD8..=0xDB).contains(&hi)
            };
            if ends_badly {
                end -= 1;
            }
        }
        out.push((start * unit, end * unit));
        start = end;
    }
    out
}

fn per_part(e: &Encoded, udh16: bool) -> usize {
    let extra = usize::from(udh16);
    if e.data_coding == data_coding::UCS2 {
        67 - extra
    } else {
        153 - extra
    }
}

/// SMS segments the text takes with this mode (what the handset receives).
pub fn segments(e: &Encoded, mode: LongMessages) -> usize {
    if e.fits_single() {
        return 1;
    }
    cut(e, per_part(e, mode == LongMessages::Udh16)).len()
}

/// Segments under the most generous mode: for validation before a link is chosen.
pub fn min_segments(e: &Encoded) -> usize {
    segments(e, LongMessages::Udh8)
}

/// Splits the text for `mode`; `reference` identifies this message's parts (only its low
/// 8 bits are used with `Udh8`).
pub fn split(e: &Encoded, mode: LongMessages, reference: u16) -> Vec<Chunk> {
    let single = match e.data_coding {
        data_coding::UCS2 => e.units <= UCS2_SINGLE_UNITS,
        _ => e.units <= GSM7_SINGLE_SEPTETS,
    };
    if single {
        return vec![Chunk { bytes: e.bytes.clone(), udhi: false, payload: false }];
    }
    if mode == LongMessages::Payload {
        return vec![Chunk { bytes: e.bytes.clone(), udhi: false, payload: true }];
    }
    let udh16 = mode == LongMessages::Udh16;
    let cuts = cut(e, per_part(e, udh16));
    let total = cuts.len().min(255) as u8;
    cuts.iter()
        .take(255)
        .enumerate()
        .map(|(i, &(from, to))| {
            let seq = (i + 1) as u8;
            let mut bytes = Vec::with_capacity(7 + to - from);
            if udh16 {
                let [hi, lo] = reference.to_be_bytes();
                bytes.extend_from_slice(&[0x06, 0x08, 0x04, hi, lo, total, seq]);
            } else {
                bytes.extend_from_slice(&[0x05, 0x00, 0x03, reference as u8, total, seq]);
            }
            bytes.extend_from_slice(&e.bytes[from..to]);
            Chunk { bytes, udhi: true, payload: false }
        })
        .collect()
}

/// Where one inbound part sits in its concatenated message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartOf {
    /// The concatenation reference (8-bit UDH references are 0-255).
    pub reference: u16,
    /// Parts in the message, 2-255.
    pub total: u8,
    /// This part's number, 1..=total.
    pub seq: u8,
}

impl PartOf {
    /// `None` unless it names one part of at least two: a "1 of 1" is a whole message, and a
    /// part 0 or beyond the total cannot be placed.
    fn checked(reference: u16, total: u8, seq: u8) -> Option<PartOf> {
        (total >= 2 && (1..=total).contains(&seq)).then_some(PartOf { reference, total, seq })
    }
}

/// An inbound short_message split into its concatenation info and its text octets.
/// `udhi`: esm_class bit 0x40. `sar`: the SAR TLVs (reference, total, seq) when all three came.
/// A UDH whose lengths run past the octets is not a UDH: the octets are kept whole. An
/// information element other than concatenation (ports, formatting) is skipped.
pub fn part_of(udhi: bool, short_message: &[u8], sar: Option<(u16, u8, u8)>) -> (Option<PartOf>, &[u8]) {
    let from_sar = sar.and_then(|(r, t, s)| PartOf::checked(r, t, s));
    if !udhi {
        return (from_sar, short_message);
    }
    let Some((&udhl, rest)) = short_message.split_first() else {
        return (from_sar, short_message);
    };
    let udhl = usize::from(udhl);
    if udhl > rest.len() {
        return (from_sar, short_message);
    }
    let (mut ies, text) = rest.split_at(udhl);
    let mut found = None;
    while let [iei, iel, tail @ ..] = ies {
        let iel = usize::from(*iel);
        if iel > tail.len() {
            return (from_sar, short_message);
        }
        let (data, next) = tail.split_at(iel);
        match (*iei, data) {
            (0x00, &[r, t, s]) => found = found.or(PartOf::checked(u16::from(r), t, s)),
            (0x08, &[hi, lo, t, s]) => found = found.or(PartOf::checked(u16::from_be_bytes([hi, lo]), t, s)),
            _ => {}
        }
        ies = next;
    }
    (found.or(from_sar), text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::encoding::encode;

    #[test]
    fn inbound_parts_are_read_from_either_udh_and_from_sar() {
        let e = encode(&"a".repeat(300));
        for (mode, reference) in [(LongMessages::Udh8, 0x34), (LongMessages::Udh16, 0x1234)] {
            for (i, chunk) in split(&e, mode, reference).iter().enumerate() {
                let (part, text) = part_of(true, &chunk.bytes, None);
                assert_eq!(part, Some(PartOf { reference, total: 2, seq: i as u8 + 1 }));
                assert!(text.iter().all(|&b| b == b'a'));
            }
        }
        assert_eq!(
            part_of(false, b"abc", Some((9, 3, 2))),
            (Some(PartOf { reference: 9, total: 3, seq: 2 }), &b"abc"[..])
        );
        // A port-addressing IE before the concatenation IE is skipped.
        let sm = [0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x07, 0x02, 0x01, b'h', b'i'];
        assert_eq!(part_of(true, &sm, None), (Some(PartOf { reference: 7, total: 2, seq: 1 }), &b"hi"[..]));
    }

    #[test]
    fn broken_or_meaningless_concatenation_is_a_whole_message() {
        // UDH length beyond the octets: kept whole.
        assert_eq!(part_of(true, &[0x09, 0x00, 0x03], None), (None, &[0x09, 0x00, 0x03][..]));
        // IE length beyond the UDH.
        assert_eq!(part_of(true, &[0x03, 0x00, 0x05, 0x01, b'x'], None).0, None);
        // 1 of 1, part 0, part 3 of 2.
        for (t, s) in [(1, 1), (2, 0), (2, 3)] {
            assert_eq!(part_of(true, &[0x05, 0x00, 0x03, 1, t, s, b'x'], None), (None, &b"x"[..]));
            assert_eq!(part_of(false, b"x", Some((1, t, s))).0, None);
        }
        assert_eq!(part_of(true, &[], None), (None, &[][..]));
    }

    #[test]
    fn short_texts_are_one_plain_part() {
        let parts = split(&encode("hello"), LongMessages::Udh8, 7);
        assert_eq!(parts, vec![Chunk { bytes: encode("hello").bytes, udhi: false, payload: false }]);
    }

    #[test]
    fn gsm7_splits_at_153_with_an_8_bit_reference() {
        let e = encode(&"a".repeat(300));
        let parts = split(&e, LongMessages::Udh8, 0x1234);
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[0].bytes[..6], &[0x05, 0x00, 0x03, 0x34, 2, 1]);
        assert_eq!(parts[0].bytes.len(), 6 + 153);
        assert_eq!(&parts[1].bytes[..6], &[0x05, 0x00, 0x03, 0x34, 2, 2]);
        assert_eq!(parts[1].bytes.len(), 6 + 147);
        assert!(parts.iter().all(|p| p.udhi));
        assert_eq!(segments(&e, LongMessages::Udh8), 2);
    }

    #[test]
    fn sixteen_bit_reference_and_its_smaller_parts() {
        let e = encode(&"a".repeat(305));
        let parts = split(&e, LongMessages::Udh16, 0x1234);
        assert_eq!(&parts[0].bytes[..7], &[0x06, 0x08, 0x04, 0x12, 0x34, 3, 1]);
        assert_eq!(parts[0].bytes.len(), 7 + 152);
        assert_eq!(parts.len(), 3);
    }

    #[test]
    fn an_escape_is_never_split() {
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        let parts = split(&encode(&text), LongMessages::Udh8, 1);
        assert_eq!(parts[0].bytes.len(), 6 + 152, "the ESC moves to the next part");
        assert_eq!(&parts[1].bytes[6..8], &[0x1B, 0x65]);
    }

    #[test]
    fn ucs2_splits_at_67_and_keeps_surrogate_pairs_whole() {
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        let parts = split(&encode(&text), LongMessages::Udh8, 1);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].bytes.len(), 6 + 66 * 2, "the pair moves whole");
        assert_eq!(&parts[1].bytes[6..10], &[0xD8, 0x3D, 0xDE, 0x00]);
    }

    #[test]
    fn payload_mode_sends_one_pdu() {
        let e = encode(&"a".repeat(400));
        let parts = split(&e, LongMessages::Payload, 1);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].payload && !parts[0].udhi);
        assert_eq!(segments(&e, LongMessages::Payload), 3);
    }
}
