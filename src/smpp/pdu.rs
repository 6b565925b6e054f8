//! SMPP 3.4 PDUs: bytes ↔ [`Pdu`]. Pure: no I/O, no async, no allocation on the error
//! path, so it can be fuzzed. [`decode`] checks the frame (its `command_length`) before it
//! parses the body, like mini-redis's `Frame::check` / `Frame::parse`.
//!
//! Rules kept on decode, from the SMPP 3.4 specification (section 4 and 5):
//! - every C-octet string ends with a NUL inside the body and within the field's maximum
//!   length (which counts the NUL);
//! - strings that are not UTF-8 are decoded lossily; `short_message` and TLV values stay bytes;
//! - TLVs run to the end of the body; unknown tags are kept; a partial TLV is an error;
//! - a response with a non-zero `command_status` may come with an empty body.

use std::borrow::Cow;
use std::fmt;

/// Octets in every PDU header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

/// Largest `command_length` accepted, in octets. Why: the longest submit_sm without TLVs is
/// under 450 octets, and SMSCs cap `message_payload` at a few KiB although its u16 length
/// allows 64 KiB; a larger length means the stream lost its framing, not a big message.
pub const MAX_PDU_LEN: usize = 64 * 1024;

/// Longest `short_message` we encode, in octets (SMPP 3.4 section 5.2.21: `sm_length` 0-254).
/// Longer text goes in the `message_payload` TLV.
pub const MAX_SHORT_MESSAGE: usize = 254;

// === CommandStatus ===

/// `command_status` of a PDU. Unknown values are kept as they are: SMSCs use vendor codes
/// in 0x0400-0x04FF.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub struct CommandStatus(pub u32);

macro_rules! command_statuses {
    ($($name:ident = $value:expr,)*) => {
        impl CommandStatus {
            $(pub const $name: CommandStatus = CommandStatus($value);)*

            /// The spec's name, e.g. `"ESME_RTHROTTLED"`; `None` for a vendor code
            /// ([`fmt::Display`] then prints `0x000000xx`).
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(concat!("ESME_", stringify!($name))),)*
                    _ => None,
                }
            }
        }
    };
}

// SMPP 3.4 section 5.1.3, plus RINVDCS from SMPP 5.0 (section 4.7.6), which SMSCs send to 3.4
// binds too.
command_statuses! {
    ROK = 0x0000_0000,
    RINVMSGLEN = 0x0000_0001,
    RINVCMDLEN = 0x0000_0002,
    RINVCMDID = 0x0000_0003,
    RINVBNDSTS = 0x0000_0004,
    RALYBND = 0x0000_0005,
    RINVPRTFLG = 0x0000_0006,
    RINVREGDLVFLG = 0x0000_0007,
    RSYSERR = 0x0000_0008,
    RINVSRCADR = 0x0000_000A,
    RINVDSTADR = 0x0000_000B,
    RINVMSGID = 0x0000_000C,
    RBINDFAIL = 0x0000_000D,
    RINVPASWD = 0x0000_000E,
    RINVSYSID = 0x0000_000F,
    RCANCELFAIL = 0x0000_0011,
    RREPLACEFAIL = 0x0000_0013,
    RMSGQFUL = 0x0000_0014,
    RINVSERTYP = 0x0000_0015,
    RINVNUMDESTS = 0x0000_0033,
    RINVDLNAME = 0x0000_0034,
    RINVDESTFLAG = 0x0000_0040,
    RINVSUBREP = 0x0000_0042,
    RINVESMCLASS = 0x0000_0043,
    RCNTSUBDL = 0x0000_0044,
    RSUBMITFAIL = 0x0000_0045,
    RINVSRCTON = 0x0000_0048,
    RINVSRCNPI = 0x0000_0049,
    RINVDSTTON = 0x0000_0050,
    RINVDSTNPI = 0x0000_0051,
    RINVSYSTYP = 0x0000_0053,
    RINVREPFLAG = 0x0000_0054,
    RINVNUMMSGS = 0x0000_0055,
    RTHROTTLED = 0x0000_0058,
    RINVSCHED = 0x0000_0061,
    RINVEXPIRY = 0x0000_0062,
    RINVDFTMSGID = 0x0000_0063,
    RX_T_APPN = 0x0000_0064,
    RX_P_APPN = 0x0000_0065,
    RX_R_APPN = 0x0000_0066,
    RQUERYFAIL = 0x0000_0067,
    RINVOPTPARSTREAM = 0x0000_00C0,
    ROPTPARNOTALLWD = 0x0000_00C1,
    RINVPARLEN = 0x0000_00C2,
    RMISSINGOPTPARAM = 0x0000_00C3,
    RINVOPTPARAMVAL = 0x0000_00C4,
    RDELIVERYFAILURE = 0x0000_00FE,
    RUNKNOWNERR = 0x0000_00FF,
    RINVDCS = 0x0000_0104,
}

impl CommandStatus {
    pub fn is_ok(self) -> bool {
        self == Self::ROK
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "0x{:08x}", self.0),
        }
    }
}

// === command ids and TLV tags ===

/// `command_id` values, SMPP 3.4 section 5.1.2.1. Only those with a [`Body`] variant are
/// decoded; the others are named so a generic_nack can be logged with a name.
pub mod command_id {
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    pub const BIND_RECEIVER: u32 = 0x0000_0001;
    pub const BIND_RECEIVER_RESP: u32 = 0x8000_0001;
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    pub const BIND_TRANSMITTER_RESP: u32 = 0x8000_0002;
    pub const QUERY_SM: u32 = 0x0000_0003;
    pub const QUERY_SM_RESP: u32 = 0x8000_0003;
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    pub const SUBMIT_SM_RESP: u32 = 0x8000_0004;
    pub const DELIVER_SM: u32 = 0x0000_0005;
    pub const DELIVER_SM_RESP: u32 = 0x8000_0005;
    pub const UNBIND: u32 = 0x0000_0006;
    pub const UNBIND_RESP: u32 = 0x8000_0006;
    pub const REPLACE_SM: u32 = 0x0000_0007;
    pub const REPLACE_SM_RESP: u32 = 0x8000_0007;
    pub const CANCEL_SM: u32 = 0x0000_0008;
    pub const CANCEL_SM_RESP: u32 = 0x8000_0008;
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    pub const BIND_TRANSCEIVER_RESP: u32 = 0x8000_0009;
    pub const OUTBIND: u32 = 0x0000_000B;
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    pub const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;
    pub const SUBMIT_MULTI: u32 = 0x0000_0021;
    pub const SUBMIT_MULTI_RESP: u32 = 0x8000_0021;
    pub const ALERT_NOTIFICATION: u32 = 0x0000_0102;
    pub const DATA_SM: u32 = 0x0000_0103;
    pub const DATA_SM_RESP: u32 = 0x8000_0103;

    /// Bit set in the command_id of every response.
    pub const RESPONSE_BIT: u32 = 0x8000_0000;
}

/// TLV tags, SMPP 3.4 section 5.3.2.
pub mod tag {
    pub const DEST_ADDR_SUBUNIT: u16 = 0x0005;
    pub const SOURCE_ADDR_SUBUNIT: u16 = 0x000D;
    pub const QOS_TIME_TO_LIVE: u16 = 0x0017;
    pub const PAYLOAD_TYPE: u16 = 0x0019;
    pub const ADDITIONAL_STATUS_INFO_TEXT: u16 = 0x001D;
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    pub const MS_MSG_WAIT_FACILITIES: u16 = 0x0030;
    pub const PRIVACY_INDICATOR: u16 = 0x0201;
    pub const SOURCE_SUBADDRESS: u16 = 0x0202;
    pub const DEST_SUBADDRESS: u16 = 0x0203;
    pub const USER_MESSAGE_REFERENCE: u16 = 0x0204;
    pub const USER_RESPONSE_CODE: u16 = 0x0205;
    pub const SOURCE_PORT: u16 = 0x020A;
    pub const DESTINATION_PORT: u16 = 0x020B;
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    pub const LANGUAGE_INDICATOR: u16 = 0x020D;
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
    pub const SC_INTERFACE_VERSION: u16 = 0x0210;
    pub const CALLBACK_NUM: u16 = 0x0381;
    pub const DPF_RESULT: u16 = 0x0420;
    pub const SET_DPF: u16 = 0x0421;
    pub const MS_AVAILABILITY_STATUS: u16 = 0x0422;
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    pub const DELIVERY_FAILURE_REASON: u16 = 0x0425;
    pub const MORE_MESSAGES_TO_SEND: u16 = 0x0426;
    pub const MESSAGE_STATE: u16 = 0x0427;
    pub const USSD_SERVICE_OP: u16 = 0x0501;
}

/// Maximum length of each C-octet string, in octets including the NUL (SMPP 3.4 section 4).
mod max {
    pub const SYSTEM_ID: usize = 16;
    pub const PASSWORD: usize = 9;
    pub const SYSTEM_TYPE: usize = 13;
    pub const ADDRESS_RANGE: usize = 41;
    pub const SERVICE_TYPE: usize = 6;
    pub const ADDR: usize = 21;
    pub const TIME: usize = 17;
    pub const MESSAGE_ID: usize = 65;
}

// === types ===

/// One PDU. `command_length` and `command_id` are not stored: they follow from `body`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Pdu {
    pub status: CommandStatus,
    pub sequence: u32,
    pub body: Body,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Body {
    BindTransmitter(Bind),
    BindReceiver(Bind),
    BindTransceiver(Bind),
    BindTransmitterResp(BindResp),
    BindReceiverResp(BindResp),
    BindTransceiverResp(BindResp),
    SubmitSm(Box<Sm>),
    SubmitSmResp(SmResp),
    DeliverSm(Box<Sm>),
    DeliverSmResp(SmResp),
    EnquireLink,
    EnquireLinkResp,
    Unbind,
    UnbindResp,
    GenericNack,
}

/// bind_transmitter, bind_receiver and bind_transceiver (SMPP 3.4 section 4.1).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Bind {
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    /// 0x34 for SMPP 3.4.
    pub interface_version: u8,
    pub addr_ton: u8,
    pub addr_npi: u8,
    pub address_range: String,
}

/// The three bind responses. The body is empty when `status` is not ROK and both fields are
/// at their default.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct BindResp {
    pub system_id: String,
    /// TLV `sc_interface_version` (0x0210); other TLVs of a bind response are dropped.
    pub sc_interface_version: Option<u8>,
}

/// submit_sm and deliver_sm, which share this layout (SMPP 3.4 sections 4.4.1 and 4.6.1).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Sm {
    pub service_type: String,
    pub source_addr_ton: u8,
    pub source_addr_npi: u8,
    pub source_addr: String,
    pub dest_addr_ton: u8,
    pub dest_addr_npi: u8,
    pub destination_addr: String,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub replace_if_present_flag: u8,
    pub data_coding: u8,
    pub sm_default_msg_id: u8,
    /// At most [`MAX_SHORT_MESSAGE`] octets when encoding; decode accepts 255.
    pub short_message: Vec<u8>,
    /// In wire order, unknown tags included.
    pub tlvs: Vec<Tlv>,
}

/// submit_sm_resp and deliver_sm_resp. The body is empty when `status` is not ROK and
/// `message_id` is empty.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SmResp {
    pub message_id: String,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tlv {
    pub tag: u16,
    pub value: Vec<u8>,
}

// === errors ===

/// Why a frame could not be decoded. Holds no allocation: a malformed PDU from a peer is a
/// normal event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    /// From the header; 0 when fewer than 8 octets had arrived.
    pub command_id: u32,
    /// From the header; 0 when fewer than 16 octets had arrived.
    pub sequence: u32,
    /// `Some(len)`: the frame is intact; drop `len` octets and answer generic_nack (or the
    /// request's response) with [`DecodeError::nack_status`]. `None`: `command_length` is
    /// below 16 or above [`MAX_PDU_LEN`], the stream has lost its framing: close it.
    pub skip: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeErrorKind {
    /// `command_length` below [`HEADER_LEN`] or above [`MAX_PDU_LEN`].
    InvalidLength(u32),
    /// A `command_id` this codec does not decode.
    UnknownCommand,
    /// The named field runs past the end of the body (a C-string without its NUL, an
    /// `sm_length` or TLV length beyond the body, a partial TLV header).
    Truncated(&'static str),
    /// The named C-string has no NUL within its maximum length.
    FieldTooLong(&'static str),
    /// Octets left after the last field of a body that has no TLVs.
    TrailingBytes,
}

impl DecodeError {
    /// The `command_status` for the generic_nack (or response) that answers this frame.
    pub fn nack_status(&self) -> CommandStatus {
        match self.kind {
            DecodeErrorKind::InvalidLength(_) | DecodeErrorKind::Truncated(_) | DecodeErrorKind::TrailingBytes => {
                CommandStatus::RINVCMDLEN
            }
            DecodeErrorKind::UnknownCommand => CommandStatus::RINVCMDID,
            DecodeErrorKind::FieldTooLong(field) => match field {
                "system_id" => CommandStatus::RINVSYSID,
                "password" => CommandStatus::RINVPASWD,
                "system_type" => CommandStatus::RINVSYSTYP,
                "service_type" => CommandStatus::RINVSERTYP,
                "source_addr" => CommandStatus::RINVSRCADR,
                "destination_addr" => CommandStatus::RINVDSTADR,
                "schedule_delivery_time" => CommandStatus::RINVSCHED,
                "validity_period" => CommandStatus::RINVEXPIRY,
                "message_id" => CommandStatus::RINVMSGID,
                _ => CommandStatus::RSYSERR,
            },
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidLength(len) => write!(f, "invalid command_length {len}"),
            Self::UnknownCommand => f.write_str("unknown command_id"),
            Self::Truncated(field) => write!(f, "{field} runs past the end of the body"),
            Self::FieldTooLong(field) => write!(f, "{field} is longer than SMPP 3.4 allows"),
            Self::TrailingBytes => f.write_str("octets after the last field"),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad PDU (command_id 0x{:08x}, sequence {}): {}", self.command_id, self.sequence, self.kind)
    }
}

impl std::error::Error for DecodeError {}

/// A field that SMPP 3.4 cannot carry: a C-string with a NUL or over its maximum length, a
/// `short_message` over 254 octets, a TLV over 65,535 octets, a PDU over [`MAX_PDU_LEN`].
/// Encoding refuses rather than truncates: a cut `destination_addr` is another number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EncodeError {
    pub field: &'static str,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cannot be encoded in SMPP 3.4", self.field)
    }
}

impl std::error::Error for EncodeError {}

// === impl Pdu ===

impl Pdu {
    /// A PDU with `command_status` ROK.
    pub fn new(sequence: u32, body: Body) -> Self {
        Pdu { status: CommandStatus::ROK, sequence, body }
    }

    pub fn command_id(&self) -> u32 {
        self.body.command_id()
    }

    pub fn is_response(&self) -> bool {
        self.body.command_id() & command_id::RESPONSE_BIT != 0
    }

    /// Appends this PDU, header and correct `command_length` included, to `out`. On error
    /// `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.command_id().to_be_bytes());
        out.extend_from_slice(&self.status.0.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        let written = self.body.encode(self.status, out).and_then(|()| {
            let len = out.len() - start;
            if len > MAX_PDU_LEN {
                return Err(EncodeError { field: "pdu" });
            }
            // `len` <= MAX_PDU_LEN, which fits in u32.
            out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
            Ok(())
        });
        if written.is_err() {
            out.truncate(start);
        }
        written
    }
}

// === impl Body ===

impl Body {
    pub fn command_id(&self) -> u32 {
        use command_id as id;
        match self {
            Body::BindTransmitter(_) => id::BIND_TRANSMITTER,
            Body::BindReceiver(_) => id::BIND_RECEIVER,
            Body::BindTransceiver(_) => id::BIND_TRANSCEIVER,
            Body::BindTransmitterResp(_) => id::BIND_TRANSMITTER_RESP,
            Body::BindReceiverResp(_) => id::BIND_RECEIVER_RESP,
            Body::BindTransceiverResp(_) => id::BIND_TRANSCEIVER_RESP,
            Body::SubmitSm(_) => id::SUBMIT_SM,
            Body::SubmitSmResp(_) => id::SUBMIT_SM_RESP,
            Body::DeliverSm(_) => id::DELIVER_SM,
            Body::DeliverSmResp(_) => id::DELIVER_SM_RESP,
            Body::EnquireLink => id::ENQUIRE_LINK,
            Body::EnquireLinkResp => id::ENQUIRE_LINK_RESP,
            Body::Unbind => id::UNBIND,
            Body::UnbindResp => id::UNBIND_RESP,
            Body::GenericNack => id::GENERIC_NACK,
        }
    }

    fn encode(&self, status: CommandStatus, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => {
                put_cstr(out, &b.system_id, max::SYSTEM_ID, "system_id")?;
                put_cstr(out, &b.password, max::PASSWORD, "password")?;
                put_cstr(out, &b.system_type, max::SYSTEM_TYPE, "system_type")?;
                out.extend_from_slice(&[b.interface_version, b.addr_ton, b.addr_npi]);
                put_cstr(out, &b.address_range, max::ADDRESS_RANGE, "address_range")
            }
            Body::BindTransmitterResp(r) | Body::BindReceiverResp(r) | Body::BindTransceiverResp(r) => {
                if !status.is_ok() && r.system_id.is_empty() && r.sc_interface_version.is_none() {
                    return Ok(());
                }
                put_cstr(out, &r.system_id, max::SYSTEM_ID, "system_id")?;
                if let Some(version) = r.sc_interface_version {
                    put_tlv(out, tag::SC_INTERFACE_VERSION, &[version])?;
                }
                Ok(())
            }
            Body::SubmitSm(sm) | Body::DeliverSm(sm) => encode_sm(sm, out),
            Body::SubmitSmResp(r) | Body::DeliverSmResp(r) => {
                if !status.is_ok() && r.message_id.is_empty() {
                    return Ok(());
                }
                put_cstr(out, &r.message_id, max::MESSAGE_ID, "message_id")
            }
            Body::EnquireLink | Body::EnquireLinkResp | Body::Unbind | Body::UnbindResp | Body::GenericNack => Ok(()),
        }
    }
}

fn encode_sm(sm: &Sm, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    put_cstr(out, &sm.service_type, max::SERVICE_TYPE, "service_type")?;
    out.extend_from_slice(&[sm.source_addr_ton, sm.source_addr_npi]);
    put_cstr(out, &sm.source_addr, max::ADDR, "source_addr")?;
    out.extend_from_slice(&[sm.dest_addr_ton, sm.dest_addr_npi]);
    put_cstr(out, &sm.destination_addr, max::ADDR, "destination_addr")?;
    out.extend_from_slice(&[sm.esm_class, sm.protocol_id, sm.priority_flag]);
    let time = &sm.schedule_delivery_time;
    put_cstr(out, time, max::TIME, "schedule_delivery_time")?;
    put_cstr(out, &sm.validity_period, max::TIME, "validity_period")?;
    out.extend_from_slice(&[sm.registered_delivery, sm.replace_if_present_flag, sm.data_coding, sm.sm_default_msg_id]);
    let sm_length = match u8::try_from(sm.short_message.len()) {
        Ok(len) if usize::from(len) <= MAX_SHORT_MESSAGE => len,
        _ => return Err(EncodeError { field: "short_message" }),
    };
    out.push(sm_length);
    out.extend_from_slice(&sm.short_message);
    for tlv in &sm.tlvs {
        put_tlv(out, tlv.tag, &tlv.value)?;
    }
    Ok(())
}

fn put_cstr(out: &mut Vec<u8>, s: &str, max: usize, field: &'static str) -> Result<(), EncodeError> {
    if s.len() >= max || s.as_bytes().contains(&0) {
        return Err(EncodeError { field });
    }
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    Ok(())
}

fn put_tlv(out: &mut Vec<u8>, tag: u16, value: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len()).map_err(|_| EncodeError { field: "tlv" })?;
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

// === impl Sm, Tlv ===

impl Sm {
    /// Value of the first TLV with this tag.
    pub fn tlv(&self, tag: u16) -> Option<&[u8]> {
        self.tlvs.iter().find(|t| t.tag == tag).map(|t| t.value.as_slice())
    }

    /// A one-octet TLV such as `message_state`; `None` if absent or of another length.
    pub fn tlv_u8(&self, tag: u16) -> Option<u8> {
        match self.tlv(tag)? {
            [v] => Some(*v),
            _ => None,
        }
    }

    /// A C-octet-string TLV such as `receipted_message_id`, up to its first NUL (tolerating
    /// SMSCs that omit the NUL), decoded lossily.
    pub fn tlv_str(&self, tag: u16) -> Option<Cow<'_, str>> {
        let value = self.tlv(tag)?;
        let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
        Some(String::from_utf8_lossy(&value[..end]))
    }
}

impl Tlv {
    pub fn new(tag: u16, value: impl Into<Vec<u8>>) -> Self {
        Tlv { tag, value: value.into() }
    }

    /// A C-octet-string TLV: `value` followed by a NUL.
    pub fn cstr(tag: u16, value: &str) -> Self {
        let mut bytes = Vec::with_capacity(value.len() + 1);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
        Tlv { tag, value: bytes }
    }
}

// === decode ===

/// Checks the frame at the start of `buf`. `Ok(None)`: fewer octets than the frame needs;
/// `Ok(Some(len))`: a whole frame of `len` octets is there (its body is not checked).
pub fn check(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let Some(len_bytes) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let raw_len = u32::from_be_bytes(*len_bytes);
    let len = raw_len as usize;
    if !(HEADER_LEN..=MAX_PDU_LEN).contains(&len) {
        return Err(DecodeError {
            kind: DecodeErrorKind::InvalidLength(raw_len),
            command_id: be_u32_at(buf, 4).unwrap_or(0),
            sequence: be_u32_at(buf, 12).unwrap_or(0),
            skip: None,
        });
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Decodes the PDU at the start of `buf`. `Ok(None)`: need more octets.
/// `Ok(Some((pdu, consumed)))`: one PDU, taking the first `consumed` octets of `buf`.
pub fn decode(buf: &[u8]) -> Result<Option<(Pdu, usize)>, DecodeError> {
    let Some(len) = check(buf)? else {
        return Ok(None);
    };
    let frame = &buf[..len];
    let command_id = be_u32_at(frame, 4).unwrap_or(0);
    let status = CommandStatus(be_u32_at(frame, 8).unwrap_or(0));
    let sequence = be_u32_at(frame, 12).unwrap_or(0);
    let body = decode_body(command_id, status, &frame[HEADER_LEN..]).map_err(|kind| DecodeError {
        kind,
        command_id,
        sequence,
        skip: Some(len),
    })?;
    let pdu = Pdu { status, sequence, body };
    Ok(Some((pdu, len)))
}

fn be_u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn decode_body(cmd: u32, status: CommandStatus, body: &[u8]) -> Result<Body, DecodeErrorKind> {
    use command_id as id;
    let mut r = Reader { body, pos: 0 };
    let decoded = match cmd {
        id::BIND_TRANSMITTER => Body::BindTransmitter(r.bind()?),
        id::BIND_RECEIVER => Body::BindReceiver(r.bind()?),
        id::BIND_TRANSCEIVER => Body::BindTransceiver(r.bind()?),
        id::BIND_TRANSMITTER_RESP => Body::BindTransmitterResp(r.bind_resp(status)?),
        id::BIND_RECEIVER_RESP => Body::BindReceiverResp(r.bind_resp(status)?),
        id::BIND_TRANSCEIVER_RESP => Body::BindTransceiverResp(r.bind_resp(status)?),
        id::SUBMIT_SM => Body::SubmitSm(Box::new(r.sm()?)),
        id::DELIVER_SM => Body::DeliverSm(Box::new(r.sm()?)),
        // An ESME or SMSC answering with an error may omit the body (SMPP 3.4 section 4.4.2).
        id::SUBMIT_SM_RESP => Body::SubmitSmResp(r.sm_resp(!status.is_ok())?),
        // message_id is unused in deliver_sm_resp; some ESMEs omit it even with ROK.
        id::DELIVER_SM_RESP => Body::DeliverSmResp(r.sm_resp(true)?),
        id::ENQUIRE_LINK => Body::EnquireLink,
        id::ENQUIRE_LINK_RESP => Body::EnquireLinkResp,
        id::UNBIND => Body::Unbind,
        id::UNBIND_RESP => Body::UnbindResp,
        id::GENERIC_NACK => Body::GenericNack,
        _ => return Err(DecodeErrorKind::UnknownCommand),
    };
    r.finish()?;
    Ok(decoded)
}

/// A cursor over one body. Every read checks the bounds and names the field it reads.
struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a [u8] {
        self.body.get(self.pos..).unwrap_or_default()
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeErrorKind> {
        let bytes = self.rest().get(..n).ok_or(DecodeErrorKind::Truncated(field))?;
        self.pos += n;
        Ok(bytes)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeErrorKind> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeErrorKind> {
        let bytes = self.take(2, field)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// A C-octet string of at most `max` octets including its NUL.
    fn cstr(&mut self, field: &'static str, max: usize) -> Result<String, DecodeErrorKind> {
        let rest = self.rest();
        let window = &rest[..rest.len().min(max)];
        match window.iter().position(|&b| b == 0) {
            Some(end) => {
                self.pos += end + 1;
                Ok(String::from_utf8_lossy(&window[..end]).into_owned())
            }
            None if rest.len() < max => Err(DecodeErrorKind::Truncated(field)),
            None => Err(DecodeErrorKind::FieldTooLong(field)),
        }
    }

    fn finish(&self) -> Result<(), DecodeErrorKind> {
        if self.rest().is_empty() {
            Ok(())
        } else {
            Err(DecodeErrorKind::TrailingBytes)
        }
    }

    fn tlvs(&mut self) -> Result<Vec<Tlv>, DecodeErrorKind> {
        let mut tlvs = Vec::new();
        while !self.rest().is_empty() {
            let tag = self.u16("tlv tag")?;
            let len = self.u16("tlv length")?;
            let value = self.take(usize::from(len), "tlv value")?;
            tlvs.push(Tlv { tag, value: value.to_vec() });
        }
        Ok(tlvs)
    }

    fn bind(&mut self) -> Result<Bind, DecodeErrorKind> {
        Ok(Bind {
            system_id: self.cstr("system_id", max::SYSTEM_ID)?,
            password: self.cstr("password", max::PASSWORD)?,
            system_type: self.cstr("system_type", max::SYSTEM_TYPE)?,
            interface_version: self.u8("interface_version")?,
            addr_ton: self.u8("addr_ton")?,
            addr_npi: self.u8("addr_npi")?,
            address_range: self.cstr("address_range", max::ADDRESS_RANGE)?,
        })
    }

    fn bind_resp(&mut self, status: CommandStatus) -> Result<BindResp, DecodeErrorKind> {
        if self.rest().is_empty() && !status.is_ok() {
            return Ok(BindResp::default());
        }
        let system_id = self.cstr("system_id", max::SYSTEM_ID)?;
        let sc_interface_version =
            self.tlvs()?.iter().find(|t| t.tag == tag::SC_INTERFACE_VERSION).and_then(|t| match t.value.as_slice() {
                [v] => Some(*v),
                _ => None,
            });
        Ok(BindResp { system_id, sc_interface_version })
    }

    fn sm_resp(&mut self, may_be_empty: bool) -> Result<SmResp, DecodeErrorKind> {
        if self.rest().is_empty() && may_be_empty {
            return Ok(SmResp::default());
        }
        Ok(SmResp { message_id: self.cstr("message_id", max::MESSAGE_ID)? })
    }

    fn sm(&mut self) -> Result<Sm, DecodeErrorKind> {
        let mut sm = Sm {
            service_type: self.cstr("service_type", max::SERVICE_TYPE)?,
            source_addr_ton: self.u8("source_addr_ton")?,
            source_addr_npi: self.u8("source_addr_npi")?,
            source_addr: self.cstr("source_addr", max::ADDR)?,
            dest_addr_ton: self.u8("dest_addr_ton")?,
            dest_addr_npi: self.u8("dest_addr_npi")?,
            destination_addr: self.cstr("destination_addr", max::ADDR)?,
            esm_class: self.u8("esm_class")?,
            protocol_id: self.u8("protocol_id")?,
            priority_flag: self.u8("priority_flag")?,
            schedule_delivery_time: self.cstr("schedule_delivery_time", max::TIME)?,
            validity_period: self.cstr("validity_period", max::TIME)?,
            registered_delivery: self.u8("registered_delivery")?,
            replace_if_present_flag: self.u8("replace_if_present_flag")?,
            data_coding: self.u8("data_coding")?,
            sm_default_msg_id: self.u8("sm_default_msg_id")?,
            short_message: Vec::new(),
            tlvs: Vec::new(),
        };
        let sm_length = self.u8("sm_length")?;
        sm.short_message = self.take(usize::from(sm_length), "short_message")?.to_vec();
        sm.tlvs = self.tlvs()?;
        Ok(sm)
    }
}

#[cfg(test)]
mod tests;
