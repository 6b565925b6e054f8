//! The SMPP codec on the hot path (`smsgate::smpp::pdu`, `smsgate::smpp::encoding`): every
//! message is one text encoding and one submit_sm encode out, one submit_sm_resp decode back,
//! and one deliver_sm (its receipt) decode and deliver_sm_resp encode.
//!
//! - `submit_sm/encode`, `submit_sm/decode`: a single-part GSM 7-bit submit_sm as smsgate
//!   sends it (registered_delivery 1, no TLVs).
//! - `deliver_sm/encode`, `deliver_sm/decode`: a receipt as an SMSC sends it (receipt text,
//!   `receipted_message_id` and `message_state` TLVs); `deliver_sm/parse_receipt`: its text.
//! - `submit_sm_resp/decode`: the answer with a message id.
//! - `encoding/*`: `encode` of a 37-character ASCII text, a text with GSM extension characters
//!   (`€[]`, two septets each) and one that needs UCS-2.
//!
//! Run: `cargo bench --bench smpp_codec`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smsgate::smpp::encoding;
use smsgate::smpp::pdu::{self, tag, Body, Pdu, Sm, SmResp, Tlv};
use smsgate::smpp::receipt;
use std::hint::black_box;

fn submit_sm() -> Pdu {
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

fn deliver_sm() -> Pdu {
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

fn encoded(p: &Pdu) -> Vec<u8> {
    let mut out = Vec::new();
    p.encode(&mut out).expect("benchmark PDUs are valid");
    out
}

fn codec(c: &mut Criterion) {
    for (name, p) in [("submit_sm", submit_sm()), ("deliver_sm", deliver_sm())] {
        let bytes = encoded(&p);
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        let mut out = Vec::with_capacity(512);
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                black_box(&p).encode(&mut out).expect("valid");
                black_box(out.len())
            })
        });
        g.bench_function("decode", |b| b.iter(|| pdu::decode(black_box(&bytes)).expect("valid").expect("complete")));
        if name == "deliver_sm" {
            let Body::DeliverSm(sm) = &p.body else { unreachable!("built as deliver_sm") };
            g.bench_function("parse_receipt", |b| b.iter(|| receipt::parse(black_box(&sm.short_message))));
        }
        g.finish();
    }
    let resp = encoded(&Pdu::new(0x0001_2345, Body::SubmitSmResp(SmResp { message_id: "5F3A1B2C".into() })));
    c.bench_function("submit_sm_resp/decode", |b| {
        b.iter(|| pdu::decode(black_box(&resp)).expect("valid").expect("complete"))
    });
}

fn text_encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("encoding");
    for (name, text) in [
        ("gsm7_ascii", "Your code is 482913. Valid 10 minutes"),
        ("gsm7_extension", "Price: 10€ [incl. tax] {see} ~terms~ |ok|"),
        ("ucs2", "Ваш код 482913. Действителен 10 минут"),
    ] {
        g.bench_function(name, |b| b.iter(|| encoding::encode(black_box(text))));
    }
    g.finish();
}

criterion_group!(benches, codec, text_encoding);
criterion_main!(benches);
