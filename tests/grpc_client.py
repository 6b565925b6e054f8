"""A gRPC client smsgate did not write (grpcio, h2), driven by tests/grpc.rs.

Usage: grpc_client.py STUBS_DIR PORT < ops.json > results.json

Reads a JSON list of operations, runs them in order against 127.0.0.1:PORT and prints a JSON
list with one result per operation. A result of a call is
{"code": "OK" | "<grpc status name>", "details": str, "trailers": {name: value}, ...}.
Protobuf messages are shown with json_format (proto field names; 64-bit integers as strings).
"""
import json
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])
PORT = int(sys.argv[2])

import grpc  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
from google.protobuf import json_format  # noqa: E402

import smsgate_pb2 as pb  # noqa: E402
import smsgate_pb2_grpc as pb_grpc  # noqa: E402

TARGET = f"127.0.0.1:{PORT}"
OPTIONS = [("grpc.max_send_message_length", 64 * 1024 * 1024)]


def to_dict(m):
    return json_format.MessageToDict(m, preserving_proto_field_name=True)


def metadata(op):
    key = op.get("key")
    return [("authorization", f"Bearer {key}")] if key else []


def submit_request(m):
    return json_format.ParseDict(m, pb.SubmitRequest())


def error(e):
    return {
        "code": e.code().name,
        "details": e.details(),
        "trailers": {k: v for k, v in (e.trailing_metadata() or ())},
    }


def unary(stub, op):
    kind = op["op"]
    try:
        if kind == "submit":
            resp = stub.Submit(submit_request(op["msg"]), metadata=metadata(op), timeout=30)
        elif kind == "batch":
            req = pb.SubmitBatchRequest(messages=[submit_request(m) for m in op["msgs"]])
            resp = stub.SubmitBatch(req, metadata=metadata(op), timeout=60)
        elif kind == "get":
            resp = stub.GetMessage(pb.GetMessageRequest(id=op["id"]), metadata=metadata(op), timeout=30)
        else:
            raise ValueError(kind)
    except grpc.RpcError as e:
        return error(e)
    return {"code": "OK", "response": to_dict(resp)}


def stream(stub, op):
    """SubmitStream: sends every message (with its correlation id), collects every result."""
    def requests():
        for i, m in enumerate(op["msgs"]):
            req = pb.SubmitStreamRequest(correlation_id=op.get("first_id", 1) + i)
            if m is not None:
                req.message.CopyFrom(submit_request(m))
            yield req

    results = []
    try:
        for r in stub.SubmitStream(requests(), metadata=metadata(op), timeout=120):
            results.append(to_dict(r))
    except grpc.RpcError as e:
        out = error(e)
        out["results"] = results
        return out
    return {"code": "OK", "results": results}


def watch(stub, op):
    """WatchReceipts (or WatchInbound with op["stream"] == "inbound"): subscribes, runs
    op["then"] (submits), collects op["expect"] events under "receipts" (or "messages")."""
    inbound = op.get("stream") == "inbound"
    field = "message" if inbound else "receipt"
    method, request = (stub.WatchInbound, pb.WatchInboundRequest) if inbound else (stub.WatchReceipts, pb.WatchReceiptsRequest)
    call = method(request(), metadata=metadata(op), timeout=op.get("timeout", 30))
    try:
        call.initial_metadata()  # the server subscribed before it sent the headers
    except grpc.RpcError as e:
        return error(e)
    if "ready_file" in op:
        open(op["ready_file"], "w").close()
    got, missed, failed = [], 0, []
    done = threading.Event()

    def read():
        nonlocal missed
        try:
            for r in call:
                missed += r.missed
                if r.HasField(field):
                    got.append(to_dict(getattr(r, field)))
                if len(got) >= op["expect"]:
                    break
        except grpc.RpcError as e:
            failed.append(e)
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    then = run(op.get("then", []))
    done.wait(op.get("timeout", 30))
    # Give stray receipts (ones that must not come) a moment to show up.
    time.sleep(op.get("linger_s", 0.0))
    call.cancel()
    if failed:
        return error(failed[0])
    return {"code": "OK", field + "s": got, "missed": missed, "then": then}


# === raw HTTP/2: frames no well-behaved client sends ===

def raw(op):
    """One HTTP/2 connection; each of op["streams"] is one request whose DATA is given as hex
    (or generated), answered with its status; the connection must stay usable."""
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    out = []
    for s in op["streams"]:
        sid = conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", TARGET),
            (":path", s.get("path", "/smsgate.v1.Gateway/Submit")),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("authorization", f"Bearer {op['key']}"),
        ] + [tuple(h) for h in s.get("headers", [])]
        conn.send_headers(sid, headers)
        body = bytes.fromhex(s.get("hex", ""))
        if "prefix_len" in s:
            body = struct.pack(">BI", s.get("flag", 0), s["prefix_len"]) + body
        # Respect flow control: send what the window allows, in frames the peer accepts.
        while body:
            n = min(len(body), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if n == 0:
                pump(sock, conn, sid)
                continue
            conn.send_data(sid, body[:n])
            body = body[n:]
            sock.sendall(conn.data_to_send())
        conn.end_stream(sid)
        sock.sendall(conn.data_to_send())
        out.append(collect(sock, conn, sid))
    sock.close()
    return {"code": "OK", "streams": out}


def pump(sock, conn, sid):
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("server closed the connection")
    for ev in conn.receive_data(data):
        pass
    sock.sendall(conn.data_to_send())


def collect(sock, conn, sid):
    headers, data, ended, reset = {}, b"", False, None
    while not ended:
        chunk = sock.recv(65536)
        if not chunk:
            return {"closed": True, "headers": headers}
        for ev in conn.receive_data(chunk):
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and ev.stream_id == sid:
                for k, v in ev.headers:
                    headers[k.decode() if isinstance(k, bytes) else k] = v.decode() if isinstance(v, bytes) else v
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                data += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                ended = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                reset, ended = ev.error_code, True
        sock.sendall(conn.data_to_send())
    return {"headers": headers, "data_hex": data.hex(), "reset": reset}


def garbage(op):
    """Not HTTP/2 at all after the preface: the server must drop just this connection."""
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex(op["hex"]))
    got = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    sock.close()
    # A GOAWAY frame is type 0x07.
    return {"code": "OK", "goaway": _has_goaway(got)}


def _has_goaway(b):
    i = 0
    while i + 9 <= len(b):
        length = int.from_bytes(b[i:i + 3], "big")
        if b[i + 3] == 0x07:
            return True
        i += 9 + length
    return False


def run(ops):
    with grpc.insecure_channel(TARGET, options=OPTIONS) as channel:
        stub = pb_grpc.GatewayStub(channel)
        results = []
        for op in ops:
            kind = op["op"]
            if kind in ("submit", "batch", "get"):
                results.append(unary(stub, op))
            elif kind == "stream":
                results.append(stream(stub, op))
            elif kind == "watch":
                results.append(watch(stub, op))
            elif kind == "raw":
                results.append(raw(op))
            elif kind == "garbage":
                results.append(garbage(op))
            elif kind == "unknown_method":
                try:
                    channel.unary_unary("/smsgate.v1.Gateway/Nope")(b"", metadata=metadata(op), timeout=10)
                    results.append({"code": "OK"})
                except grpc.RpcError as e:
                    results.append(error(e))
            else:
                raise ValueError(f"unknown op {kind}")
        return results


if __name__ == "__main__":
    print(json.dumps(run(json.load(sys.stdin))))
