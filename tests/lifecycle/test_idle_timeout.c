/* SPDX-License-Identifier: MIT */
/*
 * Idle timeout (SPEC section 4): a framed connection silent for idle_timeout_ms closes with
 * reason idle_timeout (the client sees the server's FIN), while an active client on the
 * same server, sending more often than the timeout, stays open well past it and ends only
 * when it half-closes itself (peer_eof).
 */
#include <string.h>

#include "harness.h"

/* Generous against the ping interval: the library judges idleness from its timer before
 * the loop reads pending input, so a loop stall longer than this (a loaded machine under
 * valgrind) could close the active client too; see test_idle_timeout_after_stall.c. */
#define IDLE_MS 300
#define PING_MS 20
/* The active client pings for this long, more than twice the timeout. */
#define ACTIVE_MS (2 * IDLE_MS + 100)

static lc_server_t S;
static lc_client_t silent;
static lc_client_t active;
static int pings;
static bool active_done; /* the active client has half-closed */

static void ping(void *arg)
{
    lc_client_t *c = arg;
    if (lc_now(&S) - c->connected_at >= ACTIVE_MS) {
        /* By now the silent one must have been closed, and this one must not have been. */
        CHECK(silent.ended);
        lc_conn_t *rec = lc_conn_of(&S, c);
        CHECK(rec != NULL && !rec->closed);
        active_done = true;
        lc_client_shutdown(c);
        return;
    }
    lc_client_send(c, "ping", 4);
    pings++;
    lc_after(&S, PING_MS, ping, c);
}

static void active_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        ping(c);
}

static void silent_connected(lc_client_t *c, int status)
{
    (void)c;
    if (!CHECK_EQ(status, 0))
        return;
    lc_client_init(&S, &active);
    active.on_connect = active_connected;
    lc_client_connect(&active);
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    if (c == lc_conn_of(&S, &active))
        CHECK(active_done);
    if (info->reason == ADIEU_REASON_IDLE_TIMEOUT)
        CHECK(c->closed_at - c->opened_at >= IDLE_MS);
}

int main(void)
{
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.idle_timeout_ms = IDLE_MS;
    static const lc_hooks_t hooks = {.on_close = on_close};
    lc_start(&S, &cfg, &hooks);
    lc_expect(&S, 4);

    lc_client_init(&S, &silent);
    silent.on_connect = silent_connected;
    lc_client_connect(&silent);

    lc_run(&S);

    CHECK_EQ(S.nconns, 2);
    lc_conn_t *s = lc_conn_of(&S, &silent);
    lc_conn_t *a = lc_conn_of(&S, &active);
    if (CHECK(s != NULL && a != NULL)) {
        lc_check_conn(s, ADIEU_REASON_IDLE_TIMEOUT, 0);
        CHECK_EQ(s->messages, 0);
        lc_check_conn(a, ADIEU_REASON_PEER_EOF, 0);
        CHECK_EQ(a->messages, pings);
        /* The silent connection closed before the active one was done. */
        CHECK(s->closed_at < a->closed_at);
        /* The active one lived well past the timeout. */
        CHECK(a->closed_at - a->opened_at >= ACTIVE_MS);
    }
    CHECK(silent.eof);
    CHECK_EQ(silent.msgs_at_end, 0);
    CHECK(active.eof);
    CHECK_EQ(active.msgs_at_end, (size_t)pings);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_IDLE_TIMEOUT], 1);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_PEER_EOF], 1);

    lc_finish(&S);
    return check_done();
}
