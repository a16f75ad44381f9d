# SPDX-License-Identifier: MIT
"""Layer 10: flags, startup failures, log format, an idle server's shutdown (SPEC section 3,
"Exit codes"; section 4 "Log lines", "More flags")."""

import calendar
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import (HOST, LOG_RE, SERVER_BIN, T, Peer, parse_line, run_server_to_exit,
                      summary_of)

BASE = ["--frame", f"{HOST}:0", "--ws", "off"]


@pytest.mark.parametrize("bad", [
    ["--no-such-flag"],
    ["--app", "nope"],
    ["--prefix-bytes", "3"],
    ["--log-level", "loud"],
    ["--drain-timeout", "soon"],
    ["--max-connections", "many"],
    ["--drain-timeout", "-1"],
    ["--idle-timeout", "-5"],
    ["--keepalive", "-1"],
    ["--keepalive", "often"],
    ["--prefix-bytes", "0"],
    ["--max-message", "1x"],
    ["--frame", "127.0.0.1:99999"],
    ["--frame", "127.0.0.1"],
    ["--ws", "bogus"],
    ["unexpected-positional"],
    ["--frame"],                       # flag without its value
], ids=lambda a: "_".join(a).strip("-").replace("--", "").replace(".", "_"))
def test_bad_flag_exits_2_with_usage(bad):
    code, out, err = run_server_to_exit(BASE + bad if bad != ["--frame"] else
                                        ["--ws", "off", "--frame"], T(10))
    assert code == 2, f"exit {code}, stderr:\n{err}"
    assert re.search(r"usage", err, re.I), f"no usage text on stderr:\n{err}"
    assert "listening" not in err


def test_both_listeners_off_exits_2():
    code, out, err = run_server_to_exit(["--frame", "off", "--ws", "off"], T(10))
    assert code == 2, f"exit {code}, stderr:\n{err}"
    assert re.search(r"usage", err, re.I), f"no usage text on stderr:\n{err}"
    assert "listening" not in err


def test_port_in_use_exits_1_with_one_clear_line():
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, out, err = run_server_to_exit(["--frame", f"{HOST}:{port}", "--ws", "off"],
                                            T(10))
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 1, f"exit {code}, stderr:\n{err}"
    assert "listening" not in err
    # One clear line: the failure is stated once, with the address and the cause.
    failures = [l for l in lines if (parse_line(l) or {}).get("level") in ("WARN", "ERROR")]
    assert len(failures) == 1, f"expected one failure line, got:\n{err}"
    line = failures[0]
    assert LOG_RE.match(line), f"not a log line: {line!r}"
    assert str(port) in line, f"the line does not name the port: {line!r}"
    assert re.search(r"in use|EADDRINUSE", line, re.I), f"the line does not say why: {line!r}"
    assert "usage" not in err.lower(), "a startup failure is not a usage error"


@pytest.mark.parametrize("sig,name", [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")])
def test_idle_server_stops_fast_on_signal(start_server, sig, name):
    srv = start_server()
    t0 = time.monotonic()
    srv.signal(sig)
    code = srv.wait_exit(T(5))
    elapsed = time.monotonic() - t0
    assert code == 0, f"exit {code}\n{srv.tail()}"
    assert elapsed < T(1.0), f"an idle server took {elapsed:.2f}s to stop"
    lines = srv.lines()
    draining = [parse_line(l) for l in lines if " shutdown: draining" in l]
    assert len(draining) == 1, srv.tail()
    d = draining[0]
    assert d["level"] == "INFO"
    assert d.get("signal") == name
    assert d.get("connections") == "0"
    assert d.get("deadline_ms") == "10000"
    summ = summary_of(lines)
    assert summ is not None, f"no summary line:\n{srv.tail()}"
    assert summary_of(lines[-1:]) is not None, "the summary is not the last line"
    assert summ["level"] == "INFO"
    assert (summ["connections"], summ["messages_in"], summ["messages_out"]) == (0, 0, 0)


def test_drain_deadline_flag_is_reported(start_server):
    srv = start_server("--drain-timeout", "3")
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(T(5)) == 0
    srv.wait_for_line(r" INFO shutdown: draining signal=SIGINT connections=0 deadline_ms=3000",
                      T(1))


def test_every_line_is_a_log_line(start_server, peers):
    srv = start_server()
    p = peers(srv.port)
    assert p.request(b'[1]') == b"[1]"
    p.close()
    srv.wait_close_line(p.addr, T(5))
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(T(5)) == 0
    lines = srv.lines()
    assert lines
    for line in lines:
        assert LOG_RE.match(line), f"malformed log line: {line!r}"
    # RFC 3339 UTC with milliseconds, and the time is now (not local time, not epoch).
    now = time.time()
    d = parse_line(lines[0])
    ts = calendar.timegm(time.strptime(d["time"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(ts - now) < 120, f"timestamp {d['time']} is not the current UTC time"


@pytest.mark.parametrize("ws", ["off", f"{HOST}:0"], ids=["ws_off", "ws_addr"])
def test_ws_flag_listens_and_framed_works(start_server, ws):
    """--ws ADDR adds the WebSocket + HTTP listener (its own listening line, no warning);
    --ws off leaves the framed listener alone."""
    srv = start_server(ws=ws)
    p = Peer(srv.port)
    try:
        assert p.request(b'{"a": 1}') == b'{"a":1}'
    finally:
        p.close()
    srv.wait_close_line(p.addr, T(5))
    lines = srv.lines()
    assert not [l for l in lines if (parse_line(l) or {}).get("level") == "WARN"], lines
    ws_lines = [l for l in lines if " listening proto=ws " in l]
    if ws == "off":
        assert not ws_lines
    else:
        assert len(ws_lines) == 1 and re.search(r"addr=127\.0\.0\.1:[1-9]\d* ", ws_lines[0])
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(T(5)) == 0


@pytest.mark.parametrize("flags", [
    ["--handshake-timeout", "5"],
    ["--max-header", "4096"],
    ["--subprotocol", "chat", "--subprotocol", "superchat"],
    ["--max-connections", "10"],
    ["--idle-timeout", "0"],
    ["--keepalive", "0"],
    ["--keepalive", "30"],
    ["--drain-timeout", "0"],
    ["--max-message", "1024"],
    ["--prefix-bytes", "2"],
    ["--log-level", "info"],
], ids=lambda f: f[0].strip("-"))
def test_documented_flags_are_accepted(start_server, flags):
    srv = start_server(*flags)
    p = Peer(srv.port)
    try:
        assert p.request(b"[true]") == b"[true]"
    finally:
        p.close()
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(T(5)) == 0


def test_log_level_debug_logs_each_message(start_server):
    srv = start_server("--log-level", "debug")
    p = Peer(srv.port)
    try:
        for i in range(3):
            assert p.request(b"[%d]" % i) == b"[%d]" % i
    finally:
        p.close()
    srv.wait_close_line(p.addr, T(5))
    debug = [l for l in srv.lines() if (parse_line(l) or {}).get("level") == "DEBUG"]
    assert len(debug) >= 3, "\n".join(srv.lines())


def test_log_level_info_hides_debug(server):
    p = Peer(server.port)
    try:
        assert p.request(b"[1]") == b"[1]"
    finally:
        p.close()
    server.wait_close_line(p.addr, T(5))
    assert not [l for l in server.lines() if " DEBUG " in l[:35]]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_right_after_listening_line_is_graceful(sig):
    """The listening line promises a running server: a signal sent the moment it appears
    (a supervisor stopping a just-started service) gets the graceful path, never the
    default action of the signal."""
    results = []
    for _ in range(100):
        proc = subprocess.Popen([str(SERVER_BIN)] + BASE, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + T(10)
            while time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line or b" server: listening " in line:
                    break
            assert line, "the server exited before listening"
            os.kill(proc.pid, sig)
            rest = proc.stderr.read().decode("utf-8", "replace")
            code = proc.wait(timeout=T(5))
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            proc.stderr.close()
        results.append((code, " shutdown: done " in rest))
    bad = [r for r in results if r != (0, True)]
    assert not bad, (f"{len(bad)} of {len(results)} servers signalled right after their "
                     f"listening line did not shut down gracefully "
                     f"(exit code, summary printed): {bad[:5]}")
