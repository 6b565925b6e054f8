//! smsgate's SMPP codec (`src/smpp/pdu.rs`) against rusmpp, the crate DESIGN.md names, on the
//! PDUs of the hot path: decoding a submit_sm_resp and a deliver_sm receipt, encoding a
//! submit_sm. Both decode from the same bytes (produced by our encoder and checked to decode
//! in rusmpp too).

use criterion::{criterion_group, criterion_main, Criterion};
use rusmpp::decode::DecodeWithLength;
use smsgate::smpp::pdu::{self, Body, CommandStatus, Pdu, Sm, SmResp, Tlv};
use std::hint::black_box;

fn receipt() -> Pdu {
    let text =
        b"id:0123456789 sub:001 dlvrd:001 submit date:2611231204 done date:2611231205 stat:DELIVRD err:000 text:Hello";
    Pdu {
        status: CommandStatus::ROK,
        sequence: 7,
        body: Body::DeliverSm(Box::new(Sm {
            source_addr: "4915112345678".into(),
            destination_addr: "ACME".into(),
            esm_class: 0x04,
            short_message: text.to_vec(),
            tlvs: vec![
                Tlv::cstr(pdu::tag::RECEIPTED_MESSAGE_ID, "0123456789"),
                Tlv::new(pdu::tag::MESSAGE_STATE, vec![2]),
            ],
            ..Sm::default()
        })),
    }
}

fn submit() -> Pdu {
    Pdu {
        status: CommandStatus::ROK,
        sequence: 9,
        body: Body::SubmitSm(Box::new(Sm {
            source_addr_ton: 5,
            source_addr: "ACME".into(),
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            destination_addr: "4915112345678".into(),
            registered_delivery: 1,
            short_message: b"Your code is 123456".to_vec(),
            ..Sm::default()
        })),
    }
}

fn bytes(p: &Pdu) -> Vec<u8> {
    let mut out = Vec::new();
    p.encode(&mut out).expect("encodes");
    out
}

fn rusmpp_decode(buf: &[u8]) -> rusmpp::Command {
    // rusmpp decodes a command from the bytes after command_length, from a BytesMut it consumes.
    let mut src = bytes::BytesMut::from(&buf[4..]);
    let (command, _) = rusmpp::Command::decode(&mut src, buf.len() - 4).expect("rusmpp decodes");
    command
}

fn codecs(c: &mut Criterion) {
    let resp = bytes(&Pdu {
        status: CommandStatus::ROK,
        sequence: 9,
        body: Body::SubmitSmResp(SmResp { message_id: "e3a6886500000001".into() }),
    });
    let dlr = bytes(&receipt());
    let sub = submit();
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

    let theirs = rusmpp_decode(&bytes(&sub));
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
