/* SPDX-License-Identifier: MIT */
/*
 * Close while writing (SPEC C1, C3, C5): the server is writing a large answer, back-pressure
 * has been reported and reading is paused, and the client resets without reading. The
 * failure is seen on the write side: the connection closes with reason peer_reset and the
 * errno of the failed write or read (ECONNRESET or EPIPE), the on_drain owed for the
 * back-pressure never comes (no callback after on_close), sends return ADIEU_ECLOSED, and
 * everything queued is released with the connection.
 */
#include <string.h>

#include "harness.h"

#define CHUNK 60000
#define HIGH (256u * 1024u)
#define LOW (64u * 1024u)

static lc_server_t S;
static lc_client_t client;
static uint8_t chunk[CHUNK];
static size_t chunks;
static int backpressured;

static void reset_client(void *arg)
{
    lc_conn_t *c = arg;
    /* The queue is still far above the low watermark: the write is stuck in the kernel. */
    CHECK(adieu_conn_queued(c->conn) > LOW);
    CHECK_EQ(c->drains, 0);
    lc_client_reset(&client);
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    (void)msg;
    memset(chunk, 'w', sizeof(chunk));
    for (size_t i = 0; i < chunks; i++) {
        int rc = lc_send(c, chunk, sizeof(chunk));
        if (rc == ADIEU_BACKPRESSURE)
            backpressured++;
        else if (!CHECK_EQ(rc, 0))
            break;
    }
    lc_after(&S, 0, reset_client, c);
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    (void)info;
    CHECK_EQ(lc_send(c, "x", 1), ADIEU_ECLOSED);
}

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "much", 4);
}

int main(void)
{
    chunks = lc_more_than_kernel_buffers() / CHUNK + 1;
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.write_high_watermark = HIGH;
    cfg.write_low_watermark = LOW;
    cfg.write_hard_limit = 2 * chunks * (CHUNK + 2);
    static const lc_hooks_t hooks = {.on_message = on_message, .on_close = on_close};
    lc_start(&S, &cfg, &hooks);
    lc_expect(&S, 2);

    lc_client_init(&S, &client);
    client.no_read = true;
    client.rcvbuf = 16384;
    client.on_connect = client_connected;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK(backpressured > 0);
    CHECK_EQ(S.nconns, 1);
    lc_conn_t *c = &S.conns[0];
    lc_check_conn(c, ADIEU_REASON_PEER_RESET, LC_ANY_ERR);
    if (!CHECK(c->sys_err == UV_ECONNRESET || c->sys_err == UV_EPIPE))
        fprintf(stderr, "  sys_err %s\n", adieu_err_name(c->sys_err));
    CHECK_EQ(c->drains, 0);
    CHECK(strcmp(c->trace, "open msg close:peer_reset d5 d4 d3 d2 d1 d0") == 0);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_PEER_RESET], 1);
    CHECK(st.messages_out[ADIEU_FRAMED] < chunks);

    lc_finish(&S);
    return check_done();
}
