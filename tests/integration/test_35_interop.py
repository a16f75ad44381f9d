# SPDX-License-Identifier: MIT
"""Layer 35: interop with real WebSocket clients nobody here wrote (issue 3): Python
`websockets` and `aiohttp` (Debian packages), Node `ws` (npm, pinned by package-lock.json)
and headless Chromium (Debian `chromium`, driven by `playwright-core`) opening WebSockets from
a page. Each does an echo round trip, a 1 MiB message, a ping, a clean close and a close
started by the server (the demo's `close`), against `adieu-server --app demo` with a
keep-alive (`--idle-timeout`), whose pings each client must answer.

Missing tools fail (never skip) with the command that installs them: CI installs them all.
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess

import pytest

from conftest import HOST, REPO, T, WS_ANY

INTEROP = REPO / "tests" / "interop"
NODE_MODULES = REPO / "node_modules"
CHROMIUM = os.environ.get("ADIEU_CHROMIUM", "/usr/bin/chromium")
MiB = 1 << 20
IDLE = T(1.0)  # --idle-timeout: the server pings a client silent that long


@pytest.fixture
def demo(start_server):
    return start_server("--idle-timeout", f"{IDLE:g}", app="demo", ws=WS_ANY, frame="off")


def url_of(srv):
    return f"ws://{HOST}:{srv.ws_port}/"


def check_close_lines(srv, want):
    """want: [(peer "ip:port" or None when unknown, reason)]. Every connection of the run is
    accounted for: one close line each, proto ws, code 1000, the expected reasons (so no
    idle_timeout: the client answered the keep-alive pings)."""
    closes = srv.close_lines()
    text = "\n".join(c["line"] for c in closes)
    assert len(closes) == len(want), text + "\n" + srv.tail()
    for peer, reason in want:
        if peer is not None:
            c = srv.close_lines(peer)
            assert len(c) == 1 and c[0]["reason"] == reason, f"{peer}: {text}"
    assert sorted(c["reason"] for c in closes) == sorted(r for _, r in want), text
    assert all(c.get("code") == "1000" and c["proto"] == "ws" for c in closes), text


def wait_for_closes(srv, n):
    srv.wait_for_lines(r" conn: closed ", n, T(10))


# --------------------------------------------------------------------------------------
# Python websockets (Debian python3-websockets 10.4: asyncio client)
# --------------------------------------------------------------------------------------
def test_python_websockets(demo):
    try:
        import websockets
        from websockets.exceptions import ConnectionClosedOK
    except ImportError:
        pytest.fail("python3-websockets is missing: apt-get install -y python3-websockets")

    async def run():
        async with websockets.connect(url_of(demo), max_size=4 * MiB, ping_interval=None,
                                      open_timeout=T(10), close_timeout=T(10)) as ws:
            session = "%s:%d" % ws.local_address[:2]
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), T(5)) == "hello/answer"
            big = os.urandom(MiB)
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), T(10)) == big
            text = "z" * MiB
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), T(10)) == text + "/answer"
            pong = await ws.ping(b"ping-from-websockets")
            await asyncio.wait_for(pong, T(5))
            # silent past the server's keep-alive ping and its pong timeout: websockets
            # answers the ping by itself, so the connection stays open
            await asyncio.sleep(2.5 * IDLE)
            await ws.send("after idle")
            assert await asyncio.wait_for(ws.recv(), T(5)) == "after idle/answer"
            await ws.close(1000, "bye")
            assert ws.close_code == 1000, ws.close_code
        async with websockets.connect(url_of(demo), open_timeout=T(10),
                                      close_timeout=T(10)) as ws:
            server_closed = "%s:%d" % ws.local_address[:2]
            await ws.send("close")
            with pytest.raises(ConnectionClosedOK):
                await asyncio.wait_for(ws.recv(), T(5))
            assert ws.close_code == 1000, ws.close_code
        return session, server_closed

    session, server_closed = asyncio.run(asyncio.wait_for(run(), T(40)))
    wait_for_closes(demo, 2)
    check_close_lines(demo, [(session, "normal"), (server_closed, "local")])


# --------------------------------------------------------------------------------------
# aiohttp (Debian python3-aiohttp): its keep-alive pings are seen with autoping=False
# --------------------------------------------------------------------------------------
def test_aiohttp(demo):
    try:
        import aiohttp
    except ImportError:
        pytest.fail("python3-aiohttp is missing: apt-get install -y python3-aiohttp")

    async def receive(ws, timeout):
        return await asyncio.wait_for(ws.receive(), timeout)

    async def run():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url_of(demo), autoping=False, heartbeat=None,
                                          max_msg_size=4 * MiB, timeout=T(10)) as ws:
                peer = "%s:%d" % ws.get_extra_info("sockname")[:2]
                await ws.send_str("hello")
                m = await receive(ws, T(5))
                assert m.type == aiohttp.WSMsgType.TEXT and m.data == "hello/answer", m
                big = os.urandom(MiB)
                await ws.send_bytes(big)
                m = await receive(ws, T(10))
                assert m.type == aiohttp.WSMsgType.BINARY and m.data == big, m.type
                text = "q" * MiB
                await ws.send_str(text)
                m = await receive(ws, T(10))
                assert m.type == aiohttp.WSMsgType.TEXT and m.data == text + "/answer", m.type
                await ws.ping(b"ping-from-aiohttp")
                m = await receive(ws, T(5))
                assert m.type == aiohttp.WSMsgType.PONG and m.data == b"ping-from-aiohttp", m
                # silence: the server's keep-alive ping arrives; we answer it ourselves
                m = await receive(ws, IDLE + T(2))
                assert m.type == aiohttp.WSMsgType.PING, m
                await ws.pong(m.data)
                await ws.send_str("after the ping")
                m = await receive(ws, T(5))
                assert m.type == aiohttp.WSMsgType.TEXT and m.data == "after the ping/answer", m
                await asyncio.wait_for(ws.close(code=1000, message=b"bye"), T(10))
                assert ws.close_code == 1000, ws.close_code
            async with session.ws_connect(url_of(demo), timeout=T(10)) as ws:
                peer2 = "%s:%d" % ws.get_extra_info("sockname")[:2]
                await ws.send_str("close")
                m = await receive(ws, T(5))
                assert m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), m
                assert ws.close_code == 1000, ws.close_code
        return peer, peer2

    session, server_closed = asyncio.run(asyncio.wait_for(run(), T(40)))
    wait_for_closes(demo, 2)
    check_close_lines(demo, [(session, "normal"), (server_closed, "local")])


# --------------------------------------------------------------------------------------
# Node ws and headless Chromium (tests/interop/*.mjs)
# --------------------------------------------------------------------------------------
def node_bin():
    node = shutil.which("node")
    if not node:
        pytest.fail("node is missing: apt-get install -y nodejs npm, then `npm ci` in the "
                    "repository root")
    return node


def need_node_module(name):
    if not (NODE_MODULES / name / "package.json").exists():
        pytest.fail(f"the npm package {name!r} is missing from {NODE_MODULES}: run `npm ci` "
                    f"in the repository root (package.json and package-lock.json pin it)")


def run_node(script, args, timeout):
    """Runs node script args in its own process group (killed whole if it overruns);
    returns (exit code, [JSON objects printed], stderr text)."""
    proc = subprocess.Popen([node_bin(), str(INTEROP / script)] + [str(a) for a in args],
                            cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # node and the browser it started
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"{script} still running after {timeout:.0f}s:\n"
                             f"{out.decode(errors='replace')}\n{err.decode(errors='replace')}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    objs = []
    for line in out.decode(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            objs.append(json.loads(line))
    return proc.returncode, objs, err.decode(errors="replace")


def test_node_ws(demo):
    need_node_module("ws")
    code, objs, err = run_node("ws_client.mjs", [url_of(demo), int(T(30) * 1000),
                                                 int(IDLE * 1000)], T(40))
    assert code == 0, f"exit {code}: {objs}\n{err[-3000:]}\nserver:\n{demo.tail()}"
    by_case = {o["case"]: o for o in objs}
    s, c = by_case["session"], by_case["server_close"]
    assert s["pong"] and s["code"] == 1000, s
    assert 0.8 * IDLE * 1000 <= s["server_ping_after_ms"] <= (IDLE + T(1)) * 1000, s
    assert c["code"] == 1000, c
    wait_for_closes(demo, 2)
    check_close_lines(demo, [(f"{HOST}:{s['port']}", "normal"), (f"{HOST}:{c['port']}", "local")])


def test_chromium(demo):
    need_node_module("playwright-core")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    code, objs, err = run_node("browser.mjs", [url_of(demo), int(T(45) * 1000),
                                               int(IDLE * 1000)], T(60))
    assert code == 0 and objs, f"exit {code}: {objs}\n{err[-3000:]}\nserver:\n{demo.tail()}"
    r = objs[-1]
    assert r.get("echo") and r.get("mib") and r.get("survived_idle"), r
    assert r["close"]["code"] == 1000 and r["close"]["clean"], r
    assert r["server_close"]["code"] == 1000 and r["server_close"]["clean"], r
    wait_for_closes(demo, 2)
    # the page's two sockets (their ports are not visible from the page)
    check_close_lines(demo, [(None, "normal"), (None, "local")])
