//! smsgate's SMPP codec (`src/smpp/pdu.rs`) against rusmpp, the crate DESIGN.md names, on the
//! PDUs of the hot path: decoding a submit_sm_resp and a deliver_sm receipt, encoding a
//! submit_sm (the fixtures of benches/support/pdus.rs). Both decode from the same bytes (produced by our encoder and checked to decode
//! in rusmpp too).

use criterion::{criterion_group, criterion_main, Criterion};
use rusmpp::decode::DecodeWithLength;
use smsgate::smpp::pdu::{self, Body, CommandStatus, Pdu, SmResp};
use std::hint::black_box;

#[path = "support/pdus.rs"]
mod pdus;
use pdus::{deliver_sm, encoded, submit_sm};

fn rusmpp_decode(buf: &[u8]) -> rusmpp::Command {
    // rusmpp decodes a command from the bytes after command_length, from a BytesMut it consumes.
    let mut src = bytes::BytesMut::from(&buf[4..]);
    let (command, _) = rusmpp::Command::decode(&mut src, buf.len() - 4).expect("rusmpp decodes");
    command
}

fn codecs(c: &mut Criterion) {
    let resp = encoded(&Pdu {
        status: CommandStatus::ROK,
        sequence: 9,
        body: Body::SubmitSmResp(SmResp { message_id: "e3a6886500000001".into() }),
    });
    let dlr = encoded(&deliver_sm());
    let sub = submit_sm();
    rusmpp_decode(&resp);
    rusmpp_decode(&dlr);

    let mut g = c.benchmark_group("decode_submit_sm_resp");
    g.bench_function("smsgate", |b| b.iter(|| pdu::decode(black_box(&resp))));
    g.bench_function("rusmpp", |b| b.iter(|| rusmpp_decode(black_box(&resp))));
    g.finish();

    let mut g = c.benchmark_group("decode_deliver_sm_receipt");
    g.bench_function("smsgate", |b| b.iter(|| pdu::decode(black_box(&dlr))));
    g.bench_function("rusmpp", |b| b.iter(|| rusmpp_decode(black_box(&dlr))));
    g.finish();

    let theirs = rusmpp_decode(&encoded(&sub));
    let mut g = c.benchmark_group("encode_submit_sm");
    let mut out = Vec::with_capacity(256);
    g.bench_function("smsgate", |b| {
        b.iter(|| {
            out.clear();
            black_box(&sub).encode(&mut out)
        })
    });
    g.bench_function("rusmpp", |b| {
        b.iter(|| {
            use rusmpp::encode::{Encode, Length};
            let t = black_box(&theirs);
            let mut dst = vec![0u8; t.length()];
            t.encode(&mut dst)
        })
    });
    g.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
