# SPDX-License-Identifier: MIT
"""Layer 50: graceful shutdown (SPEC C4; section 4 "The drain, exactly")."""

import selectors
import signal
import socket
import time

import pytest

from conftest import HOST, T, frame, parse_line, server_socket_count, summary_of, unframe, \
    wait_for_condition


PAD = b"p" * 8000


def msg_for(client, seq, pad=0):
    # Already minified, so the demo app's reply must be byte-identical.
    return b'{"client":%d,"seq":%d,"amount":10,"card":"1213212312","terminal":"ABC"%s}' % (
        client, seq, b',"pad":"' + PAD[:pad] + b'"' if pad else b"")


class PipeliningClient:
    """Sends an endless (bounded) stream of unique requests, at most `window` unanswered,
    and checks every reply against the request it answers, in order."""

    def __init__(self, idx, port, window=64, cap=200_000, pad=0):
        self.idx = idx
        self.pad = pad
        self.sock = socket.create_connection((HOST, port), timeout=T(10))
        self.sock.setblocking(False)
        self.addr = "%s:%d" % self.sock.getsockname()
        self.window = window
        self.cap = cap
        self.sent = 0          # messages fully queued to the socket
        self.out = b""
        self.inbuf = b""
        self.replies = 0
        self.mismatch = None
        self.eof = False
        self.reset = None
        self.unsent_at_eof = None

    def want_write(self):
        return not self.eof and (self.out or (self.sent - self.replies < self.window
                                              and self.sent < self.cap))

    def on_writable(self):
        if not self.out:
            n = min(self.window - (self.sent - self.replies), self.cap - self.sent)
            self.out = b"".join(frame(msg_for(self.idx, self.sent + i, self.pad))
                                for i in range(n))
            self.sent += n
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
            self.unsent_at_eof = len(self.out) > 0 or self.sent < self.cap
            assert not self.inbuf or self.mismatch, "EOF inside a reply"
            return
        self.inbuf += data
        msgs, self.inbuf = unframe(self.inbuf)
        for m in msgs:
            if self.mismatch is None and m != msg_for(self.idx, self.replies, self.pad):
                self.mismatch = (self.replies, m[:200])
            self.replies += 1


@pytest.mark.parametrize("app,pad", [("demo", 0), ("echo", 8000)], ids=["demo", "echo_8k"])
def test_sigint_mid_stream_50_clients(start_server, app, pad):
    srv = start_server(app=app)
    n_clients = 50
    clients = [PipeliningClient(i, srv.port, pad=pad) for i in range(n_clients)]
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
            assert now < deadline, (
                f"clients still open after {T(40):.0f}s: "
                f"{sorted(active)[:10]}; sigint_at={sigint_at}\n{srv.tail()}")
            if sigint_at is None and (
                    all(c.replies >= 20 for c in clients) and now - started > 0.3):
                srv.signal(signal.SIGINT)
                sigint_at = now
            if sigint_at is None and now - started > T(15):
                pytest.fail("the 50 clients did not all get replies within "
                            f"{T(15):.0f}s: {[c.replies for c in clients]}")
            for key, events in sel.select(timeout=0.1):
                c = key.data
                if events & selectors.EVENT_READ:
                    c.on_readable()
                if events & selectors.EVENT_WRITE and not c.eof and not c.reset:
                    c.on_writable()
                if c.eof or c.reset:
                    sel.unregister(c.sock)
                    c.sock.close()  # everything read: a clean close (FIN)
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
    assert all(c.eof for c in clients)
    # it really was mid-stream: clients still had requests to send when the server left
    assert sum(1 for c in clients if c.unsent_at_eof) >= n_clients // 2

    summ = srv.summary()
    assert summ is not None, srv.tail()
    total = sum(c.replies for c in clients)
    print(f"replies={total} sent={sum(c.sent for c in clients)} "
          f"unsent_at_eof={sum(1 for c in clients if c.unsent_at_eof)} "
          f"drain={exit_at - sigint_at:.3f}s summary: {summ['line']}")
    assert summ["connections"] == n_clients
    assert summ["messages_in"] == summ["messages_out"] == total, (
        f"received {total} replies in all; summary: {summ['line']}")
    closes = srv.close_lines()
    assert len(closes) == n_clients
    assert {c["peer"] for c in closes} == {c.addr for c in clients}
    bad = [c["line"] for c in closes if c["reason"] != "shutdown" or c["level"] != "INFO"]
    assert not bad, "\n".join(bad[:5])
    drain = srv.wait_for_line(r" INFO shutdown: draining signal=SIGINT connections=(\d+)", 0)
    assert int(drain.group(1)) == n_clients
    assert not [l for l in srv.lines() if "deadline passed" in l]


def hold_drain_open(srv, peers):
    """A client that got an answer and then never closes its side."""
    p = peers(srv.port)
    assert p.request(b'{"hold":"open"}') == b'{"hold":"open"}'
    return p


def test_client_that_never_closes_hits_drain_deadline(start_server, peers):
    srv = start_server("--drain-timeout", "2")
    p = hold_drain_open(srv, peers)
    t0 = time.monotonic()
    srv.signal(signal.SIGINT)
    # the server's FIN arrives at once (the drain half-closes framed connections)...
    assert p.recv(T(1.5)) is None, "no FIN from the server at the start of the drain"
    fin_at = time.monotonic() - t0
    # ...while we keep our side open until the deadline forces the close
    code = srv.wait_exit(T(3) + 1)
    elapsed = time.monotonic() - t0
    assert code == 0, f"exit {code}\n{srv.tail()}"
    assert fin_at < T(1.0)
    assert 1.9 <= elapsed <= T(3.0), f"exit {elapsed:.2f}s after SIGINT"
    srv.wait_for_line(r" INFO shutdown: draining signal=SIGINT connections=1 deadline_ms=2000",
                      0)
    srv.wait_for_line(r" WARN shutdown: deadline passed, forcing count=1(\s|$)", 0)
    c = srv.close_lines(p.addr)
    assert len(c) == 1, srv.tail()
    assert c[0]["reason"] == "shutdown_timeout" and c[0]["level"] == "WARN", c[0]["line"]
    summ = srv.summary()
    assert summ and summ["connections"] == 1 and summ["messages_in"] == 1 \
        and summ["messages_out"] == 1, srv.tail()


@pytest.mark.parametrize("first,second,code", [
    (signal.SIGINT, signal.SIGINT, 130),
    (signal.SIGTERM, signal.SIGTERM, 143),
    (signal.SIGINT, signal.SIGTERM, 143),
    (signal.SIGTERM, signal.SIGINT, 130),
], ids=["int_int", "term_term", "int_term", "term_int"])
def test_second_signal_forces_exit(start_server, peers, first, second, code):
    srv = start_server()
    p = hold_drain_open(srv, peers)
    srv.signal(first)
    srv.wait_for_line(r" INFO shutdown: draining signal=%s connections=1"
                      % signal.Signals(first).name, T(2))
    assert p.recv(T(2)) is None, "no FIN from the server during the drain"
    assert srv.running()
    t0 = time.monotonic()
    srv.signal(second)
    got = srv.wait_exit(T(5))
    elapsed = time.monotonic() - t0
    assert got == code, f"exit {got}\n{srv.tail()}"
    assert elapsed < T(1.0), f"exit took {elapsed:.2f}s after the second signal"
    srv.wait_for_line(r" WARN shutdown: forced signal=%s(\s|$)" % signal.Signals(second).name, 0)
    c = srv.close_lines(p.addr)
    assert len(c) == 1, srv.tail()
    assert c[0]["reason"] == "forced" and c[0]["level"] == "WARN", c[0]["line"]


def test_drain_timeout_zero_force_closes_at_once(start_server, peers):
    srv = start_server("--drain-timeout", "0")
    p = hold_drain_open(srv, peers)
    t0 = time.monotonic()
    srv.signal(signal.SIGINT)
    code = srv.wait_exit(T(5))
    elapsed = time.monotonic() - t0
    assert code == 0, f"exit {code}\n{srv.tail()}"
    assert elapsed < T(1.0), f"exit took {elapsed:.2f}s with --drain-timeout 0"
    assert p.wait_closed(T(2)) in ("eof", "reset")
    c = srv.close_lines(p.addr)
    assert len(c) == 1, srv.tail()
    assert c[0]["reason"] == "shutdown_timeout" and c[0]["level"] == "WARN", c[0]["line"]
    srv.wait_for_line(r" WARN shutdown: deadline passed, forcing count=1(\s|$)", 0)


def test_new_connections_refused_during_drain(start_server, peers):
    srv = start_server()
    p = hold_drain_open(srv, peers)
    srv.signal(signal.SIGINT)
    srv.wait_for_line(r" INFO shutdown: draining ", T(2))
    assert srv.running()

    def refused():
        try:
            s = socket.create_connection((HOST, srv.port), timeout=T(2))
        except ConnectionRefusedError:
            return True
        s.close()
        return False

    wait_for_condition(refused, T(0.5), what="the framed listener to close")
    # still draining (our client holds it open), still refusing
    assert srv.running()
    assert refused()
    p.close()
    assert srv.wait_exit(T(5)) == 0
    c = srv.close_lines(p.addr)
    assert len(c) == 1 and c[0]["reason"] == "shutdown", srv.tail()


def test_drain_answers_requests_already_sent(start_server, peers):
    """Requests the server has read are answered and flushed before its FIN."""
    srv = start_server(app="echo")
    p = peers(srv.port)
    n = 300
    msgs = [b"%06d" % i + b"." * 1000 for i in range(n)]
    p.send_raw(b"".join(frame(m) for m in msgs))
    assert p.recv() == msgs[0]  # the server is reading our stream
    srv.signal(signal.SIGINT)
    got = [msgs[0]] + p.expect_eof(T(10))
    assert got == msgs[: len(got)]
    p.close()
    assert srv.wait_exit(T(10)) == 0
    summ = srv.summary()
    assert summ["messages_in"] == summ["messages_out"] == len(got), (len(got), summ["line"])
    assert [parse_line(l)["reason"] for l in srv.lines() if " conn: closed" in l] == ["shutdown"]
    assert summary_of(srv.lines()[-1:]) is not None


def test_drain_with_every_kind_of_client(start_server, peers):
    """Idle, mid-frame, half-closed, resetting and well-behaved clients at SIGINT: the
    drain ends as soon as the last one is gone (well before the deadline), one close line
    each, exit 0."""
    srv = start_server()
    idle = peers(srv.port)
    midframe = peers(srv.port)
    halfclosed = peers(srv.port)
    resetter = peers(srv.port)
    polite = peers(srv.port)
    for p in (idle, midframe, halfclosed, resetter, polite):
        assert p.request(b"[0]") == b"[0]"
    midframe.send_raw(frame(b'{"never":"finished"}')[:5])
    halfclosed.send(b"[1]")
    halfclosed.shutdown_wr()
    assert halfclosed.expect_eof() == [b"[1]"]
    srv.wait_close_line(halfclosed.addr, T(5))
    srv.signal(signal.SIGINT)
    srv.wait_for_line(r" INFO shutdown: draining signal=SIGINT connections=4 ", T(2))
    for p in (idle, midframe, polite):
        assert p.recv(T(2)) is None, f"no FIN for {p.addr}"
    t0 = time.monotonic()
    resetter.reset()
    idle.close()
    midframe.close()
    polite.close()
    assert srv.wait_exit(T(3)) == 0, srv.tail()
    assert time.monotonic() - t0 < T(1.0), "the drain did not end with its last connection"
    reasons = {p.addr: [c["reason"] for c in srv.close_lines(p.addr)]
               for p in (idle, midframe, halfclosed, resetter, polite)}
    assert reasons[halfclosed.addr] == ["peer_eof"], reasons
    assert reasons[idle.addr] == ["shutdown"], reasons
    assert reasons[polite.addr] == ["shutdown"], reasons
    assert len(reasons[midframe.addr]) == 1 and reasons[midframe.addr][0] in (
        "shutdown", "truncated"), reasons
    assert len(reasons[resetter.addr]) == 1 and reasons[resetter.addr][0] in (
        "shutdown", "peer_reset"), reasons
    assert not [l for l in srv.lines() if "deadline passed" in l]
    summ = srv.summary()
    assert summ["connections"] == 5 and summ["messages_in"] == summ["messages_out"] == 6


def test_connection_accepted_but_silent_at_sigint(start_server):
    """Connections that never sent a byte get FIN at the drain and close cleanly."""
    srv = start_server()
    base = server_socket_count(srv.pid)
    socks = [socket.create_connection((HOST, srv.port), timeout=T(5)) for _ in range(10)]
    try:
        wait_for_condition(lambda: server_socket_count(srv.pid) >= base + 10, T(5),
                           what="the server to accept the 10 connections")
        srv.signal(signal.SIGINT)
        srv.wait_for_line(r" INFO shutdown: draining signal=SIGINT connections=10 ", T(2))
        for s in socks:
            s.settimeout(T(2))
            assert s.recv(10) == b"", "expected the server's FIN"
    finally:
        for s in socks:
            s.close()
    assert srv.wait_exit(T(3)) == 0, srv.tail()
    closes = srv.close_lines()
    assert len(closes) == 10 == srv.summary()["connections"]
    assert all(c["reason"] == "shutdown" and c["level"] == "INFO" for c in closes), closes
