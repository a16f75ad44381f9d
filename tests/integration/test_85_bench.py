# SPDX-License-Identifier: MIT
"""Layer 85: build/adieu-bench, the load generator (SPEC section 3 "adieu-bench", section 4
"adieu-bench --json"), against build/adieu-server --app echo.

Each run is short (about a second of load) and on 127.0.0.1. What the bench reports is
checked against what the server logged: its summary counters and one close line per
connection with the reason a proper close gives (normal for WebSocket, peer_eof for framed
TCP, shutdown during a drain)."""

import json
import re
import signal
import subprocess

import pytest

from conftest import BUILD_DIR, HOST, LOG_RE, T, WS_ANY, Server, free_port, parse_line, \
    server_args, wait_for_condition

BENCH_BIN = BUILD_DIR / "adieu-bench"

JSON_KEYS = {"protocol", "connections", "size", "pipeline", "duration_s", "messages",
             "messages_per_s", "mbytes_per_s", "latency_us", "errors"}
LATENCY_KEYS = {"p50", "p99", "p999", "max"}


def bench_argv(args):
    if not BENCH_BIN.exists():
        pytest.fail(f"{BENCH_BIN} does not exist: build it first (make build)")
    return [str(BENCH_BIN)] + [str(a) for a in args]


def run_bench(args, timeout):
    """Runs adieu-bench to its end; returns the CompletedProcess (text output)."""
    try:
        return subprocess.run(bench_argv(args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=timeout,
                              start_new_session=True)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"adieu-bench {args} still running after {timeout:.1f}s; "
                             f"stderr: {str(e.stderr)[-2000:]!r}")


def bench_json(args, timeout=None):
    """Runs adieu-bench --json; checks the exit code and that stdout is exactly one JSON
    object on one line with exactly the keys of SPEC section 4; returns it."""
    r = run_bench(list(args) + ["--json"], T(30) if timeout is None else timeout)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert r.stdout.endswith("\n") and r.stdout.count("\n") == 1, repr(r.stdout)
    d = json.loads(r.stdout)
    assert set(d) == JSON_KEYS, d
    assert set(d["latency_us"]) == LATENCY_KEYS, d
    assert d["protocol"] in ("ws", "frame")
    for k in ("connections", "size", "pipeline", "messages", "errors"):
        assert isinstance(d[k], int) and d[k] >= 0, (k, d)
    for k in ("duration_s", "messages_per_s", "mbytes_per_s"):
        assert isinstance(d[k], (int, float)) and d[k] >= 0, (k, d)
    lat = d["latency_us"]
    assert 0 <= lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat
    d["stderr"] = r.stderr
    return d


def stop_server(srv):
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(T(15)) == 0, srv.tail()
    summ = srv.summary()
    assert summ is not None, srv.tail()
    return summ


def reasons(srv, proto):
    return [c["reason"] for c in srv.close_lines() if c.get("proto") == proto]


ECHO_CASES = [
    # protocol, pipeline, size, extra flags
    ("ws", 1, 16, ["--binary"]),
    ("ws", 8, 16, ["--text"]),
    ("ws", 1, 1024, ["--text"]),
    ("ws", 8, 1024, ["--binary"]),
    ("frame", 1, 16, []),
    ("frame", 8, 1024, []),
    ("frame", 8, 16, ["--prefix-bytes", "4"]),
    ("frame", 1, 1024, ["--prefix-bytes", "4"]),
]


@pytest.mark.parametrize("proto,pipeline,size,extra", ECHO_CASES,
                         ids=[f"{p}-p{n}-{s}B{'-' + '-'.join(e).strip('-') if e else ''}"
                              for p, n, s, e in ECHO_CASES])
def test_echo_json_matches_the_server(start_server, proto, pipeline, size, extra):
    prefix = extra[1] if "--prefix-bytes" in extra else "2"
    if proto == "ws":
        srv = start_server(app="echo", ws=WS_ANY, frame="off")
        port = srv.ws_port
    else:
        srv = start_server("--prefix-bytes", prefix, app="echo")
        port = srv.port
    conns = 10
    d = bench_json([proto, "--port", port, "--connections", conns, "--size", size,
                    "--pipeline", pipeline, "--duration", "1", "--warmup", "0.2"] + extra)
    assert (d["protocol"], d["connections"], d["size"], d["pipeline"]) == \
        (proto, conns, size, pipeline), d
    assert d["errors"] == 0, d
    assert d["messages"] > 0, d
    assert 0.9 <= d["duration_s"] <= 1.5, d
    assert d["messages_per_s"] == pytest.approx(d["messages"] / d["duration_s"], rel=1e-3)
    assert d["mbytes_per_s"] == pytest.approx(d["messages"] * size / d["duration_s"] / 1e6,
                                              rel=1e-3, abs=1e-6)
    assert d["latency_us"]["max"] > 0, d
    summ = stop_server(srv)
    # The server also answered the warmup and the last echoes after the window.
    assert summ["messages_in"] >= d["messages"], (summ["line"], d)
    assert summ["messages_out"] >= d["messages"], (summ["line"], d)
    assert summ["messages_in"] == summ["messages_out"], summ["line"]
    # Every connection ended properly: our close 1000 answered, or our FIN then the server's.
    want = "normal" if proto == "ws" else "peer_eof"
    assert reasons(srv, proto) == [want] * conns, srv.tail()
    if proto == "ws":
        assert all(c.get("code") == "1000" for c in srv.close_lines()), srv.tail()


@pytest.fixture
def churn_server():
    """start_server for churn runs. Thousands of connections a second reuse client ports (at
    once when the server closes first, as with WebSocket), so start_server's "one close line
    per peer address" invariant cannot hold; its other invariants are checked here."""
    made = []

    def start(*extra, **kw):
        s = Server(server_args(*extra, **kw))
        made.append(s)
        return s

    yield start
    for s in made:
        s.kill()
    for s in made:
        lines = s.lines()
        bad = [l for l in lines if LOG_RE.match(l) is None]
        assert not bad, "malformed lines:\n" + "\n".join(bad[:20])
        errs = [l for l in lines if (parse_line(l) or {}).get("level") == "ERROR"]
        assert not errs, "ERROR lines:\n" + "\n".join(errs[:20])
        summ = s.summary()
        if summ is not None:
            assert summ["connections"] == len(s.close_lines()), summ["line"]


@pytest.mark.parametrize("proto", ["ws", "frame"])
def test_churn_counts_connections_closed_properly(churn_server, proto):
    start_server = churn_server
    if proto == "ws":
        srv = start_server(app="echo", ws=WS_ANY, frame="off")
        port = srv.ws_port
    else:
        srv = start_server(app="echo")
        port = srv.port
    slots = 4
    # No warmup: every cycle that ends inside the window is counted, so the server's close
    # lines are the bench's count plus at most one cycle per slot finishing after it.
    d = bench_json([proto, "--port", port, "--mode", "churn", "--connections", slots,
                    "--duration", "1", "--warmup", "0"])
    assert d["errors"] == 0, d
    assert d["messages"] > 0 and d["pipeline"] == 1, d
    summ = stop_server(srv)
    want = "normal" if proto == "ws" else "peer_eof"
    got = reasons(srv, proto)
    assert set(got) == {want}, sorted(set(got))
    assert d["messages"] <= len(got) <= d["messages"] + slots, (d["messages"], len(got))
    assert summ["connections"] == len(got)
    assert summ["messages_in"] == summ["messages_out"] == len(got), summ["line"]


@pytest.mark.parametrize("proto", ["ws", "frame"])
def test_idle_connections_closed_by_a_drain(start_server, tmp_path, proto):
    conns = 200
    if proto == "ws":
        srv = start_server(app="echo", ws=WS_ANY, frame="off")
        port = srv.ws_port
    else:
        srv = start_server(app="echo")
        port = srv.port
    err_path = tmp_path / "bench.err"
    with open(err_path, "w") as err:
        bench = subprocess.Popen(
            bench_argv([proto, "--port", port, "--mode", "idle", "--connections", conns,
                        "--duration", "60"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
            start_new_session=True)
    try:
        wait_for_condition(lambda: "connections open" in err_path.read_text(), T(15),
                           what="adieu-bench to open its connections")
        srv.signal(signal.SIGINT)
        assert srv.wait_exit(T(15)) == 0, srv.tail()
        # Every connection was closed by the server, so the bench ends well before 60 s.
        out, _ = bench.communicate(timeout=T(15))
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(timeout=10)
    err_text = err_path.read_text()
    assert bench.returncode == 0, f"exit {bench.returncode}\n{out}\n{err_text}"
    assert re.search(rf"^opened\s+{conns}$", out, re.M), out
    assert re.search(rf"^closed by server\s+{conns}$", out, re.M), out
    assert re.search(r"^errors\s+0$", out, re.M), out + err_text
    assert re.search(rf"^messages\s+{conns} \(connections opened\)$", out, re.M), out
    closes = [c for c in srv.close_lines() if c.get("proto") == proto]
    assert len(closes) == conns, srv.tail()
    for c in closes:
        assert c["reason"] == "shutdown", c["line"]
        if proto == "ws":
            assert c.get("code") == "1001", c["line"]
    assert srv.summary()["connections"] == conns


def test_port_list_spreads_connections(start_server):
    a = start_server(app="echo")
    b = start_server(app="echo")
    d = bench_json(["frame", "--port", f"{a.port},{b.port}", "--connections", 10,
                    "--threads", 2, "--pipeline", 4, "--duration", "0.5", "--warmup", "0.1"])
    assert d["errors"] == 0 and d["messages"] > 0, d
    for srv in (a, b):
        summ = stop_server(srv)
        assert summ["connections"] == 5, summ["line"]
        assert reasons(srv, "frame") == ["peer_eof"] * 5


@pytest.mark.parametrize("args", [
    [],
    ["tcp"],
    ["ws", "frame"],
    ["ws", "--bogus"],
    ["ws", "--connections", "0"],
    ["ws", "--connections"],
    ["ws", "--size", "-1"],
    ["frame", "--size", "70000"],
    ["ws", "--pipeline", "0"],
    ["ws", "--duration", "0"],
    ["ws", "--warmup", "x"],
    ["ws", "--port", "0"],
    ["ws", "--port", "1,,2"],
    ["ws", "--mode", "flood"],
    ["frame", "--prefix-bytes", "3"],
    ["ws", "--threads", "0"],
    ["ws", "--path", "no-slash"],
    ["ws", "--json=yes"],
])
def test_bad_flags_exit_2_with_usage(args):
    r = run_bench(args, T(10))
    assert r.returncode == 2, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout == ""
    assert r.stderr.startswith("adieu-bench: "), r.stderr
    assert "usage: adieu-bench ws|frame" in r.stderr


def test_help_exits_0():
    r = run_bench(["--help"], T(10))
    assert r.returncode == 0
    assert r.stdout.startswith("usage: adieu-bench ws|frame"), r.stdout
    for flag in ("--host", "--port", "--path", "--connections", "--size", "--pipeline",
                 "--duration", "--warmup", "--binary", "--text", "--prefix-bytes",
                 "--threads", "--mode", "--json"):
        assert flag in r.stdout, flag


@pytest.mark.parametrize("proto,mode", [("ws", "echo"), ("frame", "echo"), ("ws", "churn"),
                                        ("frame", "idle")])
def test_connection_refused_exits_1(proto, mode):
    port = free_port()
    r = run_bench([proto, "--host", HOST, "--port", port, "--mode", mode, "--connections", 5,
                   "--duration", "1", "--json"], T(15))
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert f"cannot connect to {HOST}:{port}" in lines[0] and "refused" in lines[0], lines
