/* SPDX-License-Identifier: MIT */
/*
 * Forced stop during a drain (SPEC C2, C4; header: adieu_server_force): two connections
 * hold a graceful shutdown open, one whose client never closes its side after the server's
 * FIN, one whose handler holds an answer it has not sent. adieu_server_force() closes both
 * at once with reason forced, long before the drain deadline; their clean-ups still run,
 * the done callback of the shutdown runs once, and the held connection stays valid (sends
 * return ADIEU_ECLOSED) until the handler releases its hold.
 */
#include "harness.h"

#define DEADLINE_MS 5000

static lc_server_t S;
static lc_client_t lingering; /* answered; keeps its side open after the server's FIN */
static lc_client_t waiting;   /* its request is held and never answered */
static adieu_conn_t *held;
static int ready;
static int force_rc = -1;

static void maybe_shutdown(void)
{
    if (++ready == 2)
        CHECK_EQ(lc_shutdown(&S, DEADLINE_MS), 0);
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    (void)msg;
    if (c == lc_conn_of(&S, &waiting)) {
        lc_api_begin(&S);
        held = adieu_conn_hold(c->conn);
        lc_api_end(&S);
        CHECK(held == c->conn);
        maybe_shutdown();
        return;
    }
    CHECK_EQ(lc_send(c, "answer", 6), 0);
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    (void)info;
    CHECK_EQ(force_rc, 0);
    CHECK(lc_now(&S) - S.shutdown_at < DEADLINE_MS);
    if (c->conn == held) {
        /* The hold keeps the object valid past on_close; the answer can no longer go. */
        CHECK_EQ(lc_send(c, "late", 4), ADIEU_ECLOSED);
    }
}

/* Released after on_close and after the clean-ups: the object must still be valid. */
static void release_hold(void *arg)
{
    (void)arg;
    lc_conn_t *c = lc_conn_of(&S, &waiting);
    if (CHECK(c != NULL && held != NULL)) {
        CHECK(c->closed);
        CHECK_EQ(c->defers_ran, LC_DEFERS);
        lc_api_begin(&S);
        CHECK_EQ(adieu_conn_send(held, ADIEU_BINARY, "late", 4), ADIEU_ECLOSED);
        CHECK(!adieu_conn_is_open(held));
        adieu_conn_release(held);
        lc_api_end(&S);
        held = NULL;
    }
}

static void on_done(lc_server_t *s)
{
    CHECK(s->done_at - s->shutdown_at < DEADLINE_MS);
    /* Forcing a server that is done is harmless. */
    CHECK_EQ(lc_force(s), 0);
    lc_client_close(&lingering);
    lc_after(s, 0, release_hold, NULL);
}

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "request", 7);
}

static void lingering_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    CHECK_EQ(len, 6);
    CHECK_MEM_EQ(data, "answer", 6);
    maybe_shutdown();
}

/* The lingering client saw the server's FIN: the drain now waits on it and on the hold. */
static void lingering_end(lc_client_t *c)
{
    CHECK(c->eof);
    CHECK_EQ(S.conns[0].closes + S.conns[1].closes, 0);
    force_rc = lc_force(&S);
    CHECK_EQ(force_rc, 0);
    /* No callback before adieu_server_force() returns. */
    CHECK_EQ(S.conns[0].closes + S.conns[1].closes, 0);
}

int main(void)
{
    static const lc_hooks_t hooks = {
        .on_message = on_message, .on_close = on_close, .on_done = on_done};
    lc_start(&S, NULL, &hooks);

    lc_client_init(&S, &lingering);
    lingering.keep_open = true;
    lingering.on_connect = client_connected;
    lingering.on_message = lingering_message;
    lingering.on_end = lingering_end;
    lc_client_connect(&lingering);

    lc_client_init(&S, &waiting);
    waiting.on_connect = client_connected;
    lc_client_connect(&waiting);

    lc_run(&S);

    CHECK_EQ(S.nconns, 2);
    lc_conn_t *l = lc_conn_of(&S, &lingering);
    lc_conn_t *w = lc_conn_of(&S, &waiting);
    if (CHECK(l != NULL && w != NULL)) {
        lc_check_conn(l, ADIEU_REASON_FORCED, 0);
        lc_check_conn(w, ADIEU_REASON_FORCED, 0);
        CHECK_EQ(l->shutdowns, 1);
        CHECK_EQ(w->shutdowns, 1);
    }
    CHECK(held == NULL);
    /* The waiting client got no answer, then the end of the connection. */
    CHECK(waiting.ended);
    CHECK_EQ(waiting.msgs, 0);
    CHECK_EQ(lingering.msgs, 1);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_FORCED], 2);

    lc_finish(&S);
    return check_done();
}
