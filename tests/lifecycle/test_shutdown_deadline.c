/* SPDX-License-Identifier: MIT */
/*
 * Drain deadline (SPEC C4 (4)): during a graceful shutdown, a client that reads the
 * server's FIN but never closes its own side is force-closed when the deadline passes, with
 * reason shutdown_timeout; a well-behaved client on the same server closes with reason
 * shutdown before that. Clean-ups run on both, and the done callback runs once, after the
 * deadline.
 */
#include "harness.h"

#define DEADLINE_MS 300

static lc_server_t S;
static lc_client_t polite;  /* closes at the server's FIN */
static lc_client_t holdout; /* never closes its side */
static int answered;

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "hi", 2);
}

/* Both clients answered: start the drain. */
static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    CHECK_EQ(len, 2);
    if (++answered == 2)
        CHECK_EQ(lc_shutdown(&S, DEADLINE_MS), 0);
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    (void)c;
    uint64_t after = lc_now(&S) - S.shutdown_at;
    /* At the deadline: not before, and not long after (the bound is loose for slow runs
     * under valgrind on a loaded machine). */
    if (info->reason == ADIEU_REASON_SHUTDOWN_TIMEOUT)
        CHECK(after >= DEADLINE_MS && after < DEADLINE_MS + 1500);
    else
        CHECK(after < DEADLINE_MS);
}

/* The holdout client had its FIN long ago; it goes once the server is done. */
static void on_done(lc_server_t *s)
{
    CHECK(s->done_at - s->shutdown_at >= DEADLINE_MS);
    CHECK(holdout.eof);
    CHECK(!holdout.closing);
    lc_client_close(&holdout);
}

static void setup(lc_client_t *c, bool keep_open)
{
    lc_client_init(&S, c);
    c->keep_open = keep_open;
    c->on_connect = client_connected;
    c->on_message = client_message;
    lc_client_connect(c);
}

int main(void)
{
    static const lc_hooks_t hooks = {.on_close = on_close, .on_done = on_done};
    lc_start(&S, NULL, &hooks);
    setup(&polite, false);
    setup(&holdout, true);

    lc_run(&S);

    CHECK_EQ(S.nconns, 2);
    lc_conn_t *p = lc_conn_of(&S, &polite);
    lc_conn_t *s = lc_conn_of(&S, &holdout);
    if (CHECK(p != NULL && s != NULL)) {
        lc_check_conn(p, ADIEU_REASON_SHUTDOWN, 0);
        lc_check_conn(s, ADIEU_REASON_SHUTDOWN_TIMEOUT, 0);
        CHECK_EQ(p->shutdowns, 1);
        CHECK_EQ(s->shutdowns, 1);
    }
    CHECK(polite.eof);
    CHECK_EQ(polite.msgs_at_end, 1);
    CHECK_EQ(holdout.msgs_at_end, 1);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_SHUTDOWN], 1);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_SHUTDOWN_TIMEOUT], 1);

    lc_finish(&S);
    return check_done();
}
