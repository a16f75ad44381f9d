# SPDX-License-Identifier: MIT
"""Layer 30: WebSocket conformance (SPEC P2 and section 4; RFC 6455), black-box.

A conformance set of our own, modelled on the sections of the Autobahn testsuite (1 framing,
2 pings/pongs, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close handling, 9
limits), with raw frames over a socket against `adieu-server --app echo`, plus the upgrade
handshake and its bad requests. Each case asserts the exact close code the server sends
and the reason on its close line (`conn: closed peer=... proto=ws reason=... code=NNNN`).
"""

import os
import select
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import (HOST, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, T, WS_ANY,
                      WsPeer, http_request, read_http_response, ws_accept, ws_close_payload,
                      ws_frame, ws_key, ws_parse_frame, ws_upgrade_request)

MiB = 1 << 20


@pytest.fixture
def srv(start_server):
    """adieu-server --app echo with only the WebSocket listener."""
    return start_server(app="echo", ws=WS_ANY, frame="off")


def connect(srv, ws_peers, **kw):
    return ws_peers(srv.ws_port, **kw)


def expect_fail(srv, p, code, reason):
    """The server fails the connection: a close frame with code, then TCP closed; its close
    line says reason (WARN, with a detail) and code."""
    f = p.expect_close(T(5), reply=True, strict=False)
    assert f.close_code == code, (
        f"server closed with {f.close_code} {f.close_reason!r}, expected {code}")
    line = srv.wait_close_line(p.addr, T(5))
    assert line["proto"] == "ws" and line["reason"] == reason, line["line"]
    assert line.get("code") == str(code), line["line"]
    assert line["level"] == "WARN", line["line"]
    assert line.get("detail"), f"no detail= on a violation's close line: {line['line']}"
    return f


def expect_normal_close(srv, p, code=1000, reason=b"", sent=True):
    """We send close(code, reason) (unless already sent): the server echoes the code, closes
    TCP first, and logs reason=normal with that code."""
    if not sent:
        p.send_close(code, reason)
    f = p.expect_close(T(5), reply=False)
    assert f.close_code == code, f"server answered close {code} with {f!r}"
    p.expect_eof(T(5))
    line = srv.wait_close_line(p.addr, T(5))
    assert line["proto"] == "ws" and line["reason"] == "normal", line["line"]
    assert line.get("code") == str(code), line["line"]
    assert line["level"] == "INFO", line["line"]
    return f


def still_serves(srv, ws_peers):
    """A fresh connection gets an echo: one client's violation leaves the others alone."""
    q = connect(srv, ws_peers)
    assert q.request("still here") == "still here"
    expect_normal_close(srv, q, sent=False)


def binary(n):
    return os.urandom(n)


# ======================================================================================
# 1. Framing
# ======================================================================================
SIZES = [0, 1, 125, 126, 127, 128, 65535, 65536, 65537, 300_000]


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_1_echo_every_length_encoding(srv, ws_peers, opcode):
    """7-bit, 16-bit and 64-bit lengths at their edges, echoed as sent (same opcode), in
    unmasked frames with the minimal length encoding (checked by WsPeer.recv_frame)."""
    p = connect(srv, ws_peers)
    for n in SIZES:
        payload = (b"*" * n) if opcode == OP_TEXT else binary(n)
        p.send_frame(opcode, payload)
        op, got = p.recv_message(T(10))
        assert op == opcode and got == payload, f"size {n}: got {len(got)} bytes op {op}"
    expect_normal_close(srv, p, sent=False)


def test_1_frame_sent_one_byte_at_a_time(srv, ws_peers):
    p = connect(srv, ws_peers)
    for n in (0, 5, 125, 126, 300):
        payload = binary(n)
        p.send_frame(OP_BINARY, payload, chop=1)
        assert p.recv_message() == (OP_BINARY, payload)
    p.send_close(1000, chop=1)
    expect_normal_close(srv, p)


def test_1_large_frame_in_odd_chunks(srv, ws_peers):
    p = connect(srv, ws_peers)
    payload = binary(1 << 20)
    p.send_frame(OP_BINARY, payload, chop=997)
    assert p.recv_message(T(20)) == (OP_BINARY, payload)
    expect_normal_close(srv, p, sent=False)


def test_1_many_messages_in_one_write_answered_in_order(srv, ws_peers):
    p = connect(srv, ws_peers)
    msgs = [b"m%04d" % i + b"." * (i % 300) for i in range(300)]
    p.send_raw(b"".join(ws_frame(OP_BINARY, m) for m in msgs))
    for m in msgs:
        assert p.recv_message() == (OP_BINARY, m)
    expect_normal_close(srv, p, sent=False)


def test_1_zero_mask_key_is_a_mask(srv, ws_peers):
    p = connect(srv, ws_peers)
    p.send_frame(OP_TEXT, b"zero key", mask_key=b"\0\0\0\0")
    assert p.recv_message() == (OP_TEXT, b"zero key")
    expect_normal_close(srv, p, sent=False)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE],
                         ids=["text", "binary", "ping", "close"])
def test_1_unmasked_client_frame_is_protocol_error(srv, ws_peers, opcode):
    p = connect(srv, ws_peers)
    payload = ws_close_payload(1000) if opcode == OP_CLOSE else b"Hello"
    p.send_frame(opcode, payload, mask=False)
    expect_fail(srv, p, 1002, "protocol_error")
    still_serves(srv, ws_peers)


@pytest.mark.parametrize("n,len_bytes", [(5, 2), (125, 2), (200, 8), (65535, 8)],
                         ids=["5_in_16bit", "125_in_16bit", "200_in_64bit", "65535_in_64bit"])
def test_1_non_minimal_length_is_protocol_error(srv, ws_peers, n, len_bytes):
    """RFC 6455 section 5.2: the minimal number of bytes MUST be used for the length."""
    p = connect(srv, ws_peers)
    p.send_frame(OP_BINARY, binary(n), len_bytes=len_bytes)
    expect_fail(srv, p, 1002, "protocol_error")


def test_1_64bit_length_with_top_bit_set_is_protocol_error(srv, ws_peers):
    """RFC 6455 section 5.2: the most significant bit of a 64-bit length MUST be 0."""
    p = connect(srv, ws_peers)
    p.send_raw(struct.pack(">BBQ", 0x82, 0x80 | 127, (1 << 63) | 10) + b"\0\0\0\0" + b"x" * 10)
    expect_fail(srv, p, 1002, "protocol_error")


# ======================================================================================
# 2. Pings and pongs
# ======================================================================================
@pytest.mark.parametrize("payload", [
    b"", b"Hello, world!", b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", b"*" * 125,
], ids=["empty", "text", "binary", "125_bytes"])
def test_2_ping_gets_pong_with_same_payload(srv, ws_peers, payload):
    p = connect(srv, ws_peers)
    p.send_frame(OP_PING, payload)
    f = p.recv_frame()
    assert f.opcode == OP_PONG and f.fin and f.payload == payload, f
    expect_normal_close(srv, p, sent=False)


def test_2_ping_sent_one_byte_at_a_time(srv, ws_peers):
    p = connect(srv, ws_peers)
    payload = binary(125)
    p.send_frame(OP_PING, payload, chop=1)
    f = p.recv_frame()
    assert f.opcode == OP_PONG and f.payload == payload, f
    expect_normal_close(srv, p, sent=False)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG], ids=["ping", "pong"])
def test_2_control_frame_over_125_bytes_is_protocol_error(srv, ws_peers, opcode):
    p = connect(srv, ws_peers)
    p.send_frame(opcode, b"*" * 126)
    expect_fail(srv, p, 1002, "protocol_error")
    assert not [x for x in p.before_close if x.opcode == OP_PONG], p.before_close


@pytest.mark.parametrize("payload", [b"", b"unsolicited pong payload"], ids=["empty", "payload"])
def test_2_unsolicited_pong_is_ignored(srv, ws_peers, payload):
    p = connect(srv, ws_peers)
    p.send_frame(OP_PONG, payload)
    p.send_frame(OP_TEXT, b"after the pong")
    f = p.recv_frame()
    assert f.opcode == OP_TEXT and f.payload == b"after the pong", (
        f"expected only the echo after an unsolicited pong, got {f!r}")
    expect_normal_close(srv, p, sent=False)


def test_2_pong_then_ping_answers_only_the_ping(srv, ws_peers):
    p = connect(srv, ws_peers)
    p.send_frame(OP_PONG, b"unsolicited")
    p.send_frame(OP_PING, b"solicited")
    f = p.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"solicited", f
    expect_normal_close(srv, p, sent=False)


@pytest.mark.parametrize("chop", [None, 1], ids=["one_write", "byte_by_byte"])
def test_2_ten_pings_answered_in_order(srv, ws_peers, chop):
    """Autobahn 2.10/2.11. RFC 6455 section 5.5.3 lets a server answer only the latest of
    several pings not yet answered; the pongs that come are in order and include the last
    one. (Whether they come before the echo of a later message is test_5's business.) A
    final ping, sent after the echo of a marker message came back, ends the wait."""
    p = connect(srv, ws_peers)
    payloads = [b"payload-%d" % i for i in range(10)]
    p.send_raw(b"".join(ws_frame(OP_PING, x) for x in payloads), chop=chop)
    p.send_frame(OP_TEXT, b"marker")
    got = []
    marker = False
    while True:
        f = p.recv_frame()
        if f.opcode == OP_TEXT:
            assert f.payload == b"marker" and not marker, f
            marker = True
            p.send_frame(OP_PING, b"final")
            continue
        assert f.opcode == OP_PONG, f
        if f.payload == b"final":
            break
        got.append(f.payload)
    assert got and got[-1] == payloads[-1], got
    assert got == sorted(got, key=payloads.index) and len(set(got)) == len(got), got
    expect_normal_close(srv, p, sent=False)


def test_2_ping_flood_without_reading_stays_bounded(srv):
    """C5: pings sent without ever reading the pongs: the server either stops reading (its
    pongs back-pressured) or answers only the latest ones; either way it does not grow
    without bound, and the connection still works once the client reads."""
    s = socket.create_connection((HOST, srv.ws_port), timeout=T(5))
    try:
        addr = "%s:%d" % s.getsockname()
        s.sendall(ws_upgrade_request(srv.ws_port))
        r = read_http_response(s, T(5))
        assert r.status == 101, r
        s.setblocking(False)
        chunk = memoryview(b"".join(ws_frame(OP_PING, b"%03d" % (i % 1000) + b"p" * 122)
                                    for i in range(1000)))
        rss0 = srv.rss_kib()
        sent = off = 0
        budget = 64 * MiB
        last = time.monotonic()
        deadline = last + T(20)
        while sent < budget and time.monotonic() - last < T(1.0):
            assert time.monotonic() < deadline, f"sent only {sent} bytes in {T(20):.0f}s"
            _, w, _ = select.select([], [s], [], 0.1)
            if not w:
                continue
            try:
                k = s.send(chunk[off:])
            except BlockingIOError:
                continue
            sent += k
            off = (off + k) % len(chunk)
            last = time.monotonic()
        grown = srv.rss_kib() - rss0
        assert grown < 32 * 1024, f"the server grew by {grown} KiB under a ping flood"
        # now read (in a thread) everything up to the echo of a marker, while we finish
        # the frame in progress and send the marker
        s.setblocking(True)
        s.settimeout(T(10))

        def reader():
            buf = b""
            while True:
                data = s.recv(1 << 20)
                assert data, "EOF during the ping flood"
                buf += data
                while True:
                    f, used = ws_parse_frame(buf)
                    if f is None:
                        break
                    buf = buf[used:]
                    if f.opcode == OP_TEXT:
                        return f
                    assert f.opcode == OP_PONG and len(f.payload) == 125, f

        box = []
        t = threading.Thread(target=lambda: box.append(reader()), daemon=True)
        t.start()
        rest = (len(chunk) - off) % len(chunk)
        s.sendall(bytes(chunk[off:off + rest]) + ws_frame(OP_TEXT, b"after the flood"))
        t.join(T(20))
        assert box and box[0].payload == b"after the flood", "no echo after the flood"
        s.sendall(ws_frame(OP_CLOSE, ws_close_payload(1000)))
    finally:
        s.close()
    line = srv.wait_close_line(addr, T(5))
    assert line["reason"] in ("normal", "peer_eof", "peer_reset"), line["line"]


# ======================================================================================
# 3. Reserved bits (no extension is ever negotiated, so every RSV bit is an error)
# ======================================================================================
@pytest.mark.parametrize("rsv,opcode", [
    (1, OP_TEXT), (2, OP_TEXT), (3, OP_TEXT), (4, OP_TEXT), (5, OP_BINARY), (6, OP_PING),
    (7, OP_CLOSE), (4, OP_BINARY), (2, OP_PONG),
], ids=["1_text", "2_text", "3_text", "4_text", "5_binary", "6_ping", "7_close",
        "4_binary", "2_pong"])
def test_3_reserved_bits_are_protocol_error(srv, ws_peers, rsv, opcode):
    p = connect(srv, ws_peers)
    payload = ws_close_payload(1000) if opcode == OP_CLOSE else b"Hello"
    p.send_frame(opcode, payload, rsv=rsv)
    expect_fail(srv, p, 1002, "protocol_error")


def test_3_reserved_bit_after_a_valid_message_and_nothing_after_it(srv, ws_peers):
    """Autobahn 3.2: echo, then the bad frame, then a ping: the echo comes, the close 1002
    comes, the ping (after the violation) is never answered."""
    p = connect(srv, ws_peers)
    p.send_raw(ws_frame(OP_TEXT, b"Hello, world!") + ws_frame(OP_TEXT, b"Hello", rsv=2)
               + ws_frame(OP_PING, b""))
    f = p.recv_frame()
    assert f.opcode == OP_TEXT and f.payload == b"Hello, world!", f
    expect_fail(srv, p, 1002, "protocol_error")
    assert p.before_close == [], f"frames between the echo and the close: {p.before_close}"


def test_3_reserved_bit_on_a_continuation(srv, ws_peers):
    p = connect(srv, ws_peers)
    p.send_frame(OP_TEXT, b"frag1", fin=False)
    p.send_frame(OP_CONT, b"frag2", rsv=4)
    expect_fail(srv, p, 1002, "protocol_error")


# ======================================================================================
# 4. Opcodes
# ======================================================================================
@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
@pytest.mark.parametrize("payload", [b"", b"reserved opcode"], ids=["empty", "payload"])
def test_4_reserved_opcode_is_protocol_error(srv, ws_peers, opcode, payload):
    p = connect(srv, ws_peers)
    p.send_frame(opcode, payload)
    expect_fail(srv, p, 1002, "protocol_error")


@pytest.mark.parametrize("opcode", [5, 0xB])
def test_4_reserved_opcode_after_a_valid_message(srv, ws_peers, opcode):
    p = connect(srv, ws_peers)
    p.send_raw(ws_frame(OP_TEXT, b"Hello, world!") + ws_frame(opcode, b"")
               + ws_frame(OP_PING, b""))
    assert p.recv_message() == (OP_TEXT, b"Hello, world!")
    expect_fail(srv, p, 1002, "protocol_error")
    assert p.before_close == [], p.before_close


# ======================================================================================
# 5. Fragmentation
# ======================================================================================
@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE], ids=["ping", "pong", "close"])
def test_5_fragmented_control_frame_is_protocol_error(srv, ws_peers, opcode):
    p = connect(srv, ws_peers)
    first = ws_close_payload(1000) if opcode == OP_CLOSE else b"frag1"
    p.send_raw(ws_frame(opcode, first, fin=False) + ws_frame(OP_CONT, b"frag2"))
    expect_fail(srv, p, 1002, "protocol_error")


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
@pytest.mark.parametrize("chop", [None, 1], ids=["one_write", "byte_by_byte"])
def test_5_fragmented_message_echoed_whole(srv, ws_peers, opcode, chop):
    p = connect(srv, ws_peers)
    p.send_raw(ws_frame(opcode, b"fragment1", fin=False) + ws_frame(OP_CONT, b"fragment2"),
               chop=chop)
    assert p.recv_message() == (opcode, b"fragment1fragment2")
    expect_normal_close(srv, p, sent=False)


@pytest.mark.parametrize("chop", [None, 1], ids=["one_write", "byte_by_byte"])
def test_5_ping_between_fragments_answered_first(srv, ws_peers, chop):
    """Autobahn 5.6-5.8: the ping sits between the fragments, so its pong comes before the
    echo of the message, which is complete only after the ping."""
    p = connect(srv, ws_peers)
    p.send_raw(ws_frame(OP_TEXT, b"fragment1", fin=False) + ws_frame(OP_PING, b"in between")
               + ws_frame(OP_CONT, b"fragment2"), chop=chop)
    f = p.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"in between", f
    assert p.recv_message() == (OP_TEXT, b"fragment1fragment2")
    expect_normal_close(srv, p, sent=False)


def test_5_ping_between_fragments_sent_apart(srv, ws_peers):
    """Autobahn 5.19: the pong comes while the message is still unfinished."""
    p = connect(srv, ws_peers)
    p.send_frame(OP_TEXT, b"fragment1", fin=False)
    p.send_frame(OP_PING, b"pongme 1!")
    f = p.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"pongme 1!", f
    p.send_frame(OP_CONT, b"fragment2", fin=False)
    p.send_frame(OP_PONG, b"unsolicited")
    p.send_frame(OP_PING, b"pongme 2!")
    f = p.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"pongme 2!", f
    p.send_frame(OP_CONT, b"fragment3")
    assert p.recv_message() == (OP_TEXT, b"fragment1fragment2fragment3")
    expect_normal_close(srv, p, sent=False)


def test_5_thousand_one_byte_fragments(srv, ws_peers):
    p = connect(srv, ws_peers)
    payload = binary(1000)
    frames = [ws_frame(OP_BINARY if i == 0 else OP_CONT, payload[i:i + 1], fin=(i == 999))
              for i in range(1000)]
    p.send_raw(b"".join(frames))
    assert p.recv_message() == (OP_BINARY, payload)
    expect_normal_close(srv, p, sent=False)


def test_5_empty_fragments(srv, ws_peers):
    p = connect(srv, ws_peers)
    p.send_raw(ws_frame(OP_TEXT, b"", fin=False) + ws_frame(OP_CONT, b"", fin=False)
               + ws_frame(OP_CONT, b""))
    assert p.recv_message() == (OP_TEXT, b"")
    p.send_raw(ws_frame(OP_TEXT, b"", fin=False) + ws_frame(OP_CONT, b"middle", fin=False)
               + ws_frame(OP_CONT, b""))
    assert p.recv_message() == (OP_TEXT, b"middle")
    expect_normal_close(srv, p, sent=False)


@pytest.mark.parametrize("fin", [True, False], ids=["fin", "nofin"])
def test_5_continuation_without_a_message_is_protocol_error(srv, ws_peers, fin):
    p = connect(srv, ws_peers)
    p.send_frame(OP_CONT, b"non-continuation payload", fin=fin)
    expect_fail(srv, p, 1002, "protocol_error")


def test_5_continuation_after_a_finished_message_is_protocol_error(srv, ws_peers):
    """Autobahn 5.15: the first message is echoed, the stray continuation then fails."""
    p = connect(srv, ws_peers)
    p.send_raw(ws_frame(OP_TEXT, b"fragment1", fin=False) + ws_frame(OP_CONT, b"fragment2")
               + ws_frame(OP_CONT, b"fragment3", fin=False) + ws_frame(OP_CONT, b"fragment4"))
    assert p.recv_message() == (OP_TEXT, b"fragment1fragment2")
    expect_fail(srv, p, 1002, "protocol_error")


@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_5_new_message_inside_a_fragmented_one_is_protocol_error(srv, ws_peers, second):
    p = connect(srv, ws_peers)
    p.send_raw(ws_frame(OP_TEXT, b"fragment1", fin=False) + ws_frame(second, b"fragment2"))
    expect_fail(srv, p, 1002, "protocol_error")


def test_5_close_between_fragments_is_a_normal_close(srv, ws_peers):
    """Control frames may be interleaved, close included: the unfinished message is dropped
    and the close handshake completes."""
    p = connect(srv, ws_peers)
    p.send_raw(ws_frame(OP_TEXT, b"fragment1", fin=False)
               + ws_frame(OP_CLOSE, ws_close_payload(1000, b"mid-message")))
    expect_normal_close(srv, p, 1000)


# ======================================================================================
# 6. UTF-8 in text messages
# ======================================================================================
VALID_UTF8 = [
    b"",
    "Hello-µ@ßöäüàá-UTF-8!!".encode(),
    "κόσμε".encode(),
    b"\x00", b"\x7f", b"\xc2\x80", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xef\xbf\xbf",
    b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf",          # U+10000, U+10FFFF
    b"\xed\x9f\xbf", b"\xee\x80\x80",                  # U+D7FF, U+E000 around surrogates
    b"\xef\xbb\xbf", b"\xef\xbf\xbe", b"\xef\xb7\x90",  # BOM, U+FFFE, U+FDD0 (valid)
    "\U0001F600 and 中文 and ascii".encode(),
]

INVALID_UTF8 = {
    "surrogate_d800": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    "surrogate_dfff": b"\xed\xbf\xbf",
    "surrogate_pair": b"\xed\xa0\x80\xed\xb0\x80",
    "overlong_slash_2": b"\xc0\xaf",
    "overlong_slash_3": b"\xe0\x80\xaf",
    "overlong_slash_4": b"\xf0\x80\x80\xaf",
    "overlong_nul": b"\xc0\x80",
    "overlong_max_2": b"\xc1\xbf",
    "overlong_max_3": b"\xe0\x9f\xbf",
    "overlong_max_4": b"\xf0\x8f\xbf\xbf",
    "five_bytes": b"\xf8\x88\x80\x80\xaf",
    "six_bytes": b"\xfc\x84\x80\x80\x80\xaf",
    "above_10ffff": b"\xf4\x90\x80\x80",
    "f5": b"\xf5\x80\x80\x80",
    "fe": b"\xfe",
    "ff": b"\xff",
    "lone_continuation": b"\x80",
    "continuations": b"\x80\xbf\x80",
    "lead_then_ascii": b"\xce!",
    "truncated_2_at_end": "κόσμε".encode() + b"\xce",
    "truncated_3_at_end": b"ok\xe1\xbd",
    "truncated_4_at_end": b"ok\xf0\x90\x80",
}


@pytest.mark.parametrize("payload", VALID_UTF8, ids=lambda b: b.hex() or "empty")
def test_6_valid_utf8_echoed_whole_and_split_at_every_byte(srv, ws_peers, payload):
    p = connect(srv, ws_peers)
    p.send_frame(OP_TEXT, payload)
    assert p.recv_message() == (OP_TEXT, payload)
    for cut in range(1, len(payload)):
        p.send_raw(ws_frame(OP_TEXT, payload[:cut], fin=False)
                   + ws_frame(OP_CONT, payload[cut:]))
        assert p.recv_message() == (OP_TEXT, payload), f"split at {cut}"
    # one byte per fragment
    if payload:
        p.send_raw(b"".join(ws_frame(OP_TEXT if i == 0 else OP_CONT, payload[i:i + 1],
                                     fin=(i == len(payload) - 1))
                            for i in range(len(payload))))
        assert p.recv_message() == (OP_TEXT, payload)
    expect_normal_close(srv, p, sent=False)


@pytest.mark.parametrize("payload", list(INVALID_UTF8.values()), ids=list(INVALID_UTF8))
def test_6_invalid_utf8_is_1007(srv, ws_peers, payload):
    p = connect(srv, ws_peers)
    p.send_frame(OP_TEXT, payload)
    expect_fail(srv, p, 1007, "invalid_utf8")


@pytest.mark.parametrize("name", ["surrogate_d800", "overlong_slash_4", "above_10ffff",
                                  "truncated_2_at_end", "five_bytes"])
def test_6_invalid_utf8_split_across_fragments_is_1007(start_server, ws_peers, name):
    """Every split point of the invalid message, each on a fresh connection."""
    payload = INVALID_UTF8[name]
    srv = start_server(app="echo", ws=WS_ANY, frame="off")
    for cut in range(1, len(payload)):
        p = connect(srv, ws_peers)
        p.send_raw(ws_frame(OP_TEXT, payload[:cut], fin=False)
                   + ws_frame(OP_CONT, payload[cut:]))
        expect_fail(srv, p, 1007, "invalid_utf8")


def test_6_binary_is_not_validated(srv, ws_peers):
    p = connect(srv, ws_peers)
    for payload in INVALID_UTF8.values():
        p.send_frame(OP_BINARY, payload)
        assert p.recv_message() == (OP_BINARY, payload)
    expect_normal_close(srv, p, sent=False)


def test_6_fail_fast_on_an_impossible_first_fragment(srv, ws_peers):
    """Autobahn 6.4.1: the message is not finished (no final fragment is ever sent), yet the
    server closes with 1007 as soon as the sequence is impossible."""
    p = connect(srv, ws_peers)
    p.send_frame(OP_TEXT, "κόσμε".encode() + b"\xed\xa0\x80" + b"edited", fin=False)
    expect_fail(srv, p, 1007, "invalid_utf8")


def test_6_fail_fast_when_the_sequence_breaks_in_the_next_fragment(srv, ws_peers):
    """Autobahn 6.4.2: fragment 1 ends in a valid prefix (\\xf4, a 4-byte lead), so it is
    accepted (a ping after it is answered); fragment 2 continues it past U+10FFFF: 1007
    at once, with the message still unfinished."""
    p = connect(srv, ws_peers)
    p.send_frame(OP_TEXT, "κόσμε".encode() + b"\xf4", fin=False)
    p.send_frame(OP_PING, b"still fine")
    f = p.recv_frame()
    assert f.opcode == OP_PONG and f.payload == b"still fine", (
        f"a valid UTF-8 prefix split at a fragment boundary was refused: {f!r}")
    p.send_frame(OP_CONT, b"\x90\x80\x80", fin=False)
    expect_fail(srv, p, 1007, "invalid_utf8")


def test_6_fail_fast_inside_one_frame_sent_in_pieces(srv, ws_peers):
    """Autobahn 6.4.3/6.4.4: the frame's payload arrives in pieces; the server fails as soon
    as the impossible byte is read, before the rest of the frame arrives."""
    p = connect(srv, ws_peers)
    payload = "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited" * 20
    data = ws_frame(OP_TEXT, payload)
    head_len = len(data) - len(payload)
    # header and the valid prefix plus the impossible bytes; the rest never sent
    p.send_raw(data[:head_len + len("κόσμε".encode()) + 4])
    expect_fail(srv, p, 1007, "invalid_utf8")


def test_6_truncated_sequence_at_the_final_empty_fragment(srv, ws_peers):
    p = connect(srv, ws_peers)
    p.send_frame(OP_TEXT, b"ok\xce", fin=False)
    p.send_frame(OP_PING, b"prefix is fine")
    f = p.recv_frame()
    assert f.opcode == OP_PONG, f
    p.send_frame(OP_CONT, b"")
    expect_fail(srv, p, 1007, "invalid_utf8")


# ======================================================================================
# 7. Close handling
# ======================================================================================
def test_7_echo_then_close(srv, ws_peers):
    p = connect(srv, ws_peers)
    assert p.request("Hello World!") == "Hello World!"
    expect_normal_close(srv, p, 1000, b"bye", sent=False)


def test_7_nothing_after_close(srv, ws_peers):
    """Autobahn 7.1.2-7.1.5: after our close, a second close, a ping, a text and a
    continuation are all ignored: the only frame back is the close."""
    p = connect(srv, ws_peers)
    bye = ws_close_payload(1000)
    p.send_raw(ws_frame(OP_CLOSE, bye) + ws_frame(OP_CLOSE, bye)
               + ws_frame(OP_PING, b"no pong") + ws_frame(OP_TEXT, b"no echo")
               + ws_frame(OP_CONT, b"no error"))
    f = p.recv_frame()
    assert f.opcode == OP_CLOSE and f.close_code == 1000, f
    p.expect_eof(T(5))
    line = srv.wait_close_line(p.addr, T(5))
    assert line["reason"] == "normal" and line.get("code") == "1000", line["line"]


def test_7_message_before_close_is_echoed_ping_after_it_is_not(srv, ws_peers):
    """Autobahn 7.1.6: a large message, a close and a ping in one write."""
    p = connect(srv, ws_peers)
    big = b"BAsd7&jh23" * 26_000
    p.send_raw(ws_frame(OP_TEXT, big) + ws_frame(OP_CLOSE, ws_close_payload(1000))
               + ws_frame(OP_PING, b"no pong"))
    f = p.expect_close(T(10), reply=False, allow_data=True)
    assert f.close_code == 1000
    data = [x for x in p.before_close if x.opcode != OP_PONG]
    assert not [x for x in p.before_close if x.opcode == OP_PONG], p.before_close
    assert b"".join(x.payload for x in data) in (b"", big), "partial echo before the close"
    p.expect_eof(T(5))
    line = srv.wait_close_line(p.addr, T(5))
    assert line["reason"] == "normal", line["line"]


def test_7_empty_close(srv, ws_peers):
    """Autobahn 7.3.1: a close without a code is answered by a close without a code or
    with 1000, and the handshake is normal."""
    p = connect(srv, ws_peers)
    p.send_frame(OP_CLOSE, b"")
    f = p.expect_close(T(5), reply=False)
    assert f.payload == b"" or f.close_code == 1000, f
    p.expect_eof(T(5))
    line = srv.wait_close_line(p.addr, T(5))
    assert line["reason"] == "normal" and line["level"] == "INFO", line["line"]
    assert line.get("code") in (None, "1005", "1000"), line["line"]


def test_7_close_then_fin_is_still_a_normal_close(srv, ws_peers):
    """A client that sends its close and at once shuts its sending side down still gets
    the close answer, then the server's FIN."""
    p = connect(srv, ws_peers)
    assert p.request("x") == "x"
    p.send_close(1000)
    p.sock.shutdown(socket.SHUT_WR)
    expect_normal_close(srv, p, 1000)


def test_7_one_byte_close_payload_is_protocol_error(srv, ws_peers):
    p = connect(srv, ws_peers)
    p.send_frame(OP_CLOSE, b"\x03")
    expect_fail(srv, p, 1002, "protocol_error")


@pytest.mark.parametrize("reason", [b"", b"Hello World!", b"*" * 123],
                         ids=["no_reason", "reason", "reason_123"])
def test_7_close_1000_with_reason(srv, ws_peers, reason):
    p = connect(srv, ws_peers)
    p.send_close(1000, reason)
    expect_normal_close(srv, p, 1000)


def test_7_close_payload_over_125_is_protocol_error(srv, ws_peers):
    p = connect(srv, ws_peers)
    p.send_close(1000, b"*" * 124)
    expect_fail(srv, p, 1002, "protocol_error")


def test_7_close_reason_with_invalid_utf8_is_1007(srv, ws_peers):
    p = connect(srv, ws_peers)
    p.send_close(1000, "κόσμε".encode() + b"\xed\xa0\x80edited")
    expect_fail(srv, p, 1007, "invalid_utf8")


def test_7_close_reason_utf8_split_nowhere_else_is_fine(srv, ws_peers):
    p = connect(srv, ws_peers)
    p.send_close(1000, "κόσμε \U0001F600".encode())
    expect_normal_close(srv, p, 1000)


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_7_valid_close_code_is_echoed(srv, ws_peers, code):
    p = connect(srv, ws_peers)
    p.send_close(code, b"why")
    expect_normal_close(srv, p, code)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_7_invalid_close_code_is_protocol_error(srv, ws_peers, code):
    p = connect(srv, ws_peers)
    p.send_close(code)
    expect_fail(srv, p, 1002, "protocol_error")


def test_7_peer_fin_without_close_frame_is_peer_eof(srv, ws_peers):
    p = connect(srv, ws_peers)
    assert p.request(b"x") == b"x"
    p.sock.shutdown(socket.SHUT_WR)
    p.wait_closed(T(5))
    line = srv.wait_close_line(p.addr, T(5))
    assert line["reason"] == "peer_eof" and line.get("code") == "1006", line["line"]
    assert line["level"] == "INFO", line["line"]


def test_7_peer_reset_is_peer_reset(srv, ws_peers):
    p = connect(srv, ws_peers)
    assert p.request(b"x") == b"x"
    p.reset()
    line = srv.wait_close_line(p.addr, T(5))
    assert line["reason"] == "peer_reset" and line.get("code") == "1006", line["line"]
    assert line["level"] == "INFO", line["line"]
    assert line.get("errno") in ("ECONNRESET", "EPIPE"), line["line"]
    still_serves(srv, ws_peers)


def test_7_peer_fin_inside_a_frame_is_truncated(srv, ws_peers):
    p = connect(srv, ws_peers)
    p.send_raw(ws_frame(OP_BINARY, b"0123456789")[:8])
    p.sock.shutdown(socket.SHUT_WR)
    p.wait_closed(T(5))
    line = srv.wait_close_line(p.addr, T(5))
    assert line["reason"] == "truncated" and line.get("code") in (None, "1006"), line["line"]


def test_7_server_close_never_answered_is_close_timeout(start_server, ws_peers):
    """The demo's `close`: the server sends close 1000 and, when the peer never answers
    nor closes TCP, cuts the connection off after a bounded time (close_timeout)."""
    srv = start_server(app="demo", ws=WS_ANY, frame="off")
    p = connect(srv, ws_peers)
    t0 = time.monotonic()
    p.send_text("close")
    f = p.recv_frame()
    assert f.opcode == OP_CLOSE and f.close_code == 1000, f
    assert p.wait_closed(T(30)) in ("eof", "reset")
    elapsed = time.monotonic() - t0
    line = srv.wait_close_line(p.addr, T(5))
    assert line["reason"] == "close_timeout" and line["level"] == "WARN", line["line"]
    assert elapsed < T(15), f"cut off only after {elapsed:.1f}s"


def test_7_demo_close_answers_what_came_before_and_nothing_after(start_server, ws_peers):
    """Messages pipelined before the demo's `close` are answered, the server's close 1000
    follows, and a message after `close` is neither delivered nor answered nor counted."""
    srv = start_server(app="demo", ws=WS_ANY, frame="off")
    p = connect(srv, ws_peers)
    p.send_raw(b"".join(ws_frame(OP_TEXT, m) for m in (b"a", b"b", b"close", b"c")))
    assert p.recv_message() == (OP_TEXT, b"a/answer")
    assert p.recv_message() == (OP_TEXT, b"b/answer")
    f = p.expect_close(T(5))
    assert f.close_code == 1000, f
    line = srv.wait_close_line(p.addr, T(5))
    assert line["reason"] == "local" and line.get("code") == "1000", line["line"]
    assert line["level"] == "INFO", line["line"]
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(T(5)) == 0
    summ = srv.summary()
    assert summ["messages_in"] == 3 and summ["messages_out"] == 2, summ["line"]


def test_7_server_closes_tcp_once_its_close_is_answered(start_server, ws_peers):
    """RFC 6455 section 7.1.1: once the peer answered the server's close, the server closes
    TCP first, at once: it does not wait for the client's FIN (which a client may hold back
    until it sees the server's), so the close line is logged with the close, not 5 s later
    as close_timeout."""
    srv = start_server(app="demo", ws=WS_ANY, frame="off")
    p = connect(srv, ws_peers)
    p.send_text("close")
    f = p.recv_frame(T(5))
    assert f.opcode == OP_CLOSE and f.close_code == 1000, f
    t0 = time.monotonic()
    p.send_close(1000)
    p.expect_eof(T(3), close=False)  # our side stays open: no FIN from us
    line = srv.wait_close_line(p.addr, T(3))
    elapsed = time.monotonic() - t0
    assert line["reason"] == "local" and line.get("code") == "1000", line["line"]
    assert elapsed < T(2), f"close line {elapsed:.2f}s after our answer"
    p.close()


def test_7_demo_close_command_only_as_whole_text(start_server, ws_peers):
    """The demo's command is the text message `close`, whatever its fragmentation; binary
    `close` is echoed like any binary message."""
    srv = start_server(app="demo", ws=WS_ANY, frame="off")
    p = connect(srv, ws_peers)
    p.send_binary(b"close")
    assert p.recv_message() == (OP_BINARY, b"close")
    assert p.request("close please") == "close please/answer"
    p.send_raw(ws_frame(OP_TEXT, b"clo", fin=False) + ws_frame(OP_CONT, b"se"))
    f = p.expect_close(T(5))
    assert f.close_code == 1000, f
    line = srv.wait_close_line(p.addr, T(5))
    assert line["reason"] == "local" and line.get("code") == "1000", line["line"]


def test_7_echo_app_has_no_close_command(srv, ws_peers):
    p = connect(srv, ws_peers)
    assert p.request("close") == "close"
    expect_normal_close(srv, p, sent=False)


# ======================================================================================
# 9. Limits (--max-message), enforced before buffering
# ======================================================================================
@pytest.fixture
def small(start_server):
    return start_server("--max-message", "1000", app="echo", ws=WS_ANY, frame="off")


def test_9_message_at_the_limit_is_echoed(small, ws_peers):
    p = connect(small, ws_peers)
    assert p.request(b"x" * 1000) == b"x" * 1000
    p.send_raw(ws_frame(OP_TEXT, b"y" * 500, fin=False) + ws_frame(OP_CONT, b"y" * 500))
    assert p.recv_message() == (OP_TEXT, b"y" * 1000)
    expect_normal_close(small, p, sent=False)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_9_message_over_the_limit_is_1009(small, ws_peers, opcode):
    p = connect(small, ws_peers)
    p.send_frame(opcode, b"x" * 1001)
    expect_fail(small, p, 1009, "too_big")
    still_serves(small, ws_peers)


def test_9_running_total_of_fragments_over_the_limit_is_1009(small, ws_peers):
    """The second fragment takes the total over the limit: 1009 at once, though the
    message is not finished."""
    p = connect(small, ws_peers)
    p.send_frame(OP_BINARY, b"x" * 600, fin=False)
    p.send_frame(OP_CONT, b"x" * 600, fin=False)
    expect_fail(small, p, 1009, "too_big")


def test_9_huge_length_refused_from_the_header_alone(small, ws_peers):
    """A header announcing 1 GiB: refused before any payload byte is buffered."""
    p = connect(small, ws_peers)
    p.send_raw(struct.pack(">BBQ", 0x82, 0x80 | 127, 1 << 30) + os.urandom(4))
    expect_fail(small, p, 1009, "too_big")


def test_9_default_limit_is_16_mib(srv, ws_peers):
    """--max-message defaults to 16 MiB: a header announcing one byte more is refused."""
    p = connect(srv, ws_peers)
    p.send_raw(struct.pack(">BBQ", 0x82, 0x80 | 127, 16 * MiB + 1) + os.urandom(4))
    expect_fail(srv, p, 1009, "too_big")


def test_9_max_connections_refuses_upgrades_with_503(start_server, ws_peers):
    srv = start_server("--max-connections", "3", app="echo", ws=WS_ANY, frame="off")
    first = [connect(srv, ws_peers) for _ in range(3)]
    for p in first:
        assert p.request("in") == "in"
    r, addr = http_request(srv.ws_port, ws_upgrade_request(srv.ws_port), T(5))
    assert r.status == 503, r
    assert "close" in r.header_tokens("Connection"), r
    line = srv.wait_close_line(addr, T(5))
    assert line["reason"] == "too_many_connections" and line["level"] == "WARN", line["line"]
    for p in first:
        assert p.request("still") == "still"
    expect_normal_close(srv, first[0], sent=False)
    again = connect(srv, ws_peers)
    assert again.request("again") == "again"


def test_9_stalled_reader_is_paused_then_resumes(srv):
    """C5: a client that sends 1 MiB messages and never reads is no longer read from once
    the server's buffers fill (bounded memory); when it starts reading, every echo
    arrives, in order."""
    n = 64
    s = socket.create_connection((HOST, srv.ws_port), timeout=T(5))
    try:
        addr = "%s:%d" % s.getsockname()
        s.sendall(ws_upgrade_request(srv.ws_port))
        r = read_http_response(s, T(5))
        assert r.status == 101, r
        s.setblocking(False)
        msgs = [bytes([i]) * MiB for i in range(n)]
        pending = [memoryview(ws_frame(OP_BINARY, m)) for m in msgs]
        rss0 = srv.rss_kib()
        sent_msgs = 0
        off = 0
        last_progress = time.monotonic()
        deadline = time.monotonic() + T(40)
        # phase 1: send without reading until the server stops taking bytes
        while sent_msgs < n and time.monotonic() - last_progress < T(1.0):
            assert time.monotonic() < deadline
            _, w, _ = select.select([], [s], [], 0.1)
            if not w:
                continue
            try:
                k = s.send(pending[sent_msgs][off:])
            except BlockingIOError:
                continue
            off += k
            last_progress = time.monotonic()
            if off == len(pending[sent_msgs]):
                sent_msgs, off = sent_msgs + 1, 0
        assert sent_msgs < n, "the server read 64 MiB from a client that never reads"
        grown = srv.rss_kib() - rss0
        assert grown < 48 * 1024, f"the server grew by {grown} KiB for one stalled reader"
        # phase 2: read everything while sending the rest
        buf = b""
        got = 0
        while got < n:
            assert time.monotonic() < deadline, f"{got} of {n} echoes after {T(40):.0f}s"
            want_w = [s] if sent_msgs < n else []
            rd, w, _ = select.select([s], want_w, [], 0.2)
            if w:
                try:
                    k = s.send(pending[sent_msgs][off:])
                    off += k
                    if off == len(pending[sent_msgs]):
                        sent_msgs, off = sent_msgs + 1, 0
                except BlockingIOError:
                    pass
            if rd:
                data = s.recv(8 * MiB)
                assert data, "EOF before every echo"
                buf += data
                while True:
                    f, used = ws_parse_frame(buf)
                    if f is None:
                        break
                    buf = buf[used:]
                    assert f.opcode == OP_BINARY and f.fin, f
                    assert len(f.payload) == MiB and f.payload[0] == got \
                        and f.payload[-1] == got, f"echo {got} is not message {got}"
                    got += 1
        s.setblocking(True)
        s.sendall(ws_frame(OP_CLOSE, ws_close_payload(1000)))
        s.settimeout(T(5))
        tail = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            tail += data
        f, _ = ws_parse_frame(tail)
        assert f is not None and f.opcode == OP_CLOSE and f.close_code == 1000, tail[:40]
    finally:
        s.close()
    line = srv.wait_close_line(addr, T(5))
    assert line["reason"] == "normal", line["line"]


# ======================================================================================
# Upgrade handshake (SPEC section 4 "HTTP answers on the WebSocket port")
# ======================================================================================
def test_handshake_rfc_example_key(srv):
    """RFC 6455 section 1.3: key dGhlIHNhbXBsZSBub25jZQ== → s3pPLMBiTxaQ9kYGzzhZRbK+xOo=."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    assert ws_accept(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    with socket.create_connection((HOST, srv.ws_port), timeout=T(5)) as s:
        s.sendall(ws_upgrade_request(srv.ws_port, "/chat", key=key))
        r = read_http_response(s, T(5))
        assert r.status == 101, r
        assert r.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", r
        assert r.header_tokens("Upgrade") == ["websocket"], r
        assert "upgrade" in r.header_tokens("Connection"), r
        assert r.header("Sec-WebSocket-Protocol") is None, r
        assert r.header("Sec-WebSocket-Extensions") is None, r
        assert r.rest == b"", f"bytes after the 101: {r.rest!r}"


def _req(port, **kw):
    return ws_upgrade_request(port, **kw)


BAD_REQUESTS = {
    # name: (request builder(port), status, header that must be in the answer)
    "plain_get": (lambda port: f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode(),
                  426, ("Upgrade", "websocket")),
    "no_upgrade_header": (lambda port: _req(port, path="/chat", omit=("upgrade",)),
                          426, ("Upgrade", "websocket")),
    "version_8": (lambda port: _req(port, version="8"), 426, ("Sec-WebSocket-Version", "13")),
    "version_missing": (lambda port: _req(port, omit=("sec-websocket-version",)),
                        426, ("Sec-WebSocket-Version", "13")),
    "version_garbage": (lambda port: _req(port, version="thirteen"),
                        426, ("Sec-WebSocket-Version", "13")),
    "post": (lambda port: _req(port, method="POST"), 400, None),
    "put": (lambda port: _req(port, method="PUT"), 400, None),
    "http_1_0": (lambda port: _req(port, http="HTTP/1.0"), 400, None),
    "no_host": (lambda port: _req(port, omit=("host",)), 400, None),
    "no_key": (lambda port: _req(port, omit=("sec-websocket-key",)), 400, None),
    "key_short": (lambda port: _req(port, key="abc"), 400, None),
    "key_15_bytes": (lambda port: _req(port, key="AAAAAAAAAAAAAAAAAAAA"), 400, None),
    "key_17_bytes": (lambda port: _req(port, key="AAAAAAAAAAAAAAAAAAAAAAA="), 400, None),
    "key_not_base64": (lambda port: _req(port, key="!!!!!!!!!!!!!!!!!!!!!!=="), 400, None),
    "connection_keep_alive": (
        lambda port: _req(port, omit=("connection",), headers=[("Connection", "keep-alive")]),
        400, None),
    "no_connection": (lambda port: _req(port, omit=("connection",)), 400, None),
    "header_folding": (
        lambda port: _req(port, headers=[("X-Folded", "first\r\n second")]), 400, None),
    "garbage_request_line": (lambda port: b"HELLO THERE\r\n\r\n", 400, None),
    "bad_header_line": (lambda port: _req(port, headers=[("X Bad", "space in name")]),
                        400, None),
    "space_before_colon": (lambda port: _req(port, omit=("host",), headers=[("Host ", HOST)]),
                           400, None),
    "lower_case_method": (lambda port: _req(port, method="get"), 400, None),
    "nul_in_header": (lambda port: _req(port, headers=[("X-Nul", "a\0b")]), 400, None),
    "no_request_target": (lambda port: b"GET HTTP/1.1\r\nHost: x\r\n\r\n", 400, None),
    "http_2_0": (lambda port: _req(port, http="HTTP/2.0"), 400, None),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_handshake_bad_request_gets_exact_status(srv, name):
    build, status, must = BAD_REQUESTS[name]
    r, addr = http_request(srv.ws_port, build(srv.ws_port), T(5))
    assert r.status == status, f"{name}: {r!r}"
    assert "close" in r.header_tokens("Connection"), f"no Connection: close: {r!r}"
    if must:
        assert r.header(must[0]) is not None and r.header(must[0]).lower() == must[1], r
    assert r.header("Sec-WebSocket-Accept") is None, r
    line = srv.wait_close_line(addr, T(5))
    assert line["proto"] == "ws" and line["reason"] == "bad_request", line["line"]


def test_handshake_bad_request_detail_is_sanitised(srv):
    """Control characters, escape sequences and invalid UTF-8 from the client never reach
    the log raw: the close line stays one well-formed line (checked at teardown too)."""
    req = (b"GET /\x1b[31mred\x07\xff\xfe HTTP/1.1\r\nHost: x\r\nX-Evil: \x1b[2J\x08\x7f\r\n"
           b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: \x1b]0;title\x07AAAAAAAAAAAAAAAA==\r\n\r\n")
    r, addr = http_request(srv.ws_port, req, T(5))
    assert r.status == 400, r
    line = srv.wait_close_line(addr, T(5))
    assert line["reason"] == "bad_request", line["line"]
    bad = [c for c in line["line"] if not (0x20 <= ord(c) < 0x7f)]
    assert not bad, f"raw bytes {bad!r} in the close line: {line['line']!r}"


def test_handshake_with_many_headers(srv):
    """Hundreds of small headers (under --max-header in bytes): a clear 400 or 431 if a
    header count limit applies, or a normal upgrade; never a hang or a crash."""
    req = _req(srv.ws_port, headers=[(f"X-H{i}", "v") for i in range(600)])
    r, addr = http_request(srv.ws_port, req, T(5))
    assert r.status in (101, 400, 431), r
    line = srv.wait_close_line(addr, T(5))
    if r.status != 101:
        assert line["reason"] in ("bad_request", "too_big"), line["line"]


@pytest.mark.parametrize("limit,pad", [(None, 9000), (1024, 1100)], ids=["default", "1024"])
def test_handshake_headers_over_max_header_get_431(start_server, limit, pad):
    extra = ["--max-header", str(limit)] if limit else []
    srv = start_server(*extra, app="echo", ws=WS_ANY, frame="off")
    req = _req(srv.ws_port, headers=[("X-Pad", "p" * pad)])
    r, addr = http_request(srv.ws_port, req, T(5))
    assert r.status == 431, r
    assert "close" in r.header_tokens("Connection"), r
    line = srv.wait_close_line(addr, T(5))
    assert line["proto"] == "ws" and line["reason"] == "too_big", line["line"]
    # just under the limit is fine
    base = len(_req(srv.ws_port, headers=[("X-Pad", "")]))
    room = (limit or 8192) - base
    ok = WsPeer(srv.ws_port, handshake=False)
    try:
        ok.handshake(headers=[("X-Pad", "p" * (room - 200))])
        assert ok.request("fits") == "fits"
    finally:
        ok.close()


@pytest.mark.parametrize("headers,omit", [
    ([("upgrade", "WebSocket"), ("connection", "keep-alive, Upgrade")], ("upgrade", "connection")),
    ([("UPGRADE", "websocket"), ("CONNECTION", "UPGRADE")], ("upgrade", "connection")),
    ([("Origin", "http://example.com"), ("User-Agent", "test")], ()),
], ids=["token_list", "upper_case", "extra_headers"])
def test_handshake_variants_accepted(srv, headers, omit):
    key = ws_key()
    with socket.create_connection((HOST, srv.ws_port), timeout=T(5)) as s:
        s.sendall(ws_upgrade_request(srv.ws_port, "/any/path?x=1", key=key, headers=headers,
                                     omit=omit))
        r = read_http_response(s, T(5))
        assert r.status == 101, r
        assert r.header("Sec-WebSocket-Accept") == ws_accept(key), r


def test_handshake_lower_case_names(srv):
    key = ws_key()
    req = (f"GET / HTTP/1.1\r\nhost: {HOST}\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
           f"sec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n\r\n").encode()
    with socket.create_connection((HOST, srv.ws_port), timeout=T(5)) as s:
        s.sendall(req)
        r = read_http_response(s, T(5))
        assert r.status == 101 and r.header("Sec-WebSocket-Accept") == ws_accept(key), r


def test_handshake_sent_one_byte_at_a_time(srv, ws_peers):
    p = connect(srv, ws_peers, handshake=False)
    key = ws_key()
    p.send_raw(ws_upgrade_request(srv.ws_port, key=key), chop=1)
    r = read_http_response(p.sock, T(10))
    assert r.status == 101 and r.header("Sec-WebSocket-Accept") == ws_accept(key), r
    p.buf = r.rest
    assert p.request("after a slow handshake") == "after a slow handshake"
    expect_normal_close(srv, p, sent=False)


def test_handshake_and_first_frames_in_one_write(srv, ws_peers):
    p = connect(srv, ws_peers, handshake=False)
    key = ws_key()
    p.send_raw(ws_upgrade_request(srv.ws_port, key=key) + ws_frame(OP_TEXT, b"early")
               + ws_frame(OP_PING, b"early ping"))
    r = read_http_response(p.sock, T(5))
    assert r.status == 101, r
    p.buf = r.rest
    assert p.recv_message() == (OP_TEXT, b"early")
    assert [f.payload for f in p.controls] in ([], [b"early ping"])
    if not p.controls:
        f = p.recv_frame()
        assert f.opcode == OP_PONG and f.payload == b"early ping", f
    expect_normal_close(srv, p, sent=False)


def test_extension_offer_is_declined(srv, ws_peers):
    p = connect(srv, ws_peers, handshake=False)
    r = p.handshake(headers=[("Sec-WebSocket-Extensions",
                              "permessage-deflate; client_max_window_bits")])
    assert r.header("Sec-WebSocket-Extensions") is None, r
    assert p.request("uncompressed") == "uncompressed"
    expect_normal_close(srv, p, sent=False)


@pytest.mark.parametrize("offer,picked", [
    (["superchat, chat"], "superchat"),
    (["foo, chat"], "chat"),
    (["foo", "chat, superchat"], "chat"),
    (["foo"], None),
    ([], None),
], ids=["first_of_client", "second", "two_header_lines", "unsupported", "none"])
def test_subprotocol_selection(start_server, ws_peers, offer, picked):
    srv = start_server("--subprotocol", "chat", "--subprotocol", "superchat", app="echo",
                       ws=WS_ANY, frame="off")
    p = connect(srv, ws_peers, handshake=False)
    r = p.handshake(headers=[("Sec-WebSocket-Protocol", o) for o in offer])
    assert r.header("Sec-WebSocket-Protocol") == picked, r
    assert p.request("hi") == "hi"
    expect_normal_close(srv, p, sent=False)


@pytest.mark.parametrize("mode", ["slowloris", "silent"])
def test_handshake_timeout(start_server, mode):
    """--handshake-timeout 1: an upgrade request trickling in a byte every 100 ms, or no
    byte at all, is cut off after about a second (handshake_timeout, WARN)."""
    srv = start_server("--handshake-timeout", "1", app="echo", ws=WS_ANY, frame="off")
    req = ws_upgrade_request(srv.ws_port)
    with socket.create_connection((HOST, srv.ws_port), timeout=T(5)) as s:
        addr = "%s:%d" % s.getsockname()
        t0 = time.monotonic()
        closed_at = None
        i = 0
        deadline = t0 + T(4)
        while time.monotonic() < deadline:
            if mode == "slowloris" and i < len(req) - 4:
                try:
                    s.sendall(req[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    closed_at = time.monotonic()
                    break
                i += 1
            s.settimeout(0.1)
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            except ConnectionResetError:
                closed_at = time.monotonic()
                break
            if not data:
                closed_at = time.monotonic()
                break
            # a 408 (or similar) answer before the close is allowed; not a 101
            assert not data.startswith(b"HTTP/1.1 101"), data
        assert closed_at is not None, f"still open after {T(4):.1f}s ({i} bytes sent)"
    elapsed = closed_at - t0
    assert 0.8 <= elapsed <= T(1) + 1.0, f"closed {elapsed:.2f}s after connecting"
    line = srv.wait_close_line(addr, T(5))
    assert line["proto"] == "ws" and line["reason"] == "handshake_timeout", line["line"]
    assert line["level"] == "WARN", line["line"]


def test_handshake_timeout_does_not_apply_after_the_upgrade(start_server, ws_peers):
    srv = start_server("--handshake-timeout", "1", app="echo", ws=WS_ANY, frame="off")
    p = connect(srv, ws_peers)
    # silent past the handshake timeout, checked by polling the socket: no close comes
    deadline = time.monotonic() + 1.6
    while time.monotonic() < deadline:
        assert not p.closed_by_server(), "an upgraded connection hit the handshake timeout"
        time.sleep(0.05)
    assert p.request("still open") == "still open"
    expect_normal_close(srv, p, sent=False)


def test_eof_inside_the_upgrade_request_is_truncated(srv):
    with socket.create_connection((HOST, srv.ws_port), timeout=T(5)) as s:
        addr = "%s:%d" % s.getsockname()
        s.sendall(ws_upgrade_request(srv.ws_port)[:30])
        s.shutdown(socket.SHUT_WR)
        s.settimeout(T(5))
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    line = srv.wait_close_line(addr, T(5))
    assert line["proto"] == "ws" and line["reason"] == "truncated", line["line"]
