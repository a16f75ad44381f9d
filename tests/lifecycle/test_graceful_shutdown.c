/* SPDX-License-Identifier: MIT */
/*
 * Graceful shutdown (SPEC C4, section 4 "The drain, exactly"): four clients have sent
 * requests; once the server has read them all, the handler starts adieu_server_shutdown()
 * with a deadline. The framed listener closes at once (a new client is refused), every
 * connection gets on_shutdown exactly once, every reply it was owed and the goodbye sent
 * from on_shutdown reach its client in order, then the server's FIN; each connection
 * closes with reason shutdown when its client closes, well before the deadline, and the
 * done callback runs once.
 *
 * One client, the heavy one, is owed more than the kernel can buffer and reads nothing
 * until the drain has started on its connection, so the drain must flush the library's
 * queue before the FIN.
 */
#include <string.h>

#include "harness.h"

#define CLIENTS 3
#define REQUESTS 4
#define REPLY_SIZE 30000
#define DEADLINE_MS 5000

static lc_server_t S;
static lc_client_t clients[CLIENTS];
static lc_client_t heavy; /* owed a lot, reads only once the drain started */
static lc_client_t late;  /* connects after the shutdown started */
static size_t heavy_replies;
static size_t heavy_ok;
static bool heavy_bye_ok;
static uint8_t reply[REPLY_SIZE];
static int received;
static int shutdowns_seen;
static size_t replies_ok[CLIENTS];
static bool bye_ok[CLIENTS];

static void late_connected(lc_client_t *c, int status)
{
    (void)c;
    CHECK_EQ(status, UV_ECONNREFUSED);
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    if (!CHECK_EQ(msg->len, 1))
        return;
    memset(reply, msg->data[0], sizeof(reply));
    size_t n = msg->data[0] == 'H' ? heavy_replies : 1;
    for (size_t i = 0; i < n; i++)
        if (!CHECK_EQ(lc_send(c, reply, sizeof(reply)), 0))
            break;
    if (++received == CLIENTS * REQUESTS + 1) {
        CHECK_EQ(lc_shutdown(&S, DEADLINE_MS), 0);
        CHECK_EQ(lc_shutdown(&S, DEADLINE_MS), ADIEU_EINVALID_STATE);
        /* SPEC C4 (1): the framed listener is closed at once. */
        CHECK(adieu_server_port(S.server, ADIEU_FRAMED) < 0);
        CHECK(lc_stats(&S).draining);
        lc_client_init(&S, &late);
        late.on_connect = late_connected;
        lc_client_connect(&late);
    }
}

static void on_shutdown(lc_conn_t *c)
{
    shutdowns_seen++;
    CHECK_EQ(lc_send(c, "bye", 3), 0);
    if (c == lc_conn_of(&S, &heavy)) {
        CHECK_EQ(c->messages, 1);
        /* Most of what is owed is still in the library's queue. */
        CHECK(adieu_conn_queued(c->conn) > REPLY_SIZE);
        lc_client_read_start(&heavy);
        return;
    }
    /* Every request was delivered before the drain started. */
    CHECK_EQ(c->messages, REQUESTS);
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    (void)info;
    /* Each connection closes only once every connection was told. */
    CHECK_EQ(shutdowns_seen, CLIENTS + 1);
    CHECK_EQ(c->shutdowns, 1);
}

static void on_done(lc_server_t *s)
{
    CHECK(s->done_at - s->shutdown_at < DEADLINE_MS);
    for (int i = 0; i < s->nconns; i++)
        CHECK(s->conns[i].closed);
}

static void client_connected(lc_client_t *c, int status)
{
    if (!CHECK_EQ(status, 0))
        return;
    uint8_t stream[REQUESTS * 3];
    for (int i = 0; i < REQUESTS; i++) {
        stream[3 * i] = 0;
        stream[3 * i + 1] = 1;
        stream[3 * i + 2] = (uint8_t)('a' + (c - clients) * REQUESTS + i);
    }
    lc_client_send_raw(c, stream, sizeof(stream));
}

static void heavy_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "H", 1);
}

static void heavy_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    if (c->msgs <= heavy_replies) {
        if (len == REPLY_SIZE && data[0] == 'H' && memcmp(data, data + 1, len - 1) == 0)
            heavy_ok++;
    } else if (CHECK_EQ(c->msgs, heavy_replies + 1)) {
        heavy_bye_ok = len == 3 && memcmp(data, "bye", 3) == 0;
    }
}

static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    size_t k = c->msgs - 1;
    if (k < REQUESTS) {
        uint8_t want = (uint8_t)('a' + (c - clients) * REQUESTS + (int)k);
        size_t i = 0;
        while (i < len && data[i] == want)
            i++;
        if (CHECK_EQ(len, REPLY_SIZE) && CHECK_EQ(i, len))
            replies_ok[c - clients]++;
    } else if (CHECK_EQ(k, REQUESTS)) {
        bye_ok[c - clients] = len == 3 && memcmp(data, "bye", 3) == 0;
    }
}

int main(void)
{
    static const lc_hooks_t hooks = {
        .on_message = on_message,
        .on_shutdown = on_shutdown,
        .on_close = on_close,
        .on_done = on_done,
    };
    heavy_replies = lc_more_than_kernel_buffers() / REPLY_SIZE + 1;
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    /* No back-pressure: every send is accepted outright. */
    cfg.write_high_watermark = 2 * (heavy_replies + 1) * (REPLY_SIZE + 2);
    cfg.write_hard_limit = cfg.write_high_watermark;
    lc_start(&S, &cfg, &hooks);
    lc_client_init(&S, &heavy);
    heavy.no_read = true;
    heavy.rcvbuf = 16384;
    heavy.on_connect = heavy_connected;
    heavy.on_message = heavy_message;
    lc_client_connect(&heavy);
    for (int i = 0; i < CLIENTS; i++) {
        lc_client_init(&S, &clients[i]);
        clients[i].on_connect = client_connected;
        clients[i].on_message = client_message;
        lc_client_connect(&clients[i]);
    }

    lc_run(&S);

    CHECK_EQ(S.nconns, CLIENTS + 1);
    for (int i = 0; i < S.nconns; i++) {
        CHECK_EQ(S.conns[i].shutdowns, 1);
        lc_check_conn(&S.conns[i], ADIEU_REASON_SHUTDOWN, 0);
    }
    CHECK(heavy.eof);
    CHECK_EQ(heavy.msgs_at_end, heavy_replies + 1);
    CHECK_EQ(heavy_ok, heavy_replies);
    CHECK(heavy_bye_ok);
    for (int i = 0; i < CLIENTS; i++) {
        CHECK_EQ(lc_conn_of(&S, &clients[i])->messages, REQUESTS);
        CHECK(clients[i].eof);
        CHECK_EQ(clients[i].msgs_at_end, REQUESTS + 1);
        CHECK_EQ(clients[i].rx_at_end, 0);
        CHECK_EQ(replies_ok[i], REQUESTS);
        CHECK(bye_ok[i]);
    }
    CHECK_EQ(late.connect_status, UV_ECONNREFUSED);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.connections, CLIENTS + 1);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_SHUTDOWN], CLIENTS + 1);
    CHECK_EQ(st.messages_in[ADIEU_FRAMED], CLIENTS * REQUESTS + 1);
    CHECK_EQ(st.messages_out[ADIEU_FRAMED], CLIENTS * (REQUESTS + 1) + heavy_replies + 1);
    CHECK_EQ(S.done_calls, 1);
    CHECK_EQ(st.open[ADIEU_FRAMED], 0);

    lc_finish(&S);
    return check_done();
}
