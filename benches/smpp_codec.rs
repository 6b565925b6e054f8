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
use smsgate::smpp::pdu::{self, Body, Pdu, SmResp};
use smsgate::smpp::receipt;
use std::hint::black_box;

#[path = "support/pdus.rs"]
mod pdus;
use pdus::{deliver_sm, encoded, submit_sm};

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
