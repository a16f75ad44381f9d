/* SPDX-License-Identifier: MIT */
/*
 * Too big (SPEC C6): a message at max_message is delivered; one declaring a length over it
 * closes the connection with reason too_big, is never handed to the application (nor is
 * anything after it), and is counted. The answer to the message before it still reaches
 * the client, then the server's FIN.
 */
#include <string.h>

#include "harness.h"

#define MAX_MESSAGE 1000

static lc_server_t S;
static lc_client_t client;
static uint8_t payload[MAX_MESSAGE + 1];

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    /* Only the message at the limit may come through. */
    CHECK_EQ(msg->len, MAX_MESSAGE);
    CHECK_EQ(lc_send(c, "ok", 2), 0);
}

static void client_connected(lc_client_t *c, int status)
{
    if (!CHECK_EQ(status, 0))
        return;
    memset(payload, 'x', sizeof(payload));
    lc_client_send(c, payload, MAX_MESSAGE);     /* at the limit: delivered */
    lc_client_send(c, payload, MAX_MESSAGE + 1); /* over it: closes */
    lc_client_send(c, "late", 4);                /* after the violation: never delivered */
}

int main(void)
{
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.max_message = MAX_MESSAGE;
    static const lc_hooks_t hooks = {.on_message = on_message};
    lc_start(&S, &cfg, &hooks);
    lc_expect(&S, 2);

    lc_client_init(&S, &client);
    client.on_connect = client_connected;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    CHECK_EQ(S.conns[0].messages, 1);
    lc_check_conn(&S.conns[0], ADIEU_REASON_TOO_BIG, 0);
    CHECK(client.eof);
    CHECK_EQ(client.msgs_at_end, 1);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_TOO_BIG], 1);
    CHECK_EQ(st.messages_in[ADIEU_FRAMED], 1);
    CHECK_EQ(st.messages_out[ADIEU_FRAMED], 1);

    lc_finish(&S);
    return check_done();
}
