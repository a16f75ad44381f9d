/* SPDX-License-Identifier: MIT */
/*
 * Delayed reply across a shutdown (SPEC C3, C4 (3)): the handler holds the connection
 * (adieu_conn_hold) and answers 50 ms later from a timer; a graceful shutdown starts in
 * between. on_shutdown comes first, the drain waits for the hold, the late answer is
 * accepted and reaches the client before the server's FIN, and the connection closes with
 * reason shutdown.
 */
#include <string.h>

#include "harness.h"

#define DELAY_MS 50
#define DEADLINE_MS 5000

static lc_server_t S;
static lc_client_t client;
static adieu_conn_t *held;
static bool answered;
static uint64_t request_at;

static void answer_later(void *arg)
{
    lc_conn_t *c = arg;
    /* The drain has told the handler, and waits for the hold. */
    CHECK_EQ(c->shutdowns, 1);
    CHECK(!c->closed);
    CHECK_EQ(S.done_calls, 0);
    lc_api_begin(&S);
    int rc = adieu_conn_send(held, ADIEU_BINARY, "late/answer", 11);
    adieu_conn_release(held);
    lc_api_end(&S);
    CHECK_EQ(rc, 0);
    held = NULL;
    answered = true;
}

static void start_shutdown(void *arg)
{
    (void)arg;
    CHECK(!answered);
    CHECK_EQ(lc_shutdown(&S, DEADLINE_MS), 0);
}

static void on_message(lc_conn_t *c, const adieu_msg_t *msg)
{
    CHECK(msg->len == 4 && memcmp(msg->data, "late", 4) == 0);
    lc_api_begin(&S);
    held = adieu_conn_hold(c->conn);
    lc_api_end(&S);
    lc_after(&S, DELAY_MS, answer_later, c);
    /* The shutdown starts while the answer is owed. */
    lc_after(&S, DELAY_MS / 5, start_shutdown, NULL);
}

static void on_shutdown(lc_conn_t *c)
{
    (void)c;
    CHECK(!answered);
}

static void on_close(lc_conn_t *c, const adieu_close_info_t *info)
{
    (void)c;
    (void)info;
    CHECK(answered);
}

static void client_connected(lc_client_t *c, int status)
{
    if (!CHECK_EQ(status, 0))
        return;
    request_at = lc_now(&S);
    lc_client_send(c, "late", 4);
}

static void client_message(lc_client_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    CHECK(len == 11 && memcmp(data, "late/answer", 11) == 0);
    CHECK(lc_now(&S) - request_at >= DELAY_MS);
}

int main(void)
{
    static const lc_hooks_t hooks = {
        .on_message = on_message, .on_shutdown = on_shutdown, .on_close = on_close};
    lc_start(&S, NULL, &hooks);

    lc_client_init(&S, &client);
    client.on_connect = client_connected;
    client.on_message = client_message;
    lc_client_connect(&client);

    lc_run(&S);

    CHECK_EQ(S.nconns, 1);
    CHECK_EQ(S.conns[0].messages, 1);
    CHECK_EQ(S.conns[0].shutdowns, 1);
    lc_check_conn(&S.conns[0], ADIEU_REASON_SHUTDOWN, 0);
    CHECK(strcmp(S.conns[0].trace, "open msg shutdown close:shutdown d5 d4 d3 d2 d1 d0") == 0);
    CHECK(answered);
    CHECK(held == NULL);
    CHECK(client.eof);
    CHECK_EQ(client.msgs_at_end, 1);
    CHECK(S.done_at - S.shutdown_at < DEADLINE_MS);

    adieu_stats_t st = lc_stats(&S);
    CHECK_EQ(st.closed[ADIEU_FRAMED][ADIEU_REASON_SHUTDOWN], 1);
    CHECK_EQ(st.messages_out[ADIEU_FRAMED], 1);

    lc_finish(&S);
    return check_done();
}
