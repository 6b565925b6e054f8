//! Text to short_message bytes: GSM 03.38 7-bit when every character fits, UCS-2 otherwise;
//! and back ([`decode`]): short_message bytes of an inbound message to text by `data_coding`.
//!
//! SMPP carries GSM 7-bit unpacked, one septet per octet. Characters of the extension table
//! (`^{}[]~\|€` and form feed) are ESC + code and count as two septets. UCS-2 is UTF-16BE:
//! characters outside the BMP (emoji) take a surrogate pair, two units.

/// GSM 03.38 basic character set, indexed by septet. 0x1B (ESC) is the escape to the
/// extension table and never a character of its own.
const GSM7_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// GSM 03.38 extension table: (character, code after ESC).
const GSM7_EXTENSION: [(char, u8); 10] = [
    ('\u{0c}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

const ESC: u8 = 0x1B;

/// SMPP data_coding values this module produces.
pub mod data_coding {
    /// SMSC default alphabet; smsgate sends GSM 03.38 septets with it.
    pub const GSM7: u8 = 0x00;
    /// IA5 (CCITT T.50) / ASCII.
    pub const IA5: u8 = 0x01;
    /// 8-bit binary (SMPP 3.4: 0x02 and 0x04).
    pub const BINARY: u8 = 0x04;
    /// ISO-8859-1 (Latin-1).
    pub const LATIN1: u8 = 0x03;
    /// UCS-2 (ISO/IEC-10646), UTF-16BE.
    pub const UCS2: u8 = 0x08;
}

/// Septets of one GSM 7-bit message without concatenation.
pub const GSM7_SINGLE_SEPTETS: usize = 160;
/// UCS-2 code units of one message without concatenation (140 octets).
pub const UCS2_SINGLE_UNITS: usize = 70;

/// A text encoded for short_message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub data_coding: u8,
    pub bytes: Vec<u8>,
    /// Length in the unit of the alphabet: septets (GSM 7-bit) or code units (UCS-2).
    pub units: usize,
}

impl Encoded {
    /// Whether it fits in one short_message without concatenation.
    pub fn fits_single(&self) -> bool {
        match self.data_coding {
            data_coding::GSM7 => self.units <= GSM7_SINGLE_SEPTETS,
            _ => self.units <= UCS2_SINGLE_UNITS,
        }
    }
}

/// Septet of each ASCII character in the basic table (0xFF: none), so the common case is one
/// lookup instead of a search of the 128-entry table.
const ASCII_TO_GSM7: [u8; 128] = {
    let mut t = [0xFFu8; 128];
    let mut i = 0;
    while i < 128 {
        let c = GSM7_BASIC[i] as u32;
        if c < 128 && i != 0x1B {
            t[c as usize] = i as u8;
        }
        i += 1;
    }
    t
};

fn gsm7_septets(c: char, out: &mut Vec<u8>) -> bool {
    if let Some(&septet) = ASCII_TO_GSM7.get(c as usize) {
        if septet != 0xFF {
            out.push(septet);
            return true;
        }
    } else if let Some(i) = GSM7_BASIC.iter().position(|&g| g == c) {
        out.push(i as u8);
        return true;
    }
    if let Some(&(_, code)) = GSM7_EXTENSION.iter().find(|&&(g, _)| g == c) {
        out.extend_from_slice(&[ESC, code]);
        return true;
    }
    false
}

/// GSM 7-bit if every character has a septet, else UCS-2.
pub fn encode(text: &str) -> Encoded {
    let mut septets = Vec::with_capacity(text.len());
    if text.chars().all(|c| gsm7_septets(c, &mut septets)) {
        let units = septets.len();
        return Encoded { data_coding: data_coding::GSM7, bytes: septets, units };
    }
    let mut bytes = Vec::with_capacity(text.len() * 2);
    let mut units = 0;
    for u in text.encode_utf16() {
        bytes.extend_from_slice(&u.to_be_bytes());
        units += 1;
    }
    Encoded { data_coding: data_coding::UCS2, bytes, units }
}

/// How the octets of a short_message are to be read, from its `data_coding` (SMPP 3.4
/// 5.2.19, and the GSM 03.38 data coding groups an SMSC may pass through).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alphabet {
    /// GSM 03.38 septets, one per octet (SMPP carries them unpacked).
    Gsm7,
    /// IA5 / ASCII; octets above 0x7F are read as Latin-1.
    Ascii,
    Latin1,
    /// UTF-16BE (UCS-2 plus surrogate pairs, as handsets send emoji).
    Ucs2,
    /// 8-bit data or an alphabet smsgate does not read (JIS, Cyrillic, Hebrew, pictograms):
    /// no text, the octets are kept.
    Binary,
}

impl Alphabet {
    pub fn of(data_coding: u8) -> Alphabet {
        match data_coding {
            0x00 => Alphabet::Gsm7,
            0x01 => Alphabet::Ascii,
            0x03 => Alphabet::Latin1,
            0x08 => Alphabet::Ucs2,
            // GSM 03.38 general data coding (bits 7-6 = 00, with bit 4 set so as not to clash
            // with SMPP's own values 0x00-0x0F) and message-waiting groups: bits 3-2 name it.
            0x10..=0x3F => match (data_coding >> 2) & 0x03 {
                0 => Alphabet::Gsm7,
                2 => Alphabet::Ucs2,
                _ => Alphabet::Binary,
            },
            0xC0..=0xDF => Alphabet::Gsm7,
            0xE0..=0xEF => Alphabet::Ucs2,
            // Data coding / message class: bit 2 is 0 for GSM 7-bit, 1 for 8-bit data.
            0xF0..=0xFF if data_coding & 0x04 == 0 => Alphabet::Gsm7,
            _ => Alphabet::Binary,
        }
    }
}

/// The text of `bytes` read as `data_coding` says; `None` for binary data. Never fails: an
/// octet or unit that maps to no character (a GSM octet above 0x7F, an unpaired surrogate,
/// an odd trailing UCS-2 octet) becomes U+FFFD.
pub fn decode(data_coding: u8, bytes: &[u8]) -> Option<String> {
    match Alphabet::of(data_coding) {
        Alphabet::Gsm7 => Some(decode_gsm7(bytes)),
        Alphabet::Ascii | Alphabet::Latin1 => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Alphabet::Ucs2 => {
            let units = bytes.chunks_exact(2).map(|u| u16::from_be_bytes([u[0], u[1]]));
            let mut text: String =
                char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect();
            if bytes.len() % 2 == 1 {
                text.push(char::REPLACEMENT_CHARACTER);
            }
            Some(text)
        }
        Alphabet::Binary => None,
    }
}

/// GSM 03.38 septets (one per octet) to text. ESC + a code of the extension table is that
/// character; ESC + any other code is read as the basic character of that code (GSM 03.38
/// 6.2.1.1: a receiver without the extension shows the basic one); a trailing ESC is a space.
fn decode_gsm7(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    let mut escaped = false;
    for &b in bytes {
        if b > 0x7F {
            text.push(char::REPLACEMENT_CHARACTER);
            escaped = false;
            continue;
        }
        if escaped {
            escaped = false;
            match GSM7_EXTENSION.iter().find(|&&(_, code)| code == b) {
                Some(&(c, _)) => text.push(c),
                None if b == ESC => text.push(' '),
                None => text.push(GSM7_BASIC[usize::from(b)]),
            }
        } else if b == ESC {
            escaped = true;
        } else {
            text.push(GSM7_BASIC[usize::from(b)]);
        }
    }
    if escaped {
        text.push(' ');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_decodes_what_encode_makes() {
        let text = "@£$ Hello €[x]{}~^\\| ÄÖÑÜ§ àñ Δ_ΦΓ";
        let e = encode(text);
        assert_eq!(e.data_coding, data_coding::GSM7);
        assert_eq!(decode(data_coding::GSM7, &e.bytes).as_deref(), Some(text));
        for (i, c) in GSM7_BASIC.iter().enumerate().filter(|&(i, _)| i != 0x1B) {
            assert_eq!(decode(0, &[i as u8]), Some(c.to_string()), "septet {i:#x}");
        }
    }

    #[test]
    fn gsm7_odd_escapes_and_high_octets() {
        // ESC + 'A' (no extension character): the basic character.
        assert_eq!(decode(0, &[0x1B, 0x41, 0x1B]).as_deref(), Some("A "));
        assert_eq!(decode(0, &[0x41, 0x80]).as_deref(), Some("A\u{FFFD}"));
    }

    #[test]
    fn latin1_ascii_ucs2_and_binary() {
        assert_eq!(decode(data_coding::LATIN1, &[0x63, 0x61, 0x66, 0xE9]).as_deref(), Some("café"));
        assert_eq!(decode(data_coding::IA5, b"plain").as_deref(), Some("plain"));
        let e = encode("Привет 😀");
        assert_eq!(decode(data_coding::UCS2, &e.bytes).as_deref(), Some("Привет 😀"));
        assert_eq!(decode(data_coding::UCS2, &[0x00, 0x41, 0xD8, 0x3D]).as_deref(), Some("A\u{FFFD}"));
        assert_eq!(decode(data_coding::UCS2, &[0x00, 0x41, 0x00]).as_deref(), Some("A\u{FFFD}"));
        assert_eq!(decode(data_coding::BINARY, &[1, 2, 3]), None);
        assert_eq!(decode(0x02, &[1]), None);
    }

    #[test]
    fn gsm_data_coding_groups() {
        assert_eq!(Alphabet::of(0xF0), Alphabet::Gsm7);
        assert_eq!(Alphabet::of(0xF4), Alphabet::Binary);
        assert_eq!(Alphabet::of(0x18), Alphabet::Ucs2);
        assert_eq!(Alphabet::of(0x10), Alphabet::Gsm7);
        assert_eq!(Alphabet::of(0x14), Alphabet::Binary);
        assert_eq!(Alphabet::of(0xE0), Alphabet::Ucs2);
        assert_eq!(Alphabet::of(0x05), Alphabet::Binary);
    }

    #[test]
    fn plain_text_is_gsm7() {
        let e = encode("Hello @ 1");
        assert_eq!(e.data_coding, data_coding::GSM7);
        assert_eq!(e.bytes, vec![0x48, 0x65, 0x6C, 0x6C, 0x6F, 0x20, 0x00, 0x20, 0x31]);
        assert_eq!(e.units, 9);
    }

    #[test]
    fn every_basic_character_maps_to_its_septet() {
        for (i, c) in GSM7_BASIC.iter().enumerate().filter(|&(i, _)| i != 0x1B) {
            assert_eq!(encode(&c.to_string()).bytes, vec![i as u8], "{c:?}");
        }
    }

    #[test]
    fn extension_characters_take_two_septets() {
        let e = encode("€[x]");
        assert_eq!(e.data_coding, data_coding::GSM7);
        assert_eq!(e.bytes, vec![0x1B, 0x65, 0x1B, 0x3C, 0x78, 0x1B, 0x3E]);
        assert_eq!(e.units, 7);
    }

    #[test]
    fn other_scripts_and_emoji_are_ucs2() {
        let e = encode("Привет");
        assert_eq!(e.data_coding, data_coding::UCS2);
        assert_eq!(e.units, 6);
        assert_eq!(&e.bytes[..2], &[0x04, 0x1F]);
        let e = encode("ok 😀");
        assert_eq!(e.units, 5, "the emoji is a surrogate pair");
        assert_eq!(&e.bytes[6..], &[0xD8, 0x3D, 0xDE, 0x00]);
    }

    #[test]
    fn single_part_limits() {
        assert!(encode(&"a".repeat(160)).fits_single());
        assert!(!encode(&"a".repeat(161)).fits_single());
        assert!(!encode(&"€".repeat(81)).fits_single());
        assert!(encode(&"ж".repeat(70)).fits_single());
        assert!(!encode(&"ж".repeat(71)).fits_single());
    }
}
