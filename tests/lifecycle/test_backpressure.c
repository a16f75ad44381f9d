/* SPDX-License-Identifier: MIT */
/*
 * Back-pressure (SPEC C5; header: adieu_conn_send, adieu_config_t watermarks): a client asks
 * for a lot and does not read. Inside one on_message the handler sends until refused:
 * adieu_conn_send returns 0 up to write_high_watermark, ADIEU_BACKPRESSURE above it, and
 * ADIEU_EBUFFULL (nothing queued) once write_hard_limit would be passed, so
 * adieu_conn_queued never exceeds the hard limit. While the client does not read, no
 * on_drain comes and the server reads nothing more from it (a second request waits); once
 * the client reads, on_drain fires once, at or below write_low_watermark, then the second
 * request is delivered. Every accepted message arrives, whole and in order.
 *
 * The hard limit is set well above what the kernel can buffer (lc_more_than_kernel_buffers),
 * so the queue cannot empty into the kernel while the client does not read.
 */
#include <string.h>

#include "harness.h"

#define CHUNK 16384
#define FRAME (CHUNK + 2)
#define HIGH (256u * 1024u)
#define LOW (64u * 1024u)

static lc_server_t S;
static lc_client_t client;
static size_t hard_limit;
static uint8_t chunk[CHUNK];
static size_t accepted;   /* messages queued by the big send */
static int backpressured; /* sends that returned ADIEU_BACKPRESSURE */
static bool reading;      /* the client has started reading */
static size_t frames_ok;

static void send_all(lc_conn_t *c)
{
    /* Bounded, so that a library without a hard limit fails here instead of eating memory. */
    size_t most = hard_limit / FRAME + 1;
    for (size_t i = 0; CHECK(i <= most); i++) {
        memset(chunk, (int)(i & 0xff), sizeof(chunk));
        size_t before = adieu_conn_queued(c->conn);
        int rc = lc_send(c, chunk, sizeof(chunk));
        size_t after = adieu_conn_queued(c->conn);
        if (rc == ADIEU_EBUFFULL) {
            CHECK(before + FRAME > hard_limit);
            CHECK_EQ(after, before); /* not queued */
            break;
        }
        if (!CHECK_EQ(after, before + FRAME))
            break;
        CHECK(after <= hard_limit);
        if (after > HIGH) {
            CHECK_EQ(rc, ADIEU_BACKPRESSURE);
            backpressured++;
        } else {
            CHECK_EQ(rc, 0);
        }
        accepted++;
    }
    CHECK(adieu_conn_queued(c->conn) <= hard_limit);
}

/* A loop turn after the big send, which the server has flushed as far as the kernel takes:
 * the queue is still above the low watermark, and no on_drain came. The client sends a
 * second request (the server must not read it yet) and starts reading. */
static void start_reading(void *arg)
{
    lc_conn_t *c = arg;
    size_t q = adieu_conn_queued(c->conn);
    CHECK(q > LOW);
    CHECK(q <= hard_limit);
    CHECK_EQ(c->drains, 0);
    CHECK_EQ(c->messages, 1);
    lc_client_send(&client, "more", 4);
    reading = true;
    lc_client_read_start(&client);
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    if (c->messages == 1) {
        CHECK(msg->len == 4 && memcmp(msg->data, "much", 4) == 0);
        send_all(c);
        lc_after(&S, 0, start_reading, c);
        return;
    }
    /* Reading resumed only once the queue drained. */
    CHECK(msg->len == 4 && memcmp(msg->data, "more", 4) == 0);
    CHECK_EQ(c->drains, 1);
    CHECK(lc_send(c, "ok", 2) >= 0);
}

static void on_drain(lc_conn_t *c)
{
    CHECK(reading);
    CHECK(adieu_conn_queued(c->conn) <= LOW);
    CHECK_EQ(c->messages, 1);
}

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "much", 4);
}

static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    size_t k = c->msgs - 1;
    if (k < accepted) {
        if (len == CHUNK && data[0] == (uint8_t)k && data[CHUNK - 1] == (uint8_t)k)
            frames_ok++;
        return;
    }
    CHECK(len == 2 && memcmp(data, "ok", 2) == 0);
    lc_client_shutdown(c);
}

int main(void)
{
    hard_limit = 2 * lc_more_than_kernel_buffers();
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.write_high_watermark = HIGH;
    cfg.write_low_watermark = LOW;
    cfg.write_hard_limit = hard_limit;
    static const lc_hooks_t hooks = {.on_message = on_message, .on_drain = on_drain};
    lc_start(&S, &cfg, &hooks);
    lc_expect(&S, 2);

    lc_client_init(&S, &client);
    client.no_read = true;
    client.rcvbuf = 16384;
    client.on_connect = client_connected;
    client.on_message = client_message;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    lc_conn_t *c = &S.conns[0];
    lc_check_conn(c, ADIEU_REASON_PEER_EOF, 0);
    CHECK_EQ(c->drains, 1);
    CHECK(strcmp(c->trace, "open msg drain msg close:peer_eof d5 d4 d3 d2 d1 d0") == 0);
    CHECK(backpressured > 0);
    CHECK_EQ(accepted, hard_limit / FRAME);
    CHECK_EQ(accepted - (size_t)backpressured, HIGH / FRAME);
    CHECK_EQ(frames_ok, accepted);
    CHECK(client.eof);
    CHECK_EQ(client.msgs_at_end, accepted + 1);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.messages_out[ADIEU_FRAMED], accepted + 1);
    CHECK_EQ(st.bytes_out[ADIEU_FRAMED], accepted * FRAME + 4);

    lc_finish(&S);
    return check_done();
}
