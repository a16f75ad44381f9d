# SPDX-License-Identifier: MIT
"""Shared fixtures and helpers for the black-box tests of build/adieu-server and
build/adieu-client (SPEC.md sections 3 and 4).

Everything here is bounded: every wait has a deadline (scaled by
ADIEU_TEST_TIMEOUT_MULTIPLIER, or automatically when the server was built with ASan), every
load loop a count and a time limit. Only 127.0.0.1 is used. Synchronisation is done by
polling a condition (the server's log lines, a socket's state), never by a fixed sleep.
"""

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


# --------------------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------------------
class Server:
    """A running build/adieu-server with its stderr collected line by line."""

    def __init__(self, args, expect_listen=True, nofile_soft=None):
        if not SERVER_BIN.exists():
            pytest.fail(f"{SERVER_BIN} does not exist: build it first "
                        f"(cmake -S . -B build && cmake --build build)")
        self.args = [str(SERVER_BIN)] + [str(a) for a in args]
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
            preexec_fn=None if nofile_soft is None else (lambda: _set_nofile_soft(nofile_soft)),
        )
        self.pid = self.proc.pid
        self.stdout_data = b""
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._out_reader.start()
        self.port = None
        if expect_listen:
            m = self.wait_for_line(
                r" INFO server: listening proto=frame addr=127\.0\.0\.1:(\d+) app=(\w+)(\s|$)",
                T(10))
            self.port = int(m.group(1))

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
        missing = [c["line"] for c in closes
                   if not c.get("peer") or c.get("proto") != "frame" or not c.get("reason")]
        if missing:
            problems.append("close lines without peer=/proto=frame/reason=:\n"
                            + "\n".join(missing[:20]))
        seen = {}
        for c in closes:
            seen.setdefault(c.get("peer"), []).append(c["line"])
        dups = [v for v in seen.values() if len(v) > 1]
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


def server_args(*extra, app="demo", ws="off"):
    args = ["--frame", f"{HOST}:0"]
    if ws is not None:
        args += ["--ws", ws]
    if app is not None:
        args += ["--app", app]
    return args + [str(a) for a in extra]


@pytest.fixture
def start_server():
    """Factory: start_server(*extra_flags, app="demo", ws="off", nofile_soft=None) -> Server,
    listening (nofile_soft: the open-file soft limit the server starts with).
    At teardown: kills the PID if still running, then checks that no ERROR line appeared
    (unless server.allow_error), that every line is well-formed, one close line per peer,
    and (after a graceful exit) that the summary counts one connection per close line."""
    servers = []

    def start(*extra, app="demo", ws="off", nofile_soft=None):
        s = Server(server_args(*extra, app=app, ws=ws), nofile_soft=nofile_soft)
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
