# SPDX-License-Identifier: MIT
"""The examples of examples/, black-box: the exit-stack server releases every resource it
acquired on every path (clean close, reset, SIGKILLed client, graceful drain, deadline and
forced stop), and the JSON echo server answers and drains."""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import BUILD_DIR, PYTHON, T, free_port, frame, unframe, wait_for_condition

EXIT_STACK = BUILD_DIR / "examples" / "exit_stack"
JSON_ECHO = BUILD_DIR / "examples" / "json_echo"


class Example:
    def __init__(self, path, *args):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(path), f"127.0.0.1:{self.port}", *[str(a) for a in args]],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        line = self.proc.stdout.readline().decode()
        assert "listening" in line, line

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=T(5))

    def stop(self, sig, timeout):
        self.proc.send_signal(sig)
        return self.finish(timeout)

    def finish(self, timeout):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, out.decode(), err.decode()


def counts(out):
    m = re.search(r"acquired=(\d+) released=(\d+) out_of_order=(\d+) loop_close=(-?\d+)", out)
    assert m, out
    return tuple(int(x) for x in m.groups())


def roundtrip(sock, payload):
    sock.sendall(frame(payload))
    buf = b""
    while True:
        msgs, _ = unframe(buf)
        if msgs:
            return msgs[0]
        chunk = sock.recv(65536)
        assert chunk, "EOF before the reply"
        buf += chunk


def wait_closed(sock):
    sock.settimeout(T(5))
    while sock.recv(65536):
        pass


@pytest.mark.parametrize("stop", ["graceful", "deadline", "forced"])
def test_exit_stack_releases_everything_on_every_path(stop):
    ex = Example(EXIT_STACK, 1 if stop == "deadline" else 10)
    # Ends of every kind before the stop: clean close, reset, a client process SIGKILLed.
    s = ex.connect()
    assert roundtrip(s, b"a") == b"a"
    s.close()
    r = ex.connect()
    assert roundtrip(r, b"b") == b"b"
    r.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    r.close()
    child = subprocess.Popen([PYTHON, "-c", (
        "import socket,struct,time\n"
        f"s=socket.create_connection(('127.0.0.1',{ex.port}))\n"
        "while True:\n s.sendall(struct.pack('>H',5)+b'hello'); time.sleep(0.01)\n")])
    # Connections still open at the stop: one that closes when told, one that never does.
    polite = [ex.connect() for _ in range(3)]
    for p in polite:
        assert roundtrip(p, b"x") == b"x"
    holdout = ex.connect()
    assert roundtrip(holdout, b"y") == b"y"
    time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()

    ex.proc.send_signal(signal.SIGINT)
    for p in polite:
        wait_closed(p)  # the server's FIN; closing ours ends its lingering read
        p.close()
    if stop == "forced":
        time.sleep(0.2)
        ex.proc.send_signal(signal.SIGINT)
    code, out, _ = ex.finish(T(15))
    holdout.close()
    acquired, released, out_of_order, loop_close = counts(out)
    assert acquired == 3 * 7
    assert released == acquired
    assert out_of_order == 0
    assert loop_close == 0
    assert code == (130 if stop == "forced" else 0)


def test_json_echo_answers_and_drains():
    ex = Example(JSON_ECHO)
    s = ex.connect()
    reply = json.loads(roundtrip(s, b'{ "amount": 10, "card": "1213212312" }'))
    assert reply == {"amount": 10, "card": "1213212312"}
    err = json.loads(roundtrip(s, b"{nope"))
    assert err["error"] == "invalid json"
    ex.proc.send_signal(signal.SIGINT)
    wait_closed(s)
    s.close()
    code, out, _ = ex.finish(T(10))
    assert code == 0
    assert re.search(r"closed 127\.0\.0\.1:\d+: shutdown", out), out


WS_LOGGER = BUILD_DIR / "examples" / "ws_logger"
WS_ANSWER = BUILD_DIR / "examples" / "ws_answer"


def raw_upgrade(port):
    """A WebSocket connection made by hand, to leave it rudely."""
    s = socket.create_connection(("127.0.0.1", port), timeout=T(5))
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_ws_logger_logs_every_kind_of_exit():
    import asyncio
    import websockets

    ex = Example(WS_LOGGER)

    async def clean():
        async with websockets.connect(f"ws://127.0.0.1:{ex.port}/") as ws:
            await ws.send("one")
            await ws.send(b"two")

    asyncio.run(clean())
    rude = raw_upgrade(ex.port)
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rude.close()
    polite = raw_upgrade(ex.port)
    time.sleep(0.2)
    ex.proc.send_signal(signal.SIGINT)
    data = b""
    polite.settimeout(T(5))
    while True:  # the server's close frame, then its FIN once we answer
        chunk = polite.recv(4096)
        if not chunk:
            break
        data += chunk
        if data[:1] == b"\x88" and len(data) >= 4:
            assert struct.unpack(">H", data[2:4])[0] == 1001
            polite.sendall(b"\x88\x82abcd" + bytes(a ^ b for a, b in zip(b"\x03\xe8", b"ab")))
    polite.close()
    code, out, _ = ex.finish(T(10))
    assert code == 0
    assert len(re.findall(r"^connect ", out, re.M)) == 3, out
    assert "message 127.0.0.1:" in out and " text one" in out and " binary two" in out, out
    reasons = re.findall(r"disconnect \S+ reason=(\w+) code=(\d+)", out)
    assert sorted(reasons) == sorted([("normal", "1000"), ("peer_reset", "1006"),
                                      ("shutdown", "1001")]), out


def test_ws_answer_answers_and_closes_on_request():
    import asyncio
    import websockets

    ex = Example(WS_ANSWER)

    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{ex.port}/") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi/answer"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
            await ws.send("close")
            try:
                await ws.recv()
                raise AssertionError("the server did not close")
            except websockets.exceptions.ConnectionClosedOK as e:
                return e.rcvd.code, e.rcvd.reason

    assert asyncio.run(talk()) == (1000, "bye")
    code, _, _ = ex.stop(signal.SIGINT, T(10))
    assert code == 0
