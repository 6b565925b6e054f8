#!/usr/bin/env node
// An SMSC not written here, for tests/interop.rs: node-smpp's server on loopback.
//
//   node smsc.js [PORT] [DLR_DELAY_MS]     (PORT 0 or absent: a free port; delay default 50)
//
// Prints `listening PORT` once bound, then one JSON object per line on stdout:
//   {"event":"bind", "command", "system_id"}
//   {"event":"submit_sm", "message_id", "source_addr", "destination_addr", "data_coding",
//    "esm_class", "registered_delivery", "udh": null | {"bits": 8|16, "ref", "total", "seq"},
//    "sar": null | {"ref", "total", "seq"}, "carrier": "short_message"|"message_payload",
//    "octets" (user data, UDH included), "text" (decoded, UDH removed)}
//   {"event":"deliver_sm", "message_id", "command_status"}   (once the ESME answered it)
//   {"event":"unbind"}
//   {"event":"mo_resp", "id", "command_status"}   (the ESME's answer to an MO sent on request)
// On stdin it takes one JSON object a line, {"id": ..., "mo": {deliver_sm fields}}: it sends
// that deliver_sm (an inbound message; node-smpp encodes a string short_message by its
// data_coding, and {"udh": "hex of the whole UDH", "message": text} as UDH and text) on the first
// receiving session.
// It accepts any bind, answers each submit_sm with a new id and, for registered_delivery,
// sends an SMPP 3.4 appendix B receipt (esm_class 4, with receipted_message_id and
// message_state TLVs) after DLR_DELAY_MS. Each part of a concatenated message is a submit_sm
// of its own, so each gets its own id and receipt, as real SMSCs do.
'use strict';

const smpp = require('smpp');
const defs = require('smpp/lib/defs');

const port = Number(process.argv[2] || 0);
const dlrDelayMs = Number(process.argv[3] || 50);

// Ids unique per run: a random base, then a counter; lower-case hex.
const idBase = Math.floor(Math.random() * 0xffff) * 0x100000000;
let idCounter = 0;
const nextId = () => (idBase + ++idCounter).toString(16);

function log(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

// YYMMDDhhmm, UTC.
function smppDate(d) {
  const two = (n) => String(n).padStart(2, '0');
  return two(d.getUTCFullYear() % 100) + two(d.getUTCMonth() + 1) + two(d.getUTCDate()) +
    two(d.getUTCHours()) + two(d.getUTCMinutes());
}

// The concatenation IE of a decoded UDH list (Buffers of [IEI, length, data...]).
function concatInfo(udhList) {
  for (const ie of udhList || []) {
    if (ie[0] === 0x00 && ie[1] === 3) return { bits: 8, ref: ie[2], total: ie[3], seq: ie[4] };
    if (ie[0] === 0x08 && ie[1] === 4) return { bits: 16, ref: ie.readUInt16BE(2), total: ie[4], seq: ie[5] };
  }
  return null;
}

// Octets of a decoded message text under `dataCoding`, as it travelled.
function textOctets(text, dataCoding) {
  if ((dataCoding & 0x0f) === 0x08) return defs.encodings.UCS2.encode(text).length;
  if ((dataCoding & 0x0f) === 0x03) return defs.encodings.LATIN1.encode(text).length;
  return defs.encodings.ASCII.encode(text).length;
}

// node-smpp decodes short_message and message_payload into {udh: [Buffer], message: String}.
function describe(value, dataCoding) {
  if (!value || (Buffer.isBuffer(value) && value.length === 0)) return null;
  if (Buffer.isBuffer(value)) return { udh: null, text: value.toString('latin1'), octets: value.length };
  const udh = value.udh || [];
  if (!udh.length && !value.message) return null;
  const udhOctets = udh.length ? 1 + udh.reduce((sum, ie) => sum + ie.length, 0) : 0;
  return { udh: concatInfo(udh), text: value.message, octets: udhOctets + textOctets(value.message, dataCoding) };
}

function receipt(session, submit, messageId, text) {
  const now = new Date();
  const body = `id:${messageId} sub:001 dlvrd:001 submit date:${smppDate(now)} ` +
    `done date:${smppDate(new Date(now.getTime() + dlrDelayMs))} stat:DELIVRD err:000 ` +
    `text:${(text || '').slice(0, 20)}`;
  session.deliver_sm({
    source_addr_ton: submit.dest_addr_ton,
    source_addr_npi: submit.dest_addr_npi,
    source_addr: submit.destination_addr,
    dest_addr_ton: submit.source_addr_ton,
    dest_addr_npi: submit.source_addr_npi,
    destination_addr: submit.source_addr,
    esm_class: 0x04,
    data_coding: 0,
    // A Buffer: node-smpp sends it as is (GSM 03.38 and ASCII agree on these characters).
    short_message: Buffer.from(body.replace(/[^ -~]/g, '?'), 'ascii'),
    receipted_message_id: messageId,
    message_state: 2, // DELIVERED
  }, (resp) => log({ event: 'deliver_sm', message_id: messageId, command_status: resp.command_status }));
}

// Sessions that may get deliver_sm, in bind order.
const receiving = [];

const server = smpp.createServer((session) => {
  session.on('error', (err) => log({ event: 'error', message: String(err) }));
  session.on('close', () => receiving.splice(receiving.indexOf(session) >>> 0, 1));
  for (const command of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) {
    session.on(command, (pdu) => {
      log({ event: 'bind', command, system_id: pdu.system_id });
      session.send(pdu.response({ system_id: 'node-smpp' }));
      if (command !== 'bind_transmitter') receiving.push(session);
    });
  }
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    log({ event: 'unbind' });
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    const messageId = nextId();
    const inShort = describe(pdu.short_message, pdu.data_coding);
    const inPayload = describe(pdu.message_payload, pdu.data_coding);
    const content = inShort || inPayload || { udh: null, text: '', octets: 0 };
    const sar = pdu.sar_msg_ref_num !== undefined
      ? { ref: pdu.sar_msg_ref_num, total: pdu.sar_total_segments, seq: pdu.sar_segment_seqnum }
      : null;
    log({
      event: 'submit_sm',
      message_id: messageId,
      source_addr: pdu.source_addr,
      destination_addr: pdu.destination_addr,
      data_coding: pdu.data_coding,
      esm_class: pdu.esm_class,
      registered_delivery: pdu.registered_delivery,
      udh: content.udh,
      sar,
      carrier: inShort ? 'short_message' : inPayload ? 'message_payload' : 'none',
      octets: content.octets,
      text: content.text,
    });
    session.send(pdu.response({ message_id: messageId }));
    if (pdu.registered_delivery & 0x01) {
      setTimeout(() => receipt(session, pdu, messageId, content.text), dlrDelayMs);
    }
  });
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

function sendMo(line) {
  const { id, mo } = JSON.parse(line);
  const session = receiving[0];
  if (!session) return log({ event: 'mo_resp', id, command_status: null, error: 'no receiving session' });
  if (mo.short_message && mo.short_message.udh) {
    mo.short_message = { udh: Buffer.from(mo.short_message.udh, 'hex'), message: mo.short_message.message };
  }
  session.deliver_sm(mo, (resp) => log({ event: 'mo_resp', id, command_status: resp.command_status }));
}

// The test closes stdin or kills us: either way, stop.
require('readline').createInterface({ input: process.stdin }).on('line', (line) => line.trim() && sendMo(line));
process.stdin.on('end', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
