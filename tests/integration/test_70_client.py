# SPDX-License-Identifier: MIT
"""Layer 70: build/adieu-client against the server (SPEC section 3 "adieu-client",
section 4 "adieu-client exit codes")."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import CLIENT_BIN, HOST, SAMPLE_MSGS, T, frame, free_port, run_client, \
    server_socket_count, unframe, wait_for_condition

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


def client_args(port, file, prefix=None):
    args = ["frame", "--host", HOST, "--port", port]
    if prefix:
        args += ["--prefix-bytes", prefix]
    return args + [file]


def stop(srv):
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(T(10)) == 0
    return srv.summary()


@pytest.mark.parametrize("prefix", [None, 4])
def test_client_10000_messages(start_server, tmp_path, prefix):
    srv = start_server(*(["--prefix-bytes", prefix] if prefix else []))
    f = write_messages(tmp_path / "msgs.json", 10_000)
    r = run_client(client_args(srv.port, f, prefix), T(60))
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:{r.stdout[-2000:]}\n" \
                              f"stderr:{r.stderr[-2000:]}"
    assert "all responses received" in r.stdout
    summ = stop(srv)
    assert summ["messages_in"] == summ["messages_out"] == 10_000, summ["line"]
    assert summ["connections"] == 1
    c = srv.close_lines()
    assert len(c) == 1 and c[0]["reason"] == "peer_eof", c


def test_client_sample_file(server):
    if not SAMPLE_MSGS.exists():
        pytest.skip(f"sample file {SAMPLE_MSGS} is absent")
    r = run_client(client_args(server.port, SAMPLE_MSGS), T(30))
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "all responses received" in r.stdout
    summ = stop(server)
    assert summ["messages_in"] == summ["messages_out"] == 23, summ["line"]


def bytes_read(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar")


def test_client_reports_unanswered_when_server_stops(start_server, tmp_path):
    n = 200_000
    srv = start_server("--drain-timeout", "3")
    f = write_messages(tmp_path / "big.json", n)
    sockets_idle = server_socket_count(srv.pid)
    proc = subprocess.Popen([str(CLIENT_BIN)] + [str(a) for a in client_args(srv.port, f)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True)
    try:
        # Wait until the server has accepted the client's connection and read some 100 KB
        # of its requests (/proc/PID/io counts the bytes its read calls returned): the
        # replay is then mid-way.
        wait_for_condition(lambda: server_socket_count(srv.pid) > sockets_idle
                           or proc.poll() is not None, T(20),
                           what="the client to connect")
        read_before = bytes_read(srv.pid)
        wait_for_condition(lambda: bytes_read(srv.pid) - read_before > 100_000
                           or proc.poll() is not None, T(20),
                           what="the server to read the client's requests")
        assert proc.poll() is None, "the client ended before the server was stopped"
        srv.signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=T(30))
        except subprocess.TimeoutExpired:
            pytest.fail("adieu-client did not finish after the server stopped")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    assert srv.wait_exit(T(10)) == 0, srv.tail()
    summ = srv.summary()
    answered = summ["messages_out"]
    print(f"answered {answered} of {n}; client stdout head: {out[:300]!r}")
    assert 0 < answered < n, summ["line"]
    assert proc.returncode == 3, f"exit {proc.returncode}\nstdout:{out[-2000:]}\n" \
                                 f"stderr:{err[-2000:]}"
    assert "all responses received" not in out
    ids = UUID_RE.findall(out + err)
    assert ids, f"no unanswered ids listed:\nstdout:{out[-2000:]}\nstderr:{err[-2000:]}"
    not_v4 = [i for i in ids if not UUID4_RE.match(i)]
    assert not not_v4, f"ids that are not UUID v4: {not_v4[:5]}"
    # every id the server did not answer is listed, each once: no reply it wrote was lost
    assert len(set(ids)) == len(ids) == n - answered, (len(set(ids)), len(ids), n - answered)
    assert "Traceback" not in err and "Segmentation" not in err
    # the server answered what it read, then closed gracefully
    c = srv.close_lines()
    assert len(c) == 1 and c[0]["reason"] == "shutdown", c


def test_client_cannot_connect_exits_1(tmp_path):
    f = write_messages(tmp_path / "msgs.json", 3)
    r = run_client(client_args(free_port(), f), T(30))
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "all responses received" not in r.stdout
    assert r.stderr.strip(), "no message saying why"


BAD_FILES = {
    "missing": None,
    "empty": "",
    "not_json": "[{\"amount\": 10,",
    "not_array": '{"amount":10}',
    "array_of_numbers": "[1, 2, 3]",
    "trailing_garbage": '[{"amount":10}] xyz',
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_client_bad_file_exits_2(server, tmp_path, kind):
    f = tmp_path / "bad.json"
    if BAD_FILES[kind] is not None:
        f.write_text(BAD_FILES[kind])
    r = run_client(client_args(server.port, f), T(30))
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "all responses received" not in r.stdout
    assert r.stderr.strip(), "no message saying why"
    summ = stop(server)
    assert summ["messages_in"] == 0, summ["line"]


@pytest.mark.parametrize("args", [
    ["frame", "--host", HOST, "--port", "1", "--prefix-bytes", "3", "FILE"],
    ["frame", "--no-such-flag", "FILE"],
    ["carrier-pigeon", "FILE"],
    ["frame", "--host", HOST, "--port", "1"],  # no FILE
], ids=["prefix3", "unknown_flag", "unknown_mode", "no_file"])
def test_client_bad_flags_exit_2(tmp_path, args):
    f = write_messages(tmp_path / "msgs.json", 3)
    r = run_client([str(f) if a == "FILE" else a for a in args], T(30))
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"


class FakeServer:
    """A framed server in a thread that reads n requests and hands them to a policy:
    policy(requests) -> list of payloads to send back (in that order); then, if close is
    set, closes; otherwise keeps the connection open until stop()."""

    def __init__(self, n, policy, close=True, prefix=2):
        self.n = n
        self.policy = policy
        self.close_after = close
        self.prefix = prefix
        self.requests = []
        self.peer_closed = None   # "eof" or "reset" once the client closes
        self.error = None
        self.lsock = socket.socket()
        self.lsock.bind((HOST, 0))
        self.lsock.listen(1)
        self.lsock.settimeout(T(20))
        self.port = self.lsock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            conn, _ = self.lsock.accept()
            conn.settimeout(0.2)
            buf = b""
            deadline = time.monotonic() + T(30)
            while len(self.requests) < self.n and time.monotonic() < deadline:
                try:
                    data = conn.recv(1 << 16)
                except TimeoutError:
                    continue
                if not data:
                    break
                buf += data
                msgs, buf = unframe(buf, self.prefix)
                self.requests += msgs
            conn.sendall(b"".join(frame(p, self.prefix) for p in self.policy(self.requests)))
            if self.close_after:
                conn.shutdown(socket.SHUT_WR)
            # wait for the client to close its side
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    data = conn.recv(1 << 16)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    self.peer_closed = "reset"
                    break
                if not data:
                    self.peer_closed = "eof"
                    break
            conn.close()
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.lsock.close()

    def stop(self):
        self._stop.set()
        self.thread.join(T(10))


def ids_of(requests):
    return [json.loads(r)["id"] for r in requests]


def test_client_sends_ids_and_matches_replies_by_id(tmp_path):
    """Each object goes out with a fresh UUID v4 "id" and its own fields; replies in any
    order are matched by id."""
    n = 50
    f = write_messages(tmp_path / "msgs.json", n)
    fake = FakeServer(n, lambda reqs: list(reversed(reqs)))
    r = run_client(client_args(fake.port, f), T(30))
    fake.stop()
    assert fake.error is None, fake.error
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "all responses received" in r.stdout
    assert len(fake.requests) == n
    ids = ids_of(fake.requests)
    assert len(set(ids)) == n and all(UUID4_RE.match(i) for i in ids), ids[:3]
    for i, req in enumerate(fake.requests):
        obj = json.loads(req)
        want = json.loads(OBJECTS[i % len(OBJECTS)])
        assert {k: v for k, v in obj.items() if k != "id"} == want


def test_client_lists_exactly_the_unanswered_ids(tmp_path):
    n = 40
    f = write_messages(tmp_path / "msgs.json", n)
    fake = FakeServer(n, lambda reqs: reqs[::2])  # answer every other one, then FIN
    r = run_client(client_args(fake.port, f), T(30))
    fake.stop()
    assert fake.error is None, fake.error
    assert r.returncode == 3, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    listed = set(UUID_RE.findall(r.stdout))
    want = set(ids_of(fake.requests[1::2]))
    assert listed == want, (sorted(listed - want)[:3], sorted(want - listed)[:3])
    assert fake.peer_closed == "eof", "the client did not close its connection cleanly"


def test_client_timeout_without_progress(tmp_path):
    n = 10
    f = write_messages(tmp_path / "msgs.json", n)
    fake = FakeServer(n, lambda reqs: reqs[:3], close=False)  # 3 answers, then silence
    t0 = time.monotonic()
    r = run_client(client_args(fake.port, f)[:-1] + ["--timeout", "1", str(f)], T(30))
    elapsed = time.monotonic() - t0
    fake.stop()
    assert r.returncode == 3, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert 0.9 <= elapsed <= T(5), f"gave up after {elapsed:.2f}s with --timeout 1"
    assert set(UUID_RE.findall(r.stdout)) == set(ids_of(fake.requests[3:]))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_client_interrupted_closes_properly(tmp_path, sig, code):
    n = 5
    f = write_messages(tmp_path / "msgs.json", n)
    fake = FakeServer(n, lambda reqs: [], close=False)  # never answers
    proc = subprocess.Popen([str(CLIENT_BIN)] + [str(a) for a in client_args(fake.port, f)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True)
    try:
        wait_for_condition(lambda: len(fake.requests) == n or proc.poll() is not None,
                           T(10), what="the client's requests")
        assert proc.poll() is None
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=T(5))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    wait_for_condition(lambda: fake.peer_closed, T(5), what="the client to close")
    fake.stop()
    assert proc.returncode == code, f"exit {proc.returncode}\n{out}\n{err}"
    assert fake.peer_closed == "eof", "interrupted client reset its connection"
    assert "Traceback" not in err and "Sanitizer" not in err
