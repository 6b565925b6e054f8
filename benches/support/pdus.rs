//! The PDUs the codec benchmarks share: a GSM 7-bit submit_sm, a deliver_sm receipt with its
//! TLVs, and their bytes.

use smsgate::smpp::encoding;
use smsgate::smpp::pdu::{tag, Body, Pdu, Sm, Tlv};

pub fn submit_sm() -> Pdu {
    let text = encoding::encode("Your code is 482913. Valid 10 minutes");
    Pdu::new(
        0x0001_2345,
        Body::SubmitSm(Box::new(Sm {
            source_addr_ton: 5,
            source_addr: "ACME".into(),
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            destination_addr: "4915112345678".into(),
            registered_delivery: 1,
            data_coding: text.data_coding,
            short_message: text.bytes,
            ..Sm::default()
        })),
    )
}

pub fn deliver_sm() -> Pdu {
    let text = "id:5F3A1B2C sub:001 dlvrd:001 submit date:2611230450 done date:2611230451 stat:DELIVRD err:000 text:Your code is 482913";
    Pdu::new(
        77,
        Body::DeliverSm(Box::new(Sm {
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: "4915112345678".into(),
            destination_addr: "ACME".into(),
            esm_class: 0x04,
            short_message: text.as_bytes().to_vec(),
            tlvs: vec![Tlv::cstr(tag::RECEIPTED_MESSAGE_ID, "5F3A1B2C"), Tlv::new(tag::MESSAGE_STATE, [2u8])],
            ..Sm::default()
        })),
    )
}

pub fn encoded(p: &Pdu) -> Vec<u8> {
    let mut out = Vec::new();
    p.encode(&mut out).expect("benchmark PDUs are valid");
    out
}
