/* SPDX-License-Identifier: MIT */
/*
 * Peer EOF between messages (SPEC section 4, "Framed half-close"): a client sends its
 * requests and then FIN at once. Every reply must still reach it, whole and in order,
 * before the server's FIN, and the connection closes with reason peer_eof and no errno.
 *
 * The replies are more than the kernel can buffer, and the client reads nothing until the
 * server has seen its FIN (the connection is no longer open), so at that moment most of
 * what is owed is still in the library's output queue: a close at the EOF instead of after
 * the flush would lose it.
 */
#include <string.h>

#include "harness.h"

#define REQUESTS 3
#define REPLY_SIZE 60000

static lc_server_t S;
static lc_client_t client;
static uint8_t reply[REPLY_SIZE];
static size_t per_request; /* replies to each request */
static size_t replies_ok;
static bool read_while_open; /* the server had not closed when the client started reading */

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    if (!CHECK_EQ(msg->len, 1))
        return;
    memset(reply, msg->data[0], sizeof(reply));
    for (size_t i = 0; i < per_request; i++)
        if (!CHECK_EQ(lc_send(c, reply, sizeof(reply)), 0))
            break;
}

static bool server_saw_eof(void *arg)
{
    (void)arg;
    return S.nconns == 1 && (S.conns[0].closed || !adieu_conn_is_open(S.conns[0].conn));
}

static void start_reading(void *arg)
{
    (void)arg;
    lc_conn_t *c = &S.conns[0];
    /* The server has seen the EOF and still owes most of the replies. */
    read_while_open = !c->closed;
    if (!c->closed)
        CHECK(adieu_conn_queued(c->conn) > 0);
    lc_client_read_start(&client);
}

static void client_connected(lc_client_t *c, int status)
{
    if (!CHECK_EQ(status, 0))
        return;
    for (int i = 0; i < REQUESTS; i++) {
        uint8_t b = (uint8_t)('a' + i);
        lc_client_send(c, &b, 1);
    }
    lc_client_shutdown(c);
    lc_when(&S, server_saw_eof, start_reading, NULL);
}

static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    uint8_t want = (uint8_t)('a' + (c->msgs - 1) / per_request);
    if (len == REPLY_SIZE && data[0] == want && data[len - 1] == want &&
        memcmp(data, data + 1, len - 1) == 0)
        replies_ok++;
}

int main(void)
{
    per_request = lc_more_than_kernel_buffers() / REQUESTS / REPLY_SIZE + 1;
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    /* No back-pressure pause: the server must go on reading to see the EOF. */
    cfg.write_high_watermark = 2 * REQUESTS * per_request * (REPLY_SIZE + 2);
    cfg.write_hard_limit = cfg.write_high_watermark;
    static const lc_hooks_t hooks = {.on_message = on_message};
    lc_start(&S, &cfg, &hooks);
    /* One connection closing on the server, one client handle closing. */
    lc_expect(&S, 2);

    lc_client_init(&S, &client);
    client.no_read = true;
    client.rcvbuf = 16384;
    client.on_connect = client_connected;
    client.on_message = client_message;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    CHECK_EQ(S.conns[0].messages, REQUESTS);
    lc_check_conn(&S.conns[0], ADIEU_REASON_PEER_EOF, 0);
    CHECK(read_while_open);
    /* Every reply arrived, whole and in order, and only then the server's FIN. */
    CHECK(client.eof);
    CHECK_EQ(client.read_err, 0);
    CHECK_EQ(client.msgs_at_end, REQUESTS * per_request);
    CHECK_EQ(replies_ok, REQUESTS * per_request);
    CHECK_EQ(client.rx_at_end, 0);
    CHECK_EQ(client.shutdown_status, 0);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.connections, 1);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_PEER_EOF], 1);
    CHECK_EQ(st.messages_in[ADIEU_FRAMED], REQUESTS);
    CHECK_EQ(st.messages_out[ADIEU_FRAMED], REQUESTS * per_request);
    CHECK_EQ(st.open[ADIEU_FRAMED], 0);

    lc_finish(&S);
    return check_done();
}
