/* SPDX-License-Identifier: MIT */
/*
 * Truncated (SPEC P1, section 4): a stream that ends inside a frame closes with reason
 * truncated, both inside a payload and inside a length prefix. The complete message sent
 * before is delivered and answered; the partial one is never handed to the application.
 */
#include <string.h>

#include "harness.h"

static lc_server_t S;
/* in_payload ends inside a payload, in_prefix inside a length prefix. */
static lc_client_t in_payload;
static lc_client_t in_prefix;

static void client_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "whole", 5);
}

/* Once the complete message is answered, send the start of another one and then FIN. */
static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    CHECK_EQ(len, 5);
    CHECK_MEM_EQ(data, "whole", 5);
    if (c == &in_payload) {
        static const uint8_t part[] = {0x00, 0x0a, 'a', 'b', 'c'}; /* 3 of 10 bytes */
        lc_client_send_raw(c, part, sizeof(part));
    } else {
        static const uint8_t part[] = {0x00}; /* 1 of 2 prefix bytes */
        lc_client_send_raw(c, part, sizeof(part));
    }
    lc_client_shutdown(c);
}

static void setup(lc_client_t *c)
{
    lc_client_init(&S, c);
    c->on_connect = client_connected;
    c->on_message = client_message;
    lc_client_connect(c);
}

int main(void)
{
    lc_start(&S, NULL, NULL);
    lc_expect(&S, 4);
    setup(&in_payload);
    setup(&in_prefix);

    lc_run(&S);

    if (CHECK_EQ(S.nconns, 2)) {
        for (int i = 0; i < 2; i++) {
            CHECK_EQ(S.conns[i].messages, 1);
            lc_check_conn(&S.conns[i], ADIEU_REASON_TRUNCATED, 0);
        }
    }
    /* Each client got its one answer, then the server's FIN. */
    CHECK(in_payload.eof);
    CHECK_EQ(in_payload.msgs_at_end, 1);
    CHECK(in_prefix.eof);
    CHECK_EQ(in_prefix.msgs_at_end, 1);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_TRUNCATED], 2);
    CHECK_EQ(st.messages_in[ADIEU_FRAMED], 2);

    lc_finish(&S);
    return check_done();
}
