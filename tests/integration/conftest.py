# SPDX-License-Identifier: MIT
"""Shared fixtures and helpers for the black-box tests of build/adieu-server and
build/adieu-client (SPEC.md sections 3 and 4).

Everything here is bounded: every wait has a deadline (scaled by
ADIEU_TEST_TIMEOUT_MULTIPLIER, or automatically when the server was built with ASan), every
load loop a count and a time limit. Only 127.0.0.1 is used. Synchronisation is done by
polling a condition (the server's log lines, a socket's state), never by a fixed sleep.
"""

import base64
import hashlib
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD_DIR = Path(os.environ.get("ADIEU_BUILD_DIR") or (REPO / "build")).resolve()
SERVER_BIN = BUILD_DIR / "adieu-server"
CLIENT_BIN = BUILD_DIR / "adieu-client"
SAMPLE_MSGS = (REPO / ".." / "shared" / "data" / "msgs.json").resolve()
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
HOST = "127.0.0.1"


def _built_with_sanitizer(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"__ubsan_handle" in data


def _multiplier():
    env = os.environ.get("ADIEU_TEST_TIMEOUT_MULTIPLIER")
    if env:
        return max(1.0, float(env))
    return 3.0 if _built_with_sanitizer(SERVER_BIN) else 1.0


MULT = _multiplier()
SANITIZED = _built_with_sanitizer(SERVER_BIN)


def T(seconds):
    """A timeout scaled for slow (sanitizer) builds."""
    return seconds * MULT


# --------------------------------------------------------------------------------------
# Log lines: `TIME LEVEL component: message key=value ...` (SPEC section 4)
# --------------------------------------------------------------------------------------
LOG_RE = re.compile(
    r"^(?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) "
    r"(?P<level>DEBUG|INFO|WARN|ERROR) "
    r"(?P<component>[A-Za-z0-9_.-]+): (?P<rest>.*)$"
)
KV_RE = re.compile(r'(?<!\S)([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_line(line):
    """Parses one log line into a dict: time, level, component, message (the text before
    the first key=value) and every key=value (quotes removed). None if malformed."""
    m = LOG_RE.match(line)
    if not m:
        return None
    d = {
        "time": m.group("time"),
        "level": m.group("level"),
        "component": m.group("component"),
        "line": line,
    }
    rest = m.group("rest")
    first = KV_RE.search(rest)
    d["message"] = (rest[: first.start()] if first else rest).strip()
    for k, v in KV_RE.findall(rest):
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = v[1:-1]
        d[k] = v
    return d


def is_close_line(d):
    return d is not None and d["component"] == "conn" and d["message"].startswith("closed")


def close_lines(lines, peer=None):
    """The `conn: closed` lines as dicts, optionally only those for peer ("127.0.0.1:N")."""
    out = []
    for line in lines:
        d = parse_line(line)
        if is_close_line(d) and (peer is None or d.get("peer") == peer):
            out.append(d)
    return out


def duplicate_close_lines(closes):
    """Pairs of close lines (dicts, in log order) that name one connection twice.

    A peer address alone does not name one connection: the client may reuse its port for a
    new connection once the old one is closed on its side. That is at once when the server
    closed first (the TIME_WAIT is the server's, and it accepts a new SYN on that tuple) or
    the peer reset (no TIME_WAIT at all); after a peer FIN, only once loopback's
    tcp_tw_reuse lets the client take the port again, when the clock's second has turned.
    So a second line for a peer is a duplicate only when the first was a peer FIN
    (`peer_eof`) in the same second. The summary count (checked after a graceful exit)
    stays exact either way."""
    last = {}
    dups = []
    for c in closes:
        # The same client port may reach both listeners at once: key by listener too.
        key = (c.get("proto"), c.get("peer"))
        prev = last.get(key)
        if prev is not None and prev.get("reason") == "peer_eof" \
                and prev["time"][:19] == c["time"][:19]:
            dups.append([prev["line"], c["line"]])
        last[key] = c
    return dups


def summary_of(lines):
    """The `shutdown: done` summary as a dict with int counters, or None."""
    for line in reversed(lines):
        d = parse_line(line)
        if d and d["component"] == "shutdown" and d["message"].startswith("done"):
            for k in ("connections", "messages_in", "messages_out"):
                if k in d:
                    d[k] = int(d[k])
            return d
    return None


def wait_for_condition(fn, timeout, interval=0.01, what="condition"):
    """Polls fn() until it returns a true value (returned) or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# The close reasons of SPEC section 4 and the level of their close line (INFO, or WARN for
# violations, limits, timeouts and forced closes; ERROR only for the server's own fault).
REASON_LEVEL = {
    "normal": "INFO", "peer_eof": "INFO", "peer_reset": "INFO", "truncated": "INFO",
    "protocol_error": "WARN", "invalid_utf8": "WARN", "too_big": "WARN",
    "bad_request": "WARN", "http_done": "INFO", "handshake_timeout": "WARN",
    "idle_timeout": "WARN", "close_timeout": "WARN", "local": "INFO",
    "too_many_connections": "WARN", "shutdown": "INFO", "shutdown_timeout": "WARN",
    "forced": "WARN", "server_error": "ERROR",
}

# What a version without the WebSocket listener logs (or prints in its usage error).
WS_UNAVAILABLE_RE = r"listener (?:is )?not available in this version"

# --------------------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------------------
class Server:
    """A running build/adieu-server with its stderr collected line by line."""

    def __init__(self, args, expect_listen=True, nofile_soft=None, nofile=None, host=HOST,
                 wrapper=None):
        """nofile_soft: the open-file soft limit the server starts with; nofile: both the
        soft and the hard limit (the server raises its soft limit to the hard one, so only
        this caps it). host: the address its listening lines name (the listeners' own
        addresses are in args). wrapper: argv put in front of the binary (valgrind ...)."""
        if not SERVER_BIN.exists():
            pytest.fail(f"{SERVER_BIN} does not exist: build it first "
                        f"(cmake -S . -B build && cmake --build build)")
        self.host = host
        self.args = ([str(a) for a in wrapper or []] + [str(SERVER_BIN)]
                     + [str(a) for a in args])
        self._lines = []  # (monotonic time, text)
        self._cond = threading.Condition()
        self._eof = False
        self.allow_error = False
        self.allow_malformed = False
        self.exit_code = None
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl+C on the terminal reaches only pytest
            preexec_fn=(None if nofile_soft is None and nofile is None
                        else (lambda: _set_nofile(nofile_soft, nofile))),
        )
        self.pid = self.proc.pid
        self.stdout_data = b""
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._out_reader.start()
        self.port = None
        self._ws_port = None
        # Which listeners the flags ask for: framed unless `--frame off` (it defaults on);
        # WebSocket only when `--ws ADDR` is given (its default may change between versions).
        frame_flag = _flag_value(self.args, "--frame")
        ws_flag = _flag_value(self.args, "--ws")
        self.frame_on = frame_flag != "off"
        self.ws_on = ws_flag is not None and ws_flag != "off"
        self.ws_unavailable = False
        if expect_listen:
            try:
                self._wait_listening()
            except BaseException:
                self.kill()  # never leave a server behind a failed start
                raise

    def _wait_listening(self):
        """Waits for the `listening` line of each listener the flags ask for."""
        if self.ws_on:
            try:
                m = self.wait_for_line(
                    r" INFO server: listening proto=ws addr=" + re.escape(self.host)
                    + r":(\d+) app=(\w+)"
                    r"(?:\s|$)|" + WS_UNAVAILABLE_RE, T(10))
            except AssertionError:
                if any(re.search(WS_UNAVAILABLE_RE, l) for l in self.lines()):
                    pytest.fail("adieu-server has no WebSocket listener (`websocket "
                                "listener not available in this version`):\n"
                                + self.tail(), pytrace=False)
                raise
            if m.group(1) is None:
                # This version has no WebSocket listener: the framed side still runs;
                # tests that need the WebSocket port fail when they ask for it (a
                # usage error, when --frame is off, is not a log line: allowed).
                self.ws_unavailable = True
                self.allow_malformed = not self.frame_on
            else:
                self._ws_port = int(m.group(1))
        if self.frame_on:
            m = self.wait_for_line(
                r" INFO server: listening proto=frame addr=" + re.escape(self.host)
                + r":(\d+) app=(\w+)(\s|$)",
                T(10))
            self.port = int(m.group(1))

    @property
    def ws_port(self):
        """The WebSocket/HTTP listener's port (from its `listening proto=ws` line)."""
        if self._ws_port is None:
            pytest.fail("adieu-server has no WebSocket listener: "
                        + ("it logs `websocket listener not available in this version`"
                           if self.ws_unavailable else f"not started with --ws ({self.args})"),
                        pytrace=False)
        return self._ws_port

    # -- output collection ------------------------------------------------------------
    def _read_stderr(self):
        f = self.proc.stderr
        for raw in iter(f.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self._lines.append((time.monotonic(), text))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stdout(self):
        chunks = []
        for raw in iter(lambda: self.proc.stdout.read(4096), b""):
            chunks.append(raw)
        self.stdout_data = b"".join(chunks)

    def lines(self):
        with self._cond:
            return [t for _, t in self._lines]

    def timed_lines(self):
        with self._cond:
            return list(self._lines)

    def tail(self, n=40):
        return "\n".join(self.lines()[-n:])

    def wait_for_line(self, regex, timeout, start=0):
        """Waits until a stderr line (index >= start) matches regex (re.search); returns
        the match. Fails on timeout or if the server's stderr ends first."""
        return self.wait_for_lines(regex, 1, timeout, start)[0]

    def wait_for_lines(self, regex, count, timeout, start=0):
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = []
                for _, text in self._lines[start:]:
                    m = rx.search(text)
                    if m:
                        found.append(m)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    break
                self._cond.wait(min(left, 0.1))
        state = "exited" if self._eof else "still running"
        raise AssertionError(
            f"server ({state}) did not log {count} line(s) matching {regex!r} within "
            f"{timeout:.1f}s; found {len(found)}; last lines:\n{self.tail()}")

    def close_lines(self, peer=None):
        return close_lines(self.lines(), peer)

    def wait_close_line(self, peer, timeout):
        """Waits for the close line of peer ("127.0.0.1:N"); returns it as a dict."""
        self.wait_for_line(r" conn: closed .*peer=" + re.escape(peer) + r"(\s|$)", timeout)
        return self.close_lines(peer)[0]

    def summary(self):
        return summary_of(self.lines())

    # -- process control --------------------------------------------------------------
    def running(self):
        return self.proc.poll() is None

    def signal(self, sig):
        assert self.running(), f"server already exited ({self.proc.returncode})"
        os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        """Waits for the process to exit; returns its exit code (negative: killed by that
        signal). Fails on timeout."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server did not exit within {timeout:.1f}s; last lines:\n{self.tail()}")
        self._reader.join(T(5))
        self._out_reader.join(T(5))
        self.exit_code = code
        return code

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def kill(self):
        """Kills this PID only, if still running."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._reader.join(5)
        self._out_reader.join(5)

    # -- invariants checked at teardown ------------------------------------------------
    def check_invariants(self):
        lines = self.lines()
        problems = []
        if not self.allow_malformed:
            bad = [l for l in lines if LOG_RE.match(l) is None]
            if bad:
                problems.append("lines not in the `TIME LEVEL component: message` format:\n"
                                + "\n".join(bad[:20]))
        if not self.allow_error:
            errs = [l for l in lines
                    if (parse_line(l) or {}).get("level") == "ERROR" or "ERROR" in l[:30]]
            if errs:
                problems.append("ERROR lines:\n" + "\n".join(errs[:20]))
        closes = close_lines(lines)
        bad_level = [c["line"] for c in closes if c["level"] not in ("INFO", "WARN")]
        if bad_level:
            problems.append("close lines not at INFO/WARN:\n" + "\n".join(bad_level[:20]))
        protos = {"frame"} if self.frame_on else set()
        if self.ws_on:
            protos.add("ws")
        missing = [c["line"] for c in closes
                   if not c.get("peer") or c.get("proto") not in protos or not c.get("reason")]
        if missing:
            problems.append(f"close lines without peer=/proto={'|'.join(sorted(protos))}"
                            f"/reason=:\n" + "\n".join(missing[:20]))
        # WebSocket close lines: a known reason at the level SPEC section 4 gives it
        # (INFO, WARN for violations, limits, timeouts and forced closes).
        wrong = [c["line"] for c in closes if c.get("proto") == "ws"
                 and REASON_LEVEL.get(c.get("reason")) != c["level"]]
        if wrong:
            problems.append("WebSocket close lines with an unknown reason or the wrong level:\n"
                            + "\n".join(wrong[:20]))
        dups = duplicate_close_lines(closes)
        if dups:
            problems.append("more than one close line for a peer:\n"
                            + "\n".join("\n".join(v) for v in dups[:5]))
        summ = summary_of(lines)
        if summ is not None and self.exit_code in (0, 130, 143):
            if lines and summary_of(lines[-1:]) is None:
                problems.append("summary is not the last line: " + lines[-1])
            if summ.get("connections") != len(closes):
                problems.append(f"summary connections={summ.get('connections')} but "
                                f"{len(closes)} close lines")
        if problems:
            raise AssertionError("server invariants broken:\n" + "\n\n".join(problems)
                                 + "\n\nlast lines:\n" + self.tail())


def _set_nofile_soft(soft):
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard))


def _set_nofile(soft, both):
    """In the child before exec: nofile caps soft and hard limits (lowering the hard limit
    is allowed to anyone); nofile_soft alone only the soft one."""
    import resource
    if both is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        both = min(both, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (both, both))
    if soft is not None:
        _set_nofile_soft(soft)


def _flag_value(args, name):
    """The value given to flag name in an argv list (the last one wins), or None."""
    value = None
    for i, a in enumerate(args[:-1]):
        if a == name:
            value = args[i + 1]
    return value


def server_args(*extra, app="demo", ws="off", frame=f"{HOST}:0"):
    args = ["--frame", frame]
    if ws is not None:
        args += ["--ws", ws]
    if app is not None:
        args += ["--app", app]
    return args + [str(a) for a in extra]


@pytest.fixture
def start_server():
    """Factory: start_server(*extra_flags, app="demo", ws="off", frame="127.0.0.1:0",
    nofile_soft=None, nofile=None, host="127.0.0.1", wrapper=None) -> Server, listening
    (nofile_soft: the open-file soft limit the server starts with; nofile: soft and hard
    limit; ws=WS_ANY for a WebSocket listener on a free port, see Server.ws_port;
    frame="off" for none; host: the address the listeners are given in ws=/frame=, when not
    127.0.0.1; wrapper: argv run in front of the binary, e.g. valgrind).
    At teardown: kills the PID if still running, then checks that no ERROR line appeared
    (unless server.allow_error), that every line is well-formed, one close line per peer
    connection (see duplicate_close_lines),
    and (after a graceful exit) that the summary counts one connection per close line."""
    servers = []

    def start(*extra, app="demo", ws="off", frame=f"{HOST}:0", nofile_soft=None, nofile=None,
              host=HOST, wrapper=None):
        s = Server(server_args(*extra, app=app, ws=ws, frame=frame), nofile_soft=nofile_soft,
                   nofile=nofile, host=host, wrapper=wrapper)
        servers.append(s)
        return s

    yield start
    failures = []
    for s in servers:
        s.kill()
        try:
            s.check_invariants()
        except AssertionError as e:
            failures.append(str(e))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def server(start_server):
    """A demo server on 127.0.0.1:<free port>, WebSocket listener off."""
    return start_server()


@pytest.fixture
def echo_server(start_server):
    return start_server(app="echo")


def run_server_to_exit(args, timeout):
    """Runs adieu-server with args expecting it to exit on its own (bad flags, startup
    failure). Returns (exit code, stdout text, stderr text)."""
    if not SERVER_BIN.exists():
        pytest.fail(f"{SERVER_BIN} does not exist: build it first")
    proc = subprocess.Popen([str(SERVER_BIN)] + [str(a) for a in args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"adieu-server {args} still running after {timeout:.1f}s; "
                             f"stderr:\n{err.decode('utf-8', 'replace')[-3000:]}")
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------
# Framing (SPEC P1): big-endian length prefix of 2 or 4 bytes
# --------------------------------------------------------------------------------------
def frame(payload, prefix=2):
    if isinstance(payload, str):
        payload = payload.encode()
    if prefix == 2:
        assert len(payload) <= 0xFFFF
        return struct.pack(">H", len(payload)) + payload
    assert prefix == 4
    return struct.pack(">I", len(payload)) + payload


def unframe(buf, prefix=2):
    """Splits complete messages off the front of buf (bytes/bytearray).
    Returns (messages, rest)."""
    msgs = []
    off = 0
    n = len(buf)
    fmt = ">H" if prefix == 2 else ">I"
    while n - off >= prefix:
        (length,) = struct.unpack_from(fmt, buf, off)
        if n - off - prefix < length:
            break
        msgs.append(bytes(buf[off + prefix: off + prefix + length]))
        off += prefix + length
    return msgs, bytes(buf[off:])


def free_port():
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def addr_str(sockname):
    return f"{sockname[0]}:{sockname[1]}"


class Peer:
    """A framed client on a raw blocking socket with timeouts."""

    def __init__(self, port, prefix=2, timeout=None):
        self.prefix = prefix
        self.timeout = T(10) if timeout is None else timeout
        self.sock = socket.create_connection((HOST, port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.addr = addr_str(self.sock.getsockname())
        self.buf = b""
        self.eof = False

    def send(self, payload):
        self.sock.sendall(frame(payload, self.prefix))

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self, timeout=None):
        """The next message, or None at EOF. Fails on timeout."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            msgs, rest = unframe(self.buf, self.prefix)
            if msgs:
                first = msgs[0]
                self.buf = self.buf[len(first) + self.prefix:]
                return first
            if self.eof:
                assert not self.buf, f"EOF inside a reply frame ({len(self.buf)} bytes left)"
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply within {timeout:.1f}s (peer {self.addr})")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            if not data:
                self.eof = True
            else:
                self.buf += data

    def request(self, payload, timeout=None):
        self.send(payload)
        reply = self.recv(timeout)
        assert reply is not None, f"connection closed instead of a reply (peer {self.addr})"
        return reply

    def expect_eof(self, timeout=None):
        """Reads until EOF; returns the messages received before it. Fails on timeout or
        a reset."""
        msgs = []
        while True:
            m = self.recv(timeout)
            if m is None:
                return msgs
            msgs.append(m)

    def wait_closed(self, timeout=None):
        """Waits until the server closed this connection (EOF or reset), discarding
        whatever arrives. Returns "eof" or "reset"."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection {self.addr} still open after {timeout:.1f}s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return "reset"
            if not data:
                return "eof"

    def shutdown_wr(self):
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self):
        """Closes with SO_LINGER {on, 0}: the kernel sends RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def peers():
    """Factory for Peer objects, all closed at teardown."""
    made = []

    def connect(port, prefix=2, timeout=None):
        p = Peer(port, prefix, timeout)
        made.append(p)
        return p

    yield connect
    for p in made:
        p.close()


def socket_is_closed_by_server(sock):
    """Non-blocking probe: True if the server closed (EOF or reset) the socket."""
    r, _, _ = select.select([sock], [], [], 0)
    if not r:
        return False
    try:
        data = sock.recv(65536, socket.MSG_PEEK)
    except ConnectionResetError:
        return True
    return data == b""


def record_figures(name, **figures):
    """A measured result for docs/RELIABILITY.md: printed (pytest -s shows it) and, when
    ADIEU_FIGURES names a file, appended to it as one JSON object per line."""
    import json
    print(f"FIGURE {name} " + " ".join(f"{k}={v}" for k, v in figures.items()))
    out = os.environ.get("ADIEU_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"name": name, "sanitized": SANITIZED, **figures}) + "\n")


def proc_cpu_seconds(pid):
    """User + system CPU time process pid has used so far, in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_fd_count(pid):
    """How many descriptors process pid holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def server_socket_count(pid):
    """How many sockets process pid holds open (listeners and accepted connections)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def run_client(args, timeout):
    """Runs build/adieu-client; returns CompletedProcess with text stdout/stderr."""
    if not CLIENT_BIN.exists():
        pytest.fail(f"{CLIENT_BIN} does not exist: build it first")
    try:
        return subprocess.run([str(CLIENT_BIN)] + [str(a) for a in args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"adieu-client {args} did not finish within {timeout:.1f}s; "
                             f"stdout tail: {str(e.stdout)[-2000:]!r}")


# --------------------------------------------------------------------------------------
# WebSocket (SPEC P2, RFC 6455) and plain HTTP (SPEC P3) on the WebSocket port
# --------------------------------------------------------------------------------------
WS_ANY = f"{HOST}:0"  # start_server(ws=WS_ANY): a WebSocket listener on a free port
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_mask(payload, key):
    """payload XOR the repeated 4-byte key, a word at a time (fast enough for MiBs)."""
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(
        n, "little")


def ws_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None, len_bytes=None):
    """One frame as a client sends it (masked with a random key unless mask=False or
    mask_key). rsv: the 3 RSV bits as a number 0-7 (RSV1 = 4). len_bytes: force the length
    encoding (0: 7-bit, 2: 16-bit, 8: 64-bit), minimal or not."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    if len_bytes is None:
        len_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    mbit = 0x80 if mask else 0
    if len_bytes == 0:
        assert n < 126
        head = struct.pack(">BB", b0, mbit | n)
    elif len_bytes == 2:
        head = struct.pack(">BBH", b0, mbit | 126, n)
    else:
        head = struct.pack(">BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4) if mask_key is None else mask_key
    return head + key + ws_mask(payload, key)


def ws_close_payload(code=None, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    if code is None:
        return reason
    return struct.pack(">H", code) + reason


class WsFrame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload", "len_bytes")

    def __init__(self, fin, rsv, opcode, masked, payload, len_bytes):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.payload, self.len_bytes = masked, payload, len_bytes

    @property
    def close_code(self):
        return struct.unpack(">H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return (f"WsFrame(op={self.opcode:#x} fin={int(self.fin)} rsv={self.rsv} "
                f"masked={int(self.masked)} len={len(self.payload)} {p!r})")


def ws_parse_frame(buf):
    """Parses one server frame off the front of buf: (WsFrame, bytes used) or (None, 0)."""
    if len(buf) < 2:
        return None, 0
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    off = 2
    len_bytes = 0
    if n == 126:
        if len(buf) < 4:
            return None, 0
        n = struct.unpack_from(">H", buf, 2)[0]
        off, len_bytes = 4, 2
    elif n == 127:
        if len(buf) < 10:
            return None, 0
        n = struct.unpack_from(">Q", buf, 2)[0]
        off, len_bytes = 10, 8
    masked = bool(b1 & 0x80)
    key = b""
    if masked:
        if len(buf) < off + 4:
            return None, 0
        key = bytes(buf[off:off + 4])
        off += 4
    if len(buf) < off + n:
        return None, 0
    payload = bytes(buf[off:off + n])
    if masked:
        payload = ws_mask(payload, key)
    return WsFrame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked, payload, len_bytes), off + n


def ws_upgrade_request(port, path="/", key=None, version="13", headers=None, omit=(),
                       method="GET", http="HTTP/1.1"):
    """The bytes of an upgrade request. headers: extra (name, value) pairs appended; omit:
    names (lower case) of the standard headers to leave out."""
    std = [("Host", f"{HOST}:{port}"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
           ("Sec-WebSocket-Key", ws_key() if key is None else key),
           ("Sec-WebSocket-Version", version)]
    lines = [f"{method} {path} {http}"]
    lines += [f"{k}: {v}" for k, v in std if k.lower() not in omit]
    lines += [f"{k}: {v}" for k, v in (headers or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HttpResponse:
    def __init__(self, status, reason, headers, body, raw, rest=b""):
        self.status, self.reason, self.headers = status, reason, headers
        self.body, self.raw, self.rest = body, raw, rest

    def header(self, name):
        """The value of header name (case-insensitive), or None; several are joined by ', '."""
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(vals) if vals else None

    def header_tokens(self, name):
        v = self.header(name)
        return [t.strip().lower() for t in v.split(",")] if v else []

    def __repr__(self):
        return f"HttpResponse({self.raw[:600]!r})"


def _parse_response_head(head):
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    m = re.match(r"^HTTP/1\.1 (\d{3}) ?(.*)$", lines[0])
    assert m, f"bad status line {lines[0]!r} in {head!r}"
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        assert sep and name and name == name.strip(), f"bad header line {line!r} in {head!r}"
        headers.append((name, value.strip()))
    return int(m.group(1)), m.group(2), headers


def read_http_response(sock, timeout, until_eof=True):
    """Reads one HTTP/1.1 response from sock. For a non-101 answer reads the body (by
    Content-Length, else until EOF) and, with until_eof, waits for the server to close the
    connection (every non-101 answer has `Connection: close`); fails if it does not within
    timeout. For 101, stops after the head; bytes after it are in .rest."""
    deadline = time.monotonic() + timeout
    buf = b""
    eof = False

    def more():
        nonlocal buf, eof
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"HTTP response incomplete after {timeout:.1f}s: {buf[:600]!r}")
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return
        except ConnectionResetError:
            raise AssertionError(f"connection reset during the HTTP response: {buf[:600]!r}")
        if data:
            buf += data
        else:
            eof = True

    while b"\r\n\r\n" not in buf:
        if eof:
            raise AssertionError(f"EOF before the end of the response head: {buf[:600]!r}")
        more()
    head, _, rest = buf.partition(b"\r\n\r\n")
    status, reason, headers = _parse_response_head(head)
    resp = HttpResponse(status, reason, headers, b"", head + b"\r\n\r\n")
    if status == 101:
        resp.rest = rest
        return resp
    buf = rest
    clen = resp.header("Content-Length")
    if clen is not None:
        while len(buf) < int(clen) and not eof:
            more()
        assert len(buf) >= int(clen), f"body shorter than Content-Length: {resp!r} {buf!r}"
        resp.body, extra = buf[:int(clen)], buf[int(clen):]
        assert not extra, f"bytes after the body: {extra[:200]!r}"
    if until_eof:
        while not eof:
            more()
        if clen is None:
            resp.body = buf
        else:
            assert len(buf) == int(clen), f"bytes after the body: {buf[int(clen):][:200]!r}"
    resp.raw += resp.body
    return resp


def http_request(port, request, timeout=None):
    """Sends raw request bytes to 127.0.0.1:port; returns (HttpResponse, client "ip:port").
    Waits for the server to close the connection after a non-101 answer."""
    timeout = T(10) if timeout is None else timeout
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        addr = addr_str(s.getsockname())
        s.sendall(request)
        return read_http_response(s, timeout), addr


def http_get(port, path, timeout=None, headers=None):
    """A plain `GET path HTTP/1.1` (no upgrade); returns the HttpResponse."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or []))
    req = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{extra}\r\n".encode("latin-1")
    return http_request(port, req, timeout)[0]


def wait_healthy(port, timeout, want=200):
    """Polls GET /healthz until it answers want (200 `ok`, 503 `draining`)."""
    last = []

    def probe():
        try:
            r = http_get(port, "/healthz", timeout=T(2))
        except (OSError, AssertionError) as e:
            last[:] = [repr(e)]
            return None
        last[:] = [r]
        return r if r.status == want else None

    try:
        return wait_for_condition(probe, timeout, interval=0.02, what=f"/healthz {want}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last answer: {last}")


class Metrics:
    """A parsed Prometheus text exposition (format 0.0.4)."""

    SAMPLE_RE = re.compile(
        r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
        r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*,?)?)\})? '
        r'([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|[-+]?Inf))(?: -?[0-9]+)?$')
    LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')

    def __init__(self, text):
        self.text = text
        self.help, self.type = {}, {}
        self.samples = {}  # (name, frozenset(labels.items())) -> float
        self.order = []    # family names in order of first appearance
        self.errors = []
        for line in text.split("\n"):
            if not line:
                continue
            if line.startswith("# HELP "):
                parts = line.split(" ", 3)
                self.help[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            if line.startswith("# TYPE "):
                parts = line.split(" ")
                if len(parts) != 4:
                    self.errors.append(f"bad TYPE line {line!r}")
                    continue
                self.type[parts[2]] = parts[3]
                continue
            if line.startswith("#"):
                continue
            m = self.SAMPLE_RE.match(line)
            if not m:
                self.errors.append(f"bad sample line {line!r}")
                continue
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            key = (name, frozenset(self.LABEL_RE.findall(labels)))
            if key in self.samples:
                self.errors.append(f"duplicate sample {line!r}")
            self.samples[key] = float(value)
            if name not in self.order:
                self.order.append(name)

    def get(self, name, **labels):
        """The one sample of name with exactly these labels; fails if absent."""
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no sample {name}{labels} in:\n{self.text}"
        return self.samples[key]

    def series(self, name):
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}

    def total(self, name, **labels):
        """Sum of the samples of name whose labels include these."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)


def scrape(port, timeout=None):
    """GET /metrics → Metrics (asserting 200 and a text/plain content type)."""
    r = http_get(port, "/metrics", timeout)
    assert r.status == 200, r
    ctype = r.header("Content-Type") or ""
    assert ctype.startswith("text/plain"), r
    return Metrics(r.body.decode("utf-8"))


class WsPeer:
    """A raw WebSocket client on a blocking socket: frames are built and parsed here, so
    tests can send anything (bad frames included) and see exactly what comes back."""

    def __init__(self, port, path="/", timeout=None, handshake=True, headers=None):
        self.port = port
        self.timeout = T(10) if timeout is None else timeout
        self.sock = socket.create_connection((HOST, port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.addr = addr_str(self.sock.getsockname())
        self.buf = b""
        self.eof = False
        self.response = None
        self.controls = []      # control frames recv_message stepped over
        self.before_close = []  # frames expect_close stepped over
        if handshake:
            self.handshake(path, headers)

    # -- handshake ------------------------------------------------------------------
    def handshake(self, path="/", headers=None, key=None):
        key = ws_key() if key is None else key
        self.sock.sendall(ws_upgrade_request(self.port, path, key=key, headers=headers))
        r = read_http_response(self.sock, self.timeout)
        assert r.status == 101, f"upgrade refused: {r!r}"
        assert r.header("Sec-WebSocket-Accept") == ws_accept(key), r
        assert "websocket" in r.header_tokens("Upgrade"), r
        assert "upgrade" in r.header_tokens("Connection"), r
        self.buf = r.rest
        self.response = r
        return r

    # -- sending ----------------------------------------------------------------------
    def send_raw(self, data, chop=None):
        """Sends bytes, in pieces of chop bytes (each its own write) if given."""
        if not chop:
            self.sock.sendall(data)
            return
        for i in range(0, len(data), chop):
            self.sock.sendall(data[i:i + chop])

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True, chop=None, **kw):
        self.send_raw(ws_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask, **kw), chop)

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def send_close(self, code=None, reason=b"", **kw):
        self.send_frame(OP_CLOSE, ws_close_payload(code, reason), **kw)

    # -- receiving --------------------------------------------------------------------
    def _fill(self, deadline, what):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{self.addr}: no {what} within {self.timeout:.1f}s "
                                 f"({len(self.buf)} bytes pending: {self.buf[:60]!r})")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return
        if data:
            self.buf += data
        else:
            self.eof = True

    def recv_frame(self, timeout=None):
        """The next frame from the server, or None at a clean EOF. Fails on timeout, on EOF
        inside a frame, and on a masked server frame (RFC 6455 section 5.1)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            f, used = ws_parse_frame(self.buf)
            if f is not None:
                self.buf = self.buf[used:]
                assert not f.masked, f"the server masked a frame: {f!r}"
                n = len(f.payload)
                assert f.len_bytes == (0 if n < 126 else 2 if n < 65536 else 8), (
                    f"the server did not use the minimal length encoding: {f!r}")
                return f
            if self.eof:
                assert not self.buf, f"EOF inside a server frame: {self.buf[:60]!r}"
                return None
            self._fill(deadline, "frame")

    def recv_message(self, timeout=None):
        """The next data message as (opcode, payload), fragments joined; control frames in
        between are kept in self.controls. Fails on a close frame or EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        parts, op = [], None
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            assert f is not None, f"{self.addr}: EOF instead of a message"
            if f.opcode >= 8:
                assert f.opcode != OP_CLOSE, (
                    f"{self.addr}: close {f.close_code} {f.close_reason!r} instead of a message")
                self.controls.append(f)
                continue
            if op is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), f"message starts with {f!r}"
                op = f.opcode
            else:
                assert f.opcode == OP_CONT, f"continuation expected, got {f!r}"
            assert f.rsv == 0, f
            parts.append(f.payload)
            if f.fin:
                return op, b"".join(parts)

    def request(self, payload, opcode=None, timeout=None):
        """Sends one message (text for str, binary for bytes unless opcode) and returns the
        payload of the next message, checking it has the same opcode."""
        if opcode is None:
            opcode = OP_TEXT if isinstance(payload, str) else OP_BINARY
        data = payload.encode() if isinstance(payload, str) else payload
        self.send_frame(opcode, data)
        op, got = self.recv_message(timeout)
        assert op == opcode, f"reply opcode {op:#x}, sent {opcode:#x}"
        return got.decode() if isinstance(payload, str) else got

    def expect_close(self, timeout=None, reply=True, allow_data=False, strict=True):
        """Reads up to the server's close frame; returns it (.close_code, .close_reason).
        Data frames before it fail the test unless allow_data (then kept in .before_close).
        With reply, answers with the same close (as a client should), then expects the
        server to close TCP (RFC 6455 section 7.1.1: the server closes first): with a FIN
        if strict, else a FIN or a reset (a server failing the connection may close without
        reading our close)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.before_close = []
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            assert f is not None, f"{self.addr}: EOF without a close frame"
            if f.opcode == OP_CLOSE:
                break
            assert allow_data or f.opcode == OP_PONG, f"{self.addr}: {f!r} before the close"
            self.before_close.append(f)
        assert f.fin and f.rsv == 0, f
        assert len(f.payload) != 1, f"a 1-byte close payload from the server: {f!r}"
        if reply:
            try:
                self.send_close(f.close_code)
            except (BrokenPipeError, ConnectionResetError):
                pass
            left = max(0.5, deadline - time.monotonic())
            if strict:
                self.expect_eof(left)
            else:
                self.wait_closed(left)
        return f

    def expect_eof(self, timeout=None, close=True):
        """Waits for the server to close TCP, failing on data, a reset or a timeout; then
        (close) closes our side too, as a client does once the server has closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            try:
                self._fill(deadline, "EOF")
            except ConnectionResetError:
                raise AssertionError(f"{self.addr}: reset instead of the server's FIN")
        assert not self.buf, f"{self.addr}: bytes before EOF: {self.buf[:80]!r}"
        if close:
            self.close()

    def wait_closed(self, timeout=None, close=True):
        """Waits until the server closed TCP (EOF or reset), discarding what arrives; then
        (close) closes our side too. Returns "eof" or "reset"."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        how = "eof"
        while not self.eof:
            try:
                self._fill(deadline, "close of the connection")
            except ConnectionResetError:
                how = "reset"
                break
            self.buf = b""
        if close:
            self.close()
        return how

    def closed_by_server(self):
        return socket_is_closed_by_server(self.sock)

    def reset(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def ws_peers():
    """Factory for WsPeer objects (ws_peers(port, ...)), all closed at teardown."""
    made = []

    def connect(port, *args, **kw):
        p = WsPeer(port, *args, **kw)
        made.append(p)
        return p

    yield connect
    for p in made:
        p.close()


@pytest.fixture
def ws_server(start_server):
    """An echo server with only the WebSocket listener (127.0.0.1, free port)."""
    return start_server(app="echo", ws=WS_ANY, frame="off")
