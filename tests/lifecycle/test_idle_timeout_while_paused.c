/* SPDX-License-Identifier: MIT */
/*
 * Idle timeout of a stalled reader (SPEC C5, section 4 "Idle timeout"): a client asks for
 * more than it will ever read, then sends a last request and half-closes, and goes silent.
 * The server stops reading from it (back-pressure), so those last bytes wait unread in the
 * kernel. They arrived at the start: the connection is silent from then on and must still
 * close with reason idle_timeout (bounded by linger_timeout_ms while its output cannot be
 * flushed), not be kept open forever because input is waiting.
 */
#include <string.h>

#include "harness.h"

#define IDLE_MS 200
#define LINGER_MS 100
/* Past this the connection is reported as never closed and the server forced. */
#define GIVE_UP_MS (IDLE_MS + LINGER_MS + 1500)
#define CHUNK 60000

static lc_server_t S;
static lc_client_t client;
static uv_timer_t give_up;
static uint8_t chunk[CHUNK];
static size_t chunks;

static void on_give_up(uv_timer_t *t)
{
    (void)t;
    CHECK(!"the stalled connection is still open long after its idle timeout");
    lc_dump(&S);
    lc_expect(&S, 0);
    CHECK_EQ(lc_force(&S), 0);
    lc_client_close(&client);
    uv_close((uv_handle_t *)&give_up, NULL);
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    if (!CHECK(msg->len == 4 && memcmp(msg->data, "much", 4) == 0))
        return;
    memset(chunk, 'p', sizeof(chunk));
    int rc = 0;
    for (size_t i = 0; i < chunks && rc >= 0; i++)
        rc = lc_send(c, chunk, sizeof(chunk));
    CHECK_EQ(rc, ADIEU_BACKPRESSURE);
    /* Reading from this peer is paused now: these wait in the kernel. */
    lc_client_send(&client, "more", 4);
    lc_client_shutdown(&client);
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    (void)info;
    CHECK(c->closed_at - c->opened_at >= IDLE_MS);
    CHECK_EQ(c->messages, 1);
    if (!uv_is_closing((uv_handle_t *)&give_up))
        uv_close((uv_handle_t *)&give_up, NULL);
    lc_client_close(&client);
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
    cfg.idle_timeout_ms = IDLE_MS;
    cfg.linger_timeout_ms = LINGER_MS;
    cfg.write_high_watermark = 256u * 1024u;
    cfg.write_low_watermark = 64u * 1024u;
    cfg.write_hard_limit = 2 * chunks * (CHUNK + 2);
    static const lc_hooks_t hooks = {.on_message = on_message, .on_close = on_close};
    lc_start(&S, &cfg, &hooks);
    lc_expect(&S, 2);
    uv_timer_init(&S.loop, &give_up);
    uv_timer_start(&give_up, on_give_up, GIVE_UP_MS, 0);

    lc_client_init(&S, &client);
    client.no_read = true;
    client.rcvbuf = 16384;
    client.on_connect = client_connected;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    lc_check_conn(&S.conns[0], ADIEU_REASON_IDLE_TIMEOUT, 0);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_IDLE_TIMEOUT], 1);

    lc_finish(&S);
    return check_done();
}
