# SPDX-License-Identifier: MIT
"""Layer 20: the framed TCP protocol and the built-in apps (SPEC P1; section 3 "Apps";
section 4 "Demo JSON", "Framed half-close", "Order", close lines)."""

import json
import os
import select
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import PYTHON, T, Peer, frame, wait_for_condition


def assert_serving(port, prefix=2):
    """A fresh connection gets an answer: the server is still serving."""
    p = Peer(port, prefix)
    try:
        assert p.request(b'{"still":"serving"}') == b'{"still":"serving"}'
    finally:
        p.close()


# --------------------------------------------------------------------------------------
# Demo app: strict JSON, minified, every token as written
# --------------------------------------------------------------------------------------
ROUND_TRIPS = [
    (b'{"amount":10,"card":"1213212312","terminal":"ABC"}',
     b'{"amount":10,"card":"1213212312","terminal":"ABC"}'),
    (b'{ "z" : 1 ,\n\t"a" : 2 ,\r\n "m" : [ 1 , 2 , 3 ] }', b'{"z":1,"a":2,"m":[1,2,3]}'),
    (b'123456789012345678901234567890123456789', b'123456789012345678901234567890123456789'),
    (b'{"big": -98765432109876543210987654321, "f": 1.50e+010, "z": -0.0}',
     b'{"big":-98765432109876543210987654321,"f":1.50e+010,"z":-0.0}'),
    (b'[ "a b", "\\u00e9\\n\\"\\\\\\/", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" ]',
     b'["a b","\\u00e9\\n\\"\\\\\\/","\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"]'),
    (b'  true  ', b'true'),
    (b'null', b'null'),
    (b'"just a string"', b'"just a string"'),
    (b'{}', b'{}'),
    (b'[ ]', b'[]'),
    (b'{"dup":1,"dup":2}', b'{"dup":1,"dup":2}'),
    (b'[[[[[[[[[[{"deep":[{}]}]]]]]]]]]]', b'[[[[[[[[[[{"deep":[{}]}]]]]]]]]]]'),
    (b'[-0, 0, 0.0, 1E5, 1e-5, -1.25E+300, 100000000000000000000000e-999]',
     b'[-0,0,0.0,1E5,1e-5,-1.25E+300,100000000000000000000000e-999]'),
    (b'"\\ud83d\\ude00 \\uD834\\uDD1E \\b\\f\\r\\t"',
     b'"\\ud83d\\ude00 \\uD834\\uDD1E \\b\\f\\r\\t"'),
    (b'"\x7f \xf4\x8f\xbf\xbf \xef\xbf\xbf"', b'"\x7f \xf4\x8f\xbf\xbf \xef\xbf\xbf"'),
    (b'\t\r\n [ \r\n1\t] \r\n', b'[1]'),
    (b'{"a":{"b":{"c":[true,false,null]}},"":""}', b'{"a":{"b":{"c":[true,false,null]}},"":""}'),
    (b'"  spaces  inside  strings  stay  "', b'"  spaces  inside  strings  stay  "'),
    (b'[' + b'[' * 500 + b']' * 500 + b']', b'[' + b'[' * 500 + b']' * 500 + b']'),
]


@pytest.mark.parametrize("payload,expected", ROUND_TRIPS, ids=range(len(ROUND_TRIPS)))
def test_demo_minifies_keeping_tokens(server, peers, payload, expected):
    p = peers(server.port)
    assert p.request(payload) == expected


def test_demo_keeps_key_order(server, peers):
    keys = [f"k{(i * 7919) % 1000:03d}" for i in range(200)]
    obj = "{" + ", ".join(f'"{k}" : {i}' for i, k in enumerate(keys)) + "}"
    reply = peers(server.port).request(obj.encode())
    assert list(json.loads(reply).keys()) == keys
    assert b" " not in reply


INVALID = [
    (b'[1,2,x]', 5),
    (b'{"a":1,}', 7),
    (b'{"a":1} x', 8),
    (b'"\xff"', 1),
    (b'{"a" 1}', 5),
    (b'[1,2', None),
    (b'{"unterminated', None),
    (b'01', None),
    (b'[1,]', 3),
    (b"{'a':1}", 1),
]


# Strict RFC 8259: each of these is not JSON, whatever lenient parsers accept.
INVALID += [(p, None) for p in [
    b"-", b"1.", b".5", b"1e", b"1e+", b"+1", b"0x10", b"NaN", b"Infinity", b"-Infinity",
    b"00", b"-01", b"1 2", b"[1] [2]", b"tru", b"True", b"nul", b"nulll", b"[", b"]", b"{",
    b"}", b",", b":", b'{"a"}', b'{"a":}', b'{1:2}', b'[1;2]', b'["a\\x"]', b'"\\u12"',
    b'"\\u12G4"', b'"tab\there"', b'"nl\nhere"', b'"\x01"', b'"\xc0\x80"',
    b'"\xc3"', b'"\xe2\x82"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"',
    b'"\xf8\x88\x80\x80\x80"', b'"\x80"', b'\x0c{}', b'\x0b1', b"[1,,2]", b"[,1]",
    b"{,}", b'{"a":1,,"b":2}', b"/* c */ 1", b"1 // c", b"'single'", b"\x00", b"1\x00",
    b'"unterminated\\"',
]]


@pytest.mark.parametrize("payload,offset", INVALID, ids=range(len(INVALID)))
def test_demo_invalid_json_gets_error_reply_and_stays_open(server, peers, payload, offset):
    p = peers(server.port)
    reply = p.request(payload)
    err = json.loads(reply)
    assert err.get("error") == "invalid json", reply
    assert isinstance(err.get("detail"), str) and err["detail"], reply
    assert isinstance(err.get("offset"), int), reply
    assert 0 <= err["offset"] <= len(payload), reply
    if offset is not None:
        assert err["offset"] == offset, reply
    # The connection stays open: a valid message afterwards is answered.
    assert p.request(b'{"after": [1, 2]}') == b'{"after":[1,2]}'
    assert server.close_lines(p.addr) == []


def test_demo_empty_payload_gets_error_reply(server, peers):
    p = peers(server.port)
    err = json.loads(p.request(b""))
    assert err.get("error") == "invalid json"
    assert err.get("offset") == 0
    assert isinstance(err.get("detail"), str) and err["detail"]
    assert p.request(b"1") == b"1"


def test_demo_deep_nesting_is_an_error_not_a_crash(server, peers):
    p = peers(server.port)
    payload = b"[" * 20000 + b"]" * 20000
    err = json.loads(p.request(payload))
    assert err.get("error") == "invalid json"
    assert p.request(b"[]") == b"[]"


# --------------------------------------------------------------------------------------
# Echo app
# --------------------------------------------------------------------------------------
ECHO_PAYLOADS = [b"", b"\x00", b"not json at all {", bytes(range(256)) * 4,
                 b"\xff\xfe\x00\x01", os.urandom(65535)]


@pytest.mark.parametrize("payload", ECHO_PAYLOADS, ids=lambda p: f"len{len(p)}")
def test_echo_returns_bytes_unchanged(echo_server, peers, payload):
    p = peers(echo_server.port)
    assert p.request(payload) == payload
    assert p.request(b"") == b""


@pytest.mark.parametrize("app", ["echo", "demo"])
def test_prefix_bytes_4_with_100k_message(start_server, peers, app):
    srv = start_server("--prefix-bytes", "4", app=app)
    p = peers(srv.port, prefix=4)
    if app == "echo":
        payload = os.urandom(100 * 1024)
        assert p.request(payload) == payload
    else:
        items = ", ".join(f'{{"n": {i}, "s": "{"x" * 40}"}}' for i in range(2000))
        payload = f"[ {items} ]".encode()
        assert len(payload) > 100 * 1024
        assert p.request(payload) == payload.replace(b", ", b",").replace(b": ", b":") \
            .replace(b"[ ", b"[").replace(b" ]", b"]")
    # a 2-byte prefix reading of the 4-byte stream would have broken the next message too
    assert p.request(b"[]") == b"[]"


def test_one_byte_at_a_time(server, peers):
    p = peers(server.port)
    msgs = [b'{"i": %d, "s": "one byte at a time"}' % i for i in range(5)] + [b""]
    stream = b"".join(frame(m) for m in msgs)
    for i in range(len(stream)):
        p.send_raw(stream[i:i + 1])
        if i % 16 == 0:
            time.sleep(0.001)  # let the server see the split bytes as separate reads
    for m in msgs[:-1]:
        assert p.recv() == m.replace(b": ", b":").replace(b", ", b",")
    assert json.loads(p.recv())["error"] == "invalid json"


def test_many_messages_in_one_send(server, peers):
    p = peers(server.port)
    n = 2000
    msgs = [b'{"seq":%d,"card":"1213212312"}' % i for i in range(n)]
    p.send_raw(b"".join(frame(m) for m in msgs))
    got = [p.recv() for _ in range(n)]
    assert got == msgs


def test_replies_in_request_order(echo_server, peers):
    p = peers(echo_server.port)
    msgs = [os.urandom(1 + (i * 37) % 3000) for i in range(500)]
    for m in msgs:
        p.send(m)
    got = [p.recv() for _ in range(len(msgs))]
    assert got == msgs


# --------------------------------------------------------------------------------------
# How connections end
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", ["in_prefix", "in_payload"])
def test_truncated_frame(server, peers, cut):
    other = peers(server.port)
    assert other.request(b'{"other":1}') == b'{"other":1}'
    p = peers(server.port)
    assert p.request(b"[1]") == b"[1]"
    whole = frame(b'{"half":"of a frame that never ends"}')
    p.send_raw(whole[:1] if cut == "in_prefix" else whole[: len(whole) // 2])
    p.shutdown_wr()
    assert p.expect_eof() == []
    c = server.wait_close_line(p.addr, T(5))
    assert c["reason"] == "truncated", c["line"]
    assert c["level"] == "INFO", c["line"]
    assert len(server.close_lines(p.addr)) == 1
    # the concurrent client is unaffected
    assert other.request(b'{"other":2}') == b'{"other":2}'
    assert server.close_lines(other.addr) == []


KILLED_CLIENT = r"""
import socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("%s:%d" % s.getsockname(), flush=True)
msg = b'{"amount":10,"card":"1213212312","terminal":"ABC"}'
fr = struct.pack(">H", len(msg)) + msg
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    s.sendall(fr * 50)
"""


def test_client_killed_with_sigkill(server):
    proc = subprocess.Popen([PYTHON, "-c", KILLED_CLIENT, str(server.port)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        peer = proc.stdout.readline().strip()
        assert peer.startswith("127.0.0.1:"), peer
        # Let it be mid-stream: the server has read (and answered) some of its messages.
        time.sleep(0.3)
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=T(5))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        proc.stdout.close()
    c = server.wait_close_line(peer, T(5))
    assert c["level"] == "INFO", c["line"]
    assert c["reason"] in ("peer_reset", "peer_eof", "truncated"), c["line"]
    assert_serving(server.port)
    assert len(server.close_lines(peer)) == 1


@pytest.mark.parametrize("pending", [False, True], ids=["idle", "reply_pending"])
def test_client_reset(server, peers, pending):
    p = peers(server.port)
    assert p.request(b'{"before":"reset"}') == b'{"before":"reset"}'
    if pending:
        # a reply the client never reads: it sits in the client's receive buffer, so the
        # close below is a reset with data pending
        p.send(b'{"unread":"reply"}')
        wait_for_condition(lambda: select.select([p.sock], [], [], 0)[0], T(5),
                           what="the unread reply to arrive")
    addr = p.addr
    p.reset()
    c = server.wait_close_line(addr, T(5))
    assert c["reason"] == "peer_reset", c["line"]
    assert c["level"] == "INFO", c["line"]
    if "errno" in c:
        assert c["errno"] in ("ECONNRESET", "EPIPE"), c["line"]
    assert_serving(server.port)
    assert len(server.close_lines(addr)) == 1


@pytest.mark.parametrize("app", ["demo", "echo"])
def test_half_close_gets_every_reply_then_eof(start_server, peers, app):
    srv = start_server(app=app)
    p = peers(srv.port)
    n = 100
    msgs = [b'{"seq":%d,"pad":"%s"}' % (i, b"p" * (i * 13 % 500)) for i in range(n)]
    p.send_raw(b"".join(frame(m) for m in msgs))
    p.shutdown_wr()
    got = p.expect_eof(T(10))
    assert got == msgs
    c = srv.wait_close_line(p.addr, T(5))
    assert c["reason"] == "peer_eof", c["line"]
    assert c["level"] == "INFO", c["line"]


@pytest.mark.parametrize("prefix,limit,declared", [
    (2, 100, 101),
    (2, 1000, 65535),
    (4, 1024, 1025),
    (4, 1 << 20, 0xFFFFFFFF),
])
def test_message_over_max_message_is_too_big(start_server, peers, prefix, limit, declared):
    srv = start_server("--prefix-bytes", prefix, "--max-message", limit, app="echo")
    other = peers(srv.port, prefix)
    assert other.request(b"x" * min(limit, 100)) == b"x" * min(limit, 100)
    p = peers(srv.port, prefix)
    assert p.request(b"y" * limit) == b"y" * limit  # exactly the limit is accepted
    fmt = ">H" if prefix == 2 else ">I"
    # The limit is checked on the declared length: send the prefix and a little payload.
    p.send_raw(struct.pack(fmt, declared) + b"z" * min(declared, 64))
    assert p.wait_closed(T(5)) in ("eof", "reset")
    p.close()  # the server may linger until we close our side too
    c = srv.wait_close_line(p.addr, T(5))
    assert c["reason"] == "too_big", c["line"]
    assert c["level"] == "WARN", c["line"]
    assert c["peer"] == p.addr
    assert other.request(b"still here") == b"still here"
    assert srv.close_lines(other.addr) == []


def churn(port, n):
    """Opens n short connections, one after another, ending every way a client can; returns
    [(peer, reasons allowed for its close line)] in order and the set of peers that reset.
    A peer may appear twice: a port freed by a reset can be taken again at once."""
    expected = []
    resets = set()
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=T(5))
        addr = "%s:%d" % s.getsockname()
        kind = i % 4
        if kind == 0:      # connect, say nothing, close
            expected.append((addr, {"peer_eof"}))
        elif kind == 1:    # one request, read the reply, close
            want = frame(b"[%d]" % i)
            s.sendall(want)
            got = b""
            while len(got) < len(want):
                data = s.recv(100)
                assert data
                got += data
            expected.append((addr, {"peer_eof"}))
        elif kind == 2:    # one request, reset without reading
            s.sendall(frame(b"[%d]" % i))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            expected.append((addr, {"peer_reset", "peer_eof"}))
            resets.add(addr)
        else:              # half a frame, close
            s.sendall(frame(b"[%d]" % i)[:3])
            expected.append((addr, {"truncated"}))
        s.close()
    return expected, resets


def test_connection_churn_one_close_line_each(server):
    """Hundreds of short connections ending every way a client can: each gets exactly one
    close line with the right reason, and the summary counts them all."""
    expected, resets = churn(server.port, 300)
    server.wait_for_lines(r" conn: closed ", len(expected), T(20))
    closes = server.close_lines()
    assert len(closes) == len(expected)
    # Each peer's lines, in log order, belong to its connections in the order they were made.
    named = {}
    for c in closes:
        named.setdefault(c["peer"], []).append(c)
    wanted = {}
    for addr, reasons in expected:
        wanted.setdefault(addr, []).append(reasons)
    assert {a: len(v) for a, v in named.items()} == {a: len(v) for a, v in wanted.items()}
    wrong = [c["line"] for a, cs in named.items() for c, reasons in zip(cs, wanted[a])
             if c["reason"] not in reasons]
    assert not wrong, "\n".join(wrong[:10])
    assert all(c["level"] == "INFO" for c in closes)
    server.signal(signal.SIGINT)
    assert server.wait_exit(T(5)) == 0
    assert server.summary()["connections"] == len(expected)


def test_reset_before_accept_close_line_names_peer(server):
    """SPEC section 4 wants the peer address on every close line, also for a connection
    reset before the server looked at it (the address comes from accept itself)."""
    expected, _ = churn(server.port, 200)
    server.wait_for_lines(r" conn: closed ", len(expected), T(20))
    peers = {addr for addr, _ in expected}
    unknown = [c["line"] for c in server.close_lines() if c["peer"] not in peers]
    assert not unknown, f"{len(unknown)} close lines without the peer address:\n" + \
        "\n".join(unknown[:5])
