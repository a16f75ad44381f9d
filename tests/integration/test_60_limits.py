# SPDX-License-Identifier: MIT
"""Layer 60: limits (SPEC C5 bounded memory, C6 limits; section 4 "Idle timeout",
"More flags")."""

import select
import signal
import socket
import struct
import time

import pytest

from conftest import HOST, SANITIZED, T, frame, socket_is_closed_by_server

MiB = 1 << 20


def test_stalled_reader_keeps_server_memory_bounded(start_server, peers):
    srv = start_server("--prefix-bytes", "4", app="echo")
    rss_before = srv.rss_kib()
    hog = socket.create_connection((HOST, srv.port), timeout=T(5))
    hog.setblocking(False)
    msg = frame(b"x" * MiB, 4)
    chunk = memoryview(msg * 8)  # 8 MiB of whole frames, sent over and over
    target = 500 * MiB           # what a server that never stops reading would take
    stall_after = T(1.5)         # no progress this long: the server stopped reading
    deadline = time.monotonic() + T(30)
    sent = 0
    off = 0
    last_progress = time.monotonic()
    stalled = False
    try:
        while sent < target:
            now = time.monotonic()
            assert now < deadline, f"sent {sent // MiB} MiB without stalling in {T(30):.0f}s"
            if now - last_progress > stall_after:
                stalled = True
                break
            _, w, _ = select.select([], [hog], [], 0.1)
            if not w:
                continue
            try:
                k = hog.send(chunk[off:])
            except BlockingIOError:
                continue
            if k:
                sent += k
                off = (off + k) % len(chunk)
                last_progress = time.monotonic()
        assert stalled, (f"the server read all {sent // MiB} MiB from a client that never "
                         f"reads its replies")
        # While the hog is stalled, another client is served.
        other = peers(srv.port, prefix=4)
        for i in range(5):
            assert other.request(b"ping %d" % i, T(5)) == b"ping %d" % i
        rss_after = srv.rss_kib()
        grown_mib = (rss_after - rss_before) / 1024
        print(f"sent {sent / MiB:.1f} MiB before stalling; RSS {rss_before // 1024} -> "
              f"{rss_after // 1024} MiB")
        limit = 100
        assert grown_mib < limit, (
            f"server RSS grew by {grown_mib:.0f} MiB (from {rss_before // 1024} to "
            f"{rss_after // 1024} MiB) after a client sent {sent // MiB} MiB and read nothing")
        if not SANITIZED:
            assert rss_after / 1024 < limit, f"server RSS {rss_after // 1024} MiB"
        assert srv.close_lines() == []
    finally:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        addr = "%s:%d" % hog.getsockname()
        hog.close()
    c = srv.wait_close_line(addr, T(5))
    assert c["reason"] in ("peer_reset", "peer_eof", "truncated"), c["line"]
    assert c["level"] == "INFO"


def test_idle_timeout_closes_silent_not_active(start_server, peers):
    srv = start_server("--idle-timeout", "1")
    t_connect = time.monotonic()
    silent = peers(srv.port)
    talker = peers(srv.port)
    once = peers(srv.port)
    assert once.request(b'{"once":true}') == b'{"once":true}'
    t_once = time.monotonic()
    closed_at = {}
    deadline = time.monotonic() + T(3) + 0.5
    i = 0
    next_talk = time.monotonic()
    # The talker speaks every 0.25 s for 2.5 s, more than twice the idle timeout.
    while time.monotonic() < t_connect + 2.5 or len(closed_at) < 2:
        now = time.monotonic()
        assert now < deadline, (f"silent connections not closed by {T(3) + 0.5:.1f}s: "
                                f"closed={closed_at}\n{srv.tail()}")
        if now >= next_talk and now < t_connect + 2.5:
            assert talker.request(b"[%d]" % i, T(2)) == b"[%d]" % i
            i += 1
            next_talk = now + 0.25
        for name, p in (("silent", silent), ("once", once)):
            if name not in closed_at and socket_is_closed_by_server(p.sock):
                closed_at[name] = time.monotonic()
                p.close()  # the server may linger until we close our side too
        time.sleep(0.02)
    assert 0.9 <= closed_at["silent"] - t_connect <= T(2.5), closed_at["silent"] - t_connect
    assert 0.9 <= closed_at["once"] - t_once <= T(2.5), closed_at["once"] - t_once
    for p in (silent, once):
        c = srv.wait_close_line(p.addr, T(2))
        assert c["reason"] == "idle_timeout" and c["level"] == "WARN", c["line"]
    assert srv.close_lines(talker.addr) == []
    assert talker.request(b'"still open"') == b'"still open"'


def test_max_connections(start_server, peers):
    srv = start_server("--max-connections", "3")
    first = [peers(srv.port) for _ in range(3)]
    for i, p in enumerate(first):
        assert p.request(b"[%d]" % i) == b"[%d]" % i
    fourth = peers(srv.port)
    assert fourth.wait_closed(T(5)) in ("eof", "reset")
    fourth.close()  # the server may linger until we close our side too
    c = srv.wait_close_line(fourth.addr, T(5))
    assert c["reason"] == "too_many_connections", c["line"]
    assert c["level"] == "WARN", c["line"]
    for i, p in enumerate(first):
        assert p.request(b'{"still":%d}' % i) == b'{"still":%d}' % i
        assert srv.close_lines(p.addr) == []
    # A freed slot can be used again.
    first[0].close()
    assert srv.wait_close_line(first[0].addr, T(5))["reason"] == "peer_eof"
    again = peers(srv.port)
    assert again.request(b'"again"') == b'"again"'


def stall(sock, chunk, stall_after, deadline, budget):
    """Sends chunk (a memoryview of whole frames) over and over on a non-blocking socket,
    never reading, until nothing more is accepted for stall_after seconds. Returns the
    number of bytes sent; fails if the budget is reached or the deadline passes first."""
    sent = 0
    off = 0
    last_progress = time.monotonic()
    while True:
        now = time.monotonic()
        assert now < deadline, f"sent {sent // MiB} MiB without stalling"
        assert sent < budget, f"the server read {sent // MiB} MiB from a client that never reads"
        if now - last_progress > stall_after:
            return sent
        _, w, _ = select.select([], [sock], [], 0.1)
        if not w:
            continue
        try:
            k = sock.send(chunk[off:])
        except BlockingIOError:
            continue
        sent += k
        off = (off + k) % len(chunk)
        last_progress = time.monotonic()


def test_stalled_reader_resumes_when_it_reads(start_server):
    """Back-pressure pauses reading; once the client reads, the server resumes and every
    reply arrives, in order."""
    srv = start_server("--prefix-bytes", "4", app="echo")
    n = 64
    msgs = [bytes([i]) * MiB for i in range(n)]
    stream = b"".join(frame(m, 4) for m in msgs)
    s = socket.create_connection((HOST, srv.port), timeout=T(5))
    s.setblocking(False)
    addr = "%s:%d" % s.getsockname()
    off = 0
    last_progress = time.monotonic()
    deadline = time.monotonic() + T(30)
    # Phase 1: send without reading until the server stops taking bytes.
    while off < len(stream):
        assert time.monotonic() < deadline
        if time.monotonic() - last_progress > T(1.0):
            break
        _, w, _ = select.select([], [s], [], 0.1)
        if w:
            try:
                off += s.send(stream[off:off + 4 * MiB])
                last_progress = time.monotonic()
            except BlockingIOError:
                pass
    assert off < len(stream), "the server read 64 MiB from a client that never reads"
    # Phase 2: read everything while sending the rest, then half-close.
    buf = bytearray()
    got = 0
    shut = False
    while True:
        assert time.monotonic() < deadline, f"{got} of {n} replies after {T(30):.0f}s"
        want_w = [s] if not shut else []
        r, w, _ = select.select([s], want_w, [], 0.2)
        if w:
            if off < len(stream):
                try:
                    off += s.send(stream[off:off + 4 * MiB])
                except BlockingIOError:
                    pass
            else:
                s.shutdown(socket.SHUT_WR)
                shut = True
        if r:
            data = s.recv(8 * MiB)
            if not data:
                break
            buf += data
            while len(buf) >= 4:
                (ln,) = struct.unpack_from(">I", buf)
                if len(buf) < 4 + ln:
                    break
                assert ln == MiB and buf[4] == got and buf[4 + ln - 1] == got, \
                    f"reply {got} is not request {got}"
                del buf[:4 + ln]
                got += 1
    s.close()
    assert got == n and not buf
    c = srv.wait_close_line(addr, T(5))
    assert c["reason"] == "peer_eof", c["line"]


@pytest.mark.parametrize("how", ["deadline", "second_signal"])
def test_stalled_reader_during_drain(start_server, how):
    """A client that never reads holds owed replies: the drain cannot flush them, so the
    deadline (or a second signal) force-closes it; exit 0 (or 130) without a crash."""
    srv = start_server("--prefix-bytes", "4", "--drain-timeout", "1", app="echo")
    hog = socket.create_connection((HOST, srv.port), timeout=T(5))
    hog.setblocking(False)
    addr = "%s:%d" % hog.getsockname()
    try:
        stall(hog, memoryview(frame(b"h" * MiB, 4) * 4), T(1.0), time.monotonic() + T(30),
              500 * MiB)
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


def test_idle_timeout_counts_every_byte(start_server, peers):
    """A client that dribbles a frame one byte every 0.3 s is active, not idle."""
    srv = start_server("--idle-timeout", "1")
    p = peers(srv.port)
    msg = frame(b'{"slow":"but alive"}')
    t0 = time.monotonic()
    for i in range(len(msg)):
        p.send_raw(msg[i:i + 1])
        assert not socket_is_closed_by_server(p.sock), \
            f"closed after {time.monotonic() - t0:.1f}s while sending a byte every 0.3 s"
        time.sleep(0.3)  # creates the condition: slower than nothing, faster than idle
        if time.monotonic() - t0 > 2.5:
            break
    p.send_raw(msg[i + 1:])
    assert time.monotonic() - t0 > 2.0
    assert p.recv(T(2)) == b'{"slow":"but alive"}'
    assert srv.close_lines(p.addr) == []


def test_more_connections_than_the_default_open_file_limit(start_server):
    """The server raises its open-file soft limit to the hard limit (SPEC section 4, More
    flags): started with a soft limit of 1024, it still serves 1100 connections."""
    import resource
    n = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 200:
        pytest.skip(f"open-file hard limit {hard} is too low for {n} connections")
    if soft != resource.RLIM_INFINITY and soft < n + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 400), hard))
    srv = start_server(nofile_soft=1024)
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection((HOST, srv.port), timeout=T(5))
            socks.append(s)
            s.sendall(frame(b"[%d]" % i))
        deadline = time.monotonic() + T(20)
        for i, s in enumerate(socks):
            s.settimeout(max(0.1, deadline - time.monotonic()))
            want = frame(b"[%d]" % i)
            got = b""
            while len(got) < len(want):
                data = s.recv(len(want) - len(got))
                assert data, f"connection {i} closed: {srv.close_lines()[:3]}"
                got += data
            assert got == want
        assert srv.close_lines() == []
        with open(f"/proc/{srv.pid}/limits") as f:
            line = next(l for l in f if l.startswith("Max open files"))
        assert line.split()[3] == line.split()[4], line
    finally:
        for s in socks:
            s.close()
    srv.wait_for_lines(r" conn: closed .*reason=peer_eof", n, T(10))
