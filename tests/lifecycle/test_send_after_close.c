/* SPDX-License-Identifier: MIT */
/*
 * Send after close (SPEC C3; header: adieu_conn_send, adieu_conn_close, adieu_conn_defer):
 * a handler keeps a reference taken at on_open past on_close. Inside on_close and later,
 * after the library has closed the connection's handles, adieu_conn_send,
 * adieu_conn_close and adieu_conn_defer return ADIEU_ECLOSED (the clean-up is neither
 * registered nor run), and the object stays valid (peer, data, state) until the last
 * adieu_conn_unref. AddressSanitizer and valgrind catch any use after free.
 */
#include <string.h>

#include "harness.h"

static lc_server_t S;
static lc_client_t client;
static adieu_conn_t *kept;
static char peer[64];
static int marker;
static int refused_defer_calls;
static bool checked_later;

static void refused_defer(void *arg)
{
    (void)arg;
    refused_defer_calls++;
}

/* Every call on a closed connection is refused the same way. */
static void check_closed(adieu_conn_t *conn)
{
    lc_api_begin(&S);
    CHECK_EQ(adieu_conn_send(conn, ADIEU_BINARY, "x", 1), ADIEU_ECLOSED);
    CHECK_EQ(adieu_conn_send(conn, ADIEU_BINARY, NULL, 0), ADIEU_ECLOSED);
    CHECK_EQ(adieu_conn_close(conn), ADIEU_ECLOSED);
    CHECK_EQ(adieu_conn_defer(conn, refused_defer, NULL), ADIEU_ECLOSED);
    CHECK(!adieu_conn_is_open(conn));
    CHECK(strcmp(adieu_conn_peer(conn), peer) == 0);
    CHECK(adieu_conn_get_data(conn) == &S.conns[0]);
    CHECK_EQ(adieu_conn_proto(conn), ADIEU_FRAMED);
    lc_api_end(&S);
}

static void on_open(lc_conn_t *c)
{
    lc_api_begin(&S);
    kept = adieu_conn_ref(c->conn);
    lc_api_end(&S);
    CHECK(kept == c->conn);
    snprintf(peer, sizeof(peer), "%s", adieu_conn_peer(c->conn));
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    (void)info;
    check_closed(c->conn);
}

/* A loop turn after on_close: the library's handles are closed by now, and only the
 * reference taken at on_open keeps the object. */
static void later(void *arg)
{
    (void)arg;
    lc_conn_t *c = &S.conns[0];
    CHECK(c->closed);
    CHECK_EQ(c->defers_ran, LC_DEFERS);
    check_closed(kept);
    adieu_conn_set_data(kept, &marker);
    CHECK(adieu_conn_get_data(kept) == &marker);
    /* One more reference and its release leave the object alone. */
    lc_api_begin(&S);
    CHECK(adieu_conn_ref(kept) == kept);
    adieu_conn_unref(kept);
    adieu_conn_unref(kept);
    lc_api_end(&S);
    kept = NULL;
    checked_later = true;
    CHECK_EQ(lc_shutdown(&S, 1000), 0);
}

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "hi", 2);
}

static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)data;
    CHECK_EQ(len, 2);
    lc_client_close(c); /* FIN: the server closes with peer_eof */
}

static void on_close_then_later(lc_conn_t *c, const adieu_close_info_t *info)
{
    on_close(c, info);
    lc_after(&S, 0, later, NULL);
}

int main(void)
{
    static const lc_hooks_t hooks = {.on_open = on_open, .on_close = on_close_then_later};
    lc_start(&S, NULL, &hooks);

    lc_client_init(&S, &client);
    client.on_connect = client_connected;
    client.on_message = client_message;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    lc_check_conn(&S.conns[0], ADIEU_REASON_PEER_EOF, 0);
    CHECK(checked_later);
    CHECK(kept == NULL);
    CHECK_EQ(refused_defer_calls, 0);

    lc_finish(&S);
    return check_done();
}
