/* SPDX-License-Identifier: MIT */
/*
 * Peer reset (SPEC C1, section 4): a client that has been answered closes with a reset
 * (SO_LINGER 0). The connection ends with reason peer_reset and sys_err UV_ECONNRESET, the
 * errno of the read that failed, not collapsed into an EOF.
 */
#include <string.h>

#include "harness.h"

static lc_server_t S;
static lc_client_t client;

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "ping", 4);
}

/* Reset only once the server has answered, so the reset reaches a connection that is open
 * and idle, waiting for the next message. */
static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    CHECK_EQ(len, 4);
    CHECK_MEM_EQ(data, "ping", 4);
    lc_client_reset(c);
}

int main(void)
{
    lc_start(&S, NULL, NULL);
    lc_expect(&S, 2);

    lc_client_init(&S, &client);
    client.on_connect = client_connected;
    client.on_message = client_message;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    CHECK_EQ(S.conns[0].messages, 1);
    lc_check_conn(&S.conns[0], ADIEU_REASON_PEER_RESET, UV_ECONNRESET);
    CHECK_EQ(client.msgs, 1);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_PEER_RESET], 1);
    CHECK_EQ(st.messages_in[ADIEU_FRAMED], 1);
    CHECK_EQ(st.messages_out[ADIEU_FRAMED], 1);

    lc_finish(&S);
    return check_done();
}
