/* SPDX-License-Identifier: MIT */
/*
 * Max connections (SPEC C6, section 4): with max_connections 2, a third connection while
 * two are open is accepted and closed at once with reason too_many_connections: it never
 * reaches the application (no on_open, so no on_close), its client sees the connection
 * end, it is counted, and the two open connections are untouched. Once one of them has
 * closed, a new connection is served again.
 */
#include "harness.h"

#define MAX_CONNS 2

static lc_server_t S;
static lc_client_t first;
static lc_client_t second;
static lc_client_t extra; /* over the limit */
static lc_client_t again; /* after a slot freed */

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "hi", 2);
}

static void setup(lc_client_t *c, void (*on_message)(lc_client_t *, const uint8_t *, size_t),
                  void (*on_end)(lc_client_t *))
{
    lc_client_init(&S, c);
    c->on_connect = client_connected;
    c->on_message = on_message;
    c->on_end = on_end;
    lc_client_connect(c);
}

static void again_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)data;
    CHECK_EQ(len, 2);
    lc_client_shutdown(c);
}

/* The new connection was served and closed: let the second one go too. */
static void again_closed(lc_client_t *c)
{
    (void)c;
    lc_client_shutdown(&second);
}

/* first has closed on the server (peer_eof): the slot is free again. */
static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    (void)info;
    if (c == lc_conn_of(&S, &first)) {
        setup(&again, again_message, NULL);
        again.on_closed = again_closed;
    }
}

/* The extra connection ended without a word: the two others are still open; now let
 * them go, first then second. */
static void extra_end(lc_client_t *c)
{
    CHECK_EQ(c->msgs, 0);
    CHECK_EQ(S.nconns, MAX_CONNS);
    CHECK(!S.conns[0].closed && !S.conns[1].closed);
    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_TOO_MANY_CONNECTIONS], 1);
    CHECK_EQ(st.open[ADIEU_FRAMED], MAX_CONNS);
    lc_client_shutdown(&first);
}

static void second_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    CHECK_EQ(len, 2);
    setup(&extra, NULL, extra_end);
}

static void first_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    CHECK_EQ(len, 2);
    setup(&second, second_message, NULL);
}

int main(void)
{
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.max_connections = MAX_CONNS;
    static const lc_hooks_t hooks = {.on_close = on_close};
    lc_start(&S, &cfg, &hooks);
    /* Three connections reach the application; four client handles close. */
    lc_expect(&S, 3 + 4);

    setup(&first, first_message, NULL);
    lc_run(&S);

    CHECK_EQ(S.nconns, 3);
    lc_conn_t *f = lc_conn_of(&S, &first);
    lc_conn_t *s = lc_conn_of(&S, &second);
    lc_conn_t *a = lc_conn_of(&S, &again);
    CHECK(lc_conn_of(&S, &extra) == NULL); /* no on_open for it */
    if (CHECK(f != NULL && s != NULL && a != NULL)) {
        lc_check_conn(f, ADIEU_REASON_PEER_EOF, 0);
        lc_check_conn(s, ADIEU_REASON_PEER_EOF, 0);
        lc_check_conn(a, ADIEU_REASON_PEER_EOF, 0);
    }
    CHECK(extra.ended);
    CHECK_EQ(extra.msgs, 0);
    CHECK_EQ(again.msgs, 1);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.connections, 4);
    CHECK_EQ(st.opened[ADIEU_FRAMED], 4);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_TOO_MANY_CONNECTIONS], 1);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_PEER_EOF], 3);
    CHECK_EQ(st.messages_in[ADIEU_FRAMED], 3);

    lc_finish(&S);
    return check_done();
}
