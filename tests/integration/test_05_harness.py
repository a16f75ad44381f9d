"""The teardown checks themselves: a checker that lets a real fault through is no check."""
from conftest import close_lines, duplicate_close_lines


def lines(*rows):
    return close_lines(
        [f"2026-12-04T03:43:{t}Z {lvl} conn: closed peer=127.0.0.1:60814 proto=frame "
         f"reason={reason}" for t, lvl, reason in rows])


def test_one_connection_closed_twice_is_reported():
    """Two lines for one peer within a second, the first a peer FIN: the client cannot have
    taken the port again yet, so one connection was closed twice."""
    got = duplicate_close_lines(lines(("30.310", "INFO", "peer_eof"),
                                      ("30.311", "WARN", "idle_timeout")))
    assert len(got) == 1 and "peer_eof" in got[0][0] and "idle_timeout" in got[0][1]


def test_port_taken_again_after_the_server_closed_first_is_not_reported():
    """Seen in CI: a connection refused as too_many_connections, whose port the next client
    took (the server held the TIME_WAIT)."""
    assert duplicate_close_lines(lines(("30.310", "WARN", "too_many_connections"),
                                       ("31.227", "INFO", "peer_eof"))) == []


def test_port_taken_again_after_a_reset_or_a_second_later_is_not_reported():
    assert duplicate_close_lines(lines(("30.310", "INFO", "peer_reset"),
                                       ("30.312", "INFO", "peer_eof"))) == []
    assert duplicate_close_lines(lines(("30.990", "INFO", "peer_eof"),
                                       ("31.001", "INFO", "peer_eof"))) == []


def test_the_same_port_on_both_listeners_is_not_reported():
    one = lines(("30.310", "INFO", "peer_eof"))[0]
    other = dict(one, proto="ws", line=one["line"].replace("proto=frame", "proto=ws"))
    assert duplicate_close_lines([one, other]) == []
