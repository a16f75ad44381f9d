/* SPDX-License-Identifier: MIT */
/*
 * Reset during the drain (SPEC C1, C4 (3), section 4 close reasons): a graceful shutdown
 * starts while the server still owes a client more than the kernel can buffer; that client
 * resets its connection instead of reading. What was owed is lost, so the connection did
 * not end by the drain: it must close with reason peer_reset and the errno of the failed
 * read or write (ECONNRESET, or EPIPE from a write), not as a clean "shutdown". A polite
 * client on the same server still closes with reason shutdown, and the done callback runs
 * once, long before the deadline.
 */
#include <string.h>

#include "harness.h"

#define REPLY_SIZE 60000
#define DEADLINE_MS 5000

static lc_server_t S;
static lc_client_t resetter; /* owed a lot; resets instead of reading */
static lc_client_t polite;
static uint8_t reply[REPLY_SIZE];
static size_t replies;
static bool owed_at_reset;

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    size_t n = msg->len == 4 && memcmp(msg->data, "much", 4) == 0 ? replies : 1;
    memset(reply, 'r', sizeof(reply));
    for (size_t i = 0; i < n; i++)
        if (!CHECK_EQ(lc_send(c, reply, sizeof(reply)), 0))
            break;
}

static void on_shutdown(lc_conn_t *c)
{
    if (c != lc_conn_of(&S, &resetter))
        return;
    owed_at_reset = adieu_conn_queued(c->conn) > REPLY_SIZE;
    lc_client_reset(&resetter);
}

static bool both_asked(void *arg)
{
    (void)arg;
    return S.nconns == 2 && S.conns[0].messages == 1 && S.conns[1].messages == 1;
}

static void start_shutdown(void *arg)
{
    (void)arg;
    CHECK_EQ(lc_shutdown(&S, DEADLINE_MS), 0);
}

static void resetter_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "much", 4);
}

static void polite_connected(lc_client_t *c, int status)
{
    if (CHECK_EQ(status, 0))
        lc_client_send(c, "hi", 2);
}

int main(void)
{
    replies = lc_more_than_kernel_buffers() / REPLY_SIZE + 1;
    adieu_config_t cfg;
    adieu_config_init(&cfg);
    cfg.write_high_watermark = 2 * replies * (REPLY_SIZE + 2);
    cfg.write_hard_limit = cfg.write_high_watermark;
    static const lc_hooks_t hooks = {.on_message = on_message, .on_shutdown = on_shutdown};
    lc_start(&S, &cfg, &hooks);

    lc_client_init(&S, &resetter);
    resetter.no_read = true;
    resetter.rcvbuf = 16384;
    resetter.on_connect = resetter_connected;
    lc_client_connect(&resetter);
    lc_client_init(&S, &polite);
    polite.on_connect = polite_connected;
    lc_client_connect(&polite);
    lc_when(&S, both_asked, start_shutdown, NULL);

    lc_run(&S);

    CHECK(owed_at_reset);
    lc_conn_t *r = lc_conn_of(&S, &resetter);
    lc_conn_t *p = lc_conn_of(&S, &polite);
    if (CHECK(r != NULL && p != NULL)) {
        lc_check_conn(r, ADIEU_REASON_PEER_RESET, LC_ANY_ERR);
        if (!CHECK(r->sys_err == UV_ECONNRESET || r->sys_err == UV_EPIPE))
            fprintf(stderr, "  sys_err %s\n", adieu_err_name(r->sys_err));
        lc_check_conn(p, ADIEU_REASON_SHUTDOWN, 0);
        CHECK_EQ(r->shutdowns, 1);
        CHECK_EQ(p->shutdowns, 1);
    }
    CHECK(polite.eof);
    CHECK_EQ(polite.msgs_at_end, 1);
    CHECK_EQ(S.done_calls, 1);
    CHECK(S.done_at - S.shutdown_at < DEADLINE_MS);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_PEER_RESET], 1);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_SHUTDOWN], 1);

    lc_finish(&S);
    return check_done();
}
