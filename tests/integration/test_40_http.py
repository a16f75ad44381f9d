# SPDX-License-Identifier: MIT
"""Layer 40: plain HTTP on the WebSocket port (SPEC P3; section 4 "Metrics", "HTTP answers on
the WebSocket port"): /healthz, /metrics in the Prometheus text format, the 4xx answers, and
the counting the metrics promise."""

import re
import signal
import socket

import pytest

from conftest import (HOST, OP_TEXT, REASON_LEVEL, T, WS_ANY, Metrics, http_get, http_request,
                      read_http_response, scrape, wait_for_condition, ws_upgrade_request)

FAMILIES = {
    "adieu_connections_open": "gauge",
    "adieu_connections_opened_total": "counter",
    "adieu_connections_closed_total": "counter",
    "adieu_messages_received_total": "counter",
    "adieu_messages_sent_total": "counter",
    "adieu_bytes_received_total": "counter",
    "adieu_bytes_sent_total": "counter",
    "adieu_draining": "gauge",
}
PER_PROTO = [f for f in FAMILIES if f != "adieu_draining"]


@pytest.fixture
def srv(start_server):
    """The demo app on both listeners."""
    return start_server(app="demo", ws=WS_ANY)


def closed_total(m, reason, proto="ws"):
    return m.get("adieu_connections_closed_total", proto=proto, reason=reason)


def check_response_closes(r):
    assert "close" in r.header_tokens("Connection"), f"no Connection: close: {r!r}"
    clen = r.header("Content-Length")
    assert clen is None or int(clen) == len(r.body), r


# --------------------------------------------------------------------------------------
# /healthz
# --------------------------------------------------------------------------------------
def test_healthz_ok_then_closed(srv):
    with socket.create_connection((HOST, srv.ws_port), timeout=T(5)) as s:
        addr = "%s:%d" % s.getsockname()
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n"
                  .encode())
        r = read_http_response(s, T(5))  # waits for the server's close: no keep-alive
    assert r.status == 200, r
    assert r.body.strip() == b"ok" and r.body in (b"ok", b"ok\n"), r
    check_response_closes(r)
    line = srv.wait_close_line(addr, T(5))
    assert line["proto"] == "ws" and line["reason"] == "http_done", line["line"]
    assert line["level"] == "INFO", line["line"]


def test_healthz_many_times(srv):
    for _ in range(50):
        r = http_get(srv.ws_port, "/healthz", T(5))
        assert r.status == 200 and r.body.strip() == b"ok", r
    assert srv.running()
    wait_for_condition(lambda: len(srv.close_lines()) == 50, T(5), what="50 close lines")
    assert {c["reason"] for c in srv.close_lines()} == {"http_done"}


def test_healthz_with_ws_only(start_server):
    srv = start_server(app="echo", ws=WS_ANY, frame="off")
    r = http_get(srv.ws_port, "/healthz", T(5))
    assert r.status == 200 and r.body.strip() == b"ok", r


# --------------------------------------------------------------------------------------
# /metrics: Prometheus text format 0.0.4
# --------------------------------------------------------------------------------------
def test_metrics_format(srv):
    r = http_get(srv.ws_port, "/metrics", T(5))
    assert r.status == 200, r
    check_response_closes(r)
    ctype = r.header("Content-Type") or ""
    assert re.match(r"text/plain(;|$)", ctype) and "version=0.0.4" in ctype.replace(" ", ""), (
        f"Content-Type {ctype!r}")
    text = r.body.decode("utf-8")
    assert text.endswith("\n"), "the exposition must end with a newline"
    m = Metrics(text)
    assert not m.errors, "\n".join(m.errors) + "\n" + text
    for name, typ in FAMILIES.items():
        assert name in m.help and m.help[name].strip(), f"no # HELP for {name}"
        assert m.type.get(name) == typ, f"# TYPE of {name}: {m.type.get(name)} (want {typ})"
    # Every family that has samples has HELP and TYPE, given before its first sample.
    lines = text.split("\n")
    for name in m.order:
        assert name in m.help and name in m.type, f"{name} has samples but no HELP/TYPE"
        first = next(i for i, l in enumerate(lines) if l.startswith(name + "{")
                     or l.startswith(name + " "))
        help_at = lines.index(next(l for l in lines if l.startswith(f"# HELP {name} ")))
        type_at = lines.index(next(l for l in lines if l.startswith(f"# TYPE {name} ")))
        assert help_at < first and type_at < first, f"HELP/TYPE of {name} after its samples"
        # a family's samples are contiguous
        idx = [i for i, l in enumerate(lines) if l.startswith(name + "{")
               or l.startswith(name + " ")]
        assert idx == list(range(idx[0], idx[0] + len(idx))), f"{name} samples not together"
    # labels: proto on every per-protocol family, plus reason on the closed totals
    for name in PER_PROTO:
        series = m.series(name)
        assert series, f"no samples of {name}"
        for labels in series:
            d = dict(labels)
            want = {"proto", "reason"} if name == "adieu_connections_closed_total" else {"proto"}
            assert set(d) == want, f"{name} labels {d}"
            assert d["proto"] in ("frame", "ws"), d
            if "reason" in d:
                assert d["reason"] in REASON_LEVEL, f"unknown reason {d['reason']}"
        assert {dict(l)["proto"] for l in series} == {"frame", "ws"}, (name, series)
    assert m.get("adieu_draining") == 0
    for (name, _), v in m.samples.items():
        assert v >= 0 and v == int(v), f"{name} = {v}"


def test_scrape_counts_itself_as_an_open_ws_connection(srv, ws_peers, peers):
    m = scrape(srv.ws_port, T(5))
    assert m.get("adieu_connections_open", proto="ws") == 1, m.text
    assert m.get("adieu_connections_open", proto="frame") == 0, m.text
    ws = [ws_peers(srv.ws_port) for _ in range(3)]
    fr = peers(srv.port)
    assert fr.request(b"[1]") == b"[1]"
    for w in ws:
        assert w.request("x") == "x/answer"
    m = scrape(srv.ws_port, T(5))
    assert m.get("adieu_connections_open", proto="ws") == 4, m.text
    assert m.get("adieu_connections_open", proto="frame") == 1, m.text


def test_metrics_count_connections_messages_and_reasons(srv, ws_peers, peers):
    port = srv.ws_port
    # two upgraded connections: one closes normally after 3 messages, one breaks the rules
    a = ws_peers(port)
    for i in range(3):
        assert a.request(f"m{i}") == f"m{i}/answer"
    a.send_close(1000)
    a.expect_close(T(5), reply=False)
    a.expect_eof(T(5))
    b = ws_peers(port)
    b.send_frame(OP_TEXT, b"\xff")
    assert b.expect_close(T(5), strict=False).close_code == 1007
    # a refused upgrade and a health check
    r, _ = http_request(port, f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode(), T(5))
    assert r.status == 426, r
    assert http_get(port, "/healthz", T(5)).status == 200
    # a framed exchange
    f = peers(srv.port)
    assert f.request(b'{"k": [1, 2]}') == b'{"k":[1,2]}'
    f.close()
    wait_for_condition(lambda: len(srv.close_lines()) == 5, T(5), what="5 close lines")

    m = scrape(port, T(5))
    # opened: a, b, the 426, the health check and this scrape
    assert m.get("adieu_connections_opened_total", proto="ws") == 5, m.text
    assert m.get("adieu_connections_opened_total", proto="frame") == 1, m.text
    assert closed_total(m, "normal") == 1
    assert closed_total(m, "invalid_utf8") == 1
    assert closed_total(m, "bad_request") == 1
    assert closed_total(m, "http_done") == 1
    assert closed_total(m, "peer_eof", "frame") == 1
    assert m.total("adieu_connections_closed_total", proto="ws") == 4, m.text
    assert m.get("adieu_messages_received_total", proto="ws") == 3, m.text
    assert m.get("adieu_messages_sent_total", proto="ws") == 3, m.text
    assert m.get("adieu_messages_received_total", proto="frame") == 1, m.text
    assert m.get("adieu_messages_sent_total", proto="frame") == 1, m.text
    assert m.get("adieu_bytes_received_total", proto="frame") == 2 + len(b'{"k": [1, 2]}')
    assert m.get("adieu_bytes_sent_total", proto="frame") == 2 + len(b'{"k":[1,2]}')
    # ws bytes include the HTTP requests and answers; at least the frames themselves
    assert m.get("adieu_bytes_received_total", proto="ws") >= 3 * (6 + 2) + 6
    assert m.get("adieu_bytes_sent_total", proto="ws") >= 3 * (2 + len("m0/answer"))
    # the next scrape sees this one closed
    m2 = wait_for_condition(
        lambda: (lambda x: x if closed_total(x, "http_done") >= 2 else None)(
            scrape(port, T(5))), T(5), what="the scrape's own close counted")
    assert closed_total(m2, "http_done") == 2, m2.text
    for proto in ("frame", "ws"):
        opened = m2.get("adieu_connections_opened_total", proto=proto)
        closed = m2.total("adieu_connections_closed_total", proto=proto)
        assert opened - closed == m2.get("adieu_connections_open", proto=proto), (proto, m2.text)


def test_metrics_many_scrapes_stay_consistent(srv):
    for i in range(30):
        m = scrape(srv.ws_port, T(5))
        assert m.get("adieu_connections_opened_total", proto="ws") == i + 1, m.text
        assert m.get("adieu_connections_open", proto="ws") == 1, m.text
        # earlier scrapes are all closed (each answer's connection closed before the next)
        assert closed_total(m, "http_done") in (i - 1, i), m.text


# --------------------------------------------------------------------------------------
# The 4xx answers as HTTP (exact statuses per case are in test_30)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/chat", "/favicon.ico", "/healthz/x", "/metricsx"])
def test_plain_get_on_any_other_path_is_426(srv, path):
    r = http_get(srv.ws_port, path, T(5))
    assert r.status == 426, r
    assert (r.header("Upgrade") or "").lower() == "websocket", r
    check_response_closes(r)


@pytest.mark.parametrize("req,status", [
    (lambda port: ws_upgrade_request(port, method="POST"), 400),
    (lambda port: ws_upgrade_request(port, version="7"), 426),
    (lambda port: ws_upgrade_request(port, headers=[("X-Big", "b" * 10000)]), 431),
    (lambda port: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40 + b"\r\n\r\n",
     400),
], ids=["post_400", "version_426", "headers_431", "tls_hello_400"])
def test_error_answers_are_well_formed_and_close(srv, req, status):
    r, addr = http_request(srv.ws_port, req(srv.ws_port), T(5))
    assert r.status == status, r
    assert r.raw.startswith(b"HTTP/1.1 %d " % status), r
    check_response_closes(r)
    if status == 426 and b"version" in r.raw.lower():
        assert r.header("Sec-WebSocket-Version") == "13", r
    line = srv.wait_close_line(addr, T(5))
    assert line["proto"] == "ws"
    assert line["reason"] == ("too_big" if status == 431 else "bad_request"), line["line"]
    assert line["level"] == "WARN", line["line"]


def test_request_line_over_max_header_is_431(srv):
    r, addr = http_request(srv.ws_port, ("GET /" + "a" * 9000 + " HTTP/1.1\r\nHost: x\r\n\r\n")
                           .encode(), T(5))
    assert r.status == 431, r
    check_response_closes(r)
    assert srv.wait_close_line(addr, T(5))["reason"] == "too_big"


def test_pipelined_http_requests_get_one_answer(srv):
    """Keep-alive is not offered: two requests in one write get one answer, then the
    close (a FIN, not a reset that could destroy the answer)."""
    req = f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    r, addr = http_request(srv.ws_port, req * 2, T(5))
    assert r.status == 200 and r.body.strip() == b"ok", r
    assert b"HTTP/1.1" not in r.body, r
    assert srv.wait_close_line(addr, T(5))["reason"] == "http_done"


def test_summary_counts_http_and_ws_connections(srv, ws_peers, peers):
    """connections= in the shutdown summary is every TCP connection accepted, health checks
    and refused upgrades included (one close line each: checked at teardown too)."""
    port = srv.ws_port
    assert http_get(port, "/healthz", T(5)).status == 200
    assert http_get(port, "/metrics", T(5)).status == 200
    assert http_get(port, "/", T(5)).status == 426
    p = ws_peers(port)
    assert p.request("x") == "x/answer"
    f = peers(srv.port)
    assert f.request(b"[1]") == b"[1]"
    srv.signal(signal.SIGINT)
    assert p.expect_close(T(5)).close_code == 1001
    assert f.recv(T(5)) is None
    f.close()
    assert srv.wait_exit(T(5)) == 0, srv.tail()
    summ = srv.summary()
    assert summ["connections"] == 5, summ["line"]
    assert summ["messages_in"] == summ["messages_out"] == 2, summ["line"]
    reasons = sorted(c["reason"] for c in srv.close_lines())
    assert reasons == ["bad_request", "http_done", "http_done", "shutdown", "shutdown"], reasons


def test_upgrade_still_works_between_http_requests(srv, ws_peers):
    assert http_get(srv.ws_port, "/healthz", T(5)).status == 200
    p = ws_peers(srv.ws_port)
    assert p.request("hi") == "hi/answer"
    assert http_get(srv.ws_port, "/metrics", T(5)).status == 200
    assert p.request("again") == "again/answer"
    assert srv.running()
