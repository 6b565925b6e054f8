//! Text to short_message bytes: GSM 03.38 7-bit when every character fits, UCS-2 otherwise.
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

#[cfg(test)]
mod tests {
    use super::*;

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
