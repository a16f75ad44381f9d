/* SPDX-License-Identifier: MIT */
/*
 * A write the kernel does not take whole needs libuv's write request, which comes from the
 * server's free list or, when that is empty, from the allocator. When that allocation fails
 * the replies cannot be sent: the connection closes server_error ("out of memory"), the
 * application hears of it once, clean-up runs, and the client receives a prefix of what was
 * owed (cut where the kernel's part ended) and then the end, never garbage.
 * test_alloc_fail's scenario never fills a socket, so it never reaches this allocation.
 *
 * The client asks for more than the kernel can buffer (lc_more_than_kernel_buffers) and does
 * not read (SO_RCVBUF 16 KiB). The handler queues it all (the output storage is allocated
 * then), and only then the allocator starts failing: the next adieu allocation is the
 * request for the write of what uv_try_write left. on_close turns the allocator back and
 * lets the client read.
 */
#include <stdlib.h>
#include <string.h>

#include "adieu/alloc.h"
#include "harness.h"

#define CHUNK 16384
#define FRAME (CHUNK + 2)

static lc_server_t S;
static lc_client_t client;
static uint8_t chunk[CHUNK];
static size_t chunks; /* sent: more than the kernel can buffer */
static bool failing;
static unsigned long failed;
static size_t frames_ok;

static void *t_malloc(size_t n)
{
    if (failing) {
        failed++;
        return NULL;
    }
    return malloc(n);
}

static void *t_calloc(size_t n, size_t m)
{
    if (failing) {
        failed++;
        return NULL;
    }
    return calloc(n, m);
}

static void *t_realloc(void *p, size_t n)
{
    if (failing) {
        failed++;
        return NULL;
    }
    return realloc(p, n);
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    CHECK(msg->len == 4 && memcmp(msg->data, "much", 4) == 0);
    for (size_t i = 0; i < chunks; i++) {
        memset(chunk, (int)(i + 1), sizeof(chunk));
        CHECK_EQ(lc_send(c, chunk, sizeof(chunk)), 0);
    }
    CHECK_EQ(adieu_conn_queued(c->conn), chunks * FRAME);
    /* Nothing is written under the callback: the flush, and the request, come after it. */
    failing = true;
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    (void)c;
    (void)info;
    failing = false;
    lc_client_read_start(&client);
}

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "much", 4);
}

static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    uint8_t k = (uint8_t)c->msgs; /* the k-th chunk (from 1) is filled with k */
    if (len == CHUNK && data[0] == k && data[CHUNK - 1] == k && c->msgs <= chunks)
        frames_ok++;
}

int main(void)
{
    CHECK_EQ(adieu_replace_allocator(t_malloc, t_realloc, t_calloc, free), 0);
    chunks = lc_more_than_kernel_buffers() / FRAME + 1;
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.write_high_watermark = 2 * chunks * FRAME;
    cfg.write_low_watermark = chunks * FRAME / 2;
    cfg.write_hard_limit = 4 * chunks * FRAME;
    static const lc_hooks_t hooks = {.on_message = on_message, .on_close = on_close};
    lc_start(&S, &cfg, &hooks);
    lc_expect(&S, 2); /* the connection's on_close, the client's handle */

    lc_client_init(&S, &client);
    client.no_read = true;
    client.rcvbuf = 16384;
    client.on_connect = client_connected;
    client.on_message = client_message;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    lc_conn_t *c = &S.conns[0];
    lc_check_conn(c, ADIEU_REASON_SERVER_ERROR, 0);
    CHECK_EQ(c->messages, 1);
    CHECK_EQ(failed, 1); /* the request alone: closing needs no allocation */
    CHECK(client.ended);
    /* What came is chunks in order, the last one perhaps cut short where the kernel's part
     * of the write ended, and less than was owed. */
    CHECK_EQ(frames_ok, client.msgs);
    CHECK(client.msgs < chunks);
    CHECK(client.rx_at_end < FRAME);
    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_SERVER_ERROR], 1);
    CHECK(st.bytes_out[ADIEU_FRAMED] < (uint64_t)chunks * FRAME);
    lc_finish(&S);
    return check_done();
}
