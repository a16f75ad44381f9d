/* SPDX-License-Identifier: MIT */
/*
 * Local close from inside on_message (SPEC C1, C3; header: adieu_conn_close): the handler
 * answers and then closes. The close returns at once without calling on_close, a second
 * close returns ADIEU_ECLOSED, no later message is handed to the application, and the
 * client gets the answers sent before the close, then the server's FIN. The connection
 * ends with reason local once the client has closed its side.
 */
#include <string.h>

#include "harness.h"

static lc_server_t S;
static lc_client_t client;
static char received[64];

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    if (msg->len == 5 && memcmp(msg->data, "close", 5) == 0) {
        CHECK_EQ(lc_send(c, "bye", 3), 0);
        CHECK_EQ(lc_close(c), 0);
        /* on_close comes on a later loop turn, and the close is not started twice. */
        CHECK_EQ(c->closes, 0);
        CHECK(!adieu_conn_is_open(c->conn));
        CHECK_EQ(lc_close(c), ADIEU_ECLOSED);
        return;
    }
    CHECK_EQ(lc_send(c, msg->data, msg->len), 0);
}

static void client_connected(lc_client_t *c, int status)
{
    if (!CHECK_EQ(status, 0))
        return;
    /* One write: the three messages most likely arrive in one read, so the handler's
     * close must stop the delivery of the third inside that read. */
    static const uint8_t stream[] = {0,   5,   'h', 'e', 'l', 'l', 'o', 0,   5,   'c', 'l',
                                     'o', 's', 'e', 0,   5,   'a', 'f', 't', 'e', 'r'};
    lc_client_send_raw(c, stream, sizeof(stream));
}

static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    size_t used = strlen(received);
    if (CHECK(used + len + 1 < sizeof(received))) {
        memcpy(received + used, data, len);
        received[used + len] = '|';
        received[used + len + 1] = '\0';
    }
}

int main(void)
{
    static const lc_hooks_t hooks = {.on_message = on_message};
    lc_start(&S, NULL, &hooks);
    lc_expect(&S, 2);

    lc_client_init(&S, &client);
    client.on_connect = client_connected;
    client.on_message = client_message;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    CHECK_EQ(S.conns[0].messages, 2);
    lc_check_conn(&S.conns[0], ADIEU_REASON_LOCAL, 0);
    CHECK(strcmp(received, "hello|bye|") == 0);
    CHECK(client.eof);
    CHECK_EQ(client.msgs_at_end, 2);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_LOCAL], 1);
    CHECK_EQ(st.messages_in[ADIEU_FRAMED], 2);
    CHECK_EQ(st.messages_out[ADIEU_FRAMED], 2);

    lc_finish(&S);
    return check_done();
}
