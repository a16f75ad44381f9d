/* SPDX-License-Identifier: MIT */
/*
 * Close timeout (SPEC section 4: close_timeout; header: linger_timeout_ms): the handler
 * closes a connection (reason local) and the client reads the answer and the server's FIN
 * but never closes its own side. The lingering read is bounded: after linger_timeout_ms the
 * connection ends with reason close_timeout, clean-ups run, and the server is not held up.
 */
#include <string.h>

#include "harness.h"

#define LINGER_MS 100

static lc_server_t S;
static lc_client_t client;
static uint64_t closed_by_app_at;

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    (void)msg;
    CHECK_EQ(lc_send(c, "bye", 3), 0);
    CHECK_EQ(lc_close(c), 0);
    closed_by_app_at = lc_now(&S);
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    (void)info;
    uint64_t after = c->closed_at - closed_by_app_at;
    /* Not before the bound, and not long after it (loose for valgrind on a loaded machine;
     * the default bound, 5 s, would fail). */
    CHECK(after >= LINGER_MS && after < LINGER_MS + 1500);
    /* The client saw the answer and the FIN long ago; it may go now. */
    CHECK(client.eof);
    lc_client_close(&client);
}

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "close", 5);
}

int main(void)
{
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.linger_timeout_ms = LINGER_MS;
    static const lc_hooks_t hooks = {.on_message = on_message, .on_close = on_close};
    lc_start(&S, &cfg, &hooks);
    lc_expect(&S, 2);

    lc_client_init(&S, &client);
    client.keep_open = true;
    client.on_connect = client_connected;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    lc_check_conn(&S.conns[0], ADIEU_REASON_CLOSE_TIMEOUT, 0);
    CHECK_EQ(client.msgs_at_end, 1);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_CLOSE_TIMEOUT], 1);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_LOCAL], 0);

    lc_finish(&S);
    return check_done();
}
