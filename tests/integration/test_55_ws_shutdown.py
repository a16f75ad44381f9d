# SPDX-License-Identifier: MIT
"""Layer 55: the WebSocket connection's lifecycle and graceful shutdown, black-box (SPEC C1,
C4; section 4 "The drain, exactly", "Idle timeout"): clients that vanish, 50 pipelining
clients at SIGINT, /healthz during a drain, the second signal, the drain deadline, and the
idle timeout's ping/pong."""

import os
import select as select_mod
import selectors
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import (HOST, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, PYTHON, T, WS_ANY,
                      http_get, http_request, read_http_response, scrape, server_socket_count,
                      wait_for_condition, ws_close_payload, ws_frame, ws_parse_frame,
                      ws_upgrade_request)


def ws_open_counts(port):
    m = scrape(port, T(5))
    return (m.get("adieu_connections_open", proto="ws"),
            m.get("adieu_connections_open", proto="frame"))


def wait_nothing_open(srv):
    """/metrics until the only open connection is the scrape's own (it counts as ws)."""
    wait_for_condition(lambda: ws_open_counts(srv.ws_port) == (1, 0), T(5),
                       what="/metrics to show no open connection but the scrape")


# A WebSocket client in a child process (raw sockets, so nothing but the standard library):
# it upgrades, then sends `Hello` every 50 ms and prints `reply <local port>` for each
# answer, until it is killed.
HELLO_CLIENT = r'''
import base64, os, socket, struct, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
assert buf.startswith(b"HTTP/1.1 101"), buf
buf = buf.split(b"\r\n\r\n", 1)[1]
me = s.getsockname()[1]
def frame(p):
    m = os.urandom(4)
    return bytes([0x81, 0x80 | len(p)]) + m + bytes(b ^ m[i % 4] for i, b in enumerate(p))
s.settimeout(0.05)
while True:
    s.sendall(frame(b"Hello"))
    t = time.monotonic() + 0.05
    while time.monotonic() < t:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            sys.exit(0)
        buf += d
        while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7f):
            n = buf[1] & 0x7f
            print("reply", me, buf[2:2 + n].decode(), flush=True)
            buf = buf[2 + n:]
'''


def test_client_sending_hello_every_50ms_is_sigkilled(start_server):
    """Exactly one INFO close line for it (peer_eof or peer_reset, code 1006), and /metrics
    back to no open connection (but the scrape's own)."""
    srv = start_server(app="demo", ws=WS_ANY)
    child = subprocess.Popen([PYTHON, "-c", HELLO_CLIENT, str(srv.ws_port)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        peer = None
        replies = 0
        deadline = time.monotonic() + T(10)
        while replies < 5:
            assert time.monotonic() < deadline, "the child got no 5 replies in time"
            line = child.stdout.readline().decode()
            assert line, f"child ended: {child.stderr.read().decode()[-2000:]}"
            _, port, text = line.split()
            assert text == "Hello/answer", line
            peer = f"{HOST}:{port}"
            replies += 1
        assert ws_open_counts(srv.ws_port) == (2, 0)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(T(5))
        child.stdout.close()
        child.stderr.close()
    line = srv.wait_close_line(peer, T(5))
    assert line["proto"] == "ws" and line["reason"] in ("peer_eof", "peer_reset"), line["line"]
    assert line["level"] == "INFO" and line.get("code") == "1006", line["line"]
    wait_nothing_open(srv)
    assert len(srv.close_lines(peer)) == 1
    assert srv.running()


# A child process holding 100 upgraded connections, each with requests sent and replies
# left unread (so its death resets them), printing `ready PORT...` then waiting to be killed.
HOLDER_CLIENT = r'''
import base64, os, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13"
               "\r\n\r\n" % key).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"HTTP/1.1 101"), buf
    m = os.urandom(4)
    p = b"x" * 100
    s.sendall((bytes([0x82, 0x80 | len(p)]) + m + bytes(b ^ m[j % 4] for j, b in enumerate(p))) * 5)
    socks.append(s)
print("ready", " ".join(str(s.getsockname()[1]) for s in socks), flush=True)
time.sleep(600)
'''


def test_200_clients_vanishing_abruptly(start_server):
    """100 connections of a SIGKILLed process and 100 reset at every stage of their life:
    one close line each (INFO, a peer reason), no ERROR, and the server still answers."""
    srv = start_server(app="demo", ws=WS_ANY)
    port = srv.ws_port
    child = subprocess.Popen([PYTHON, "-c", HOLDER_CLIENT, str(port), "100"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(child.stdout, selectors.EVENT_READ)
        assert sel.select(T(20)), "the holder child did not connect its 100 clients in time"
        sel.close()
        line = child.stdout.readline().decode().split()
        assert line and line[0] == "ready", child.stderr.read().decode()[-2000:]
        child_peers = {f"{HOST}:{p}" for p in line[1:]}
        assert len(child_peers) == 100
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(T(5))
        child.stdout.close()
        child.stderr.close()

    wait_for_condition(lambda: child_peers <= {c["peer"] for c in srv.close_lines()}, T(20),
                       what="a close line for each connection of the killed process")
    mine = []

    def rst(s):
        mine.append("%s:%d" % s.getsockname())
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    def upgraded():
        s = socket.create_connection((HOST, port), timeout=T(5))
        s.sendall(ws_upgrade_request(port))
        r = read_http_response(s, T(5))
        assert r.status == 101, r
        return s

    # 20 connected with nothing sent and 20 with half an upgrade request: reset once the
    # server holds them all (so each was accepted and owes a close line)
    base = server_socket_count(srv.pid)
    early = [socket.create_connection((HOST, port), timeout=T(5)) for _ in range(40)]
    for s in early[20:]:
        s.sendall(ws_upgrade_request(port)[:40])
    wait_for_condition(lambda: server_socket_count(srv.pid) >= base + 40, T(10),
                       what="the server to accept 40 connections")
    for s in early:
        rst(s)
    for i in range(20):  # upgraded, idle
        rst(upgraded())
    for i in range(20):  # upgraded, half a frame
        s = upgraded()
        s.sendall(ws_frame(OP_TEXT, b"never finished" * 10)[:30])
        rst(s)
    for i in range(20):  # upgraded, 2 x 64 KiB sent, replies unread: the server is writing
        s = upgraded()
        s.sendall(ws_frame(OP_BINARY, os.urandom(65536)) * 2)
        rst(s)

    everyone = child_peers | set(mine)
    assert len(everyone) == 200
    wait_for_condition(lambda: everyone <= {c["peer"] for c in srv.close_lines()}, T(20),
                       what="a close line for each of the 200 clients")
    for c in srv.close_lines():
        if c["peer"] in everyone:
            assert c["reason"] in ("peer_reset", "peer_eof", "truncated"), c["line"]
            assert c["level"] == "INFO", c["line"]
    # the server still answers, both kinds of request
    assert http_get(port, "/healthz", T(5)).status == 200
    s = upgraded()
    try:
        s.sendall(ws_frame(OP_TEXT, b"alive?"))
        buf = b""
        deadline = time.monotonic() + T(5)
        while True:
            f, used = ws_parse_frame(buf)
            if f:
                break
            assert time.monotonic() < deadline, "no answer after the 200 vanished"
            buf += s.recv(65536)
        assert f.opcode == OP_TEXT and f.payload == b"alive?/answer", f
    finally:
        s.close()
    wait_nothing_open(srv)
    assert srv.running()


# --------------------------------------------------------------------------------------
# 50 pipelining clients and SIGINT
# --------------------------------------------------------------------------------------
class WsPipeliningClient:
    """Upgrades, then sends an endless (bounded) stream of unique requests, at most `window`
    unanswered, checking every reply against its request in order. On the server's close
    frame it stops sending, finishes any frame it had half sent, answers with the same close
    and waits for the server's FIN."""

    def __init__(self, idx, port, demo, window=64, cap=200_000, pad=0):
        self.idx, self.demo, self.pad = idx, demo, pad
        self.window, self.cap = window, cap
        self.sock = socket.create_connection((HOST, port), timeout=T(10))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.addr = "%s:%d" % self.sock.getsockname()
        self.sock.sendall(ws_upgrade_request(port))
        r = read_http_response(self.sock, T(10))
        assert r.status == 101, r
        self.sock.setblocking(False)
        self.inbuf = r.rest
        self.out = b""
        self.sent = 0
        self.replies = 0
        self.mismatch = None
        self.close = None          # the server's close frame
        self.close_sent = False
        self.after_close = []      # frames after the server's close (must be none)
        self.unsent_at_close = None
        self.eof = False
        self.reset = None

    def request(self, seq):
        body = b"c%d-s%d" % (self.idx, seq)
        return body + b"." * self.pad

    def reply_for(self, seq):
        return self.request(seq) + (b"/answer" if self.demo else b"")

    def want_write(self):
        if self.eof or self.reset:
            return False
        if self.close is not None:
            return not self.close_sent or bool(self.out)
        return bool(self.out) or (self.sent - self.replies < self.window and self.sent < self.cap)

    def on_writable(self):
        if self.close is not None and not self.close_sent:
            self.out += ws_frame(OP_CLOSE, ws_close_payload(self.close.close_code))
            self.close_sent = True
        elif not self.out and self.close is None:
            n = min(self.window - (self.sent - self.replies), self.cap - self.sent)
            op = OP_TEXT if self.demo else OP_BINARY
            self.out = b"".join(ws_frame(op, self.request(self.sent + i)) for i in range(n))
            self.sent += n
        if not self.out:
            return
        try:
            k = self.sock.send(self.out)
        except BlockingIOError:
            return
        except (ConnectionResetError, BrokenPipeError) as e:
            self.reset = f"send: {e!r}"
            return
        self.out = self.out[k:]

    def on_readable(self):
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except ConnectionResetError as e:
            self.reset = f"recv: {e!r}"
            return
        if not data:
            self.eof = True
            return
        self.inbuf += data
        off = 0
        while True:
            f, used = ws_parse_frame(memoryview(self.inbuf)[off:])
            if f is None:
                break
            off += used
            if self.close is not None:
                self.after_close.append(f)
            elif f.opcode == OP_CLOSE:
                self.close = f
                self.unsent_at_close = self.sent < self.cap
            elif f.opcode in (OP_TEXT, OP_BINARY):
                want = self.reply_for(self.replies)
                if self.mismatch is None and (not f.fin or f.payload != want):
                    self.mismatch = (self.replies, f)
                self.replies += 1
            else:
                self.after_close.append(f)  # no ping/pong expected at all here
        self.inbuf = self.inbuf[off:]


@pytest.mark.parametrize("app,pad", [("demo", 0), ("echo", 8000)], ids=["demo", "echo_8k"])
def test_sigint_with_50_pipelining_ws_clients(start_server, app, pad):
    srv = start_server(app=app, ws=WS_ANY, frame="off")
    n_clients = 50
    clients = [WsPipeliningClient(i, srv.ws_port, app == "demo", pad=pad)
               for i in range(n_clients)]
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    active = set(range(n_clients))
    sigint_at = None
    started = time.monotonic()
    deadline = started + T(40)
    try:
        while active:
            now = time.monotonic()
            assert now < deadline, (f"clients still open after {T(40):.0f}s: "
                                    f"{sorted(active)[:10]}; sigint_at={sigint_at}\n{srv.tail()}")
            if sigint_at is None and all(c.replies >= 20 for c in clients) \
                    and now - started > 0.3:
                srv.signal(signal.SIGINT)
                sigint_at = now
            if sigint_at is None and now - started > T(15):
                pytest.fail(f"the 50 clients did not all get replies within {T(15):.0f}s: "
                            f"{[c.replies for c in clients]}")
            for key, events in sel.select(timeout=0.1):
                c = key.data
                if events & selectors.EVENT_READ:
                    c.on_readable()
                if events & selectors.EVENT_WRITE and c.want_write():
                    c.on_writable()
                if c.eof or c.reset:
                    sel.unregister(c.sock)
                    c.sock.close()
                    active.discard(c.idx)
                else:
                    ev = selectors.EVENT_READ
                    if c.want_write():
                        ev |= selectors.EVENT_WRITE
                    sel.modify(c.sock, ev, c)
    finally:
        for c in clients:
            if c.idx in active:
                c.sock.close()
        sel.close()

    code = srv.wait_exit(T(15))
    exit_at = time.monotonic()
    assert code == 0, f"exit {code}\n{srv.tail()}"
    assert exit_at - sigint_at < T(10), "the drain took longer than its deadline"

    resets = [(c.idx, c.reset) for c in clients if c.reset]
    assert not resets, f"clients saw a reset: {resets[:5]}"
    mismatches = [(c.idx, c.mismatch) for c in clients if c.mismatch]
    assert not mismatches, f"replies not equal to their requests in order: {mismatches[:3]}"
    no_close = [c.idx for c in clients if c.close is None]
    assert not no_close, f"clients without a close frame: {no_close[:10]}"
    wrong = [(c.idx, c.close) for c in clients
             if c.close.close_code != 1001 or c.close.close_reason != b"going away"]
    assert not wrong, f"close frames other than 1001 'going away': {wrong[:5]}"
    after = [(c.idx, c.after_close[:3]) for c in clients if c.after_close]
    assert not after, f"frames after the server's close (or unexpected controls): {after[:5]}"
    assert all(c.eof for c in clients)
    # it really was mid-stream
    assert sum(1 for c in clients if c.unsent_at_close) >= n_clients // 2

    summ = srv.summary()
    assert summ is not None, srv.tail()
    total = sum(c.replies for c in clients)
    print(f"replies={total} sent={sum(c.sent for c in clients)} "
          f"drain={exit_at - sigint_at:.3f}s summary: {summ['line']}")
    assert summ["connections"] == n_clients
    assert summ["messages_in"] == summ["messages_out"] == total, (
        f"received {total} replies in all; summary: {summ['line']}")
    closes = srv.close_lines()
    assert len(closes) == n_clients
    assert {c["peer"] for c in closes} == {c.addr for c in clients}
    bad = [c["line"] for c in closes if c["reason"] != "shutdown" or c["level"] != "INFO"
           or c.get("code") != "1001"]
    assert not bad, "\n".join(bad[:5])
    srv.wait_for_line(r" INFO shutdown: draining signal=SIGINT connections=%d(\s|$)"
                      % n_clients, 0)
    assert not [l for l in srv.lines() if "deadline passed" in l]


# --------------------------------------------------------------------------------------
# The drain seen from HTTP, the deadline, the second signal
# --------------------------------------------------------------------------------------
def held_client(srv, ws_peers):
    """An upgraded client that got an answer; the caller decides when it answers the
    server's close (holding the drain open until then)."""
    p = ws_peers(srv.ws_port)
    assert p.request("hold") == "hold/answer"
    return p


def test_drain_answers_healthz_503_metrics_and_refuses_upgrades(start_server, ws_peers):
    srv = start_server("--drain-timeout", "10", app="demo", ws=WS_ANY)
    port = srv.ws_port
    p = held_client(srv, ws_peers)
    r = http_get(port, "/healthz", T(5))
    assert r.status == 200 and r.body.strip() == b"ok", r
    srv.signal(signal.SIGINT)
    f = p.recv_frame(T(5))
    assert f.opcode == OP_CLOSE and f.close_code == 1001 and f.close_reason == b"going away", f
    srv.wait_for_line(r" INFO shutdown: draining signal=SIGINT ", T(2))
    # /healthz says draining; /metrics as usual, with adieu_draining 1
    r = http_get(port, "/healthz", T(5))
    assert r.status == 503 and r.body.strip() == b"draining", r
    assert "close" in r.header_tokens("Connection"), r
    m = scrape(port, T(5))
    assert m.get("adieu_draining") == 1, m.text
    # an upgrade is refused with 503
    req = ws_upgrade_request(port)
    r, addr = http_request(port, req, T(5))
    assert r.status == 503, r
    assert "close" in r.header_tokens("Connection"), r
    line = srv.wait_close_line(addr, T(5))
    assert line["reason"] == "bad_request" and line["proto"] == "ws", line["line"]

    # the framed listener is closed
    def frame_refused():
        try:
            socket.create_connection((HOST, srv.port), timeout=T(2)).close()
        except ConnectionRefusedError:
            return True
        return False
    wait_for_condition(frame_refused, T(1), what="the framed listener to close")

    # health checks do not hold the drain: keep polling while the client answers the close
    p.send_close(1001)
    p.expect_eof(T(5))
    t0 = time.monotonic()
    answers = []
    while srv.running() and time.monotonic() - t0 < T(3):
        try:
            answers.append(http_get(port, "/healthz", T(2)).status)
        except (OSError, AssertionError):
            pass  # the listener closed at the drain's end
    code = srv.wait_exit(T(3))
    assert code == 0, f"exit {code}\n{srv.tail()}"
    assert time.monotonic() - t0 < T(1.5), "health checks delayed the end of the drain"
    assert set(answers) <= {503}, answers
    c = srv.close_lines(p.addr)
    assert len(c) == 1 and c[0]["reason"] == "shutdown" and c[0].get("code") == "1001", c
    assert srv.summary() is not None


def test_drain_deadline_force_closes_a_silent_ws_client(start_server, ws_peers):
    srv = start_server("--drain-timeout", "1", app="demo", ws=WS_ANY, frame="off")
    p = held_client(srv, ws_peers)
    t0 = time.monotonic()
    srv.signal(signal.SIGINT)
    f = p.recv_frame(T(2))
    assert f.opcode == OP_CLOSE and f.close_code == 1001, f
    code = srv.wait_exit(T(4))
    elapsed = time.monotonic() - t0
    assert code == 0, f"exit {code}\n{srv.tail()}"
    assert 0.9 <= elapsed <= T(2.5), f"exit {elapsed:.2f}s after SIGINT"
    assert p.wait_closed(T(2)) in ("eof", "reset")
    c = srv.close_lines(p.addr)
    assert len(c) == 1 and c[0]["reason"] == "shutdown_timeout" and c[0]["level"] == "WARN", c
    srv.wait_for_line(r" WARN shutdown: deadline passed, forcing count=1(\s|$)", 0)


def test_drain_does_not_wait_for_the_fin_of_a_client_that_answered(start_server, ws_peers):
    """A client that answers 1001 but keeps its side of TCP open is done with: the server
    closes TCP at once (RFC 6455 section 7.1.1), so the drain ends without the deadline."""
    srv = start_server("--drain-timeout", "10", app="demo", ws=WS_ANY, frame="off")
    p = held_client(srv, ws_peers)
    t0 = time.monotonic()
    srv.signal(signal.SIGINT)
    f = p.recv_frame(T(2))
    assert f.opcode == OP_CLOSE and f.close_code == 1001, f
    p.send_close(1001)
    p.expect_eof(T(3), close=False)  # the server's FIN; ours never comes
    code = srv.wait_exit(T(5))
    elapsed = time.monotonic() - t0
    assert code == 0, f"exit {code}\n{srv.tail()}"
    assert elapsed < T(2), f"exit {elapsed:.2f}s after SIGINT"
    c = srv.close_lines(p.addr)
    assert len(c) == 1 and c[0]["reason"] == "shutdown" and c[0].get("code") == "1001", c
    p.close()


@pytest.mark.parametrize("first,second,code", [
    (signal.SIGINT, signal.SIGINT, 130),
    (signal.SIGTERM, signal.SIGTERM, 143),
    (signal.SIGINT, signal.SIGTERM, 143),
    (signal.SIGTERM, signal.SIGINT, 130),
], ids=["int_int", "term_term", "int_term", "term_int"])
def test_second_signal_forces_exit(start_server, ws_peers, first, second, code):
    srv = start_server(app="demo", ws=WS_ANY)
    p = held_client(srv, ws_peers)
    srv.signal(first)
    f = p.recv_frame(T(2))
    assert f.opcode == OP_CLOSE and f.close_code == 1001, f
    assert srv.running()
    # during the drain, /healthz says so
    assert http_get(srv.ws_port, "/healthz", T(5)).status == 503
    t0 = time.monotonic()
    srv.signal(second)
    got = srv.wait_exit(T(5))
    elapsed = time.monotonic() - t0
    assert got == code, f"exit {got}\n{srv.tail()}"
    assert elapsed < T(1.0), f"exit took {elapsed:.2f}s after the second signal"
    assert p.wait_closed(T(2)) in ("eof", "reset")
    srv.wait_for_line(r" WARN shutdown: forced signal=%s(\s|$)" % signal.Signals(second).name, 0)
    c = srv.close_lines(p.addr)
    assert len(c) == 1 and c[0]["reason"] == "forced" and c[0]["level"] == "WARN", c


def test_sigint_with_idle_ws_clients_and_a_half_upgraded_one(start_server, ws_peers):
    """Idle upgraded clients each get 1001 and answer; a connection still in its upgrade
    request is closed by the drain; the drain ends with the last of them, exit 0."""
    srv = start_server(app="echo", ws=WS_ANY, frame="off")
    ps = [ws_peers(srv.ws_port) for _ in range(5)]
    for p in ps:
        assert p.request(b"x") == b"x"
    half = socket.create_connection((HOST, srv.ws_port), timeout=T(5))
    half_addr = "%s:%d" % half.getsockname()
    half.sendall(ws_upgrade_request(srv.ws_port)[:20])
    try:
        srv.signal(signal.SIGINT)
        for p in ps:
            f = p.expect_close(T(5))  # answers it and waits for the server's FIN
            assert f.close_code == 1001 and f.close_reason == b"going away", f
        half.settimeout(T(5))
        try:
            while half.recv(4096):
                pass
        except ConnectionResetError:
            pass
    finally:
        half.close()
    assert srv.wait_exit(T(5)) == 0, srv.tail()
    for p in ps:
        c = srv.close_lines(p.addr)
        assert len(c) == 1 and c[0]["reason"] == "shutdown" and c[0].get("code") == "1001", c
    assert len(srv.close_lines(half_addr)) == 1
    summ = srv.summary()
    assert summ["connections"] == 6 and summ["messages_in"] == summ["messages_out"] == 5


@pytest.mark.parametrize("how", ["deadline", "second_signal"])
def test_stalled_ws_reader_during_drain(start_server, how):
    """A WebSocket client that never reads holds owed replies: the drain cannot flush them
    (nor send its 1001), so the deadline (or a second signal) force-closes it; exit 0 (or
    130), one WARN close line."""
    srv = start_server("--drain-timeout", "1", app="echo", ws=WS_ANY, frame="off")
    hog = socket.create_connection((HOST, srv.ws_port), timeout=T(5))
    addr = "%s:%d" % hog.getsockname()
    try:
        hog.sendall(ws_upgrade_request(srv.ws_port))
        r = read_http_response(hog, T(5))
        assert r.status == 101, r
        hog.setblocking(False)
        chunk = memoryview(ws_frame(OP_BINARY, b"h" * (1 << 20)) * 4)
        off = sent = 0
        last = time.monotonic()
        deadline = last + T(30)
        while time.monotonic() - last < T(1.0):
            assert time.monotonic() < deadline and sent < 500 << 20, "the server never stalled"
            _, w, _ = select_mod.select([], [hog], [], 0.1)
            if not w:
                continue
            try:
                k = hog.send(chunk[off:])
            except BlockingIOError:
                continue
            sent += k
            off = (off + k) % len(chunk)
            last = time.monotonic()
        t0 = time.monotonic()
        srv.signal(signal.SIGINT)
        if how == "deadline":
            code = srv.wait_exit(T(3))
            elapsed = time.monotonic() - t0
            assert code == 0, srv.tail()
            assert 0.9 <= elapsed <= T(2.0), f"exit {elapsed:.2f}s after SIGINT"
            srv.wait_for_line(r" WARN shutdown: deadline passed, forcing count=1(\s|$)", 0)
            want = "shutdown_timeout"
        else:
            srv.wait_for_line(r" INFO shutdown: draining ", T(2))
            srv.signal(signal.SIGINT)
            code = srv.wait_exit(T(2))
            assert code == 130, srv.tail()
            assert time.monotonic() - t0 < T(1.0)
            want = "forced"
    finally:
        hog.close()
    c = srv.close_lines(addr)
    assert len(c) == 1, srv.tail()
    assert c[0]["reason"] == want and c[0]["level"] == "WARN", c[0]["line"]


def test_sigint_mid_fragmented_message(start_server, ws_peers):
    """A client half-way through a fragmented message at SIGINT gets 1001; the unfinished
    message is never delivered (messages_in counts only the complete one before it)."""
    srv = start_server(app="echo", ws=WS_ANY, frame="off")
    p = ws_peers(srv.ws_port)
    assert p.request(b"whole") == b"whole"
    p.send_frame(OP_TEXT, b"first half", fin=False)
    p.send_frame(OP_PING, b"sync")
    f = p.recv_frame(T(5))
    assert f.opcode == OP_PONG, f
    srv.signal(signal.SIGINT)
    f = p.expect_close(T(5))
    assert f.close_code == 1001 and f.close_reason == b"going away", f
    assert srv.wait_exit(T(5)) == 0, srv.tail()
    c = srv.close_lines(p.addr)
    assert len(c) == 1 and c[0]["reason"] == "shutdown" and c[0].get("code") == "1001", c
    summ = srv.summary()
    assert summ["messages_in"] == summ["messages_out"] == 1, summ["line"]


def test_sigint_with_500_idle_ws_clients(start_server):
    """Every one of 500 idle upgraded clients gets 1001 "going away" at once; as they answer,
    the drain ends with the last of them: exit 0, one shutdown close line each."""
    n = 500
    srv = start_server(app="echo", ws=WS_ANY, frame="off")
    port = srv.ws_port
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection((HOST, port), timeout=T(10))
            s.sendall(ws_upgrade_request(port))
            socks.append(s)
        for s in socks:
            r = read_http_response(s, T(10))
            assert r.status == 101 and r.rest == b"", r
        t0 = time.monotonic()
        srv.signal(signal.SIGINT)
        sel = selectors.DefaultSelector()
        bufs = {}
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            bufs[s] = b""
        closes = {}
        eofs = set()
        deadline = t0 + T(10)
        while len(eofs) < n:
            assert time.monotonic() < deadline, (
                f"{len(closes)} closes and {len(eofs)} FINs of {n} after {T(10):.0f}s")
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                data = s.recv(4096)
                if not data:
                    eofs.add(s)
                    sel.unregister(s)
                    continue
                bufs[s] += data
                f, used = ws_parse_frame(bufs[s])
                if f is not None and s not in closes:
                    bufs[s] = bufs[s][used:]
                    closes[s] = f
                    s.setblocking(True)
                    s.sendall(ws_frame(OP_CLOSE, ws_close_payload(f.close_code)))
                    s.setblocking(False)
                assert not bufs[s] or s not in closes, f"bytes after the close: {bufs[s][:40]!r}"
        sel.close()
        bad = [f for f in closes.values()
               if f.opcode != OP_CLOSE or f.close_code != 1001 or f.close_reason != b"going away"]
        assert len(closes) == n and not bad, bad[:3]
    finally:
        for s in socks:
            s.close()
    assert srv.wait_exit(T(5)) == 0, srv.tail()
    assert time.monotonic() - t0 < T(5)
    cl = srv.close_lines()
    assert len(cl) == n and {c["reason"] for c in cl} == {"shutdown"}, srv.tail()
    assert srv.summary()["connections"] == n


# --------------------------------------------------------------------------------------
# Idle timeout: ping after the timeout, close if nothing comes within a second timeout
# --------------------------------------------------------------------------------------
IDLE = 1.0


@pytest.fixture
def idle_srv(start_server):
    return start_server("--idle-timeout", str(IDLE), app="echo", ws=WS_ANY, frame="off")


def test_idle_peer_that_answers_pings_stays_open(idle_srv, ws_peers):
    p = ws_peers(idle_srv.ws_port)
    assert p.request("start") == "start"
    t0 = time.monotonic()
    pings = []
    while len(pings) < 2:
        f = p.recv_frame(T(IDLE) + 2)
        assert f.opcode == OP_PING, f"expected a keep-alive ping, got {f!r}"
        pings.append(time.monotonic() - t0)
        p.send_frame(OP_PONG, f.payload)
        t0 = time.monotonic()
    for dt in pings:
        assert 0.8 * IDLE <= dt <= T(IDLE) + 1.0, f"ping {dt:.2f}s after the last activity"
    assert p.request("still open") == "still open"
    p.send_close(1000)
    assert p.expect_close(T(5), reply=False).close_code == 1000
    p.expect_eof(T(5))
    c = idle_srv.wait_close_line(p.addr, T(5))
    assert c["reason"] == "normal", c["line"]


def test_idle_peer_that_never_answers_is_closed(idle_srv, ws_peers):
    p = ws_peers(idle_srv.ws_port)
    assert p.request("start") == "start"
    t0 = time.monotonic()
    f = p.recv_frame(T(IDLE) + 2)
    t_ping = time.monotonic() - t0
    assert f.opcode == OP_PING, f
    assert 0.8 * IDLE <= t_ping <= T(IDLE) + 1.0, f"ping {t_ping:.2f}s after the last activity"
    # we stay silent: after a second timeout, close 1001, then TCP
    f = p.recv_frame(T(IDLE) + 2)
    t_close = time.monotonic() - t0
    assert f.opcode == OP_CLOSE and f.close_code == 1001, f
    assert 1.8 * IDLE <= t_close <= 2 * T(IDLE) + 1.5, f"closed {t_close:.2f}s after activity"
    # "close frame 1001 if the socket is writable, then TCP": a peer silent through the
    # ping and the second timeout is not waited for again (no close-handshake linger)
    t1 = time.monotonic()
    how = p.wait_closed(T(8))
    t_tcp = time.monotonic() - t1
    assert how in ("eof", "reset")
    assert t_tcp <= T(1.0), (
        f"TCP closed {t_tcp:.2f}s after the 1001 close frame (a lingering wait for a peer "
        f"already silent through the ping and the second timeout)")
    c = idle_srv.wait_close_line(p.addr, T(5))
    assert c["reason"] == "idle_timeout" and c["level"] == "WARN", c["line"]
    assert c.get("code") == "1001", c["line"]


@pytest.mark.parametrize("activity", ["messages", "pongs"])
def test_any_received_byte_is_activity(idle_srv, ws_peers, activity):
    """A peer sending something every 0.3 s is never pinged nor closed (unsolicited pongs
    count as activity too)."""
    p = ws_peers(idle_srv.ws_port)
    t_end = time.monotonic() + 2.5 * IDLE
    n = 0
    while time.monotonic() < t_end:
        if activity == "messages":
            assert p.request(b"tick%d" % n) == b"tick%d" % n
        else:
            p.send_frame(OP_PONG, b"tick")
        n += 1
        wait_until = time.monotonic() + 0.3 * IDLE
        while time.monotonic() < wait_until:
            assert not p.closed_by_server(), "closed though active"
            if p.buf or select_readable(p.sock, 0.02):
                raise AssertionError(f"a frame while active (a ping?): {p.recv_frame(T(2))!r}")
    assert p.request("done") == "done"
    c = idle_srv.close_lines(p.addr)
    assert not c, c


def select_readable(sock, timeout):
    r, _, _ = select_mod.select([sock], [], [], timeout)
    return bool(r)
