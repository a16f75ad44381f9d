# SPDX-License-Identifier: MIT
"""Layer 90: shutdown under stress (issue 4, SPEC C1, C2, C4 and section 4 "The drain,
exactly", "Counting").

SIGINT reaches the server while about a thousand connections of both protocols are
mid-stream, while a thousand more are connecting, while some peers never read and some
never answer the close. It must exit 0 within --drain-timeout (plus slack), with one close
line per connection, the reason each kind of peer deserves, totals that add up, and no
ERROR. A smaller run under valgrind --track-fds=yes checks that nothing is leaked: no heap
block, no descriptor.

The load runs in two worker processes (one per protocol), each one selector loop over
non-blocking sockets: this file run as a script (`python3 test_90_stress.py worker JSON`).
Every wait is bounded; the file takes well under a minute on 2 cores.
"""

import collections
import errno
import json
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from conftest import (HOST, PYTHON, SANITIZED, T, WS_ANY, record_figures,  # noqa: E402
                      ws_upgrade_request)

MiB = 1 << 20


# ======================================================================================
# The worker: one protocol, many connections, one selector loop
# ======================================================================================
# Kinds of peer:
#   stream  pipelines unique requests (window of 4), checks every reply; at the server's
#           FIN / close 1001 stops, answers the close, closes once the server has
#   mute    sends 32 KiB messages and never reads (until told to finish, after the exit)
#   deaf    like stream, but never answers the close 1001 and never closes after the FIN
#   late    connects after "go" (while the drain starts): one request, then behaves well
class Conn:
    __slots__ = ("cid", "kind", "proto", "sock", "addr", "state", "out", "inbuf", "expected",
                 "seq", "replies", "requests", "outcome", "code", "status", "mask",
                 "last_progress", "stalled", "mute_sent")

    def __init__(self, cid, kind, proto):
        self.cid, self.kind, self.proto = cid, kind, proto
        self.sock = None
        self.addr = None
        self.state = "connecting"
        self.out = bytearray()
        self.inbuf = bytearray()
        self.expected = collections.deque()
        self.seq = self.replies = self.requests = 0
        self.outcome = None
        self.code = self.status = None
        self.mask = os.urandom(4)
        self.last_progress = time.monotonic()
        self.stalled = False
        self.mute_sent = 0


def _mask(payload, key):
    n = len(payload)
    if not n:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def _client_frame(c, opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + c.mask + _mask(payload, c.mask)


def _server_frames(buf):
    """Parses unmasked server frames off buf (a bytearray, consumed): [(opcode, payload)]."""
    out = []
    while len(buf) >= 2:
        n = buf[1] & 0x7F
        off = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack_from(">H", buf, 2)[0]
            off = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack_from(">Q", buf, 2)[0]
            off = 10
        if len(buf) < off + n:
            break
        out.append((buf[0] & 0x0F, bytes(buf[off:off + n])))
        del buf[:off + n]
    return out


def _framed_msgs(buf):
    out = []
    while len(buf) >= 2:
        n = struct.unpack_from(">H", buf)[0]
        if len(buf) < 2 + n:
            break
        out.append(bytes(buf[2:2 + n]))
        del buf[:2 + n]
    return out


class Worker:
    WINDOW = 4
    PAD = b"." * 48
    MUTE_MSG = 32 * 1024
    MUTE_PAYLOAD = b"m" * MUTE_MSG

    def __init__(self, cfg):
        self.cfg = cfg
        self.proto = cfg["proto"]
        self.port = cfg["port"]
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.errors = []
        self.ready = False
        self.late_started = False
        self.late_left = 0
        self.finishing = False
        self.said_connecting = False

    # -- plumbing -------------------------------------------------------------------
    def emit(self, line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def error(self, c, text):
        if len(self.errors) < 50:
            self.errors.append(f"{c.kind}#{c.cid} {c.addr}: {text}")

    def events_for(self, c):
        if c.state in ("done", "parked"):
            return 0
        ev = selectors.EVENT_READ
        if c.kind == "mute" and c.state == "open" and not self.finishing:
            ev = 0  # never reads while the server runs
        if c.state == "connecting" or c.out or (c.kind == "mute" and c.state == "open"
                                                and not c.stalled and not self.finishing):
            ev |= selectors.EVENT_WRITE
        return ev

    def update(self, c):
        ev = self.events_for(c)
        key = self.sel.get_map().get(c.sock.fileno()) if c.sock else None
        if ev == 0:
            if key is not None:
                self.sel.unregister(c.sock)
        elif key is None:
            self.sel.register(c.sock, ev, c)
        elif key.events != ev:
            self.sel.modify(c.sock, ev, c)

    def start(self, kind):
        c = Conn(len(self.conns), kind, self.proto)
        self.conns.append(c)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if kind == "mute":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        c.sock = s
        rc = s.connect_ex((HOST, self.port))
        if rc not in (0, errno.EINPROGRESS):
            self.end(c, "connect_" + errno.errorcode.get(rc, str(rc)))
            return c
        self.update(c)
        return c

    def end(self, c, outcome, close=True):
        if c.outcome is None:
            c.outcome = outcome
        if c.sock is not None and self.sel.get_map().get(c.sock.fileno()) is not None:
            self.sel.unregister(c.sock)
        if close and c.sock is not None:
            c.sock.close()
            c.state = "done"
        else:
            c.state = "parked"  # kept open on purpose (deaf)

    # -- requests ---------------------------------------------------------------------
    def request(self, c):
        payload = b"%d:%d:" % (c.cid, c.seq) + self.PAD
        c.seq += 1
        c.requests += 1
        c.expected.append(payload)
        if self.proto == "frame":
            c.out += struct.pack(">H", len(payload)) + payload
        else:
            c.out += _client_frame(c, 0x2, payload)

    def fill_window(self, c):
        if c.kind in ("stream", "deaf"):
            while len(c.expected) < self.WINDOW:
                self.request(c)

    def opened(self, c):
        c.state = "open"
        if c.kind == "late":
            if self.proto == "frame":
                self.request(c)
        elif c.kind == "mute":
            c.last_progress = time.monotonic()
        else:
            self.fill_window(c)

    # -- events -----------------------------------------------------------------------
    def on_writable(self, c):
        s = c.sock
        if c.state == "connecting":
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.end(c, "connect_" + errno.errorcode.get(err, str(err)))
                return
            c.addr = "%s:%d" % s.getsockname()
            if self.proto == "ws":
                c.state = "handshake"
                c.out += ws_upgrade_request(self.port)
            else:
                self.opened(c)
        if c.kind == "mute" and c.state == "open" and not c.out and not self.finishing:
            if self.proto == "frame":
                c.out += struct.pack(">H", self.MUTE_MSG) + self.MUTE_PAYLOAD
            else:
                c.out += _client_frame(c, 0x2, self.MUTE_PAYLOAD)
            c.requests += 1
        if c.out:
            try:
                k = s.send(c.out)
            except BlockingIOError:
                k = 0
            except (BrokenPipeError, ConnectionResetError):
                self.end(c, "reset")
                return
            if k:
                del c.out[:k]
                c.last_progress = time.monotonic()
                if c.kind == "mute":
                    c.mute_sent += k
        self.update(c)

    def on_readable(self, c):
        try:
            data = c.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except ConnectionResetError:
            self.end(c, "reset")
            return
        if not data:
            self.on_eof(c)
            return
        c.inbuf += data
        if c.state == "handshake":
            i = c.inbuf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(c.inbuf[:i])
            del c.inbuf[:i + 4]
            m = re.match(rb"HTTP/1\.1 (\d{3})", head)
            c.status = int(m.group(1)) if m else -1
            if c.status == 101:
                self.opened(c)
            else:
                c.state = "refused"  # read the body, then EOF
                c.inbuf.clear()
            self.update(c)
            if c.status != 101:
                return
        if c.state == "refused":
            c.inbuf.clear()
            return
        if self.proto == "frame":
            for msg in _framed_msgs(c.inbuf):
                self.reply(c, msg)
        else:
            for op, payload in _server_frames(c.inbuf):
                if op == 0x8:
                    c.code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 0
                    c.state = "closing"
                    if c.kind != "deaf":  # after any frame in progress: no request follows
                        c.out += _client_frame(c, 0x8, payload[:2])
                elif op in (0x1, 0x2):
                    if c.state == "closing":
                        self.error(c, "data after the close frame")
                    self.reply(c, payload)
                elif op == 0x9:
                    c.out += _client_frame(c, 0xA, payload)
        if c.state == "open":
            self.fill_window(c)
        self.update(c)

    def reply(self, c, msg):
        if not c.expected:
            self.error(c, f"unexpected reply {msg[:30]!r}")
            return
        want = c.expected.popleft()
        if msg != want:
            self.error(c, f"reply {msg[:30]!r} instead of {want[:30]!r}")
        c.replies += 1

    def on_eof(self, c):
        if c.state == "handshake":
            self.end(c, "eof_in_handshake")
        elif c.state == "refused":
            self.end(c, f"http_{c.status}")
        elif c.kind == "deaf":
            c.state = "closing"
            self.end(c, "eof", close=False)  # the FIN is never answered
        else:
            self.end(c, "eof")

    # -- phases ---------------------------------------------------------------------
    def check_ready(self):
        persistent = [c for c in self.conns if c.kind != "late"]
        for c in persistent:
            if c.state != "open":
                if c.outcome is not None:
                    raise SystemExit(f"{c.kind}#{c.cid} ended before the signal: {c.outcome}")
                return False
            if c.kind in ("stream", "deaf") and c.replies == 0:
                return False
            if c.kind == "mute" and not c.stalled:
                return False
        return True

    def late_batch(self):
        for _ in range(min(50, self.late_left)):  # 50 per turn of the loop
            self.start("late")
            self.late_left -= 1
        if not self.said_connecting and (self.late_left == 0
                                         or self.late_left <= self.cfg["late"] - 100):
            self.said_connecting = True
            self.emit("connecting")

    def finish(self):
        """After the server exited: mutes read what reached them; every socket closes."""
        self.finishing = True
        for c in self.conns:
            if c.kind == "mute" and c.sock is not None and c.state not in ("done",):
                c.sock.setblocking(True)
                c.sock.settimeout(5)
                buf = bytearray()
                how = None
                while how is None:
                    try:
                        data = c.sock.recv(1 << 20)
                    except (ConnectionResetError, socket.timeout):
                        how = "reset"
                        break
                    if not data:
                        how = "eof"
                    buf += data
                if self.proto == "frame":
                    c.replies = len(_framed_msgs(buf))
                else:
                    frames = _server_frames(buf)
                    c.replies = sum(1 for op, _ in frames if op in (0x1, 0x2))
                    codes = [p for op, p in frames if op == 0x8]
                    if codes:
                        c.code = struct.unpack(">H", codes[0][:2])[0]
                c.outcome = how
            if c.sock is not None:
                c.sock.close()

    def run(self):
        cfg = self.cfg
        for kind in ("stream", "mute", "deaf"):
            for _ in range(cfg[kind]):
                self.start(kind)
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)
        self.sel.register(stdin, selectors.EVENT_READ, None)
        deadline = time.monotonic() + cfg["timeout"]
        cmd = b""
        while True:
            if time.monotonic() > deadline:
                self.emit("error " + json.dumps("worker deadline passed"))
                return 1
            for key, ev in self.sel.select(0.05):
                c = key.data
                if c is None:
                    data = os.read(stdin, 4096)
                    cmd += data
                    if not data:
                        cmd += b"finish\n"
                    while b"\n" in cmd:
                        line, _, cmd = cmd.partition(b"\n")
                        if line == b"go":
                            self.late_started = True
                            self.late_left = cfg["late"]
                            self.late_batch()
                        elif line == b"finish":
                            self.finish()
                            self.report()
                            return 0
                    continue
                if c.state in ("done", "parked"):
                    continue
                if ev & selectors.EVENT_WRITE:
                    self.on_writable(c)
                if c.state not in ("done", "parked") and ev & selectors.EVENT_READ:
                    self.on_readable(c)
            now = time.monotonic()
            for c in self.conns:
                if c.kind == "mute" and c.state == "open" and not c.stalled:
                    if now - c.last_progress > 0.3 and c.requests > 0:
                        c.stalled = True
                        self.update(c)
                    elif c.mute_sent > 256 * MiB:
                        self.emit("error " + json.dumps("a mute peer was never stalled"))
                        return 1
            if self.late_started and self.late_left:
                self.late_batch()
            if not self.ready and self.check_ready():
                self.ready = True
                self.emit("ready")

    def report(self):
        out = {"proto": self.proto, "errors": self.errors, "conns": [
            {"kind": c.kind, "addr": c.addr, "outcome": c.outcome, "replies": c.replies,
             "requests": c.requests, "code": c.code, "status": c.status}
            for c in self.conns]}
        self.emit("result " + json.dumps(out))


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "worker":
    sys.exit(Worker(json.loads(sys.argv[2])).run())


# ======================================================================================
# The tests
# ======================================================================================
import pytest  # noqa: E402


class WorkerProc:
    def __init__(self, cfg):
        self.cfg = cfg
        self.proc = subprocess.Popen(
            [PYTHON, os.path.abspath(__file__), "worker", json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)

    def wait_for(self, word, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.cfg['proto']} worker: no {word!r} in {timeout:.0f}s")
            r, _, _ = __import__("select").select([self.proc.stdout], [], [], left)
            if not r:
                continue
            line = self.proc.stdout.readline().decode()
            if not line:
                err = self.proc.stderr.read().decode()[-3000:]
                raise AssertionError(f"{self.cfg['proto']} worker exited: {err}")
            if line.startswith("error "):
                raise AssertionError(f"{self.cfg['proto']} worker: {line}")
            if line.split(" ", 1)[0].strip() == word:
                return line

    def send(self, cmd):
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()

    def result(self, timeout):
        self.send("finish")
        line = self.wait_for("result", timeout)
        self.proc.wait(timeout)
        return json.loads(line.split(" ", 1)[1])

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def workers():
    made = []

    def start(cfg):
        w = WorkerProc(cfg)
        made.append(w)
        return w

    yield start
    for w in made:
        w.kill()


def run_stress(start_server, workers, counts, drain, wrapper=None, slow=1.0, extra_env=None):
    """Starts the echo server (both listeners), a worker per protocol with counts
    {stream, mute, deaf, late}, waits until every peer is mid-stream (mutes stalled),
    sends "go" (the late connections start) and, once they are connecting, SIGINT.
    Returns (server, exit seconds after SIGINT, {proto: worker result})."""
    srv = start_server("--drain-timeout", drain, app="echo", ws=WS_ANY, wrapper=wrapper)
    ws = {"frame": srv.port, "ws": srv.ws_port}
    procs = {}
    for proto in ("frame", "ws"):
        cfg = dict(counts, proto=proto, port=ws[proto], timeout=T(120) * slow)
        procs[proto] = workers(cfg)
    t_setup = time.monotonic()
    for w in procs.values():
        w.wait_for("ready", T(40) * slow)
    setup = time.monotonic() - t_setup
    for w in procs.values():
        w.send("go")
    for w in procs.values():
        w.wait_for("connecting", T(10) * slow)
    t0 = time.monotonic()
    srv.signal(signal.SIGINT)
    code = srv.wait_exit(drain + T(10) * slow)
    took = time.monotonic() - t0
    results = {p: w.result(T(30)) for p, w in procs.items()}
    return srv, code, took, setup, results


def stress_figures(name, srv, took, results, **extra):
    """Records what a run measured (before any check, so a failing run is measured too)."""
    summ = srv.summary() or {}
    conns = [c for r in results.values() for c in r["conns"]]
    record_figures(name, exit_after_sigint_s=round(took, 3),
                   connections=summ.get("connections"), messages_in=summ.get("messages_in"),
                   messages_out=summ.get("messages_out"),
                   replies_received=sum(c["replies"] for c in conns),
                   mute_replies_received=sum(c["replies"] for c in conns if c["kind"] == "mute"),
                   **extra)


def check_stress(srv, code, took, drain, results, counts, slack):
    assert code == 0, srv.tail()
    assert drain - 0.2 <= took <= drain + slack, f"exit {took:.2f}s after SIGINT"
    lines = srv.lines()
    assert not [l for l in lines if " ERROR " in l[:40]], "ERROR lines"
    for proto, r in results.items():
        assert not r["errors"], f"{proto}: {r['errors'][:10]}"
    # NOTE: one address may carry two connections in turn: the server closes first (the
    # TIME_WAIT is on its side), so a late client can reuse the port of a stream client that
    # the drain already closed. Each client takes the first line of its address that fits.
    closes = {}
    all_closes = srv.close_lines()
    for line in all_closes:
        closes.setdefault((line["proto"], line["peer"]), []).append(line)

    def take(key, fits):
        lines = closes.get(key, [])
        for i, line in enumerate(lines):
            if fits(line):
                return lines.pop(i)
        return lines[0] if lines else None

    known = set()
    for proto, r in results.items():
        # Late clients last: they alone may have no line, and must not take another's.
        for c in sorted(r["conns"], key=lambda c: c["kind"] == "late"):
            if c["addr"] is None:
                continue  # never connected (refused): no close line to look for
            known.add((proto, c["addr"]))
            kind = c["kind"]
            expected = {"stream": ("shutdown",), "mute": ("shutdown_timeout",),
                        "deaf": ("shutdown_timeout",)}.get(kind, ("shutdown", "bad_request"))
            line = take((proto, c["addr"]), lambda l, e=expected: l["reason"] in e)
            if kind == "stream":
                assert line and line["reason"] == "shutdown" and line["level"] == "INFO", (c, line)
                if proto == "ws":
                    assert c["code"] == 1001 and line.get("code") == "1001", (c, line)
                assert c["outcome"] == "eof", c
                assert c["replies"] >= 1 and c["requests"] - c["replies"] <= Worker.WINDOW, c
            elif kind in ("mute", "deaf"):
                assert line and line["reason"] == "shutdown_timeout", (c, line)
                assert line["level"] == "WARN", line["line"]
            else:  # late: refused at connect, or accepted and then closed properly
                if line is None:
                    # accepted by the kernel, never by the server: the listener closed with
                    # it in the backlog (reset), or it was still connecting
                    assert c["outcome"] in ("reset", "eof_in_handshake"), (c, "no close line")
                    continue
                if proto == "frame":
                    assert line["reason"] in ("shutdown",), (c, line)
                    assert c["outcome"] == "eof", c
                else:
                    # 503 while draining; upgraded just before the signal, then 1001; or
                    # still in its request when the drain ended (closed unanswered)
                    assert (c["status"] == 503 and line["reason"] == "bad_request") or (
                        c["status"] == 101 and line["reason"] == "shutdown") or (
                        c["status"] is None and line["reason"] == "shutdown"), (c, line)
    unknown = [k for k in closes if k not in known]
    assert not unknown, f"close lines for peers no worker knows: {unknown[:5]}"
    summ = srv.summary()
    assert summ is not None, srv.tail()
    assert summ["connections"] == len(all_closes), (summ, len(all_closes))
    forced = sum(counts[k] for k in ("mute", "deaf")) * 2
    srv.wait_for_line(rf" WARN shutdown: deadline passed, forcing count={forced}(\s|$)", 0)
    received = sum(c["replies"] for r in results.values() for c in r["conns"])
    mute_requests = sum(c["requests"] for r in results.values() for c in r["conns"]
                        if c["kind"] == "mute")
    mute_replies = sum(c["replies"] for r in results.values() for c in r["conns"]
                       if c["kind"] == "mute")
    out = summ["messages_out"]
    if counts["mute"] == 0:
        # every peer read everything: each message written is a reply received
        assert out == received, (out, received)
    else:
        # a mute peer's replies written to its socket may die in a reset: bounds
        assert received <= out, (
            f"the clients received {received} whole replies but the summary says "
            f"messages_out={out}: {received - out} messages written to sockets not counted")
        assert out <= received - mute_replies + mute_requests, (received, out, mute_requests)
    assert summ["messages_in"] >= out, summ


COUNTS = {"stream": 450, "mute": 20, "deaf": 30, "late": 500}


@pytest.mark.parametrize("mutes", [True, False], ids=["with_mute_peers", "all_peers_read"])
def test_sigint_under_stress(start_server, workers, mutes):
    """~1,000 connections mid-stream (450 streaming + 30 deaf per protocol, and 20 mute
    ones that never read when `with_mute_peers`), 1,000 more connecting at the signal.
    Exit 0 at the drain deadline; every connection exactly one close line with its reason
    (streamers `shutdown`, close 1001 for WebSocket; mute and deaf `shutdown_timeout`; late
    ones refused, or answered 503 / drained); summary connections = close lines;
    messages_out = replies received (exactly when every peer reads; bounded otherwise)."""
    counts = dict(COUNTS)
    if not mutes:
        counts["stream"] += counts["mute"]
        counts["mute"] = 0
    drain = 3
    srv, code, took, setup, results = run_stress(start_server, workers, counts, drain)
    outcomes = collections.Counter(f"{p}/{c['kind']}/{c['outcome']}"
                                   for p, r in results.items() for c in r["conns"])
    stress_figures("stress_sigint", srv, took, results, mutes=mutes, drain_timeout_s=drain,
                   setup_s=round(setup, 2), outcomes=dict(sorted(outcomes.items())))
    check_stress(srv, code, took, drain, results, counts, slack=T(2.0))


def test_messages_out_counts_what_force_closed_peers_received(start_server, workers):
    """Section 4 "Counting": a message that reached the peer whole was written to the
    socket, so messages_out counts it. 10 peers per protocol send 32 KiB messages and never
    read; at the drain deadline they are force-closed with a reply write in flight; after
    the exit they read what reached them: that many whole replies at most may have been
    written, so received <= messages_out (regression: a write cancelled by the forced close
    after partial progress did not count the messages it had written whole)."""
    counts = {"stream": 0, "mute": 10, "deaf": 0, "late": 0}
    drain = 1
    srv, code, took, setup, results = run_stress(start_server, workers, counts, drain)
    stress_figures("force_closed_counting", srv, took, results, peers=20)
    check_stress(srv, code, took, drain, results, counts, slack=T(2.0))


def test_sigint_under_stress_valgrind_no_leak(start_server, workers, tmp_path):
    """The same, smaller (per protocol: 30 streaming, 3 mute, 3 deaf, 30 late), under
    valgrind --track-fds=yes --leak-check=full: exit 0, no memory error, no leak, and no
    descriptor the server opened still open at exit. (A sanitizer build cannot run under
    valgrind: with ADIEU_SANITIZE the full-size test above is the LeakSanitizer check.)"""
    if SANITIZED:
        pytest.skip("valgrind cannot run an AddressSanitizer build; LeakSanitizer checks "
                    "the full-size run (its report would break the log format check)")
    vg = shutil.which("valgrind")
    if vg is None:
        pytest.fail("valgrind is needed for this test: apt-get install valgrind", pytrace=False)
    log = tmp_path / "valgrind.log"
    wrapper = [vg, "--track-fds=yes", "--leak-check=full", "--show-leak-kinds=definite,indirect",
               "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
               f"--log-file={log}"]
    counts = {"stream": 30, "mute": 3, "deaf": 3, "late": 30}
    drain = 5
    srv, code, took, setup, results = run_stress(start_server, workers, counts, drain,
                                                 wrapper=wrapper, slow=3.0)
    text = log.read_text()
    assert code == 0, f"exit {code}\n{text[-4000:]}"
    assert "ERROR SUMMARY: 0 errors" in text, text[-4000:]
    assert re.search(r"All heap blocks were freed|definitely lost: 0 bytes", text), text[-4000:]
    # Every descriptor still open at exit must have been inherited, not opened by the server.
    m = re.search(r"FILE DESCRIPTORS: (\d+) open", text)
    assert m, text[-4000:]
    entries = re.findall(
        r"Open (?:file descriptor|AF_\w+ socket) (\d+)[^\n]*\n((?:==\d+==    .*\n)*)", text)
    leaked = [(fd, body) for fd, body in entries if "<inherited from parent>" not in body]
    assert not leaked, f"descriptors left open by the server: {leaked}\n{text[-4000:]}"
    stress_figures("stress_valgrind", srv, took, results, fds_open_at_exit=int(m.group(1)),
                   fds_left_by_server=len(leaked))
    check_stress(srv, code, took, drain, results, counts, slack=T(6.0))
