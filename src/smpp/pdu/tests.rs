use super::*;

fn encoded(pdu: &Pdu) -> Vec<u8> {
    let mut out = Vec::new();
    pdu.encode(&mut out).expect("test PDUs are encodable");
    out
}

fn sample_sm() -> Sm {
    Sm {
        service_type: "CMT".into(),
        source_addr_ton: 5,
        source_addr_npi: 0,
        source_addr: "SMSGATE".into(),
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: "491701234567".into(),
        esm_class: 0x40,
        protocol_id: 0,
        priority_flag: 1,
        schedule_delivery_time: String::new(),
        validity_period: "000001000000000R".into(),
        registered_delivery: 1,
        replace_if_present_flag: 0,
        data_coding: 8,
        sm_default_msg_id: 0,
        short_message: vec![0x05, 0x00, 0x03, 0x00, 0x02, 0x01, 0x00, 0x40, 0x00, 0x00],
        tlvs: vec![Tlv::new(tag::USER_MESSAGE_REFERENCE, [0, 7]), Tlv::new(0x1400, [])],
    }
}

fn every_body() -> Vec<Pdu> {
    let bind = Bind {
        system_id: "smsgate".into(),
        password: "secret".into(),
        system_type: "VMA".into(),
        interface_version: 0x34,
        addr_ton: 1,
        addr_npi: 1,
        address_range: "^49".into(),
    };
    let bind_resp = BindResp { system_id: "SMSC".into(), sc_interface_version: Some(0x34) };
    let bodies = vec![
        Body::BindTransmitter(bind.clone()),
        Body::BindReceiver(bind.clone()),
        Body::BindTransceiver(bind),
        Body::BindTransmitterResp(bind_resp.clone()),
        Body::BindReceiverResp(BindResp::default()),
        Body::BindTransceiverResp(bind_resp),
        Body::SubmitSm(Box::new(sample_sm())),
        Body::SubmitSmResp(SmResp { message_id: "0123456789abcdef".into() }),
        Body::DeliverSm(Box::default()),
        Body::DeliverSmResp(SmResp::default()),
        Body::EnquireLink,
        Body::EnquireLinkResp,
        Body::Unbind,
        Body::UnbindResp,
        Body::GenericNack,
    ];
    bodies.into_iter().enumerate().map(|(i, body)| Pdu::new(i as u32 + 1, body)).collect()
}

#[test]
fn every_body_round_trips() {
    for pdu in every_body() {
        let bytes = encoded(&pdu);
        assert_eq!(bytes.len(), u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize);
        assert_eq!(decode(&bytes), Ok(Some((pdu.clone(), bytes.len()))), "{pdu:?}");
    }
}

#[test]
fn error_responses_round_trip_with_an_empty_body() {
    let mut pdu = Pdu::new(9, Body::SubmitSmResp(SmResp::default()));
    pdu.status = CommandStatus::RTHROTTLED;
    let bytes = encoded(&pdu);
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(decode(&bytes), Ok(Some((pdu, HEADER_LEN))));

    let mut bind = Pdu::new(1, Body::BindTransceiverResp(BindResp::default()));
    bind.status = CommandStatus::RINVPASWD;
    let bytes = encoded(&bind);
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(decode(&bytes), Ok(Some((bind, HEADER_LEN))));
}

#[test]
fn decodes_a_hand_written_bind_transceiver() {
    // SMPP 3.4 section 4.1.5: system_id, password, system_type, interface_version,
    // addr_ton, addr_npi, address_range.
    #[rustfmt::skip]
    let bytes: &[u8] = &[
        0x00, 0x00, 0x00, 0x2A, // command_length 42
        0x00, 0x00, 0x00, 0x09, // bind_transceiver
        0x00, 0x00, 0x00, 0x00, // ESME_ROK
        0x00, 0x00, 0x00, 0x01, // sequence 1
        b's', b'm', b'p', b'p', b'c', b'l', b'i', b'e', b'n', b't', b'1', 0x00,
        b'p', b'a', b's', b's', b'w', b'o', b'r', b'd', 0x00,
        0x00, // system_type ""
        0x34, // interface_version 3.4
        0x01, 0x01, // addr_ton international, addr_npi ISDN
        0x00, // address_range ""
    ];
    let (pdu, used) = decode(bytes).unwrap().unwrap();
    assert_eq!(used, 42);
    assert_eq!(pdu.sequence, 1);
    assert_eq!(pdu.command_id(), command_id::BIND_TRANSCEIVER);
    assert!(!pdu.is_response());
    let Body::BindTransceiver(bind) = pdu.body else {
        panic!("not a bind_transceiver: {:?}", pdu.body);
    };
    assert_eq!(bind.system_id, "smppclient1");
    assert_eq!(bind.password, "password");
    assert_eq!(bind.system_type, "");
    assert_eq!((bind.interface_version, bind.addr_ton, bind.addr_npi), (0x34, 1, 1));
    assert_eq!(bind.address_range, "");
}

const RECEIPT_TEXT: &[u8] = b"id:2a5f0c1b sub:001 dlvrd:001 submit date:2401011200 \
done date:2401011201 stat:DELIVRD err:000 text:Hello";

#[test]
fn decodes_a_hand_written_deliver_sm_receipt() {
    // SMPP 3.4 section 4.6.1, the layout of appendix B's receipt, with the 5.3.2 TLVs.
    #[rustfmt::skip]
    let bytes: Vec<u8> = [
        &[
            0x00, 0x00, 0x00, 0xAE, // command_length 174
            0x00, 0x00, 0x00, 0x05, // deliver_sm
            0x00, 0x00, 0x00, 0x00, // ESME_ROK
            0x00, 0x00, 0x01, 0x02, // sequence 258
            0x00, // service_type ""
            0x01, 0x01, // source_addr_ton, source_addr_npi
        ][..],
        b"4915112345678\0", // source_addr: the handset
        &[0x00, 0x00], // dest_addr_ton, dest_addr_npi
        b"12345\0", // destination_addr: the original sender
        &[
            0x04, // esm_class: SMSC delivery receipt
            0x00, // protocol_id
            0x00, // priority_flag
            0x00, // schedule_delivery_time ""
            0x00, // validity_period ""
            0x00, // registered_delivery
            0x00, // replace_if_present_flag
            0x00, // data_coding
            0x00, // sm_default_msg_id
            0x69, // sm_length 105
        ],
        RECEIPT_TEXT,
        &[0x00, 0x1E, 0x00, 0x09], b"2a5f0c1b\0", // receipted_message_id
        &[0x04, 0x27, 0x00, 0x01, 0x02], // message_state DELIVERED
    ]
    .concat();
    assert_eq!(bytes.len(), 174, "hand-counted command_length");
    assert_eq!(RECEIPT_TEXT.len(), 105, "hand-counted sm_length");

    let (pdu, used) = decode(&bytes).unwrap().unwrap();
    assert_eq!((used, pdu.sequence, pdu.status), (174, 258, CommandStatus::ROK));
    let Body::DeliverSm(sm) = pdu.body else {
        panic!("not a deliver_sm: {:?}", pdu.body);
    };
    assert_eq!(sm.source_addr, "4915112345678");
    assert_eq!(sm.destination_addr, "12345");
    assert_eq!(sm.esm_class, 0x04);
    assert_eq!(sm.short_message, RECEIPT_TEXT);
    assert_eq!(sm.tlv(tag::RECEIPTED_MESSAGE_ID), Some(&b"2a5f0c1b\0"[..]));
    assert_eq!(sm.tlv_str(tag::RECEIPTED_MESSAGE_ID).as_deref(), Some("2a5f0c1b"));
    assert_eq!(sm.tlv_u8(tag::MESSAGE_STATE), Some(2));
    assert_eq!(sm.tlv(tag::NETWORK_ERROR_CODE), None);
}

#[test]
fn incomplete_input_needs_more_at_every_split_point() {
    for pdu in every_body() {
        let bytes = encoded(&pdu);
        for split in 0..bytes.len() {
            assert_eq!(decode(&bytes[..split]), Ok(None), "{pdu:?} cut at {split}");
        }
    }
}

#[test]
fn decodes_one_pdu_at_a_time_from_a_stream() {
    let pdus = every_body();
    let mut stream = Vec::new();
    for pdu in &pdus {
        pdu.encode(&mut stream).unwrap();
    }
    let mut at = 0;
    for pdu in &pdus {
        let (got, used) = decode(&stream[at..]).unwrap().unwrap();
        assert_eq!(&got, pdu);
        at += used;
    }
    assert_eq!(at, stream.len());
}

fn frame(command_id: u32, status: u32, sequence: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&command_id.to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn sm_body(sm: &Sm) -> Vec<u8> {
    let bytes = encoded(&Pdu::new(1, Body::SubmitSm(Box::new(sm.clone()))));
    bytes[HEADER_LEN..].to_vec()
}

#[test]
fn broken_lengths_close_the_stream() {
    for len in [0u32, 1, 15, MAX_PDU_LEN as u32 + 1, u32::MAX] {
        let mut bytes = frame(command_id::ENQUIRE_LINK, 0, 77, &[]);
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        // The error comes as soon as the length is known, with what the header has so far.
        let early = decode(&bytes[..4]).unwrap_err();
        assert_eq!((early.kind, early.skip), (DecodeErrorKind::InvalidLength(len), None));
        assert_eq!((early.command_id, early.sequence), (0, 0));
        let full = decode(&bytes).unwrap_err();
        assert_eq!((full.command_id, full.sequence, full.skip), (0x15, 77, None));
        assert_eq!(full.nack_status(), CommandStatus::RINVCMDLEN);
    }
}

#[test]
fn malformed_frames_are_skipped_with_the_right_status() {
    let bind_body = |system_id: &[u8], rest: &[u8]| [system_id, rest].concat();
    let long_dest = Sm { destination_addr: "x".into(), ..Sm::default() };
    let mut long_dest_body = sm_body(&long_dest);
    // Replace the 1-octet destination with 21 octets and no NUL within the limit.
    let at = long_dest_body.iter().position(|&b| b == b'x').unwrap();
    long_dest_body.splice(at..at + 1, [b'1'; 21]);

    let sm_past_end = {
        let mut body = sm_body(&Sm { short_message: b"abc".to_vec(), ..Sm::default() });
        let at = body.len() - 4;
        body[at] = 200; // sm_length beyond the body
        body
    };
    let tlv_past_end = [sm_body(&Sm::default()), vec![0x04, 0x24, 0x00, 0x10, 1, 2]].concat();
    let partial_tlv = [sm_body(&Sm::default()), vec![0x04, 0x24, 0x00]].concat();

    use command_id as id;
    use DecodeErrorKind as K;
    let cases: Vec<(Vec<u8>, DecodeErrorKind, CommandStatus)> = vec![
        (frame(0x0000_0099, 0, 5, &[]), K::UnknownCommand, CommandStatus::RINVCMDID),
        (frame(id::DATA_SM, 0, 5, &[0; 20]), K::UnknownCommand, CommandStatus::RINVCMDID),
        (frame(id::ENQUIRE_LINK, 0, 5, &[0]), K::TrailingBytes, CommandStatus::RINVCMDLEN),
        (frame(id::GENERIC_NACK, 3, 5, &[1, 2]), K::TrailingBytes, CommandStatus::RINVCMDLEN),
        (frame(id::BIND_TRANSCEIVER, 0, 5, b"abc"), K::Truncated("system_id"), CommandStatus::RINVCMDLEN),
        (
            frame(id::BIND_TRANSCEIVER, 0, 5, &bind_body(&[b'a'; 16], b"\0pw\0\0\x34\0\0\0")),
            K::FieldTooLong("system_id"),
            CommandStatus::RINVSYSID,
        ),
        (
            frame(id::BIND_TRANSCEIVER, 0, 5, b"id\0toolongpw\0\0\x34\0\0\0"),
            K::FieldTooLong("password"),
            CommandStatus::RINVPASWD,
        ),
        (
            frame(id::BIND_TRANSCEIVER, 0, 5, b"id\0pw\0\0\x34\0\0"),
            K::Truncated("address_range"),
            CommandStatus::RINVCMDLEN,
        ),
        (frame(id::BIND_TRANSCEIVER, 0, 5, b"id\0pw\0\0\x34\0\0\0\0"), K::TrailingBytes, CommandStatus::RINVCMDLEN),
        (frame(id::SUBMIT_SM, 0, 5, &long_dest_body), K::FieldTooLong("destination_addr"), CommandStatus::RINVDSTADR),
        (frame(id::SUBMIT_SM, 0, 5, &sm_past_end), K::Truncated("short_message"), CommandStatus::RINVCMDLEN),
        (frame(id::DELIVER_SM, 0, 5, &tlv_past_end), K::Truncated("tlv value"), CommandStatus::RINVCMDLEN),
        (frame(id::DELIVER_SM, 0, 5, &partial_tlv), K::Truncated("tlv length"), CommandStatus::RINVCMDLEN),
        (frame(id::SUBMIT_SM, 0, 5, &[]), K::Truncated("service_type"), CommandStatus::RINVCMDLEN),
        (frame(id::SUBMIT_SM_RESP, 0, 5, &[]), K::Truncated("message_id"), CommandStatus::RINVCMDLEN),
        (frame(id::SUBMIT_SM_RESP, 0x45, 5, b"abc"), K::Truncated("message_id"), CommandStatus::RINVCMDLEN),
        (frame(id::SUBMIT_SM_RESP, 0, 5, b"id\0x"), K::TrailingBytes, CommandStatus::RINVCMDLEN),
        (frame(id::BIND_TRANSMITTER_RESP, 0, 5, &[]), K::Truncated("system_id"), CommandStatus::RINVCMDLEN),
    ];
    let next = encoded(&Pdu::new(6, Body::EnquireLink));
    for (bytes, kind, status) in cases {
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.kind, kind, "{bytes:02x?}");
        assert_eq!(err.skip, Some(bytes.len()), "{bytes:02x?}");
        assert_eq!(err.sequence, 5);
        assert_eq!(err.command_id, u32::from_be_bytes(bytes[4..8].try_into().unwrap()));
        assert_eq!(err.nack_status(), status, "{kind}");
        // Skipping the frame finds the next PDU.
        let stream = [bytes.as_slice(), &next].concat();
        let skip = decode(&stream).unwrap_err().skip.unwrap();
        assert_eq!(decode(&stream[skip..]).unwrap().unwrap().0.sequence, 6);
    }
}

#[test]
fn error_responses_without_a_body_are_accepted() {
    let bytes = frame(command_id::SUBMIT_SM_RESP, 0x58, 3, &[]);
    let (pdu, _) = decode(&bytes).unwrap().unwrap();
    assert_eq!(pdu.status, CommandStatus::RTHROTTLED);
    assert_eq!(pdu.body, Body::SubmitSmResp(SmResp::default()));

    let bytes = frame(command_id::DELIVER_SM_RESP, 0, 3, &[]);
    assert!(decode(&bytes).unwrap().is_some());
}

#[test]
fn non_utf8_strings_decode_lossily_and_short_message_stays_bytes() {
    let mut body = sm_body(&Sm { source_addr: "AB".into(), short_message: vec![0xff, 0x00, 0xfe], ..Sm::default() });
    let at = body.iter().position(|&b| b == b'A').unwrap();
    body[at] = 0xff;
    let (pdu, _) = decode(&frame(command_id::DELIVER_SM, 0, 1, &body)).unwrap().unwrap();
    let Body::DeliverSm(sm) = pdu.body else {
        panic!("not a deliver_sm");
    };
    assert_eq!(sm.source_addr, "\u{fffd}B");
    assert_eq!(sm.short_message, [0xff, 0x00, 0xfe]);
}

#[test]
fn encode_refuses_what_the_spec_cannot_carry() {
    let too_long_dest = Sm { destination_addr: "1".repeat(21), ..Sm::default() };
    let with_nul = Sm { source_addr: "a\0b".into(), ..Sm::default() };
    let long_text = Sm { short_message: vec![b'a'; 255], ..Sm::default() };
    let huge_tlv = Sm { tlvs: vec![Tlv::new(tag::MESSAGE_PAYLOAD, vec![0; 70_000])], ..Sm::default() };
    let cases = [
        (too_long_dest, "destination_addr"),
        (with_nul, "source_addr"),
        (long_text, "short_message"),
        (huge_tlv, "tlv"),
    ];
    for (sm, field) in cases {
        let mut out = vec![1, 2, 3];
        let err = Pdu::new(1, Body::SubmitSm(Box::new(sm))).encode(&mut out).unwrap_err();
        assert_eq!(err.field, field);
        assert_eq!(out, [1, 2, 3], "output left as it was");
    }
    // Two TLVs of 40 KB each: every field fits, the PDU does not.
    let too_big =
        Sm { tlvs: vec![Tlv::new(0x1400, vec![0; 40_000]), Tlv::new(0x1401, vec![0; 40_000])], ..Sm::default() };
    let mut out = Vec::new();
    let err = Pdu::new(1, Body::SubmitSm(Box::new(too_big))).encode(&mut out);
    assert_eq!(err, Err(EncodeError { field: "pdu" }));
    assert!(out.is_empty());
}

#[test]
fn statuses_have_names() {
    assert_eq!(CommandStatus::RTHROTTLED.to_string(), "ESME_RTHROTTLED");
    assert_eq!(CommandStatus::RMSGQFUL.0, 0x14);
    assert_eq!(CommandStatus::RX_T_APPN.to_string(), "ESME_RX_T_APPN");
    assert_eq!(CommandStatus(0x0000_0401).to_string(), "0x00000401");
    assert_eq!(CommandStatus(0x0401).name(), None);
    assert!(CommandStatus::ROK.is_ok() && !CommandStatus::RSYSERR.is_ok());
}

/// xorshift64: a deterministic source of noise without a new dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Decoding never panics, never claims more octets than it was given, and whatever it
/// decodes re-encodes to something that decodes the same.
fn check_decode_is_total(bytes: &[u8]) {
    match decode(bytes) {
        Ok(None) => {}
        Ok(Some((pdu, used))) => {
            assert!((HEADER_LEN..=bytes.len()).contains(&used));
            let mut again = Vec::new();
            if pdu.encode(&mut again).is_ok() {
                assert_eq!(decode(&again), Ok(Some((pdu, again.len()))));
            }
        }
        Err(err) => {
            if let Some(skip) = err.skip {
                assert!((HEADER_LEN..=bytes.len()).contains(&skip));
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let ids = [1u32, 2, 4, 5, 6, 9, 0x15, 0x8000_0000, 0x8000_0001, 0x8000_0004, 0x8000_0005];
    for _ in 0..20_000 {
        // Pure noise, mostly rejected by the length check.
        let len = rng.below(64);
        let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check_decode_is_total(&noise);

        // A plausible header over a noisy body, to reach the body parsers.
        let body_len = rng.below(300);
        let mut body: Vec<u8> = (0..body_len).map(|_| rng.next() as u8).collect();
        for b in body.iter_mut() {
            if rng.below(4) == 0 {
                *b = 0; // NULs often enough to end C-strings
            }
        }
        let id = ids[rng.below(ids.len())];
        let status = if rng.below(2) == 0 { 0 } else { 0x45 };
        check_decode_is_total(&frame(id, status, 1, &body));
    }
    // Valid PDUs with a few octets flipped.
    let valid: Vec<Vec<u8>> = every_body().iter().map(encoded).collect();
    for _ in 0..20_000 {
        let mut bytes = valid[rng.below(valid.len())].clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        check_decode_is_total(&bytes);
    }
}
