# SPDX-License-Identifier: MIT
"""Layer 75: `adieu-client ws URL [FILE.json]` (SPEC section 3 "adieu-client", section 4
"adieu-client exit codes"; RFC 6455 client side) against adieu-server's WebSocket listener and
against scripted raw-socket servers: the replay of a file matched by id, lines from stdin
(pipe, regular file, terminal) with the replies printed, the server draining mid-replay
(close 1001), Ctrl+C on the client (close frame, then 130/143), the opening handshake's
checks, masking, fragments, ping/pong and invalid UTF-8."""

import base64
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (CLIENT_BIN, HOST, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                      SAMPLE_MSGS, T, WS_ANY, free_port, run_client, server_socket_count,
                      wait_for_condition, ws_accept, ws_close_payload, ws_frame, ws_parse_frame)

UUID_RE = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{12}\b")
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                      re.I)
OBJECTS = [
    '{"amount":10,"card":"1213212312","terminal":"ABC"}',
    '{"amount":25,"card":"5555555552","terminal":"CDE"}',
    '{"amount":30,"card":"4444444442","terminal":"EFG"}',
]


def write_messages(path, n):
    with open(path, "w") as f:
        f.write("[\n")
        f.write(",\n".join(OBJECTS[i % len(OBJECTS)] for i in range(n)))
        f.write("\n]\n")
    return path


def url(port, path="/"):
    return f"ws://{HOST}:{port}{path}"


def stop(srv):
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(T(10)) == 0, srv.tail()
    return srv.summary()


def spawn_client(args, stdin=subprocess.DEVNULL):
    return subprocess.Popen([str(CLIENT_BIN)] + [str(a) for a in args], stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def finish(proc, timeout, input=None):
    """Waits for proc (started by this test), writing input to its stdin first if given, and
    returns (code, stdout, stderr) as text; kills that PID only if it overstays."""
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"adieu-client still running after {timeout:.1f}s; stderr:\n"
                             f"{err.decode('utf-8', 'replace')[-2000:]}")
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def bytes_read(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar")


def assert_quiet(err):
    assert "Traceback" not in err and "Sanitizer" not in err and "runtime error" not in err, err


# --------------------------------------------------------------------------------------
# Against adieu-server
# --------------------------------------------------------------------------------------
def test_ws_client_10000_messages(start_server, tmp_path):
    srv = start_server(app="echo", ws=WS_ANY, frame="off")
    f = write_messages(tmp_path / "msgs.json", 10_000)
    r = run_client(["ws", url(srv.ws_port), f], T(60))
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:{r.stdout[-2000:]}\n" \
                              f"stderr:{r.stderr[-2000:]}"
    assert "sent=10000 received=10000" in r.stdout
    assert "all responses received" in r.stdout
    assert_quiet(r.stderr)
    srv.wait_for_line(r" conn: closed .*proto=ws", T(5))
    summ = stop(srv)
    assert summ["messages_in"] == summ["messages_out"] == 10_000, summ["line"]
    assert summ["connections"] == 1
    c = srv.close_lines()
    # the client said goodbye with a close frame (1000), not a bare TCP close
    assert len(c) == 1 and c[0]["reason"] == "normal" and c[0].get("code") == "1000", c


def test_ws_client_sample_file(start_server):
    if not SAMPLE_MSGS.exists():
        pytest.skip(f"sample file {SAMPLE_MSGS} is absent")
    srv = start_server(app="echo", ws=WS_ANY, frame="off")
    r = run_client(["ws", url(srv.ws_port, "/sample?x=1"), SAMPLE_MSGS], T(30))
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "all responses received" in r.stdout
    summ = stop(srv)
    assert summ["messages_in"] == summ["messages_out"] == 23, summ["line"]


LINES = ["hello", "", "héllo wörld ✓", "x" * 70_000, "last"]


@pytest.mark.parametrize("kind", ["pipe", "file", "tty"])
def test_ws_client_stdin_lines_print_replies(start_server, tmp_path, kind):
    """Each stdin line is a text message; each demo reply `T/answer` is printed on a line of
    its own; at the end of stdin the client closes with 1000 and exits 0."""
    srv = start_server(app="demo", ws=WS_ANY, frame="off")
    text = "\n".join(LINES[:-1]) + "\r\n" + LINES[-1]  # CRLF and no final newline
    if kind == "file":
        src = tmp_path / "lines.txt"
        src.write_text(text)
        with open(src, "rb") as stdin:
            proc = spawn_client(["ws", url(srv.ws_port)], stdin=stdin)
        code, out, err = finish(proc, T(20))
    elif kind == "pipe":
        proc = spawn_client(["ws", url(srv.ws_port)], stdin=subprocess.PIPE)
        code, out, err = finish(proc, T(20), input=text.encode())
    else:
        code, out, err = run_on_tty(["ws", url(srv.ws_port)], LINES[:2] + LINES[2:3])
    want = LINES if kind != "tty" else LINES[:3]
    assert code == 0, f"exit {code}\n{out[-500:]}\n{err}"
    assert out.split("\n")[:-1] == [f"{x}/answer" for x in want], out[-500:]
    assert err == "", err
    c = srv.wait_for_line(r" conn: closed .*proto=ws", T(5))
    assert "reason=normal" in c.string and "code=1000" in c.string, c.string


def run_on_tty(args, lines):
    """Runs the client with a pseudo-terminal as stdin: types lines, waits for each reply on
    stdout, then Ctrl+D at the start of a line (end of input)."""
    master, slave = pty.openpty()
    try:
        proc = spawn_client(args, stdin=slave)
    finally:
        os.close(slave)
    try:
        out = b""
        for i, line in enumerate(lines):
            os.write(master, line.encode() + b"\n")
            deadline = time.monotonic() + T(10)
            while out.count(b"\n") < i + 1 and time.monotonic() < deadline:
                out += read_some(proc.stdout, deadline)
        os.write(master, b"\x04")
        code, rest, err = finish(proc, T(10))
        return code, out.decode() + rest, err
    finally:
        os.close(master)


def read_some(f, deadline):
    """What one read of the pipe f gives before the deadline (b"" if nothing)."""
    r, _, _ = select.select([f], [], [], max(0.0, deadline - time.monotonic()))
    return os.read(f.fileno(), 65536) if r else b""


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ws_client_interrupted_sends_close(start_server, sig, code):
    """Ctrl+C (or SIGTERM) on an idle lines-mode client: a close frame, the server's echo,
    then exit 130 (143) with one line and nothing else; the server logs reason=normal."""
    srv = start_server(app="demo", ws=WS_ANY, frame="off")
    proc = spawn_client(["ws", url(srv.ws_port)], stdin=subprocess.PIPE)
    try:
        proc.stdin.write(b"ping\n")
        proc.stdin.flush()
        line = b""
        deadline = time.monotonic() + T(10)
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            line += read_some(proc.stdout, deadline)
        assert line == b"ping/answer\n", line
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        # NOTE: not communicate(), which would close stdin: an EOF racing the signal.
        try:
            rc = proc.wait(T(5))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the client still runs {T(5):.1f}s after the signal")
        elapsed = time.monotonic() - t0
        out = proc.stdout.read().decode("utf-8", "replace")
        err = proc.stderr.read().decode("utf-8", "replace")
    finally:
        proc.stdin.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert rc == code, f"exit {rc}\n{out}\n{err}"
    assert elapsed < T(2), f"took {elapsed:.2f}s to close"
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err, err
    c = srv.wait_for_line(r" conn: closed .*proto=ws", T(5))
    assert "reason=normal" in c.string and "code=1001" in c.string, c.string


def test_ws_client_reports_unanswered_when_server_stops(start_server, tmp_path):
    """The server is SIGINTed mid-replay: it answers what it read, sends close 1001 "going
    away", and the client echoes it, lists every unanswered id and exits 3."""
    n = 200_000
    srv = start_server("--drain-timeout", "3", app="echo", ws=WS_ANY, frame="off")
    f = write_messages(tmp_path / "big.json", n)
    sockets_idle = server_socket_count(srv.pid)
    proc = spawn_client(["ws", url(srv.ws_port), f])
    try:
        wait_for_condition(lambda: server_socket_count(srv.pid) > sockets_idle
                           or proc.poll() is not None, T(20), what="the client to connect")
        read_before = bytes_read(srv.pid)
        wait_for_condition(lambda: bytes_read(srv.pid) - read_before > 100_000
                           or proc.poll() is not None, T(20),
                           what="the server to read the client's requests")
        assert proc.poll() is None, "the client ended before the server was stopped"
        srv.signal(signal.SIGINT)
        code, out, err = finish(proc, T(30))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert srv.wait_exit(T(10)) == 0, srv.tail()
    summ = srv.summary()
    answered = summ["messages_out"]
    assert 0 < answered < n, summ["line"]
    assert code == 3, f"exit {code}\nstdout:{out[-2000:]}\nstderr:{err[-2000:]}"
    assert "all responses received" not in out
    assert re.search(r'close 1001 "going away"', err), err
    assert f"received={answered}" in out, out[:300]
    ids = UUID_RE.findall(out)
    assert all(UUID4_RE.match(i) for i in ids[:100])
    assert len(set(ids)) == len(ids) == n - answered, (len(set(ids)), len(ids), n - answered)
    assert_quiet(err)
    c = srv.close_lines()
    assert len(c) == 1 and c[0]["reason"] == "shutdown" and c[0].get("code") == "1001", c


def test_ws_client_cannot_connect_exits_1(tmp_path):
    f = write_messages(tmp_path / "msgs.json", 3)
    r = run_client(["ws", url(free_port()), f], T(30))
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "ECONNREFUSED" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_ws_client_upgrade_refused_exits_1(start_server, tmp_path):
    """A non-101 answer (here /healthz's 200) is 'cannot connect', with the status."""
    srv = start_server(app="echo", ws=WS_ANY, frame="off")
    f = write_messages(tmp_path / "msgs.json", 3)
    r = run_client(["ws", url(srv.ws_port, "/healthz"), f], T(30))
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "answered 200 OK" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("bad", [
    "wss://127.0.0.1:9/", "http://127.0.0.1/", "127.0.0.1:9000", "ws://", "ws://:80/",
    "ws://h:0/", "ws://h:65536/", "ws://h:x/", "ws://h/a b", "ws://h/#frag", "ws://u@h/",
    "ws://[::1/", "ws://[nope]/", "ws://[::1]x/", "ws://h^/",
])
def test_ws_client_bad_url_exits_2(bad):
    r = run_client(["ws", bad], T(10))
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert len(r.stderr.strip().splitlines()) == 1 and "URL" in r.stderr, r.stderr


@pytest.mark.parametrize("args", [
    ["ws"], ["ws", "--port", "1", "ws://h/"], ["ws", "ws://h/", "a.json", "b.json"],
    ["ws", "--timeout", "x", "ws://h/"],
], ids=["no_url", "frame_flag", "two_files", "bad_timeout"])
def test_ws_client_bad_flags_exit_2(args):
    r = run_client(args, T(10))
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"


def test_ws_client_bad_file_exits_2(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('{"not": "an array"}')
    r = run_client(["ws", url(free_port()), f], T(10))
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"


# --------------------------------------------------------------------------------------
# Against scripted servers: what goes on the wire
# --------------------------------------------------------------------------------------
class FakeWsServer:
    """A WebSocket server in a thread on a raw socket. It checks the upgrade request, answers
    with `answer(key)` (bytes of the response head), then hands each client frame to
    `on_frame(self, frame, mask_key)` until the client closes TCP or the deadline passes."""

    def __init__(self, on_frame, answer=None):
        self.on_frame = on_frame
        self.answer = answer or (lambda key: (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {ws_accept(key)}\r\n\r\n").encode())
        self.request = None
        self.frames = []  # (WsFrame, mask key)
        self.peer_closed = None  # "eof" or "reset"
        self.error = None
        self.conn = None
        self.lsock = socket.socket()
        self.lsock.bind((HOST, 0))
        self.lsock.listen(1)
        self.lsock.settimeout(T(20))
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def send(self, data):
        self.conn.sendall(data)

    def _run(self):
        try:
            self.conn, _ = self.lsock.accept()
            self.conn.settimeout(0.2)
            buf = b""
            deadline = time.monotonic() + T(30)
            while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
                buf += self._recv()
            head, _, buf = buf.partition(b"\r\n\r\n")
            self.request = head.decode("latin-1")
            key = re.search(r"(?im)^Sec-WebSocket-Key: *(\S+)", self.request).group(1)
            self.send(self.answer(key))
            while self.peer_closed is None and time.monotonic() < deadline:
                buf += self._recv()
                buf = self._frames(buf)
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            if self.conn:
                self.conn.close()
            self.lsock.close()

    def _recv(self):
        try:
            data = self.conn.recv(1 << 16)
        except (TimeoutError, socket.timeout):
            return b""
        except ConnectionResetError:
            self.peer_closed = "reset"
            return b""
        if not data:
            self.peer_closed = "eof"
        return data

    def _frames(self, buf):
        while True:
            f, used = ws_parse_frame(buf)
            if f is None:
                return buf
            key = buf[used - len(f.payload) - 4:used - len(f.payload)] if f.masked else None
            buf = buf[used:]
            self.frames.append((f, key))
            self.on_frame(self, f, key)

    def join(self):
        self.thread.join(T(40))
        assert self.error is None, repr(self.error)


def echo_fragmented(srv, f, key):
    """Answers each text message in three fragments with a ping in between; answers the
    client's close with a close and closes TCP."""
    if f.opcode == OP_TEXT:
        p = f.payload
        srv.send(ws_frame(OP_TEXT, p[:5], fin=False, mask=False)
                 + ws_frame(OP_PING, b"are you there", mask=False)
                 + ws_frame(OP_CONT, p[5:9], fin=False, mask=False)
                 + ws_frame(OP_CONT, p[9:], mask=False))
    elif f.opcode == OP_CLOSE:
        srv.send(ws_frame(OP_CLOSE, f.payload, mask=False))
        srv.conn.shutdown(socket.SHUT_WR)


def test_ws_client_wire_format(tmp_path):
    """The upgrade request as RFC 6455 section 4.1 asks; every frame masked with its own key;
    fragmented replies with a ping in between are joined, the ping answered with its
    payload; close 1000 at the end, answered, then TCP closed."""
    n = 50
    f = write_messages(tmp_path / "msgs.json", n)
    fake = FakeWsServer(echo_fragmented)
    r = run_client(["ws", f"ws://localhost:{fake.port}/chat?room=1", f], T(30))
    fake.join()
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "all responses received" in r.stdout
    req = fake.request.split("\r\n")
    assert req[0] == "GET /chat?room=1 HTTP/1.1", req
    hdr = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in req[1:])}
    assert hdr["host"] == f"localhost:{fake.port}"
    assert hdr["upgrade"].lower() == "websocket" and "upgrade" in hdr["connection"].lower()
    assert hdr["sec-websocket-version"] == "13"
    assert len(base64.b64decode(hdr["sec-websocket-key"], validate=True)) == 16
    texts = [fr for fr, _ in fake.frames if fr.opcode == OP_TEXT]
    pongs = [fr for fr, _ in fake.frames if fr.opcode == OP_PONG]
    closes = [fr for fr, _ in fake.frames if fr.opcode == OP_CLOSE]
    assert len(texts) == n and all(fr.fin and fr.rsv == 0 for fr in texts)
    ids = [json.loads(fr.payload)["id"] for fr in texts]
    assert len(set(ids)) == n and all(UUID4_RE.match(i) for i in ids)
    assert all(fr.masked for fr, _ in fake.frames), "a client frame was not masked"
    keys = [k for _, k in fake.frames]
    assert len(set(keys)) == len(keys), "a masking key was used twice"
    assert pongs and all(p.payload == b"are you there" for p in pongs)
    assert len(closes) == 1 and closes[0].close_code == 1000
    assert fake.frames[-1][0].opcode == OP_CLOSE, "a frame after the close"
    assert fake.peer_closed == "eof", "the client did not close TCP cleanly"


def test_ws_client_fails_invalid_utf8_with_1007(tmp_path):
    def bad_text(srv, f, key):
        if f.opcode == OP_TEXT:
            srv.send(ws_frame(OP_TEXT, b'{"id":"\xc3\x28"}', mask=False))
        elif f.opcode == OP_CLOSE:
            srv.send(ws_frame(OP_CLOSE, f.payload, mask=False))
            srv.conn.shutdown(socket.SHUT_WR)

    f = write_messages(tmp_path / "msgs.json", 1)
    fake = FakeWsServer(bad_text)
    r = run_client(["ws", url(fake.port), f], T(30))
    fake.join()
    assert r.returncode == 3, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    closes = [fr for fr, _ in fake.frames if fr.opcode == OP_CLOSE]
    assert len(closes) == 1 and closes[0].close_code == 1007, fake.frames
    assert "UTF-8" in r.stderr and len(UUID_RE.findall(r.stdout)) == 1, r.stderr


def test_ws_client_server_close_reported(tmp_path):
    """The server closes first (4000 "bye") after one reply: echoed, reported, exit 3."""
    def close_after_one(srv, f, key):
        if f.opcode == OP_TEXT and sum(fr.opcode == OP_TEXT for fr, _ in srv.frames) == 1:
            srv.send(ws_frame(OP_TEXT, f.payload, mask=False)
                     + ws_frame(OP_CLOSE, ws_close_payload(4000, "bye"), mask=False))
        elif f.opcode == OP_CLOSE:
            srv.conn.shutdown(socket.SHUT_WR)

    f = write_messages(tmp_path / "msgs.json", 5)
    fake = FakeWsServer(close_after_one)
    r = run_client(["ws", url(fake.port), f], T(30))
    fake.join()
    assert r.returncode == 3, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert 'close 4000 "bye"' in r.stderr, r.stderr
    assert "received=1" in r.stdout and len(UUID_RE.findall(r.stdout)) == 4, r.stdout
    closes = [fr for fr, _ in fake.frames if fr.opcode == OP_CLOSE]
    assert len(closes) == 1 and closes[0].close_code == 4000, fake.frames
    assert fake.peer_closed == "eof"


BAD_ANSWERS = {
    "wrong_accept": lambda key: (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {ws_accept('x' + key)}\r\n\r\n").encode(),
    "no_upgrade": lambda key: (
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {ws_accept(key)}\r\n\r\n").encode(),
    "extension": lambda key: (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {ws_accept(key)}\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode(),
    "forbidden": lambda key: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
    "not_http": lambda key: b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    "folded_header": lambda key: (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n  more\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Accept: {ws_accept(key)}\r\n\r\n").encode(),
}


@pytest.mark.parametrize("kind", sorted(BAD_ANSWERS))
def test_ws_client_bad_upgrade_answer_exits_1(tmp_path, kind):
    f = write_messages(tmp_path / "msgs.json", 2)
    fake = FakeWsServer(lambda srv, fr, key: None, answer=BAD_ANSWERS[kind])
    r = run_client(["ws", url(fake.port), f], T(30))
    fake.join()
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert len(r.stderr.strip().splitlines()) == 1 and "cannot connect" in r.stderr, r.stderr
    if kind == "forbidden":
        assert "403 Forbidden" in r.stderr
    assert not fake.frames, "frames sent before the upgrade was accepted"
