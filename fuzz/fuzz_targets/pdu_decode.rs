//! Feeds arbitrary octets to `smpp::pdu::decode` as a peer's stream would arrive: decode,
//! step over what was consumed (or what a malformed but framed PDU says to skip), stop when
//! more octets are needed or the framing is lost. Every PDU that decodes is re-encoded:
//! encoding must not panic, and what encodes must decode back to the same PDU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate::smpp::pdu::{self, HEADER_LEN, MAX_PDU_LEN};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        match pdu::decode(&data[at..]) {
            Ok(None) => break,
            Ok(Some((decoded, used))) => {
                assert!(
                    (HEADER_LEN..=MAX_PDU_LEN).contains(&used) && used <= data.len() - at,
                    "consumed {used} of {}",
                    data.len() - at
                );
                roundtrip(&decoded);
                at += used;
            }
            Err(err) => {
                // Display must not panic either: the sim and the session log it.
                let _ = err.to_string();
                let _ = err.nack_status();
                match err.skip {
                    Some(skip) => {
                        assert!((HEADER_LEN..=data.len() - at).contains(&skip), "skip {skip}");
                        at += skip;
                    }
                    None => break,
                }
            }
        }
    }
});

fn roundtrip(decoded: &pdu::Pdu) {
    let mut out = vec![0xAA; 3];
    match decoded.encode(&mut out) {
        Ok(()) => {
            let encoded = &out[3..];
            let again = pdu::decode(encoded)
                .unwrap_or_else(|err| panic!("{decoded:?} encodes to {encoded:02x?}: {err}"))
                .unwrap_or_else(|| panic!("{decoded:?} encodes to an incomplete frame"));
            assert_eq!(again.1, encoded.len(), "command_length of {decoded:?}");
            assert_eq!(&again.0, decoded, "decode(encode(x)) != x");
        }
        // A string decoded lossily can outgrow its field: encode refuses, leaving `out` as
        // it was.
        Err(_) => assert_eq!(out, [0xAA; 3], "a failed encode left octets behind"),
    }
}
